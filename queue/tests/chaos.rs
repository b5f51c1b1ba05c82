//! Many producers x many consumers with consumer crashes (kill and session
//! expiry), lease expiries and server restarts. Checks: no message lost,
//! duplicates only where a claim was provably lost, bounds never exceeded.
//! Uses its own server (it restarts it). The first run bounds the queue, so
//! producers take turns on `P/enq` (`Alloc::Counter`); the second leaves it
//! unbounded, so the server names items in sealed buckets
//! (`Alloc::Sealed`), and keeps every payload in a blob store (claim-check).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Proxy, Server};
use corral_queue::object_store::memory::InMemory;
use corral_queue::object_store::ObjectStore;
use corral_queue::{Message, Meta, NativeQueue, QueueError};
use futures_util::StreamExt;
use tokio::time::Instant;

const PRODUCERS: usize = 4;
const CONSUMERS: usize = 4;
const MAX_ITEMS: u64 = 60;
/// Blob run: every payload (8 KiB) is above the threshold.
const BLOB_THRESHOLD: usize = 1024;
const BLOB_PAYLOAD: usize = 8 * 1024;

#[derive(Default)]
struct Ledger {
    /// key -> how many times its effect was applied
    effects: HashMap<String, u32>,
    /// key -> how many times a holder provably lost its claim (crash, lost
    /// session, lease overrun, failed ack)
    losses: HashMap<String, u32>,
}

async fn open(hosts: &str, path: &str, session: Duration, detached: bool, blobs: &Option<Arc<InMemory>>) -> Option<NativeQueue> {
    let c = if detached {
        zookeeper_client::Client::connector().with_session_timeout(session).with_detached().connect(hosts).await.ok()?
    } else {
        zookeeper_client::Client::connector().with_session_timeout(session).with_connection_timeout(Duration::from_secs(2)).connect(hosts).await.ok()?
    };
    let q = NativeQueue::open(&c, path).await.ok()?;
    Some(match blobs {
        Some(store) => q.with_blob_store(store.clone(), "chaos", BLOB_THRESHOLD),
        None => q,
    })
}

/// The message for `key`: the key itself, or in the blob run the key, `|`
/// and filler derived from the key up to 8 KiB (so a mixed-up blob shows).
fn payload(key: &str, blobs: bool) -> Vec<u8> {
    let mut p = key.as_bytes().to_vec();
    if blobs {
        p.push(b'|');
        let seed = key.bytes().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
        p.extend((0..BLOB_PAYLOAD - p.len()).map(|i| seed.wrapping_add(i as u8)));
    }
    p
}

