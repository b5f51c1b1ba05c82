//! The deterministic core: tree, sessions, watches and ACLs, with prep
//! (request → txn) and apply (txn → change, results, watch events).
//!
//! No I/O, no clock, no randomness, no async: time comes in as `now_ms`
//! arguments, txns carry their own time, and everything that happens comes
//! out as values. That is what lets a replica driver, a simulator and
//! property tests drive it directly.

pub mod acl;
pub mod path;
pub mod prep;
pub mod session;
pub mod snapshot;
pub mod tree;
pub mod txn;
pub mod watch;

#[cfg(test)]
mod model_test;

use protocol::{
    codes::perms, ClientInfo, ConnectRequest, CreateMode, ErrorCode, EventType, GetAclResponse,
    GetAllChildrenNumberResponse, GetChildren2Response, GetChildrenResponse, GetDataResponse, GetEphemeralsResponse,
    MultiOp, MultiResponse, OpResult, Request, Response, SetWatches2, Stat, SyncResponse, WatcherType,
    WhoAmIResponse,
};

pub use prep::Caller;
pub use prep::Outstanding;
use prep::{PrepConfig, Write};
use session::Sessions;
use tree::{owner, DataTree};
use txn::*;
use watch::{Kind, WatchEvent, Watches};

/// Settings of the core, from zoo.cfg.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `extendedTypesEnabled`: allows TTL nodes.
    pub extended_types: bool,
    /// `zookeeper.DigestAuthenticationProvider.superDigest`.
    pub super_digest: Option<String>,
    /// `maxWatchesPerSession` (Corral's own): watches one session may hold
    /// on this member; 0 means unlimited.
    pub max_watches_per_session: usize,
    /// `maxSetWatchesPaths` (Corral's own): paths one SetWatches or
    /// SetWatches2 request may carry; 0 means unlimited.
    pub max_set_watches_paths: usize,
}

/// Default of `maxWatchesPerSession`: far above what a coordination client
/// holds, low enough that a session cannot take the member's memory.
pub const MAX_WATCHES_PER_SESSION_DEFAULT: usize = 100_000;
/// Default of `maxSetWatchesPaths`: ZooKeeper's Java client sends at most
/// 128 Ki characters of paths per SetWatches, so at most this many paths;
/// it is also above [`MAX_WATCHES_PER_SESSION_DEFAULT`], for clients (the C
/// client) that send all their watches in one request.
pub const MAX_SET_WATCHES_PATHS_DEFAULT: usize = 131_072;

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            min_session_timeout_ms: 4000,
            max_session_timeout_ms: 40000,
            extended_types: false,
            super_digest: None,
            max_watches_per_session: MAX_WATCHES_PER_SESSION_DEFAULT,
            max_set_watches_paths: MAX_SET_WATCHES_PATHS_DEFAULT,
        }
    }
}

