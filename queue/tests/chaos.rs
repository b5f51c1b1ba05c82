//! Many producers x many consumers with consumer crashes (kill and session
//! expiry), lease expiries and server restarts. Checks: no message lost,
//! duplicates only where a claim was provably lost, bounds never exceeded.
//! Uses its own server (it restarts it).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Proxy, Server};
use corral_queue::{Message, Meta, NativeQueue, QueueError};
use tokio::time::Instant;

const PRODUCERS: usize = 4;
const PER_PRODUCER: usize = 120;
const CONSUMERS: usize = 4;
const MAX_ITEMS: u64 = 60;

#[derive(Default)]
struct Ledger {
    /// key -> how many times its effect was applied
    effects: HashMap<String, u32>,
    /// key -> how many times a holder provably lost its claim (crash, lost
    /// session, lease overrun, failed ack)
    losses: HashMap<String, u32>,
}

async fn open(hosts: &str, path: &str, session: Duration, detached: bool) -> Option<NativeQueue> {
    let c = if detached {
        zookeeper_client::Client::connector().with_session_timeout(session).with_detached().connect(hosts).await.ok()?
    } else {
        zookeeper_client::Client::connector().with_session_timeout(session).with_connection_timeout(Duration::from_secs(2)).connect(hosts).await.ok()?
    };
    NativeQueue::open(&c, path).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_consumers_crashes_lease_expiry_and_restarts() {
    let mut server = Server::start_private().unwrap();
    let hosts = server.hosts.clone();
    let path = common::unique_path("chaos");
    {
        let c = common::connect(&hosts, Duration::from_secs(10)).await;
        NativeQueue::create(&c, &path, Meta { lease_ms: 1500, max_attempts: 0, max_items: Some(MAX_ITEMS), bucket_size: 50, ..Meta::default() })
            .await
            .unwrap();
    }
    let total = PRODUCERS * PER_PRODUCER;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let max_depth_seen = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::new();

    for p in 0..PRODUCERS {
        let (hosts, path) = (hosts.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut q: Option<NativeQueue> = None;
            let mut n = 0;
            while n < PER_PRODUCER {
                assert!(Instant::now() < deadline, "producer {p} stuck at {n}");
                if q.is_none() {
                    q = open(&hosts, &path, Duration::from_secs(4), false).await;
                    if q.is_none() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
                let key = format!("p{p}-{n}");
                // Keyed, so a retry after an unknown outcome is safe.
                match q.as_ref().unwrap().put_wait(Message::new(key.clone()).key(key), Duration::from_secs(2)).await {
                    Ok(_) => n += 1,
                    Err(QueueError::Full { .. }) => {},
                    Err(_) => q = None,
                }
            }
        }));
    }

    for w in 0..CONSUMERS {
        let (hosts, path, ledger, stop) = (hosts.clone(), path.clone(), ledger.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(w as u64 * 7919 + 1);
            while !stop.load(Ordering::SeqCst) {
                assert!(Instant::now() < deadline, "consumer {w} ran past the deadline");
                // Each incarnation connects through its own proxy so it can be
                // partitioned away; detached so dropping it is a hard kill.
                let proxy = Proxy::start(&hosts).await;
                let Some(q) = open(&proxy.hosts, &path, Duration::from_secs(2), true).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let d = match q.take(Some(Duration::from_millis(500))).await {
                        Ok(Some(d)) => d,
                        Ok(None) => continue,
                        Err(_) => break,
                    };
                    let key = String::from_utf8(d.payload.clone()).unwrap();
                    *ledger.lock().unwrap().effects.entry(key.clone()).or_default() += 1;
                    let loss = |l: &Arc<Mutex<Ledger>>| *l.lock().unwrap().losses.entry(key.clone()).or_default() += 1;
                    match rng.u32(0..100) {
                        // Killed after the effect, before the ack.
                        0..=5 => {
                            loss(&ledger);
                            break;
                        },
                        // Partitioned: session expires while it thinks it
                        // holds the message; its ack must then fail.
                        6..=9 => {
                            proxy.partition();
                            tokio::time::sleep(Duration::from_millis(2600)).await;
                            proxy.heal();
                            if q.ack(&d).await.is_err() {
                                loss(&ledger);
                            }
                            break;
                        },
                        // Stalls past its lease.
                        10..=14 => {
                            tokio::time::sleep(Duration::from_millis(1800)).await;
                            if q.ack(&d).await.is_err() {
                                loss(&ledger);
                            }
                        },
                        _ => {
                            if q.ack(&d).await.is_err() {
                                loss(&ledger);
                                break;
                            }
                        },
                    }
                }
            }
        }));
    }

    // Bound monitor: depth is read from the counters the bound is enforced on.
    {
        let (hosts, path, stop, max_depth_seen) = (hosts.clone(), path.clone(), stop.clone(), max_depth_seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut q = None;
            while !stop.load(Ordering::SeqCst) {
                if q.is_none() {
                    q = open(&hosts, &path, Duration::from_secs(4), false).await;
                }
                if let Some(qq) = &q {
                    match qq.stats().await {
                        Ok(s) => {
                            max_depth_seen.fetch_max(s.depth, Ordering::SeqCst);
                        },
                        Err(_) => q = None,
                    }
                }
                // Ground truth, independent of the counters: the item znodes
                // themselves, counted in one multi-read (a consistent snapshot).
                if let Some(qq) = &q {
                    let lane = format!("{path}/ready/p100");
                    if let Ok(buckets) = qq.client().list_children(&lane).await {
                        let mut r = qq.client().new_multi_reader();
                        for b in &buckets {
                            r.add_get_children(&format!("{lane}/{b}")).unwrap();
                        }
                        if let Ok(res) = r.commit().await {
                            let n: usize = res
                                .iter()
                                .map(|x| match x {
                                    zookeeper_client::MultiReadResult::Children { children } => children.len(),
                                    _ => 0,
                                })
                                .sum();
                            max_depth_seen.fetch_max(n as u64, Ordering::SeqCst);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    // Two server crashes (SIGKILL) and restarts while everything runs.
    let restart_points = [total / 4, total / 2];
    for point in restart_points {
        loop {
            let done = ledger.lock().unwrap().effects.len();
            if done >= point {
                break;
            }
            assert!(Instant::now() < deadline, "stuck at {done}/{total} before restart");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !server.restart() {
            eprintln!("external server: skipping restart");
        }
    }

    loop {
        let done = ledger.lock().unwrap().effects.len();
        if done == total {
            break;
        }
        assert!(Instant::now() < deadline, "only {done}/{total} messages processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let checker = common::connect(&hosts, Duration::from_secs(10)).await;
    let q = NativeQueue::open(&checker, &path).await.unwrap();
    // Let in-flight acks settle: the queue drains once every claim is acked or
    // reclaimed (leases are short).
    loop {
        let s = q.stats().await.unwrap();
        if s.depth == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "queue never drained: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }

    let dups = {
    let l = ledger.lock().unwrap();
    assert_eq!(l.effects.len(), total, "messages lost");
    for p in 0..PRODUCERS {
        for n in 0..PER_PRODUCER {
            assert!(l.effects.contains_key(&format!("p{p}-{n}")), "p{p}-{n} never delivered");
        }
    }
    let mut dups = 0;
    for (k, &n) in &l.effects {
        let lost = l.losses.get(k).copied().unwrap_or(0);
        assert!(n <= 1 + lost, "{k} applied {n} times but only {lost} claim losses recorded");
        dups += n - 1;
    }
    dups
    };
    let s = q.stats().await.unwrap();
    assert_eq!(s.enqueued_total, total as u64, "idempotent producers must not enqueue twice");
    assert_eq!(s.removed_total, total as u64);
    let seen = max_depth_seen.load(Ordering::SeqCst);
    assert!(seen <= MAX_ITEMS, "bound exceeded: depth {seen}");
    assert!(seen > 0);
    eprintln!("chaos: {total} messages, {dups} duplicate deliveries (all after lost claims), max depth {seen}, redeliveries {}", s.redeliveries);
}
