use super::history::{Kind, Op, Outcome};
use super::*;
use proptest::prelude::*;

const K: &str = "r";

fn ok(p: u64, f: Kind, value: Option<i64>, expected: Option<i64>, from: u64, to: u64) -> Op {
    Op::new(p, K, f, value, expected, from, Some(to), Outcome::Ok)
}
fn write(p: u64, v: i64, from: u64, to: u64) -> Op {
    ok(p, Kind::Write, Some(v), None, from, to)
}
fn read(p: u64, v: Option<i64>, from: u64, to: u64) -> Op {
    ok(p, Kind::Read, v, None, from, to)
}
fn info_write(p: u64, v: i64, from: u64) -> Op {
    Op::new(p, K, Kind::Write, Some(v), None, from, None, Outcome::Info)
}
fn numbered(mut ops: Vec<Op>) -> Vec<Op> {
    for (i, op) in ops.iter_mut().enumerate() {
        op.index = i;
    }
    ops
}
fn valid(ops: Vec<Op>) -> bool {
    let ops = numbered(ops);
    let fast = check(&ops, Options::default()).valid;
    assert_eq!(fast, brute::linearizable(&ops, Options::default()), "search and brute force disagree on {ops:#?}");
    fast
}

#[test]
fn concurrent_writes_and_reads_linearize() {
    // Two overlapping writes; reads during them may see either, in either
    // order, but after both one value sticks.
    assert!(valid(vec![write(1, 1, 0, 50), write(2, 2, 10, 60), read(3, Some(2), 20, 30), read(3, Some(1), 40, 70), read(4, Some(1), 80, 90)]));
    assert!(valid(vec![read(1, None, 0, 10), write(2, 1, 5, 20), read(3, Some(1), 15, 25)]));
}

#[test]
fn a_bounded_search_gives_up_without_a_verdict() {
    // Not linearizable, but refuting it means trying every subset of the
    // unknown writes before the stale read: a small budget runs out first.
    let mut ops: Vec<Op> = (0..12).map(|i| info_write(10 + i, 100 + i as i64, i)).collect();
    ops.extend([write(1, 1, 20, 30), write(2, 2, 40, 50), read(3, Some(1), 60, 70)]);
    let ops = numbered(ops);
    let bounded = check_within(&ops, Options::default(), 50);
    assert!(bounded.valid && bounded.undecided == vec![K.to_string()], "{bounded:?}");
    let full = check(&ops, Options::default());
    assert!(!full.valid && full.undecided.is_empty());
    assert_eq!(check_within(&ops, Options::default(), 1_000_000).violation.map(|v| v.op.index), Some(14));
}

#[test]
fn a_stale_read_is_rejected() {
    let ops = numbered(vec![write(1, 1, 0, 10), write(2, 2, 20, 30), read(3, Some(1), 40, 50)]);
    assert!(!valid(ops.clone()));
    let r = check(&ops, Options::default());
    let v = r.violation.expect("a violation");
    assert_eq!(v.key, K);
    assert_eq!(v.op.index, 2, "the read cannot be placed: {}", v.explain());
    assert_eq!(v.model_states, vec![Some(2)]);
    assert!(v.window.len() == 3 && v.explain().contains("read -> 1"), "{}", v.explain());
    // Reads not checked (ZooKeeper's default reads): valid.
    assert!(check(&ops, Options { reads: false }).valid);
}

#[test]
fn a_lost_write_is_rejected() {
    assert!(!valid(vec![write(1, 1, 0, 10), read(2, None, 20, 30)]));
    assert!(!valid(vec![write(1, 1, 0, 10), write(1, 2, 20, 30), read(2, Some(2), 40, 50), read(2, Some(1), 60, 70)]));
}

#[test]
fn an_indeterminate_write_may_have_happened_at_any_time_after_its_invocation() {
    // Seen: it must have happened, and cannot be undone afterwards.
    assert!(valid(vec![info_write(1, 1, 0), read(2, Some(1), 20, 30)]));
    assert!(!valid(vec![info_write(1, 1, 0), read(2, Some(1), 20, 30), read(2, None, 40, 50)]));
    // Not seen, then seen: it happened in between.
    assert!(valid(vec![info_write(1, 1, 0), read(2, None, 20, 30), read(2, Some(1), 40, 50)]));
    // Never seen: it never happened.
    assert!(valid(vec![write(3, 2, 0, 5), info_write(1, 1, 10), read(2, Some(2), 20, 30), read(2, Some(2), 1000, 1010)]));
    // Not before its invocation.
    assert!(!valid(vec![read(2, Some(1), 0, 10), info_write(1, 1, 20)]));
}

