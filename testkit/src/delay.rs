//! A TCP proxy that holds back what the client sends by a fixed delay and passes the
//! server's answers at once: a client whose requests reach the server late, as those of a
//! process short of CPU do (its writes wait behind its busy runtime). Used in front of NATS.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The proxy; it stops when dropped.
pub struct DelayingProxy {
    address: String,
    task: tokio::task::JoinHandle<()>,
}

impl DelayingProxy {
    /// A proxy on a free loopback port in front of `target` (`host:port`) that delays every
    /// byte from a client to the server by `delay`.
    ///
    /// # Panics
    /// When no port is free.
    pub async fn start(target: &str, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port for the proxy");
        let address = listener
            .local_addr()
            .expect("the proxy's address")
            .to_string();
        let target = target.to_string();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        pass(client, server, delay).await;
                    }
                });
            }
        });
        Self { address, task }
    }

    /// `host:port` of the proxy.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for DelayingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Passes one connection until either side closes it.
async fn pass(client: TcpStream, server: TcpStream, delay: Duration) {
    let (mut client_reads, mut client_writes) = client.into_split();
    let (mut server_reads, mut server_writes) = server.into_split();
    let (held, mut due) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reading = async move {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(read) = client_reads.read(&mut buffer).await {
            if read == 0
                || held
                    .send((Instant::now() + delay, buffer[..read].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    };
    let writing = async move {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if server_writes.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    let answering = async move {
        let _ = tokio::io::copy(&mut server_reads, &mut client_writes).await;
    };
    tokio::select! {
        () = async { tokio::join!(reading, writing); } => {}
        () = answering => {}
    }
}
