//! The README, run as a user pastes it: against a real `orderflow serve` with JSON logs, its
//! "Try it" curl calls, the commands of "Commands" and the `jq` filter of "Following one
//! order" run in bash with `orderflow` on the PATH, each of them must succeed; and the
//! metrics table names exactly what `/metrics` serves after an order went through.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orderflow_testkit::{orderflow, World};

const ADMIN_TOKEN: &str = "readme-test-token";

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("reading README.md")
}

/// The `sh` code blocks of the README section whose heading is `heading`, each as the
/// commands it holds (continued lines joined, comment lines left out).
fn commands_under(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("the README has no {heading:?}"));
    let section = &readme[start + heading.len()..];
    // Up to the next heading (`##`; a comment in a code block has one `#`).
    let section = &section[..section.find("\n##").unwrap_or(section.len())];
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block && line.trim() == "```sh";
            continue;
        }
        if !in_block || line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        // bash reads the lines as they are; a command ends where its quotes are closed and
        // its line is not continued with a backslash.
        current.push_str(line);
        current.push('\n');
        let open_quotes = current.matches('\'').count() % 2 == 1;
        if open_quotes || line.trim_end().ends_with('\\') {
            continue;
        }
        let command = std::mem::take(&mut current);
        // The system runs already (as `serve` below), and a collector is not needed.
        if !command.contains("scripts/run") && !command.trim_start().starts_with("docker ") {
            commands.push(command);
        }
    }
    assert!(!commands.is_empty(), "no commands under {heading:?}");
    commands
}

/// Runs `command` in bash with `orderflow` on the PATH and `env`; returns its stdout.
fn bash(command: &str, env: &[(String, String)], dir: &Path) -> String {
    let binary = Path::new(env!("CARGO_BIN_EXE_orderflow"));
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-o", "pipefail", "-c", command])
        .env("PATH", path)
        .envs(env.iter().map(|(n, v)| (n, v)))
        .current_dir(dir)
        .output()
        .expect("running bash");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the README's `{command}` failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The metric names in the README's metrics table: every backticked `orderflow_...` of its
/// first column, labels left out; with whether the row says it appears only once it happens.
fn documented_metrics(readme: &str) -> Vec<(String, bool)> {
    let table = &readme[readme.find("| metric |").expect("the metrics table")..];
    let table = &table[..table.find("\n\n").unwrap_or(table.len())];
    let mut names = Vec::new();
    for row in table.lines().skip(2) {
        let mut columns = row.split('|').skip(1);
        let (Some(metric), Some(meaning)) = (columns.next(), columns.next()) else {
            continue;
        };
        let conditional = meaning.contains("once it happens");
        for name in metric.split('`').skip(1).step_by(2) {
            let name = name.split('{').next().unwrap_or(name);
            names.push((name.to_string(), conditional));
        }
    }
    names
}

/// The metric families `/metrics` serves (from its `# TYPE` lines).
fn served_metrics(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_readme_examples_run_as_written_and_the_metrics_table_names_what_serve_serves() {
    let world = World::new().await;
    let folder = std::env::temp_dir().join(format!("orderflow-readme-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    let log_path = folder.join("serve.log");
    // What scripts/run writes before serve's own lines: its notes and cargo's, not JSON.
    let mut log = std::fs::File::create(&log_path).unwrap();
    writeln!(
        log,
        "scripts/run: using the development master key in .orderflow/master.key"
    )
    .unwrap();
    writeln!(
        log,
        "    Finished `release` profile [optimized] target(s) in 0.40s"
    )
    .unwrap();
    let launcher = orderflow!(&world)
        .env("ORDERFLOW_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ORDERFLOW_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,sqlx=warn")
        // The README cancels its order "for a moment after inventory confirmed it", while the
        // carrier books; here that moment lasts as long as the test.
        .env("ORDERFLOW_CARRIER_BOOKING_DELAY_MS", "600000");
    let mut child = launcher
        .command(&["serve", "--http-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("starting serve");
    // The ready line a script waits for, with JSON logs too.
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut banner,
    )
    .unwrap();
    let base = banner
        .trim()
        .strip_prefix("orderflow gateway listening on ")
        .unwrap_or_else(|| panic!("no ready line with JSON logs: {banner:?}"))
        .to_string();

    let mut env: Vec<(String, String)> = orderflow_testkit::binary_env(&world)
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    env.push(("ORDERFLOW_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()));
    let readme = readme();
    let here = |command: &str| command.replace("http://127.0.0.1:8080", &base);

    // "Try it": the curl calls, the order's id from the Location of the 201.
    let mut id = String::new();
    for command in commands_under(&readme, "## Try it") {
        let command = here(&command).replace("<id>", &id);
        let out = bash(&command, &env, &folder);
        if command.contains("-X POST") && command.contains("/v1/orders ") {
            assert!(out.starts_with("HTTP/1.1 201"), "{out}");
            id = out
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("location: /v1/orders/")
                        .map(str::to_string)
                })
                .expect("a Location")
                .trim()
                .to_string();
        }
        if command.contains("/cancel") {
            assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        }
    }
    assert!(!id.is_empty(), "the README places an order");

    // "Commands": what an operator types after that order.
    for command in commands_under(&readme, "## Commands") {
        bash(&command.replace("<order-id>", &id), &env, &folder);
    }

    // "Following one order": the trace id from the order's events, then its log lines.
    let mut trace_id = String::new();
    for command in commands_under(&readme, "### Following one order") {
        let command = command
            .replace("<order-id>", &id)
            .replace("<trace id>", &trace_id);
        let out = bash(&command, &env, &folder);
        if command.contains("traceparent") {
            trace_id = out.trim().split('-').nth(1).unwrap_or_default().to_string();
            assert_eq!(trace_id.len(), 32, "{out}");
        } else {
            assert!(
                out.lines().count() >= 1 && out.contains(&trace_id),
                "the jq filter found no line of the order's trace: {out}"
            );
        }
    }

    // The metrics table against what serve serves once the order went through.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let served = loop {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let served = served_metrics(&text);
        if served.iter().any(|m| m.starts_with("orderflow_consumer_"))
            || started.elapsed() > Duration::from_secs(60)
        {
            break served;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let documented = documented_metrics(&readme);
    let names: BTreeSet<String> = documented.iter().map(|(n, _)| n.clone()).collect();
    let undocumented: Vec<&String> = served.difference(&names).collect();
    let missing: Vec<&String> = documented
        .iter()
        .filter(|(name, conditional)| !conditional && !served.contains(name))
        .map(|(name, _)| name)
        .collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "served but not in the README: {undocumented:?}; in the README but not served: {missing:?}"
    );

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&folder);
    world.cleanup().await;
}
