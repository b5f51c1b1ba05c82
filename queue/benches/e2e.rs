//! End-to-end queue throughput and latency: P producers and P consumers,
//! each with its own session, put → take → ack, for a fixed time per
//! configuration. Latency is a message's time from its put's invocation to
//! its take's return (the age a consumer sees), p50 and p99.
//!
//!   CORRAL_BIN=target/release/corral cargo bench -p corral-queue --bench e2e
//!
//! Env: CORRAL_QUEUE_E2E_WORKERS (default 1,8,32), CORRAL_QUEUE_E2E_SECS
//! (default 5 per configuration), CORRAL_QUEUE_E2E_BATCH (default 64: the
//! batch size of the batched-put row), CORRAL_QUEUE_E2E_TAKE (default 16:
//! consumers run once with take + ack, once with take_batch of this many +
//! ack_batch, once the same with a linger), CORRAL_QUEUE_E2E_LINGER_MS
//! (default 5: that linger), CORRAL_QUEUE_E2E_ONLY (set: only the two
//! take_batch end-to-end rows; a number: only the row with that linger in
//! ms), CORRAL_QUEUE_TEST_HOSTS / CORRAL_BIN
//! as for the tests (neither: Apache ZooKeeper 3.8 from the Debian
//! packages). Prints a markdown table (docs/queue.md quotes it).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_queue::{Message, Meta, NativeQueue};

