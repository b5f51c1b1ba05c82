//! The lock workload's checker. Workers take a lock with ZooKeeper's recipe
//! (an ephemeral sequential node under the lock's node; the lowest holds;
//! the others wait for their predecessor's deletion), hold it briefly and
//! release it (delete their node). A worker *holds* from the completion of
//! its acquire (when it learned it was lowest) to the invocation of its
//! release (when it stopped acting as holder).
//!
//! What a lock service can promise is narrower than mutual exclusion: a
//! holder whose session expires (a partition, a paused or killed member)
//! loses its node while it may still believe it holds, and another client
//! takes the lock. Without fencing tokens nothing can stop the two from
//! overlapping, and ZooKeeper documents exactly this. So the checker only
//! counts holds it can prove were real to the end:
//!
//! - a hold is **proven** when its release returned ok: deleting the node
//!   succeeded, so the node, and with it the session, lived until after
//!   the release was invoked;
//! - any other hold (release failed, e.g. NoNode after the session expired,
//!   or indeterminate, or missing) is **unproven** and not checked.
//!
//! Two proven holds must not overlap (**mutual exclusion**). And since a
//! proven holder's node existed from its create to after its release,
//! nobody whose node came later could be lowest meanwhile: proven holds
//! must also begin in the order of their nodes' sequence numbers
//! (**order**). Both hold for a correct ZooKeeper whatever the faults; what
//! the checker cannot see is a violation involving an unproven hold.

use super::history::{Kind, Op, Outcome};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    pub ops: usize,
    pub acquire_ok: usize,
    pub acquire_fail: usize,
    pub acquire_info: usize,
    /// Holds whose release succeeded: these are checked.
    pub proven_holds: usize,
    /// Holds whose release failed, was indeterminate or never came.
    pub unproven_holds: usize,
    /// Proven holds that began before an earlier proven one ended.
    pub overlap_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_overlap: Option<Box<(Hold, Hold)>>,
    /// Proven holds that began after one with a higher sequence number.
    pub out_of_order_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_out_of_order: Option<Box<(Hold, Hold)>>,
    /// A malformed history (a release with no acquire before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hold {
    pub acquire: Op,
    pub release: Option<Op>,
    /// When it began (the acquire's completion) and ended (the release's
    /// invocation; none if there was no release).
    pub from_ns: u64,
    pub to_ns: Option<u64>,
}

impl Hold {
    fn describe(&self) -> String {
        let mut s = format!("    {}\n", self.acquire.describe());
        if let Some(r) = &self.release {
            s += &format!("    {}\n", r.describe());
        }
        s
    }
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} acquires ({} ok, {} fail, {} indeterminate): {} holds proven by their release and checked, {} unproven; {} overlapping, {} out of order",
            self.acquire_ok + self.acquire_fail + self.acquire_info,
            self.acquire_ok,
            self.acquire_fail,
            self.acquire_info,
            self.proven_holds,
            self.unproven_holds,
            self.overlap_count,
            self.out_of_order_count
        )
    }

    pub fn explain(&self) -> String {
        let mut s = String::new();
        if let Some(e) = &self.error {
            s += &format!("{e}\n");
        }
        if let Some((a, b)) = self.first_overlap.as_deref() {
            s += &format!("{} holds overlap another (both sessions alive, their releases succeeded); the first:\n{}  while\n{}", self.overlap_count, b.describe(), a.describe());
        }
        if let Some((a, b)) = self.first_out_of_order.as_deref() {
            s += &format!("{} holds came after one with a higher sequence number; the first:\n{}  after\n{}", self.out_of_order_count, b.describe(), a.describe());
        }
        s
    }
}

