//! The operator commands as a user runs them after `scripts/run`: the master key found where
//! `scripts/run` makes it (or one error, worded once, saying where to point them), personal
//! data never printed sealed without a word, forgetting that says what was forgotten before,
//! and commands that only read changing nothing: a database or stream that is not there is
//! one `error:` line naming it, and is still not there afterwards.

use std::path::{Path, PathBuf};
use std::process::Output;

use orderflow_testkit::database::TEST_MASTER_KEY;
use orderflow_testkit::{orderflow, OrderFixture, Orderflow, World};
use uuid::Uuid;

/// A directory of its own for one test, removed when dropped.
struct Folder(PathBuf);

impl Folder {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("orderflow-cli-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("making a test folder");
        Self(path)
    }

    /// A checkout as `scripts/run` leaves it: the development key in `.orderflow/master.key`.
    fn checkout() -> Self {
        let folder = Self::new();
        std::fs::create_dir_all(folder.0.join(".orderflow")).unwrap();
        std::fs::write(folder.0.join(".orderflow/master.key"), TEST_MASTER_KEY).unwrap();
        folder
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `orderflow <args>` in `dir` with no master key configured.
fn without_key(orderflow: &Orderflow, dir: &Path, args: &[&str]) -> Output {
    orderflow
        .command(args)
        .env_remove("ORDERFLOW_MASTER_KEY")
        .env_remove("ORDERFLOW_MASTER_KEY_FILE")
        .current_dir(dir)
        .output()
        .expect("running the orderflow binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one `error:` line of a failed command.
fn one_error_line(output: &Output, what: &str) -> String {
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{what} succeeded: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line on stderr: {stderr}");
    assert!(lines[0].starts_with("error: "), "{what}: {stderr}");
    lines[0].to_string()
}

#[tokio::test]
async fn commands_that_need_the_key_find_it_where_scripts_run_made_it_or_say_where_to_put_it() {
    let world = World::without_nats().await;
    let order = world.place(&[("SKU-KEY", 1)]).await;
    let orderflow = orderflow!(&world);
    let id = order.to_string();

    let checkout = Folder::checkout();
    let replay = without_key(&orderflow, &checkout.0, &["replay", "order", &id]);
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    assert!(
        text(&replay.stdout).contains("status placed"),
        "{}",
        text(&replay.stdout)
    );

    // Elsewhere, without a key: every command that needs one says the same, and where.
    let elsewhere = Folder::new();
    let replay = without_key(&orderflow, &elsewhere.0, &["replay", "order", &id]);
    let worker = without_key(&orderflow, &elsewhere.0, &["worker", "inventory"]);
    let replay = one_error_line(&replay, "replay order without a key");
    let worker = one_error_line(&worker, "worker without a key");
    let wording = orderflow_store::VaultError::NoMasterKey.to_string();
    assert_eq!(replay, format!("error: {wording}"));
    assert_eq!(worker, format!("error: {wording}"));
    for named in [
        "ORDERFLOW_MASTER_KEY",
        "ORDERFLOW_MASTER_KEY_FILE",
        ".orderflow/master.key",
    ] {
        assert!(wording.contains(named), "{wording}");
    }
    world.cleanup().await;
}

#[tokio::test]
async fn events_without_the_key_say_that_the_personal_data_is_sealed() {
    let world = World::without_nats().await;
    let order = world
        .place_order(
            OrderFixture::new()
                .email("sealed@example.com")
                .line("SKU-SEALED", 1),
        )
        .await;
    let orderflow = orderflow!(&world);
    let id = order.to_string();
    let elsewhere = Folder::new();

    let sealed = without_key(&orderflow, &elsewhere.0, &["events", &id, "--json"]);
    assert!(sealed.status.success(), "{}", text(&sealed.stderr));
    assert!(
        text(&sealed.stdout).contains("\"sealed\""),
        "{}",
        text(&sealed.stdout)
    );
    let note = text(&sealed.stderr);
    assert!(
        note.starts_with("note: the personal data (e-mail, shipping address) is shown sealed")
            && note.contains(".orderflow/master.key"),
        "{note}"
    );

    let checkout = Folder::checkout();
    let opened = without_key(&orderflow, &checkout.0, &["events", &id, "--json"]);
    assert!(opened.status.success(), "{}", text(&opened.stderr));
    assert!(text(&opened.stdout).contains("sealed@example.com"));
    assert_eq!(text(&opened.stderr), "", "nothing to say when it is opened");
    world.cleanup().await;
}

#[tokio::test]
async fn forget_needs_no_key_and_says_what_was_forgotten_before() {
    let world = World::without_nats().await;
    world
        .place_order(OrderFixture::new().customer("c-cli-twice").line("SKU-F", 1))
        .await;
    let orderflow = orderflow!(&world);
    let elsewhere = Folder::new();
    let forget = |customer: &str| {
        let output = without_key(&orderflow, &elsewhere.0, &["forget", "customer", customer]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    assert_eq!(
        forget("c-cli-twice"),
        "customer c-cli-twice forgotten: 1 data key deleted, personal data of 1 order erased\n"
    );
    let again = forget("c-cli-twice");
    assert!(
        again.starts_with("customer c-cli-twice was already forgotten on ")
            && again.contains("nothing left to erase"),
        "{again}"
    );
    assert!(
        forget("c-cli-nobody").contains("is not known here (no order, no data key)"),
        "an unknown customer is said to be unknown"
    );
    world.cleanup().await;
}

/// The URL of database `name` on the tests' server.
fn database_url(name: &str) -> String {
    let mut url = url::Url::parse(&orderflow_testkit::server_url()).expect("a database URL");
    url.set_path(name);
    url.to_string()
}

async fn database_exists(world: &World, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(world.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn commands_that_only_read_create_and_migrate_nothing() {
    let world = World::new().await;
    let id = Uuid::now_v7().to_string();
    let missing = format!("orderflow_test_typo_{}", Uuid::new_v4().simple());
    let url = database_url(&missing);
    let orderflow = orderflow!(&world).env("ORDERFLOW_DATABASE_URL", &url);
    let reads: [&[&str]; 7] = [
        &["events", &id],
        &["trace", &id],
        &["replay", "order", &id],
        &[
            "replay",
            "consumer",
            "inventory",
            "--from",
            "1",
            "--dry-run",
        ],
        &["projections", "list"],
        &["verify", "stream"],
        &["verify", "stream", "--json"],
    ];
    for args in reads {
        let output = orderflow.output(args);
        let line = one_error_line(&output, &args.join(" "));
        assert!(
            line.contains(&format!("database {missing} does not exist")),
            "{}: {line}",
            args.join(" ")
        );
        assert!(
            !database_exists(&world, &missing).await,
            "`orderflow {}` created the database",
            args.join(" ")
        );
    }

    // A database that exists but holds no event store gets no tables either.
    let empty = format!("orderflow_test_empty_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {empty}"))
        .execute(world.pool())
        .await
        .unwrap();
    let empty_url = database_url(&empty);
    let on_empty = orderflow!(&world).env("ORDERFLOW_DATABASE_URL", &empty_url);
    let line = one_error_line(
        &on_empty.output(&["events", &id]),
        "events on an empty database",
    );
    assert!(line.contains("holds no orderflow event store"), "{line}");
    let pool = sqlx::PgPool::connect(&empty_url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE {empty}"))
        .execute(world.pool())
        .await
        .unwrap();
    assert_eq!(tables, 0, "a read-only command migrated the empty database");

    // A stream that is not there is not made by the commands that read streams.
    let stream = format!("NEVER_{}", Uuid::new_v4().simple()).to_uppercase();
    let own = orderflow!(&world).env("ORDERFLOW_STREAM", &stream);
    for args in [
        &["dlq", "list"][..],
        &["dlq", "show", "1"],
        &["verify", "stream"],
    ] {
        let output = own.output(args);
        assert!(!output.status.success(), "{}", args.join(" "));
        let bus = &world.bus().bus;
        for name in [stream.clone(), format!("{stream}_DLQ")] {
            assert!(
                bus.find_stream(&name).await.unwrap().is_none(),
                "`orderflow {}` created stream {name}",
                args.join(" ")
            );
        }
    }
    let line = one_error_line(&own.output(&["dlq", "list"]), "dlq list");
    assert!(
        line.contains(&format!("stream {stream}_DLQ does not exist")),
        "{line}"
    );
    world.cleanup().await;
}
