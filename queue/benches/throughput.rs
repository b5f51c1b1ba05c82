//! Put/take throughput and latency at 1k, 100k and 1M pending items: the
//! native layout vs kazoo's LockingQueue (real kazoo, same server).
//!
//!   cargo bench -p corral-queue
//!
//! Env: CORRAL_QUEUE_BENCH_SIZES (default 1000,100000,1000000),
//! CORRAL_QUEUE_BENCH_OPS (default 200), CORRAL_QUEUE_TEST_HOSTS /
//! CORRAL_BIN as for the tests, CORRAL_QUEUE_PYTHON for kazoo. Results are
//! printed as a markdown table (docs/queue.md quotes them).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use corral_queue::interop::LockQueue;
use corral_queue::{Message, Meta, NativeQueue};

struct Row {
    impl_name: String,
    pending: usize,
    fill_s: f64,
    put: Lat,
    take: Lat,
}

#[derive(Default, Clone)]
struct Lat {
    ops: usize,
    total: Duration,
    p50: Duration,
    p99: Duration,
    note: String,
}

fn summarize(mut v: Vec<Duration>, note: &str) -> Lat {
    if v.is_empty() {
        return Lat { note: note.into(), ..Lat::default() };
    }
    let total = v.iter().sum();
    v.sort();
    Lat { ops: v.len(), total, p50: v[v.len() / 2], p99: v[(v.len() * 99 / 100).min(v.len() - 1)], note: note.into() }
}

fn fmt(l: &Lat) -> String {
    if l.ops == 0 {
        return format!("n/a {}", l.note);
    }
    let rate = l.ops as f64 / l.total.as_secs_f64();
    format!("{rate:.0}/s p50 {:.1}ms p99 {:.1}ms{}", l.p50.as_secs_f64() * 1e3, l.p99.as_secs_f64() * 1e3, if l.note.is_empty() { String::new() } else { format!(" ({})", l.note) })
}

async fn bench_native(hosts: &str, n: usize, ops: usize) -> Row {
    let c = common::connect(hosts, Duration::from_secs(30)).await;
    let path = common::unique_path(&format!("native-{n}"));
    let q = NativeQueue::create(&c, &path, Meta::default()).await.unwrap();
    let t0 = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(20_000);
        q.put_batch((0..k).map(|i| Message::new(format!("fill-{i:08}"))).collect()).await.unwrap();
        left -= k;
    }
    let fill_s = t0.elapsed().as_secs_f64();
    let mut puts = Vec::new();
    for i in 0..ops {
        let t = Instant::now();
        q.put(Message::new(format!("bench-{i}"))).await.unwrap();
        puts.push(t.elapsed());
    }
    let mut takes = Vec::new();
    for _ in 0..ops {
        let t = Instant::now();
        let d = q.take(Some(Duration::from_secs(30))).await.unwrap().expect("message");
        q.ack(&d).await.unwrap();
        takes.push(t.elapsed());
    }
    Row { impl_name: "corral native".into(), pending: n, fill_s, put: summarize(puts, ""), take: summarize(takes, "take+ack") }
}

const KAZOO_SCRIPT: &str = r#"
import sys, time
from kazoo.client import KazooClient
from kazoo.recipe.queue import LockingQueue
zk = KazooClient(hosts=sys.argv[1], timeout=30)
zk.start(timeout=30)
q = LockingQueue(zk, sys.argv[2])
ops, cap = int(sys.argv[3]), float(sys.argv[4])
def run(fn):
    out, start = [], time.time()
    while len(out) < ops and time.time() - start < cap:
        t = time.time(); fn(); out.append(time.time() - t)
    return out
puts = run(lambda: q.put(b"bench"))
def take():
    v = q.get(timeout=60)
    assert v is not None
    assert q.consume()
takes = run(take)
print("put", " ".join("%.6f" % x for x in puts))
print("take", " ".join("%.6f" % x for x in takes))
zk.stop()
"#;

