//! The tokio shell: accepts connections, runs the processor task, ticks
//! the clock into it, and shuts down cleanly.

pub mod client;
pub mod fourlw;
pub mod peer;
pub mod processor;
pub mod sasl;
pub mod tls;
pub mod x509;

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use processor::{Input, Processor};

/// Requests at most queued for the processor; a full queue stops reading sockets.
pub const INPUT_QUEUE_MAX: usize = 16_384;

pub(crate) fn random_u64() -> u64 {
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
    /// The TLS listener's address, when `secureClientPort` is set.
    pub secure_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    /// Ends once everything the server started has stopped; gives the
    /// processor's error if it stopped on its own.
    done: tokio::task::JoinHandle<Result<(), String>>,
    store: crate::store::Store,
    status: tokio::sync::watch::Receiver<processor::Status>,
    peers: Option<peer::PeerNet>,
}

/// What every accept loop and connection task shares.
struct Shared {
    cfg: Arc<Config>,
    input: mpsc::Sender<Input>,
    per_ip: Arc<Mutex<HashMap<IpAddr, u32>>>,
    next_conn_id: AtomicU64,
    stop: CancellationToken,
    tracker: TaskTracker,
}

/// How long a TLS client may take to complete its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

impl Shared {
    /// Counts a connection against `maxClientCnxns` (per address) and
    /// `maxCnxns` (in all); `Err` names the limit it is over. The counts are
    /// given back when the returned [`Slot`] is dropped.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut m = self.per_ip.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: u32 = m.values().sum();
        if self.cfg.max_cnxns > 0 && total >= self.cfg.max_cnxns {
            return Err("maxCnxns");
        }
        let n = m.entry(ip).or_default();
        if self.cfg.max_client_cnxns > 0 && *n >= self.cfg.max_client_cnxns {
            return Err("maxClientCnxns");
        }
        *n += 1;
        Ok(Slot { shared: self.clone(), ip })
    }

    fn release(&self, ip: IpAddr) {
        // Called from `Slot::drop`, maybe while a task unwinds: must not panic.
        let mut m = self.per_ip.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Stops the whole server when the processor task unwinds: an invariant
/// it asserts on apply failed (a member whose state left the log's), and a
/// server without its processor would keep taking connections it never
/// answers. Stopped, the process exits non-zero and a supervisor restarts
/// it from its log. A processor that returns stops the server itself.
struct StopOnPanic(CancellationToken);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.cancel();
        }
    }
}

/// A connection's place in its address's `maxClientCnxns` count, moved into
/// the connection task and given back when dropped, however the task ends
/// (a panic included: a call at the end of the task would be skipped).
pub struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.release(self.ip);
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    loop {
        let (socket, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shared.stop.cancelled() => break,
        };
        let slot = match shared.admit(addr.ip()) {
            Ok(slot) => slot,
            Err("maxCnxns") => {
                tracing::warn!(%addr, limit = shared.cfg.max_cnxns, "too many connections in all (maxCnxns)");
                continue;
            }
            Err(limit) => {
                tracing::warn!(%addr, limit = shared.cfg.max_client_cnxns, "too many connections from this address ({limit})");
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (tls, shared2) = (tls.clone(), shared.clone());
        shared.tracker.spawn(async move {
            let (input, cfg, stop) = (shared2.input.clone(), shared2.cfg.clone(), shared2.stop.clone());
            let conn = async move {
                match tls {
                    None => client::serve(socket, addr, conn_id, slot, Vec::new(), input, cfg, stop).await,
                    Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => {
                            // X509AuthenticationProvider: a client certificate is an identity.
                            let ids = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| x509::subject_dn(c))
                                .map(|dn| x509_ids(&dn, cfg.x509_super_user.as_deref()))
                                .unwrap_or_default();
                            client::serve(stream, addr, conn_id, slot, ids, input, cfg, stop).await
                        }
                        Ok(Err(e)) => {
                            drop(slot);
                            tracing::info!(%addr, "TLS handshake failed: {e}")
                        }
                        Err(_) => {
                            drop(slot);
                            tracing::info!(%addr, "TLS handshake timed out")
                        }
                    },
                }
            };
            // On shutdown every connection closes at once, whatever phase it is
            // in (a handshake may otherwise wait out its timeout).
            tokio::select! {
                _ = conn => {}
                _ = shared2.stop.cancelled() => {}
            }
        });
    }
}