#[test]
fn compare_and_set() {
    let cas = |p, from, to, a, b, o| Op::new(p, K, Kind::Cas, Some(to), Some(from), a, Some(b), o);
    assert!(valid(vec![write(1, 1, 0, 10), cas(2, 1, 2, 20, 30, Outcome::Ok), read(3, Some(2), 40, 50)]));
    // A CAS cannot succeed against a value the register did not hold...
    assert!(!valid(vec![write(1, 1, 0, 10), cas(2, 3, 2, 20, 30, Outcome::Ok)]));
    // ...nor fail (BadVersion) when it did hold it.
    assert!(!valid(vec![write(1, 1, 0, 10), cas(2, 1, 2, 20, 30, Outcome::Fail)]));
    assert!(valid(vec![write(1, 1, 0, 10), cas(2, 3, 2, 20, 30, Outcome::Fail), read(3, Some(1), 40, 50)]));
    // Two CAS from the same value: only one may win.
    assert!(!valid(vec![write(1, 1, 0, 10), cas(2, 1, 2, 20, 30, Outcome::Ok), cas(3, 1, 3, 20, 30, Outcome::Ok)]));
}

#[test]
fn keys_are_checked_apart_and_the_violation_names_its_key() {
    let mut ops = vec![write(1, 1, 0, 10), read(2, Some(1), 20, 30)];
    let mut other = vec![write(1, 1, 0, 10), write(1, 2, 20, 30), read(2, Some(1), 40, 50)];
    for o in &mut other {
        o.key = "s".into();
    }
    ops.extend(other);
    let r = check(&numbered(ops), Options::default());
    assert_eq!(r.violation.map(|v| v.key), Some("s".to_string()));
    assert_eq!(r.keys, 2);
}

#[test]
fn histories_round_trip_as_json_lines() {
    let mut ops = numbered(vec![write(1, 1, 0, 10), info_write(2, 5, 3), read(3, None, 1, 2)]);
    ops[0].member = Some(2);
    ops[0].session = Some("0x100".into());
    ops[1].error = Some("connection loss".into());
    let mut buf = Vec::new();
    history::write_jsonl(&ops, &mut buf).unwrap();
    let text = String::from_utf8(buf.clone()).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.contains(r#""type":"info""#) && text.contains(r#""f":"write""#), "{text}");
    assert_eq!(history::read_jsonl(&buf[..]).unwrap(), ops);
    assert!(history::read_jsonl(&b"{}\n"[..]).unwrap_err().starts_with("line 1"));
}

// ---- property tests ----

/// One generated step of a sequential execution.
#[derive(Debug, Clone)]
struct Step {
    key: usize,
    kind: u8, // 0 read, 1 write, 2 cas from the current value, 3 cas from another
    before: u64,
    after: u64,
    info: bool,
    never: bool,
}

fn steps(max: usize, keys: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0..keys, 0u8..4, 0u64..30, 0u64..30, prop::bool::weighted(0.12), prop::bool::weighted(0.3)).prop_map(|(key, kind, before, after, info, never)| Step {
            key,
            kind,
            before,
            after,
            info,
            never,
        }),
        1..max,
    )
}

/// Runs `steps` one after another on registers (linearization point of step
/// i at 100 + 10 i), and gives each op an interval around its point: random
/// overlap, but a history that is linearizable by construction. Writes
/// carry unique values. An indeterminate write either took effect or (if
/// `never`) did not. `lost`: a write (by position) acknowledged but not applied.
fn execute(steps: &[Step], lost: Option<usize>) -> (Vec<Op>, Vec<u64>) {
    let mut regs: Vec<Option<i64>> = vec![None; 8];
    let mut ops = Vec::new();
    let mut points = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let t = 100 + 10 * i as u64;
        let key = format!("k{}", s.key);
        let cur = regs[s.key];
        let v = i as i64 + 1;
        let mut op = Op::new(i as u64, &key, Kind::Read, cur, None, t - s.before, Some(t + s.after), Outcome::Ok);
        match s.kind {
            0 => {}
            1 => {
                op.f = Kind::Write;
                op.value = Some(v);
                let dropped = s.info && s.never;
                if !dropped && lost != Some(i) {
                    regs[s.key] = Some(v);
                }
            }
            _ => {
                op.f = Kind::Cas;
                op.value = Some(v);
                op.expected = if s.kind == 2 { cur } else { Some(-(i as i64) - 1) };
                if op.expected != cur {
                    op.outcome = Outcome::Fail;
                } else if !(s.info && s.never) {
                    regs[s.key] = Some(v);
                }
            }
        }
        if s.info && op.f != Kind::Read {
            op.outcome = Outcome::Info;
            op.complete_ns = None;
        }
        ops.push(op);
        points.push(t);
    }
    (numbered(ops), points)
}

/// Shrinks op `i`'s interval to just around its linearization point (the
/// execution stays valid: the point is still inside).
fn clamp(ops: &mut [Op], points: &[u64], i: usize) {
    ops[i].invoke_ns = points[i] - 2;
    if ops[i].complete_ns.is_some() {
        ops[i].complete_ns = Some(points[i] + 2);
    }
}

