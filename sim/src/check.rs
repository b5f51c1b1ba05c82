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

use std::collections::{BTreeMap, BTreeSet};

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
    /// The highest log index of a write acknowledged so far.
    acked_upto: u64,
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
            acked_upto: 0,
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
                    Some(Op::Create(c)) => touched.push(c.path.clone()),
                    Some(Op::SetData(s)) => touched.push(s.path.clone()),
                    Some(Op::Delete(d)) | Some(Op::DeleteContainer(d)) => touched.push(d.path.clone()),
                    Some(Op::CloseSession(c)) => touched.extend(self.reference.tree.ephemerals(c.session_id).cloned()),
                    _ => {}
                }
            }
            self.reference.apply(&txn);
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
