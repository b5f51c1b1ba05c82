//! The simulated clients' register ops, recorded in the shared history
//! format and judged by the checkers the Jepsen harness uses
//! (`corral-check`): a clean run's history passes them, the same seed
//! records the same history, and a planted bug is caught by them alone.

use corral_check::history::{Kind, Outcome};
use corral_check::Options;
use corral_sim::client::REGISTERS;
use corral_sim::{run, Bug, SimConfig};

#[test]
fn clean_runs_record_histories_the_shared_checker_accepts() {
    let (mut ops, mut reads, mut writes, mut creates, mut unknown) = (0, 0, 0, 0, 0);
    for linearizable in [true, false] {
        let cfg = SimConfig { linearizable: Some(linearizable), ..SimConfig::default() };
        for seed in 1000..1010 {
            let r = run(seed, &cfg);
            assert!(r.violation.is_none() && r.history_violation.is_none(), "seed {seed}: {:?}", r.violation.map(|v| v.message));
            // The verdict is the shared checker's own, run here on the recorded history.
            let verdict = corral_check::check(&r.history, Options { reads: linearizable });
            assert!(verdict.valid && verdict.undecided.is_empty(), "seed {seed}: {:?}", verdict.explain());
            assert!(corral_check::read_model::check(&r.history).is_none(), "seed {seed}: FIFO client order");
            assert!(r.history.iter().all(|o| REGISTERS.contains(&o.key.as_str()) && o.session.is_some()));
            assert!(r.history.windows(2).all(|w| w[0].invoke_ns < w[1].invoke_ns || w[0].invoke_ns == w[1].invoke_ns && w[0].index + 1 == w[1].index), "invocations in time order");
            ops += r.history.len();
            reads += r.history.iter().filter(|o| o.f == Kind::Read && o.outcome == Outcome::Ok && o.value.is_some()).count();
            writes += r.history.iter().filter(|o| o.f == Kind::Write && o.outcome == Outcome::Ok).count();
            creates += r.history.iter().filter(|o| o.f == Kind::Cas && o.outcome != Outcome::Info).count();
            unknown += r.history.iter().filter(|o| o.outcome == Outcome::Info).count();
        }
    }
    // 20 runs; about 200 register ops a run.
    assert!(ops > 2000 && reads > 200 && writes > 200 && creates > 100 && unknown > 20, "ops {ops}, reads {reads}, writes {writes}, creates {creates}, unknown {unknown}");
}

#[test]
fn a_seed_records_the_same_history() {
    let cfg = SimConfig::default();
    let (a, b) = (run(40, &cfg), run(40, &cfg));
    assert!(a.history.len() > 200, "{} ops", a.history.len());
    assert_eq!(a.history, b.history);
}

#[test]
fn a_stale_read_is_caught_by_the_shared_checker_alone() {
    // `stale-read` answers a read at once, ahead of its session's pending
    // writes. With the simulator's own checks only noting what they see,
    // the run goes on and the shared checker must find it in the history.
    let cfg = SimConfig { bug: Some(Bug::StaleRead), linearizable: Some(true), own_checks: false, ..SimConfig::default() };
    let caught = (1..=10).map(|seed| run(seed, &cfg)).find(|r| r.violation.is_some()).expect("stale-read went unnoticed by the shared checker for 10 seeds");
    let v = caught.violation.as_ref().unwrap();
    assert!(v.message.starts_with("shared checker (corral-check"), "seed {}: {}", caught.seed, v.message);
    assert_eq!(caught.history_violation.as_deref(), Some(v.message.as_str()));
    assert!(caught.own_violation.is_some(), "the simulator's own checks see it too");
    // The checkers themselves, on the recorded history: a read that does
    // not linearize, or one that overtook its session's own write.
    let verdict = corral_check::check(&caught.history, Options { reads: true });
    let fifo = corral_check::read_model::check(&caught.history);
    let explanation = verdict.explain().or(fifo.as_ref().map(|f| f.explain())).unwrap_or_else(|| panic!("seed {}: the shared checker accepts the history", caught.seed));
    let key = verdict.violation.as_ref().map(|v| &v.key).or(fifo.as_ref().map(|f| &f.key)).unwrap();
    assert!(REGISTERS.contains(&key.as_str()));
    assert!(v.message.contains(&explanation), "the report shows the checker's explanation");
    println!("seed {}: {} ops, {explanation}", caught.seed, caught.history.len());
}