pub fn check(history: &[Op]) -> Report {
    let ops: Vec<&Op> = history.iter().filter(|o| matches!(o.f, Kind::Acquire | Kind::Release)).collect();
    let count = |out| ops.iter().filter(|o| o.f == Kind::Acquire && o.outcome == out).count();
    // Each process runs one op at a time: an ok acquire and the process's
    // next op, its release.
    let mut by_process: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for o in &ops {
        by_process.entry(o.process).or_default().push(o);
    }
    let mut error = None;
    let mut holds = Vec::new();
    for list in by_process.values_mut() {
        list.sort_by_key(|o| o.invoke_ns);
        let mut i = 0;
        while i < list.len() {
            let o = list[i];
            i += 1;
            match (o.f, o.outcome) {
                (Kind::Acquire, Outcome::Ok) => {
                    let release = list.get(i).copied().filter(|r| r.f == Kind::Release);
                    if release.is_some() {
                        i += 1;
                    }
                    holds.push(Hold { acquire: o.clone(), release: release.cloned(), from_ns: o.complete_ns.unwrap_or(o.invoke_ns), to_ns: release.map(|r| r.invoke_ns) });
                }
                (Kind::Release, _) => {
                    error.get_or_insert_with(|| format!("a release without an acquire before it: {}", o.describe()));
                }
                _ => {}
            }
        }
    }
    let (mut proven, unproven): (Vec<Hold>, Vec<Hold>) = holds.into_iter().partition(|h| h.release.as_ref().is_some_and(|r| r.outcome == Outcome::Ok));
    proven.sort_by_key(|h| h.from_ns);
    let (mut overlap_count, mut first_overlap) = (0, None);
    let (mut out_of_order_count, mut first_out_of_order) = (0, None);
    // The proven hold that ends last so far, and the one with the highest
    // sequence number so far.
    let mut latest: Option<&Hold> = None;
    let mut highest: Option<&Hold> = None;
    for h in &proven {
        if let Some(l) = latest {
            // Touching ends (the same nanosecond) are taken as concurrent
            // calls, not an overlap.
            if h.from_ns < l.to_ns.unwrap() {
                overlap_count += 1;
                first_overlap.get_or_insert_with(|| Box::new((l.clone(), h.clone())));
            }
        }
        if let (Some(g), Some(seq)) = (highest, h.acquire.value) {
            if g.acquire.value > Some(seq) {
                out_of_order_count += 1;
                first_out_of_order.get_or_insert_with(|| Box::new((g.clone(), h.clone())));
            }
        }
        if latest.is_none_or(|l| h.to_ns > l.to_ns) {
            latest = Some(h);
        }
        if h.acquire.value.is_some() && highest.is_none_or(|g| h.acquire.value > g.acquire.value) {
            highest = Some(h);
        }
    }
    Report {
        valid: overlap_count == 0 && out_of_order_count == 0 && error.is_none(),
        ops: history.len(),
        acquire_ok: count(Outcome::Ok),
        acquire_fail: count(Outcome::Fail),
        acquire_info: count(Outcome::Info),
        proven_holds: proven.len(),
        unproven_holds: unproven.len(),
        overlap_count,
        first_overlap,
        out_of_order_count,
        first_out_of_order,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(p: u64, f: Kind, seq: i64, from: u64, to: Option<u64>, outcome: Outcome) -> Op {
        Op::new(p, "lock", f, Some(seq), None, from, to, outcome)
    }
    /// Process `p` with node `seq` acquires over [a0, a1], releases over [r0, r1].
    fn hold(p: u64, seq: i64, a: (u64, u64), r: (u64, u64), release: Outcome) -> Vec<Op> {
        let end = (release != Outcome::Info).then_some(r.1);
        vec![op(p, Kind::Acquire, seq, a.0, Some(a.1), Outcome::Ok), op(p, Kind::Release, seq, r.0, end, release)]
    }

    #[test]
    fn holds_one_after_another_are_valid() {
        let mut h = hold(0, 1, (0, 10), (20, 30), Outcome::Ok);
        // p1 waited from 5 and got the lock once p0's delete was through.
        h.extend(hold(1, 2, (5, 31), (40, 50), Outcome::Ok));
        h.push(op(2, Kind::Acquire, 3, 35, Some(60), Outcome::Fail));
        h.extend(hold(3, 4, (36, 55), (60, 65), Outcome::Ok));
        let r = check(&h);
        assert!(r.valid, "{}", r.explain());
        assert_eq!((r.acquire_ok, r.acquire_fail, r.proven_holds, r.unproven_holds), (3, 1, 3, 0));
    }

    #[test]
    fn overlapping_live_holders_are_caught() {
        let mut h = hold(0, 1, (0, 10), (20, 30), Outcome::Ok);
        h.extend(hold(1, 2, (5, 15), (25, 35), Outcome::Ok));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.overlap_count, 1);
        let (a, b) = *r.first_overlap.clone().unwrap();
        assert_eq!((a.acquire.process, b.acquire.process), (0, 1));
        assert!(r.explain().contains("overlap"), "{}", r.explain());
        // One hold inside a long one.
        let mut h = hold(0, 1, (0, 10), (100, 110), Outcome::Ok);
        h.extend(hold(1, 2, (20, 30), (40, 50), Outcome::Ok));
        h.extend(hold(2, 3, (60, 70), (80, 90), Outcome::Ok));
        assert_eq!(check(&h).overlap_count, 2);
    }

    #[test]
    fn a_holder_whose_session_may_have_expired_is_not_counted() {
        // p0's release found its node gone (the session expired while it
        // held): p1 taking the lock meanwhile is ZooKeeper's documented
        // behaviour, not a violation. Nor is an indeterminate release.
        for release in [Outcome::Fail, Outcome::Info] {
            let mut h = hold(0, 1, (0, 10), (20, 30), release);
            h.extend(hold(1, 2, (5, 15), (25, 35), Outcome::Ok));
            let r = check(&h);
            assert!(r.valid, "{}", r.explain());
            assert_eq!((r.proven_holds, r.unproven_holds), (1, 1));
        }
        // Nor a hold the run ended in (no release).
        let mut h = vec![op(0, Kind::Acquire, 1, 0, Some(10), Outcome::Ok)];
        h.extend(hold(1, 2, (5, 15), (25, 35), Outcome::Ok));
        assert!(check(&h).valid);
    }

    #[test]
    fn holds_out_of_sequence_order_are_caught() {
        // Node 2 held before node 1, both sessions alive throughout: node 1
        // existed all along and was lower.
        let mut h = hold(0, 2, (0, 10), (20, 30), Outcome::Ok);
        h.extend(hold(1, 1, (1, 35), (40, 50), Outcome::Ok));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!((r.overlap_count, r.out_of_order_count), (0, 1));
        assert!(r.explain().contains("higher sequence number"), "{}", r.explain());
    }

    #[test]
    fn a_release_without_an_acquire_is_an_error() {
        let h = vec![op(0, Kind::Release, 1, 0, Some(10), Outcome::Ok)];
        let r = check(&h);
        assert!(!r.valid);
        assert!(r.error.is_some());
    }
}