/// What became of a request handed to [`Core::handle`].
#[derive(Debug)]
pub enum Handled {
    /// Answered from local state; `events` go out before the reply.
    Reply { err: ErrorCode, body: Response, events: Vec<WatchEvent> },
    /// A write: these ops must be logged as one txn, then applied.
    Write(Vec<TxnOp>),
    /// A read that would take the session over one of the server's limits
    /// (named: the zoo.cfg key): not answered; the connection is closed, as
    /// the protocol has no error code for it. Watches it registered before
    /// reaching the limit are still held: the caller drops the session's.
    OverLimit(&'static str),
}

/// Why a read was not answered.
enum ReadError {
    /// Answered with this code.
    Code(ErrorCode),
    /// Over the limit of this name: see [`Handled::OverLimit`].
    Limit(&'static str),
}

impl From<ErrorCode> for ReadError {
    fn from(e: ErrorCode) -> Self {
        ReadError::Code(e)
    }
}

/// The result of applying one txn op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created { path: String, stat: Stat },
    Deleted,
    DataSet(Stat),
    AclSet(Stat),
    Checked,
    SessionCreated,
    SessionClosed,
    SecretSet,
    Error(ErrorCode),
}

/// What applying a txn produced.
#[derive(Debug, Default)]
pub struct Applied {
    pub outcomes: Vec<Outcome>,
    pub events: Vec<WatchEvent>,
}

/// The outcome of a connect request.
#[derive(Debug, PartialEq)]
pub enum Connect {
    /// A new session: log `op` (CreateSession), then answer.
    New { session_id: i64, timeout_ms: i32, op: TxnOp },
    /// An existing session, password checked.
    Resume { session_id: i64, timeout_ms: i32 },
    /// Unknown/expired session or wrong password: answer with timeout 0.
    Expired,
    /// The client has seen a zxid this server has not: close without answering.
    ZxidAhead,
}

pub struct Core {
    pub tree: DataTree,
    pub sessions: Sessions,
    pub watches: Watches,
    /// Changes proposed but not yet applied (only a leader has any).
    pub outstanding: Outstanding,
    last_zxid: i64,
    cfg: CoreConfig,
    prep_cfg: PrepConfig,
}

impl Core {
    /// `secret` keys session passwords; `first_session_id` seeds session ids
    /// (see `Sessions::initial_session_id`).
    pub fn new(cfg: CoreConfig, secret: u64, first_session_id: i64) -> Core {
        Core {
            tree: DataTree::new(),
            sessions: Sessions::new(secret, first_session_id),
            watches: Watches::default(),
            outstanding: Outstanding::default(),
            last_zxid: 0,
            prep_cfg: PrepConfig { extended_types: cfg.extended_types },
            cfg,
        }
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    fn negotiate_timeout(&self, requested_ms: i32) -> i32 {
        requested_ms.clamp(self.cfg.min_session_timeout_ms, self.cfg.max_session_timeout_ms)
    }

    /// Decides a connect request (`ZooKeeperServer.processConnectRequest`).
    pub fn connect(&mut self, req: &ConnectRequest, now_ms: i64) -> Connect {
        if req.last_zxid_seen > self.last_zxid {
            return Connect::ZxidAhead;
        }
        let timeout_ms = self.negotiate_timeout(req.time_out);
        if req.session_id == 0 {
            let session_id = self.sessions.allocate_id();
            return Connect::New {
                session_id,
                timeout_ms,
                op: TxnOp::new(Op::CreateSession(CreateSessionTxn { session_id, timeout_ms })),
            };
        }
        // A session whose close is already proposed (on the leader: it
        // expired, or its client asked) is as good as gone: resuming it
        // would tell the client it lives just before its ephemerals go
        // (ZooKeeper's tracker likewise refuses a closing session).
        if !self.sessions.contains(req.session_id) || req.passwd != self.sessions.password(req.session_id) || self.outstanding.is_closing(req.session_id) {
            return Connect::Expired;
        }
        self.sessions.renegotiate(req.session_id, timeout_ms);
        self.sessions.touch(req.session_id, now_ms);
        Connect::Resume { session_id: req.session_id, timeout_ms }
    }

    /// Keeps a session alive; false if it no longer exists.
    pub fn touch(&mut self, session_id: i64, now_ms: i64) -> bool {
        self.sessions.touch(session_id, now_ms)
    }

    /// Sessions whose deadline has passed and whose close is not yet proposed.
    pub fn expired(&self, now_ms: i64) -> Vec<i64> {
        self.sessions.expired(now_ms).into_iter().filter(|id| !self.outstanding.is_closing(*id)).collect()
    }

    /// Prepares the close of `session_id` as the txn at `zxid` (expiry, or
    /// a client's closeSession): its ephemerals go.
    pub fn prep_close(&mut self, session_id: i64, zxid: i64) -> Vec<TxnOp> {
        let caller = Caller { session_id, auth: &[] };
        prep::prep(&self.tree, &mut self.outstanding, &self.prep_cfg, caller, &Write::CloseSession, zxid)
    }

    /// Empty containers that once had children and childless TTL nodes
    /// unmodified for longer than their TTL (`ContainerManager.getCandidates`),
    /// at most `limit`.
    pub fn expirable(&self, now_ms: i64, limit: usize) -> Vec<String> {
        self.tree
            .expirable()
            .filter(|(_, n)| n.children.is_empty())
            .filter(|(_, n)| match owner::ttl_ms(n.ephemeral_owner) {
                Some(ttl) => now_ms - n.mtime > ttl,
                None => n.is_container() && n.cversion > 0,
            })
            .filter(|(p, _)| !self.outstanding.is_changing(p))
            .take(limit)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Prepares the removal of an expirable node as the txn at `zxid`;
    /// `None` if a proposed change touches it.
    pub fn prep_delete_container(&mut self, path: &str, zxid: i64) -> Option<TxnOp> {
        prep::prep_delete_container(&self.tree, &mut self.outstanding, path, zxid)
    }

    /// Handles a request of a connected session: reads are answered at
    /// once; writes are prepared into the ops of the txn that will be logged
    /// at `zxid` (the next log position), and what they change is kept in
    /// [`Core::outstanding`] until that txn is applied. Auth and SASL belong
    /// to the connection and are handled by the shell.
    pub fn handle(&mut self, caller: Caller, req: &Request, zxid: i64) -> Handled {
        let mut write = |w: Write| Handled::Write(prep::prep(&self.tree, &mut self.outstanding, &self.prep_cfg, caller, &w, zxid));
        match req {
            Request::Create(r) | Request::Create2(r) => write(Write::Create { req: r, container: false }),
            Request::CreateContainer(r) => write(Write::Create { req: r, container: true }),
            Request::CreateTtl(r) => write(Write::CreateTtl(r)),
            Request::Delete(r) => write(Write::Delete(r)),
            Request::SetData(r) => write(Write::SetData(r)),
            Request::SetAcl(r) => write(Write::SetAcl(r)),
            Request::Check(r) => write(Write::Check(r)),
            Request::Multi(m) => write(Write::Multi(&m.ops)),
            Request::CloseSession => write(Write::CloseSession),
            _ => {
                let mut events = Vec::new();
                let (err, body) = match self.read(caller, req, &mut events) {
                    Ok(body) => (ErrorCode::Ok, body),
                    Err(ReadError::Code(e)) => (e, Response::Empty),
                    Err(ReadError::Limit(name)) => return Handled::OverLimit(name),
                };
                Handled::Reply { err, body, events }
            }
        }
    }

    fn node_for_read(&self, path: &str, perm: i32, caller: Caller) -> Result<&tree::Node, ErrorCode> {
        path::validate(path, false)?;
        let node = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
        acl::check(&node.acl, perm, caller.auth)?;
        Ok(node)
    }

    /// Registers a watch unless the session holds `maxWatchesPerSession`
    /// already (one it holds again costs nothing).
    fn watch(&mut self, session_id: i64, kind: Kind, path: &str) -> Result<(), ReadError> {
        let max = self.cfg.max_watches_per_session;
        if max > 0 && self.watches.session_len(session_id) >= max && !self.watches.has(session_id, kind, path) {
            return Err(ReadError::Limit("maxWatchesPerSession"));
        }
        self.watches.add(session_id, kind, path);
        Ok(())
    }

    fn get_data(&mut self, caller: Caller, path: &str, watch: bool) -> Result<(Option<Vec<u8>>, Stat), ReadError> {
        let node = self.node_for_read(path, perms::READ, caller)?;
        let out = (node.data.clone(), node.stat());
        if watch {
            self.watch(caller.session_id, Kind::Data, path)?;
        }
        Ok(out)
    }

    fn get_children(&mut self, caller: Caller, path: &str, watch: bool) -> Result<(Vec<String>, Stat), ReadError> {
        let node = self.node_for_read(path, perms::READ, caller)?;
        let out = (node.children.iter().cloned().collect(), node.stat());
        if watch {
            self.watch(caller.session_id, Kind::Child, path)?;
        }
        Ok(out)
    }

    fn read(&mut self, caller: Caller, req: &Request, events: &mut Vec<WatchEvent>) -> Result<Response, ReadError> {
        Ok(match req {
            Request::Ping => Response::Empty,
            Request::Exists(r) => {
                path::validate(&r.path, false)?;
                // Registered whether or not the node exists: it fires on creation.
                if r.watch {
                    self.watch(caller.session_id, Kind::Data, &r.path)?;
                }
                Response::Stat(self.tree.get(&r.path).ok_or(ErrorCode::NoNode)?.stat())
            }
            Request::GetData(r) => {
                let (data, stat) = self.get_data(caller, &r.path, r.watch)?;
                Response::GetData(GetDataResponse { data, stat })
            }
            Request::GetChildren(r) => {
                Response::GetChildren(GetChildrenResponse { children: self.get_children(caller, &r.path, r.watch)?.0 })
            }
            Request::GetChildren2(r) => {
                let (children, stat) = self.get_children(caller, &r.path, r.watch)?;
                Response::GetChildren2(GetChildren2Response { children, stat })
            }
            Request::GetAcl(r) => {
                let node = self.node_for_read(&r.path, perms::READ | perms::ADMIN, caller)?;
                let acl = if acl::check(&node.acl, perms::ADMIN, caller.auth).is_ok() {
                    node.acl.clone()
                } else {
                    acl::redact(&node.acl)
                };
                Response::GetAcl(GetAclResponse { acl, stat: node.stat() })
            }
            Request::GetAllChildrenNumber(r) => {
                self.node_for_read(&r.path, perms::READ, caller)?;
                Response::GetAllChildrenNumber(GetAllChildrenNumberResponse {
                    total_number: self.tree.descendant_count(&r.path) as i32,
                })
            }
            Request::GetEphemerals(r) => {
                let prefix = if r.prefix_path.is_empty() { "/" } else { r.prefix_path.as_str() };
                let ephemerals =
                    self.tree.ephemerals(caller.session_id).filter(|p| p.starts_with(prefix)).cloned().collect();
                Response::GetEphemerals(GetEphemeralsResponse { ephemerals })
            }
            Request::Sync(r) => {
                path::validate(&r.path, false)?;
                Response::Sync(SyncResponse { path: r.path.clone() })
            }
            Request::MultiRead(m) => Response::Multi(MultiResponse { results: self.multi_read(caller, &m.ops)? }),
            Request::AddWatch(r) => {
                path::validate(&r.path, false)?;
                let kind = match protocol::AddWatchMode::from_i32(r.mode) {
                    Some(protocol::AddWatchMode::Persistent) => Kind::Persistent,
                    Some(protocol::AddWatchMode::PersistentRecursive) => Kind::PersistentRecursive,
                    None => return Err(ErrorCode::BadArguments.into()),
                };
                self.watch(caller.session_id, kind, &r.path)?;
                Response::AddWatch(protocol::ErrorResponse { err: 0 })
            }
            Request::CheckWatches(r) => {
                let t = WatcherType::from_i32(r.r#type).ok_or(ErrorCode::BadArguments)?;
                if !self.watches.contains(caller.session_id, t, &r.path) {
                    return Err(ErrorCode::NoWatcher.into());
                }
                Response::Empty
            }
            Request::RemoveWatches(r) => {
                let t = WatcherType::from_i32(r.r#type).ok_or(ErrorCode::BadArguments)?;
                if !self.watches.remove(caller.session_id, t, &r.path) {
                    return Err(ErrorCode::NoWatcher.into());
                }
                Response::Empty
            }
            Request::SetWatches(w) => {
                let w2 = SetWatches2 {
                    relative_zxid: w.relative_zxid,
                    data_watches: w.data_watches.clone(),
                    exist_watches: w.exist_watches.clone(),
                    child_watches: w.child_watches.clone(),
                    ..Default::default()
                };
                self.set_watches(caller.session_id, &w2, events)?;
                Response::Empty
            }
            Request::SetWatches2(w) => {
                self.set_watches(caller.session_id, w, events)?;
                Response::Empty
            }
            Request::WhoAmI => Response::WhoAmI(WhoAmIResponse {
                client_info: caller
                    .auth
                    .iter()
                    .map(|id| ClientInfo {
                        auth_scheme: id.scheme.clone(),
                        user: match id.scheme.as_str() {
                            "digest" => id.id.split(':').next().unwrap_or_default().to_owned(),
                            _ => id.id.clone(),
                        },
                    })
                    .collect(),
            }),
            Request::Reconfig(_) => return Err(ErrorCode::ReconfigDisabled.into()),
            Request::Sasl(_) | Request::Auth(_) => return Err(ErrorCode::Unimplemented.into()),
            w => {
                debug_assert!(is_write(w));
                unreachable!("writes are prepped, not read")
            }
        })
    }

    fn multi_read(&mut self, caller: Caller, ops: &[MultiOp]) -> Result<Vec<OpResult>, ReadError> {
        ops.iter()
            .map(|op| {
                let result = match op {
                    MultiOp::GetData(r) => self.get_data(caller, &r.path, r.watch).map(|(d, s)| OpResult::GetData(d, s)),
                    MultiOp::GetChildren(r) => self.get_children(caller, &r.path, r.watch).map(|(c, _)| OpResult::GetChildren(c)),
                    _ => Err(ErrorCode::BadArguments.into()),
                };
                match result {
                    Ok(r) => Ok(r),
                    Err(ReadError::Code(e)) => Ok(OpResult::Error(e)),
                    Err(limit) => Err(limit),
                }
            })
            .collect()
    }

    /// Re-registers a reconnecting client's watches, firing at once those
    /// whose condition changed after `relative_zxid` (`DataTree.setWatches`).
    /// At most `maxSetWatchesPaths` paths in one request, whatever they do:
    /// each costs a lookup and may cost an event.
    fn set_watches(&mut self, session_id: i64, w: &SetWatches2, events: &mut Vec<WatchEvent>) -> Result<(), ReadError> {
        let lists = [&w.data_watches, &w.exist_watches, &w.child_watches, &w.persistent_watches, &w.persistent_recursive_watches];
        let paths: usize = lists.iter().map(|l| l.len()).sum();
        if self.cfg.max_set_watches_paths > 0 && paths > self.cfg.max_set_watches_paths {
            return Err(ReadError::Limit("maxSetWatchesPaths"));
        }
        let mut fire = |event_type, path: &str| events.push(WatchEvent { session_id, event_type, path: path.to_owned() });
        for p in &w.data_watches {
            match self.tree.get(p) {
                None => fire(EventType::NodeDeleted, p),
                Some(n) if n.mzxid > w.relative_zxid => fire(EventType::NodeDataChanged, p),
                Some(_) => self.watch(session_id, Kind::Data, p)?,
            }
        }
        for p in &w.exist_watches {
            match self.tree.get(p) {
                Some(_) => fire(EventType::NodeCreated, p),
                None => self.watch(session_id, Kind::Data, p)?,
            }
        }
        for p in &w.child_watches {
            match self.tree.get(p) {
                None => fire(EventType::NodeDeleted, p),
                Some(n) if n.pzxid > w.relative_zxid => fire(EventType::NodeChildrenChanged, p),
                Some(_) => self.watch(session_id, Kind::Child, p)?,
            }
        }
        for p in &w.persistent_watches {
            self.watch(session_id, Kind::Persistent, p)?;
        }
        for p in &w.persistent_recursive_watches {
            self.watch(session_id, Kind::PersistentRecursive, p)?;
        }
        Ok(())
    }

    /// Applies a committed txn: the only place the tree and session table change.
    pub fn apply(&mut self, txn: &Txn) -> Applied {
        assert!(txn.zxid > self.last_zxid, "apply: zxid {:#x} not after {:#x}", txn.zxid, self.last_zxid);
        self.last_zxid = txn.zxid;
        self.outstanding.applied(txn.zxid);
        let mut applied = Applied::default();
        for op in &txn.ops {
            let outcome = match op.op.as_ref().expect("txn op present") {
                Op::CreateSession(s) => {
                    self.sessions.open(s.session_id, s.timeout_ms);
                    Outcome::SessionCreated
                }
                Op::CloseSession(s) => {
                    let paths: Vec<String> = self.tree.ephemerals(s.session_id).cloned().collect();
                    for p in paths {
                        self.delete(&p, txn.zxid, &mut applied.events);
                    }
                    self.sessions.close(s.session_id);
                    self.watches.remove_session(s.session_id);
                    Outcome::SessionClosed
                }
                Op::Create(c) => {
                    let acl = c.acl.iter().map(AclEntry::to_acl).collect();
                    let stat = self.tree.create(&c.path, c.data.clone(), acl, c.ephemeral_owner, txn.zxid, txn.time_ms);
                    applied.events.extend(self.watches.trigger(&c.path, EventType::NodeCreated));
                    applied.events.extend(self.watches.trigger(path::parent(&c.path), EventType::NodeChildrenChanged));
                    Outcome::Created { path: c.path.clone(), stat }
                }
                Op::Delete(d) => {
                    self.delete(&d.path, txn.zxid, &mut applied.events);
                    Outcome::Deleted
                }
                Op::DeleteContainer(d) => match self.tree.get(&d.path) {
                    // Re-checked here: a child may have been created since the candidate was chosen.
                    Some(n) if n.children.is_empty() => {
                        self.delete(&d.path, txn.zxid, &mut applied.events);
                        Outcome::Deleted
                    }
                    Some(_) => Outcome::Error(ErrorCode::NotEmpty),
                    None => Outcome::Error(ErrorCode::NoNode),
                },
                Op::SetData(s) => {
                    let stat = self.tree.set_data(&s.path, s.data.clone(), s.version, txn.zxid, txn.time_ms);
                    applied.events.extend(self.watches.trigger(&s.path, EventType::NodeDataChanged));
                    Outcome::DataSet(stat)
                }
                Op::SetAcl(s) => {
                    let stat = self.tree.set_acl(&s.path, s.acl.iter().map(AclEntry::to_acl).collect(), s.version);
                    Outcome::AclSet(stat)
                }
                Op::Check(_) => Outcome::Checked,
                Op::InitSecret(s) => {
                    self.sessions.init_secret(s.secret);
                    Outcome::SecretSet
                }
                Op::Error(e) => Outcome::Error(ErrorCode::from_i32(e.err).unwrap_or(ErrorCode::SystemError)),
            };
            applied.outcomes.push(outcome);
        }
        applied
    }

    fn delete(&mut self, path: &str, zxid: i64, events: &mut Vec<WatchEvent>) {
        self.tree.delete(path, zxid);
        events.extend(self.watches.trigger(path, EventType::NodeDeleted));
        events.extend(self.watches.trigger(path::parent(path), EventType::NodeChildrenChanged));
    }
}

/// Builds the reply to a write request from what applying its txn produced.
pub fn reply(req: &Request, outcomes: &[Outcome]) -> (ErrorCode, Response) {
    if let Request::Multi(m) = req {
        let results = m
            .ops
            .iter()
            .zip(outcomes)
            .map(|(op, outcome)| match (outcome, op) {
                // Every create variant answers as a plain create inside a multi:
                // ZooKeeper 3.8 drops the Stat there (ZOOKEEPER-4026) and clients expect that.
                (Outcome::Created { path, .. }, _) => OpResult::Create(path.clone()),
                (Outcome::Deleted, _) => OpResult::Delete,
                (Outcome::DataSet(stat), _) => OpResult::SetData(stat.clone()),
                (Outcome::Checked, _) => OpResult::Check,
                (Outcome::Error(e), _) => OpResult::Error(*e),
                (o, _) => unreachable!("multi op produced {o:?}"),
            })
            .collect();
        return (ErrorCode::Ok, Response::Multi(MultiResponse { results }));
    }
    if let Request::Sync(r) = req {
        // A sync's txn is empty unless its path was refused.
        return match outcomes.first() {
            Some(Outcome::Error(e)) => (*e, Response::Empty),
            _ => (ErrorCode::Ok, Response::Sync(SyncResponse { path: r.path.clone() })),
        };
    }
    let outcome = outcomes.first().expect("a plain request has one outcome");
    match (outcome, req) {
        (Outcome::Error(e), _) => (*e, Response::Empty),
        (Outcome::Created { path, .. }, Request::Create(_)) => {
            (ErrorCode::Ok, Response::Create(protocol::CreateResponse { path: path.clone() }))
        }
        (Outcome::Created { path, stat }, _) => {
            (ErrorCode::Ok, Response::Create2(protocol::Create2Response { path: path.clone(), stat: stat.clone() }))
        }
        (Outcome::DataSet(stat), _) | (Outcome::AclSet(stat), _) => (ErrorCode::Ok, Response::Stat(stat.clone())),
        _ => (ErrorCode::Ok, Response::Empty),
    }
}

/// Whether a request changes replicated state (and so is prepped into a
/// txn that goes through the log) rather than being read.
pub fn is_write(req: &Request) -> bool {
    matches!(
        req,
        Request::Create(_)
            | Request::Create2(_)
            | Request::CreateContainer(_)
            | Request::CreateTtl(_)
            | Request::Delete(_)
            | Request::SetData(_)
            | Request::SetAcl(_)
            | Request::Check(_)
            | Request::Multi(_)
            | Request::CloseSession
    )
}

/// Whether `mode` flags make an ephemeral (used by the shell's stats).
pub fn is_ephemeral_flags(flags: i32) -> bool {
    CreateMode::from_i32(flags).is_some_and(CreateMode::is_ephemeral)
}
