//! The session workload's checker. Each worker opens a session S, creates
//! an ephemeral node `/jepsen/session/eN` (`f: create`, `value: N`,
//! `session: S`), checks it now and then (`f: check`: an exists on its own
//! node; `expected`: the node's ephemeralOwner, none if the node was
//! absent) or, in turn, sets its data (`f: write`, `value: N`), and after
//! a while closes the session (`f: close`; `error:
//! SessionExpired` when instead the client learned that it had expired).
//! An observer lists the nodes and checks their owners (`f: check` behind a sync,
//! in its own session). After the run, with every fault undone and the session
//! timeout waited out (each remaining node's deletion awaited, bounded), a
//! final read lists the nodes still there (`f: read`, `values`). So:
//!
//! - **stranger**: a node is only ever seen owned by the session that
//!   created it;
//! - **lost ephemeral**: a node (its create acknowledged) found absent —
//!   by its own session's check (reads are read-your-writes within a
//!   session) or write (NoNode), or by the observer's check behind a sync —
//!   while it provably still lived afterwards: a later write of the node by
//!   its owner succeeded, or (for the owner's own op) a later op of its
//!   session did, so the session was alive and its node had to be there;
//! - **leaked**: a node in the final read whose session was closed or seen
//!   expired before it (every worker closes its session when it stops);
//! - **unexpected**: a node seen that no create attempted.
//! - **expired early**: a session that expired (an op of it returned
//!   SessionExpired) sooner than its granted timeout (the close's `value`,
//!   milliseconds) after the invocation of one of its writes that
//!   succeeded. The server heard from the session when it took that write,
//!   and a session expires only after a whole timeout without word from it;
//!   the close is recorded after the client learned of the expiry, so its
//!   time is an upper bound of the expiry's.
//!
//! What it cannot see: a node removed while its session lived if that
//! session never again completed an op (the worker cannot tell), and a node
//! outliving its session during the run (expiry is a timeout, so only the
//! final read, after the timeout has run out, can say "too late").

use super::history::{Kind, Op, Outcome, FINAL_PROCESS};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    pub ops: usize,
    pub creates_ok: usize,
    pub creates_info: usize,
    pub creates_fail: usize,
    /// Checks that found a node (by its own session, by the observer).
    pub own_checks: usize,
    pub observer_checks: usize,
    /// The owners' writes of their nodes that succeeded.
    pub own_writes: usize,
    pub closed: usize,
    pub expired: usize,
    /// Own checks that found the node absent and were then confirmed by a
    /// later op of the session.
    pub lost_ephemeral: Vec<i64>,
    /// Nodes seen owned by another session than their creator's.
    pub stranger: Vec<i64>,
    /// Nodes of closed or expired sessions in the final read.
    pub leaked: Vec<i64>,
    pub unexpected: Vec<i64>,
    /// Sessions that expired sooner than their timeout after a write of theirs.
    pub expired_early: Vec<String>,
    pub final_nodes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_violation: Option<Vec<Op>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} ephemerals created ({} indeterminate, {} failed); {} own checks, {} own writes, {} observer checks; {} sessions closed, {} seen expired; {} lost-ephemeral, {} owned by a stranger, {} leaked, {} unexpected; final read {} nodes",
            self.creates_ok,
            self.creates_info,
            self.creates_fail,
            self.own_checks,
            self.own_writes,
            self.observer_checks,
            self.closed,
            self.expired,
            self.lost_ephemeral.len(),
            self.stranger.len(),
            self.leaked.len(),
            self.unexpected.len(),
            self.final_nodes.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
        )
    }

    pub fn explain(&self) -> String {
        if let (Some(e), false) = (&self.error, self.violated()) {
            return e.clone();
        }
        let mut s = String::from("ephemeral ownership does not match the sessions\n");
        if !self.expired_early.is_empty() {
            s += &format!("  {} sessions expired sooner than their timeout after a write of theirs: {}\n", self.expired_early.len(), self.expired_early.join(" "));
        }
        for (what, list) in [
            ("lost-ephemeral (gone while their session was alive)", &self.lost_ephemeral),
            ("owned by a session other than their creator's", &self.stranger),
            ("leaked (their session closed or expired, still there in the final read)", &self.leaked),
            ("unexpected (never created)", &self.unexpected),
        ] {
            if !list.is_empty() {
                s += &format!("  {} {what}: {}\n", list.len(), super::set::show(list));
            }
        }
        if let Some(ops) = &self.first_violation {
            s += "  the first:\n";
            for o in ops {
                s += &format!("    {}\n", o.describe());
            }
        }
        s
    }
}

