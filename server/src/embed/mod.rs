//! Corral inside a Rust process: a real server ([`Server`]) or a whole
//! ensemble ([`Cluster`]) started in milliseconds in the caller's tokio
//! runtime, for test suites and for applications that carry their own
//! coordination service.
//!
//! Nothing here is global: every server has its own data directory, ports,
//! threads and tasks, so any number run side by side in one process. The
//! server is the same code the `corral` binary runs (the same replica,
//! store and shell); only the configuration comes from a builder instead
//! of a zoo.cfg.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> anyhow::Result<()> {
//! let server = corral::Server::builder().start().await?; // a free port, a temporary data directory
//! let connect_string = server.connect_string();          // e.g. "127.0.0.1:40613", for any ZooKeeper client
//! # assert!(connect_string.starts_with("127.0.0.1:"));
//! server.shutdown().await?;                              // everything flushed; the directory is removed
//! # Ok(())
//! # }
//! ```

mod cluster;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use cluster::{Cluster, ClusterBuilder};

use crate::config::Config;
use crate::net;

/// A directory removed when dropped: an embedded server's data unless the
/// caller names one.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> std::io::Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("corral-{what}-{}-{}-{nanos:x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How long `start` waits for the server to have a leader (itself, when
/// standalone) before giving up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The raft index of an ensemble's first transaction on a fresh data
/// directory: its first leader's empty entry is index 1, and its first
/// proposal, index 2, is the password secret. Until a member has applied
/// it, it closes every connecting client (passwords cannot be checked yet),
/// and a client closed on its first attempt backs off for 100 ms or more.
const FIRST_TXN_INDEX: u64 = 2;

/// Whether a member can take a new session: it knows a leader and has
/// applied the ensemble's first transaction. On a data directory whose
/// first leader lost its secret before committing it the secret comes
/// later; a client is then turned away once more and retries, as it would
/// against any server still starting.
fn serving(s: &net::processor::Status) -> bool {
    s.leader != 0 && s.applied >= FIRST_TXN_INDEX
}

/// The settings of an embedded server: zoo.cfg's, as a builder. Defaults:
/// a temporary data directory, 127.0.0.1 on a free port, `tickTime=200`
/// (session timeouts 400 ms – 4 s), every four-letter word, ZooKeeper's
/// read consistency.
#[derive(Clone)]
pub struct ServerBuilder {
    cfg: Config,
    data_dir: Option<PathBuf>,
    session_timeouts_set: bool,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        let mut cfg = Config::embedded_default();
        cfg.source = PathBuf::from("<embedded>");
        cfg.client_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        // Zero-filling 64 MiB per server would dominate a test suite's start
        // and stop; `pre_alloc_size` turns it on for a long-lived server.
        cfg.prealloc_bytes = 0;
        let mut b = ServerBuilder { cfg, data_dir: None, session_timeouts_set: false };
        b = b.tick_time(Duration::from_millis(200));
        b
    }
}

impl ServerBuilder {
    /// Builds on a configuration read from a zoo.cfg ([`Config::load`]).
    pub fn from_config(cfg: Config) -> ServerBuilder {
        let data_dir = Some(cfg.data_dir.clone());
        ServerBuilder { cfg, data_dir, session_timeouts_set: true }
    }

