//! The bridge, ring, wipe and skew nemeses end to end: short runs of the
//! `corral-jepsen` binary against real Corral ensembles, each asserted
//! valid and to have injected the faults asked for, and to have written
//! its reports beside the history.

mod common;

use common::{events, n, results, test};

fn valid(code: i32, out: &str, r: &serde_json::Value) {
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\nVALID\n"), "{out}");
    assert_eq!(r["valid"], true);
}

#[test]
fn bridge_and_ring_partitions_keep_registers_linearizable() {
    // Five members: the ring's shape needs four or more (with three every
    // member is every other's neighbour), and the bridge is then two pairs
    // joined by one member.
    let (code, out, dir) = test("register", &["--nodes", "5", "--nemesis", "partition-bridge,partition-ring", "--time", "9", "--read-consistency", "linearizable", "--seed", "12"]);
    let r = results(&dir.0);
    valid(code, &out, &r);
    let ev = events(&r);
    assert!(ev.iter().any(|e| e.starts_with("partition bridge: member ")), "{ev:?}");
    assert!(ev.iter().any(|e| e.starts_with("partition ring ")), "{ev:?}");
    assert!(n(&r["check"]["checked_ops"]) > 1000, "{}", r["check"]);
}

#[test]
fn wipe_and_skew_keep_every_acknowledged_add() {
    let skew = corral_jepsen::cluster::faketime_lib().is_some();
    if !skew {
        eprintln!("libfaketime is not installed (apt-get install faketime): skew left out");
    }
    let nemesis = if skew { "wipe,skew" } else { "wipe" };
    let (code, out, dir) = test("set", &["--nemesis", nemesis, "--time", "10", "--seed", "13"]);
    let r = results(&dir.0);
    valid(code, &out, &r);
    let ev = events(&r);
    assert!(ev.iter().any(|e| e.starts_with("wipe member ")), "{ev:?}");
    assert!(ev.iter().any(|e| e.contains(" caught up ")), "{ev:?}");
    assert!(!skew || ev.iter().any(|e| e.starts_with("skew member ")), "{ev:?}");
    assert!(n(&r["check"]["ok"]) > 200, "{}", r["check"]);
    // The reports, with the faults shaded.
    let timeline = std::fs::read_to_string(dir.0.join("timeline.html")).expect("timeline.html");
    assert!(timeline.contains("<rect class=\"fault\"") && timeline.contains("wipe member "), "no fault drawn");
    for f in ["latency.svg", "rate.svg"] {
        assert!(std::fs::read_to_string(dir.0.join(f)).expect(f).contains("wipe member "), "{f}");
    }
}
