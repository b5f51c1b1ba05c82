//! The queue workload's checker (`corral_queue::NativeQueue`, docs/queue.md,
//! Guarantees). Producers put keyed messages, each with a unique payload N
//! (`f: put`, `value: N`); consumers take (`f: take`, `value`: the payload
//! delivered) and ack (`f: ack`, `value: N`). Once every fault is undone
//! the harness drains the queue (takes and acks as `FINAL_PROCESS` until
//! a take finds nothing and the queue's depth is 0, recorded as a `read`
//! with `value`: the depth). Held to exactly what the queue promises:
//!
//! - **at-least-once**: every put acknowledged (`ok`) is delivered at least
//!   once (**lost** otherwise, when the drain emptied the queue);
//! - nothing is delivered that was not put: a payload no put attempted
//!   before the take completed, or whose only put failed definitely, is
//!   **unexpected**;
//! - **duplicates only after a provably lost claim**: a message is
//!   delivered again only once the previous holder's claim ended, and that
//!   holder's ack then fails (`ClaimLost`, `SessionExpired`) and changes
//!   nothing. So a delivery whose ack succeeded must be the last claim of
//!   its message: a delivery taken (invoked) after an acknowledged
//!   delivery's take completed, or a second successful ack of one
//!   message, is an **unexplained duplicate**. Every other extra delivery
//!   follows a claim that was lost (ack failed, indeterminate, or never
//!   sent: the consumer was cut off or left it to its lease) and is
//!   counted as explained.
//!
//! Indeterminate puts may be delivered or not; both are counted. Order is
//! not checked (the doc promises FIFO only to a lone consumer on a
//! quiescent queue), nor bounds, delays or the DLQ (the workload uses none).

use super::history::{Kind, Op, Outcome, FINAL_PROCESS};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    pub ops: usize,
    pub puts_ok: usize,
    pub puts_info: usize,
    pub puts_fail: usize,
    /// Indeterminate puts delivered (they took effect) and not.
    pub info_delivered: usize,
    pub info_absent: usize,
    /// Deliveries (ok takes), the drain's included, and distinct payloads.
    pub deliveries: usize,
    pub delivered: usize,
    pub acks_ok: usize,
    pub acks_fail: usize,
    pub acks_info: usize,
    /// Acknowledged puts never delivered.
    pub lost: Vec<i64>,
    /// Delivered payloads no put accounts for.
    pub unexpected: Vec<i64>,
    /// Extra deliveries after a claim that was lost.
    pub duplicates_explained: usize,
    /// Extra deliveries the queue's guarantees forbid (payloads).
    pub duplicates_unexplained: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_unexplained: Option<Vec<Op>>,
    /// The queue's depth after the drain.
    pub final_depth: Option<i64>,
    /// Why the history could not be checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} puts ok, {} indeterminate ({} delivered), {} failed; {} deliveries of {} payloads, acks {} ok / {} fail / {} indeterminate; {} lost, {} unexpected, duplicates {} explained / {} unexplained; depth after the drain {}",
            self.puts_ok,
            self.puts_info,
            self.info_delivered,
            self.puts_fail,
            self.deliveries,
            self.delivered,
            self.acks_ok,
            self.acks_fail,
            self.acks_info,
            self.lost.len(),
            self.unexpected.len(),
            self.duplicates_explained,
            self.duplicates_unexplained.len(),
            self.final_depth.map(|d| d.to_string()).unwrap_or_else(|| "-".into())
        )
    }

    pub fn explain(&self) -> String {
        if let Some(e) = &self.error {
            return e.clone();
        }
        let mut s = String::from("the deliveries do not match the puts\n");
        for (what, list) in [
            ("lost (put acknowledged, never delivered)", &self.lost),
            ("unexpected (delivered, never put)", &self.unexpected),
            ("delivered again though an ack of theirs had succeeded", &self.duplicates_unexplained),
        ] {
            if !list.is_empty() {
                s += &format!("  {} {what}: {}\n", list.len(), super::set::show(list));
            }
        }
        if let Some(ops) = &self.first_unexplained {
            s += "  the first such message:\n";
            for o in ops {
                s += &format!("    {}\n", o.describe());
            }
        }
        s
    }
}

/// One delivery: the take, and the ack that followed it in that process.
struct Delivery<'a> {
    take: &'a Op,
    ack: Option<&'a Op>,
}

