//! Side-by-side throughput of Corral and Apache ZooKeeper 3.8 on this
//! machine, same client, same workload, same run: `cargo bench -p
//! corral-tests --bench versus_zookeeper`. Prints ops/s per workload and the
//! Corral/ZooKeeper ratio. Build Corral in release first
//! (`cargo build --release -p corral`) or set CORRAL_BIN.
//!
//! Workloads: sequential creates from one session (latency-bound: one fsync
//! per write), creates from 32 sessions at once (group commit), and reads
//! from 32 sessions.

use std::time::{Duration, Instant};

use corral_tests::zookeeper::ZooKeeper;
use corral_tests::{connect, persistent, Corral};

const WRITES_SERIAL: usize = 2_000;
const CLIENTS: usize = 32;
const PER_CLIENT: usize = 300;

async fn serial_creates(hosts: &str) -> f64 {
    let zk = connect(hosts, Duration::from_secs(30)).await;
    zk.create("/serial", b"", &persistent()).await.unwrap();
    let t = Instant::now();
    for i in 0..WRITES_SERIAL {
        zk.create(&format!("/serial/n{i}"), b"0123456789", &persistent()).await.unwrap();
    }
    WRITES_SERIAL as f64 / t.elapsed().as_secs_f64()
}

async fn parallel(hosts: &str, write: bool) -> f64 {
    let root = if write { "/pw" } else { "/pr" };
    let setup = connect(hosts, Duration::from_secs(30)).await;
    setup.create(root, b"x", &persistent()).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(hosts, Duration::from_secs(30)).await);
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (c, zk) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_CLIENT {
                if write {
                    zk.create(&format!("{root}/c{c}-{i}"), b"0123456789", &persistent()).await.unwrap();
                } else {
                    zk.get_data(root).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (CLIENTS * PER_CLIENT) as f64 / t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Before the runtime starts any thread; the helpers read CORRAL_BIN.
    let Some(_bin) = corral_tests::bench_start() else { return };
    let mut rows = Vec::new();
    for (name, f) in [("serial creates, 1 session", 0), ("creates, 32 sessions", 1), ("getData, 32 sessions", 2)] {
        let run = |hosts: String| async move {
            match f {
                0 => serial_creates(&hosts).await,
                1 => parallel(&hosts, true).await,
                _ => parallel(&hosts, false).await,
            }
        };
        let zk = ZooKeeper::start("");
        let z = run(zk.hosts()).await;
        drop(zk);
        let corral = Corral::start();
        let c = run(corral.hosts()).await;
        drop(corral);
        rows.push((name, c, z));
    }
    println!("{:<28} {:>12} {:>12} {:>8}", "workload", "corral op/s", "zk op/s", "ratio");
    for (name, c, z) in rows {
        println!("{name:<28} {c:>12.0} {z:>12.0} {:>8.2}", c / z);
    }
}
