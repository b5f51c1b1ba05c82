//! A test run: start the cluster, run the workload's workers and the
//! nemesis side by side for the time asked, end every fault, check the
//! history and store it all under `store/<test>/<time>/`.

use crate::check::history::{Kind, Op, Outcome};
use crate::check::{self, Options, Report};
use crate::cluster::{self, Cluster, Fault, Target};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zookeeper_client as zk;

#[derive(Debug, Clone)]
pub struct TestConfig {
    pub workload: String,
    pub nemesis: Vec<Fault>,
    pub time: Duration,
    pub nodes: usize,
    pub concurrency: usize,
    pub linearizable_reads: bool,
    pub target: Target,
    pub bug: Option<String>,
    pub seed: u64,
    pub keys: usize,
    pub store: PathBuf,
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
            self.workload,
            self.time.as_secs(),
            self.nodes,
            self.concurrency,
            if self.linearizable_reads { "linearizable" } else { "sequential" },
            serde_json::to_value(self.target).unwrap().as_str().unwrap(),
            self.seed
        );
        if let Some(b) = &self.bug {
            c += &format!(" --bug {b}");
        }
        c
    }

    fn name(&self) -> String {
        let mut n = format!("{}-{}", self.workload, serde_json::to_value(self.target).unwrap().as_str().unwrap());
        if let Some(b) = &self.bug {
            n += &format!("-bug-{b}");
        }
        n
    }
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub valid: bool,
    pub command: String,
    pub dir: PathBuf,
    pub ops: Counts,
    pub nemesis: Vec<cluster::Event>,
    pub check: Report,
    pub check_ms: u128,
}

#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub total: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

/// How long one operation may take before it counts as indeterminate.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// The process id of the setup writes (before any worker starts).
pub const SETUP_PROCESS: u64 = 1_000_000;

struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    fn push(&self, mut op: Op) {
        let mut ops = self.ops.lock().unwrap();
        op.index = ops.len();
        ops.push(op);
    }
}

fn parse(data: &[u8]) -> Option<i64> {
    std::str::from_utf8(data).ok()?.trim().parse().ok()
}

fn error_name(e: &zk::Error) -> String {
    format!("{e:?}")
}

/// Whether the client is of no more use (its session is gone).
fn fatal(e: &zk::Error) -> bool {
    matches!(e, zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed)
}

async fn connect(host: &str) -> Option<zk::Client> {
    let c = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .with_connection_timeout(Duration::from_secs(1))
        .with_fail_eagerly()
        .connect(host);
    tokio::time::timeout(Duration::from_secs(3), c).await.ok()?.ok()
}

