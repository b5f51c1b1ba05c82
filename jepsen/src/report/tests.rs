//! The reports on hand-built histories: faults paired into spans, the ops
//! each checker implicates, what the timeline and the plots draw, and that
//! nothing from a history reaches the page unescaped.

use super::*;
use crate::check::history::{Kind, Op, Outcome, FINAL_PROCESS};
use crate::check::{check_workload, Options, Workload};

const MS: u64 = 1_000_000;

fn numbered(mut ops: Vec<Op>) -> Vec<Op> {
    for (i, op) in ops.iter_mut().enumerate() {
        op.index = i;
    }
    ops
}

fn ev(at_s: f64, what: &str) -> Event {
    Event { at_s, what: what.into() }
}

/// A stale read (#2): write 1, write 2, then a read of 1.
fn stale_read() -> Vec<Op> {
    numbered(vec![
        Op::new(1, "r0", Kind::Write, Some(1), None, 0, Some(10 * MS), Outcome::Ok),
        Op::new(2, "r0", Kind::Write, Some(2), None, 20 * MS, Some(30 * MS), Outcome::Ok),
        Op::new(3, "r0", Kind::Read, Some(1), None, 40 * MS, Some(50 * MS), Outcome::Ok),
        Op::new(4, "r0", Kind::Read, Some(2), None, 41 * MS, Some(45 * MS), Outcome::Ok),
    ])
}

#[test]
fn faults_pair_into_spans_and_an_unhealed_one_lasts_to_the_end() {
    let events = [ev(1.0, "kill -9 member 2"), ev(3.0, "restart member 2"), ev(4.0, "partition 1 | 2 3"), ev(6.5, "heal"), ev(7.0, "pause (SIGSTOP) member 1")];
    let spans = fault_spans(&events, 9.0);
    assert_eq!(
        spans,
        vec![
            FaultSpan { from_s: 1.0, to_s: 3.0, what: "kill -9 member 2".into() },
            FaultSpan { from_s: 4.0, to_s: 6.5, what: "partition 1 | 2 3".into() },
            FaultSpan { from_s: 7.0, to_s: 9.0, what: "pause (SIGSTOP) member 1".into() },
        ]
    );
    // The new nemeses' words pair the same way.
    let spans = fault_spans(&[ev(1.0, "wipe member 3 (kill -9, data deleted)"), ev(2.0, "restart member 3"), ev(3.0, "skew member 1 +60s"), ev(4.0, "restart member 1 (clock true)")], 5.0);
    assert_eq!(spans.iter().map(|s| (s.from_s, s.to_s)).collect::<Vec<_>>(), vec![(1.0, 2.0), (3.0, 4.0)]);
    let spans = fault_spans(&[ev(1.0, "power cut every member (kill -9; unsynced lost: member 1 10 bytes in 1 files)"), ev(2.5, "restart every member")], 5.0);
    assert_eq!(spans.iter().map(|s| (s.from_s, s.to_s)).collect::<Vec<_>>(), vec![(1.0, 2.5)]);
}

#[test]
fn the_register_violation_is_the_op_no_linearization_places() {
    let ops = stale_read();
    let checked = check_workload(Workload::Register, &ops, Options::default());
    let h = implicated(&checked, &ops);
    assert_eq!(h.ops.iter().copied().collect::<Vec<_>>(), vec![2]);
    assert!(h.why.contains("read -> 1"), "{}", h.why);
    // A valid history highlights nothing.
    let fine = numbered(ops[..2].to_vec());
    assert_eq!(implicated(&check_workload(Workload::Register, &fine, Options::default()), &fine), Highlight::default());
}