/// Starts the links to the other members: listens on this member's quorum
/// port (`server.N=host:quorumPort:electionPort`; the election port is not
/// used, raft elects over the same links); what arrives comes out of the
/// returned receiver, which the processor reads.
async fn start_peers(
    cfg: &Config,
    listener: Option<TcpListener>,
    stop: CancellationToken,
) -> anyhow::Result<(peer::PeerNet, mpsc::Receiver<peer::PeerEvent>)> {
    let resolve = |p: &crate::config::Peer| {
        let hp = p.quorum_host_port();
        let source = cfg.source.display().to_string();
        let id = p.id;
        async move {
            tokio::net::lookup_host(&hp)
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| anyhow::anyhow!("cannot resolve {hp} (server.{id} in {source})"))
        }
    };
    let mut addrs = Vec::new();
    for p in &cfg.peers {
        addrs.push((p.id, resolve(p).await?));
    }
    let me = addrs.iter().find(|(id, _)| *id == cfg.my_id).map(|(_, a)| *a).ok_or_else(|| anyhow::anyhow!("myid {} is not among the server.N lines of {}", cfg.my_id, cfg.source.display()))?;
    let started = match listener {
        Some(l) => peer::PeerNet::start_with_listener(cfg.my_id, l, addrs, stop.clone()),
        None => peer::PeerNet::start(cfg.my_id, me, addrs, stop.clone()).await,
    };
    let started = started.map_err(|e| anyhow::anyhow!("cannot listen on the quorum port {me} (server.{} in {}): {e}", cfg.my_id, cfg.source.display()))?;
    tracing::info!(quorum = %me, members = cfg.peers.len(), "ensemble member");
    Ok(started)
}

/// The auth ids of a TLS client whose certificate names `dn`.
fn x509_ids(dn: &str, super_user: Option<&str>) -> Vec<protocol::Id> {
    let mut ids = Vec::new();
    if super_user == Some(dn) {
        ids.push(protocol::Id { scheme: "super".into(), id: dn.to_owned() });
    }
    ids.push(protocol::Id { scheme: "x509".into(), id: dn.to_owned() });
    ids
}

impl Server {
    /// Recovers state from the data directory, binds the client port(s) and
    /// starts serving.
    pub async fn start(cfg: Config) -> anyhow::Result<Server> {
        Server::start_with(cfg, None).await
    }

    /// As [`Server::start`]; `quorum_listener`, if given, is this member's
    /// quorum port already bound (an embedded cluster binds them all first,
    /// so no port is picked twice).
    pub async fn start_with(cfg: Config, quorum_listener: Option<TcpListener>) -> anyhow::Result<Server> {
        let cfg = Arc::new(cfg);
        let tls = match &cfg.tls {
            Some(t) => Some(tls::acceptor(t).map_err(|e| anyhow::anyhow!("{e} (secureClientPort in {})", cfg.source.display()))?),
            None => None,
        };
        let mut processor = Processor::recover(cfg.clone(), random_u64)?;
        let bind = |addr: SocketAddr, key: &'static str| {
            let cfg = cfg.clone();
            async move {
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({key} in {}): {e}", cfg.source.display()))
            }
        };
        let listener = bind(cfg.client_addr, "clientPort").await?;
        let local_addr = listener.local_addr()?;
        let secure = match cfg.secure_client_addr {
            Some(a) => Some(bind(a, "secureClientPort").await?),
            None => None,
        };
        let secure_addr = secure.as_ref().map(|l| l.local_addr()).transpose()?;