/// One worker, bound to one member as real deployments bind clients to a
/// server: reads, writes and CAS (a read, then setData with the version it
/// saw) on random keys until `deadline` (readers: reads only). After an indeterminate op it goes
/// on as a new process, since the old op may still be in flight.
#[allow(clippy::too_many_arguments)]
async fn worker(w: usize, workers: usize, members: usize, member: usize, host: String, keys: usize, seed: u64, deadline: Instant, rec: Arc<Recorder>, next_value: Arc<AtomicI64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x9e37_79b9 * (w as u64 + 1)));
    let mut process = w as u64;
    let mut client: Option<zk::Client> = None;
    let member_id = Some(member as u32 + 1);
    // Every other worker of a member only reads, as many clients of a
    // coordination service do. Such a session never waits behind a write of
    // its own, which on a member cut off from the majority would hold its
    // reads back (ZooKeeper's per-session order) and hide what they see.
    let reader = (w / members) % 2 == 1;
    while Instant::now() < deadline {
        let Some(c) = client.as_ref() else {
            client = connect(&host).await;
            if client.is_none() {
                // Back off: the member is down, paused or cut off.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let session = Some(format!("{:#x}", c.session_id().0));
        let key = format!("r{}", rng.gen_range(0..keys));
        let path = format!("/jepsen/{key}");
        let op = |f, value, expected, invoke| Op { index: 0, process, member: member_id, session: session.clone(), key: key.clone(), f, value, expected, values: None, invoke_ns: invoke, complete_ns: None, outcome: Outcome::Info, error: None };
        let roll = if reader { 0 } else { rng.gen_range(0..4) };
        // Every CAS starts with a read, recorded as one; a plain write does not read.
        let seen = if roll == 2 {
            None
        } else {
            let mut read = op(Kind::Read, None, None, rec.now());
            let got = tokio::time::timeout(OP_TIMEOUT, c.get_data(&path)).await;
            read.complete_ns = Some(rec.now());
            let seen = match got {
                Ok(Ok((data, stat))) => {
                    read.outcome = Outcome::Ok;
                    read.value = parse(&data);
                    Some((read.value, stat.version))
                }
                Ok(Err(e)) => {
                    read.outcome = Outcome::Fail;
                    read.error = Some(error_name(&e));
                    if fatal(&e) {
                        client = None;
                    }
                    None
                }
                Err(_) => {
                    read.outcome = Outcome::Fail;
                    read.error = Some("timeout".into());
                    None
                }
            };
            rec.push(read);
            seen
        };
        if roll < 2 || (roll == 3 && seen.is_none()) {
            continue;
        }
        let Some(c) = client.as_ref() else { continue };
        let value = next_value.fetch_add(1, Ordering::Relaxed);
        let (f, expected, version) = match (roll, seen) {
            (3, Some((v, version))) => (Kind::Cas, v, Some(version)),
            _ => (Kind::Write, None, None),
        };
        let mut o = op(f, Some(value), expected, rec.now());
        let r = tokio::time::timeout(OP_TIMEOUT, c.set_data(&path, value.to_string().as_bytes(), version)).await;
        match r {
            Ok(Ok(_)) => {
                o.outcome = Outcome::Ok;
                o.complete_ns = Some(rec.now());
            }
            Ok(Err(zk::Error::BadVersion)) if f == Kind::Cas => {
                o.outcome = Outcome::Fail;
                o.complete_ns = Some(rec.now());
                o.error = Some("BadVersion".into());
            }
            Ok(Err(e)) => {
                // Anything else may or may not have been applied (a
                // connection lost after the request went out).
                o.error = Some(error_name(&e));
                if fatal(&e) {
                    client = None;
                }
                process += workers as u64;
            }
            Err(_) => {
                o.error = Some("timeout".into());
                process += workers as u64;
            }
        }
        rec.push(o);
    }
}

/// Creates the keys with value 0, recorded as writes of the setup process.
async fn setup(hosts: &str, keys: usize, rec: &Recorder) -> Result<(), String> {
    let c = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .with_connection_timeout(Duration::from_secs(5))
        .connect(hosts)
        .await
        .map_err(|e| format!("setup: connect to {hosts}: {e}"))?;
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    c.create("/jepsen", b"", &opts).await.map_err(|e| format!("setup: create /jepsen: {e}"))?;
    for k in 0..keys {
        let invoke = rec.now();
        c.create(&format!("/jepsen/r{k}"), b"0", &opts).await.map_err(|e| format!("setup: create /jepsen/r{k}: {e}"))?;
        rec.push(Op::new(SETUP_PROCESS, &format!("r{k}"), Kind::Write, Some(0), None, invoke, Some(rec.now()), Outcome::Ok));
    }
    Ok(())
}

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

/// Checks a history and writes it with its results into `dir`.
pub fn check_and_store(ops: &[Op], opts: Options, dir: &Path) -> Result<(Report, u128), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let file = std::fs::File::create(dir.join("history.jsonl")).map_err(|e| format!("write history: {e}"))?;
    check::history::write_jsonl(ops, std::io::BufWriter::new(file)).map_err(|e| format!("write history: {e}"))?;
    let t = Instant::now();
    let report = check::check(ops, opts);
    Ok((report, t.elapsed().as_millis()))
}

/// Runs a test; `Err` is a harness error (exit 2), not a verdict.
pub fn run(cfg: &TestConfig) -> Result<Results, String> {
    if cfg.workload != "register" {
        return Err(format!("unknown workload {:?} (only register so far)", cfg.workload));
    }
    println!("rerun: {}", cfg.command());
    let dir = cfg.store.join(cfg.name()).join(utc_stamp());
    let mut extra = String::new();
    if cfg.linearizable_reads && cfg.target == Target::Corral {
        extra += "readConsistency=linearizable\n";
    }
    let mut cluster = Cluster::start(cfg.target, cfg.nodes, &extra, cfg.bug.as_deref())?;
    let hosts: Vec<String> = (0..cluster.len()).map(|i| cluster.host(i)).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| e.to_string())?;
    let rec = Arc::new(Recorder { start: Instant::now(), ops: Mutex::new(Vec::new()) });
    rt.block_on(setup(&hosts.join(","), cfg.keys, &rec))?;

    let deadline = Instant::now() + cfg.time;
    let next_value = Arc::new(AtomicI64::new(1));
    let tasks: Vec<_> = (0..cfg.concurrency)
        .map(|w| {
            let member = w % hosts.len();
            rt.spawn(worker(w, cfg.concurrency, hosts.len(), member, hosts[member].clone(), cfg.keys, cfg.seed, deadline, rec.clone(), next_value.clone()))
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
    drop(rt);
    drop(cluster);

    let ops = std::mem::take(&mut *rec.ops.lock().unwrap());
    let opts = Options { reads: cfg.linearizable_reads };
    let (report, check_ms) = check_and_store(&ops, opts, &dir)?;
    let mut counts = Counts { total: ops.len(), ..Default::default() };
    for o in &ops {
        match o.outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Fail => counts.fail += 1,
            Outcome::Info => counts.info += 1,
        }
    }
    let results = Results { valid: report.valid, command: cfg.command(), dir: dir.clone(), ops: counts, nemesis: events, check: report, check_ms };
    let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("results.json"), json).map_err(|e| format!("write results: {e}"))?;
    Ok(results)
}
