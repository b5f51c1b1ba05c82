//! The processor: the shell around the replica driver. One thread owns the
//! [`Replica`] and the store and feeds every input to the replica in arrival
//! order, in batches; then it carries out what the replica asks: readies to
//! its persister thread, which writes them to sled with one fsync for all
//! that is queued (group commit) while this thread goes on; replies and
//! watch events to connections; snapshots in the background. The replica
//! releases a write's reply only once its entry is committed (durable) and
//! applied, and reads at once unless their session waits for an earlier
//! write: nothing a client sees is ahead of what is durable, and each
//! session's replies and events leave in the order they happened.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use protocol::{codes::xid, ConnectRequest, ConnectResponse, ErrorCode, Id, Jute, KeeperState, ReplyHeader, Request, Response, WatcherEvent};
use raft::eraftpb::ConfState;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::core::watch::WatchEvent;
use crate::core::{self, acl};
use crate::replica::log::LogSnapshot;
use crate::replica::{Delivery, Now, Persist, Replica, ReplicaConfig};
use crate::testbug::TestBug;
use crate::store::Store;

use super::fourlw;
use super::peer::{PeerEvent, PeerNet};

/// Inputs at most taken into one batch (one fsync).
pub const BATCH_MAX: usize = 1024;
/// What one queued frame counts against `maxOutputQueueBytes` beyond its
/// bytes on the wire: its bookkeeping (buffer, allocation, queue slot), so
/// that a flood of tiny frames is bounded as surely as a few large ones.
pub const OUTPUT_FRAME_OVERHEAD_BYTES: usize = 64;

/// What a frame of `len` bytes counts in its connection's output queue.
pub fn output_cost(len: usize) -> usize {
    4 + len + OUTPUT_FRAME_OVERHEAD_BYTES
}

/// A connection's outgoing queue as the processor holds it: replies and
/// events for the connection's task to write, counted in bytes (see
/// [`output_cost`]) until the task has written them. A client that does not
/// read is disconnected when its queue would pass `maxOutputQueueBytes`
/// rather than buffered without bound.
#[derive(Clone)]
pub struct OutQueue {
    tx: mpsc::UnboundedSender<Output>,
    state: Arc<OutState>,
}

/// What a connection's processor side and its task share.
#[derive(Default)]
pub struct OutState {
    /// Bytes queued and not yet written to the socket.
    pub bytes: AtomicUsize,
    /// Cancelled when the processor closes the connection in order (after
    /// what is queued): the task gives its last writes a bounded time.
    pub closed: CancellationToken,
    /// Cancelled when the processor drops the connection at once (over
    /// `maxOutputQueueBytes`): the task stops writing and closes.
    pub abort: CancellationToken,
}

/// The connection task's end of an [`OutQueue`].
pub struct OutReceiver {
    pub rx: mpsc::UnboundedReceiver<Output>,
    pub state: Arc<OutState>,
}

/// Why a frame was not queued.
enum Refused {
    /// The connection's task is gone.
    Gone,
    /// Over `maxOutputQueueBytes`, with this many bytes queued.
    Full(usize),
}

impl OutQueue {
    pub fn new() -> (OutQueue, OutReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(OutState::default());
        (OutQueue { tx, state: state.clone() }, OutReceiver { rx, state })
    }

    /// Queues a frame unless that takes the queue over `max` bytes (0: no
    /// limit). A frame into an empty queue always goes: a single reply
    /// larger than the limit is not a slow reader.
    fn push(&self, frame: Bytes, max: usize) -> Result<(), Refused> {
        let cost = output_cost(frame.len());
        let queued = self.state.bytes.load(Ordering::Relaxed);
        if max > 0 && queued > 0 && queued + cost > max {
            return Err(Refused::Full(queued));
        }
        // Only this (the processor) thread adds; the task only takes away,
        // so the check above cannot be overtaken.
        self.state.bytes.fetch_add(cost, Ordering::Relaxed);
        self.tx.send(Output::Frame(frame)).map_err(|_| Refused::Gone)
    }

    /// Closes after what is queued.
    fn close(&self) {
        let _ = self.tx.send(Output::Close);
        self.state.closed.cancel();
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.state.bytes.load(Ordering::Relaxed)
    }
}

