//! The total-queue workload's checker: the queue's (`queue::check`: nothing
//! acknowledged lost, nothing unexpected, duplicates only after a lost
//! claim) on a history of unkeyed puts, some indeterminate, and batch
//! takes; and then the deliveries held against the queue's own totals,
//! read by the drain once the queue was empty (`Stats`, docs/queue.md):
//!
//! - `enqueued_total` counts every put that committed (the counter is
//!   raised in the put's own multi), indeterminate ones included. An
//!   unkeyed put adds at most one message (a lost reply is resolved or
//!   reported `Indeterminate`, never retried blindly), and the drain
//!   delivered everything, so it must equal the number of distinct
//!   payloads delivered: more is a message counted that nobody got (or a
//!   put applied twice), fewer a delivery the queue never counted.
//! - `removed_total` counts the acks that removed a message (no DLQ here):
//!   at least the payloads with an acknowledged ack, at most those with an
//!   ack that was acknowledged or indeterminate.
//! - `redeliveries` adds, per removed message, its claims but the first
//!   (the acking delivery's attempt number less one). Every recorded
//!   delivery is a claim; a take that erred may have claimed up to what it
//!   asked for (`expected`) unseen. So it lies between the sum over payloads
//!   of (deliveries − 1) and that plus the unseen claims.
//!
//! The drain records the stats as its last op: a `read` of the final
//! process, `value` the depth, `values` [enqueued_total, removed_total,
//! redeliveries]. Totals are judged only if that depth is 0.

use super::history::{Kind, Op, Outcome, FINAL_PROCESS};
use super::queue;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The key of the workload's ops (which tells its histories from the queue's).
pub const KEY: &str = "total-queue";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    /// The queue checker's verdict on the same history.
    pub queue: queue::Report,
    /// The queue's totals after the drain, as `Stats` gave them.
    pub enqueued_total: Option<i64>,
    pub removed_total: Option<i64>,
    pub redeliveries: Option<i64>,
    /// What the history allows for `removed_total` and `redeliveries`.
    pub removed_bounds: [i64; 2],
    pub redeliveries_bounds: [i64; 2],
    /// Takes that erred, and how many messages they may have claimed.
    pub takes_info: usize,
    pub unseen_claims_max: i64,
    /// The totals that disagree with the history, in words.
    pub mismatches: Vec<String>,
    /// Why the totals could not be judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        let t = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        format!(
            "{}; totals: enqueued {} (distinct payloads delivered {}), removed {} in [{}, {}], redeliveries {} in [{}, {}]; {} mismatches",
            self.queue.summary(),
            t(self.enqueued_total),
            self.queue.delivered,
            t(self.removed_total),
            self.removed_bounds[0],
            self.removed_bounds[1],
            t(self.redeliveries),
            self.redeliveries_bounds[0],
            self.redeliveries_bounds[1],
            self.mismatches.len()
        )
    }

    pub fn explain(&self) -> String {
        let mut s = String::new();
        if !self.queue.valid {
            s += &self.queue.explain();
        }
        if let Some(e) = &self.error {
            s += &format!("{e}\n");
        }
        if !self.mismatches.is_empty() {
            s += "the queue's totals do not match the deliveries\n";
            for m in &self.mismatches {
                s += &format!("  {m}\n");
            }
        }
        s
    }
}

