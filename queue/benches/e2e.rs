//! End-to-end queue throughput and latency: P producers and P consumers,
//! each with its own session, put → take → ack, for a fixed time per
//! configuration. Latency is a message's time from its put's invocation to
//! its take's return (the age a consumer sees), p50 and p99.
//!
//!   CORRAL_BIN=target/release/corral cargo bench -p corral-queue --bench e2e
//!
//! Env: CORRAL_QUEUE_E2E_WORKERS (default 1,8,32), CORRAL_QUEUE_E2E_SECS
//! (default 5 per configuration), CORRAL_QUEUE_E2E_BATCH (default 64: the
//! batch size of the batched-put row), CORRAL_QUEUE_TEST_HOSTS / CORRAL_BIN
//! as for the tests (neither: Apache ZooKeeper 3.8 from the Debian
//! packages). Prints a markdown table (docs/queue.md quotes it).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_queue::{Message, Meta, NativeQueue};

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

struct Row {
    workers: usize,
    msgs: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Producers put as fast as they can (one put at a time each), consumers
/// take and ack; runs `secs`, then the consumers drain what was put. The
/// rate counts acknowledged messages over the producers' time plus the
/// drain.
async fn run(hosts: &str, workers: usize, secs: f64) -> Row {
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
            let q = NativeQueue::open(&c, &p).await.unwrap();
            let mut lat = Vec::new();
            loop {
                match q.take(Some(Duration::from_millis(200))).await.unwrap() {
                    Some(d) => {
                        let sent = u64::from_be_bytes(d.payload[..8].try_into().unwrap());
                        lat.push(now_us().saturating_sub(sent));
                        q.ack(&d).await.unwrap();
                    }
                    None if done.load(Ordering::Relaxed) => break,
                    None => {}
                }
            }
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
    Row { workers, msgs: produced, secs: elapsed, p50_ms: pct(50), p99_ms: pct(99) }
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
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = common::Server::start_private().unwrap();
    let target = if std::env::var_os("CORRAL_BIN").is_some() { "corral" } else { "zookeeper" };
    let mut rows = Vec::new();
    let mut batched = 0.0;
    rt.block_on(async {
        for &w in &workers {
            let r = run(&server.hosts, w, secs).await;
            eprintln!("{target} {w}x{w}: {} msgs in {:.1}s = {:.0}/s, p50 {:.1} ms p99 {:.1} ms", r.msgs, r.secs, r.msgs as f64 / r.secs, r.p50_ms, r.p99_ms);
            rows.push(r);
        }
        batched = batched_puts(&server.hosts, batch, secs).await;
        eprintln!("{target} batched puts ({batch} a batch): {batched:.0}/s");
    });
    println!("| server | producers x consumers | messages/s | put→take p50 | p99 |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!("| {target} | {} x {} | {:.0} | {:.1} ms | {:.1} ms |", r.workers, r.workers, r.msgs as f64 / r.secs, r.p50_ms, r.p99_ms);
    }
    println!("| {target} | batched puts, {batch} a batch | {batched:.0} | | |");
    drop(server);
}
