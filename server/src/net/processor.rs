//! The processor: one thread that owns the core and the store and handles
//! every input in arrival order, in batches: prep and apply each request,
//! log the batch's txns with one fsync, then release the batch's replies and
//! watch events. Nothing a client sees is ahead of what is durable, and each
//! session's replies and events leave in the order they happened.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use protocol::{codes::xid, ConnectRequest, ConnectResponse, ErrorCode, Id, Jute, KeeperState, ReplyHeader, Request, Response, WatcherEvent};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::core::watch::WatchEvent;
use crate::core::{self, acl, Caller, Connect, Core, Handled};
use crate::core::txn::{Txn, TxnOp};
use crate::store::Store;

use super::fourlw;

/// Inputs at most taken into one batch (one fsync).
pub const BATCH_MAX: usize = 1024;
/// Frames at most queued for one connection; a client that does not read
/// its replies is disconnected rather than buffered without bound.
pub const OUTPUT_QUEUE_MAX: usize = 65_536;
/// Containers/TTL nodes deleted at most per check, as ZooKeeper's `znode.container.maxPerMinute` spirit.
const EXPIRABLE_PER_CHECK_MAX: usize = 10_000;

pub enum Input {
    /// `tls_ids`: identities from the client's TLS certificate (x509).
    Connect { conn_id: u64, addr: SocketAddr, tls_ids: Vec<Id>, req: ConnectRequest, out: mpsc::Sender<Output> },
    Request { conn_id: u64, xid: i32, req: Request },
    /// A request whose body could not be decoded: answered with `err` in
    /// order, then the connection is closed if `close`.
    BadRequest { conn_id: u64, xid: i32, err: ErrorCode, close: bool },
    Closed { conn_id: u64 },
    /// `addr` is the asking connection's, listed by `cons` as ZooKeeper does.
    FourLetter { word: String, addr: SocketAddr, reply: oneshot::Sender<String> },
    Tick,
    Shutdown,
}

#[derive(Debug)]
pub enum Output {
    Frame(Bytes),
    Close,
}

/// A client connection as the processor knows it.
pub(super) struct Conn {
    pub session_id: i64,
    pub out: mpsc::Sender<Output>,
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
}

#[derive(Default)]
pub(super) struct Stats {
    pub received: u64,
    pub sent: u64,
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    pub latency_total_ms: u64,
    pub latency_count: u64,
}

pub struct Processor {
    pub(super) core: Core,
    store: Store,
    pub(super) cfg: Arc<Config>,
    pub(super) conns: HashMap<u64, Conn>,
    session_conn: HashMap<i64, u64>,
    pub(super) stats: Stats,
    epoch: Instant,
    last_container_check_ms: i64,
    /// Txns logged since the last snapshot began; at `snapCount` another starts.
    txns_since_snapshot: u64,
    /// The snapshot being written in the background, if any.
    snapshotting: Option<std::thread::JoinHandle<()>>,
}