fn key_of(p: &[u8], blobs: bool) -> Option<String> {
    let key = if blobs { &p[..p.iter().position(|&b| b == b'|')?] } else { p };
    let key = String::from_utf8(key.to_vec()).ok()?;
    (payload(&key, blobs) == p).then_some(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_consumers_crashes_lease_expiry_and_restarts() {
    run(120, None, true).await;
}

/// The same chaos with every payload in a blob store: nothing lost, every
/// blob read back intact, and after the drain no blob left that the sweeper
/// does not collect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_every_payload_in_a_blob_store() {
    run(50, Some(Arc::new(InMemory::new())), false).await;
}

async fn run(per_producer: usize, blobs: Option<Arc<InMemory>>, bounded: bool) {
    let started = std::time::Instant::now();
    let mut server = Server::start_private().unwrap();
    let hosts = server.hosts.clone();
    let path = common::unique_path("chaos");
    {
        let c = common::connect(&hosts, Duration::from_secs(10)).await;
        let max_items = bounded.then_some(MAX_ITEMS);
        let q = NativeQueue::create(&c, &path, Meta { lease_ms: 1500, max_attempts: 0, max_items, bucket_size: 50, ..Meta::default() }).await.unwrap();
        assert_eq!(matches!(q.meta().alloc, corral_queue::Alloc::Sealed { .. }), !bounded);
    }
    let total = PRODUCERS * per_producer;
    let blob_errors = Arc::new(AtomicU64::new(0));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let max_depth_seen = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::new();

    for p in 0..PRODUCERS {
        let (hosts, path, blobs) = (hosts.clone(), path.clone(), blobs.clone());
        tasks.push(tokio::spawn(async move {
            let mut q: Option<NativeQueue> = None;
            let mut n = 0;
            while n < per_producer {
                assert!(Instant::now() < deadline, "producer {p} stuck at {n}");
                if q.is_none() {
                    q = open(&hosts, &path, Duration::from_secs(4), false, &blobs).await;
                    if q.is_none() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
                let key = format!("p{p}-{n}");
                // Keyed, so a retry after an unknown outcome is safe.
                match q.as_ref().unwrap().put_wait(Message::new(payload(&key, blobs.is_some())).key(key), Duration::from_secs(2)).await {
                    Ok(_) => n += 1,
                    Err(QueueError::Full { .. }) => {},
                    Err(_) => q = None,
                }
            }
        }));
    }

    for w in 0..CONSUMERS {
        let (hosts, path, ledger, stop) = (hosts.clone(), path.clone(), ledger.clone(), stop.clone());
        let (blobs, blob_errors) = (blobs.clone(), blob_errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(w as u64 * 7919 + 1);
            while !stop.load(Ordering::SeqCst) {
                assert!(Instant::now() < deadline, "consumer {w} ran past the deadline");
                // Each incarnation connects through its own proxy so it can be
                // partitioned away; detached so dropping it is a hard kill.
                let proxy = Proxy::start(&hosts).await;
                let Some(q) = open(&proxy.hosts, &path, Duration::from_secs(2), true, &blobs).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                'incarnation: loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    // Odd consumers claim in batches (take_batch), each
                    // delivery of a batch then treated as a single one.
                    let want = if w % 2 == 1 { 4 } else { 1 };
                    let batch = match q.take_batch(want, Some(Duration::from_millis(500))).await {
                        Ok(b) if b.is_empty() => continue,
                        Ok(b) => b,
                        // A blob deleted too early or mixed up: checked below.
                        Err(QueueError::Blob { .. }) => {
                            blob_errors.fetch_add(1, Ordering::SeqCst);
                            break;
                        },
                        Err(_) => break,
                    };
                    for d in batch {
                        let Some(key) = key_of(&d.payload, blobs.is_some()) else {
                            blob_errors.fetch_add(1, Ordering::SeqCst);
                            break 'incarnation;
                        };
                        *ledger.lock().unwrap().effects.entry(key.clone()).or_default() += 1;
                        let loss = |l: &Arc<Mutex<Ledger>>| *l.lock().unwrap().losses.entry(key.clone()).or_default() += 1;
                        match rng.u32(0..100) {
                            // Killed after the effect, before the ack.
                            0..=5 => {
                                loss(&ledger);
                                break 'incarnation;
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
                                break 'incarnation;
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
                                    break 'incarnation;
                                }
                            },
                        }
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
                    q = open(&hosts, &path, Duration::from_secs(4), false, &None).await;
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
        for n in 0..per_producer {
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
    assert!(!bounded || seen <= MAX_ITEMS, "bound exceeded: depth {seen}");
    assert!(seen > 0);
    assert_eq!(blob_errors.load(Ordering::SeqCst), 0, "a blob was missing, corrupt or mixed up");
    let mut blob_note = String::new();
    if let Some(store) = &blobs {
        // Every item is acked, so every reference node is gone; what is left
        // in the store are orphans of puts retried through the chaos, which
        // the sweeper collects.
        let q = q.with_blob_store(store.clone(), "chaos", BLOB_THRESHOLD);
        assert!(checker.list_children(&format!("{path}/blobs")).await.unwrap().is_empty(), "reference nodes left");
        let r = q.sweep_blobs(Duration::ZERO).await.unwrap();
        assert_eq!((r.referenced, r.foreign), (0, 0), "{r:?}");
        assert_eq!(store.list(None).count().await, 0, "blobs left after the sweep");
        blob_note = format!(", {} orphan blob(s) swept", r.deleted);
    }
    eprintln!(
        "chaos: {total} messages, {dups} duplicate deliveries (all after lost claims), max depth {seen}, redeliveries {}{blob_note}, {:.1}s",
        s.redeliveries,
        started.elapsed().as_secs_f64()
    );
}
