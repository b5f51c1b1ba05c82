//! The unique-ids workload's checker. Workers create sequential znodes
//! under one parent; each acknowledged create's sequence number is an id.
//! ZooKeeper takes the number from the parent's child version, which every
//! create (and delete) under it raises by one, in the order they commit; so
//!
//! - no id is returned twice (**duplicates**), and
//! - ids follow real time: if create A was acknowledged before create B was
//!   invoked, id(A) < id(B) (**non-monotonic** otherwise).
//!
//! Indeterminate and failed creates returned no id and say nothing (an
//! indeterminate one may have used a number: gaps are allowed).

use super::history::{Kind, Op, Outcome};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    pub ops: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    pub distinct_ids: usize,
    /// Ids returned more than once, with the ops that returned them (the
    /// first few).
    pub duplicates: Vec<Duplicate>,
    pub duplicate_count: usize,
    /// Ops whose id is not above that of an op acknowledged before they
    /// were invoked.
    pub non_monotonic_count: usize,
    /// The first of them (by invocation), and the earlier op it should exceed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_non_monotonic: Option<Box<(Op, Op)>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Duplicate {
    pub id: i64,
    pub ops: Vec<Op>,
}

const LISTED: usize = 10;

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} creates ({} ok, {} fail, {} indeterminate): {} distinct ids, {} duplicated, {} out of real-time order",
            self.ok + self.fail + self.info,
            self.ok,
            self.fail,
            self.info,
            self.distinct_ids,
            self.duplicate_count,
            self.non_monotonic_count
        )
    }

    pub fn explain(&self) -> String {
        let mut s = String::new();
        if self.duplicate_count > 0 {
            s += &format!("{} ids returned more than once; the first {}:\n", self.duplicate_count, self.duplicates.len());
            for d in &self.duplicates {
                s += &format!("  id {}:\n", d.id);
                for o in &d.ops {
                    s += &format!("    {}\n", o.describe());
                }
            }
        }
        if let Some((late, early)) = self.first_non_monotonic.as_deref() {
            s += &format!(
                "{} ids not above an id acknowledged before their create was invoked; the first:\n    {}\n  after\n    {}\n",
                self.non_monotonic_count,
                late.describe(),
                early.describe()
            );
        }
        s
    }
}

pub fn check(history: &[Op]) -> Report {
    let gens: Vec<&Op> = history.iter().filter(|o| o.f == Kind::Generate).collect();
    let count = |out| gens.iter().filter(|o| o.outcome == out).count();
    let mut ok: Vec<&Op> = gens.iter().copied().filter(|o| o.outcome == Outcome::Ok && o.value.is_some() && o.complete_ns.is_some()).collect();
    let mut by_id: BTreeMap<i64, Vec<&Op>> = BTreeMap::new();
    for o in &ok {
        by_id.entry(o.value.unwrap()).or_default().push(o);
    }
    let dups: Vec<(&i64, &Vec<&Op>)> = by_id.iter().filter(|(_, ops)| ops.len() > 1).collect();
    let duplicates = dups.iter().take(LISTED).map(|(id, ops)| Duplicate { id: **id, ops: ops.iter().map(|o| (*o).clone()).collect() }).collect();
    // By completion, the running maximum id and the op that had it.
    let mut done = ok.clone();
    done.sort_by_key(|o| o.complete_ns);
    let mut max: Vec<(u64, &Op)> = Vec::with_capacity(done.len());
    for o in &done {
        let best = match max.last() {
            Some(&(_, m)) if m.value >= o.value => m,
            _ => o,
        };
        max.push((o.complete_ns.unwrap(), best));
    }
    ok.sort_by_key(|o| o.invoke_ns);
    let mut non_monotonic_count = 0;
    let mut first_non_monotonic = None;
    for b in &ok {
        let n = max.partition_point(|(c, _)| *c < b.invoke_ns);
        if n == 0 {
            continue;
        }
        let a = max[n - 1].1;
        if a.value >= b.value {
            non_monotonic_count += 1;
            if first_non_monotonic.is_none() {
                first_non_monotonic = Some(Box::new(((*b).clone(), a.clone())));
            }
        }
    }
    Report {
        valid: dups.is_empty() && non_monotonic_count == 0,
        ops: history.len(),
        ok: count(Outcome::Ok),
        fail: count(Outcome::Fail),
        info: count(Outcome::Info),
        distinct_ids: by_id.len(),
        duplicate_count: dups.len(),
        duplicates,
        non_monotonic_count,
        first_non_monotonic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(p: u64, id: i64, from: u64, to: u64) -> Op {
        Op::new(p, "ids", Kind::Generate, Some(id), None, from, Some(to), Outcome::Ok)
    }

    #[test]
    fn unique_ids_in_real_time_order_are_valid() {
        // Concurrent creates may get their ids in either order; gaps (an
        // indeterminate create's number) are fine.
        let h = vec![
            gen(0, 2, 0, 10),
            gen(1, 1, 5, 15),
            Op::new(2, "ids", Kind::Generate, None, None, 16, None, Outcome::Info),
            gen(0, 4, 20, 30),
            gen(1, 5, 25, 35),
            Op::new(2, "ids", Kind::Generate, None, None, 36, Some(37), Outcome::Fail),
        ];
        let r = check(&h);
        assert!(r.valid, "{}", r.explain());
        assert_eq!((r.ok, r.info, r.fail, r.distinct_ids), (4, 1, 1, 4));
    }

    #[test]
    fn a_duplicate_id_is_caught() {
        let h = vec![gen(0, 1, 0, 10), gen(1, 2, 5, 15), gen(2, 2, 6, 14)];
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.duplicate_count, 1);
        assert_eq!(r.duplicates[0].id, 2);
        assert_eq!(r.duplicates[0].ops.len(), 2);
        assert_eq!(r.non_monotonic_count, 0, "concurrent: only the duplicate is wrong");
        assert!(r.explain().contains("id 2:"), "{}", r.explain());
    }

    #[test]
    fn an_id_below_an_earlier_acknowledged_one_is_caught() {
        // 3 was acknowledged at 10; a create invoked at 20 got 2.
        let h = vec![gen(0, 1, 0, 5), gen(1, 3, 2, 10), gen(2, 2, 20, 30), gen(0, 4, 31, 40)];
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.non_monotonic_count, 1);
        let (late, early) = *r.first_non_monotonic.clone().unwrap();
        assert_eq!((late.value, early.value), (Some(2), Some(3)));
        // A repeated id in sequence is both a duplicate and out of order.
        let r = check(&[gen(0, 1, 0, 5), gen(0, 1, 6, 9)]);
        assert_eq!((r.duplicate_count, r.non_monotonic_count), (1, 1));
    }
}