/// `CORRAL_QUEUE_E2E_LINGER_MS`: the linger of the lingering batch row
/// (default 5 ms).
fn linger() -> Duration {
    Duration::from_millis(std::env::var("CORRAL_QUEUE_E2E_LINGER_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(5))
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// Consumers' take calls, watch wake-ups and claim collisions in a run:
/// printed beside the rate, to see where consumers' round trips go.
static TAKES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static WAKEUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static COLLISIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Row {
    workers: usize,
    take_batch: usize,
    linger: Duration,
    msgs: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Producers put as fast as they can (one put at a time each), consumers
/// take and ack; runs `secs`, then the consumers drain what was put. The
/// rate counts acknowledged messages over the producers' time plus the
/// drain.
async fn run(hosts: &str, workers: usize, take_batch: usize, linger: Duration, secs: f64) -> Row {
    let c = common::connect(hosts, Duration::from_secs(30)).await;
    let path = common::unique_path(&format!("e2e-{workers}"));
    NativeQueue::create(&c, &path, Meta::default()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut producers = Vec::new();
    for _ in 0..workers {
        let (h, p, stop) = (hosts.to_string(), path.clone(), stop.clone());
        producers.push(tokio::spawn(async move {
            let c = common::connect(&h, Duration::from_secs(30)).await;
            let q = NativeQueue::open(&c, &p).await.unwrap();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                q.put(Message::new(now_us().to_be_bytes().to_vec())).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let produced_all = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for _ in 0..workers {
        let (h, p, done) = (hosts.to_string(), path.clone(), produced_all.clone());
        consumers.push(tokio::spawn(async move {
            let c = common::connect(&h, Duration::from_secs(30)).await;
            let q = NativeQueue::open(&c, &p).await.unwrap().with_batch_linger(linger);
            let mut lat = Vec::new();
            let mut calls = 0u64;
            loop {
                let batch = q.take_batch(take_batch, Some(Duration::from_millis(200))).await.unwrap();
                calls += 1;
                if batch.is_empty() {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                }
                let now = now_us();
                for d in &batch {
                    let sent = u64::from_be_bytes(d.payload[..8].try_into().unwrap());
                    lat.push(now.saturating_sub(sent));
                }
                if batch.len() == 1 {
                    q.ack(&batch[0]).await.unwrap();
                } else {
                    for r in q.ack_batch(&batch).await.unwrap() {
                        r.unwrap();
                    }
                }
            }
            TAKES.fetch_add(calls as usize, Ordering::Relaxed);
            WAKEUPS.fetch_add(q.watch_wakeups() as usize, Ordering::Relaxed);
            COLLISIONS.fetch_add(q.claim_collisions() as usize, Ordering::Relaxed);
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut produced = 0;
    for p in producers {
        produced += p.await.unwrap();
    }
    produced_all.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for c in consumers {
        lat.extend(c.await.unwrap());
    }
    // The consumers' last idle wait is not work.
    let elapsed = t0.elapsed().as_secs_f64() - 0.2;
    assert_eq!(lat.len(), produced, "every message put was taken once");
    lat.sort_unstable();
    let pct = |p: usize| lat.get((lat.len() * p / 100).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1e3;
    Row { workers, take_batch, linger, msgs: produced, secs: elapsed, p50_ms: pct(50), p99_ms: pct(99) }
}

/// `workers` producers only, each putting one message at a time, for `secs`.
async fn puts_only(hosts: &str, workers: usize, secs: f64) -> f64 {
    let c = common::connect(hosts, Duration::from_secs(30)).await;
    let path = common::unique_path(&format!("e2e-puts-{workers}"));
    NativeQueue::create(&c, &path, Meta::default()).await.unwrap();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (h, p) = (hosts.to_string(), path.clone());
        tasks.push(tokio::spawn(async move {
            let c = common::connect(&h, Duration::from_secs(30)).await;
            let q = NativeQueue::open(&c, &p).await.unwrap();
            let mut n = 0usize;
            while t0.elapsed().as_secs_f64() < secs {
                q.put(Message::new(vec![0u8; 8])).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// `workers` consumers draining a backlog of `n` (take + ack each).
async fn drain_only(hosts: &str, workers: usize, n: usize, take: usize) -> f64 {
    let c = common::connect(hosts, Duration::from_secs(30)).await;
    let path = common::unique_path(&format!("e2e-drain-{workers}"));
    let q = NativeQueue::create(&c, &path, Meta::default()).await.unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        q.put_batch(chunk.iter().map(|_| Message::new(vec![0u8; 8])).collect()).await.unwrap();
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (h, p) = (hosts.to_string(), path.clone());
        tasks.push(tokio::spawn(async move {
            let c = common::connect(&h, Duration::from_secs(30)).await;
            let q = NativeQueue::open(&c, &p).await.unwrap();
            let mut got = 0usize;
            loop {
                let batch = q.take_batch(take, Some(Duration::from_millis(200))).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                got += batch.len();
                if batch.len() == 1 {
                    q.ack(&batch[0]).await.unwrap();
                } else {
                    for r in q.ack_batch(&batch).await.unwrap() {
                        r.unwrap();
                    }
                }
            }
            eprintln!("  consumer: {got} messages, {} claim collisions", q.claim_collisions());
            got
        }));
    }
    let mut got = 0;
    for t in tasks {
        got += t.await.unwrap();
    }
    assert_eq!(got, n, "the backlog drained exactly once");
    n as f64 / (t0.elapsed().as_secs_f64() - 0.2)
}

/// kazoo's LockingQueue (the real kazoo, threads with a client each): put,
/// then get + consume (removed after processing, like our claim + ack).
/// Prints "msgs secs p50_ms p99_ms".
const KAZOO_E2E: &str = r#"
import sys, time, threading, struct
from kazoo.client import KazooClient
from kazoo.recipe.queue import LockingQueue
hosts, path, workers, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def client():
    zk = KazooClient(hosts=hosts, timeout=30); zk.start(timeout=30); return zk
ages, lock, produced, done = [], threading.Lock(), [0], [False]
t0 = time.time(); end = t0 + secs
def produce():
    q = LockingQueue(client(), path); n = 0
    while time.time() < end:
        q.put(struct.pack(">d", time.time())); n += 1
    with lock: produced[0] += n
def consume():
    q = LockingQueue(client(), path)
    while True:
        m = q.get(timeout=0.2)
        if m is None:
            if done[0]: return
            continue
        age = (time.time() - struct.unpack(">d", m)[0]) * 1000
        q.consume()
        with lock: ages.append(age)
ps = [threading.Thread(target=produce) for _ in range(workers)]
cs = [threading.Thread(target=consume) for _ in range(workers)]
for t in ps + cs: t.start()
for t in ps: t.join()
deadline = time.time() + 60
while len(ages) < produced[0] and time.time() < deadline: time.sleep(0.01)
done[0] = True
for t in cs: t.join()
elapsed = time.time() - t0 - 0.2
ages.sort()
p = lambda q: ages[min(len(ages) - 1, len(ages) * q // 100)] if ages else 0
print(len(ages), elapsed, p(50), p(99))
"#;

/// Runs a recipe's end-to-end driver and parses its "msgs secs p50 p99".
fn recipe_row(out: std::io::Result<std::process::Output>, workers: usize, name: &'static str) -> Option<(&'static str, Row)> {
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("{name} failed: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or_default());
            return None;
        }
        Err(e) => {
            eprintln!("{name} not run: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    (v.len() == 4).then(|| (name, Row { workers, take_batch: 1, linger: Duration::ZERO, msgs: v[0] as usize, secs: v[1], p50_ms: v[2], p99_ms: v[3] }))
}

/// javac'd Curator driver (queue/tests/java/CuratorQueue.java), if Java and
/// Debian's Curator jars are here.
fn curator_classpath() -> Option<String> {
    let jars = ["curator-recipes", "curator-framework", "curator-client", "zookeeper", "zookeeper-jute", "guava", "slf4j-api", "slf4j-nop"];
    let mut cp: Vec<String> = jars.iter().map(|j| format!("/usr/share/java/{j}.jar")).collect();
    if cp.iter().any(|p| !std::path::Path::new(p).exists()) {
        eprintln!("Curator jars missing (queue/tests/install-deps.sh): no Curator rows");
        return None;
    }
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("curator-e2e-driver");
    std::fs::create_dir_all(&out).ok()?;
    let src = common::workspace_root().join("queue/tests/java/CuratorQueue.java");
    let ok = std::process::Command::new("javac").arg("-nowarn").arg("-d").arg(&out).arg("-cp").arg(cp.join(":")).arg(&src).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("javac failed: no Curator rows");
        return None;
    }
    cp.push(out.display().to_string());
    Some(cp.join(":"))
}

/// One producer putting batches of `batch` as fast as it can for `secs`.
async fn batched_puts(hosts: &str, batch: usize, secs: f64) -> f64 {
    let c = common::connect(hosts, Duration::from_secs(30)).await;
    let path = common::unique_path("e2e-batch");
    let q = NativeQueue::create(&c, &path, Meta::default()).await.unwrap();
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed().as_secs_f64() < secs {
        q.put_batch((0..batch).map(|i| Message::new(format!("m{i}"))).collect()).await.unwrap();
        n += batch;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let workers: Vec<usize> = std::env::var("CORRAL_QUEUE_E2E_WORKERS")
        .unwrap_or_else(|_| "1,8,32".into())
        .split(',')
        .map(|s| s.trim().parse().expect("CORRAL_QUEUE_E2E_WORKERS: a list of numbers"))
        .collect();
    let secs: f64 = std::env::var("CORRAL_QUEUE_E2E_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let batch: usize = std::env::var("CORRAL_QUEUE_E2E_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(64);
    let take: usize = std::env::var("CORRAL_QUEUE_E2E_TAKE").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = common::Server::start_private().unwrap();
    let target = if std::env::var_os("CORRAL_BIN").is_some() { "corral" } else { "zookeeper" };
    let mut rows = Vec::new();
    let mut recipes: Vec<(&'static str, Row)> = Vec::new();
    let curator = curator_classpath();
    let kazoo = common::kazoo_python();
    let mut batched = 0.0;
    let mut sides = Vec::new();
    let only_sides = std::env::var_os("CORRAL_QUEUE_E2E_SIDES_ONLY").is_some();
    // Only the take_batch end-to-end row, for quick comparisons while tuning.
    let only_e2e = std::env::var_os("CORRAL_QUEUE_E2E_ONLY").is_some();
    rt.block_on(async {
        for &w in &workers {
            if only_e2e {
              let lingers: Vec<Duration> = match std::env::var("CORRAL_QUEUE_E2E_ONLY").ok().and_then(|v| v.parse::<u64>().ok()) {
                  Some(ms) => vec![Duration::from_millis(ms)],
                  None => vec![Duration::ZERO, linger()],
              };
              for lg in lingers {
                TAKES.store(0, Ordering::Relaxed);
                WAKEUPS.store(0, Ordering::Relaxed);
                COLLISIONS.store(0, Ordering::Relaxed);
                let r = run(&server.hosts, w, take, lg, secs).await;
                eprintln!("{target} {w}x{w} take_batch {take} linger {lg:?}: {} msgs in {:.1}s = {:.0}/s, p50 {:.1} ms p99 {:.1} ms", r.msgs, r.secs, r.msgs as f64 / r.secs, r.p50_ms, r.p99_ms);
                eprintln!(
                    "  consumers: {} take calls ({:.1} msgs a call), {} watch wake-ups, {} claim collisions",
                    TAKES.load(Ordering::Relaxed),
                    r.msgs as f64 / TAKES.load(Ordering::Relaxed).max(1) as f64,
                    WAKEUPS.load(Ordering::Relaxed),
                    COLLISIONS.load(Ordering::Relaxed)
                );
                rows.push(r);
              }
              continue;
            }
            for (tb, lg) in if only_sides { vec![] } else { vec![(1, Duration::ZERO), (take, Duration::ZERO), (take, linger())] } {
                let r = run(&server.hosts, w, tb, lg, secs).await;
                eprintln!("{target} {w}x{w} take_batch {tb} linger {lg:?}: {} msgs in {:.1}s = {:.0}/s, p50 {:.1} ms p99 {:.1} ms", r.msgs, r.secs, r.msgs as f64 / r.secs, r.p50_ms, r.p99_ms);
                rows.push(r);
            }
            if !only_sides {
                if let Some(py) = &kazoo {
                    let out = tokio::process::Command::new(py).arg("-c").arg(KAZOO_E2E).arg(&server.hosts).arg(common::unique_path("kazoo-e2e")).arg(w.to_string()).arg(secs.to_string()).output().await;
                    if let Some(r) = recipe_row(out, w, "kazoo LockingQueue") {
                        eprintln!("{target} kazoo {w}x{w}: {:.0}/s p50 {:.1} ms p99 {:.1} ms", r.1.msgs as f64 / r.1.secs, r.1.p50_ms, r.1.p99_ms);
                        recipes.push(r);
                    }
                }
                if let Some(cp) = &curator {
                    let out = tokio::process::Command::new("java")
                        .args(["-Xmx512m", "-cp", cp, "CuratorQueue", "bench", &server.hosts, &common::unique_path("curator-e2e"), &w.to_string(), &secs.to_string()])
                        .output()
                        .await;
                    if let Some(r) = recipe_row(out, w, "Curator DistributedQueue (lockPath)") {
                        eprintln!("{target} curator {w}x{w}: {:.0}/s p50 {:.1} ms p99 {:.1} ms", r.1.msgs as f64 / r.1.secs, r.1.p50_ms, r.1.p99_ms);
                        recipes.push(r);
                    }
                }
            }
            let p = puts_only(&server.hosts, w, secs).await;
            let n = (p * secs / 2.0) as usize + 100;
            let d = drain_only(&server.hosts, w, n, 1).await;
            let db = drain_only(&server.hosts, w, n, take).await;
            eprintln!("{target} {w} producers alone: {p:.0} puts/s; {w} consumers draining: {d:.0} msgs/s, with take_batch({take}): {db:.0} msgs/s");
            sides.push((w, p, d, db));
        }
        if only_e2e {
            return;
        }
        batched = batched_puts(&server.hosts, batch, secs).await;
        eprintln!("{target} batched puts ({batch} a batch): {batched:.0}/s");
    });
    println!("| server | producers x consumers | consumers take | messages/s | put→take p50 | p99 |");
    println!("|---|---:|---|---:|---:|---:|");
    for r in &rows {
        let how = match (r.take_batch, r.linger.as_millis()) {
            (1, _) => "take + ack".to_string(),
            (n, 0) => format!("take_batch({n}) + ack_batch"),
            (n, ms) => format!("take_batch({n}), {ms} ms linger, + ack_batch"),
        };
        println!("| {target} | {} x {} | {how} | {:.0} | {:.1} ms | {:.1} ms |", r.workers, r.workers, r.msgs as f64 / r.secs, r.p50_ms, r.p99_ms);
    }
    for (name, r) in &recipes {
        println!("| {target} | {} x {} | {name} | {:.0} | {:.1} ms | {:.1} ms |", r.workers, r.workers, r.msgs as f64 / r.secs, r.p50_ms, r.p99_ms);
    }
    println!("| {target} | batched puts, {batch} a batch | | {batched:.0} | | |");
    println!();
    println!("| server | workers | puts/s, producers alone | msgs/s, consumers draining a backlog (take + ack) | the same with take_batch({take}) + ack_batch |");
    println!("|---|---:|---:|---:|---:|");
    for (w, p, d, db) in &sides {
        println!("| {target} | {w} | {p:.0} | {d:.0} | {db:.0} |");
    }
    drop(server);
}
