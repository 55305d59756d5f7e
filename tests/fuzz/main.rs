//! The API fuzzed from its own document: schemathesis reads `GET /openapi.json` of the real
//! `orderflow serve` (over a fresh database and streams of its own) and sends every operation
//! requests generated from it, valid ones and ones the document forbids. The test fails when
//! any answer is a 5xx, has a status, content type, header or body the document does not
//! declare for it, when a request the document allows is refused, or when one it forbids is
//! accepted. So it proves that the document states exactly what the server checks, and that
//! no input breaks the server.
//!
//! It runs twice: with the admin routes on and the token sent, and with them on but no token
//! sent (every admin route must then answer its declared 401).
//!
//! schemathesis comes from PyPI: `scripts/install-schemathesis` puts the pinned version under
//! `.orderflow/schemathesis/` (`scripts/test` runs it first), and `ORDERFLOW_SCHEMATHESIS`
//! may name another `st` executable. Without it the test fails and says so. The run is
//! bounded (`DEFAULT_MAX_EXAMPLES` per operation and phase) and seeded, so a failure comes
//! back with the same seed; `ORDERFLOW_FUZZ_SEED` tries another seed and
//! `ORDERFLOW_FUZZ_EXAMPLES` more cases.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orderflow_testkit::{orderflow, World};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "fuzz-admin-token";
/// Test cases per operation and phase when `ORDERFLOW_FUZZ_EXAMPLES` is not set: enough to
/// walk every constraint, small enough for about a minute per run on two cores.
const DEFAULT_MAX_EXAMPLES: u32 = 40;
/// The seed when `ORDERFLOW_FUZZ_SEED` is not set: a failure reproduces.
const DEFAULT_SEED: u64 = 20_261_130;
/// A run of [`DEFAULT_MAX_EXAMPLES`] that takes longer than this is stopped and fails; runs of
/// more examples get proportionally longer.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// What schemathesis checks on every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,\
                      negative_data_rejection,positive_data_acceptance";

/// Operations where a request the document allows can still be refused with 422, because the
/// rule relates two values or depends on stored data, which a schema cannot state (each
/// operation's 422 description says which rule): `from` after `to`, a sequence past the
/// order's version, a replay range over the limit.
const DATA_DEPENDENT_422: [&str; 4] = [
    "/v1/analytics/summary",
    "/v1/orders/{id}/state",
    "/v1/admin/orders/{id}/replay",
    "/v1/admin/consumers/{name}/replay",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_input_breaks_the_api_or_contradicts_its_document_with_the_admin_token() {
    fuzz(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_input_breaks_the_api_or_contradicts_its_document_without_the_admin_token() {
    fuzz(false).await;
}

/// Where `st` is: `ORDERFLOW_SCHEMATHESIS`, or the virtual environment of
/// `scripts/install-schemathesis`.
fn schemathesis() -> PathBuf {
    let st = std::env::var_os("ORDERFLOW_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".orderflow/schemathesis/bin/st")
        });
    assert!(
        st.is_file(),
        "schemathesis is missing ({} does not exist): run `scripts/install-schemathesis` \
         (scripts/test runs it), or set ORDERFLOW_SCHEMATHESIS to an `st` executable \
         (`pip install schemathesis`)",
        st.display()
    );
    st
}

/// One schemathesis run over a fresh world and server, the admin token sent or not.
async fn fuzz(send_token: bool) {
    let st = schemathesis();
    let world = World::new().await;
    let orderflow = orderflow!(&world).env("ORDERFLOW_ADMIN_TOKEN", ADMIN_TOKEN);
    let (server, base) = orderflow.serve(&[]);
    let order_id = seed(&base).await;

    let dir = std::env::temp_dir().join(format!("orderflow-fuzz-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("creating the fuzz run's directory");
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, config_toml(&order_id)).expect("writing schemathesis.toml");
    std::fs::write(
        dir.join("orderflow_fuzz_hooks.py"),
        include_str!("hooks.py"),
    )
    .expect("writing the schemathesis hooks");
    let seed = env_number("ORDERFLOW_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let max_examples = env_number("ORDERFLOW_FUZZ_EXAMPLES").unwrap_or(DEFAULT_MAX_EXAMPLES);

    let mut command = Command::new(&st);
    command
        .current_dir(&dir)
        .env("SCHEMATHESIS_HOOKS", "orderflow_fuzz_hooks")
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &max_examples.to_string()])
        .args(["--seed", &seed.to_string()])
        // One worker: schemathesis's threads trip over Python 3.11's parser now and then.
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        // The console's live feed is a stream that never ends by itself: every call would
        // wait out the request timeout. tests/api/console.rs and tests/console/ cover it.
        .args(["--exclude-path", "/v1/admin/console/stream"])
        .args(["--output-truncate", "false"])
        .arg("--continue-on-failure");
    if send_token {
        command.args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")]);
    }
    let started = Instant::now();
    let timeout =
        RUN_TIMEOUT.mul_f64((f64::from(max_examples) / f64::from(DEFAULT_MAX_EXAMPLES)).max(1.0));
    let (succeeded, report) = tokio::task::spawn_blocking(move || run(command, timeout))
        .await
        .expect("the schemathesis run");
    let elapsed = started.elapsed();
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
    world.cleanup().await;
    assert!(
        succeeded,
        "schemathesis found answers that break the document or the server \
         (token sent: {send_token}, seed {seed}, {elapsed:?}):\n{report}"
    );
    let summary = report.rfind("SUMMARY").map_or("", |at| &report[at..]);
    eprintln!(
        "schemathesis passed in {elapsed:?} (token sent: {send_token}, seed {seed}):\n{summary}"
    );
}

/// The number in environment variable `name`, if it is set to one.
fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs schemathesis to its end (or `timeout`); whether it passed, and its report.
fn run(mut command: Command, timeout: Duration) -> (bool, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting schemathesis");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // Waited for on a thread of its own, so the end is seen when it comes (or the timeout).
    let pid = child.id().to_string();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    let status = match finished.recv_timeout(timeout) {
        Ok(status) => Some(status.expect("waiting for schemathesis")),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let _ = finished.recv();
            None
        }
    };
    let report = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(status) => (status.success(), report),
        None => (
            false,
            format!("stopped after {timeout:?}, unfinished\n{report}"),
        ),
    }
}

