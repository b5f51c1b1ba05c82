//! The clients' register operations as a history in the shared format of
//! `corral-check` (the Jepsen harness's), checked at the end of a run by
//! the same checkers that judge real ensembles. The simulator's own checks
//! compare each reply with a reference core at the reply's zxid, which
//! trusts the zxid the server puts on it; this judges only what a client
//! can see (values and real-time order), so a server that labels a wrong
//! answer with a matching zxid cannot pass both.
//!
//! Registers become the checker's register model: getData is a read
//! (NoNode reads nil), setData a write (with a version too: the model
//! knows values, not versions, and an applied setData wrote its value
//! whatever it compared), create a CAS from nil (NodeExists: the CAS
//! failed, so the node existed), delete a write of nil, and a multi's
//! setData and create one op each on their keys. Failures that say nothing
//! about the register are kept as failed writes, which the model skips.

use std::collections::BTreeMap;

use corral_check::history::{Kind, Op, Outcome};
use corral_check::{Options, Report};
use protocol::{ErrorCode, MultiOp, OpResult, Request, Response};

use crate::client::REGISTERS;

#[derive(Debug, Default)]
pub struct Recorder {
    ops: Vec<Op>,
    /// Requests awaiting their reply: (client, xid) → the ops they stand for.
    pending: BTreeMap<(usize, i32), Vec<usize>>,
    last_ns: u64,
}

/// Data a register can hold that no simulated client writes: what a read of
/// data that does not parse records, so the checker calls it a phantom.
const UNREADABLE: i64 = -1;

fn register(path: &str) -> bool {
    REGISTERS.contains(&path)
}

fn value(data: &Option<Vec<u8>>) -> i64 {
    data.as_deref().and_then(|d| std::str::from_utf8(d).ok()).and_then(|s| s.parse().ok()).unwrap_or(UNREADABLE)
}

/// Errors after which the request surely did nothing. Any other error
/// (ConnectionLoss, SessionExpired, a timeout) leaves it unknown.
fn definite(err: ErrorCode) -> bool {
    use ErrorCode::*;
    matches!(err, NoNode | NodeExists | BadVersion | NotEmpty | BadArguments | NoChildrenForEphemerals | InvalidAcl | NoAuth)
}

impl Recorder {
    /// Nanoseconds of the simulated clock, strictly increasing: events of
    /// one millisecond are handled one after another, and a reply handled
    /// before a request was sent did come first.
    fn stamp(&mut self, now_ms: i64) -> u64 {
        self.last_ns = (now_ms.max(0) as u64 * 1_000_000).max(self.last_ns + 1);
        self.last_ns
    }

    /// Client `client` sends `req` (xid `xid`) on `session` through `member` (0-based).
    pub fn invoke(&mut self, now_ms: i64, client: usize, member: usize, session: i64, xid: i32, req: &Request) {
        let mut ops: Vec<(&str, Kind, Option<i64>)> = Vec::new();
        match req {
            Request::GetData(r) if register(&r.path) => ops.push((&r.path, Kind::Read, None)),
            Request::SetData(r) if register(&r.path) => ops.push((&r.path, Kind::Write, Some(value(&r.data)))),
            Request::Create(r) if register(&r.path) => ops.push((&r.path, Kind::Cas, Some(value(&r.data)))),
            Request::Delete(r) if register(&r.path) => ops.push((&r.path, Kind::Write, None)),
            Request::Multi(m) => {
                for op in &m.ops {
                    match op {
                        MultiOp::SetData(r) if register(&r.path) => ops.push((&r.path, Kind::Write, Some(value(&r.data)))),
                        MultiOp::Create(r) if register(&r.path) => ops.push((&r.path, Kind::Cas, Some(value(&r.data)))),
                        MultiOp::Delete(r) if register(&r.path) => ops.push((&r.path, Kind::Write, None)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if ops.is_empty() {
            return;
        }
        let at = self.stamp(now_ms);
        let mut indexes = Vec::new();
        for (key, f, value) in ops {
            // Unknown until a reply says otherwise; a create compares with nil.
            let mut op = Op::new(client as u64, key, f, value, None, at, None, Outcome::Info);
            op.index = self.ops.len();
            op.member = Some(member as u32 + 1);
            op.session = Some(format!("{session:#x}"));
            indexes.push(op.index);
            self.ops.push(op);
        }
        self.pending.insert((client, xid), indexes);
    }

    /// The reply to `xid` of `client` came.
    pub fn complete(&mut self, now_ms: i64, client: usize, xid: i32, err: ErrorCode, body: &Response) {
        let Some(indexes) = self.pending.remove(&(client, xid)) else { return };
        // A multi that failed says so in its results, not in the header.
        let err = match body {
            Response::Multi(m) if err == ErrorCode::Ok => m.results.iter().find_map(|r| match r {
                OpResult::Error(e) if *e != ErrorCode::Ok => Some(*e),
                _ => None,
            }).unwrap_or(err),
            _ => err,
        };
        if err != ErrorCode::Ok && !definite(err) {
            return; // stays unknown: it may yet take effect
        }
        let at = self.stamp(now_ms);
        let multi = indexes.len() > 1;
        for i in indexes {
            let op = &mut self.ops[i];
            op.complete_ns = Some(at);
            if err != ErrorCode::Ok {
                op.error = Some(format!("{err:?}"));
            }
            op.outcome = match (op.f, err) {
                (_, ErrorCode::Ok) => Outcome::Ok,
                (Kind::Read, ErrorCode::NoNode) => Outcome::Ok, // read nil
                (Kind::Read, _) => Outcome::Fail,
                // A lone create refused because the node exists: a CAS
                // from nil that failed. A multi's error may be another op's.
                (Kind::Cas, ErrorCode::NodeExists) if !multi => Outcome::Fail,
                _ => {
                    op.f = Kind::Write;
                    Outcome::Fail
                }
            };
            if let (Kind::Read, Outcome::Ok) = (op.f, op.outcome) {
                op.value = match body {
                    Response::GetData(r) => Some(value(&r.data)),
                    _ => None,
                };
            }
        }
    }

    /// The client gave up on these requests (connection lost): they stay
    /// unknown, as do those in flight when the run ends.
    pub fn lost(&mut self, client: usize, xids: impl IntoIterator<Item = i32>) {
        for xid in xids {
            self.pending.remove(&(client, xid));
        }
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

}

/// Configurations the search may explore per key before it gives up on it
/// (`corral_check::check_within`). A clean run needs a few hundred; a run
/// whose own checks failed can leave dozens of unknown writes on a key,
/// whose refutation this keeps to well under a second.
pub const MAX_CONFIGURATIONS: usize = 200_000;

/// The shared register checker on a recorded history: every read
/// linearizable when the members serve linearizable reads; otherwise writes
/// linearizable and reads held to ZooKeeper's read model, as the Jepsen
/// harness checks ZooKeeper's default reads. The read model runs with
/// linearizable reads too: the harness's workers send one op at a time, so
/// there linearizability implies it, but simulated clients pipeline, and a
/// read overtaking its session's own pending write is linearizable (the two
/// overlap) yet breaks ZooKeeper's FIFO client order, which the model
/// checks by the order of invocation within a session.
pub fn check(ops: &[Op], linearizable_reads: bool) -> Report {
    let mut report = corral_check::check_within(ops, Options { reads: linearizable_reads }, MAX_CONFIGURATIONS);
    if linearizable_reads && report.read_violation.is_none() {
        report.read_violation = corral_check::read_model::check(ops);
        report.valid &= report.read_violation.is_none();
    }
    report
}
