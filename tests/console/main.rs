//! The operator console (`/console`) in a real browser: the real `orderflow serve` (over a
//! fresh database and streams of its own, admin token set), and `console.cjs` driving
//! headless Chromium through it with playwright-core. Scenarios: log in; orders placed
//! through the API change the live chart and event list without a reload; an order's
//! timeline and trace (and a trace of the shared contract, stubbed in the browser, with its
//! dead-lettered and pending steps marked); a dead letter redriven from the consumers page; the
//! partners (carrier, mail service) on the same page as `/metrics` counts them, and, with
//! `/metrics` stubbed, one down and one not called yet; a projection rebuilt and watched to its
//! end; the analytics charts; and, on a gateway without a token, the page
//! that says how to turn the admin routes on. Each scenario asserts on what the page shows and
//! saves a screenshot under `<target>/console-screenshots/`.
//!
//! The dead letter is real: the notifications worker sends to a webhook that refuses its
//! first request with a 400, which the worker gives up on at once, so that message is parked.
//!
//! Needs node, playwright-core (`scripts/install-console-test` puts the pinned version under
//! `.orderflow/console-test/`; `scripts/test` runs it first) and Debian's chromium
//! (`/usr/bin/chromium`, installed by the same script). `ORDERFLOW_NODE`,
//! `ORDERFLOW_PLAYWRIGHT_MODULES` and `ORDERFLOW_CHROMIUM` name others. Without them the test
//! fails and says how to install them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use orderflow_testkit::http::{Answer, Recorder};
use orderflow_testkit::{orderflow, World};
use serde_json::Value;

const ADMIN_TOKEN: &str = "console-admin-token-0123456789";
/// How long the browser may take for all scenarios of one test.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

const INSTALL: &str = "run scripts/install-console-test (scripts/test runs it): it installs \
                       playwright-core under .orderflow/console-test/ and Debian's chromium";

/// Node, the folder holding playwright-core, and the browser; panics saying how to install
/// what is missing.
fn tools() -> (PathBuf, PathBuf, PathBuf) {
    let node =
        std::env::var_os("ORDERFLOW_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let version = std::process::Command::new(&node).arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "node is missing ({}): install it (Debian: apt-get install nodejs npm), then {INSTALL}",
        node.display()
    );
    let modules = std::env::var_os("ORDERFLOW_PLAYWRIGHT_MODULES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".orderflow/console-test/node_modules"),
        PathBuf::from,
    );
    assert!(
        modules.join("playwright-core/package.json").is_file(),
        "playwright-core is missing from {}: {INSTALL}",
        modules.display()
    );
    let chromium = std::env::var_os("ORDERFLOW_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.is_file(),
        "chromium is missing ({}): {INSTALL} (as root: apt-get install -y chromium)",
        chromium.display()
    );
    (node, modules, chromium)
}

/// Where the screenshots go: `<target>/console-screenshots/`.
fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("console-screenshots")
}

/// Runs `console.cjs` with `scenarios` against `base`; panics with its output unless every
/// scenario passed.
async fn browse(base: &str, token: Option<&str>, scenarios: &[&str]) {
    let (node, modules, chromium) = tools();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/console.cjs");
    let mut command = tokio::process::Command::new(node);
    command
        .arg(script)
        .env("NODE_PATH", modules)
        .env("CONSOLE_BASE", base)
        .env("CONSOLE_TOKEN", token.unwrap_or_default())
        .env("CONSOLE_SCENARIOS", scenarios.join(","))
        .env("CONSOLE_SHOTS", screenshots())
        .env("CONSOLE_CHROMIUM", chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(BROWSER_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("the browser run took longer than {BROWSER_TIMEOUT:?}"))
        .expect("running node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for scenario in scenarios {
        assert!(
            stdout.lines().any(|l| l == format!("ok {scenario}")),
            "scenario {scenario} did not pass:\n{stdout}\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_watches_and_repairs_the_system_in_the_console() {
    let world = World::new().await;
    // The first notification is refused for good (400): the worker parks it at once.
    let webhook = Recorder::scripted(vec![Answer::Status(400)], "HTTP-").await;
    let (mut serve, base) = orderflow!(&world)
        .envs(&[
            ("ORDERFLOW_ADMIN_TOKEN", ADMIN_TOKEN),
            ("ORDERFLOW_NOTIFY_CHANNEL", "webhook"),
            ("ORDERFLOW_NOTIFY_WEBHOOK_URL", &webhook.url),
        ])
        .serve(&[]);
    browse(
        &base,
        Some(ADMIN_TOKEN),
        &[
            "login",
            "flow",
            "order",
            "trace",
            "redrive",
            "partners",
            "rebuild",
            "analytics",
        ],
    )
    .await;
    serve.assert_running();

    // What the page showed happened: nothing is parked any more, and the redriven message
    // reached the webhook a second time.
    let dlq: Value = reqwest::Client::new()
        .get(format!("{base}/v1/admin/dlq"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("the dead letters");
    assert_eq!(dlq["dead_letters"], serde_json::json!([]), "{dlq}");
    assert!(
        !webhook.repeated_keys().is_empty(),
        "the redriven notification was sent again: {:?}",
        webhook.keys()
    );
    serve.terminate(Duration::from_secs(20)).await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_the_console_says_how_to_turn_it_on() {
    let world = World::new().await;
    // Blank even when the environment of the test run has one.
    let (serve, base) = orderflow!(&world)
        .env("ORDERFLOW_ADMIN_TOKEN", "")
        .serve(&[]);
    browse(&base, None, &["disabled"]).await;
    serve.terminate(Duration::from_secs(20)).await;
    world.cleanup().await;
}