/// A session id as the history writes it (`{:#x}` of the i64).
pub fn session_name(id: i64) -> String {
    format!("{id:#x}")
}

impl Report {
    /// Whether a violation was proven (a missing final read is no proof of
    /// anything, but does not undo one found in the ops before it).
    pub fn violated(&self) -> bool {
        !(self.lost_ephemeral.is_empty() && self.stranger.is_empty() && self.leaked.is_empty() && self.unexpected.is_empty() && self.expired_early.is_empty())
    }
}

pub fn check(history: &[Op]) -> Report {
    let count = |f: Kind, out: Outcome| history.iter().filter(|o| o.f == f && o.outcome == out).count();
    let closes = || history.iter().filter(|o| o.f == Kind::Close);
    let mut r = Report {
        valid: false,
        ops: history.len(),
        creates_ok: count(Kind::Create, Outcome::Ok),
        creates_info: count(Kind::Create, Outcome::Info),
        creates_fail: count(Kind::Create, Outcome::Fail),
        own_checks: 0,
        observer_checks: 0,
        own_writes: count(Kind::Write, Outcome::Ok),
        closed: closes().filter(|o| o.error.is_none()).count(),
        expired: closes().filter(|o| o.error.is_some()).count(),
        lost_ephemeral: Vec::new(),
        stranger: Vec::new(),
        leaked: Vec::new(),
        unexpected: Vec::new(),
        expired_early: Vec::new(),
        final_nodes: None,
        first_violation: None,
        error: None,
    };
    let first = |r: &mut Report, ops: Vec<Op>| {
        if r.first_violation.is_none() {
            r.first_violation = Some(ops);
        }
    };
    // Each node's create (numbers are unique to the run).
    let creates: HashMap<i64, &Op> = history.iter().filter(|o| o.f == Kind::Create && o.outcome != Outcome::Fail).filter_map(|o| Some((o.value?, o))).collect();
    // Each session's ops, by invocation.
    let mut by_session: HashMap<&str, Vec<&Op>> = HashMap::new();
    for o in history {
        if let Some(s) = &o.session {
            by_session.entry(s.as_str()).or_default().push(o);
        }
    }
    for list in by_session.values_mut() {
        list.sort_by_key(|o| o.invoke_ns);
    }
    let mut stranger = BTreeMap::new();
    // Ops that found a node absent: (the op, the node's create, whether by its own session).
    let mut absent: Vec<(&Op, &Op, bool)> = Vec::new();
    let mut unexpected = BTreeMap::new();
    for c in history.iter().filter(|o| o.f == Kind::Check && o.outcome == Outcome::Ok) {
        let Some(n) = c.value else { continue };
        let create = creates.get(&n);
        let own = create.is_some_and(|k| k.session.is_some() && k.session == c.session);
        if own {
            r.own_checks += 1;
        } else {
            r.observer_checks += 1;
        }
        match (c.expected, create) {
            (Some(_), None) => {
                unexpected.entry(n).or_insert_with(|| vec![c.clone()]);
            }
            (Some(owner), Some(k)) if k.session.as_deref() != Some(session_name(owner).as_str()) => {
                stranger.entry(n).or_insert_with(|| vec![(*k).clone(), c.clone()]);
            }
            (None, Some(k)) => absent.push((c, *k, own)),
            _ => {}
        }
    }
    // The owner's writes that found its node gone.
    for w in history.iter().filter(|o| o.f == Kind::Write && o.outcome == Outcome::Fail && o.error.as_deref() == Some("NoNode")) {
        if let Some(k) = w.value.and_then(|n| creates.get(&n)) {
            absent.push((w, *k, k.session.is_some() && k.session == w.session));
        }
    }
    // Each node's successful writes (its owner's): it existed then.
    let mut written: HashMap<i64, Vec<&Op>> = HashMap::new();
    for w in history.iter().filter(|o| o.f == Kind::Write && o.outcome == Outcome::Ok) {
        if let Some(n) = w.value {
            written.entry(n).or_default().push(w);
        }
    }
    for (c, k, own) in absent {
        let Some(n) = c.value else { continue };
        if k.outcome != Outcome::Ok || !k.complete_ns.is_some_and(|t| t < c.invoke_ns) {
            continue;
        }
        // Proof that the node, or its session, was alive afterwards: a
        // later successful write of the node; for the owner's own op, any
        // later op of its session that succeeded.
        let done = c.complete_ns.unwrap_or(u64::MAX);
        let same = c.session.as_deref().and_then(|s| by_session.get(s)).map(Vec::as_slice).unwrap_or_default();
        let later = written.get(&n).and_then(|ws| ws.iter().find(|w| w.invoke_ns > done)).or_else(|| {
            own.then(|| same.iter().find(|o| o.invoke_ns > done && o.outcome == Outcome::Ok && o.f != Kind::Close)).flatten()
        });
        if let Some(l) = later {
            if !r.lost_ephemeral.contains(&n) {
                r.lost_ephemeral.push(n);
                first(&mut r, vec![k.clone(), c.clone(), (*l).clone()]);
            }
        }
    }
    r.lost_ephemeral.sort_unstable();
    let mut sessions: Vec<&&str> = by_session.keys().collect();
    sessions.sort_unstable();
    for s in sessions {
        let ops = &by_session[*s];
        let Some(close) = ops.iter().find(|o| o.f == Kind::Close && o.error.as_deref() == Some("SessionExpired")) else { continue };
        let (Some(timeout_ms), Some(seen)) = (close.value, close.complete_ns) else { continue };
        if !ops.iter().any(|o| o.f != Kind::Close && o.error.as_deref() == Some("SessionExpired")) {
            continue;
        }
        let write = ops.iter().filter(|o| matches!(o.f, Kind::Create | Kind::Write) && o.outcome == Outcome::Ok).max_by_key(|o| o.invoke_ns);
        if let Some(w) = write {
            if seen < w.invoke_ns.saturating_add(timeout_ms as u64 * 1_000_000) {
                r.expired_early.push(s.to_string());
                first(&mut r, vec![(*w).clone(), (*close).clone()]);
            }
        }
    }
    for (n, ops) in stranger {
        r.stranger.push(n);
        first(&mut r, ops);
    }
    let reads = || history.iter().filter(|o| o.f == Kind::Read && o.outcome == Outcome::Ok && o.values.is_some());
    let read = reads().filter(|o| o.process == FINAL_PROCESS).max_by_key(|o| o.invoke_ns).or_else(|| reads().max_by_key(|o| o.invoke_ns));
    match read {
        None => r.error = Some("no final read: nothing to check the closed sessions' nodes against".into()),
        Some(read) => {
            if let Some(e) = &read.error {
                // The harness records children it could not parse here.
                r.error = Some(format!("the final read returned what is not a node of this workload: {e}"));
            }
            let nodes = read.values.as_deref().unwrap_or_default();
            r.final_nodes = Some(nodes.len());
            for &n in nodes {
                let Some(k) = creates.get(&n) else {
                    unexpected.entry(n).or_insert_with(|| vec![read.clone()]);
                    continue;
                };
                let ended = k.session.as_deref().and_then(|s| by_session.get(s)).and_then(|ops| ops.iter().find(|o| o.f == Kind::Close && o.invoke_ns < read.invoke_ns));
                if let Some(end) = ended {
                    r.leaked.push(n);
                    first(&mut r, vec![(*k).clone(), (*end).clone(), read.clone()]);
                }
            }
        }
    }
    for (n, ops) in unexpected {
        r.unexpected.push(n);
        first(&mut r, ops);
    }
    r.valid = r.error.is_none() && !r.violated();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(p: u64, s: &str, f: Kind, n: Option<i64>, owner: Option<i64>, from: u64, outcome: Outcome) -> Op {
        let mut o = Op::new(p, "session", f, n, owner, from, (outcome != Outcome::Info).then_some(from + 5), outcome);
        o.session = Some(s.to_owned());
        o
    }
    fn create(p: u64, s: &str, n: i64, from: u64) -> Op {
        op(p, s, Kind::Create, Some(n), None, from, Outcome::Ok)
    }
    fn check_(p: u64, s: &str, n: i64, owner: Option<i64>, from: u64) -> Op {
        op(p, s, Kind::Check, Some(n), owner, from, Outcome::Ok)
    }
    fn close(p: u64, s: &str, from: u64) -> Op {
        op(p, s, Kind::Close, None, None, from, Outcome::Ok)
    }
    fn final_read(nodes: &[i64], from: u64) -> Op {
        let mut o = Op::new(FINAL_PROCESS, "session", Kind::Read, None, None, from, Some(from + 5), Outcome::Ok);
        o.values = Some(nodes.to_vec());
        o
    }
    fn history() -> Vec<Op> {
        vec![
            create(0, "0xa", 1, 0),
            check_(0, "0xa", 1, Some(0xa), 10),
            create(1, "0xb", 2, 0),
            check_(9, "0xf", 1, Some(0xa), 12),
            check_(9, "0xf", 2, Some(0xb), 12),
            close(0, "0xa", 20),
            // Seen absent by the observer after the close: fine.
            check_(9, "0xf", 1, None, 30),
            {
                let mut e = op(1, "0xb", Kind::Close, None, None, 40, Outcome::Ok);
                e.error = Some("SessionExpired".into());
                e
            },
            close(9, "0xf", 50),
            final_read(&[], 100),
        ]
    }

    #[test]
    fn ephemerals_that_live_and_die_with_their_sessions_are_valid() {
        let r = check(&history());
        assert!(r.valid, "{}", r.explain());
        assert_eq!((r.creates_ok, r.own_checks, r.observer_checks, r.closed, r.expired), (2, 1, 3, 2, 1));
    }

    #[test]
    fn an_ephemeral_owned_by_a_stranger_is_caught() {
        let mut h = history();
        h.push(check_(9, "0xf", 2, Some(0xc), 14));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.stranger, vec![2]);
        assert!(r.explain().contains("1 owned by a session other than their creator's: 2"), "{}", r.explain());
    }

    #[test]
    fn a_live_sessions_vanished_ephemeral_is_caught() {
        let mut h = history();
        h.push(check_(1, "0xb", 2, None, 20));
        h.push(check_(1, "0xb", 2, None, 30));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.lost_ephemeral, vec![2]);
        // Without a later op that succeeded, the session may have expired.
        let mut h = history();
        h.push(check_(1, "0xb", 2, None, 36));
        assert!(check(&h).valid);
    }

    #[test]
    fn a_vanished_ephemeral_seen_by_the_observer_or_a_write_is_caught() {
        // The observer (synced) finds node 2 gone; its owner then writes it.
        let write = |p, s, n, from, outcome| {
            let mut w = op(p, s, Kind::Write, Some(n), None, from, outcome);
            if outcome == Outcome::Fail {
                w.error = Some("NoNode".into());
            }
            w
        };
        let mut h = history();
        h.push(check_(9, "0xf", 2, None, 20));
        h.push(write(1, "0xb", 2, 30, Outcome::Ok));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.lost_ephemeral, vec![2]);
        assert!(r.explain().contains("1 lost-ephemeral"), "{}", r.explain());
        // The owner's write finds it gone, and its session lives on.
        let mut h = history();
        h.push(write(1, "0xb", 2, 20, Outcome::Fail));
        h.push(check_(1, "0xb", 2, Some(0xb), 30));
        assert_eq!(check(&h).lost_ephemeral, vec![2]);
        // Absent to the observer with nothing proving it alive after: allowed.
        let mut h = history();
        h.push(write(1, "0xb", 2, 15, Outcome::Ok));
        h.push(check_(9, "0xf", 2, None, 25));
        assert!(check(&h).valid);
    }

    #[test]
    fn a_session_expired_sooner_than_its_timeout_after_its_write_is_caught() {
        // Session 0xb (timeout 100 ms) writes at 30 ns and learns at
        // `seen` that it expired.
        let h = |seen: u64, told: bool| {
            let mut h: Vec<Op> = history().into_iter().filter(|o| !(o.f == Kind::Close && o.session.as_deref() == Some("0xb"))).collect();
            h.push(op(1, "0xb", Kind::Write, Some(2), None, 30, Outcome::Ok));
            if told {
                let mut w = op(1, "0xb", Kind::Write, Some(2), None, seen - 10, Outcome::Info);
                w.error = Some("SessionExpired".into());
                h.push(w);
            }
            let mut e = op(1, "0xb", Kind::Close, Some(100), None, seen, Outcome::Ok);
            e.error = Some("SessionExpired".into());
            h.push(e);
            h
        };
        let r = check(&h(80, true));
        assert!(!r.valid);
        assert_eq!(r.expired_early, vec!["0xb".to_string()]);
        assert!(r.explain().contains("1 sessions expired sooner than their timeout"), "{}", r.explain());
        // A whole timeout after the write's invocation: allowed.
        assert!(check(&h(100_000_031, true)).valid, "{}", check(&h(100_000_031, true)).explain());
        // No op said SessionExpired (the client closed for another reason).
        assert!(check(&h(80, false)).valid);
        // Without a final read the finding stands, and says so.
        let mut early = h(80, true);
        early.retain(|o| o.process != FINAL_PROCESS);
        let r = check(&early);
        assert!(r.violated() && !r.valid && r.error.is_some());
        assert!(r.explain().contains("expired sooner"), "{}", r.explain());
    }

    #[test]
    fn a_closed_sessions_ephemeral_in_the_final_read_is_caught() {
        let mut h = history();
        h.pop();
        h.push(final_read(&[1], 100));
        let r = check(&h);
        assert!(!r.valid);
        assert_eq!(r.leaked, vec![1]);
        // A node never created.
        let mut h = history();
        h.pop();
        h.push(final_read(&[7], 100));
        assert_eq!(check(&h).unexpected, vec![7]);
    }
}
