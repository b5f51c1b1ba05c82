//! Proof the harness can fail: the register workload run end to end with
//! the `corral-jepsen` binary against real processes, clean and with the
//! server's test-only bug switches. Runs are serialised (`common`).

mod common;

use common::{jepsen, results, Stored};

fn test(args: &[&str]) -> (i32, String, Stored) {
    common::test("register", args)
}

#[test]
fn clean_corral_under_partitions_and_kills_is_linearizable() {
    let (code, out, dir) = test(&["--nemesis", "partition,kill", "--time", "15", "--read-consistency", "linearizable", "--seed", "11"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("VALID") && out.contains("rerun: corral-jepsen test --workload register --nemesis partition,kill --time 15"), "{out}");
    let r = results(&dir.0);
    // The run did something worth checking: faults and many acknowledged ops, reads included.
    let events: Vec<&str> = r["nemesis"].as_array().unwrap().iter().map(|e| e["what"].as_str().unwrap()).collect();
    assert!(events.iter().any(|e| e.starts_with("partition")) && events.iter().any(|e| e.starts_with("kill -9")), "{events:?}");
    assert!(r["ops"]["ok"].as_u64().unwrap() > 1000, "{r}");
    assert_eq!(r["check"]["reads_checked"], true);
    assert!(dir.0.join("history.jsonl").exists());
}

#[test]
fn stale_read_bug_is_caught() {
    // Reads answered at once, without the read index: a follower a moment
    // behind the leader answers from the past. No fault needed.
    let (code, out, dir) = test(&["--nemesis", "none", "--time", "5", "--read-consistency", "linearizable", "--bug", "stale-read", "--seed", "12"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID: key r") && out.contains("read -> ") && out.contains("--bug stale-read"), "{out}");
    assert_eq!(results(&dir.0)["valid"], false);
}

#[test]
fn split_brain_bug_is_caught() {
    // An isolated leader keeps leading and answers linearizable reads
    // locally while the majority elects another and moves on.
    let (code, out, _stored) = test(&["--nemesis", "partition-leader", "--time", "8", "--read-consistency", "linearizable", "--bug", "split-brain", "--seed", "13"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID: key r"), "{out}");
}

#[test]
fn overlay_skip_bug_is_caught_by_writes_alone() {
    // Prep ignores proposals in flight: two CAS from the same version both
    // succeed. Reads are not even checked (sequential mode).
    let (code, out, _stored) = test(&["--nemesis", "none", "--time", "5", "--bug", "overlay-skip", "--seed", "15"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID: key r") && out.contains(" cas "), "{out}");
}

#[test]
fn zookeeper_default_reads_are_not_linearizable_but_its_writes_are() {
    if !common::zookeeper_available() {
        return;
    }
    // ZooKeeper documents its reads as sequentially consistent: checked for
    // linearizability they fail (a follower serves a read from before a
    // write acknowledged by the leader)...
    let (code, out, dir) = test(&["--target", "zookeeper", "--nemesis", "none", "--time", "6", "--read-consistency", "linearizable", "--seed", "14"]);
    assert_eq!(code, 1, "{out}");
    // ...while its writes and CAS linearize: the same history, re-checked.
    let history = dir.0.join("history.jsonl");
    let (code, out) = jepsen(&["check", history.to_str().unwrap(), "--read-consistency", "sequential"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = jepsen(&["check", history.to_str().unwrap()]);
    assert_eq!(code, 1, "re-checked as recorded (reads included): {out}");
}

#[test]
fn usage_and_harness_errors_exit_2() {
    assert_eq!(jepsen(&["test", "--workload", "register", "--nemesis", "meteor"]).0, 2);
    assert_eq!(jepsen(&["check", "/nonexistent/history.jsonl"]).0, 2);
    let (code, _, _) = test(&["--workload", "bank", "--time", "1"]);
    assert_eq!(code, 2);
}