pub fn check(history: &[Op]) -> Report {
    let q = queue::check(history);
    let stats = history.iter().filter(|o| o.process == FINAL_PROCESS && o.f == Kind::Read && o.outcome == Outcome::Ok).max_by_key(|o| o.invoke_ns);
    let totals = stats.and_then(|o| o.values.clone()).filter(|v| v.len() == 3);
    let total = |i: usize| totals.as_ref().map(|t| t[i]);

    // Per payload: recorded deliveries, and whether an ack of it was
    // acknowledged or may have been.
    let mut takes: BTreeMap<i64, i64> = BTreeMap::new();
    let (mut acked, mut maybe_acked) = (BTreeSet::new(), BTreeSet::new());
    let (mut takes_info, mut unseen) = (0, 0i64);
    for o in history {
        match (o.f, o.outcome, o.value) {
            (Kind::Take, Outcome::Ok, Some(v)) => *takes.entry(v).or_default() += 1,
            (Kind::Take, Outcome::Info, _) => {
                takes_info += 1;
                unseen += o.expected.unwrap_or(1).max(1);
            }
            (Kind::Ack, Outcome::Ok, Some(v)) => {
                acked.insert(v);
                maybe_acked.insert(v);
            }
            (Kind::Ack, Outcome::Info, Some(v)) => {
                maybe_acked.insert(v);
            }
            _ => {}
        }
    }
    let extra: i64 = takes.values().map(|n| n - 1).sum();
    let mut r = Report {
        valid: false,
        queue: q,
        enqueued_total: total(0),
        removed_total: total(1),
        redeliveries: total(2),
        removed_bounds: [acked.len() as i64, maybe_acked.len() as i64],
        redeliveries_bounds: [extra, extra + unseen],
        takes_info,
        unseen_claims_max: unseen,
        mismatches: Vec::new(),
        error: None,
    };
    match (stats.and_then(|o| o.value), &totals) {
        (Some(0), Some(_)) => {}
        (Some(0), None) => r.error = Some("the drain's stats read holds no totals: not judged".into()),
        (depth, _) => r.error = Some(format!("the drain did not empty the queue (depth {}): totals not judged", depth.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()))),
    }
    if r.error.is_none() {
        let delivered = r.queue.delivered as i64;
        if let Some(e) = r.enqueued_total.filter(|e| *e != delivered) {
            let why = if e > delivered { "a message counted that no take delivered, or a put applied twice" } else { "deliveries of messages whose put the queue never counted" };
            r.mismatches.push(format!("enqueued_total {e}, but {delivered} distinct payloads were delivered and the queue is empty: {why}"));
        }
        let [lo, hi] = r.removed_bounds;
        if let Some(n) = r.removed_total.filter(|n| !(lo..=hi).contains(n)) {
            r.mismatches.push(format!("removed_total {n}, but {lo} payloads had an acknowledged ack and {hi} an ack that may have taken effect"));
        }
        let [lo, hi] = r.redeliveries_bounds;
        if let Some(n) = r.redeliveries.filter(|n| !(lo..=hi).contains(n)) {
            r.mismatches.push(format!("redeliveries {n}, but the deliveries recorded make {lo} and takes that erred could have claimed at most {} more unseen", hi - lo));
        }
    }
    r.valid = r.queue.valid && r.error.is_none() && r.mismatches.is_empty();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(p: u64, f: Kind, v: Option<i64>, from: u64, outcome: Outcome) -> Op {
        let to = (outcome != Outcome::Info).then_some(from + 5);
        Op::new(p, "total-queue", f, v, None, from, to, outcome)
    }
    fn put(p: u64, v: i64, from: u64, outcome: Outcome) -> Op {
        op(p, Kind::Put, Some(v), from, outcome)
    }
    fn take(p: u64, v: i64, from: u64) -> Op {
        op(p, Kind::Take, Some(v), from, Outcome::Ok)
    }
    fn ack(p: u64, v: i64, from: u64, outcome: Outcome) -> Op {
        op(p, Kind::Ack, Some(v), from, outcome)
    }
    fn stats(depth: i64, enqueued: i64, removed: i64, redeliveries: i64) -> Op {
        let mut o = op(FINAL_PROCESS, Kind::Read, Some(depth), 1000, Outcome::Ok);
        o.values = Some(vec![enqueued, removed, redeliveries]);
        o
    }
    /// Puts 1, 2 (ok), 3 (indeterminate, committed), 4 (indeterminate, not);
    /// a batch take of 1 and 2 by process 1 (one ack each), 3 taken by
    /// process 3, left to its lease, then taken again and acked.
    fn history() -> Vec<Op> {
        vec![
            put(0, 1, 0, Outcome::Ok),
            put(0, 2, 10, Outcome::Ok),
            put(0, 3, 20, Outcome::Info),
            put(2, 4, 20, Outcome::Info),
            take(1, 1, 30),
            take(1, 2, 30),
            ack(1, 1, 40, Outcome::Ok),
            ack(1, 2, 40, Outcome::Ok),
            take(3, 3, 50),
            take(5, 3, 300),
            ack(5, 3, 310, Outcome::Ok),
        ]
    }
    fn with_stats(mut h: Vec<Op>, s: Op) -> Vec<Op> {
        h.push(s);
        h
    }

    #[test]
    fn totals_that_match_the_deliveries_are_valid() {
        let r = check(&with_stats(history(), stats(0, 3, 3, 1)));
        assert!(r.valid, "{}", r.explain());
        assert_eq!((r.removed_bounds, r.redeliveries_bounds), ([3, 3], [1, 1]));
        assert_eq!((r.queue.puts_info, r.queue.info_delivered, r.queue.info_absent), (2, 1, 1));
    }

    #[test]
    fn an_enqueue_count_off_by_one_is_caught() {
        // A put counted that no one got (or applied twice), and one delivered but never counted.
        for (enqueued, why) in [(4, "a message counted that no take delivered"), (2, "never counted")] {
            let r = check(&with_stats(history(), stats(0, enqueued, 3, 1)));
            assert!(!r.valid && r.queue.valid, "{r:?}");
            assert!(r.explain().contains(&format!("enqueued_total {enqueued}, but 3 distinct payloads")) && r.explain().contains(why), "{}", r.explain());
        }
    }

    #[test]
    fn a_removal_no_ack_explains_is_caught() {
        // Only 3 acks could have removed anything; 2 is fewer than were acknowledged.
        for removed in [2, 4] {
            let r = check(&with_stats(history(), stats(0, 3, removed, 1)));
            assert!(!r.valid && r.explain().contains(&format!("removed_total {removed}")), "{r:?}");
        }
        // An indeterminate ack widens the bound; a failed one does not.
        let mut h = history();
        h.extend([put(0, 9, 400, Outcome::Ok), take(1, 9, 410), ack(1, 9, 420, Outcome::Info), take(7, 9, 600), ack(7, 9, 610, Outcome::Fail)]);
        assert!(check(&with_stats(h.clone(), stats(0, 4, 4, 2))).valid);
        h.retain(|o| !(o.f == Kind::Ack && o.value == Some(9) && o.outcome == Outcome::Info));
        let r = check(&with_stats(h, stats(0, 4, 4, 2)));
        assert!(!r.valid && r.explain().contains("removed_total 4, but 3 payloads had an acknowledged ack and 3 an ack"), "{}", r.explain());
    }

    #[test]
    fn redeliveries_are_bounded_by_the_claims_seen_and_unseen() {
        // Too few: the queue forgot a recorded delivery; too many: claims no take made.
        for n in [0, 2] {
            let r = check(&with_stats(history(), stats(0, 3, 3, n)));
            assert!(!r.valid && r.explain().contains(&format!("redeliveries {n}")), "{r:?}");
        }
        // A batch take of 4 that erred may have claimed 4 messages unseen.
        let mut h = history();
        let mut lost = op(9, Kind::Take, None, 60, Outcome::Info);
        lost.expected = Some(4);
        h.push(lost);
        let r = check(&with_stats(h.clone(), stats(0, 3, 3, 5)));
        assert!(r.valid && r.redeliveries_bounds == [1, 5], "{r:?}");
        assert!(!check(&with_stats(h, stats(0, 3, 3, 6))).valid);
    }

    #[test]
    fn the_queue_checks_still_apply() {
        // An acknowledged put never delivered: lost, whatever the totals say.
        let mut h = history();
        h.retain(|o| o.value != Some(2) || o.f == Kind::Put);
        let r = check(&with_stats(h, stats(0, 2, 2, 1)));
        assert!(!r.valid && r.queue.lost == vec![2], "{r:?}");
        // A batch's takes each pair with their own ack: a redelivery of 1
        // after its acknowledged ack is unexplained.
        let mut h = history();
        h.extend([take(8, 1, 500), ack(8, 1, 510, Outcome::Fail)]);
        let r = check(&with_stats(h, stats(0, 3, 3, 2)));
        assert_eq!(r.queue.duplicates_unexplained, vec![1], "{r:?}");
    }

    #[test]
    fn totals_are_judged_only_on_a_drained_queue() {
        let r = check(&with_stats(history(), stats(1, 3, 3, 1)));
        assert!(!r.valid && r.explain().contains("did not empty"), "{}", r.explain());
        let mut s = stats(0, 3, 3, 1);
        s.values = None;
        assert!(!check(&with_stats(history(), s)).valid);
        assert!(!check(&history()).valid, "no stats read at all");
    }
}
