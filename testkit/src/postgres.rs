//! A PostgreSQL cluster of a test's own: made with `initdb` in a temporary folder, served on a
//! free port of 127.0.0.1 with trust authentication, so that a test can stop, kill and start
//! it again without touching the machine's shared server or any other test.
//!
//! The binaries (`initdb`, `pg_ctl`) come from `ORDERFLOW_TEST_PG_BIN` when set, else from
//! the newest `/usr/lib/postgresql/<version>/bin` (Debian's layout), else from the `PATH`.
//! `initdb` refuses to run as root, so when the tests run as root the cluster is made and
//! run as the `postgres` OS user (`runuser -u postgres --`), which is given the folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::process::free_port;

/// How [`PostgresServer::stop`] asks the server to stop (`pg_ctl stop -m <mode>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Waits for every session to end by itself.
    Smart,
    /// Rolls back open transactions, ends the sessions, and shuts down cleanly.
    Fast,
    /// Ends every process at once, without a shutdown checkpoint: the next start recovers
    /// from the WAL, as after a crash.
    Immediate,
}

impl StopMode {
    fn as_str(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL cluster in a temporary folder on 127.0.0.1 and a free port; stopped
/// (immediate mode) and its folder removed when dropped.
pub struct PostgresServer {
    bin: PathBuf,
    folder: PathBuf,
    port: u16,
    /// `Some("postgres")` when the tests run as root.
    run_as: Option<&'static str>,
    running: bool,
    frozen: bool,
}

/// The folder holding `initdb` and `pg_ctl`.
fn binaries() -> PathBuf {
    if let Ok(dir) = std::env::var("ORDERFLOW_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").exists())
        .unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server binaries (initdb, pg_ctl) found in /usr/lib/postgresql/*/bin \
                 or on the PATH: install them with `apt-get install postgresql` (or \
                 `scripts/services up`), or set ORDERFLOW_TEST_PG_BIN to their folder"
            )
        })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl PostgresServer {
    /// Makes a cluster with `initdb` and starts it; returns once it accepts connections.
    ///
    /// # Panics
    /// When the binaries are missing, or the cluster cannot be made or started (with the
    /// server's log).
    pub async fn start() -> Self {
        let bin = binaries();
        let folder = std::env::temp_dir().join(format!(
            "orderflow-test-pg-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&folder).expect("creating the PostgreSQL test folder");
        let run_as = running_as_root().then_some("postgres");
        let mut server = Self {
            bin,
            folder,
            port: free_port(),
            run_as,
            running: false,
            frozen: false,
        };
        if let Some(user) = run_as {
            let given = Command::new("chown")
                .arg(format!("{user}:{user}"))
                .arg(&server.folder)
                .status()
                .expect("running chown");
            assert!(given.success(), "cannot give {:?} to {user}", server.folder);
        }
        let data = server.data();
        let output = server.run(
            "initdb",
            &[
                "-D",
                data.to_str().expect("a UTF-8 temp path"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            output.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        server.start_again().await;
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`: the maintenance database; tests make
    /// their own databases on it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file (appended to by every start).
    pub fn log_file(&self) -> PathBuf {
        self.folder.join("server.log")
    }

    fn data(&self) -> PathBuf {
        self.folder.join("data")
    }

    /// Runs one of the cluster's binaries, as the `postgres` user when the tests run as root.
    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let tool = self.bin.join(tool);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&tool);
                command
            }
            None => Command::new(&tool),
        };
        command
            .args(args)
            .current_dir(&self.folder)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()))
    }

    /// Starts the server again (after [`PostgresServer::stop`] or [`PostgresServer::kill`])
    /// on the same folder and port; returns once it accepts connections.
    ///
    /// # Panics
    /// When it does not start within 30 s, with the server's log.
    pub async fn start_again(&mut self) {
        assert!(!self.running, "the server already runs");
        let data = self.data();
        let log = self.log_file();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
             -c max_connections=100 -c fsync=off -c full_page_writes=off",
            self.port
        );
        let output = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("a UTF-8 temp path"),
                "-l",
                log.to_str().expect("a UTF-8 temp path"),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            output.status.success(),
            "pg_ctl start failed:\n{}{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.running = true;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "PostgreSQL did not listen on port {} within 30 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `pg_ctl stop -m <mode>`, waiting until the server is gone.
    ///
    /// # Panics
    /// When `pg_ctl` fails.
    pub fn stop(&mut self, mode: StopMode) {
        let data = self.data();
        let output = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("a UTF-8 temp path"),
                "-m",
                mode.as_str(),
                "-w",
                "-t",
                "30",
                "stop",
            ],
        );
        assert!(
            output.status.success(),
            "pg_ctl stop -m {} failed:\n{}{}",
            mode.as_str(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.running = false;
    }

    /// SIGKILLs the postmaster, as a crash would, and waits until its processes are gone (the
    /// next [`PostgresServer::start_again`] recovers from the WAL).
    ///
    /// # Panics
    /// When the server's processes do not end within 30 s.
    pub async fn kill(&mut self) {
        let pid_file = self.data().join("postmaster.pid");
        let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.lines().next().map(str::trim).map(str::to_string))
        else {
            self.running = false;
            return;
        };
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        // The backends notice their postmaster died and end by themselves; a new postmaster
        // refuses to start while any of them still holds the shared memory.
        let started = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists()
            || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "PostgreSQL (pid {pid}) still runs 30 s after SIGKILL"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.running = false;
    }

    /// SIGSTOPs the postmaster and every process of it: the server hangs (connections are
    /// accepted by the kernel and never answered; statements in flight never end) until
    /// [`PostgresServer::thaw`].
    ///
    /// # Panics
    /// When the server does not run or cannot be signalled.
    pub fn freeze(&mut self) {
        self.signal_all("-STOP").expect("freezing PostgreSQL");
        self.frozen = true;
    }

    /// SIGCONTs what [`PostgresServer::freeze`] stopped.
    ///
    /// # Panics
    /// When the server cannot be signalled.
    pub fn thaw(&mut self) {
        self.signal_all("-CONT").expect("thawing PostgreSQL");
        self.frozen = false;
    }

    /// Sends `signal` to the postmaster and its children.
    fn signal_all(&self, signal: &str) -> Result<(), String> {
        let pid = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(|line| line.trim().to_string()))
            .ok_or("the server does not run (no postmaster.pid)")?;
        let mut pids = vec![pid.clone()];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: the command may hold spaces, so read after the ')'.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if parent == Some(pid.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let status = Command::new("kill")
            .arg(signal)
            .args(&pids)
            .status()
            .map_err(|e| format!("running kill: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill {signal} {pids:?} failed"))
        }
    }

    /// The folder of the cluster (its data folder is `data/` inside).
    pub fn folder(&self) -> &Path {
        &self.folder
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.frozen {
            let _ = self.signal_all("-CONT");
        }
        if self.running {
            let data = self.data();
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap_or(""),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}
