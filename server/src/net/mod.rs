//! The tokio shell: accepts connections, runs the processor thread, ticks
//! the clock into it, and shuts down cleanly.

pub mod client;
pub mod fourlw;
pub mod processor;

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use processor::{Input, Processor};

/// Requests at most queued for the processor; a full queue stops reading sockets.
const INPUT_QUEUE_MAX: usize = 16_384;

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_err() {
        // No urandom: fall back to std's randomly keyed hasher.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        return h.finish();
    }
    u64::from_be_bytes(b)
}

/// A running server.
pub struct Server {
    pub local_addr: SocketAddr,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Recovers state from the data directory, binds the client port and
    /// starts serving.
    pub async fn start(cfg: Config) -> anyhow::Result<Server> {
        let cfg = Arc::new(cfg);
        let processor = Processor::recover(cfg.clone(), random_u64)?;
        let listener = TcpListener::bind(cfg.client_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {} (clientPort in {}): {e}", cfg.client_addr, cfg.source.display()))?;
        let local_addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(INPUT_QUEUE_MAX);
        let processor_thread = std::thread::Builder::new().name("processor".into()).spawn(move || processor.run(rx))?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();

        let tick_tx = tx.clone();
        let tick_ms = (cfg.tick_ms / 2).clamp(10, 1000) as u64;
        let tick_stop = shutdown.clone();
        tracker.spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(tick_ms));
            loop {
                tokio::select! {
                    _ = interval.tick() => if tick_tx.send(Input::Tick).await.is_err() { break },
                    _ = tick_stop.cancelled() => break,
                }
            }
        });

        let accept_stop = shutdown.clone();
        let accept_tracker = tracker.clone();
        let done = tokio::spawn(async move {
            let per_ip: Arc<Mutex<HashMap<IpAddr, u32>>> = Arc::default();
            let mut next_conn_id = 1u64;
            loop {
                let (socket, addr) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = accept_stop.cancelled() => break,
                };
                {
                    let mut m = per_ip.lock().expect("per-ip map lock");
                    let n = m.entry(addr.ip()).or_default();
                    if cfg.max_client_cnxns > 0 && *n >= cfg.max_client_cnxns {
                        tracing::warn!(%addr, limit = cfg.max_client_cnxns, "too many connections from this address (maxClientCnxns)");
                        continue;
                    }
                    *n += 1;
                }
                let conn_id = next_conn_id;
                next_conn_id += 1;
                let (input, cfg, stop, per_ip) = (tx.clone(), cfg.clone(), accept_stop.clone(), per_ip.clone());
                accept_tracker.spawn(async move {
                    client::serve(socket, addr, conn_id, input, cfg, stop).await;
                    let mut m = per_ip.lock().expect("per-ip map lock");
                    if let Some(n) = m.get_mut(&addr.ip()) {
                        *n -= 1;
                        if *n == 0 {
                            m.remove(&addr.ip());
                        }
                    }
                });
            }
            accept_tracker.close();
            accept_tracker.wait().await;
            // Every connection is gone: the processor finishes its last batch (fsync) and stops.
            let _ = tx.send(Input::Shutdown).await;
            drop(tx);
            let _ = tokio::task::spawn_blocking(move || processor_thread.join()).await;
        });
        tracing::info!(addr = %local_addr, "corral listening");
        Ok(Server { local_addr, shutdown, done })
    }

    /// Stops accepting, closes connections, lets the processor finish, and waits.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.done.await;
    }
}