#[test]
fn a_lost_add_implicates_its_add_and_the_final_read() {
    let mut read = Op::new(FINAL_PROCESS, "/jepsen/set", Kind::Read, None, None, 50 * MS, Some(60 * MS), Outcome::Ok);
    read.values = Some(vec![1]);
    let ops = numbered(vec![
        Op::new(1, "/jepsen/set", Kind::Add, Some(1), None, 0, Some(10 * MS), Outcome::Ok),
        Op::new(2, "/jepsen/set", Kind::Add, Some(2), None, 0, Some(10 * MS), Outcome::Ok),
        read,
    ]);
    let checked = check_workload(Workload::Set, &ops, Options::default());
    assert!(!checked.valid());
    assert_eq!(implicated(&checked, &ops).ops.into_iter().collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn the_timeline_outlines_the_violation_and_shades_faults() {
    let ops = stale_read();
    let checked = check_workload(Workload::Register, &ops, Options::default());
    let spans = fault_spans(&[ev(0.015, "partition 1 | 2 3"), ev(0.035, "heal")], 1.0);
    let page = timeline::html("register-corral", &ops, &spans, &implicated(&checked, &ops));
    // The stuck read (p3, lane 2, 40..50 ms) is drawn in the violation's path, not its outcome's.
    assert!(page.contains("<path class=\"violation\" d=\"M40 2.15h10v0.7h-10z\"/>"), "{page}");
    assert!(page.contains("ops #2)"), "{page}");
    assert!(!page.contains("M40 2.15h10v0.7h-10zM"));
    // Its details are in the table the pointer reads.
    assert!(page.contains("\"#2 p3 r0 read -> 1 Ok [0.040s .. 0.050s]\""), "{page}");
    // The partition, 15..35 ms, across every lane, labelled.
    assert!(page.contains("<rect class=\"fault\" x=\"15\" y=\"0\" width=\"20\" height=\"4\"><title>partition 1 | 2 3</title></rect>"), "{page}");
    assert!(page.contains("class=\"flabel\""));
    assert!(page.contains("INVALID"));
    // Self-contained: nothing fetched.
    assert_eq!(page.matches("http").count(), page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());
    assert!(!page.contains("<script src") && !page.contains("<link"));
}

#[test]
fn values_from_the_history_are_escaped() {
    let mut ops = stale_read();
    for o in &mut ops {
        o.key = "<script>alert(1)</script>&".into();
    }
    ops[3].error = Some("\"quoted\" </script>".into());
    let checked = check_workload(Workload::Register, &ops, Options::default());
    let spans = [FaultSpan { from_s: 0.0, to_s: 0.01, what: "<b>".into() }];
    let page = timeline::html("t<i>", &ops, &spans, &implicated(&checked, &ops));
    assert!(!page.contains("<script>alert") && !page.contains("</script>&") && !page.contains("<b>") && !page.contains("<i>"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;"), "the explanation, escaped");
    assert!(page.contains("\\u003cscript>alert(1)\\u003c/script>&"), "the table, unable to close the script");
    assert_eq!(page.matches("</script>").count(), 1);
    for svg in [plot::latency("t<i>", &ops, &spans), plot::rate("t<i>", &ops, &spans)] {
        assert!(!svg.contains("<i>") && !svg.contains("<b>") && svg.contains("t&lt;i&gt;"), "{svg}");
    }
}

#[test]
fn the_plots_draw_each_kind_and_outcome_and_shade_faults() {
    let mut ops = stale_read();
    ops.push(Op::new(5, "r0", Kind::Cas, Some(3), Some(9), 12 * MS, Some(14 * MS), Outcome::Fail));
    ops.push(Op::new(6, "r0", Kind::Write, Some(4), None, 15 * MS, None, Outcome::Info));
    let ops = numbered(ops);
    let spans = [FaultSpan { from_s: 0.0, to_s: 0.025, what: "kill -9 member 1".into() }];
    let lat = plot::latency("x", &ops, &spans);
    assert!(lat.contains("class=\"read-ok\"") && lat.contains("class=\"write-ok\"") && lat.contains("class=\"cas-fail\""), "{lat}");
    assert!(lat.contains("1 ops never answered are not drawn"), "{lat}");
    // A 10 ms op on a 1..10 ms scale is at the top of the plot area.
    assert!(lat.contains("h0") && lat.contains("<title>kill -9 member 1</title>"), "{lat}");
    let rate = plot::rate("x", &ops, &spans);
    assert!(rate.contains("class=\"read\"") && rate.contains("class=\"write\"") && rate.contains("read (2)") && rate.contains("write (2)"), "{rate}");
    assert!(rate.contains("<title>kill -9 member 1</title>"), "{rate}");
}

#[test]
fn a_100k_op_timeline_stays_a_few_megabytes() {
    let ops = crate::check::gen::linearizable_history(100_000, 5, 10, 1);
    let page = timeline::html("big", &ops, &[], &Highlight::default());
    let lat = plot::latency("big", &ops, &[]);
    eprintln!("100k ops: timeline.html {} bytes, latency.svg {} bytes", page.len(), lat.len());
    assert!(page.len() < 16_000_000 && lat.len() < 3_000_000);
}