pub enum Input {
    /// `tls_ids`: identities from the client's TLS certificate (x509).
    Connect { conn_id: u64, addr: SocketAddr, tls_ids: Vec<Id>, req: ConnectRequest, out: OutQueue },
    Request { conn_id: u64, xid: i32, req: Request },
    /// A request whose body could not be decoded: answered with `err` in
    /// order, then the connection is closed if `close`.
    BadRequest { conn_id: u64, xid: i32, err: ErrorCode, close: bool },
    Closed { conn_id: u64 },
    /// `addr` is the asking connection's, listed by `cons` as ZooKeeper does.
    FourLetter { word: String, addr: SocketAddr, reply: oneshot::Sender<String> },
    /// Something from the peer transport.
    Peer(PeerEvent),
    /// The persister made readies up to this number durable.
    Persisted(u64),
    /// The persister could not make the log durable: nothing after the last
    /// report may be acknowledged, so the server stops.
    Fatal(String),
    Tick,
    Shutdown,
}

/// What the processor last knew of its place in the ensemble, published
/// after every batch (for embedders and tests; clients see `srvr`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// The leader's member id (0: none known).
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
}

#[derive(Debug)]
pub enum Output {
    Frame(Bytes),
    Close,
}

/// A client connection as the processor knows it.
pub(super) struct Conn {
    pub session_id: i64,
    pub out: OutQueue,
    /// Ids authenticated on this connection (ip first, then addauth's).
    pub auth: Vec<Id>,
    pub addr: SocketAddr,
    pub timeout_ms: i32,
    pub received: u64,
    pub sent: u64,
    pub established_ms: i64,
    pub last_op: &'static str,
    pub last_zxid: i64,
    pub last_cxid: i32,
    pub last_response_ms: i64,
    pub last_latency_ms: u64,
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    pub latency_total_ms: u64,
    pub latency_count: u64,
    /// When each request still unanswered arrived, in order (replies of a
    /// connection leave in request order).
    pub started: VecDeque<Instant>,
    /// The connection's SASL exchange, once it sent a `sasl` request.
    sasl: Option<super::sasl::DigestMd5>,
}

#[derive(Default)]
pub(super) struct Stats {
    pub received: u64,
    pub sent: u64,
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    pub latency_total_ms: u64,
    pub latency_count: u64,
    /// The most paths one SetWatches request carried (mntr, against
    /// `maxSetWatchesPaths`).
    pub set_watches_paths_max: usize,
}