/// What a batch releases after its fsync.
#[derive(Default)]
struct Pending {
    txns: Vec<Txn>,
    outputs: Vec<(u64, Output)>,
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn frame(header: ReplyHeader, body: &Response) -> Bytes {
    let mut v = Vec::with_capacity(16 + body.encoded_len());
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

impl Processor {
    /// Opens the store and replays it into a fresh core.
    pub fn recover(cfg: Arc<Config>, secret_source: impl FnOnce() -> u64) -> anyhow::Result<Processor> {
        std::fs::create_dir_all(&cfg.data_log_dir)
            .map_err(|e| anyhow::anyhow!("cannot create dataLogDir {}: {e}", cfg.data_log_dir.display()))?;
        let store = Store::open(&cfg.data_log_dir)?;
        let secret = store.secret(secret_source)?;
        let core_cfg = core::CoreConfig {
            min_session_timeout_ms: cfg.min_session_timeout_ms,
            max_session_timeout_ms: cfg.max_session_timeout_ms,
            extended_types: cfg.extended_types,
            super_digest: cfg.super_digest.clone(),
        };
        let first_session_id = core::session::Sessions::initial_session_id(wall_ms(), cfg.my_id as u8);
        let mut core = match store.load_snapshot()? {
            Some(snap) => Core::restore(core_cfg, secret, first_session_id, &snap),
            None => Core::new(core_cfg, secret, first_session_id),
        };
        let snapshot_zxid = core.last_zxid();
        let mut n = 0usize;
        for txn in store.replay(snapshot_zxid) {
            core.apply(&txn?);
            n += 1;
        }
        let epoch = Instant::now();
        // Restarted sessions get a full timeout to reconnect, as in ZooKeeper.
        core.sessions.reset_deadlines(0);
        tracing::info!(snapshot_zxid = format!("{snapshot_zxid:#x}"), txns = n, zxid = format!("{:#x}", core.last_zxid()), sessions = core.sessions.len(), nodes = core.tree.len(), "recovered");
        Ok(Processor {
            core,
            store,
            cfg,
            conns: HashMap::new(),
            session_conn: HashMap::new(),
            stats: Stats { latency_min_ms: 0, ..Default::default() },
            epoch,
            last_container_check_ms: 0,
            txns_since_snapshot: n as u64,
            snapshotting: None,
        })
    }

    /// Milliseconds of the monotonic clock that session deadlines use.
    pub(super) fn mono_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    /// Runs until `Shutdown` or until every sender is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut shutdown = false;
        while !shutdown {
            let Some(first) = rx.blocking_recv() else { break };
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut pending = Pending::default();
            for input in batch {
                if matches!(input, Input::Shutdown) {
                    shutdown = true;
                    continue;
                }
                self.step(input, &mut pending);
            }
            if let Err(e) = self.store.append(&pending.txns) {
                // Nothing of this batch was acknowledged; stopping is the only safe answer.
                tracing::error!("cannot make txns durable, stopping: {e}");
                std::process::exit(2);
            }
            self.txns_since_snapshot += pending.txns.len() as u64;
            for (conn_id, out) in pending.outputs {
                self.send(conn_id, out);
            }
            self.maybe_snapshot();
        }
        if let Some(h) = self.snapshotting.take() {
            let _ = h.join();
        }
        tracing::info!("processor stopped");
    }

    fn send(&mut self, conn_id: u64, out: Output) {
        let Some(conn) = self.conns.get_mut(&conn_id) else { return };
        if matches!(out, Output::Frame(_)) {
            conn.sent += 1;
            self.stats.sent += 1;
        }
        let closing = matches!(out, Output::Close);
        if conn.out.try_send(out).is_err() || closing {
            if !closing {
                tracing::warn!(session = format!("{:#x}", conn.session_id), "client not reading its replies; disconnecting");
                let _ = conn.out.try_send(Output::Close);
            }
            self.drop_conn(conn_id);
        }
    }

    fn drop_conn(&mut self, conn_id: u64) {
        if let Some(conn) = self.conns.remove(&conn_id) {
            if self.session_conn.get(&conn.session_id) == Some(&conn_id) {
                self.session_conn.remove(&conn.session_id);
                self.core.watches.remove_session(conn.session_id);
            }
        }
    }

    /// Logs and applies ops as one txn; returns its outcomes and queues its events.
    fn commit(&mut self, session_id: i64, cxid: i32, ops: Vec<TxnOp>, pending: &mut Pending) -> Vec<core::Outcome> {
        let txn = self.core.next_txn(session_id, cxid, wall_ms(), ops);
        let applied = self.core.apply(&txn);
        pending.txns.push(txn);
        self.queue_events(&applied.events, pending);
        applied.outcomes
    }

    fn queue_events(&self, events: &[WatchEvent], pending: &mut Pending) {
        for e in events {
            if let Some(conn_id) = self.session_conn.get(&e.session_id) {
                pending.outputs.push((*conn_id, Output::Frame(event_frame(e))));
            }
        }
    }

    fn step(&mut self, input: Input, pending: &mut Pending) {
        match input {
            Input::Connect { conn_id, addr, tls_ids, req, out } => self.connect(conn_id, addr, tls_ids, req, out, pending),
            Input::Request { conn_id, xid, req } => self.request(conn_id, xid, req, pending),
            Input::BadRequest { conn_id, xid, err, close } => {
                if self.conns.contains_key(&conn_id) {
                    let f = frame(ReplyHeader { xid, zxid: self.core.last_zxid(), err: err.as_i32() }, &Response::Empty);
                    pending.outputs.push((conn_id, Output::Frame(f)));
                    if close {
                        pending.outputs.push((conn_id, Output::Close));
                    }
                }
            }
            Input::Closed { conn_id } => self.drop_conn(conn_id),
            Input::FourLetter { word, addr, reply } => {
                let _ = reply.send(fourlw::run(self, &word, addr));
            }
            Input::Tick => self.tick(pending),
            Input::Shutdown => {}
        }
    }

    fn connect(
        &mut self,
        conn_id: u64,
        addr: SocketAddr,
        tls_ids: Vec<Id>,
        req: ConnectRequest,
        out: mpsc::Sender<Output>,
        pending: &mut Pending,
    ) {
        let now = self.mono_ms();
        let (session_id, timeout_ms) = match self.core.connect(&req, now) {
            Connect::New { session_id, timeout_ms, op } => {
                self.commit(session_id, 0, vec![op], pending);
                self.core.touch(session_id, now);
                (session_id, timeout_ms)
            }
            Connect::Resume { session_id, timeout_ms } => {
                // The session moves here: its old connection (if any) is closed.
                if let Some(old) = self.session_conn.remove(&session_id) {
                    self.core.watches.remove_session(session_id);
                    pending.outputs.push((old, Output::Close));
                }
                (session_id, timeout_ms)
            }
            Connect::Expired => {
                tracing::info!(session = format!("{:#x}", req.session_id), %addr, "reconnect refused: session expired or bad password");
                let resp = ConnectResponse { protocol_version: 0, time_out: 0, session_id: 0, passwd: vec![0; 16], read_only: false };
                let _ = out.try_send(Output::Frame(Bytes::from(resp.to_bytes())));
                let _ = out.try_send(Output::Close);
                return;
            }
            Connect::ZxidAhead => {
                tracing::warn!(%addr, seen = format!("{:#x}", req.last_zxid_seen), ours = format!("{:#x}", self.core.last_zxid()), "client has seen a later zxid than ours; refusing");
                let _ = out.try_send(Output::Close);
                return;
            }
        };
        let resp = ConnectResponse {
            protocol_version: 0,
            time_out: timeout_ms,
            session_id,
            passwd: self.core.sessions.password(session_id),
            read_only: false,
        };
        self.conns.insert(
            conn_id,
            Conn {
                session_id,
                out,
                auth: std::iter::once(Id { scheme: "ip".into(), id: addr.ip().to_string() }).chain(tls_ids).collect(),
                addr,
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
            },
        );
        self.session_conn.insert(session_id, conn_id);
        pending.outputs.push((conn_id, Output::Frame(Bytes::from(resp.to_bytes()))));
    }

    fn request(&mut self, conn_id: u64, xid: i32, req: Request, pending: &mut Pending) {
        let started = Instant::now();
        let now = self.mono_ms();
        let Some(conn) = self.conns.get_mut(&conn_id) else { return };
        conn.received += 1;
        conn.last_op = op_name(&req);
        conn.last_cxid = xid;
        self.stats.received += 1;
        let session_id = conn.session_id;
        if !self.core.touch(session_id, now) {
            let f = frame(ReplyHeader { xid, zxid: self.core.last_zxid(), err: ErrorCode::SessionExpired.as_i32() }, &Response::Empty);
            pending.outputs.push((conn_id, Output::Frame(f)));
            pending.outputs.push((conn_id, Output::Close));
            return;
        }
        let (err, body, close) = match &req {
            Request::Auth(a) => match acl::authenticate(&a.scheme, &a.auth, self.core.config().super_digest.as_deref()) {
                Ok(ids) => {
                    let conn = self.conns.get_mut(&conn_id).expect("checked above");
                    for id in ids {
                        if !conn.auth.contains(&id) {
                            conn.auth.push(id);
                        }
                    }
                    (ErrorCode::Ok, Response::Empty, false)
                }
                // ZooKeeper answers AUTHFAILED and then closes the connection.
                Err(e) => (e, Response::Empty, true),
            },
            _ => {
                let auth = self.conns[&conn_id].auth.clone();
                let caller = Caller { session_id, auth: &auth };
                match self.core.handle(caller, &req) {
                    Handled::Reply { err, body, events } => {
                        self.queue_events(&events, pending);
                        (err, body, false)
                    }
                    Handled::Write(ops) => {
                        let outcomes = self.commit(session_id, xid, ops, pending);
                        let (err, body) = core::reply(&req, &outcomes);
                        (err, body, matches!(req, Request::CloseSession))
                    }
                }
            }
        };
        // Pings are answered on the ping xid whatever the client sent; auth
        // and setWatches echo the client's xid (-4 and -8 from the Java client).
        let xid = if matches!(req, Request::Ping) { xid::PING } else { xid };
        // Auth replies carry zxid 0 in ZooKeeper (they bypass the request pipeline).
        let zxid = if matches!(req, Request::Auth(_)) { 0 } else { self.core.last_zxid() };
        let ms = started.elapsed().as_millis() as u64;
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.last_zxid = zxid;
            conn.last_response_ms = wall_ms();
            conn.last_latency_ms = ms;
            conn.latency_min_ms = if conn.latency_count == 0 { ms } else { conn.latency_min_ms.min(ms) };
            conn.latency_max_ms = conn.latency_max_ms.max(ms);
            conn.latency_total_ms += ms;
            conn.latency_count += 1;
        }
        pending.outputs.push((conn_id, Output::Frame(frame(ReplyHeader { xid, zxid, err: err.as_i32() }, &body))));
        if close {
            pending.outputs.push((conn_id, Output::Close));
        }
        let s = &mut self.stats;
        s.latency_min_ms = if s.latency_count == 0 { ms } else { s.latency_min_ms.min(ms) };
        s.latency_max_ms = s.latency_max_ms.max(ms);
        s.latency_total_ms += ms;
        s.latency_count += 1;
    }