/// Stock and one order, so that lists, reads and cancels answer with real data; returns the
/// order's id.
async fn seed(base: &str) -> String {
    let http = reqwest::Client::new();
    let stock = http
        .put(format!("{base}/v1/inventory/SKU-1"))
        .json(&json!({"available": 1000}))
        .send()
        .await
        .expect("setting stock");
    assert!(stock.status().is_success(), "{}", stock.status());
    let placed = http
        .post(format!("{base}/v1/orders"))
        .json(&json!({
            "customer_id": "c-42", "customer_email": "ada@example.com", "currency": "EUR",
            "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1299}],
            "shipping_address": {"name": "Ada L", "line1": "1 Main St", "city": "Berlin",
                                 "postal_code": "10115", "country": "DE"}
        }))
        .send()
        .await
        .expect("placing an order");
    assert_eq!(placed.status(), reqwest::StatusCode::CREATED);
    let order: Value = placed.json().await.expect("the placed order");
    order["id"].as_str().expect("an order id").to_string()
}

/// The run's configuration: the seeded order's id where a path names an order (so those
/// operations reach a real one), and the operations whose 422 depends on more than one value.
fn config_toml(order_id: &str) -> String {
    let mut toml = String::new();
    for path in [
        "/v1/orders/{id}",
        "/v1/orders/{id}/state",
        "/v1/orders/{id}/events",
        "/v1/orders/{id}/cancel",
        "/v1/orders/{id}/notifications",
        "/v1/admin/orders/{id}/replay",
        "/v1/admin/orders/{id}/trace",
    ] {
        toml.push_str(&format!(
            "[[operations]]\ninclude-path = \"{path}\"\nparameters = {{ \"path.id\" = \"{order_id}\" }}\n"
        ));
        if DATA_DEPENDENT_422.contains(&path) {
            toml.push_str(&data_dependent_422());
        }
        toml.push('\n');
    }
    for path in DATA_DEPENDENT_422
        .iter()
        .filter(|p| !p.starts_with("/v1/orders/{id}") && !p.starts_with("/v1/admin/orders/"))
    {
        toml.push_str(&format!("[[operations]]\ninclude-path = \"{path}\"\n"));
        toml.push_str(&data_dependent_422());
        toml.push('\n');
    }
    toml
}

fn data_dependent_422() -> String {
    "checks.positive_data_acceptance.expected-statuses = \
     [\"2XX\", \"401\", \"403\", \"404\", \"409\", \"422\"]\n"
        .to_string()
}