/// A connection whose connect request the replica has not answered yet.
struct Connecting {
    addr: SocketAddr,
    tls_ids: Vec<Id>,
    out: OutQueue,
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn frame(header: ReplyHeader, body: &Response) -> Bytes {
    // Most replies are a header and a Stat (84 bytes); `encoded_len` would
    // encode the body a second time just to size this.
    let mut v = Vec::with_capacity(128);
    header.encode(&mut v);
    body.encode(&mut v);
    Bytes::from(v)
}

fn event_frame(e: &WatchEvent) -> Bytes {
    let mut v = Vec::new();
    ReplyHeader { xid: xid::NOTIFICATION, zxid: -1, err: 0 }.encode(&mut v);
    WatcherEvent { r#type: e.event_type.as_i32(), state: KeeperState::SyncConnected.as_i32(), path: e.path.clone() }.encode(&mut v);
    Bytes::from(v)
}

fn op_name(req: &Request) -> &'static str {
    use protocol::OpCode::*;
    match req.op_code() {
        Create | Create2 | CreateContainer | CreateTtl => "CREA",
        Delete => "DELE",
        Exists => "EXIS",
        GetData => "GETD",
        SetData => "SETD",
        GetAcl => "GACL",
        SetAcl => "SACL",
        GetChildren | GetChildren2 => "GETC",
        Sync => "SYNC",
        Ping => "PING",
        Multi => "MULT",
        MultiRead => "MLTR",
        CloseSession => "CLOS",
        SetWatches | SetWatches2 => "SETW",
        _ => "OTHR",
    }
}

pub struct Processor {
    pub(super) replica: Replica,
    store: Store,
    pub(super) cfg: Arc<Config>,
    pub(super) conns: HashMap<u64, Conn>,
    connecting: HashMap<u64, Connecting>,
    session_conn: HashMap<i64, u64>,
    pub(super) stats: Stats,
    epoch: Instant,
    /// The snapshot being written in the background, if any.
    snapshotting: Option<std::thread::JoinHandle<()>>,
    /// The links to the other members (none when standalone).
    peers: Option<PeerNet>,
    /// What the peer transport reports (messages, links up and down),
    /// read beside the input queue so that no task stands between them.
    peer_events: Option<mpsc::Receiver<PeerEvent>>,
    /// The thread that writes and fsyncs readies while this one goes on;
    /// `None` until `run` starts it (catching up persists inline).
    persister: Option<Persister>,
    /// Messages to send once the ready of that number is durable.
    after_persist: BTreeMap<u64, Vec<crate::replica::Envelope>>,
    /// Why the processor stopped on its own, if it did.
    fatal: Option<String>,
    /// Cancelled when the processor stops on its own, so the rest of the
    /// server stops too.
    stop: Option<tokio_util::sync::CancellationToken>,
    status: tokio::sync::watch::Sender<Status>,
    /// Connections counted per address (maxClientCnxns, maxCnxns), shared
    /// with the accept loops; for mntr.
    pub(super) per_ip: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, u32>>>,
    /// The input queue, to report how full it is (mntr).
    pub(super) input: Option<mpsc::WeakSender<Input>>,
    /// SASL DIGEST-MD5 users (the JAAS `Server` section); `None`: SASL is off.
    sasl_users: Option<super::sasl::Users>,
}

/// The persister thread: writes each ready it is handed, fsyncs once for
/// everything queued (group commit), and reports the last number durable.
struct Persister {
    jobs: std::sync::mpsc::Sender<Persist>,
    thread: std::thread::JoinHandle<()>,
}

/// A log write + fsync slower than this is logged (ZooKeeper's
/// `fsync.warningthresholdms` default).
const FSYNC_WARNING: std::time::Duration = std::time::Duration::from_millis(1000);

/// Readies at most written by one fsync.
const PERSIST_BATCH_MAX: usize = 64;

impl Persister {
    fn start(store: Store, done: mpsc::Sender<Input>) -> std::io::Result<Persister> {
        let (jobs, rx) = std::sync::mpsc::channel::<Persist>();
        let thread = std::thread::Builder::new().name("persister".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < PERSIST_BATCH_MAX {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let sync = batch.iter().any(|p| p.must_sync || p.snapshot.is_some());
                let started = Instant::now();
                let result = batch.iter().try_for_each(|p| store.write(p)).and_then(|()| store.flush(sync));
                let took = started.elapsed();
                if took >= FSYNC_WARNING {
                    // As ZooKeeper's SyncThread (fsync.warningthresholdms): every write waits for this.
                    tracing::warn!(ms = took.as_millis() as u64, readies = batch.len(), "writing and fsyncing the log took long; every write waited for it (a slow or busy disk?)");
                }
                if let Err(e) = result {
                    // Nothing of these readies was acknowledged; stopping is the only safe answer.
                    let _ = done.blocking_send(Input::Fatal(format!("cannot make the log durable: {e}")));
                    break;
                }
                let last = batch.last().map_or(0, |p| p.number);
                if done.blocking_send(Input::Persisted(last)).is_err() {
                    break; // the processor is gone
                }
            }
        })?;
        Ok(Persister { jobs, thread })
    }
}

