//! Starting the roles: they wait for services that are not up yet, fail at once (with one
//! line) on what waiting cannot fix, and never print a credential.

use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orderflow_testkit::free_port;
use orderflow_testkit::nats::NatsServer;
use orderflow_testkit::TestDatabase;
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

/// How long a role may take to give up on what waiting cannot fix: far more than a starved
/// machine needs to start it and be refused, far less than the connect wait it must not sit
/// out ([`CONNECT_WAIT_SECS`]).
const AT_ONCE: Duration = Duration::from_secs(60);

/// The connect wait of the roles that must not wait: ten times [`AT_ONCE`].
const CONNECT_WAIT_SECS: &str = "600";

/// Runs `orderflow relay` to its end with `env`; fails the test when it still runs after
/// `within` (`promise` says what that means). Returns what it printed and how long it took.
async fn run_relay(env: &[(&str, &str)], within: Duration, promise: &str) -> (Output, Duration) {
    let started = Instant::now();
    let relay = Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .arg("relay")
        .envs(env.iter().copied())
        .env("RUST_LOG", "debug")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(within, relay)
        .await
        .unwrap_or_else(|_| panic!("`orderflow relay` still ran after {within:?}: {promise}"))
        .expect("running orderflow relay");
    (output, started.elapsed())
}

fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_nats_server_that_is_not_up_is_waited_for_and_its_password_never_printed() {
    let db = TestDatabase::fresh().await;
    let url = format!("nats://orders:s3cret-pw@127.0.0.1:{}", free_port());
    let (output, took) = run_relay(
        &[
            ("ORDERFLOW_DATABASE_URL", &db.options.url),
            ("ORDERFLOW_NATS_URL", &url),
            ("ORDERFLOW_CONNECT_WAIT_SECS", "3"),
        ],
        AT_ONCE,
        "it gives up once its 3 s connect wait is spent",
    )
    .await;
    let printed = all_output(&output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(
        !printed.contains("s3cret-pw"),
        "the password was printed:\n{printed}"
    );
    assert!(printed.contains("not reachable yet; waiting"), "{printed}");
    assert!(took >= Duration::from_secs(2), "gave up after {took:?}");
    let error = last_line(&output);
    assert!(
        error.starts_with("error: cannot reach NATS JetStream (is it up?")
            && error.contains("nats://orders:***@127.0.0.1"),
        "{error}"
    );
}

#[tokio::test]
async fn wrong_nats_credentials_fail_at_once_without_printing_them() {
    let db = TestDatabase::fresh().await;
    let port = free_port();
    let _nats = NatsServer::start_on(port, &["--user", "orders", "--pass", "right-pw"]).await;
    for url in [
        format!("nats://orders:wrong-pw@127.0.0.1:{port}"),
        format!("nats://t0ken-wrong@127.0.0.1:{port}"),
    ] {
        let (output, took) = run_relay(
            &[
                ("ORDERFLOW_DATABASE_URL", &db.options.url),
                ("ORDERFLOW_NATS_URL", &url),
                ("ORDERFLOW_CONNECT_WAIT_SECS", CONNECT_WAIT_SECS),
            ],
            AT_ONCE,
            "wrong credentials fail at once instead of waiting out the connect wait",
        )
        .await;
        eprintln!("wrong credentials: gave up after {took:?}");
        let printed = all_output(&output);
        assert_eq!(output.status.code(), Some(1), "{printed}");
        for secret in ["wrong-pw", "t0ken-wrong"] {
            assert!(
                !printed.contains(secret),
                "{secret} was printed:\n{printed}"
            );
        }
        let error = last_line(&output);
        assert!(
            error.starts_with("error: cannot reach NATS JetStream") && !error.contains("is it up?"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn an_unknown_database_role_fails_at_once_without_the_is_it_up_hint() {
    let url = "postgres://nobody-here:pw-of-nobody@127.0.0.1:5432/orderflow";
    let (output, took) = run_relay(
        &[
            ("ORDERFLOW_DATABASE_URL", url),
            ("ORDERFLOW_CONNECT_WAIT_SECS", CONNECT_WAIT_SECS),
        ],
        AT_ONCE,
        "an unknown role fails at once instead of waiting out the connect wait",
    )
    .await;
    eprintln!("unknown role: gave up after {took:?}");
    let printed = all_output(&output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(!printed.contains("pw-of-nobody"), "{printed}");
    let error = last_line(&output);
    assert!(
        error.contains("role \"nobody-here\" does not exist")
            && !error.contains("is PostgreSQL up?"),
        "{error}"
    );
}

#[tokio::test]
async fn a_relay_started_before_nats_waits_for_it_then_creates_the_stream() {
    let db = TestDatabase::fresh().await;
    let port = free_port();
    let stream = format!("T_{}", uuid::Uuid::new_v4().simple());
    let mut relay = Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .arg("relay")
        .env("ORDERFLOW_DATABASE_URL", &db.options.url)
        .env("ORDERFLOW_NATS_URL", format!("nats://127.0.0.1:{port}"))
        .env("ORDERFLOW_STREAM", &stream)
        .env("ORDERFLOW_CONNECT_WAIT_SECS", CONNECT_WAIT_SECS)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Its warnings, line by line, also shown on the test's own output.
    let printed = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut lines = tokio::io::BufReader::new(relay.stderr.take().unwrap()).lines();
    let kept = Arc::clone(&printed);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("relay: {line}");
            kept.lock().unwrap().push(line);
        }
    });
    let started = Instant::now();
    while !printed
        .lock()
        .unwrap()
        .iter()
        .any(|line| line.contains("NATS is not reachable yet; waiting"))
    {
        if let Some(status) = relay.try_wait().unwrap() {
            panic!("the relay gave up before NATS came ({status})");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the relay did not say within 60 s that it waits for NATS"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        relay.try_wait().unwrap().is_none(),
        "the relay gave up before NATS came"
    );
    let _nats = NatsServer::start_on(port, &[]).await;
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let started = Instant::now();
    while jetstream.get_stream(&stream).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the relay did not create its stream within 60 s of NATS being up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(relay.try_wait().unwrap().is_none(), "the relay stopped");
    let _ = relay.kill().await;
}
