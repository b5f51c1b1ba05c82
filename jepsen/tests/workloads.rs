//! The set, counter, unique-ids and lock workloads end to end: the
//! `corral-jepsen` binary against a real 3-member Corral ensemble under
//! partitions and kills, each run short (5-8 s of workload) but asserted to
//! have done enough to check. The checkers' failing cases are shown on
//! hand-built histories (`check/src/*.rs`, the `corral-check` crate); here, through the binary, a
//! lost element planted in a real history and server bugs that lose
//! increments (`overlay-skip`) and acknowledged creates (`early-ack`: adds
//! missing, ids handed out twice).

mod common;

use common::{jepsen, n, results, test, valid_under_faults};

#[test]
fn set_keeps_every_acknowledged_add() {
    let (code, out, dir) = test("set", &["--nemesis", "partition,kill", "--time", "5", "--seed", "21"]);
    let r = results(&dir.0);
    valid_under_faults(code, &out, &r, "set");
    let c = &r["check"];
    assert!(n(&c["ok"]) > 300, "{c}");
    assert!(n(&c["read_size"]) >= n(&c["ok"]), "{c}");
    assert_eq!(c["lost"].as_array().unwrap().len(), 0);

    // The same history with one acknowledged element taken out of the
    // final read: `check` (the workload told by the ops) finds it lost.
    let history = std::fs::read_to_string(dir.0.join("history.jsonl")).unwrap();
    let mut ops: Vec<serde_json::Value> = history.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let added = ops.iter().find(|o| o["f"] == "add" && o["type"] == "ok").unwrap()["value"].clone();
    let read = ops.iter_mut().find(|o| o["f"] == "read" && o["process"] == 1_000_001).expect("the final read");
    read["values"].as_array_mut().unwrap().retain(|v| *v != added);
    let tampered = dir.1.join("tampered.jsonl");
    std::fs::write(&tampered, ops.iter().map(|o| o.to_string() + "\n").collect::<String>()).unwrap();
    let (code, out) = jepsen(&["check", tampered.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("INVALID: the final read does not match the adds\n  1 lost (acknowledged, not read): {added}")), "{out}");
    // Untouched, it checks as the run did (the workload from results.json).
    let (code, out) = jepsen(&["check", dir.0.join("history.jsonl").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn counter_reads_stay_within_their_bounds() {
    // Linearizable reads: every read is held to the increments acknowledged before it.
    let (code, out, dir) = test("counter", &["--nemesis", "partition,kill", "--time", "5", "--read-consistency", "linearizable", "--seed", "22"]);
    let r = results(&dir.0);
    valid_under_faults(code, &out, &r, "counter");
    let c = &r["check"];
    assert_eq!(c["reads_checked"], true);
    assert!(n(&c["increments_ok"]) > 150 && n(&c["reads"]) > 150, "{c}");
    let (lo, hi) = (n(&c["final_bounds"][0]), n(&c["final_bounds"][1]));
    assert_eq!(lo, n(&c["increments_ok"]), "{c}");
    assert_eq!(hi, lo + n(&c["increments_info"]), "{c}");
    assert!((lo..=hi).contains(&n(&c["final_value"])), "{c}");
}

#[test]
fn overlay_skip_bug_loses_increments() {
    // Prep ignores proposals in flight: two CAS from the same version both
    // succeed, so acknowledged increments go missing from the total. The
    // final read (behind a sync, checked fully) shows it.
    let (code, out, _stored) = test("counter", &["--nemesis", "none", "--time", "3", "--bug", "overlay-skip", "--seed", "26"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID: ") && out.contains("p1000001") && out.contains("below the ") && out.contains(" increments acknowledged before the read was invoked"), "{out}");
}

#[test]
fn early_ack_bug_loses_acknowledged_adds() {
    // The leader answers a create once proposed, not once committed. Cut
    // off, it keeps answering its workers' adds until it steps down; the
    // majority's new leader never had them, and the final read misses
    // adds that were acknowledged.
    let (code, out, dir) = caught("set", "early-ack");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID: the final read does not match the adds") && out.contains(" lost (acknowledged, not read): "), "{out}");
    let r = results(&dir.0);
    assert!(!r["check"]["lost"].as_array().unwrap().is_empty(), "{}", r["check"]);
}

#[test]
fn unique_ids_are_unique_and_in_order() {
    let (code, out, dir) = test("unique-ids", &["--nemesis", "partition,kill", "--time", "5", "--seed", "23"]);
    let r = results(&dir.0);
    valid_under_faults(code, &out, &r, "unique-ids");
    let c = &r["check"];
    assert!(n(&c["ok"]) > 300, "{c}");
    assert_eq!(n(&c["distinct_ids"]), n(&c["ok"]), "{c}");
}

#[test]
fn early_ack_bug_hands_out_ids_twice() {
    // A sequential create answered early by a leader about to be cut off
    // is lost; the new leader's counter never counted it, and hands its
    // suffix out again.
    let (code, out, dir) = caught("unique-ids", "early-ack");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ids returned more than once") || out.contains("not above an id acknowledged before their create was invoked"), "{out}");
    assert_eq!(results(&dir.0)["valid"], false);
}

#[test]
fn lock_holders_never_overlap() {
    // A kill or partition that strands a waiter's or holder's session stalls
    // the lock until that session expires (4 s): 8 s leaves room for holds.
    let (code, out, dir) = test("lock", &["--nemesis", "partition,kill", "--time", "8", "--seed", "24"]);
    let r = results(&dir.0);
    valid_under_faults(code, &out, &r, "lock");
    let c = &r["check"];
    assert!(n(&c["proven_holds"]) >= 15, "{c}");
    assert_eq!(n(&c["overlap_count"]), 0);
}

#[test]
fn lock_recipe_holds_on_zookeeper() {
    // The same client recipe against the reference, without faults (a
    // ZooKeeper election after a fault can take tens of seconds).
    if !common::zookeeper_available() {
        return;
    }
    let (code, out, dir) = test("lock", &["--target", "zookeeper", "--nemesis", "none", "--time", "3", "--seed", "25"]);
    assert_eq!(code, 0, "{out}");
    assert!(n(&results(&dir.0)["check"]["proven_holds"]) >= 10, "{out}");
}

#[test]
fn an_unknown_workload_is_a_usage_error() {
    let (code, _) = jepsen(&["test", "--workload", "bank", "--nemesis", "none", "--time", "1"]);
    assert_eq!(code, 2);
    let (code, _) = jepsen(&["check", "/nonexistent/history.jsonl", "--workload", "bank"]);
    assert_eq!(code, 2);
}

/// `--rate`: the workers together invoke about that many ops a second, and
/// never more (each worker has one slot every workers / rate seconds).
#[test]
fn rate_paces_the_workers() {
    let (code, out, dir) = test("set", &["--nemesis", "none", "--time", "4", "--concurrency", "4", "--rate", "40", "--seed", "5"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("--rate 40"), "the rerun command keeps the rate: {out}");
    let history = std::fs::read_to_string(dir.0.join("history.jsonl")).unwrap();
    let adds = history.lines().filter(|l| l.contains("\"f\":\"add\"")).count();
    // 4 s at 40/s: 160 slots, plus each worker's first slot at its start.
    assert!(adds <= 160 + 4, "{adds} adds invoked at --rate 40 in 4 s");
    // Far below flat out (thousands) but not stalled.
    assert!(adds >= 40, "only {adds} adds invoked at --rate 40 in 4 s");
}

/// Runs `workload` with server bug `bug` under leader partitions until a
/// run is found INVALID, up to three seeds. Whether a bug shows in one run
/// depends on where the cut falls (an entry acknowledged early is lost only
/// if no follower had it yet), so one seed would make a test that is right
/// most of the time; three 8 s runs all missing it would be a real miss.
fn caught(workload: &str, bug: &str) -> (i32, String, common::Stored) {
    let mut last = None;
    for seed in ["27", "28", "29"] {
        let (code, out, dir) = test(workload, &["--nemesis", "partition-leader", "--time", "8", "--bug", bug, "--seed", seed]);
        if code == 1 {
            return (code, out, dir);
        }
        eprintln!("seed {seed}: not caught (exit {code}); next seed");
        last = Some((code, out, dir));
    }
    last.expect("three runs")
}
