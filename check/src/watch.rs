//! The watch workload's checker. Writers set keys `/jepsen/w0` … to
//! increasing values (`f: write`, `value`; `expected`: the version setData
//! returned, when it returned). Watchers keep a data watch on every key: a
//! getData with a watch (`f: observe`, `value`: the data, `expected`: its
//! version), then, when the watch fires, the event (`f: event`, invoked
//! when the watch was set, completed when it fired; `error` names any
//! event but NodeDataChanged), and a getData re-registering it. Watches are
//! one-shot, so a watcher may skip values. Per watcher (process) and key:
//!
//! - versions never go **backwards** (ZooKeeper: a client sees the updates
//!   of a node in order, also across a reconnection to another member);
//! - after a NodeDataChanged event, the next read is **newer** than the
//!   read that set the watch (the client sees the event before the data
//!   that caused it, and that data came after what it had read);
//! - no observed value was never written (**phantom**): some write of the
//!   key with that value was invoked before the read completed (the setup
//!   write included);
//! - one version holds one value (**divergent** otherwise), across all
//!   watchers and the writers' acknowledged versions.
//!
//! A watcher whose session expired continues as a new process: the checks
//! start again. Order across keys is not checked.

use super::history::{Kind, Op, Outcome};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    pub ops: usize,
    pub writes_ok: usize,
    pub writes_info: usize,
    /// Reads of watchers (ok), and events received.
    pub observed: usize,
    pub events: usize,
    /// Distinct (watcher, key) histories checked.
    pub watch_histories: usize,
    pub backwards_count: usize,
    /// A read after an event no newer than the one that set the watch.
    pub stale_after_event_count: usize,
    pub phantom_count: usize,
    pub divergent_count: usize,
    /// The first violation of each kind, with the ops that show it.
    pub violations: Vec<Violation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub what: String,
    pub ops: Vec<Op>,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} writes ok ({} indeterminate); {} values observed, {} events, {} watcher-key histories; {} backwards, {} stale after an event, {} phantom, {} divergent",
            self.writes_ok, self.writes_info, self.observed, self.events, self.watch_histories, self.backwards_count, self.stale_after_event_count, self.phantom_count, self.divergent_count
        )
    }

    pub fn explain(&self) -> String {
        let mut s = String::new();
        for v in &self.violations {
            s += &format!("{}\n", v.what);
            for o in &v.ops {
                s += &format!("    {}\n", o.describe());
            }
        }
        s
    }
}

