//! Corral against Apache ZooKeeper 3.8, both as a 3-member ensemble and
//! standalone, on this machine, same client, same load, same run:
//!
//! ```sh
//! cargo build --release -p corral
//! cargo bench -p corral-tests --bench ensemble_versus_zookeeper
//! ```
//!
//! Load: the stock Rust client (`zookeeper-client`), 16 sessions with 8
//! requests in flight each; session `i` is connected to member `i mod 3`,
//! the even spread a 3-host connect string gives on average. Workloads:
//! setData (100-byte values, one node per session; throughput, p50 and p99
//! latency), create+delete (each create and each delete counts as one
//! operation) and getData, on the ensembles; setData and getData
//! standalone. Both targets stay up during a phase and the runs alternate
//! (Corral first in even rounds, ZooKeeper first in odd ones); each figure
//! is the median of the rounds. ZooKeeper's JVM is warmed by an unmeasured
//! run of every workload (`BENCH_WARMUP_SECS`, default 10) before the first
//! round (Corral gets the same).
//!
//! Failover, per round and target, on a fresh ensemble with a light write
//! load: kill -9 of the leader (found by `srvr` Mode), then
//! - *probe*: a fresh session opened every 10 ms to one of the surviving
//!   members in turn, each trying one setData; the time to the first
//!   success is the servers' own failover time (election, sync, first
//!   commit), free of any client's reconnect backoff;
//! - *session*: a session opened earlier with the 3-host connect string
//!   retries its setData until one succeeds: what an application sees,
//!   including the client's reconnect delays.
//!
//! Settings: `BENCH_ROUNDS` (default 3), `BENCH_SECS` per measured run
//! (default 3), `BENCH_WARMUP_SECS`, `BENCH_ONLY` = a comma list of `ensemble`, `standalone`,
//! `failover` (default all). Corral is `$CORRAL_BIN`, else the release
//! binary in the target directory (a debug build would measure the
//! compiler, not the server).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_tests::zookeeper::{ZooKeeper, ZooKeeperEnsemble};
use corral_tests::{persistent, Corral, Ensemble};
use zookeeper_client as zk;

const SESSIONS: usize = 16;
const IN_FLIGHT_PER_SESSION: usize = 8;
const VALUE_BYTES: usize = 100;
/// Session timeout asked for; both targets cap it at 20 × tickTime (4 s).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a failover may take before the round is declared failed.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// Interval between failover probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Corral,
    ZooKeeper,
}

#[derive(Clone, Copy, Debug)]
enum Workload {
    SetData,
    CreateDelete,
    GetData,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::SetData => "setData",
            Workload::CreateDelete => "create+delete",
            Workload::GetData => "getData",
        }
    }
}

/// One measured run: operations completed, wall time, and every
/// operation's latency in microseconds.
struct Run {
    ops: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Run {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies, in milliseconds.
    fn latency_ms(&mut self, q: f64) -> f64 {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        assert!(n > 0, "a run without operations");
        let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        self.latencies_us[i] as f64 / 1000.0
    }
}

async fn connect(hosts: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .with_connection_timeout(Duration::from_secs(10))
        .connect(hosts)
        .await
        .unwrap_or_else(|e| panic!("connect to {hosts}: {e}"))
}

/// `SESSIONS` sessions, session `i` on `members[i % members.len()]`.
async fn sessions(members: &[String]) -> Vec<zk::Client> {
    let mut v = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        v.push(connect(&members[i % members.len()]).await);
    }
    v
}