impl Processor {
    /// Opens the store and restarts the replica from it.
    pub fn recover(cfg: Arc<Config>, random: impl Fn() -> u64) -> anyhow::Result<Processor> {
        std::fs::create_dir_all(&cfg.data_log_dir)
            .map_err(|e| anyhow::anyhow!("cannot create dataLogDir {}: {e}", cfg.data_log_dir.display()))?;
        let store = Store::open(&cfg.data_log_dir, cfg.prealloc_bytes)?;
        let sasl_users = match &cfg.jaas_config {
            None => None,
            Some(path) => {
                let users = super::sasl::load_jaas(path, super::sasl::JAAS_SECTION).map_err(|e| {
                    anyhow::anyhow!("{}: {e} (java.security.auth.login.config in {})", path.display(), cfg.source.display())
                })?;
                match &users {
                    None => tracing::warn!(file = %path.display(), "no {:?} section in the JAAS file: SASL is off", super::sasl::JAAS_SECTION),
                    Some(u) if u.is_empty() => tracing::warn!(file = %path.display(), "the JAAS Server section has no user_<name> option: every SASL login will fail"),
                    Some(u) => tracing::info!(file = %path.display(), users = u.len(), "SASL DIGEST-MD5 on"),
                }
                users
            }
        };
        let core_cfg = core::CoreConfig {
            min_session_timeout_ms: cfg.min_session_timeout_ms,
            max_session_timeout_ms: cfg.max_session_timeout_ms,
            extended_types: cfg.extended_types,
            super_digest: cfg.super_digest.clone(),
            max_watches_per_session: cfg.max_watches_per_session,
            max_set_watches_paths: cfg.max_set_watches_paths,
        };
        // raft ids start at 1; a standalone server without myid is member 1.
        let raft_id = cfg.my_id.max(1);
        let voters: Vec<u64> = if cfg.peers.len() > 1 { cfg.peers.iter().map(|p| p.id).collect() } else { vec![raft_id] };
        let mut recovered = store.recover(&core_cfg, raft_id)?;
        if recovered.conf_state.is_none() {
            let cs = ConfState { voters: voters.clone(), ..Default::default() };
            store.set_conf_state(&cs)?;
            recovered.conf_state = Some(cs);
        }
        let (snapshot_index, entries) = (recovered.snapshot.as_ref().map_or(0, |s| s.index), recovered.entries.len());
        let epoch = Instant::now();
        let now = Now { mono_ms: 0, wall_ms: wall_ms() };
        let first_session_id = core::session::Sessions::initial_session_id(now.wall_ms, cfg.my_id as u8);
        let replica_cfg = ReplicaConfig {
            id: raft_id,
            voters,
            core: core_cfg,
            snap_count: cfg.snap_count,
            container_check_interval_ms: cfg.container_check_interval_ms as i64,
            election_tick: 10,
            heartbeat_tick: 2,
            test_bugs: cfg.unsafe_test_bugs.clone(),
            linearizable_reads: cfg.linearizable_reads,
        };
        for b in &cfg.unsafe_test_bugs {
            tracing::error!(bug = %b, "UNSAFE TEST BUG ON: this server deliberately breaks its guarantees; never use it for real data");
        }
        let fresh_secret = random().max(1);
        let replica = Replica::new(replica_cfg, recovered, fresh_secret, first_session_id, random(), now)
            .map_err(|e| anyhow::anyhow!("cannot start the replica: {e}"))?;
        let p = Processor {
            replica,
            store,
            cfg,
            conns: HashMap::new(),
            connecting: HashMap::new(),
            session_conn: HashMap::new(),
            stats: Stats::default(),
            epoch,
            snapshotting: None,
            peers: None,
            peer_events: None,
            persister: None,
            after_persist: BTreeMap::new(),
            fatal: None,
            stop: None,
            status: tokio::sync::watch::Sender::new(Status::default()),
            per_ip: Arc::default(),
            input: None,
            sasl_users,
        };
        let core = p.replica.core();
        tracing::info!(snapshot_zxid = format!("{snapshot_index:#x}"), entries, zxid = format!("{:#x}", core.last_zxid()), sessions = core.sessions.len(), nodes = core.tree.len(), "recovered");
        Ok(p)
    }

    /// Connects the processor to the other members (before `run`).
    pub fn set_peers(&mut self, peers: PeerNet, events: mpsc::Receiver<PeerEvent>) {
        self.peers = Some(peers);
        self.peer_events = Some(events);
    }

    /// The token cancelled if the processor stops on its own (before `run`).
    pub fn set_stop(&mut self, stop: tokio_util::sync::CancellationToken) {
        self.stop = Some(stop);
    }

    /// A handle on the store, for a kill that must lose what is not synced.
    pub fn store_handle(&self) -> Store {
        self.store.clone()
    }

    /// Follows the processor's [`Status`].
    pub fn status(&self) -> tokio::sync::watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Stops on an error that makes going on unsafe; nothing more is
    /// persisted or acknowledged.
    fn fail(&mut self, why: String) {
        tracing::error!("stopping: {why}");
        if self.fatal.is_none() {
            self.fatal = Some(why);
        }
        if let Some(stop) = &self.stop {
            stop.cancel();
        }
    }

    fn publish_status(&self) {
        let s = Status {
            leader: self.replica.leader_id(),
            term: self.replica.term(),
            commit: self.replica.commit_index(),
            applied: self.replica.applied_index(),
        };
        self.status.send_if_modified(|old| std::mem::replace(old, s) != s);
    }

    fn send_all(&mut self, envelopes: Vec<crate::replica::Envelope>) {
        let Some(peers) = &self.peers else {
            debug_assert!(envelopes.is_empty(), "a lone member sent raft messages");
            return;
        };
        for env in envelopes {
            let to = env.to;
            if !peers.send(env) {
                self.replica.on_unreachable(to);
            }
        }
    }