    /// Takes settings written as zoo.cfg lines (`key=value`, the keys and
    /// meanings of [`Config::load`]); keys the text leaves out keep this
    /// builder's values (a temporary data directory without `dataDir`, the
    /// client address, tick time and four-letter words set so far).
    /// Errors name the line and key, as for a file.
    pub fn zoo_cfg(self, text: &str) -> Result<ServerBuilder, crate::config::ConfigError> {
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().split_once('=').map(|(k, _)| k.trim()))
            .map(|k| k.strip_prefix("zookeeper.").unwrap_or(k))
            .collect();
        let has = |k: &str| keys.contains(&k);
        // Appended after the caller's lines, so their line numbers stay true.
        let body = if has("dataDir") { text.to_owned() } else { format!("{text}\ndataDir=<temporary>\n") };
        let cfg = Config::parse(Path::new("<embedded zoo.cfg>"), &body)?;
        let data_dir = has("dataDir").then(|| cfg.data_dir.clone());
        let session_timeouts_set = has("minSessionTimeout") || has("maxSessionTimeout");
        let mut b = ServerBuilder { cfg, data_dir, session_timeouts_set };
        b.cfg.source = PathBuf::from("<embedded>");
        if !has("clientPort") && !has("clientPortAddress") {
            b.cfg.client_addr = self.cfg.client_addr;
        }
        if !has("4lw.commands.whitelist") {
            b.cfg.four_letter_words = self.cfg.four_letter_words.clone();
        }
        if !has("tickTime") {
            b = b.tick_time(Duration::from_millis(self.cfg.tick_ms.into()));
        }
        Ok(b)
    }

    /// Keeps the data in `dir` (created if missing, kept after shutdown)
    /// instead of a temporary directory removed on drop.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Where clients connect; port 0 picks a free one (the default, on 127.0.0.1).
    pub fn client_addr(mut self, addr: SocketAddr) -> Self {
        self.cfg.client_addr = addr;
        self
    }

    /// ZooKeeper's `tickTime`; session timeouts default to 2 and 20 ticks.
    pub fn tick_time(mut self, tick: Duration) -> Self {
        self.cfg.tick_ms = tick.as_millis().clamp(1, i32::MAX as u128 / 20) as u32;
        if !self.session_timeouts_set {
            self.cfg.min_session_timeout_ms = 2 * self.cfg.tick_ms as i32;
            self.cfg.max_session_timeout_ms = 20 * self.cfg.tick_ms as i32;
        }
        self
    }

    /// `minSessionTimeout` and `maxSessionTimeout`: what clients ask for is clamped to these.
    pub fn session_timeouts(mut self, min: Duration, max: Duration) -> Self {
        self.cfg.min_session_timeout_ms = min.as_millis().min(i32::MAX as u128) as i32;
        self.cfg.max_session_timeout_ms = max.as_millis().min(i32::MAX as u128) as i32;
        self.session_timeouts_set = true;
        self
    }

    /// `jute.maxbuffer`: the largest request or reply, in bytes.
    pub fn max_packet_size(mut self, bytes: usize) -> Self {
        self.cfg.max_frame_bytes = bytes;
        self
    }

    /// `4lw.commands.whitelist`: `["*"]` for all (the default), `[]` for none.
    pub fn four_letter_words(mut self, words: &[&str]) -> Self {
        self.cfg.four_letter_words = if words.contains(&"*") {
            crate::config::FOUR_LETTER_WORDS.iter().map(|w| w.to_string()).collect()
        } else {
            words.iter().filter(|w| crate::config::FOUR_LETTER_WORDS.contains(w)).map(|w| w.to_string()).collect()
        };
        self
    }

    /// `readConsistency=linearizable`: every read linearizable (see docs/operations.md).
    pub fn linearizable_reads(mut self, on: bool) -> Self {
        self.cfg.linearizable_reads = on;
        self
    }

    /// `preAllocSize`: log segments zero-filled ahead of use to this many
    /// bytes, for cheaper fsyncs (default 0 here, 64 MiB for `corral server`).
    pub fn pre_alloc_size(mut self, bytes: u64) -> Self {
        self.cfg.prealloc_bytes = bytes;
        self
    }

    /// `snapCount`: entries between snapshots.
    pub fn snap_count(mut self, n: u64) -> Self {
        self.cfg.snap_count = n.max(1);
        self
    }

    /// Makes this server member `my_id` of an ensemble whose members listen
    /// for each other on `members` (id, quorum address; this one's
    /// included): an application that is also a member of its own
    /// coordination group, one process per member.
    pub fn ensemble_member(mut self, my_id: u64, members: &[(u64, SocketAddr)]) -> Self {
        self.cfg.my_id = my_id;
        self.cfg.peers = members
            .iter()
            .map(|(id, addr)| crate::config::Peer {
                id: *id,
                host: addr.ip().to_string(),
                peer_port: addr.port(),
                election_port: 0,
                role: crate::config::PeerRole::Participant,
                client_addr: None,
            })
            .collect();
        self
    }

    /// Starts the server and returns once it answers clients (for an
    /// ensemble member: once the ensemble has a leader).
    pub async fn start(self) -> anyhow::Result<Server> {
        let (mut cfg, temp) = self.resolve("server")?;
        let running = net::Server::start(cfg.clone()).await?;
        // A restart must come back where clients look for it.
        cfg.client_addr = running.local_addr;
        let mut server = Server { cfg, running: Some(running), _temp: temp };
        server.wait_serving().await?;
        Ok(server)
    }

    /// The configuration to run, with its data directory made.
    fn resolve(self, what: &str) -> anyhow::Result<(Config, Option<TempDir>)> {
        let mut cfg = self.cfg;
        let (dir, temp) = match self.data_dir {
            Some(d) => (d, None),
            None => {
                let t = TempDir::new(what).map_err(|e| anyhow::anyhow!("cannot create a temporary data directory: {e}"))?;
                (t.0.clone(), Some(t))
            }
        };
        std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        cfg.data_log_dir = dir.clone();
        cfg.data_dir = dir;
        Ok((cfg, temp))
    }
}