/// Runs `workload` for `secs` from every session with
/// `IN_FLIGHT_PER_SESSION` requests in flight each, under a fresh `root`.
async fn run(clients: &[zk::Client], workload: Workload, root: &str, secs: Duration) -> Run {
    let value = vec![b'v'; VALUE_BYTES];
    clients[0].create(root, &value, &persistent()).await.unwrap_or_else(|e| panic!("create {root}: {e}"));
    for s in 0..clients.len() {
        clients[0].create(&format!("{root}/s{s}"), &value, &persistent()).await.unwrap();
    }
    // Every follower has the nodes before the clock starts.
    for c in clients {
        c.sync(root).await.unwrap();
    }
    let start = Instant::now();
    let end = start + secs;
    let mut tasks = Vec::new();
    for (s, client) in clients.iter().enumerate() {
        for k in 0..IN_FLIGHT_PER_SESSION {
            let (client, value) = (client.clone(), value.clone());
            let node = format!("{root}/s{s}");
            tasks.push(tokio::spawn(async move {
                let mut latencies_us = Vec::with_capacity(64 * 1024);
                let mut i = 0u64;
                while Instant::now() < end {
                    match workload {
                        Workload::SetData => {
                            let t = Instant::now();
                            client.set_data(&node, &value, None).await.unwrap();
                            latencies_us.push(t.elapsed().as_micros() as u32);
                        }
                        Workload::GetData => {
                            let t = Instant::now();
                            client.get_data(&node).await.unwrap();
                            latencies_us.push(t.elapsed().as_micros() as u32);
                        }
                        Workload::CreateDelete => {
                            let path = format!("{node}/k{k}-{i}");
                            let t = Instant::now();
                            client.create(&path, &value, &persistent()).await.unwrap();
                            latencies_us.push(t.elapsed().as_micros() as u32);
                            let t = Instant::now();
                            client.delete(&path, None).await.unwrap();
                            latencies_us.push(t.elapsed().as_micros() as u32);
                        }
                    }
                    i += 1;
                }
                latencies_us
            }));
        }
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.expect("load task"));
    }
    let elapsed = start.elapsed();
    Run { ops: latencies_us.len() as u64, elapsed, latencies_us }
}

/// Medians over rounds of (ops/s, p50 ms, p99 ms).
#[derive(Default)]
struct Figures {
    ops_per_s: Vec<f64>,
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    assert!(n > 0, "median of nothing");
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The result table: one row per figure, Corral and ZooKeeper medians.
#[derive(Default)]
struct Table {
    rows: Vec<(String, f64, f64, &'static str)>,
}

impl Table {
    fn add(&mut self, name: String, corral: &[f64], zookeeper: &[f64], unit: &'static str) {
        self.rows.push((name, median(corral), median(zookeeper), unit));
    }

    fn print(&self, rounds: usize) {
        println!();
        println!("medians of {rounds} rounds; ratio = Corral / ZooKeeper");
        println!("{:<40} {:>12} {:>12} {:>8}", "figure", "corral", "zookeeper", "ratio");
        for (name, c, z, unit) in &self.rows {
            let label = format!("{name} ({unit})");
            println!("{label:<40} {c:>12.1} {z:>12.1} {:>8.2}", c / z);
        }
    }
}

struct Settings {
    rounds: usize,
    run_secs: Duration,
    warmup_secs: Duration,
    only: Vec<String>,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |k: &str, d: u64| std::env::var(k).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{k}: not a number: {v}"))).unwrap_or(d);
        let only = std::env::var("BENCH_ONLY").unwrap_or_else(|_| "ensemble,standalone,failover".into());
        Settings {
            rounds: num("BENCH_ROUNDS", 3) as usize,
            run_secs: Duration::from_secs(num("BENCH_SECS", 3)),
            warmup_secs: Duration::from_secs(num("BENCH_WARMUP_SECS", 10)),
            only: only.split(',').map(|s| s.trim().to_owned()).collect(),
        }
    }

