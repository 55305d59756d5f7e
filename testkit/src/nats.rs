//! NATS servers of a test's own, so that a test can kill them, empty their stores and start
//! them again without touching the machine's shared server or any other test:
//!
//! - [`NatsServer`]: one `nats-server` with JetStream, on its own port and store folder.
//! - [`NatsCluster`]: three of them routed into one JetStream cluster (nodes `n1`, `n2`,
//!   `n3`), to kill and restart single nodes and to ask which node leads a stream.
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
    /// Arguments given to every start, besides the port and the store.
    extra: Vec<String>,
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
        Self::start_on(free_port(), &[]).await
    }

    /// Starts a server on `port` (one a test picked before, say to start a client first) with
    /// `extra` arguments (such as `--user` and `--pass`), and waits until it accepts
    /// connections.
    ///
    /// # Panics
    /// When `nats-server` cannot be started, with how to install it.
    pub async fn start_on(port: u16, extra: &[&str]) -> Self {
        let store = std::env::temp_dir().join(format!(
            "orderflow-test-nats-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&store).expect("creating the NATS store folder");
        let mut server = Self {
            port,
            store,
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
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
    /// When it does not start within 60 s.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_nats_server(self.port, &self.store, &self.extra));
        wait_until_listening(self.port).await;
    }
}

/// Starts `nats-server` with JetStream on 127.0.0.1:`port`, storing in `store`, with `extra`
/// arguments.
///
/// # Panics
/// When the binary cannot be started, with how to install it.
fn spawn_nats_server(port: u16, store: &Path, extra: &[String]) -> Child {
    let binary = nats_server_binary();
    Command::new(&binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {binary} ({e}): install it with `apt-get install nats-server` \
                 (or `scripts/services up`), or set ORDERFLOW_TEST_NATS_SERVER"
            )
        })
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
///
/// # Panics
/// When nothing does within 60 s.
async fn wait_until_listening(port: u16) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nats-server did not listen on port {port} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// The nodes of a [`NatsCluster`].
const CLUSTER_SIZE: usize = 3;

/// How long a cluster gets to elect a leader (of JetStream's meta group, or of a stream).
const ELECTION_WITHIN: Duration = Duration::from_secs(30);

/// One node of a [`NatsCluster`].
struct ClusterNode {
    port: u16,
    route_port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

/// Three `nats-server`s with JetStream on 127.0.0.1, routed into one cluster of a test's own:
/// nodes `n1`, `n2` and `n3` (indexes 0, 1 and 2 here), each on free ports with its own store
/// folder. Every node is SIGKILLed and the folders removed when dropped.
pub struct NatsCluster {
    name: String,
    folder: PathBuf,
    nodes: Vec<ClusterNode>,
}

impl NatsCluster {
    /// Starts the three nodes and waits until JetStream has a meta leader, so that streams
    /// can be created.
    ///
    /// # Panics
    /// When `nats-server` cannot be started or no meta leader is elected within 30 s.
    pub async fn start() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let folder = std::env::temp_dir().join(format!("orderflow-test-nats-cluster-{id}"));
        // Three ports per node, all different (a port released by `free_port` may come back).
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 * CLUSTER_SIZE {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let nodes = ports
            .chunks(3)
            .map(|three| ClusterNode {
                port: three[0],
                route_port: three[1],
                monitor_port: three[2],
                child: None,
            })
            .collect();
        let mut cluster = Self {
            name: format!("orderflow-test-{}", &id[..8]),
            folder,
            nodes,
        };
        for node in 0..CLUSTER_SIZE {
            cluster.spawn(node);
        }
        for node in 0..CLUSTER_SIZE {
            wait_until_listening(cluster.nodes[node].port).await;
        }
        cluster.wait_for_meta_leader(0).await;
        cluster
    }

    /// The URLs of every node, separated by commas, as `ORDERFLOW_NATS_URL` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("nats://127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The URL of one node.
    pub fn url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[node].port)
    }

    /// The server name of a node: `n1` for node 0.
    pub fn node_name(node: usize) -> String {
        format!("n{}", node + 1)
    }

    /// Whether a node runs (it was not killed, or was restarted since).
    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node].child.is_some()
    }

    /// SIGKILLs one node: it gets no chance to flush, step down or say goodbye. Its store is
    /// kept.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a node again (after [`NatsCluster::kill`]) on its ports and store, and waits
    /// until it is back in the cluster (it knows the meta leader).
    ///
    /// # Panics
    /// When it does not start, or does not see a meta leader, within 30 s.
    pub async fn restart(&mut self, node: usize) {
        self.kill(node);
        self.spawn(node);
        wait_until_listening(self.nodes[node].port).await;
        self.wait_for_meta_leader(node).await;
    }

    /// The node that leads `stream` (index 0, 1 or 2), read from the stream's info, waiting
    /// until the stream has a leader among the running nodes (after the leader was killed,
    /// the others elect a new one).
    ///
    /// # Panics
    /// When no running node leads the stream within 30 s.
    pub async fn stream_leader(&self, stream: &str) -> usize {
        let started = Instant::now();
        loop {
            let last = match self.leader_name(stream).await {
                Ok(name) => {
                    let running = (0..CLUSTER_SIZE)
                        .find(|&node| Self::node_name(node) == name && self.is_running(node));
                    if let Some(node) = running {
                        return node;
                    }
                    format!("leader {name}, which is not running")
                }
                Err(error) => error,
            };
            assert!(
                started.elapsed() < ELECTION_WITHIN,
                "stream {stream} has no leader among the running nodes after {ELECTION_WITHIN:?} \
                 ({last})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server name of the leader of `stream`, as the stream's info says.
    async fn leader_name(&self, stream: &str) -> Result<String, String> {
        // async-nats takes several servers as a list, not as one comma-separated string.
        let running: Vec<async_nats::ServerAddr> = (0..CLUSTER_SIZE)
            .filter(|&node| self.is_running(node))
            .map(|node| self.url(node).parse().expect("a node's URL"))
            .collect();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(running)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let jetstream = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .build(client);
        let info = jetstream
            .get_stream(stream)
            .await
            .map_err(|e| format!("no stream info: {e}"))?
            .get_info()
            .await
            .map_err(|e| format!("no stream info: {e}"))?;
        info.cluster
            .and_then(|cluster| cluster.leader)
            .ok_or_else(|| "the stream has no leader".to_string())
    }

    fn spawn(&mut self, node: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.route_port))
            .collect();
        let this = &self.nodes[node];
        let store = self.folder.join(Self::node_name(node));
        std::fs::create_dir_all(&store).expect("creating a node's store folder");
        let extra = [
            "--server_name".to_string(),
            Self::node_name(node),
            "--cluster_name".to_string(),
            self.name.clone(),
            "--cluster".to_string(),
            format!("nats://127.0.0.1:{}", this.route_port),
            "--routes".to_string(),
            routes.join(","),
            "-m".to_string(),
            this.monitor_port.to_string(),
        ];
        let child = spawn_nats_server(this.port, &store, &extra);
        self.nodes[node].child = Some(child);
    }

    /// Waits until `node`'s monitoring endpoint (`/jsz`) names a JetStream meta leader.
    async fn wait_for_meta_leader(&self, node: usize) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let url = format!("http://127.0.0.1:{}/jsz", self.nodes[node].monitor_port);
        let started = Instant::now();
        loop {
            if let Ok(response) = http.get(&url).send().await {
                if let Ok(jsz) = response.json::<serde_json::Value>().await {
                    if jsz["meta_cluster"]["leader"]
                        .as_str()
                        .is_some_and(|leader| !leader.is_empty())
                    {
                        return;
                    }
                }
            }
            assert!(
                started.elapsed() < ELECTION_WITHIN,
                "node {} sees no JetStream meta leader after {ELECTION_WITHIN:?}",
                Self::node_name(node)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in 0..CLUSTER_SIZE {
            self.kill(node);
        }
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}