    /// Milliseconds of the monotonic clock that session deadlines use.
    pub(super) fn mono_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    fn now(&self) -> Now {
        Now { mono_ms: self.mono_ms(), wall_ms: wall_ms() }
    }

    /// Runs until `Shutdown`, until every sender is gone, or until an error
    /// makes going on unsafe (then `Err` says why).
    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>, tx: mpsc::Sender<Input>) -> Result<(), String> {
        // Catch up first, persisting inline (a lone member elects itself,
        // commits and applies what its log holds), before any client's input.
        self.drive();
        self.input = Some(tx.downgrade());
        if self.fatal.is_none() {
            match Persister::start(self.store.clone(), tx) {
                Ok(p) => self.persister = Some(p),
                Err(e) => self.fail(format!("cannot start the persister thread: {e}")),
            }
        }
        self.publish_status();
        let mut shutdown = false;
        while !shutdown && self.fatal.is_none() {
            let first = match self.peer_events.as_mut() {
                Some(events) => tokio::select! {
                    i = rx.recv() => i,
                    // Closed only once the transport is gone: inputs go on.
                    Some(ev) = events.recv() => Some(Input::Peer(ev)),
                },
                None => rx.recv().await,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if let Some(events) = self.peer_events.as_mut() {
                while batch.len() < BATCH_MAX {
                    match events.try_recv() {
                        Ok(ev) => batch.push(Input::Peer(ev)),
                        Err(_) => break,
                    }
                }
            }
            for input in batch {
                if matches!(input, Input::Shutdown) {
                    shutdown = true;
                    continue;
                }
                self.step(input);
            }
            self.drive();
            self.publish_status();
        }
        // No more inputs: the persister's last report must not wait for room.
        drop(rx);
        // Dropping the queue ends the persister once it has written it all;
        // the joins wait off the runtime's threads.
        let persister = self.persister.take().map(|p| {
            drop(p.jobs);
            p.thread
        });
        let snapshot = self.snapshotting.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(t) = persister {
                let _ = t.join();
            }
            if let Some(t) = snapshot {
                let _ = t.join();
            }
        })
        .await;
        tracing::info!("processor stopped");
        match self.fatal.take() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Carries out what the replica asks until it has nothing more.
    fn drive(&mut self) {
        while self.fatal.is_none() {
            let out = self.replica.poll();
            if out.is_empty() {
                break;
            }
            // A leader sends while its own fsync runs (raft thesis 10.2.1).
            self.send_all(out.messages);
            if let Some(p) = out.persist {
                if let Some(s) = &p.snapshot {
                    tracing::info!(zxid = format!("{:#x}", s.index), nodes = s.core.nodes.len(), "installed a snapshot from the leader");
                }
                if self.cfg.unsafe_test_bugs.contains(&TestBug::LostAck) {
                    // The bug: acknowledged before the disk has it; written without an fsync.
                    self.replica.on_persisted(p.number);
                    let _ = self.store.write(&p).and_then(|()| self.store.flush(false));
                    self.send_all(out.messages_after_persist);
                } else if let Some(persister) = &self.persister {
                    // Written and fsynced by the persister while this thread
                    // goes on; `Input::Persisted` reports it.
                    let number = p.number;
                    if persister.jobs.send(p).is_err() {
                        self.fail("the persister thread is gone".into());
                        return;
                    }
                    self.after_persist.insert(number, out.messages_after_persist);
                } else {
                    if let Err(e) = self.store.persist(&p) {
                        // Nothing of this ready was acknowledged; stopping is the only safe answer.
                        self.fail(format!("cannot make the log durable: {e}"));
                        return;
                    }
                    self.replica.on_persisted(p.number);
                    self.send_all(out.messages_after_persist);
                }
            } else {
                self.send_all(out.messages_after_persist);
            }
            for d in out.deliveries {
                self.deliver(d);
            }
            if let Some(s) = out.snapshot {
                self.snapshot(s);
            }
        }
    }

    fn deliver(&mut self, d: Delivery) {
        match d {
            Delivery::Reply { conn, xid, zxid, err, body } => {
                let now_ms = wall_ms();
                if let Some(c) = self.conns.get_mut(&conn) {
                    let ms = c.started.pop_front().map_or(0, |t| t.elapsed().as_millis() as u64);
                    c.last_zxid = zxid;
                    c.last_response_ms = now_ms;
                    c.last_latency_ms = ms;
                    c.latency_min_ms = if c.latency_count == 0 { ms } else { c.latency_min_ms.min(ms) };
                    c.latency_max_ms = c.latency_max_ms.max(ms);
                    c.latency_total_ms += ms;
                    c.latency_count += 1;
                    let s = &mut self.stats;
                    s.latency_min_ms = if s.latency_count == 0 { ms } else { s.latency_min_ms.min(ms) };
                    s.latency_max_ms = s.latency_max_ms.max(ms);
                    s.latency_total_ms += ms;
                    s.latency_count += 1;
                }
                self.send(conn, Output::Frame(frame(ReplyHeader { xid, zxid, err: err.as_i32() }, &body)));
            }
            Delivery::Event(e) => {
                if let Some(conn) = self.session_conn.get(&e.session_id).copied() {
                    self.send(conn, Output::Frame(event_frame(&e)));
                }
            }
            Delivery::Connected { conn, session_id, timeout_ms, passwd } => self.connected(conn, session_id, timeout_ms, passwd),
            Delivery::Close { conn } => {
                if let Some(c) = self.connecting.remove(&conn) {
                    c.out.close();
                }
                self.send(conn, Output::Close);
            }
            Delivery::SessionClosed { session_id } => {
                if let Some(conn) = self.session_conn.get(&session_id).copied() {
                    self.send(conn, Output::Close);
                }
            }
            Delivery::LeaderLost | Delivery::Resynced => {
                if matches!(d, Delivery::LeaderLost) {
                    tracing::warn!("no leader: closing every client connection");
                } else {
                    tracing::warn!("state replaced by the leader's snapshot: closing every client connection");
                }
                for (_, c) in self.connecting.drain() {
                    c.out.close();
                }
                let conns: Vec<u64> = self.conns.keys().copied().collect();
                for conn in conns {
                    self.send(conn, Output::Close);
                }
            }
        }
    }

    fn send(&mut self, conn_id: u64, out: Output) {
        let Some(conn) = self.conns.get_mut(&conn_id) else { return };
        match out {
            Output::Frame(frame) => {
                conn.sent += 1;
                self.stats.sent += 1;
                match conn.out.push(frame, self.cfg.max_output_queue_bytes) {
                    Ok(()) => return,
                    Err(Refused::Gone) => {}
                    Err(Refused::Full(queued)) => {
                        tracing::warn!(
                            session = format!("{:#x}", conn.session_id),
                            addr = %conn.addr,
                            queued,
                            limit = self.cfg.max_output_queue_bytes,
                            "client not reading its replies: output queue over maxOutputQueueBytes; disconnecting"
                        );
                        conn.out.state.abort.cancel();
                    }
                }
            }
            Output::Close => conn.out.close(),
        }
        self.drop_conn(conn_id);
    }

    fn drop_conn(&mut self, conn_id: u64) {
        self.connecting.remove(&conn_id);
        if let Some(conn) = self.conns.remove(&conn_id) {
            if self.session_conn.get(&conn.session_id) == Some(&conn_id) {
                self.session_conn.remove(&conn.session_id);
                self.replica.on_disconnect(conn.session_id);
            }
        }
    }

    fn step(&mut self, input: Input) {
        match input {
            Input::Connect { conn_id, addr, tls_ids, req, out } => {
                self.connecting.insert(conn_id, Connecting { addr, tls_ids, out });
                let now = self.now();
                self.replica.on_connect(conn_id, &req, now);
            }
            Input::Request { conn_id, xid, req } => self.request(conn_id, xid, req),
            Input::BadRequest { conn_id, xid, err, close } => {
                if self.conns.contains_key(&conn_id) {
                    let f = frame(ReplyHeader { xid, zxid: self.replica.core().last_zxid(), err: err.as_i32() }, &Response::Empty);
                    self.send(conn_id, Output::Frame(f));
                    if close {
                        self.send(conn_id, Output::Close);
                    }
                }
            }
            Input::Closed { conn_id } => self.drop_conn(conn_id),
            Input::FourLetter { word, addr, reply } => {
                let _ = reply.send(fourlw::run(self, &word, addr));
            }
            Input::Tick => {
                let now = self.now();
                self.replica.on_tick(now);
            }
            Input::Peer(PeerEvent::Message(env)) => {
                let now = self.now();
                self.replica.on_message(env.from, env.msg, now);
            }
            Input::Peer(PeerEvent::Down(peer)) => {
                let now = self.now();
                self.replica.on_peer_down(peer, now);
            }
            Input::Peer(PeerEvent::Up(peer)) => {
                let now = self.now();
                self.replica.on_peer_up(peer, now);
            }
            Input::Persisted(number) => {
                self.replica.on_persisted(number);
                let later = self.after_persist.split_off(&(number + 1));
                for (_, msgs) in std::mem::replace(&mut self.after_persist, later) {
                    self.send_all(msgs);
                }
            }
            Input::Fatal(why) => self.fail(why),
            Input::Shutdown => {}
        }
    }

    /// The replica answered a connect: a session is established (or refused).
    fn connected(&mut self, conn_id: u64, session_id: i64, timeout_ms: i32, passwd: Vec<u8>) {
        let Some(c) = self.connecting.remove(&conn_id) else { return };
        if session_id == 0 {
            tracing::info!(addr = %c.addr, "reconnect refused: session expired or bad password");
            let resp = ConnectResponse { protocol_version: 0, time_out: 0, session_id: 0, passwd, read_only: false };
            let _ = c.out.push(Bytes::from(resp.to_bytes()), 0);
            c.out.close();
            return;
        }
        // The session moves here: its old connection (if any) is closed.
        if let Some(old) = self.session_conn.remove(&session_id) {
            self.replica.on_disconnect(session_id);
            self.send(old, Output::Close);
        }
        let resp = ConnectResponse { protocol_version: 0, time_out: timeout_ms, session_id, passwd, read_only: false };
        self.conns.insert(
            conn_id,
            Conn {
                session_id,
                out: c.out,
                auth: std::iter::once(Id { scheme: "ip".into(), id: c.addr.ip().to_string() }).chain(c.tls_ids).collect(),
                addr: c.addr,
                timeout_ms,
                received: 0,
                sent: 0,
                established_ms: wall_ms(),
                last_op: "NA",
                last_zxid: -1,
                last_cxid: 0,
                last_response_ms: 0,
                last_latency_ms: 0,
                latency_min_ms: 0,
                latency_max_ms: 0,
                latency_total_ms: 0,
                latency_count: 0,
                started: VecDeque::new(),
                sasl: None,
            },
        );
        self.session_conn.insert(session_id, conn_id);
        self.send(conn_id, Output::Frame(Bytes::from(resp.to_bytes())));
    }

    fn request(&mut self, conn_id: u64, xid: i32, req: Request) {
        let Some(conn) = self.conns.get_mut(&conn_id) else { return };
        conn.received += 1;
        conn.last_op = op_name(&req);
        let watch_paths = match &req {
            Request::SetWatches(w) => w.data_watches.len() + w.exist_watches.len() + w.child_watches.len(),
            Request::SetWatches2(w) => {
                w.data_watches.len() + w.exist_watches.len() + w.child_watches.len() + w.persistent_watches.len() + w.persistent_recursive_watches.len()
            }
            _ => 0,
        };
        self.stats.set_watches_paths_max = self.stats.set_watches_paths_max.max(watch_paths);
        conn.last_cxid = xid;
        self.stats.received += 1;
        let session_id = conn.session_id;
        if let Request::Auth(a) = &req {
            // Auth belongs to the connection: answered here, at once, as
            // ZooKeeper does (it bypasses the request pipeline; zxid 0).
            let (err, close) = match acl::authenticate(&a.scheme, &a.auth, self.replica.core().config().super_digest.as_deref()) {
                Ok(ids) => {
                    for id in ids {
                        if !conn.auth.contains(&id) {
                            conn.auth.push(id);
                        }
                    }
                    (ErrorCode::Ok, false)
                }
                // ZooKeeper answers AUTHFAILED and then closes the connection.
                Err(e) => (e, true),
            };
            self.send(conn_id, Output::Frame(frame(ReplyHeader { xid, zxid: 0, err: err.as_i32() }, &Response::Empty)));
            if close {
                self.send(conn_id, Output::Close);
            }
            return;
        }
        if let Request::Sasl(r) = &req {
            // Like auth, SASL belongs to the connection and is answered here
            // (ZooKeeperServer.processSasl bypasses the pipeline; zxid 0).
            self.sasl(conn_id, xid, &r.token);
            return;
        }
        conn.started.push_back(Instant::now());
        let auth = conn.auth.clone();
        let now = self.now();
        self.replica.on_request(conn_id, session_id, &auth, xid, req, now);
    }

    /// One step of a connection's SASL exchange. A failed exchange is
    /// answered AUTHFAILED and the connection closed, as ZooKeeper 3.8 does.
    fn sasl(&mut self, conn_id: u64, xid: i32, token: &[u8]) {
        let Some(conn) = self.conns.get_mut(&conn_id) else { return };
        let session = format!("{:#x}", conn.session_id);
        let Some(users) = &self.sasl_users else {
            tracing::info!(session, addr = %conn.addr, "SASL request, but SASL is off (no java.security.auth.login.config): AUTHFAILED");
            self.sasl_failed(conn_id, xid);
            return;
        };
        let exchange = conn.sasl.get_or_insert_with(|| {
            let nonce = [super::random_u64(), super::random_u64()].map(u64::to_be_bytes).concat();
            super::sasl::DigestMd5::new(base64::engine::general_purpose::STANDARD.encode(nonce))
        });
        let token = match exchange.step(token, users) {
            Ok(super::sasl::Step::Challenge(t)) => t,
            Ok(super::sasl::Step::Done { token, user }) => {
                tracing::info!(session, addr = %conn.addr, user, "SASL DIGEST-MD5 authenticated");
                if self.cfg.sasl_super_user.as_deref() == Some(user.as_str()) {
                    conn.auth.push(Id { scheme: "super".into(), id: String::new() });
                }
                let id = Id { scheme: "sasl".into(), id: user };
                if !conn.auth.contains(&id) {
                    conn.auth.push(id);
                }
                token
            }
            Err(why) => {
                tracing::warn!(session, addr = %conn.addr, "SASL authentication failed, closing the connection: {why}");
                self.sasl_failed(conn_id, xid);
                return;
            }
        };
        let body = Response::Sasl(protocol::SetSaslResponse { token });
        self.send(conn_id, Output::Frame(frame(ReplyHeader { xid, zxid: 0, err: 0 }, &body)));
    }

    /// AUTHFAILED with a SetSASLResponse whose token is null (-1), as
    /// ZooKeeper sends it (the Java client reads that body even on an
    /// error: without it, it fails on EOF instead of reporting AuthFailed),
    /// then the connection closes.
    fn sasl_failed(&mut self, conn_id: u64, xid: i32) {
        let mut v = Vec::new();
        ReplyHeader { xid, zxid: 0, err: ErrorCode::AuthFailed.as_i32() }.encode(&mut v);
        v.extend_from_slice(&(-1i32).to_be_bytes());
        self.send(conn_id, Output::Frame(Bytes::from(v)));
        self.send(conn_id, Output::Close);
    }

    /// Writes a snapshot the replica took in the background (one at a time:
    /// if one is still being written, this one is skipped; the next comes
    /// `snapCount` entries later and the log keeps everything meanwhile).
    fn snapshot(&mut self, snap: LogSnapshot) {
        if self.snapshotting.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(h) = self.snapshotting.take() {
            let _ = h.join();
        }
        let store = self.store.clone();
        let spawned = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            let started = Instant::now();
            match store.write_snapshot(&snap) {
                Ok(()) => tracing::info!(index = format!("{:#x}", snap.index), nodes = snap.core.nodes.len(), ms = started.elapsed().as_millis() as u64, "snapshot written"),
                // The log still holds everything: a failed snapshot costs restart time only.
                Err(e) => tracing::error!("snapshot failed: {e}"),
            }
        });
        match spawned {
            Ok(h) => self.snapshotting = Some(h),
            Err(e) => tracing::error!("cannot start snapshot thread: {e}"),
        }
    }

    pub(super) fn reset_stats(&mut self) {
        self.stats = Stats::default();
        self.reset_conn_stats();
    }

    pub(super) fn reset_conn_stats(&mut self) {
        for c in self.conns.values_mut() {
            c.received = 0;
            c.sent = 0;
            c.latency_min_ms = 0;
            c.latency_max_ms = 0;
            c.latency_total_ms = 0;
            c.latency_count = 0;
        }
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn conns_by_addr(&self) -> Vec<&Conn> {
        let mut v: Vec<&Conn> = self.conns.values().collect();
        v.sort_by_key(|c| c.addr);
        v
    }
}
