//! The benchmarks' load against servers that are already running, for
//! profiling one target at a time (`perf record -p <pid>` while it runs):
//!
//! ```sh
//! cargo run --release -p corral-tests --example load -- 127.0.0.1:2181,127.0.0.1:2182 setData 20
//! ```
//!
//! Arguments: a comma list of members (session `i` connects to member
//! `i mod n`), the workload (`setData`, `getData`, `createDelete`) and the
//! seconds to run. Same shape as the benchmark: 16 sessions with 8 requests
//! in flight each (`LOAD_SESSIONS`, `LOAD_IN_FLIGHT` change them), 100-byte
//! values. Prints op/s, p50 and p99.

use std::time::{Duration, Instant};

use corral_tests::persistent;
use zookeeper_client as zk;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
const VALUE_BYTES: usize = 100;

#[derive(Clone, Copy)]
enum Workload {
    SetData,
    GetData,
    CreateDelete,
}

fn usage() -> ! {
    eprintln!("usage: load HOST[,HOST...] setData|getData|createDelete SECONDS");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 {
        usage();
    }
    let members: Vec<String> = args[0].split(',').map(str::to_owned).collect();
    let workload = match args[1].as_str() {
        "setData" => Workload::SetData,
        "getData" => Workload::GetData,
        "createDelete" => Workload::CreateDelete,
        _ => usage(),
    };
    let secs: u64 = args[2].parse().unwrap_or_else(|_| usage());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(members, workload, Duration::from_secs(secs)));
}

async fn run(members: Vec<String>, workload: Workload, secs: Duration) {
    let (sessions, in_flight) = (setting("LOAD_SESSIONS", 16).max(1), setting("LOAD_IN_FLIGHT", 8).max(1));
    let mut clients = Vec::new();
    for i in 0..sessions {
        let host = &members[i % members.len()];
        let c = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(host)
            .await
            .unwrap_or_else(|e| panic!("connect to {host}: {e}"));
        clients.push(c);
    }
    let root = format!("/load-{}", std::process::id());
    let value = vec![b'v'; VALUE_BYTES];
    clients[0]
        .create(&root, &value, &persistent())
        .await
        .expect("create root");
    for s in 0..sessions {
        clients[0]
            .create(&format!("{root}/s{s}"), &value, &persistent())
            .await
            .expect("create node");
    }
    for c in &clients {
        c.sync(&root).await.expect("sync");
    }
    let start = Instant::now();
    let end = start + secs;
    let mut tasks = Vec::new();
    for (s, client) in clients.iter().enumerate() {
        for k in 0..in_flight {
            let (client, value) = (client.clone(), value.clone());
            let node = format!("{root}/s{s}");
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(64 * 1024);
                let mut i = 0u64;
                while Instant::now() < end {
                    let t = Instant::now();
                    match workload {
                        Workload::SetData => {
                            client.set_data(&node, &value, None).await.expect("setData");
                        }
                        Workload::GetData => {
                            client.get_data(&node).await.expect("getData");
                        }
                        Workload::CreateDelete => {
                            let path = format!("{node}/k{k}-{i}");
                            client
                                .create(&path, &value, &persistent())
                                .await
                                .expect("create");
                            lat.push(t.elapsed().as_micros() as u32);
                            let t = Instant::now();
                            client.delete(&path, None).await.expect("delete");
                            lat.push(t.elapsed().as_micros() as u32);
                            i += 1;
                            continue;
                        }
                    }
                    lat.push(t.elapsed().as_micros() as u32);
                }
                lat
            }));
        }
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("load task"));
    }
    let elapsed = start.elapsed();
    lat.sort_unstable();
    let q = |q: f64| {
        lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1] as f64 / 1000.0
    };
    println!(
        "{:.0} op/s  p50 {:.2} ms  p99 {:.2} ms  ({} ops in {:.1} s)",
        lat.len() as f64 / elapsed.as_secs_f64(),
        q(0.5),
        q(0.99),
        lat.len(),
        elapsed.as_secs_f64()
    );
}