    fn tick(&mut self, pending: &mut Pending) {
        let now = self.mono_ms();
        for (session_id, op) in self.core.expire(now) {
            tracing::info!(session = format!("{session_id:#x}"), "session expired");
            self.commit(session_id, 0, vec![op], pending);
            if let Some(conn_id) = self.session_conn.get(&session_id).copied() {
                pending.outputs.push((conn_id, Output::Close));
            }
        }
        if now - self.last_container_check_ms >= self.cfg.container_check_interval_ms as i64 {
            self.last_container_check_ms = now;
            for op in self.core.expirable(wall_ms(), EXPIRABLE_PER_CHECK_MAX) {
                self.commit(0, 0, vec![op], pending);
            }
        }
    }

    /// Starts a background snapshot once `snapCount` txns have been logged
    /// since the last one. The copy is taken here, between batches, so it is
    /// exactly the state at its zxid; writing it does not block requests.
    fn maybe_snapshot(&mut self) {
        if self.txns_since_snapshot < self.cfg.snap_count {
            return;
        }
        if self.snapshotting.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(h) = self.snapshotting.take() {
            let _ = h.join();
        }
        self.txns_since_snapshot = 0;
        let snap = self.core.snapshot();
        let store = self.store.clone();
        let spawned = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            let started = Instant::now();
            match store.write_snapshot(&snap) {
                Ok(()) => tracing::info!(zxid = format!("{:#x}", snap.zxid), nodes = snap.nodes.len(), ms = started.elapsed().as_millis() as u64, "snapshot written"),
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
