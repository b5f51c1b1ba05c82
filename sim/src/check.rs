//! The checks a run must pass, fed as it goes:
//!
//! - Replicas agree: the txn a member applies at an index is the txn every
//!   other member applies there (same session, cxid and contents), and no
//!   request is applied twice.
//! - A reference core applies the agreed log in order; every read a client
//!   got is compared with the reference state at the zxid its reply carried
//!   (a member answers from exactly the prefix it has applied), so stale,
//!   phantom or torn reads are caught.
//! - Per session: replies come in request order and their zxids never go
//!   back (FIFO, monotonic reads; read-your-writes follows from both).
//! - Every acknowledged write is in the final log exactly once, at or below
//!   the zxid of its reply; sequential names are never handed out twice.
//! - At the end every member holds the reference state.
//! - Watches: a client that set a watch sees its event before any reply
//!   whose zxid is at or past the change that fires it (ZooKeeper: a client
//!   sees the event before it sees the new data).
//! - Ephemerals: created only for open sessions, gone with their session's
//!   close (by the client or by expiry) in the same txn, and no member
//!   serves a session after its close. The world adds the timing half: an
//!   expiry must not come while the session is being served (see
//!   `World::check_expiry`), and abandoned sessions must expire before a
//!   run ends.

use std::collections::{BTreeMap, BTreeSet};

use corral::core::tree::owner;
use corral::core::txn::{Op, Txn};
use corral::core::{Core, CoreConfig};
use prost::Message as _;
use protocol::{ErrorCode, Request, Response};

/// A violated check, in words.
pub type Failure = String;

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Every ordinary ephemeral (owned by a session) of a state.
fn ephemeral_paths(core: &Core) -> BTreeSet<String> {
    core.tree.nodes().filter(|(_, n)| owner::is_session(n.ephemeral_owner)).map(|(p, _)| p.clone()).collect()
}

/// A value of a path at some zxid: `None` when it did not exist.
type Value = Option<(Vec<u8>, i32)>;

/// A read waiting for the reference to reach its zxid.
struct PendingRead {
    client: usize,
    xid: i32,
    path: String,
    zxid: i64,
    got: Value,
    mzxid: i64,
}

/// A watch a client holds (set by a read answered at `set_at`), and the
/// highest zxid of a reply it got while the watch had not fired.
struct ArmedWatch {
    client: usize,
    xid: i32,
    path: String,
    set_at: i64,
    observed: i64,
    observed_xid: i32,
}

/// An acknowledged write.
struct Ack {
    client: usize,
    session_id: i64,
    xid: i32,
    reply_zxid: i64,
}

pub struct Checker {
    /// index → (hash of the txn, session, cxid).
    log: BTreeMap<u64, (u64, i64, i32, u64)>,
    txns: BTreeMap<u64, Txn>,
    /// (session, cxid) → index, for client requests (cxid > 0).
    requests: BTreeMap<(i64, i32), u64>,
    reference: Core,
    /// Every index up to this is known (txn or not) and applied to the reference.
    reference_upto: u64,
    /// Reports whose range starts beyond what is known (after a snapshot install).
    known_upto: u64,
    /// path → its values over time, from the reference.
    history: BTreeMap<String, Vec<(i64, Value)>>,
    reads: Vec<PendingRead>,
    acks: Vec<Ack>,
    sequential: BTreeSet<String>,
    pub reads_checked: u64,
    /// Watches whose client got a reply past their set point, checked.
    pub watches_checked: u64,
    /// Sessions expired (closed by the leader, not by their client).
    pub expiries: u64,
    /// The highest log index of a write acknowledged so far.
    acked_upto: u64,
    /// Per client, the watches it holds that have not fired yet.
    armed: BTreeMap<usize, Vec<ArmedWatch>>,
    /// Watches no longer held (fired or given up with the connection) whose
    /// client saw replies past their set point: checked once the reference
    /// reaches the last such reply.
    disarmed: Vec<ArmedWatch>,
    /// Session → the index of the txn that closed it.
    closed: BTreeMap<i64, u64>,
    /// Expiry closes (session, index, txn time) learned since the last `take_expiries`.
    new_expiries: Vec<(i64, u64, i64)>,
}

impl Default for Checker {
    fn default() -> Self {
        Checker::new()
    }
}

impl Checker {
    pub fn new() -> Checker {
        Checker {
            log: BTreeMap::new(),
            txns: BTreeMap::new(),
            requests: BTreeMap::new(),
            reference: Core::new(CoreConfig::default(), 0, 0),
            reference_upto: 0,
            known_upto: 0,
            history: BTreeMap::new(),
            reads: Vec::new(),
            acks: Vec::new(),
            sequential: BTreeSet::new(),
            reads_checked: 0,
            watches_checked: 0,
            expiries: 0,
            acked_upto: 0,
            armed: BTreeMap::new(),
            disarmed: Vec::new(),
            closed: BTreeMap::new(),
            new_expiries: Vec::new(),
        }
    }