/// An embedded standalone server. Dropping it stops it (without waiting);
/// [`Server::shutdown`] stops it and waits.
pub struct Server {
    cfg: Config,
    running: Option<net::Server>,
    _temp: Option<TempDir>,
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The client address (the port actually bound).
    pub fn addr(&self) -> SocketAddr {
        self.cfg.client_addr
    }

    /// `host:port`, what a ZooKeeper client's connect string takes.
    pub fn connect_string(&self) -> String {
        self.addr().to_string()
    }

    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    /// Asks a four-letter word (`srvr`, `mntr`, `cons`, ...) as a client would.
    pub async fn four_letter_word(&self, word: &str) -> std::io::Result<String> {
        four_letter_word(self.addr(), word).await
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Stops gracefully: connections closed, everything flushed, every
    /// thread and task ended. `Err` if the server had stopped on its own
    /// (its log could not be written).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop().await
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        match self.running.take() {
            Some(r) => r.shutdown().await.map_err(anyhow::Error::msg),
            None => Ok(()),
        }
    }

    /// Stops abruptly, as kill -9 and a power cut would: nothing written
    /// after the last fsync survives, connections drop. [`Server::restart`]
    /// brings it back on the same data and port.
    pub async fn kill(&mut self) {
        if let Some(r) = self.running.take() {
            r.kill().await;
        }
    }

    /// Starts again on the same data directory and client port (stopping it
    /// gracefully first if it runs).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.running = Some(net::Server::start(self.cfg.clone()).await?);
        self.wait_serving().await
    }

    async fn wait_serving(&mut self) -> anyhow::Result<()> {
        let Some(r) = &self.running else { anyhow::bail!("not running") };
        let mut status = r.status();
        let ready = match tokio::time::timeout(START_TIMEOUT, status.wait_for(serving)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(anyhow::anyhow!("the server stopped while starting")),
            Err(_) => Err(anyhow::anyhow!("the server did not elect itself within {START_TIMEOUT:?}")),
        };
        ready
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_in_background(self.running.take(), self._temp.take());
    }
}

/// Sends a four-letter word to `addr` and reads the answer to its end.
pub(crate) async fn four_letter_word(addr: SocketAddr, word: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(word.as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// Drop cannot wait: the server is stopped by a task of the current
/// runtime, which removes the temporary directory once every thread that
/// used it has ended. Without a runtime, stopping is only started.
fn stop_in_background(running: Option<net::Server>, temp: Option<TempDir>) {
    let Some(r) = running else { return };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn(async move {
                let _ = r.shutdown().await;
                drop(temp);
            });
        }
        Err(_) => r.stop_now(),
    }
}
