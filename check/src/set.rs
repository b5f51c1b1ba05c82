//! The set workload's checker. Workers add unique elements (creating
//! `/jepsen/set/eN`); once they have stopped and every fault is undone, one
//! final read lists the set. Against that read:
//!
//! - an add acknowledged (`ok`) before the read was invoked must be in it,
//!   else it is **lost**;
//! - an element in it that no add attempted before the read completed is
//!   **unexpected**;
//! - an add that failed definitely (the server refused it) must not be in it;
//! - an indeterminate add (`info`) may be in it or not: both are counted.
//!
//! The final read is the read of `FINAL_PROCESS`, else the last read with
//! elements. Reads made during the run are not checked: ZooKeeper's reads
//! are sequentially consistent, so one may lag behind an acknowledged add.

use super::history::{Kind, Op, Outcome, FINAL_PROCESS};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    pub ops: usize,
    /// Adds attempted (every outcome).
    pub attempted: usize,
    /// Acknowledged adds found in the final read.
    pub ok: usize,
    /// Acknowledged adds missing from the final read.
    pub lost: Vec<i64>,
    /// Elements of the final read never attempted (before it completed).
    pub unexpected: Vec<i64>,
    /// Definitely failed adds whose element is in the final read.
    pub failed_present: Vec<i64>,
    /// Definitely failed adds, absent as they should be.
    pub failed: usize,
    /// Indeterminate adds found in the final read.
    pub recovered_indeterminate: usize,
    /// Indeterminate adds not in it (they never took effect; allowed).
    pub absent_indeterminate: usize,
    /// Acknowledged after the final read was invoked: either way is allowed.
    pub concurrent_with_read: usize,
    /// How many elements the final read returned.
    pub read_size: Option<usize>,
    /// Why the history could not be checked (no final read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} adds: {} ok, {} lost, {} unexpected, {} failed ({} present), {} indeterminate ({} recovered); final read {} elements",
            self.attempted,
            self.ok,
            self.lost.len(),
            self.unexpected.len(),
            self.failed + self.failed_present.len(),
            self.failed_present.len(),
            self.recovered_indeterminate + self.absent_indeterminate,
            self.recovered_indeterminate,
            self.read_size.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
        )
    }

    pub fn explain(&self) -> String {
        if let Some(e) = &self.error {
            return e.clone();
        }
        let mut s = String::from("the final read does not match the adds\n");
        for (what, list) in [("lost (acknowledged, not read)", &self.lost), ("unexpected (read, never added)", &self.unexpected), ("present though the add failed", &self.failed_present)] {
            if !list.is_empty() {
                s += &format!("  {} {what}: {}\n", list.len(), show(list));
            }
        }
        s
    }
}

/// The first few numbers of a list.
pub(crate) fn show(list: &[i64]) -> String {
    const MAX: usize = 20;
    let mut s = list.iter().take(MAX).map(|v| v.to_string()).collect::<Vec<_>>().join(" ");
    if list.len() > MAX {
        s += &format!(" ... ({} more)", list.len() - MAX);
    }
    s
}