fn effective_write(op: &Op) -> bool {
    op.outcome == Outcome::Ok && matches!(op.f, Kind::Write | Kind::Cas)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn sequential_executions_with_overlapping_timing_are_accepted(steps in steps(60, 3)) {
        let (ops, _) = execute(&steps, None);
        let r = check(&ops, Options::default());
        prop_assert!(r.valid, "{}", r.violation.map(|v| v.explain()).unwrap_or_default());
    }

    #[test]
    fn one_stale_read_is_rejected(steps in steps(40, 2), pick in any::<prop::sample::Index>()) {
        let (mut ops, mut points) = execute(&steps, None);
        // A value overwritten (in real time) before the read began: W, then
        // W' on the same key, then a read returning W's value.
        let writes: Vec<usize> = (0..ops.len()).filter(|&i| effective_write(&ops[i])).collect();
        let pairs: Vec<(usize, usize)> = writes.iter().flat_map(|&a| writes.iter().filter(move |&&b| b > a).map(move |&b| (a, b))).filter(|&(a, b)| ops[a].key == ops[b].key).collect();
        let (w, w2) = if pairs.is_empty() {
            // Too few writes: add two at the end.
            let t = points.last().unwrap() + 100;
            for (j, v) in [(0, 1001), (1, 1002)] {
                ops.push(Op::new(99, "k0", Kind::Write, Some(v), None, t + 10 * j - 2, Some(t + 10 * j + 2), Outcome::Ok));
                points.push(t + 10 * j);
            }
            (ops.len() - 2, ops.len() - 1)
        } else {
            *pick.get(&pairs)
        };
        clamp(&mut ops, &points, w);
        clamp(&mut ops, &points, w2);
        let at = points[w2] + 3;
        let mut r = Op::new(98, &ops[w].key.clone(), Kind::Read, ops[w].value, None, at, Some(at + 40), Outcome::Ok);
        r.index = ops.len();
        ops.push(r);
        let report = check(&ops, Options::default());
        prop_assert!(!report.valid);
        prop_assert_eq!(report.violation.map(|v| v.key), Some(ops[w].key.clone()));
    }

    #[test]
    fn one_lost_write_is_rejected(steps in steps(40, 2), pick in any::<prop::sample::Index>()) {
        // The lost write is the last write of its key (a later one could
        // legitimately hide it); a final read sees the value before it.
        let mut steps = steps;
        if !steps.iter().any(|s| s.kind == 1 && !s.info) {
            steps.push(Step { key: 0, kind: 1, before: 5, after: 5, info: false, never: false });
        }
        let writes: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].kind == 1 && !steps[i].info).collect();
        let l = *pick.get(&writes);
        let key = steps[l].key;
        steps = steps.into_iter().enumerate().filter(|(i, s)| *i <= l || s.key != key || s.kind == 0).map(|(_, s)| s).collect();
        let (mut ops, points) = execute(&steps, Some(l));
        // The read returns what the last acknowledged write before the lost
        // one wrote, which ended before the lost one began: only the loss
        // explains it. (Indeterminate writes cannot: their values are unique.)
        clamp(&mut ops, &points, l);
        let prev = (0..l).rev().find(|&i| ops[i].key == ops[l].key && effective_write(&ops[i]));
        if let Some(prev) = prev {
            clamp(&mut ops, &points, prev);
        }
        let before = prev.and_then(|p| ops[p].value);
        let t = points.last().unwrap() + 100;
        let mut r = Op::new(98, &ops[l].key.clone(), Kind::Read, before, None, t, Some(t + 5), Outcome::Ok);
        r.index = 10_000;
        ops.push(r);
        let report = check(&ops, Options::default());
        prop_assert!(!report.valid, "lost write #{} not caught", ops[l].index);
    }

    #[test]
    fn the_search_agrees_with_brute_force(ops in prop::collection::vec(
        (0u8..2, 0u8..3, prop::option::of(0i64..3), prop::option::of(0i64..3), 0u64..50, 0u64..30, 0u8..3),
        1..8,
    ), reads in any::<bool>()) {
        let ops: Vec<Op> = ops.into_iter().enumerate().map(|(i, (key, kind, value, expected, at, len, outcome))| {
            let f = [Kind::Read, Kind::Write, Kind::Cas][kind as usize];
            let outcome = [Outcome::Ok, Outcome::Fail, Outcome::Info][outcome as usize];
            let mut op = Op::new(i as u64, ["a", "b"][key as usize], f, value, if f == Kind::Cas { expected } else { None }, at, (outcome != Outcome::Info).then_some(at + len), outcome);
            op.index = i;
            op
        }).collect();
        let opts = Options { reads };
        prop_assert_eq!(check(&ops, opts).valid, brute::linearizable(&ops, opts), "{:#?}", ops);
    }
}
