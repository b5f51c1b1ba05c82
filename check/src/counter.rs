//! The counter workload's checker. One znode holds a number, `initial` at
//! first (the setup write, else 0); increments add one each (a CAS loop, so
//! each acknowledged increment added exactly one); reads return it. A read
//! can see neither more than the increments that may have happened before
//! it completed nor fewer than those that must have:
//!
//! - **upper bound**: `initial` + increments invoked (ok or indeterminate)
//!   before the read completed. Always checked.
//! - **lower bound**, linearizable: `initial` + increments acknowledged
//!   before the read was invoked. Checked when reads are (Corral's
//!   `readConsistency=linearizable`) and for the final read, which the
//!   harness makes after the run, behind a `sync`.
//! - **lower bound**, per session (ZooKeeper's own guarantees for its
//!   default, sequentially consistent reads: a client reads its own writes
//!   and never goes back in time, across servers): the largest value the
//!   same session wrote (an acknowledged increment) or read before the read
//!   was invoked. Always checked.
//!
//! The final read (of `FINAL_PROCESS`) must so lie between `initial` + the
//! acknowledged increments and that + the indeterminate ones.

use super::history::{Kind, Op, Outcome, FINAL_PROCESS, SETUP_PROCESS};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    pub ops: usize,
    pub initial: i64,
    pub increments_ok: usize,
    pub increments_fail: usize,
    pub increments_info: usize,
    /// Reads that returned a value, the final one included.
    pub reads: usize,
    /// Whether reads were held to the linearizable lower bound.
    pub reads_checked: bool,
    pub final_value: Option<i64>,
    /// What the final read could have returned.
    pub final_bounds: Option<(i64, i64)>,
    /// How many reads fell out of their bounds.
    pub violation_count: usize,
    /// The first of them (by invocation).
    pub violations: Vec<ReadViolation>,
    /// Why the history could not be checked fully (no final read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadViolation {
    pub op: Op,
    pub lower: i64,
    pub upper: i64,
    /// Which bound it broke, and why that bound holds.
    pub why: String,
}

/// How many violations a report lists.
const LISTED: usize = 10;

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} increments ({} ok, {} fail, {} indeterminate), {} reads ({}); final value {} in {}",
            self.increments_ok + self.increments_fail + self.increments_info,
            self.increments_ok,
            self.increments_fail,
            self.increments_info,
            self.reads,
            if self.reads_checked { "linearizable" } else { "per-session bounds; the final read fully" },
            self.final_value.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            self.final_bounds.map(|(a, b)| format!("[{a}, {b}]")).unwrap_or_else(|| "-".into())
        )
    }

    pub fn explain(&self) -> String {
        let mut s = String::new();
        if let Some(e) = &self.error {
            s += e;
            s += "\n";
        }
        if self.violation_count > 0 {
            s += &format!("{} reads out of bounds; the first {}:\n", self.violation_count, self.violations.len().min(LISTED));
            for v in &self.violations {
                s += &format!("  {}\n    read {}, bounds [{}, {}]: {}\n", v.op.describe(), v.op.value.map(|x| x.to_string()).unwrap_or_else(|| "nil".into()), v.lower, v.upper, v.why);
            }
        }
        s
    }
}

/// Times sorted, and how many are before `t` (strictly) or at or before it.
fn before(sorted: &[u64], t: u64) -> i64 {
    sorted.partition_point(|x| *x < t) as i64
}
fn at_or_before(sorted: &[u64], t: u64) -> i64 {
    sorted.partition_point(|x| *x <= t) as i64
}