        let (tx, rx) = mpsc::channel(INPUT_QUEUE_MAX);
        let shutdown = CancellationToken::new();
        let peers = if cfg.peers.len() > 1 {
            let (net, events) = start_peers(&cfg, quorum_listener, shutdown.clone()).await?;
            processor.set_peers(net.clone(), events);
            Some(net)
        } else {
            None
        };
        processor.set_stop(shutdown.clone());
        let store = processor.store_handle();
        let status = processor.status();
        let per_ip = processor.per_ip.clone();
        // A task, not a thread of its own: the connection and peer tasks
        // that feed it and that it wakes then mostly run on the same worker
        // thread, one after the other, instead of waking each other's
        // threads (half the context switches of a loaded ensemble member,
        // each dear on a virtual machine).
        let processor_task = tokio::spawn({
            let tx = tx.clone();
            let stop_on_panic = StopOnPanic(shutdown.clone());
            async move {
                let result = processor.run(rx, tx).await;
                drop(stop_on_panic);
                result
            }
        });
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            input: tx.clone(),
            per_ip,
            next_conn_id: AtomicU64::new(1),
            stop: shutdown.clone(),
            tracker: TaskTracker::new(),
        });

        let tick_tx = tx.clone();
        // The replica counts raft ticks and session deadlines from the
        // times it is given; this only has to come often enough.
        let tick_ms = crate::replica::RAFT_TICK_MS as u64 / 2;
        let tick_stop = shutdown.clone();
        shared.tracker.spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(tick_ms));
            loop {
                tokio::select! {
                    _ = interval.tick() => if tick_tx.send(Input::Tick).await.is_err() { break },
                    _ = tick_stop.cancelled() => break,
                }
            }
        });
        shared.tracker.spawn(accept_loop(listener, None, shared.clone()));
        if let Some(l) = secure {
            shared.tracker.spawn(accept_loop(l, tls, shared.clone()));
        }

        let stop = shutdown.clone();
        let peer_net = peers.clone();
        let done = tokio::spawn(async move {
            stop.cancelled().await;
            shared.tracker.close();
            shared.tracker.wait().await;
            // Every connection is gone: the processor finishes its last batch (fsync) and stops.
            let _ = tx.send(Input::Shutdown).await;
            drop(tx);
            drop(shared);
            let result = processor_task.await.unwrap_or_else(|_| Err("the processor task panicked".to_owned()));
            // Its quorum port is free again once this returns.
            if let Some(p) = peer_net {
                p.shutdown().await;
            }
            result
        });
        tracing::info!(addr = %local_addr, secure = ?secure_addr, "corral listening");
        Ok(Server { local_addr, secure_addr, shutdown, done, store, status, peers })
    }

    /// Stops accepting, closes connections, lets the processor finish, and
    /// waits; `Err` if it had stopped on its own (the log could not be made
    /// durable).
    pub async fn shutdown(self) -> Result<(), String> {
        self.shutdown.cancel();
        self.done.await.unwrap_or_else(|e| Err(format!("server task: {e}")))
    }

    /// Stops as kill -9 would leave things: everything not yet fsynced is
    /// lost, nothing more is written, connections drop. Returns once every
    /// thread and task has ended and the data directory is free again.
    pub async fn kill(self) {
        self.store.crash();
        self.shutdown.cancel();
        let _ = self.done.await;
    }

    /// Starts a graceful stop without waiting for it.
    pub fn stop_now(&self) {
        self.shutdown.cancel();
    }

    /// Resolves when the server starts stopping: `shutdown`, `kill`, or an
    /// error that made the processor stop on its own.
    pub async fn stopping(&self) {
        self.shutdown.cancelled().await
    }

    /// Follows the processor's view of the ensemble (leader, term, commit).
    pub fn status(&self) -> tokio::sync::watch::Receiver<processor::Status> {
        self.status.clone()
    }

    /// The links to the other members (none when standalone).
    pub fn peers(&self) -> Option<&peer::PeerNet> {
        self.peers.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(max: u32) -> Arc<Shared> {
        let mut cfg = Config::embedded_default();
        cfg.max_client_cnxns = max;
        Arc::new(Shared {
            cfg: Arc::new(cfg),
            input: mpsc::channel(1).0,
            per_ip: Arc::default(),
            next_conn_id: AtomicU64::new(1),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
        })
    }

    #[tokio::test]
    async fn a_panicking_connection_task_gives_its_slot_back() {
        let s = shared(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            let slot = s.admit(ip).expect("a free slot");
            let task = tokio::spawn(async move {
                let _slot = slot;
                panic!("connection task dies");
            });
            assert!(task.await.unwrap_err().is_panic());
        }
        let (a, b) = (s.admit(ip), s.admit(ip));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(s.admit(ip).err(), Some("maxClientCnxns"), "maxClientCnxns holds");
        drop((a, b));
        assert!(s.per_ip.lock().unwrap().is_empty(), "every slot released");
    }
}
