//! The real `orderflow` binary as a child process over a test's [`World`].
//!
//! Only the root package's tests know where cargo built the binary
//! (`env!("CARGO_BIN_EXE_orderflow")`), so they name it with the [`orderflow!`](crate::orderflow!) macro:
//!
//! ```ignore
//! let orderflow = orderflow_testkit::orderflow!(&world);
//! let relay = orderflow.start(&["relay"]);
//! relay.terminate(Duration::from_secs(10)).await;
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::World;

/// An [`Orderflow`] launcher for `$world`, with the binary the calling package built.
#[macro_export]
macro_rules! orderflow {
    ($world:expr) => {
        $crate::Orderflow::new(env!("CARGO_BIN_EXE_orderflow"), $world)
    };
}

/// What the binary needs to run against `world`: its database (with a small connection
/// budget, as tests run side by side), its streams when it has any, a carrier that books at
/// once, and quiet logs.
pub fn binary_env(world: &World) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("ORDERFLOW_DATABASE_URL", world.db.options.url.clone()),
        // PostgreSQL allows 100 connections; tests run side by side.
        ("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "4".into()),
        // The simulated carrier books at once: tests do not wait for a person.
        ("ORDERFLOW_CARRIER_BOOKING_DELAY_MS", "0".into()),
        ("RUST_LOG", "warn,sqlx=error".into()),
        (
            "ORDERFLOW_MASTER_KEY",
            crate::database::TEST_MASTER_KEY.into(),
        ),
    ];
    if let Some(bus) = world.try_bus() {
        env.extend([
            ("ORDERFLOW_NATS_URL", bus.options.nats_url.clone()),
            ("ORDERFLOW_STREAM", bus.options.stream.clone()),
            (
                "ORDERFLOW_SUBJECT_PREFIX",
                bus.options.subject_prefix.clone(),
            ),
        ]);
    }
    env
}

/// Runs the `orderflow` binary at a path with the environment of a world ([`binary_env`])
/// and any extra variables.
#[derive(Debug, Clone)]
pub struct Orderflow {
    binary: &'static str,
    env: Vec<(String, String)>,
}

impl Orderflow {
    /// The binary at `binary` over `world`; see [`orderflow!`](crate::orderflow!).
    pub fn new(binary: &'static str, world: &World) -> Self {
        Self {
            binary,
            env: binary_env(world)
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
        }
    }

    /// Sets (or overrides) one environment variable.
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets (or overrides) several environment variables.
    #[must_use]
    pub fn envs(self, vars: &[(&str, &str)]) -> Self {
        vars.iter()
            .fold(self, |launcher, (name, value)| launcher.env(name, value))
    }

    /// A command for `orderflow <args>` with the environment set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.binary);
        command
            .args(args)
            .envs(self.env.iter().map(|(n, v)| (n, v)));
        command
    }

    /// Starts `orderflow <args>` (standard output discarded, errors shown).
    ///
    /// # Panics
    /// When the binary cannot be started.
    pub fn start(&self, args: &[&str]) -> Process {
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the orderflow binary");
        Process {
            child,
            what: args.join(" "),
        }
    }

    /// Starts `orderflow serve --http-addr 127.0.0.1:0 <args>` and returns it with the base
    /// URL its banner names (`http://127.0.0.1:<port>`).
    ///
    /// # Panics
    /// When it does not start or prints no banner.
    pub fn serve(&self, args: &[&str]) -> (Process, String) {
        let mut all = vec!["serve", "--http-addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = self
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting `orderflow serve`");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the serve banner");
        let base = line
            .trim()
            .strip_prefix("orderflow gateway listening on ")
            .unwrap_or_else(|| panic!("unexpected first line of `orderflow serve`: {line:?}"))
            .to_string();
        let process = Process {
            child,
            what: all.join(" "),
        };
        (process, base)
    }

    /// Runs `orderflow <args>` to its end and returns what it did.
    ///
    /// # Panics
    /// When the binary cannot be run.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .expect("running the orderflow binary")
    }

    /// Runs `orderflow <args>` to its end and returns its standard output.
    ///
    /// # Panics
    /// When it does not succeed, with what it printed on standard error.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            output.status.success(),
            "`orderflow {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// A running `orderflow` process, SIGKILLed when dropped.
pub struct Process {
    child: Child,
    what: String,
}

impl Process {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown handler runs, nothing is flushed.
    pub fn kill(mut self) {
        self.sigkill();
    }

    fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to stop by itself.
    ///
    /// # Panics
    /// When it still runs after `within`, or exits with a failure.
    pub async fn terminate(mut self, within: Duration) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the process") {
                assert!(
                    status.success(),
                    "`orderflow {}` stopped with {status} after SIGTERM",
                    self.what
                );
                return;
            }
            assert!(
                started.elapsed() < within,
                "`orderflow {}` still runs {within:?} after SIGTERM",
                self.what
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Fails the test when the process already exited (it should be running).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("`orderflow {}` exited early with {status}", self.what);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server a test starts itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding a free loopback port")
        .port()
}