async fn bench_kazoo(hosts: &str, n: usize, ops: usize) -> Option<Row> {
    let Some(py) = common::kazoo_python() else {
        eprintln!("kazoo: no python with kazoo, skipped");
        return None;
    };
    let c = common::connect(hosts, Duration::from_secs(30)).await;
    let path = common::unique_path(&format!("kazoo-{n}"));
    let q = LockQueue::kazoo(&c, &path, true).await.unwrap();
    let t0 = Instant::now();
    let fill: Vec<Vec<u8>> = (0..20_000).map(|i| format!("fill-{i:08}").into_bytes()).collect();
    let mut left = n;
    while left > 0 {
        let k = left.min(fill.len());
        q.put_batch(&fill[..k], 100).await.unwrap();
        left -= k;
    }
    let fill_s = t0.elapsed().as_secs_f64();
    let cap = 90.0;
    let out = tokio::process::Command::new(py).arg("-c").arg(KAZOO_SCRIPT).arg(hosts).arg(&path).arg(ops.to_string()).arg(cap.to_string()).output().await.unwrap();
    if !out.status.success() {
        eprintln!("kazoo at {n}: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
        return Some(Row { impl_name: "kazoo LockingQueue".into(), pending: n, fill_s, put: Lat { note: "failed".into(), ..Lat::default() }, take: Lat { note: "failed".into(), ..Lat::default() } });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let parse = |tag: &str| -> Vec<Duration> {
        text.lines()
            .find_map(|l| l.strip_prefix(tag))
            .map(|rest| rest.split_whitespace().filter_map(|x| x.parse::<f64>().ok()).map(Duration::from_secs_f64).collect())
            .unwrap_or_default()
    };
    let (puts, takes) = (parse("put"), parse("take"));
    let note = |v: &Vec<Duration>| if v.len() < ops { format!("only {} ops in {cap}s", v.len()) } else { String::new() };
    let (np, nt) = (note(&puts), note(&takes));
    Some(Row { impl_name: "kazoo LockingQueue".into(), pending: n, fill_s, put: summarize(puts, &np), take: summarize(takes, &format!("get+consume{}{}", if nt.is_empty() { "" } else { ", " }, nt)) })
}

/// Competing consumers: `workers` consumers (own sessions) drain `n` messages
/// put by `workers` producers running at the same time.
async fn bench_concurrent_native(hosts: &str, n: usize, workers: usize) -> f64 {
    let c = common::connect(hosts, Duration::from_secs(30)).await;
    let path = common::unique_path(&format!("native-conc-{n}"));
    NativeQueue::create(&c, &path, Meta::default()).await.unwrap();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (h, p) = (hosts.to_string(), path.clone());
        tasks.push(tokio::spawn(async move {
            let c = common::connect(&h, Duration::from_secs(30)).await;
            let q = NativeQueue::open(&c, &p).await.unwrap();
            for i in 0..n / workers {
                q.put(Message::new(format!("{w}-{i}"))).await.unwrap();
            }
        }));
        let (h, p) = (hosts.to_string(), path.clone());
        tasks.push(tokio::spawn(async move {
            let c = common::connect(&h, Duration::from_secs(30)).await;
            let q = NativeQueue::open(&c, &p).await.unwrap();
            for _ in 0..n / workers {
                let d = q.take(Some(Duration::from_secs(60))).await.unwrap().expect("message");
                q.ack(&d).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Competing consumers draining a backlog of `n` (no producers running).
async fn bench_drain_native(hosts: &str, n: usize, workers: usize) -> f64 {
    let c = common::connect(hosts, Duration::from_secs(30)).await;
    let path = common::unique_path(&format!("native-drain-{n}"));
    let q = NativeQueue::create(&c, &path, Meta::default()).await.unwrap();
    q.put_batch((0..n).map(|i| Message::new(format!("d-{i}"))).collect()).await.unwrap();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (h, p) = (hosts.to_string(), path.clone());
        tasks.push(tokio::spawn(async move {
            let c = common::connect(&h, Duration::from_secs(30)).await;
            let q = NativeQueue::open(&c, &p).await.unwrap();
            let mut got = 0;
            while let Some(d) = q.take(Some(Duration::from_millis(300))).await.unwrap() {
                q.ack(&d).await.unwrap();
                got += 1;
            }
            (got, q.claim_collisions())
        }));
    }
    let (mut total, mut collisions) = (0, 0);
    for t in tasks {
        let (g, c) = t.await.unwrap();
        total += g;
        collisions += c;
    }
    assert_eq!(total, n);
    eprintln!("drain {n} with {workers} consumers: {collisions} claim collisions");
    // The final idle timeout is not work.
    n as f64 / (t0.elapsed().as_secs_f64() - 0.3).max(0.001)
}

const KAZOO_CONCURRENT: &str = r#"
import sys, time, threading
from kazoo.client import KazooClient
from kazoo.recipe.queue import LockingQueue
hosts, path, n, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def client():
    zk = KazooClient(hosts=hosts, timeout=30); zk.start(timeout=30); return zk
def produce(w):
    zk = client(); q = LockingQueue(zk, path)
    for i in range(n // workers): q.put(("%d-%d" % (w, i)).encode())
def consume(w):
    zk = client(); q = LockingQueue(zk, path)
    for i in range(n // workers):
        assert q.get(timeout=60) is not None
        assert q.consume()
t0 = time.time()
ts = [threading.Thread(target=f, args=(w,)) for w in range(workers) for f in (produce, consume)]
for t in ts: t.start()
for t in ts: t.join()
print("%.1f" % (n / (time.time() - t0)))
"#;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("CORRAL_QUEUE_ZK_HEAP").is_none() {
        std::env::set_var("CORRAL_QUEUE_ZK_HEAP", "4g");
    }
    let sizes: Vec<usize> = std::env::var("CORRAL_QUEUE_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("size"))
        .collect();
    let ops: usize = std::env::var("CORRAL_QUEUE_BENCH_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = common::Server::start_private().unwrap();
    let mut rows = Vec::new();
    rt.block_on(async {
        for &n in &sizes {
            let r = bench_native(&server.hosts, n, ops).await;
            eprintln!("native {n}: fill {:.1}s put {} take {}", r.fill_s, fmt(&r.put), fmt(&r.take));
            rows.push(r);
            if let Some(r) = bench_kazoo(&server.hosts, n, ops).await {
                eprintln!("kazoo {n}: fill {:.1}s put {} take {}", r.fill_s, fmt(&r.put), fmt(&r.take));
                rows.push(r);
            }
        }
    });
    let conc_n: usize = std::env::var("CORRAL_QUEUE_BENCH_CONCURRENT").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let mut conc = Vec::new();
    if conc_n > 0 {
        rt.block_on(async {
            for workers in [1, 4] {
                let r = bench_drain_native(&server.hosts, conc_n, workers).await;
                eprintln!("native drain with {workers} consumers: {r:.0} msg/s");
                conc.push(("corral native, draining a backlog", format!("0 x {workers}"), format!("{r:.0} msg/s")));
                let r = bench_concurrent_native(&server.hosts, conc_n, workers).await;
                eprintln!("native concurrent {workers}x{workers}: {r:.0} msg/s");
                conc.push(("corral native", format!("{workers} x {workers}"), format!("{r:.0} msg/s")));
                if let Some(py) = common::kazoo_python() {
                    let path = common::unique_path("kazoo-conc");
                    let out = tokio::process::Command::new(py)
                        .arg("-c")
                        .arg(KAZOO_CONCURRENT)
                        .arg(&server.hosts)
                        .arg(&path)
                        .arg(conc_n.to_string())
                        .arg(workers.to_string())
                        .output()
                        .await
                        .unwrap();
                    let r = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    eprintln!("kazoo concurrent {workers}x{workers}: {r} msg/s");
                    conc.push(("kazoo LockingQueue", format!("{workers} x {workers}"), format!("{r} msg/s")));
                }
            }
        });
    }
    println!("| implementation | pending | fill | put (sequential) | take (sequential) |");
    println!("|---|---:|---:|---|---|");
    for r in &rows {
        println!("| {} | {} | {:.1}s | {} | {} |", r.impl_name, r.pending, r.fill_s, fmt(&r.put), fmt(&r.take));
    }
    if !conc.is_empty() {
        println!();
        println!("| implementation | producers x consumers | throughput ({conc_n} messages) |");
        println!("|---|---:|---|");
        for (name, pc, r) in &conc {
            println!("| {name} | {pc} | {r} |");
        }
    }
    drop(server);
}
