//! ZooKeeper's read model for its default reads, which the register checks
//! in sequential mode alongside the linearizability of writes and CAS.
//! Default reads may be stale (a follower answers from what it has
//! applied), but ZooKeeper promises each session a single system image:
//! it never sees an older view than one it has seen, also after moving
//! to another server, and it sees its own writes once they are answered
//! (FIFO per session). So, per session and key, a read must not return a
//! value **provably older** than one the session had already written or
//! read (an ok op completed before the read was invoked).
//!
//! Provably older: the write of `a` was acknowledged before the write of
//! `b` was invoked. Writes linearize, so `a` then precedes `b` in the
//! commit order; writes that overlap in time may commit either way, and a
//! read that goes back across two such writes is not caught. Values are
//! unique per run, so a value names its write; the setup's write of `0`
//! precedes every other. Indeterminate writes have no completion, so
//! nothing is provably older than them (and a session's own indeterminate
//! write is not held against it: it may commit after its later reads).
//! A read of a value no write of that key had been invoked for before the
//! read completed is a **phantom** (linearizable writes leave no room for
//! one in any mode).
//!
//! Ops without a session (hand-built histories) are not checked here.

use super::history::{Kind, Op, Outcome};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub key: String,
    pub session: String,
    /// The read that returned too old a value (or a phantom).
    pub read: Op,
    /// The session's earlier op whose value the read went back behind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<Op>,
    /// The write of the value read, acknowledged before the write of the
    /// value `seen` holds was invoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub older_write: Option<Op>,
    /// That write of the value `seen` holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newer_write: Option<Op>,
}

impl Violation {
    pub fn explain(&self) -> String {
        let mut s = format!("key {}: session {} ", self.key, self.session);
        match (&self.seen, &self.older_write, &self.newer_write) {
            (Some(seen), Some(older), Some(newer)) => {
                let what = if seen.f == Kind::Read { "read" } else { "written" };
                s += &format!("read a value older than one it had {what} (ZooKeeper: a session never goes back in time, and reads its own writes)\n");
                s += &format!("  {}\n  after its own\n  {}\n", self.read.describe(), seen.describe());
                s += &format!("  the value read was written and acknowledged\n  {}\n  before this write (of what it had {what}) was invoked\n  {}\n", older.describe(), newer.describe());
            }
            _ => s += &format!("read a value no write had been invoked for (phantom)\n  {}\n", self.read.describe()),
        }
        s
    }

    /// The ops it involves, for the report.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        [Some(&self.read), self.seen.as_ref(), self.older_write.as_ref(), self.newer_write.as_ref()].into_iter().flatten()
    }
}