    /// Member `node` applied `txns`, which are every txn entry in
    /// `(after, upto]` (the other indexes there hold no txn).
    pub fn applied(&mut self, node: u64, after: u64, upto: u64, txns: Vec<(u64, Txn)>) -> Result<(), Failure> {
        for (index, txn) in txns {
            if index <= after || index > upto {
                return Err(format!("member {node} reported txn {index:#x} outside ({after:#x}, {upto:#x}]"));
            }
            let hash = fnv(&txn.encode_to_vec());
            match self.log.get(&index) {
                Some((h, s, c, first)) if *h != hash => {
                    return Err(format!(
                        "replicas disagree at zxid {index:#x}: member {node} applied session {:#x} cxid {} but member {first} applied session {s:#x} cxid {c}",
                        txn.session_id, txn.cxid
                    ))
                }
                Some(_) => {}
                None => {
                    if txn.cxid > 0 {
                        if let Some(other) = self.requests.insert((txn.session_id, txn.cxid), index) {
                            if other != index {
                                return Err(format!("request session {:#x} cxid {} applied twice, at {other:#x} and {index:#x}", txn.session_id, txn.cxid));
                            }
                        }
                    }
                    self.log.insert(index, (hash, txn.session_id, txn.cxid, node));
                    // cxid 0: the leader's own close (expiry), not a client's closeSession.
                    if txn.cxid == 0 && txn.ops.iter().any(|o| matches!(&o.op, Some(Op::CloseSession(c)) if c.session_id == txn.session_id)) {
                        self.new_expiries.push((txn.session_id, index, txn.time_ms));
                        self.expiries += 1;
                    }
                    self.txns.insert(index, txn);
                }
            }
        }
        // A range that starts where knowledge ends extends it (a snapshot
        // install reports a range starting further on: it waits for others).
        if after <= self.known_upto && upto > self.known_upto {
            self.known_upto = upto;
        }
        self.advance_reference()
    }

    fn advance_reference(&mut self) -> Result<(), Failure> {
        let from = self.reference_upto;
        let to = self.known_upto;
        if to <= from {
            return self.check_reads();
        }
        let indexes: Vec<u64> = self.txns.range(from + 1..=to).map(|(i, _)| *i).collect();
        for index in indexes {
            let txn = self.txns[&index].clone();
            let mut touched: Vec<String> = Vec::new();
            for op in &txn.ops {
                match &op.op {
                    Some(Op::Create(c)) if owner::is_session(c.ephemeral_owner) && !self.reference.sessions.contains(c.ephemeral_owner) => {
                        return Err(format!("zxid {index:#x} creates ephemeral {} for session {:#x}, which is not open: it would never go", c.path, c.ephemeral_owner));
                    }
                    Some(Op::Create(c)) => touched.push(c.path.clone()),
                    Some(Op::SetData(s)) => touched.push(s.path.clone()),
                    Some(Op::Delete(d)) | Some(Op::DeleteContainer(d)) => touched.push(d.path.clone()),
                    Some(Op::CloseSession(c)) => touched.extend(self.reference.tree.ephemerals(c.session_id).cloned()),
                    _ => {}
                }
            }
            let before: BTreeSet<String> = ephemeral_paths(&self.reference);
            self.reference.apply(&txn);
            let mut deleted: BTreeSet<String> = before;
            let after: BTreeSet<String> = ephemeral_paths(&self.reference);
            deleted.retain(|p| !after.contains(p));
            for op in &txn.ops {
                match &op.op {
                    Some(Op::CloseSession(c)) => {
                        self.closed.insert(c.session_id, index);
                        if let Some(p) = self.reference.tree.ephemerals(c.session_id).next() {
                            return Err(format!("session {:#x} closed at zxid {index:#x} but its ephemeral {p} remains", c.session_id));
                        }
                        let owned: Vec<String> = touched.clone();
                        deleted.retain(|p| !owned.contains(p));
                    }
                    Some(Op::Delete(d)) | Some(Op::DeleteContainer(d)) => {
                        deleted.remove(&d.path);
                    }
                    _ => {}
                }
            }
            if let Some(p) = deleted.first() {
                return Err(format!("ephemeral {p} vanished at zxid {index:#x} without a delete or its session's close"));
            }
            for p in touched {
                let value = self.reference.tree.get(&p).map(|n| (n.data.clone().unwrap_or_default(), n.version));
                self.history.entry(p).or_default().push((index as i64, value));
            }
        }
        self.reference_upto = to.max(from);
        self.check_reads()
    }

