//! `orderflow forget customer <id>` and `orderflow keys ...`: forgetting a customer (their
//! data key is deleted, their personal data erased everywhere it was kept) and managing the
//! master key that wraps the customers' data keys.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use orderflow_store::{MasterKey, Vault};

use crate::config::CommonArgs;

/// What to forget.
#[derive(Debug, Subcommand)]
pub enum ForgetCommand {
    /// Forget a customer: delete their data key, so that their e-mail and shipping address
    /// read as erased in every event, replay, timeline and copy of the stream; erase what the
    /// read models and workers kept of them; record the fact. Lines, totals and status of
    /// their orders stay.
    Customer {
        /// The shop's id of the customer.
        customer_id: String,
    },
}

/// Master key operations.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random master key (64 hex digits) for ORDERFLOW_MASTER_KEY or a key file.
    Generate,
    /// Re-wrap every customer's data key under a new master key, in one transaction. The
    /// current key comes from ORDERFLOW_MASTER_KEY(_FILE); stop every process, rotate, then
    /// start them with the new key.
    RotateMaster {
        /// File holding the new master key in hex.
        #[arg(long, env = "ORDERFLOW_NEW_MASTER_KEY_FILE")]
        new_key_file: PathBuf,
    },
}

pub(crate) async fn forget(common: &CommonArgs, command: ForgetCommand) -> Result<()> {
    let ForgetCommand::Customer { customer_id } = command;
    let pool = orderflow_store::connect(&common.database())
        .await
        .context("cannot open the event store")?;
    let forgotten = Vault::new(pool)
        .forget(&customer_id)
        .await
        .context("forgetting the customer")?;
    println!("{}", forgotten.detail);
    Ok(())
}

pub(crate) async fn keys(common: &CommonArgs, command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Generate => {
            println!("{}", *MasterKey::generate().to_hex());
            Ok(())
        }
        KeysCommand::RotateMaster { new_key_file } => {
            common.install_master_key(true)?;
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&new_key_file)
                    .with_context(|| format!("reading {}", new_key_file.display()))?,
            );
            let new = MasterKey::from_hex(&text)?;
            let pool = orderflow_store::connect(&common.database())
                .await
                .context("cannot open the event store")?;
            let rewrapped = Vault::new(pool)
                .rotate_master(&new)
                .await
                .context("re-wrapping the data keys")?;
            println!(
                "{} re-wrapped; start every process with the new master key",
                count(rewrapped, "data key", "data keys")
            );
            Ok(())
        }
    }
}

/// `n` and the noun in the right number.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
