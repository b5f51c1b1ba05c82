//! `corral-sim`: runs seeds of the deterministic simulation.
//!
//! ```text
//! corral-sim run [--seeds N] [--seed S] [--start S] [--nodes 3|5] [--clients C] [--bug B] [--minutes M] [--trace LINES]
//! ```
//! Exit 0 when every seed passes, 1 when a violation is found, 2 on a usage error.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use corral_sim::{run, Bug, SimConfig};

fn usage() -> ExitCode {
    eprintln!("usage: corral-sim run [--seeds N | --seed S] [--start S] [--nodes 3|5] [--clients C] [--bug lost-ack|stale-read|overlay-skip|expire-on-follower|split-brain] [--minutes M] [--trace LINES]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("run") {
        return usage();
    }
    let mut cfg = SimConfig::default();
    let (mut seeds, mut start, mut single, mut minutes) = (100u64, 1u64, None, None);
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else { return usage() };
        let num = |v: &str| v.parse::<u64>().map_err(|_| eprintln!("{flag}: not a number: {v}"));
        let parsed = match flag.as_str() {
            "--seeds" => num(value).map(|n| seeds = n),
            "--seed" => num(value).map(|n| single = Some(n)),
            "--start" => num(value).map(|n| start = n),
            "--nodes" => num(value).map(|n| cfg.nodes = n as usize),
            "--clients" => num(value).map(|n| cfg.clients = n as usize),
            "--minutes" => num(value).map(|n| minutes = Some(n)),
            "--trace" => num(value).map(|n| cfg.trace_lines = n as usize),
            "--bug" => value.parse::<Bug>().map(|b| cfg.bug = Some(b)).map_err(|e| eprintln!("{e}")),
            _ => return usage(),
        };
        if parsed.is_err() {
            return usage();
        }
    }
    if !(1..=7).contains(&cfg.nodes) {
        eprintln!("--nodes must be between 1 and 7");
        return usage();
    }
    let started = Instant::now();
    let deadline = minutes.map(|m| started + Duration::from_secs(m * 60));
    let (mut ran, mut ops, mut sim_ms) = (0u64, 0u64, 0i64);
    let mut seed = single.unwrap_or(start);
    loop {
        let report = run(seed, &cfg);
        ran += 1;
        ops += report.ops_ok;
        sim_ms += report.sim_ms;
        if let Some(v) = &report.violation {
            println!("seed {seed}: VIOLATION at {} ms: {}", v.at_ms, v.message);
            println!("last events:");
            for line in &v.trace {
                println!("  {line}");
            }
            let bug = cfg.bug.map(|b| format!(" --bug {b}")).unwrap_or_default();
            println!("replay: cargo run --release -p corral-sim -- run --seed {seed} --nodes {}{bug}", cfg.nodes);
            summary(ran, ops, sim_ms, started);
            return ExitCode::from(1);
        }
        if single.is_some() {
            println!("seed {seed}: ok ({} events, {} ops, {} reads checked, {} register ops checked by corral-check, {} watches checked, {} expiries, {} crashes, {} wipes, {} partitions, {} leaders, trace {:016x})", report.events, report.ops_ok, report.reads_checked, report.history.len(), report.watches_checked, report.expiries, report.crashes, report.wipes, report.partitions, report.leaders, report.trace_hash);
            break;
        }
        seed += 1;
        let more = match deadline {
            Some(d) => Instant::now() < d,
            None => ran < seeds,
        };
        if !more {
            break;
        }
    }
    summary(ran, ops, sim_ms, started);
    ExitCode::SUCCESS
}

fn summary(ran: u64, ops: u64, sim_ms: i64, started: Instant) {
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{ran} seeds in {secs:.1} s: {:.1} seeds/s, {:.0} simulated client ops/s, {:.0}x real time",
        ran as f64 / secs,
        ops as f64 / secs,
        sim_ms as f64 / 1000.0 / secs
    );
}
