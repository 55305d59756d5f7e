//! Rebuild the crate when a migration is added, so `sqlx::migrate!` embeds it (the macro alone
//! only watches files that existed at the last build).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
