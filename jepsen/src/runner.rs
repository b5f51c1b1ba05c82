//! A test run: start the cluster, set up the workload's nodes, run its
//! workers (`workload`) and the nemesis side by side for the time asked,
//! end every fault, make the workload's final read, check the history
//! (`check`) and store it all under `store/<test>/<time>/`.

use crate::check::history::{Op, Outcome};
use crate::check::{self, Checked, Options, Workload};
use crate::cluster::{self, Cluster, Fault, Target};
use crate::netns::Net;
use crate::report;
use crate::workload::{self, Ctx, Recorder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TestConfig {
    pub workload: Workload,
    pub nemesis: Vec<Fault>,
    pub time: Duration,
    pub nodes: usize,
    pub concurrency: usize,
    /// Ops per second invoked across all workers (`None`: flat out).
    pub rate: Option<f64>,
    pub linearizable_reads: bool,
    pub target: Target,
    pub bug: Option<String>,
    pub seed: u64,
    pub keys: usize,
    pub store: PathBuf,
    /// How the members are networked; `None`: namespaces where they work,
    /// else proxies (`Net::choose`).
    pub net: Option<Net>,
}

impl TestConfig {
    /// The command that reruns this test (the same schedule of faults and
    /// choice of ops; the interleaving with the servers is up to the OS).
    pub fn command(&self) -> String {
        let nemesis = if self.nemesis.is_empty() {
            "none".to_string()
        } else {
            self.nemesis.iter().map(|f| serde_json::to_value(f).unwrap().as_str().unwrap().to_owned()).collect::<Vec<_>>().join(",")
        };
        let mut c = format!(
            "corral-jepsen test --workload {} --nemesis {nemesis} --time {} --nodes {} --concurrency {} --read-consistency {} --target {} --seed {}",
            self.workload.name(),
            self.time.as_secs(),
            self.nodes,
            self.concurrency,
            if self.linearizable_reads { "linearizable" } else { "sequential" },
            serde_json::to_value(self.target).unwrap().as_str().unwrap(),
            self.seed
        );
        if let Some(r) = self.rate {
            c += &format!(" --rate {r}");
        }
        if let Some(b) = &self.bug {
            c += &format!(" --bug {b}");
        }
        if let Some(n) = self.net {
            c += &format!(" --net {}", n.name());
        }
        c
    }

    fn name(&self) -> String {
        let mut n = format!("{}-{}", self.workload.name(), serde_json::to_value(self.target).unwrap().as_str().unwrap());
        if let Some(b) = &self.bug {
            n += &format!("-bug-{b}");
        }
        n
    }
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub valid: bool,
    pub workload: Workload,
    pub command: String,
    pub dir: PathBuf,
    /// How the members were networked: `netns` or `proxy`.
    pub net: Net,
    pub ops: Counts,
    pub nemesis: Vec<cluster::Event>,
    pub check: Checked,
    pub check_ms: u128,
    /// Members that exited on their own (not by the nemesis), and why: the
    /// run is invalid whatever the history shows.
    pub crashed: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub total: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

/// The process id of the setup writes (before any worker starts).
pub use crate::check::history::SETUP_PROCESS;

fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Writes a history into `dir` (created if need be) as `history.jsonl`.
fn store_history(ops: &[Op], dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let file = std::fs::File::create(dir.join("history.jsonl")).map_err(|e| format!("write history: {e}"))?;
    check::history::write_jsonl(ops, std::io::BufWriter::new(file)).map_err(|e| format!("write history: {e}"))
}

/// A report's title: the run's test and time (the store's last two levels).
pub fn title(dir: &Path) -> String {
    let parts: Vec<String> = dir.components().rev().take(2).map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join(" ")
}

/// Checks a history as `workload`'s and writes it into `dir`.
pub fn check_and_store(workload: Workload, ops: &[Op], opts: Options, dir: &Path) -> Result<(Checked, u128), String> {
    store_history(ops, dir)?;
    let t = Instant::now();
    let report = check::check_workload(workload, ops, opts);
    Ok((report, t.elapsed().as_millis()))
}

/// Runs a test; `Err` is a harness error (exit 2), not a verdict.
pub fn run(cfg: &TestConfig) -> Result<Results, String> {
    // The network is settled first, so that the rerun command names it.
    let net = Net::choose(cfg.net)?;
    let cfg = &TestConfig { net: Some(net), ..cfg.clone() };
    println!("rerun: {}", cfg.command());
    if cfg.nemesis.contains(&Fault::PartitionOneway) && net != Net::Netns {
        return Err(cluster::NO_ONEWAY.into());
    }
    let dir = cfg.store.join(cfg.name()).join(utc_stamp());
    let mut extra = String::new();
    if cfg.linearizable_reads && cfg.target == Target::Corral {
        extra += "readConsistency=linearizable\n";
    }
    let mut cluster = Cluster::start_on(net, cfg.target, cfg.nodes, &extra, cfg.bug.as_deref())?;
    match cluster.netns() {
        Some(ns) => {
            let (names, links) = ns.names();
            println!("net: netns (namespaces {}, root veth {}, {} bridged; partitions drop packets with iptables)", names.join(" "), links.join(" "), ns.subnet());
        }
        None => println!("net: proxy (loopback, every link between members through a proxy)"),
    }
    if cfg.nemesis.iter().any(|f| f.loses_unsynced()) {
        cluster.on_lazyfs()?;
    }
    let hosts: Vec<String> = (0..cluster.len()).map(|i| cluster.host(i)).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| e.to_string())?;
    let rec = Arc::new(Recorder::new());
    rt.block_on(workload::setup(cfg.workload, &hosts.join(","), cfg.keys, &rec))?;

    let deadline = Instant::now() + cfg.time;
    let next = Arc::new(AtomicI64::new(1));
    let tasks: Vec<_> = (0..cfg.concurrency)
        .map(|w| {
            let member = w % hosts.len();
            // Each worker takes its share of the rate: one op every
            // workers / rate seconds.
            let pace = cfg.rate.map(|r| Duration::from_secs_f64(cfg.concurrency as f64 / r));
            let ctx = Ctx { id: w, workers: cfg.concurrency, members: hosts.len(), member, host: hosts[member].clone(), seed: cfg.seed, deadline, rec: rec.clone(), next: next.clone(), pace: Arc::new(workload::Pace::new(pace)) };
            rt.spawn(workload::worker(cfg.workload, ctx, cfg.keys))
        })
        .collect();
    let (faults, seed, start) = (cfg.nemesis.clone(), cfg.seed, rec.start);
    let nemesis = std::thread::spawn(move || {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let events = cluster::run_nemesis(&mut cluster, &faults, cluster::Schedule::default(), &mut rng, start, deadline);
        (cluster, events)
    });
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
    let (cluster, events) = nemesis.join().map_err(|_| "the nemesis panicked".to_string())?;
    let events = events?;
    // Every fault is undone: the final read, if the workload has one.
    let final_read = rt.block_on(workload::final_read(cfg.workload, &hosts, &rec));
    drop(rt);
    drop(cluster);

    let ops = std::mem::take(&mut *rec.ops.lock().unwrap());
    let opts = Options { reads: cfg.linearizable_reads };
    if let Err(e) = &final_read {
        // Nothing to check the history against, unless what came before
        // the final read already proves a violation; keep it for a look.
        let proven = check::check_workload(cfg.workload, &ops, opts).proven_without_final_read();
        if !proven {
            store_history(&ops, &dir)?;
            return Err(format!("{e} (the history is in {})", dir.display()));
        }
        eprintln!("the final read failed ({e}), but the ops before it already show a violation");
    }
    let (report, check_ms) = check_and_store(cfg.workload, &ops, opts, &dir)?;
    let mut counts = Counts { total: ops.len(), ..Default::default() };
    for o in &ops {
        match o.outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Fail => counts.fail += 1,
            Outcome::Info => counts.info += 1,
        }
    }
    let crashed: Vec<String> = events.iter().filter(|e| e.what.contains(cluster::EXITED_ON_ITS_OWN)).map(|e| e.what.clone()).collect();
    let results = Results { valid: report.valid() && crashed.is_empty(), crashed, workload: cfg.workload, command: cfg.command(), dir: dir.clone(), net, ops: counts, nemesis: events, check: report, check_ms };
    let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("results.json"), json).map_err(|e| format!("write results: {e}"))?;
    // The reports are for reading the verdict, not part of it: a failure to
    // write them is said, and the run's outcome stands.
    if let Err(e) = report::write(&dir, &title(&dir), &ops, &results.nemesis, &results.check) {
        eprintln!("no report: {e}");
    }
    Ok(results)
}