/// The first violation, in the order of the reads' invocations.
pub fn check(history: &[Op]) -> Option<Violation> {
    // The write of each (key, value), and the writes invoked per key.
    let mut writes: BTreeMap<(&str, i64), &Op> = BTreeMap::new();
    for o in history.iter().filter(|o| matches!(o.f, Kind::Write | Kind::Cas) && o.outcome != Outcome::Fail) {
        if let Some(v) = o.value {
            writes.entry((o.key.as_str(), v)).or_insert(o);
        }
    }
    let mut by_session: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for o in history.iter().filter(|o| o.outcome == Outcome::Ok && matches!(o.f, Kind::Read | Kind::Write | Kind::Cas)) {
        if let Some(s) = o.session.as_deref() {
            by_session.entry(s).or_default().push(o);
        }
    }
    let mut first: Option<Violation> = None;
    for (session, mut ops) in by_session {
        // A session's ops run one at a time, so invocation order is its order.
        ops.sort_by_key(|o| o.invoke_ns);
        // Per key: of the values the session has seen, the one whose write
        // was invoked last (anything acknowledged before that invocation is
        // provably older than it), with the op that saw it.
        let mut floor: BTreeMap<&str, (&Op, &Op)> = BTreeMap::new();
        for o in ops {
            let Some(v) = o.value else { continue };
            let key = o.key.as_str();
            let write = writes.get(&(key, v)).copied();
            if o.f == Kind::Read {
                let found = match (write, floor.get(key)) {
                    (None, _) => Some(Violation { key: key.to_owned(), session: session.to_owned(), read: o.clone(), seen: None, older_write: None, newer_write: None }),
                    (Some(w), _) if w.invoke_ns > o.complete_ns.unwrap_or(u64::MAX) => {
                        Some(Violation { key: key.to_owned(), session: session.to_owned(), read: o.clone(), seen: None, older_write: None, newer_write: None })
                    }
                    (Some(w), Some((seen, newer))) if w.outcome == Outcome::Ok && w.complete_ns.is_some_and(|c| c < newer.invoke_ns) => Some(Violation {
                        key: key.to_owned(),
                        session: session.to_owned(),
                        read: o.clone(),
                        seen: Some((*seen).clone()),
                        older_write: Some(w.clone()),
                        newer_write: Some((*newer).clone()),
                    }),
                    _ => None,
                };
                if let Some(found) = found {
                    if first.as_ref().map_or(true, |f| found.read.invoke_ns < f.read.invoke_ns) {
                        first = Some(found);
                    }
                    break;
                }
            }
            if let Some(w) = write {
                if floor.get(key).map_or(true, |(_, newer)| w.invoke_ns > newer.invoke_ns) {
                    floor.insert(key, (o, w));
                }
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::SETUP_PROCESS;

    fn op(p: u64, s: &str, f: Kind, v: i64, from: u64, to: u64) -> Op {
        let mut o = Op::new(p, "r0", f, Some(v), None, from, Some(to), Outcome::Ok);
        o.session = Some(s.into());
        o
    }
    /// The setup writes 0; process 1 (session a) writes 1 at 10..20, then
    /// process 2 (session b) writes 2 at 30..40.
    fn history() -> Vec<Op> {
        let mut setup = op(SETUP_PROCESS, "setup", Kind::Write, 0, 0, 1);
        setup.session = None;
        vec![setup, op(1, "a", Kind::Write, 1, 10, 20), op(2, "b", Kind::Write, 2, 30, 40)]
    }

    #[test]
    fn a_stale_read_by_another_session_is_allowed() {
        // Session c reads 1 after 2 was acknowledged, then 2, then (a
        // lagging follower is allowed to be behind) nothing older: valid.
        let mut h = history();
        h.extend([op(3, "c", Kind::Read, 1, 50, 55), op(3, "c", Kind::Read, 2, 60, 65), op(3, "c", Kind::Read, 2, 70, 75)]);
        // Session a, after its own write of 1, reads 1 and then 2.
        h.extend([op(1, "a", Kind::Read, 1, 50, 55), op(1, "a", Kind::Read, 2, 60, 65)]);
        assert!(check(&h).is_none(), "{:?}", check(&h));
    }

    #[test]
    fn a_session_that_reads_behind_its_own_write_is_caught() {
        // Session b wrote 2 (invoked after 1 was acknowledged), then reads 1.
        let mut h = history();
        h.push(op(2, "b", Kind::Read, 1, 50, 55));
        let v = check(&h).expect("a violation");
        assert_eq!((v.session.as_str(), v.read.value, v.seen.as_ref().map(|s| s.f)), ("b", Some(1), Some(Kind::Write)));
        assert!(v.explain().contains("older than one it had written"), "{}", v.explain());
        // The same read by session c, which never saw 2: allowed.
        let mut h = history();
        h.push(op(3, "c", Kind::Read, 1, 50, 55));
        assert!(check(&h).is_none());
        // Back to the setup's 0 after its own 1: caught.
        let mut h = history();
        h.push(op(1, "a", Kind::Read, 0, 30, 35));
        assert!(check(&h).is_some());
    }

    #[test]
    fn a_session_that_goes_back_in_time_is_caught() {
        // Session c reads 2, then 1 (written and acknowledged before 2 was invoked).
        let mut h = history();
        h.extend([op(3, "c", Kind::Read, 2, 50, 55), op(3, "c", Kind::Read, 1, 60, 65)]);
        let v = check(&h).expect("a violation");
        assert_eq!(v.read.value, Some(1));
        assert!(v.explain().contains("older than one it had read"), "{}", v.explain());
    }

    #[test]
    fn concurrent_writes_and_indeterminate_ones_prove_nothing() {
        // Writes of 5 and 6 overlap: a session may read 6 then 5.
        let mut h = history();
        h.extend([op(4, "d", Kind::Write, 5, 100, 120), op(5, "e", Kind::Write, 6, 110, 130), op(6, "f", Kind::Read, 6, 140, 145), op(6, "f", Kind::Read, 5, 150, 155)]);
        assert!(check(&h).is_none());
        // A session's own indeterminate write is not held against its reads.
        let mut h = history();
        let mut w = op(2, "b", Kind::Write, 7, 50, 0);
        w.outcome = Outcome::Info;
        w.complete_ns = None;
        h.extend([w, op(12, "b", Kind::Read, 2, 60, 65)]);
        assert!(check(&h).is_none());
    }

    #[test]
    fn a_phantom_read_is_caught() {
        let mut h = history();
        h.push(op(3, "c", Kind::Read, 99, 50, 55));
        assert!(check(&h).unwrap().explain().contains("phantom"));
        // A value whose write was invoked only after the read completed.
        let mut h = history();
        h.extend([op(3, "c", Kind::Read, 8, 50, 55), op(4, "d", Kind::Write, 8, 60, 70)]);
        assert!(check(&h).is_some());
    }
}