pub fn check(history: &[Op]) -> Report {
    let count = |f: Kind, out: Outcome| history.iter().filter(|o| o.f == f && o.outcome == out).count();
    let mut r = Report {
        valid: false,
        ops: history.len(),
        puts_ok: count(Kind::Put, Outcome::Ok),
        puts_info: count(Kind::Put, Outcome::Info),
        puts_fail: count(Kind::Put, Outcome::Fail),
        info_delivered: 0,
        info_absent: 0,
        deliveries: 0,
        delivered: 0,
        acks_ok: count(Kind::Ack, Outcome::Ok),
        acks_fail: count(Kind::Ack, Outcome::Fail),
        acks_info: count(Kind::Ack, Outcome::Info),
        lost: Vec::new(),
        unexpected: Vec::new(),
        duplicates_explained: 0,
        duplicates_unexplained: Vec::new(),
        first_unexplained: None,
        final_depth: None,
        error: None,
    };
    // The drain's last word: the depth it left.
    let drained = history.iter().filter(|o| o.process == FINAL_PROCESS && o.f == Kind::Read && o.outcome == Outcome::Ok).max_by_key(|o| o.invoke_ns);
    r.final_depth = drained.and_then(|o| o.value);

    // Each take with the ack of its payload its process sent before its
    // next take (a process runs one op at a time, a batch's takes and acks
    // share their times; an ack names the payload it acks).
    let mut by_process: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for o in history.iter().filter(|o| matches!(o.f, Kind::Take | Kind::Ack)) {
        by_process.entry(o.process).or_default().push(o);
    }
    let mut deliveries: BTreeMap<i64, Vec<Delivery>> = BTreeMap::new();
    for list in by_process.values_mut() {
        list.sort_by_key(|o| o.invoke_ns);
        for (i, o) in list.iter().enumerate() {
            if o.f != Kind::Take || o.outcome != Outcome::Ok {
                continue;
            }
            let Some(v) = o.value else { continue };
            let ack = list[i + 1..].iter().take_while(|a| !(a.f == Kind::Take && a.invoke_ns > o.invoke_ns)).find(|a| a.f == Kind::Ack && a.value == Some(v)).copied();
            deliveries.entry(v).or_default().push(Delivery { take: o, ack });
        }
    }
    r.deliveries = deliveries.values().map(Vec::len).sum();
    r.delivered = deliveries.len();

    let mut puts: BTreeMap<i64, Vec<&Op>> = BTreeMap::new();
    for o in history.iter().filter(|o| o.f == Kind::Put) {
        if let Some(v) = o.value {
            puts.entry(v).or_default().push(o);
        }
    }
    for (&v, ds) in &deliveries {
        let first_done = ds.iter().filter_map(|d| d.take.complete_ns).min().unwrap_or(u64::MAX);
        let attempts = puts.get(&v).map(Vec::as_slice).unwrap_or_default();
        if !attempts.iter().any(|p| p.invoke_ns <= first_done && p.outcome != Outcome::Fail) {
            r.unexpected.push(v);
        }
        // Duplicates: an acknowledged delivery must be its message's last claim.
        let acked: Vec<&Delivery> = ds.iter().filter(|d| d.ack.is_some_and(|a| a.outcome == Outcome::Ok)).collect();
        let bad: Option<Vec<Op>> = if acked.len() > 1 {
            Some(acked.iter().flat_map(|d| [Some(d.take), d.ack]).flatten().cloned().collect())
        } else if let Some(&a) = acked.first() {
            // A claim begun after the acknowledged one's.
            let done = a.take.complete_ns.unwrap_or(u64::MAX);
            ds.iter().find(|d| !std::ptr::eq(*d, a) && d.take.invoke_ns > done).map(|d| [Some(a.take), a.ack, Some(d.take), d.ack].into_iter().flatten().cloned().collect())
        } else {
            None
        };
        match bad {
            Some(ops) => {
                r.duplicates_unexplained.push(v);
                if r.first_unexplained.is_none() {
                    r.first_unexplained = Some(ops);
                }
                r.duplicates_explained += ds.len().saturating_sub(2);
            }
            None => r.duplicates_explained += ds.len() - 1,
        }
    }
    for (&v, attempts) in &puts {
        let here = deliveries.contains_key(&v);
        if attempts.iter().any(|p| p.outcome == Outcome::Ok) {
            if !here {
                r.lost.push(v);
            }
        } else if attempts.iter().any(|p| p.outcome == Outcome::Info) {
            if here {
                r.info_delivered += 1;
            } else {
                r.info_absent += 1;
            }
        }
    }
    if r.final_depth != Some(0) && !r.lost.is_empty() {
        // Not drained: what is missing may still be in the queue.
        r.error = Some(format!("the drain did not empty the queue (depth {}): {} acknowledged puts undelivered, not judged", r.final_depth.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()), r.lost.len()));
    }
    r.valid = r.error.is_none() && r.lost.is_empty() && r.unexpected.is_empty() && r.duplicates_unexplained.is_empty();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(p: u64, f: Kind, v: i64, from: u64, to: Option<u64>, outcome: Outcome) -> Op {
        Op::new(p, "queue", f, Some(v), None, from, to, outcome)
    }
    fn put(p: u64, v: i64, from: u64, outcome: Outcome) -> Op {
        let to = (outcome != Outcome::Info).then_some(from + 5);
        op(p, Kind::Put, v, from, to, outcome)
    }
    fn take(p: u64, v: i64, from: u64) -> Op {
        op(p, Kind::Take, v, from, Some(from + 5), Outcome::Ok)
    }
    fn ack(p: u64, v: i64, from: u64, outcome: Outcome) -> Op {
        let to = (outcome != Outcome::Info).then_some(from + 5);
        op(p, Kind::Ack, v, from, to, outcome)
    }
    fn drained(from: u64, depth: i64) -> Op {
        Op::new(FINAL_PROCESS, "queue", Kind::Read, Some(depth), None, from, Some(from + 5), Outcome::Ok)
    }
    fn history() -> Vec<Op> {
        vec![
            put(0, 1, 0, Outcome::Ok),
            put(0, 2, 10, Outcome::Ok),
            put(0, 3, 20, Outcome::Info),
            put(2, 4, 20, Outcome::Info),
            take(1, 1, 30),
            ack(1, 1, 40, Outcome::Ok),
            take(1, 2, 50),
            ack(1, 2, 60, Outcome::Ok),
            take(1, 3, 70),
            ack(1, 3, 80, Outcome::Ok),
            drained(200, 0),
        ]
    }

    #[test]
    fn every_put_delivered_is_valid() {
        let r = check(&history());
        assert!(r.valid, "{r:?}");
        assert_eq!((r.puts_ok, r.puts_info, r.info_delivered, r.info_absent, r.deliveries), (2, 2, 1, 1, 3));
    }

    #[test]
    fn a_lost_message_is_caught() {
        let mut h = history();
        h.retain(|o| o.value != Some(2) || o.f == Kind::Put);
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.lost, vec![2]);
        assert!(r.explain().contains("1 lost"), "{}", r.explain());
        // Not judged while the queue was not drained.
        h.pop();
        h.push(drained(200, 1));
        let r = check(&h);
        assert!(!r.valid && r.explain().contains("did not empty"), "{r:?}");
    }

    #[test]
    fn an_unexpected_message_is_caught() {
        let mut h = history();
        h.push(take(5, 99, 100));
        h.push(ack(5, 99, 110, Outcome::Ok));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.unexpected, vec![99]);
        // A failed put delivered, or one put only after the take, too.
        let mut h = history();
        h.push(put(2, 7, 100, Outcome::Fail));
        h.push(take(5, 7, 120));
        h.push(take(6, 8, 120));
        h.push(put(2, 8, 130, Outcome::Ok));
        assert_eq!(check(&h).unexpected, vec![7, 8]);
    }

    #[test]
    fn a_duplicate_after_a_lost_claim_is_explained() {
        // Consumer 1's ack fails (ClaimLost), consumer 4's is indeterminate,
        // consumer 5 never acks (cut off): each redelivery is explained.
        let mut h = history();
        h.extend([put(0, 9, 100, Outcome::Ok), take(1, 9, 110), ack(1, 9, 200, Outcome::Fail), take(4, 9, 150), ack(4, 9, 160, Outcome::Info)]);
        h.extend([take(5, 9, 300), take(6, 9, 400), ack(6, 9, 410, Outcome::Ok)]);
        let r = check(&h);
        assert!(r.valid, "{r:?}");
        assert_eq!((r.duplicates_explained, r.duplicates_unexplained.len()), (3, 0));
    }

    #[test]
    fn a_duplicate_after_an_ack_is_caught() {
        let mut h = history();
        h.push(take(4, 1, 100));
        h.push(ack(4, 1, 110, Outcome::Fail));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.duplicates_unexplained, vec![1]);
        assert!(r.explain().contains("delivered again though an ack of theirs had succeeded"), "{}", r.explain());
        // Two successful acks of one message, however the takes overlap.
        let mut h = history();
        h.extend([put(0, 9, 100, Outcome::Ok), take(1, 9, 110), take(4, 9, 111), ack(1, 9, 120, Outcome::Ok), ack(4, 9, 120, Outcome::Ok)]);
        assert_eq!(check(&h).duplicates_unexplained, vec![9]);
        // A redelivery concurrent with the acknowledged take is not provably later.
        let mut h = history();
        h.extend([put(0, 9, 100, Outcome::Ok), take(1, 9, 110), take(4, 9, 112), ack(1, 9, 120, Outcome::Fail), ack(4, 9, 130, Outcome::Ok)]);
        assert!(check(&h).valid);
    }
}
