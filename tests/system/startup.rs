//! Starting the roles: they wait for services that are not up yet, fail at once (with one
//! line) on what waiting cannot fix, and never print a credential.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use orderflow_testkit::free_port;
use orderflow_testkit::TestDatabase;

fn nats_server_binary() -> String {
    [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
    ]
    .into_iter()
    .find(|candidate| {
        Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .expect("these tests start their own nats-server: install it (`scripts/services up` does)")
    .to_string()
}

/// A nats-server of the test's own on `port`, with JetStream in a temporary folder; killed
/// when dropped.
struct OwnNats {
    child: Child,
    store: std::path::PathBuf,
}

impl OwnNats {
    fn start(port: u16, extra: &[&str]) -> Self {
        let store = std::env::temp_dir().join(format!("orderflow-nats-{}", uuid::Uuid::new_v4()));
        let child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, store }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Runs `orderflow relay` to its end with `env`; fails the test when it takes over a minute.
fn run_relay(env: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .arg("relay")
        .envs(env.iter().copied())
        .env("RUST_LOG", "debug")
        .output()
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
    let (output, took) = run_relay(&[
        ("ORDERFLOW_DATABASE_URL", &db.options.url),
        ("ORDERFLOW_NATS_URL", &url),
        ("ORDERFLOW_CONNECT_WAIT_SECS", "3"),
    ]);
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
    let _nats = OwnNats::start(port, &["--user", "orders", "--pass", "right-pw"]);
    for url in [
        format!("nats://orders:wrong-pw@127.0.0.1:{port}"),
        format!("nats://t0ken-wrong@127.0.0.1:{port}"),
    ] {
        let (output, took) = run_relay(&[
            ("ORDERFLOW_DATABASE_URL", &db.options.url),
            ("ORDERFLOW_NATS_URL", &url),
            ("ORDERFLOW_CONNECT_WAIT_SECS", "60"),
        ]);
        let printed = all_output(&output);
        assert_eq!(output.status.code(), Some(1), "{printed}");
        assert!(
            took < Duration::from_secs(15),
            "waited {took:?} for wrong credentials"
        );
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
    let (output, took) = run_relay(&[
        ("ORDERFLOW_DATABASE_URL", url),
        ("ORDERFLOW_CONNECT_WAIT_SECS", "60"),
    ]);
    let printed = all_output(&output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(
        took < Duration::from_secs(15),
        "waited {took:?} for an unknown role"
    );
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
        .env("ORDERFLOW_CONNECT_WAIT_SECS", "60")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        relay.try_wait().unwrap().is_none(),
        "the relay gave up before NATS came"
    );
    let _nats = OwnNats::start(port, &[]);
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let started = Instant::now();
    while jetstream.get_stream(&stream).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the relay did not create its stream once NATS was up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(relay.try_wait().unwrap().is_none(), "the relay stopped");
    let _ = relay.kill();
    let _ = relay.wait();
}