pub fn check(history: &[Op]) -> Report {
    let reads = || history.iter().filter(|o| o.f == Kind::Read && o.outcome == Outcome::Ok && o.values.is_some());
    let read = reads().filter(|o| o.process == FINAL_PROCESS).max_by_key(|o| o.invoke_ns).or_else(|| reads().max_by_key(|o| o.invoke_ns));
    let adds: Vec<&Op> = history.iter().filter(|o| o.f == Kind::Add).collect();
    let mut r = Report {
        valid: false,
        ops: history.len(),
        attempted: adds.len(),
        ok: 0,
        lost: Vec::new(),
        unexpected: Vec::new(),
        failed_present: Vec::new(),
        failed: 0,
        recovered_indeterminate: 0,
        absent_indeterminate: 0,
        concurrent_with_read: 0,
        read_size: None,
        error: None,
    };
    let Some(read) = read else {
        r.error = Some("no final read: nothing to check the adds against".into());
        return r;
    };
    if let Some(e) = &read.error {
        // The harness records children it could not parse as an element here.
        r.error = Some(format!("the final read returned what is not an element: {e}"));
        return r;
    }
    let values = read.values.as_deref().unwrap_or_default();
    r.read_size = Some(values.len());
    let read_end = read.complete_ns.unwrap_or(u64::MAX);
    // Each element's add; an element added twice (not by this harness) is
    // judged by its most favourable attempt.
    let mut by_value: BTreeMap<i64, Vec<&Op>> = BTreeMap::new();
    for a in &adds {
        if let Some(v) = a.value {
            by_value.entry(v).or_default().push(a);
        }
    }
    let present: std::collections::BTreeSet<i64> = values.iter().copied().collect();
    for &v in &present {
        let attempts = by_value.get(&v).map(Vec::as_slice).unwrap_or_default();
        if !attempts.iter().any(|a| a.invoke_ns <= read_end) {
            r.unexpected.push(v);
        } else if attempts.iter().all(|a| a.outcome == Outcome::Fail) {
            r.failed_present.push(v);
        }
    }
    for (&v, attempts) in &by_value {
        let here = present.contains(&v);
        let ok_before = attempts.iter().any(|a| a.outcome == Outcome::Ok && a.complete_ns.is_some_and(|c| c < read.invoke_ns));
        if ok_before {
            if here {
                r.ok += 1;
            } else {
                r.lost.push(v);
            }
        } else if attempts.iter().any(|a| a.outcome == Outcome::Ok) {
            r.concurrent_with_read += 1;
        } else if attempts.iter().any(|a| a.outcome == Outcome::Info) {
            if here {
                r.recovered_indeterminate += 1;
            } else {
                r.absent_indeterminate += 1;
            }
        } else if !here {
            r.failed += 1;
        }
    }
    r.valid = r.lost.is_empty() && r.unexpected.is_empty() && r.failed_present.is_empty();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(p: u64, v: i64, from: u64, to: Option<u64>, outcome: Outcome) -> Op {
        Op::new(p, "set", Kind::Add, Some(v), None, from, to, outcome)
    }
    fn final_read(vs: &[i64], from: u64, to: u64) -> Op {
        let mut o = Op::new(FINAL_PROCESS, "set", Kind::Read, None, None, from, Some(to), Outcome::Ok);
        o.values = Some(vs.to_vec());
        o
    }
    fn history() -> Vec<Op> {
        vec![
            add(0, 1, 0, Some(10), Outcome::Ok),
            add(1, 2, 5, Some(15), Outcome::Ok),
            add(0, 3, 20, None, Outcome::Info),
            add(1, 4, 20, None, Outcome::Info),
            add(2, 5, 30, Some(40), Outcome::Fail),
        ]
    }

    #[test]
    fn every_acknowledged_add_read_is_valid() {
        let mut h = history();
        h.push(final_read(&[1, 2, 3], 100, 110));
        let r = check(&h);
        assert!(r.valid, "{r:?}");
        assert_eq!((r.ok, r.recovered_indeterminate, r.absent_indeterminate, r.failed), (2, 1, 1, 1));
        assert_eq!(r.read_size, Some(3));
    }

    #[test]
    fn a_lost_add_is_caught() {
        let mut h = history();
        h.push(final_read(&[1, 3, 4], 100, 110));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.lost, vec![2]);
        assert!(r.explain().contains("1 lost"), "{}", r.explain());
    }

    #[test]
    fn an_unexpected_element_is_caught() {
        let mut h = history();
        h.push(final_read(&[1, 2, 99], 100, 110));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.unexpected, vec![99]);
        // An element whose add began only after the read completed is one too.
        let mut h = history();
        h.push(final_read(&[1, 2, 6], 100, 110));
        h.push(add(3, 6, 120, Some(130), Outcome::Ok));
        assert_eq!(check(&h).unexpected, vec![6]);
    }

    #[test]
    fn a_failed_add_present_is_caught() {
        let mut h = history();
        h.push(final_read(&[1, 2, 5], 100, 110));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.failed_present, vec![5]);
    }

    #[test]
    fn an_add_acknowledged_during_the_read_may_be_missing() {
        let mut h = history();
        h.push(add(3, 7, 90, Some(105), Outcome::Ok));
        h.push(final_read(&[1, 2], 100, 110));
        let r = check(&h);
        assert!(r.valid, "{r:?}");
        assert_eq!(r.concurrent_with_read, 1);
    }

    #[test]
    fn without_a_final_read_nothing_is_claimed() {
        let r = check(&history());
        assert!(!r.valid);
        assert!(r.explain().contains("no final read"));
    }

    #[test]
    fn the_final_read_is_the_final_process_one() {
        // An earlier (stale) read during the run is not the final one.
        let mut h = history();
        let mut early = final_read(&[1], 12, 13);
        early.process = 3;
        h.push(early);
        h.push(final_read(&[1, 2], 100, 110));
        assert!(check(&h).valid);
    }
}
