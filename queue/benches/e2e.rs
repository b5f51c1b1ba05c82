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
//! ack_batch), CORRAL_QUEUE_TEST_HOSTS / CORRAL_BIN
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
    take_batch: usize,
    msgs: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Producers put as fast as they can (one put at a time each), consumers
/// take and ack; runs `secs`, then the consumers drain what was put. The
/// rate counts acknowledged messages over the producers' time plus the
/// drain.
async fn run(hosts: &str, workers: usize, take_batch: usize, secs: f64) -> Row {
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
                let batch = q.take_batch(take_batch, Some(Duration::from_millis(200))).await.unwrap();
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
    Row { workers, take_batch, msgs: produced, secs: elapsed, p50_ms: pct(50), p99_ms: pct(99) }
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
async fn drain_only(hosts: &str, workers: usize, n: usize) -> f64 {
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
            while let Some(d) = q.take(Some(Duration::from_millis(200))).await.unwrap() {
                q.ack(&d).await.unwrap();
                got += 1;
            }
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
    let mut batched = 0.0;
    let mut sides = Vec::new();
    rt.block_on(async {
        for &w in &workers {
            for tb in [1, take] {
                let r = run(&server.hosts, w, tb, secs).await;
                eprintln!("{target} {w}x{w} take_batch {tb}: {} msgs in {:.1}s = {:.0}/s, p50 {:.1} ms p99 {:.1} ms", r.msgs, r.secs, r.msgs as f64 / r.secs, r.p50_ms, r.p99_ms);
                rows.push(r);
            }
            let p = puts_only(&server.hosts, w, secs).await;
            let d = drain_only(&server.hosts, w, (p * secs / 2.0) as usize + 100).await;
            eprintln!("{target} {w} producers alone: {p:.0} puts/s; {w} consumers draining: {d:.0} msgs/s");
            sides.push((w, p, d));
        }
        batched = batched_puts(&server.hosts, batch, secs).await;
        eprintln!("{target} batched puts ({batch} a batch): {batched:.0}/s");
    });
    println!("| server | producers x consumers | consumers take | messages/s | put→take p50 | p99 |");
    println!("|---|---:|---|---:|---:|---:|");
    for r in &rows {
        let how = if r.take_batch == 1 { "take + ack".to_string() } else { format!("take_batch({}) + ack_batch", r.take_batch) };
        println!("| {target} | {} x {} | {how} | {:.0} | {:.1} ms | {:.1} ms |", r.workers, r.workers, r.msgs as f64 / r.secs, r.p50_ms, r.p99_ms);
    }
    println!("| {target} | batched puts, {batch} a batch | | {batched:.0} | | |");
    println!();
    println!("| server | workers | puts/s, producers alone | msgs/s, consumers draining a backlog |");
    println!("|---|---:|---:|---:|");
    for (w, p, d) in &sides {
        println!("| {target} | {w} | {p:.0} | {d:.0} |");
    }
    drop(server);
}