    fn wants(&self, phase: &str) -> bool {
        self.only.iter().any(|p| p == phase)
    }
}

/// Throughput of `workloads` against both targets, given as the client
/// addresses of their members; adds rows named `label workload`.
async fn throughput(label: &str, corral: &[String], zookeeper: &[String], workloads: &[Workload], s: &Settings, table: &mut Table) {
    let c_clients = sessions(corral).await;
    let z_clients = sessions(zookeeper).await;
    let mut runs = 0usize;
    let mut root = |t: Target, w: Workload| {
        runs += 1;
        format!("/bench-{}-{}-{runs}", if t == Target::Corral { "c" } else { "z" }, w.name().replace('+', "-"))
    };
    // Warm-up: unmeasured runs of each workload on each target, long
    // enough for the JVM's JIT (one 3 s run left ZooKeeper at a third of
    // its speed).
    for &w in workloads {
        for t in [Target::ZooKeeper, Target::Corral] {
            let clients = if t == Target::Corral { &c_clients } else { &z_clients };
            let mut r = run(clients, w, &root(t, w), s.warmup_secs).await;
            println!("  warm-up {label} {:<14} {:<10} {:>9.0} op/s p99 {:>6.1} ms", w.name(), format!("{t:?}"), r.ops_per_s(), r.latency_ms(0.99));
        }
    }
    let mut figures: Vec<[Figures; 2]> = workloads.iter().map(|_| Default::default()).collect();
    for round in 0..s.rounds {
        let order = if round % 2 == 0 { [Target::Corral, Target::ZooKeeper] } else { [Target::ZooKeeper, Target::Corral] };
        for (wi, &w) in workloads.iter().enumerate() {
            for t in order {
                let clients = if t == Target::Corral { &c_clients } else { &z_clients };
                let mut r = run(clients, w, &root(t, w), s.run_secs).await;
                let (p50, p99) = (r.latency_ms(0.5), r.latency_ms(0.99));
                println!("  round {round} {label} {:<14} {:<10} {:>9.0} op/s p50 {p50:>6.2} ms p99 {p99:>6.2} ms", w.name(), format!("{t:?}"), r.ops_per_s());
                let f = &mut figures[wi][(t == Target::ZooKeeper) as usize];
                f.ops_per_s.push(r.ops_per_s());
                f.p50_ms.push(p50);
                f.p99_ms.push(p99);
            }
        }
    }
    for (wi, &w) in workloads.iter().enumerate() {
        let [c, z] = &figures[wi];
        table.add(format!("{label} {}", w.name()), &c.ops_per_s, &z.ops_per_s, "op/s");
        if !matches!(w, Workload::GetData) {
            table.add(format!("{label} {} p50", w.name()), &c.p50_ms, &z.p50_ms, "ms");
            table.add(format!("{label} {} p99", w.name()), &c.p99_ms, &z.p99_ms, "ms");
        }
    }
}

/// What one failover round measured.
struct Failover {
    probe: Duration,
    session: Duration,
}

/// A started ensemble of either target, seen through what the failover
/// measurement needs.
trait Members {
    fn addrs(&self) -> Vec<String>;
    fn leader(&self) -> usize;
    fn kill(&mut self, i: usize);
}

impl Members for Ensemble {
    fn addrs(&self) -> Vec<String> {
        self.members.iter().map(Corral::hosts).collect()
    }
    fn leader(&self) -> usize {
        self.wait_for_leader(Duration::from_secs(30))
    }
    fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }
}

impl Members for ZooKeeperEnsemble {
    fn addrs(&self) -> Vec<String> {
        self.members.iter().map(|m| m.hosts()).collect()
    }
    fn leader(&self) -> usize {
        self.wait_for_leader(Duration::from_secs(30))
    }
    fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }
}

/// One setData through a fresh session on `host`; `Ok` once it is applied.
async fn probe(host: String) -> Result<(), zk::Error> {
    let client = zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .with_connection_timeout(Duration::from_millis(500))
        .connect(&host)
        .await?;
    client.set_data("/failover", b"probe", None).await?;
    Ok(())
}

