//! A `nats-server` of a test's own: its own port and JetStream store folder, so that a test
//! can kill it, empty its store and start it again without touching the machine's shared
//! server or any other test.
//!
//! The binary is `nats-server` on the `PATH` (or `ORDERFLOW_TEST_NATS_SERVER`); without it
//! the test fails with the command that installs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::free_port;

/// A `nats-server` with JetStream on 127.0.0.1 and a free port, storing under a folder of its
/// own; SIGKILLed and its folder removed when dropped.
pub struct NatsServer {
    port: u16,
    store: PathBuf,
    child: Option<Child>,
}

/// The `nats-server` binary tests start.
fn nats_server_binary() -> String {
    std::env::var("ORDERFLOW_TEST_NATS_SERVER").unwrap_or_else(|_| {
        ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .unwrap_or("nats-server")
            .to_string()
    })
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    ///
    /// # Panics
    /// When `nats-server` cannot be started, with how to install it.
    pub async fn start() -> Self {
        let store = std::env::temp_dir().join(format!(
            "orderflow-test-nats-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&store).expect("creating the NATS store folder");
        let mut server = Self {
            port: free_port(),
            store,
            child: None,
        };
        server.restart().await;
        server
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store folder.
    pub fn store(&self) -> &Path {
        &self.store
    }

    /// SIGKILL: the server gets no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Empties the JetStream store folder (the server must be killed first): every stream,
    /// message and consumer is gone, as after losing the broker's disk.
    ///
    /// # Panics
    /// When the server still runs or the folder cannot be emptied.
    pub fn wipe_store(&mut self) {
        assert!(
            self.child.is_none(),
            "kill the server before wiping its store"
        );
        std::fs::remove_dir_all(&self.store).expect("emptying the NATS store folder");
        std::fs::create_dir_all(&self.store).expect("creating the NATS store folder");
    }

    /// Starts the server again (after [`NatsServer::kill`]) on the same port and store, and
    /// waits until it accepts connections.
    ///
    /// # Panics
    /// When it does not start within 10 s.
    pub async fn restart(&mut self) {
        self.kill();
        let binary = nats_server_binary();
        let child = Command::new(&binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary} ({e}): install it with `apt-get install nats-server` \
                     (or `scripts/services up`), or set ORDERFLOW_TEST_NATS_SERVER"
                )
            });
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{binary} did not listen on port {} within 10 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