    fn value_at(&self, path: &str, zxid: i64) -> (Value, i64) {
        match self.history.get(path).and_then(|h| h.iter().rev().find(|(z, _)| *z <= zxid)) {
            Some((z, v)) => (v.clone(), *z),
            None => (None, 0),
        }
    }

    fn check_reads(&mut self) -> Result<(), Failure> {
        self.check_watches()?;
        let upto = self.reference_upto as i64;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads).into_iter().partition(|r| r.zxid <= upto);
        self.reads = waiting;
        for r in ready {
            self.reads_checked += 1;
            let (want, at) = self.value_at(&r.path, r.zxid);
            let got_at = if r.got.is_some() { r.mzxid } else { at };
            if want != r.got || (want.is_some() && at != got_at) {
                return Err(format!(
                    "client {} read {} (xid {}) at zxid {:#x}: got {:?} (mzxid {:#x}), but the log says {:?} (written at {at:#x})",
                    r.client,
                    r.path,
                    r.xid,
                    r.zxid,
                    r.got.as_ref().map(|(d, v)| (String::from_utf8_lossy(d).into_owned(), *v)),
                    r.mzxid,
                    want.as_ref().map(|(d, v)| (String::from_utf8_lossy(d).into_owned(), *v))
                ));
            }
        }
        Ok(())
    }

    /// The first change of `path` in `(after, upto]`, by the reference.
    fn changed(&self, path: &str, after: i64, upto: i64) -> Option<i64> {
        let h = self.history.get(path)?;
        let mut prev = self.value_at(path, after).0;
        for (z, v) in h.iter().filter(|(z, _)| *z > after && *z <= upto) {
            if *v != prev {
                return Some(*z);
            }
            prev = v.clone();
        }
        None
    }

    /// A watch must fire before its client sees a reply at or past the change.
    fn watch_violation(&self, w: &ArmedWatch) -> Option<Failure> {
        let z = self.changed(&w.path, w.set_at, w.observed)?;
        Some(format!(
            "client {}: watch on {} (set by xid {} at zxid {:#x}) fired by the change at {z:#x}, but the client got reply xid {} at zxid {:#x} before the event",
            w.client, w.path, w.xid, w.set_at, w.observed_xid, w.observed
        ))
    }

    fn check_watches(&mut self) -> Result<(), Failure> {
        let upto = self.reference_upto as i64;
        for w in self.armed.values().flatten().filter(|w| w.observed > w.set_at && w.observed <= upto) {
            if let Some(e) = self.watch_violation(w) {
                return Err(e);
            }
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.disarmed).into_iter().partition(|w| w.observed <= upto);
        self.disarmed = waiting;
        for w in ready {
            self.watches_checked += 1;
            if let Some(e) = self.watch_violation(&w) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// A watch event reached `client`: the watches it held on `path` are spent.
    pub fn watch_event(&mut self, client: usize, path: &str) -> Result<(), Failure> {
        let list = self.armed.entry(client).or_default();
        let (fired, kept): (Vec<_>, Vec<_>) = std::mem::take(list).into_iter().partition(|w| w.path == path);
        *list = kept;
        self.disarmed.extend(fired.into_iter().filter(|w| w.observed > w.set_at));
        self.check_watches()
    }

    /// The client's connection is gone, and with it its watches (this
    /// client does not set them again on reconnecting).
    pub fn watches_lost(&mut self, client: usize) {
        let list = self.armed.remove(&client).unwrap_or_default();
        self.disarmed.extend(list.into_iter().filter(|w| w.observed > w.set_at));
    }

    /// Expiry closes (session, index, wall time of the proposal) first
    /// learned since the last call.
    pub fn take_expiries(&mut self) -> Vec<(i64, u64, i64)> {
        std::mem::take(&mut self.new_expiries)
    }

    /// Sessions open in the agreed state.
    pub fn open_sessions(&self) -> Vec<i64> {
        self.reference.sessions.iter().map(|(s, _)| *s).collect()
    }

    /// The highest log index of a write acknowledged so far.
    pub fn acked_upto(&self) -> u64 {
        self.acked_upto
    }

    /// A linearizable read (invoked after writes up to `acked_before` were
    /// acknowledged) answered at `zxid` must reflect them all.
    pub fn linearizable(&self, client: usize, xid: i32, req: &Request, zxid: i64, acked_before: u64) -> Result<(), Failure> {
        if corral::replica::reads_data(req) && (zxid as u64) < acked_before {
            return Err(format!(
                "client {client}: linearizable read xid {xid} answered at zxid {zxid:#x}, but a write at {acked_before:#x} was acknowledged before it was sent"
            ));
        }
        Ok(())
    }

    /// A reply a client received, in its session's order.
    pub fn reply(&mut self, client: usize, session_id: i64, xid: i32, req: &Request, zxid: i64, err: ErrorCode, body: &Response) -> Result<(), Failure> {
        if let Some(c) = self.closed.get(&session_id) {
            if zxid >= *c as i64 && err != ErrorCode::SessionExpired && !matches!(req, Request::CloseSession) {
                return Err(format!("client {client}: session {session_id:#x} closed at zxid {c:#x}, yet xid {xid} was answered {err:?} at zxid {zxid:#x}"));
            }
        }
        for w in self.armed.get_mut(&client).into_iter().flatten() {
            if zxid > w.observed {
                w.observed = zxid;
                w.observed_xid = xid;
            }
        }
        let watch_path = match (req, err) {
            (Request::GetData(r), ErrorCode::Ok) if r.watch => Some(&r.path),
            (Request::Exists(r), ErrorCode::Ok | ErrorCode::NoNode) if r.watch => Some(&r.path),
            _ => None,
        };
        if let Some(path) = watch_path {
            self.armed.entry(client).or_default().push(ArmedWatch { client, xid, path: path.clone(), set_at: zxid, observed: zxid, observed_xid: xid });
        }
        match (req, err, body) {
            (Request::GetData(r), ErrorCode::Ok, Response::GetData(g)) => self.reads.push(PendingRead {
                client,
                xid,
                path: r.path.clone(),
                zxid,
                got: Some((g.data.clone().unwrap_or_default(), g.stat.version)),
                mzxid: g.stat.mzxid,
            }),
            (Request::GetData(r), ErrorCode::NoNode, _) => {
                self.reads.push(PendingRead { client, xid, path: r.path.clone(), zxid, got: None, mzxid: 0 })
            }
            (Request::GetData(_), e, _) => return Err(format!("client {client} getData xid {xid}: unexpected {e:?}")),
            _ => {}
        }
        if corral::replica::goes_through_log(req) && !matches!(req, Request::CloseSession) {
            self.acks.push(Ack { client, session_id, xid, reply_zxid: zxid });
            if let Some(index) = self.requests.get(&(session_id, xid)) {
                self.acked_upto = self.acked_upto.max(*index);
            }
        }
        if let (Request::Create(c), ErrorCode::Ok, Response::Create(r)) = (req, err, body) {
            if c.flags & 2 != 0 && !self.sequential.insert(r.path.clone()) {
                return Err(format!("sequential name {} handed out twice", r.path));
            }
        }
        self.check_reads()
    }

    /// Final checks, once every member has converged.
    pub fn finish(&mut self, members: &[&Core]) -> Result<(), Failure> {
        self.check_reads()?;
        if let Some(r) = self.reads.first() {
            return Err(format!("read by client {} at zxid {:#x} never checked: the log is known only up to {:#x}", r.client, r.zxid, self.reference_upto));
        }
        for a in &self.acks {
            match self.requests.get(&(a.session_id, a.xid)) {
                None => {
                    return Err(format!(
                        "acknowledged write lost: client {} session {:#x} xid {} (reply zxid {:#x}) is not in the log",
                        a.client, a.session_id, a.xid, a.reply_zxid
                    ))
                }
                Some(index) if *index as i64 > a.reply_zxid => {
                    return Err(format!("client {} xid {} was answered at zxid {:#x} before its txn at {index:#x}", a.client, a.xid, a.reply_zxid))
                }
                Some(_) => {}
            }
        }
        let want = self.reference.snapshot();
        for (i, core) in members.iter().enumerate() {
            let got = core.snapshot();
            if got != want {
                return Err(format!(
                    "member {} did not converge: zxid {:#x}, {} nodes; reference zxid {:#x}, {} nodes",
                    i + 1,
                    got.zxid,
                    got.nodes.len(),
                    want.zxid,
                    want.nodes.len()
                ));
            }
        }
        Ok(())
    }

    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    pub fn acks(&self) -> usize {
        self.acks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::GetDataRequest;

    #[test]
    fn a_linearizable_read_must_reflect_writes_acknowledged_before_it() {
        let c = Checker::new();
        let get = Request::GetData(GetDataRequest { path: "/r".into(), watch: false });
        assert!(c.linearizable(0, 1, &get, 0x10, 0x10).is_ok());
        assert!(c.linearizable(0, 1, &get, 0x11, 0x10).is_ok());
        assert!(c.linearizable(0, 1, &get, 0x0f, 0x10).is_err(), "stale");
        assert!(c.linearizable(0, 1, &Request::Ping, 0x0f, 0x10).is_ok(), "pings read nothing");
    }
}