pub fn check(history: &[Op]) -> Report {
    let count = |f: Kind, out: Outcome| history.iter().filter(|o| o.f == f && o.outcome == out).count();
    let mut r = Report {
        valid: false,
        ops: history.len(),
        writes_ok: count(Kind::Write, Outcome::Ok),
        writes_info: count(Kind::Write, Outcome::Info),
        observed: count(Kind::Observe, Outcome::Ok),
        events: count(Kind::Event, Outcome::Ok),
        watch_histories: 0,
        backwards_count: 0,
        stale_after_event_count: 0,
        phantom_count: 0,
        divergent_count: 0,
        violations: Vec::new(),
    };
    let first = |r: &mut Report, what: &str, ops: Vec<Op>| {
        if !r.violations.iter().any(|v| v.what.starts_with(what)) {
            let what = format!("{what}: {}", ops.last().map(|o| o.key.as_str()).unwrap_or_default());
            r.violations.push(Violation { what, ops });
        }
    };
    // Every write attempted, by key and value (the earliest invocation).
    let mut written: HashMap<(&str, i64), u64> = HashMap::new();
    for w in history.iter().filter(|o| o.f == Kind::Write && o.outcome != Outcome::Fail) {
        if let Some(v) = w.value {
            let t = written.entry((w.key.as_str(), v)).or_insert(w.invoke_ns);
            *t = (*t).min(w.invoke_ns);
        }
    }
    // What each version holds, by the first op that told.
    let mut versions: HashMap<(&str, i64), &Op> = HashMap::new();
    for o in history.iter().filter(|o| matches!(o.f, Kind::Observe | Kind::Write) && o.outcome == Outcome::Ok) {
        let (Some(version), Some(value)) = (o.expected, o.value) else { continue };
        match versions.get(&(o.key.as_str(), version)) {
            Some(seen) if seen.value != Some(value) => {
                r.divergent_count += 1;
                first(&mut r, "one version with two values", vec![(*seen).clone(), o.clone()]);
            }
            Some(_) => {}
            None => {
                versions.insert((o.key.as_str(), version), o);
            }
        }
    }
    let mut by_watcher: BTreeMap<(u64, &str), Vec<&Op>> = BTreeMap::new();
    for o in history.iter().filter(|o| matches!(o.f, Kind::Observe | Kind::Event) && o.outcome == Outcome::Ok) {
        by_watcher.entry((o.process, o.key.as_str())).or_default().push(o);
    }
    r.watch_histories = by_watcher.len();
    for list in by_watcher.values_mut() {
        list.sort_by_key(|o| (o.invoke_ns, o.f == Kind::Observe));
        let mut prev: Option<&Op> = None;
        let mut event: Option<&Op> = None;
        for o in list.iter() {
            if o.f == Kind::Event {
                if o.error.is_none() {
                    event = Some(o);
                }
                continue;
            }
            let Some(value) = o.value else { continue };
            if !written.get(&(o.key.as_str(), value)).is_some_and(|&t| t <= o.complete_ns.unwrap_or(u64::MAX)) {
                r.phantom_count += 1;
                first(&mut r, "a value never written was observed", vec![(*o).clone()]);
            }
            if let (Some(p), Some(v)) = (prev, o.expected) {
                let pv = p.expected.unwrap_or(i64::MIN);
                if v < pv {
                    r.backwards_count += 1;
                    first(&mut r, "a watcher saw a key go backwards", vec![p.clone(), (*o).clone()]);
                } else if v == pv && event.is_some() {
                    r.stale_after_event_count += 1;
                    first(&mut r, "a watcher read no newer data after a change event", vec![p.clone(), event.unwrap().clone(), (*o).clone()]);
                }
            }
            prev = Some(o);
            event = None;
        }
    }
    r.valid = r.violations.is_empty();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::SETUP_PROCESS;

    fn write(p: u64, key: &str, v: i64, version: Option<i64>, from: u64) -> Op {
        let mut o = Op::new(p, key, Kind::Write, Some(v), version, from, version.map(|_| from + 5), if version.is_some() { Outcome::Ok } else { Outcome::Info });
        o.expected = version;
        o
    }
    fn observe(p: u64, key: &str, v: i64, version: i64, from: u64) -> Op {
        Op::new(p, key, Kind::Observe, Some(v), Some(version), from, Some(from + 2), Outcome::Ok)
    }
    fn event(p: u64, key: &str, from: u64, to: u64) -> Op {
        Op::new(p, key, Kind::Event, None, None, from, Some(to), Outcome::Ok)
    }
    fn history() -> Vec<Op> {
        vec![
            write(SETUP_PROCESS, "w0", 0, Some(0), 0),
            write(0, "w0", 1, Some(1), 10),
            write(0, "w0", 2, Some(2), 20),
            write(0, "w0", 3, None, 30),
            write(0, "w0", 4, Some(4), 40),
            observe(1, "w0", 0, 0, 5),
            event(1, "w0", 7, 16),
            // Skips 2: watches are one-shot.
            observe(1, "w0", 3, 3, 35),
            event(1, "w0", 37, 45),
            observe(1, "w0", 4, 4, 46),
            // A reconnection: no event, the same value again.
            observe(1, "w0", 4, 4, 50),
            observe(2, "w0", 2, 2, 25),
        ]
    }

    #[test]
    fn in_order_observations_are_valid() {
        let r = check(&history());
        assert!(r.valid, "{}", r.explain());
        assert_eq!((r.observed, r.events, r.watch_histories), (5, 2, 2));
    }

    #[test]
    fn a_value_going_backwards_is_caught() {
        let mut h = history();
        h.push(observe(1, "w0", 2, 2, 60));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.backwards_count, 1);
        assert!(r.explain().starts_with("a watcher saw a key go backwards: w0"), "{}", r.explain());
        // Another process (a new session) starts afresh.
        let mut h = history();
        h.push(observe(7, "w0", 2, 2, 60));
        assert!(check(&h).valid);
    }

    #[test]
    fn no_newer_data_after_an_event_is_caught() {
        let mut h = history();
        h.push(event(1, "w0", 52, 55));
        h.push(observe(1, "w0", 4, 4, 56));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.stale_after_event_count, 1);
    }

    #[test]
    fn a_phantom_value_is_caught() {
        let mut h = history();
        h.push(observe(2, "w0", 99, 5, 60));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.phantom_count, 1);
        assert!(r.explain().starts_with("a value never written was observed"), "{}", r.explain());
        // A value written to another key, or only after the read, is one too.
        let mut h = history();
        h.push(observe(2, "w1", 1, 1, 60));
        h.push(observe(3, "w0", 5, 5, 60));
        h.push(write(0, "w0", 5, Some(5), 70));
        assert_eq!(check(&h).phantom_count, 2);
    }

    #[test]
    fn two_values_for_one_version_are_caught() {
        let mut h = history();
        h.push(observe(2, "w0", 3, 2, 60));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.divergent_count, 1);
    }
}