/// `reads`: hold every read to the linearizable lower bound (the final read
/// always is).
pub fn check(history: &[Op], reads_checked: bool) -> Report {
    let initial = history.iter().filter(|o| o.process == SETUP_PROCESS && o.f == Kind::Write && o.outcome == Outcome::Ok).find_map(|o| o.value).unwrap_or(0);
    let incrs: Vec<&Op> = history.iter().filter(|o| o.f == Kind::Incr).collect();
    let count = |out| incrs.iter().filter(|o| o.outcome == out).count();
    // Completions of acknowledged increments; invocations of those that may
    // have taken effect (a failed one did not).
    let mut acked: Vec<u64> = incrs.iter().filter(|o| o.outcome == Outcome::Ok).filter_map(|o| o.complete_ns).collect();
    let mut attempted: Vec<u64> = incrs.iter().filter(|o| o.outcome != Outcome::Fail).map(|o| o.invoke_ns).collect();
    acked.sort_unstable();
    attempted.sort_unstable();
    // Per session: what it had written or read, by completion time, as a
    // running maximum.
    let mut seen: BTreeMap<&str, Vec<(u64, i64)>> = BTreeMap::new();
    for o in history {
        if let (Some(s), Some(c), Some(v), Outcome::Ok, Kind::Incr | Kind::Read) = (o.session.as_deref(), o.complete_ns, o.value, o.outcome, o.f) {
            seen.entry(s).or_default().push((c, v));
        }
    }
    for list in seen.values_mut() {
        list.sort_unstable();
        let mut max = i64::MIN;
        for e in list.iter_mut() {
            max = max.max(e.1);
            e.1 = max;
        }
    }
    let mut reads: Vec<&Op> = history.iter().filter(|o| o.f == Kind::Read && o.outcome == Outcome::Ok).collect();
    reads.sort_by_key(|o| o.invoke_ns);
    let mut violations = Vec::new();
    let mut violation_count = 0;
    let final_read = reads.iter().filter(|o| o.process == FINAL_PROCESS).max_by_key(|o| o.invoke_ns).copied();
    let mut final_bounds = None;
    for &r in &reads {
        let end = r.complete_ns.unwrap_or(u64::MAX);
        let upper = initial + at_or_before(&attempted, end);
        let linear = initial + before(&acked, r.invoke_ns);
        let session = r.session.as_deref().and_then(|s| seen.get(s)).and_then(|l| {
            let n = l.partition_point(|(c, _)| *c < r.invoke_ns);
            (n > 0).then(|| l[n - 1].1)
        });
        let is_final = final_read.is_some_and(|f| std::ptr::eq(f, r));
        let full = reads_checked || is_final;
        let lower = if full { linear.max(session.unwrap_or(i64::MIN)) } else { session.unwrap_or(initial).max(initial) };
        if is_final {
            final_bounds = Some((lower, upper));
        }
        let why = match r.value {
            None => Some("the read returned no number".to_string()),
            Some(v) if v > upper => Some(format!("above the {} increments that may have happened before the read completed", upper - initial)),
            Some(v) if v < lower && full && v < linear => Some(format!("below the {} increments acknowledged before the read was invoked", linear - initial)),
            Some(v) if v < lower => Some("below what its own session had written or read before".to_string()),
            Some(_) => None,
        };
        if let Some(why) = why {
            violation_count += 1;
            if violations.len() < LISTED {
                violations.push(ReadViolation { op: r.clone(), lower, upper, why });
            }
        }
    }
    let error = final_read.is_none().then(|| "no final read: the total was not checked".to_string());
    Report {
        valid: violation_count == 0 && error.is_none(),
        ops: history.len(),
        initial,
        increments_ok: count(Outcome::Ok),
        increments_fail: count(Outcome::Fail),
        increments_info: count(Outcome::Info),
        reads: reads.len(),
        reads_checked,
        final_value: final_read.and_then(|f| f.value),
        final_bounds,
        violation_count,
        violations,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(p: u64, from: u64, to: Option<u64>, outcome: Outcome) -> Op {
        Op::new(p, "counter", Kind::Incr, None, None, from, to, outcome)
    }
    fn read(p: u64, v: i64, from: u64, to: u64) -> Op {
        Op::new(p, "counter", Kind::Read, Some(v), None, from, Some(to), Outcome::Ok)
    }
    fn in_session(mut o: Op, s: &str) -> Op {
        o.session = Some(s.into());
        o
    }
    /// Two acknowledged increments, a failed one and an indeterminate one.
    fn history() -> Vec<Op> {
        vec![
            Op::new(SETUP_PROCESS, "counter", Kind::Write, Some(0), None, 0, Some(1), Outcome::Ok),
            incr(0, 10, Some(20), Outcome::Ok),
            incr(1, 15, Some(40), Outcome::Ok),
            incr(2, 30, Some(35), Outcome::Fail),
            incr(3, 50, None, Outcome::Info),
        ]
    }

    #[test]
    fn reads_within_bounds_are_valid() {
        let mut h = history();
        // Concurrent with both increments: 0, 1 or 2.
        h.push(read(4, 0, 12, 45));
        h.push(read(5, 2, 12, 45));
        // After both, before the indeterminate one: exactly 2.
        h.push(read(4, 2, 45, 48));
        // The indeterminate one may have happened, or not.
        h.push(read(4, 3, 60, 70));
        h.push(read(FINAL_PROCESS, 2, 100, 110));
        let r = check(&h, true);
        assert!(r.valid, "{}", r.explain());
        assert_eq!(r.final_bounds, Some((2, 3)));
        assert_eq!((r.increments_ok, r.increments_fail, r.increments_info, r.reads), (2, 1, 1, 5));
        let mut h = history();
        h.push(read(FINAL_PROCESS, 3, 100, 110));
        assert!(check(&h, true).valid);
    }

    #[test]
    fn a_read_above_the_increments_invoked_is_caught() {
        // The failed increment did not count: 3 before the indeterminate
        // one was invoked is one too many.
        let mut h = history();
        h.push(read(4, 3, 42, 45));
        h.push(read(FINAL_PROCESS, 2, 100, 110));
        for reads in [true, false] {
            let r = check(&h, reads);
            assert!(!r.valid);
            assert_eq!(r.violation_count, 1);
            assert_eq!((r.violations[0].lower, r.violations[0].upper), (if reads { 2 } else { 0 }, 2));
            assert!(r.explain().contains("above"), "{}", r.explain());
        }
    }

    #[test]
    fn a_stale_read_is_caught_when_reads_are_checked() {
        let mut h = history();
        h.push(read(4, 1, 42, 45));
        h.push(read(FINAL_PROCESS, 2, 100, 110));
        let r = check(&h, true);
        assert!(!r.valid);
        assert!(r.explain().contains("below the 2 increments acknowledged"), "{}", r.explain());
        // Sequentially consistent reads may lag: allowed from another session.
        assert!(check(&h, false).valid);
    }

    #[test]
    fn a_session_that_reads_behind_its_own_write_is_caught() {
        let mut h = history();
        h[2] = in_session(h[2].clone(), "s1");
        h[2].value = Some(2);
        h.push(in_session(read(1, 1, 42, 45), "s1"));
        h.push(read(FINAL_PROCESS, 2, 100, 110));
        let r = check(&h, false);
        assert!(!r.valid);
        assert!(r.explain().contains("its own session"), "{}", r.explain());
        // ... or behind its own earlier read.
        let mut h = history();
        h.push(in_session(read(4, 2, 41, 42), "s2"));
        h.push(in_session(read(4, 1, 43, 44), "s2"));
        h.push(read(FINAL_PROCESS, 2, 100, 110));
        assert!(!check(&h, false).valid);
    }

    #[test]
    fn a_final_read_out_of_bounds_is_caught() {
        for v in [1, 4] {
            let mut h = history();
            h.push(read(FINAL_PROCESS, v, 100, 110));
            let r = check(&h, false);
            assert!(!r.valid, "final read {v}");
            assert_eq!(r.final_bounds, Some((2, 3)));
        }
    }

    #[test]
    fn without_a_final_read_the_total_is_not_claimed() {
        let r = check(&history(), true);
        assert!(!r.valid);
        assert!(r.explain().contains("no final read"));
    }
}