/// Kills the leader of `ens` under a light write load and measures the
/// time to the first successful write through another member.
async fn failover(ens: &mut dyn Members) -> Failover {
    let addrs = ens.addrs();
    let setup = connect(&addrs[0]).await;
    setup.create("/failover", b"", &persistent()).await.unwrap();
    drop(setup);
    let roaming = connect(&addrs.join(",")).await;
    // A light load (one writer) for a second, so that the kill lands mid-write.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, stop) = (roaming.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = client.set_data("/failover", b"load", None).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await; // the load before the kill
    let leader = ens.leader();
    let survivors: Vec<String> = (0..addrs.len()).filter(|i| *i != leader).map(|i| addrs[i].clone()).collect();
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;

    let killed_at = Instant::now();
    ens.kill(leader);
    // The session: retry until a write issued after the kill succeeds.
    let session = tokio::spawn(async move {
        loop {
            match roaming.set_data("/failover", b"session", None).await {
                Ok(_) => return killed_at.elapsed(),
                Err(zk::Error::ConnectionLoss | zk::Error::Timeout) => {}
                Err(e) => panic!("session write after the kill: {e}"),
            }
            assert!(killed_at.elapsed() < FAILOVER_LIMIT, "no write through the session within {FAILOVER_LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(1)).await; // keeps a refused retry from spinning
        }
    });
    // The probes: a fresh session every PROBE_INTERVAL, alternating survivors.
    let (tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let mut probes = tokio::task::JoinSet::new();
    let mut next = 0usize;
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    let probe_time = loop {
        tokio::select! {
            t = done.recv() => break t.expect("a probe sender is alive"),
            _ = ticker.tick() => {
                assert!(killed_at.elapsed() < FAILOVER_LIMIT, "no write through a probe within {FAILOVER_LIMIT:?}");
                let (host, tx) = (survivors[next % survivors.len()].clone(), tx.clone());
                next += 1;
                probes.spawn(async move {
                    if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), probe(host)).await {
                        let _ = tx.send(killed_at.elapsed());
                    }
                });
            }
        }
    };
    probes.abort_all();
    let session = session.await.expect("session task");
    Failover { probe: probe_time, session }
}

async fn failovers(s: &Settings, table: &mut Table) {
    let mut ms: [[Vec<f64>; 2]; 2] = Default::default(); // [probe, session][corral, zookeeper]
    for round in 0..s.rounds {
        let order = if round % 2 == 0 { [Target::Corral, Target::ZooKeeper] } else { [Target::ZooKeeper, Target::Corral] };
        for t in order {
            let f = match t {
                Target::Corral => failover(&mut Ensemble::start(3, "")).await,
                Target::ZooKeeper => failover(&mut ZooKeeperEnsemble::start(3, "")).await,
            };
            println!("  round {round} failover {:<10} probe {:>6.0} ms  session {:>6.0} ms", format!("{t:?}"), f.probe.as_secs_f64() * 1e3, f.session.as_secs_f64() * 1e3);
            let ti = (t == Target::ZooKeeper) as usize;
            ms[0][ti].push(f.probe.as_secs_f64() * 1e3);
            ms[1][ti].push(f.session.as_secs_f64() * 1e3);
        }
    }
    table.add("failover, first write (fresh session)".into(), &ms[0][0], &ms[0][1], "ms");
    table.add("failover, first write (stock session)".into(), &ms[1][0], &ms[1][1], "ms");
}

fn main() {
    // Before the runtime starts any thread; the helpers read CORRAL_BIN.
    let Some(_bin) = corral_tests::bench_start() else { return };
    let s = Settings::from_env();
    println!("load: {SESSIONS} sessions x {IN_FLIGHT_PER_SESSION} in flight, {VALUE_BYTES}-byte values, {} s per run, {} rounds", s.run_secs.as_secs(), s.rounds);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    rt.block_on(async {
        let mut table = Table::default();
        if s.wants("ensemble") {
            let corral = Ensemble::start(3, "");
            let zookeeper = ZooKeeperEnsemble::start(3, "");
            let c: Vec<String> = corral.members.iter().map(Corral::hosts).collect();
            let z: Vec<String> = zookeeper.members.iter().map(|m| m.hosts()).collect();
            throughput("3-node", &c, &z, &[Workload::SetData, Workload::CreateDelete, Workload::GetData], &s, &mut table).await;
        }
        if s.wants("standalone") {
            let corral = Corral::start();
            let zookeeper = ZooKeeper::start("");
            throughput("standalone", &[corral.hosts()], &[zookeeper.hosts()], &[Workload::SetData, Workload::GetData], &s, &mut table).await;
        }
        if s.wants("failover") {
            failovers(&s, &mut table).await;
        }
        table.print(s.rounds);
    });
}
