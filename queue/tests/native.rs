//! Native layout semantics against a real server (Apache ZooKeeper unless
//! CORRAL_QUEUE_TEST_HOSTS / CORRAL_BIN say otherwise; see tests/common).

mod common;

use std::time::{Duration, Instant};

use common::{connect, unique_path, Server};
use corral_queue::{Alloc, Message, Meta, NackOutcome, NativeQueue, PutOutcome, QueueError};

const SESSION: Duration = Duration::from_secs(10);

async fn queue(meta: Meta) -> NativeQueue {
    let c = connect(&Server::shared().hosts, SESSION).await;
    NativeQueue::create(&c, &unique_path("q"), meta).await.unwrap()
}

async fn take_payload(q: &NativeQueue) -> String {
    let d = q.take(Some(Duration::from_secs(10))).await.unwrap().expect("a message");
    q.ack(&d).await.unwrap();
    String::from_utf8(d.payload).unwrap()
}

#[tokio::test]
async fn fifo_within_priority_and_priorities_first() {
    let q = queue(Meta::default()).await;
    for (p, m) in [(100, "a1"), (5, "hi1"), (100, "a2"), (900, "low"), (5, "hi2"), (100, "a3")] {
        q.put(Message::new(m).priority(p)).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(take_payload(&q).await);
    }
    assert_eq!(got, ["hi1", "hi2", "a1", "a2", "a3", "low"]);
    assert!(q.take(Some(Duration::from_millis(100))).await.unwrap().is_none());
    let s = q.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight, s.enqueued_total, s.removed_total), (0, 0, 6, 6));
}

#[tokio::test]
async fn small_buckets_roll_over_and_are_cleaned_up() {
    for alloc in [Alloc::Counter, Alloc::Sealed { shards: 4 }] {
        let q = queue(Meta { bucket_size: 3, alloc, ..Meta::default() }).await;
        // One batch (one multi) and then single puts: a sealed queue puts a
        // whole multi into the open bucket, so only the single puts roll
        // buckets over there.
        q.put_batch((0..10).map(|i| Message::new(format!("m{i:02}"))).collect()).await.unwrap();
        for i in 10..20 {
            q.put(Message::new(format!("m{i:02}"))).await.unwrap();
        }
        let lane = format!("{}/ready/p100", q.path());
        assert!(q.client().list_children(&lane).await.unwrap().len() >= 3, "{alloc:?}: buckets rolled over");
        for i in 0..20 {
            assert_eq!(take_payload(&q).await, format!("m{i:02}"), "{alloc:?}");
        }
        // Drained buckets no put can target again are deleted by consumers
        // as they pass them (the next look, for the one drained last); only
        // the bucket that can still receive items may stay.
        assert!(q.take(Some(Duration::from_millis(50))).await.unwrap().is_none());
        let buckets = q.client().list_children(&lane).await.unwrap();
        assert!(buckets.len() <= 1, "{alloc:?}: stale buckets left: {buckets:?}");
    }
}

#[tokio::test]
async fn delayed_message_waits_and_does_not_block_others() {
    let q = queue(Meta::default()).await;
    let t0 = Instant::now();
    q.put(Message::new("later").delay(Duration::from_millis(1500))).await.unwrap();
    q.put(Message::new("now")).await.unwrap();
    assert_eq!(take_payload(&q).await, "now");
    assert_eq!(take_payload(&q).await, "later");
    assert!(t0.elapsed() >= Duration::from_millis(1500), "delivered early: {:?}", t0.elapsed());
}

#[tokio::test]
async fn idempotent_put_is_a_noop() {
    let q = queue(Meta::default()).await;
    let first = q.put(Message::new("x").key("order-17")).await.unwrap();
    let PutOutcome::Enqueued(id) = first else { panic!("{first:?}") };
    let again = q.put(Message::new("x").key("order-17")).await.unwrap();
    assert_eq!(again, PutOutcome::Duplicate { key: "order-17".into(), original: Some(id) });
    // Keys with characters that are not valid in znode names.
    q.put(Message::new("y").key("a/b/../c %")).await.unwrap();
    assert!(matches!(q.put(Message::new("y").key("a/b/../c %")).await.unwrap(), PutOutcome::Duplicate { .. }));
    assert_eq!(q.stats().await.unwrap().depth, 2);
    // Still a no-op after the first copy was processed.
    let d = q.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    q.ack(&d).await.unwrap();
    assert!(matches!(q.put(Message::new("x").key("order-17")).await.unwrap(), PutOutcome::Duplicate { .. }));
    // A retried batch: known keys are reported as duplicates, new ones added,
    // and a key repeated inside the batch is added once.
    let batch = vec![Message::new("x").key("order-17"), Message::new("n1").key("new-1"), Message::new("n1").key("new-1"), Message::new("n2").key("new-2")];
    let out = q.put_batch(batch).await.unwrap();
    assert!(matches!(&out[0], PutOutcome::Duplicate { original: Some(o), .. } if *o == id));
    assert!(matches!(out[1], PutOutcome::Enqueued(_)));
    assert!(matches!(out[2], PutOutcome::Duplicate { .. }));
    assert!(matches!(out[3], PutOutcome::Enqueued(_)));
    assert_eq!(q.stats().await.unwrap().depth, 3);
    assert_eq!(q.purge_keys(Duration::ZERO).await.unwrap(), 4);
    assert!(matches!(q.put(Message::new("x").key("order-17")).await.unwrap(), PutOutcome::Enqueued(_)));
}

#[tokio::test]
async fn nack_with_delay_and_dead_letter_after_max_attempts() {
    let q = queue(Meta { max_attempts: 3, ..Meta::default() }).await;
    q.put(Message::new("poison")).await.unwrap();
    q.put(Message::new("fine")).await.unwrap();
    let d1 = q.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    assert_eq!((d1.payload.as_slice(), d1.attempt), (&b"poison"[..], 1));
    assert_eq!(q.nack(&d1, Duration::from_millis(700)).await.unwrap(), NackOutcome::Requeued);
    // The nacked message is delayed, so the next one is delivered meanwhile.
    let d = q.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    assert_eq!(d.payload, b"fine");
    q.ack(&d).await.unwrap();
    let d2 = q.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    assert_eq!((d2.payload.as_slice(), d2.attempt), (&b"poison"[..], 2));
    // A stale delivery cannot be acked once the message was redelivered.
    assert!(matches!(q.ack(&d1).await, Err(QueueError::ClaimLost { .. })));
    assert_eq!(q.nack(&d2, Duration::ZERO).await.unwrap(), NackOutcome::Requeued);
    let d3 = q.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    assert_eq!(d3.attempt, 3);
    assert_eq!(q.nack(&d3, Duration::ZERO).await.unwrap(), NackOutcome::DeadLettered);
    assert!(q.take(Some(Duration::from_millis(200))).await.unwrap().is_none());
    let s = q.stats().await.unwrap();
    assert_eq!((s.depth, s.dlq, s.dead_lettered_total, s.redeliveries), (0, 1, 1, 2));
    let dl = q.dlq(10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!((dl[0].payload.as_slice(), dl[0].attempts), (&b"poison"[..], 3));
}

#[tokio::test]
async fn lease_expiry_redelivers_and_fences_the_old_consumer() {
    let hosts = &Server::shared().hosts;
    let path = unique_path("lease");
    let ca = connect(hosts, SESSION).await;
    let cb = connect(hosts, SESSION).await;
    let a = NativeQueue::create(&ca, &path, Meta { lease_ms: 800, ..Meta::default() }).await.unwrap();
    let b = NativeQueue::open(&cb, &path).await.unwrap();
    a.put(Message::new("job")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let s = a.stats().await.unwrap();
    let age = s.oldest_age.expect("oldest age of a pending message");
    assert!(age >= Duration::from_millis(150) && age < Duration::from_secs(30), "{age:?}");
    assert_eq!((s.depth, s.in_flight), (1, 0));
    let mut da = a.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    assert_eq!(a.stats().await.unwrap().in_flight, 1);
    a.extend(&mut da, Duration::from_millis(800)).await.unwrap();
    // b waits; it must get the message once a's lease runs out, not before.
    let t0 = Instant::now();
    let db = b.take(Some(Duration::from_secs(10))).await.unwrap().expect("redelivered after lease expiry");
    assert!(t0.elapsed() >= Duration::from_millis(500), "lease not honoured: {:?}", t0.elapsed());
    assert_eq!((db.payload.as_slice(), db.attempt), (&b"job"[..], 2));
    assert!(matches!(a.extend(&mut da, Duration::from_secs(5)).await, Err(QueueError::ClaimLost { .. })));
    assert!(matches!(a.nack(&da, Duration::ZERO).await, Err(QueueError::ClaimLost { .. })));
    assert!(matches!(a.ack(&da).await, Err(QueueError::ClaimLost { .. })));
    b.ack(&db).await.unwrap();
    let s = b.stats().await.unwrap();
    assert_eq!((s.depth, s.removed_total, s.redeliveries), (0, 1, 1));
}

#[tokio::test]
async fn crashed_consumer_claim_is_released_promptly() {
    let hosts = &Server::shared().hosts;
    let path = unique_path("crash");
    let proxy = common::Proxy::start(hosts).await;
    // Long lease: only the end of a's session can release the claim in time.
    let ca = connect(&proxy.hosts, Duration::from_secs(2)).await;
    let a = NativeQueue::create(&ca, &path, Meta { lease_ms: 120_000, ..Meta::default() }).await.unwrap();
    let cb = connect(hosts, SESSION).await;
    let b = NativeQueue::open(&cb, &path).await.unwrap();
    a.put(Message::new("job")).await.unwrap();
    let da = a.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn(async move {
        let _ = tx.send(());
        let t0 = Instant::now();
        let d = b.take(Some(Duration::from_secs(20))).await.unwrap();
        (d, t0.elapsed(), b)
    });
    rx.await.unwrap();
    // a is cut off: still running, but its session expires on the server.
    proxy.partition();
    let (d, waited, b) = waiter.await.unwrap();
    let d = d.expect("redelivered after the session ended");
    assert_eq!(d.attempt, 2);
    assert!(waited < Duration::from_secs(8), "redelivery took {waited:?}");
    proxy.heal();
    let err = a.ack(&da).await.unwrap_err();
    assert!(matches!(err, QueueError::SessionExpired | QueueError::ClaimLost { .. }), "zombie ack: {err}");
    b.ack(&d).await.unwrap();
}

#[tokio::test]
async fn killed_consumer_claim_is_released_after_session_timeout() {
    let hosts = &Server::shared().hosts;
    let path = unique_path("kill");
    let ca = common::connect_detached(hosts, Duration::from_secs(1)).await;
    let a = NativeQueue::create(&ca, &path, Meta { lease_ms: 120_000, ..Meta::default() }).await.unwrap();
    a.put(Message::new("job")).await.unwrap();
    let da = a.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    // Process death: the connection goes away without closing the session.
    drop(a);
    drop(ca);
    let cb = connect(hosts, SESSION).await;
    let b = NativeQueue::open(&cb, &path).await.unwrap();
    let t0 = Instant::now();
    let d = b.take(Some(Duration::from_secs(20))).await.unwrap().expect("redelivered");
    assert_eq!((d.id, d.attempt), (da.id, 2));
    assert!(t0.elapsed() < Duration::from_secs(8), "took {:?}", t0.elapsed());
    b.ack(&d).await.unwrap();
}

#[tokio::test]
async fn exact_item_bound_under_concurrent_producers() {
    let hosts = &Server::shared().hosts;
    let path = unique_path("bound");
    let c0 = connect(hosts, SESSION).await;
    let q0 = NativeQueue::create(&c0, &path, Meta { max_items: Some(25), ..Meta::default() }).await.unwrap();
    let mut tasks = Vec::new();
    for p in 0..6 {
        let hosts = hosts.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let c = connect(&hosts, SESSION).await;
            let q = NativeQueue::open(&c, &path).await.unwrap();
            let (mut ok, mut full) = (0, 0);
            for i in 0..10 {
                match q.put(Message::new(format!("{p}-{i}"))).await {
                    Ok(_) => ok += 1,
                    Err(QueueError::Full { .. }) => full += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            (ok, full)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (o, f) = t.await.unwrap();
        assert_eq!(o + f, 10);
        ok += o;
    }
    assert_eq!(ok, 25, "exactly the bound must be admitted");
    assert_eq!(q0.stats().await.unwrap().depth, 25);
    let children: usize = {
        let lanes = format!("{path}/ready/p100");
        let mut n = 0;
        for b in c0.list_children(&lanes).await.unwrap() {
            n += c0.list_children(&format!("{lanes}/{b}")).await.unwrap().len();
        }
        n
    };
    assert_eq!(children, 25);
    // Room frees up as soon as something is acked, including for a blocked put.
    let blocked = {
        let hosts = hosts.clone();
        let path = path.clone();
        tokio::spawn(async move {
            let c = connect(&hosts, SESSION).await;
            let q = NativeQueue::open(&c, &path).await.unwrap();
            q.put_wait(Message::new("late"), Duration::from_secs(20)).await
        })
    };
    let d = q0.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    q0.ack(&d).await.unwrap();
    assert!(matches!(blocked.await.unwrap().unwrap(), PutOutcome::Enqueued(_)));
    assert_eq!(q0.stats().await.unwrap().depth, 25);
    let err = q0.put(Message::new("over")).await.unwrap_err();
    assert!(err.to_string().contains("is full"), "{err}");
}

#[tokio::test]
async fn byte_bound_is_exact() {
    let q = queue(Meta { max_bytes: Some(1000), ..Meta::default() }).await;
    q.put(Message::new(vec![0u8; 600])).await.unwrap();
    assert!(matches!(q.put(Message::new(vec![0u8; 401])).await, Err(QueueError::Full { .. })));
    q.put(Message::new(vec![0u8; 400])).await.unwrap();
    assert!(matches!(q.put(Message::new(vec![0u8; 1])).await, Err(QueueError::Full { .. })));
    assert_eq!(q.stats().await.unwrap().bytes, 1000);
}

#[tokio::test]
async fn batches_larger_than_one_request_are_chunked() {
    let q = queue(Meta::default()).await;
    // ~3 MB in total: three times the server's default request limit.
    let msgs: Vec<Message> = (0..1500).map(|i| Message::new(vec![(i % 251) as u8; 2000])).collect();
    let out = q.put_batch(msgs).await.unwrap();
    assert_eq!(out.len(), 1500);
    let mut ds = Vec::new();
    while ds.len() < 1500 {
        ds.push(q.take(Some(Duration::from_secs(10))).await.unwrap().expect("message"));
    }
    for (i, d) in ds.iter().enumerate() {
        assert_eq!(d.payload[0], (i % 251) as u8, "FIFO order across chunks");
    }
    let res = q.ack_batch(&ds).await.unwrap();
    assert!(res.iter().all(|r| r.is_ok()));
    assert_eq!(q.stats().await.unwrap().depth, 0);
    assert!(matches!(q.put(Message::new(vec![0u8; 2_000_000])).await, Err(QueueError::TooLarge { .. })));
}

#[tokio::test]
async fn clear_errors_for_bad_and_missing_paths() {
    let c = connect(&Server::shared().hosts, SESSION).await;
    for bad in ["relative", "/trailing/", "/a//b", "/", "/zookeeper/x", "/a/../b"] {
        assert!(matches!(NativeQueue::open(&c, bad).await, Err(QueueError::BadPath { .. })), "{bad}");
    }
    let missing = unique_path("missing");
    let err = NativeQueue::open(&c, &missing).await.unwrap_err();
    assert!(matches!(err, QueueError::NotFound(_)), "{err}");
    // A plain node that is not a queue.
    let plain = unique_path("plain");
    c.mkdir(&plain, &zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all())).await.unwrap();
    assert!(matches!(NativeQueue::open(&c, &plain).await, Err(QueueError::WrongLayout { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_wakes_one_idle_consumer_not_all() {
    let hosts = &Server::shared().hosts;
    let path = unique_path("herd");
    let c0 = connect(hosts, SESSION).await;
    let producer = NativeQueue::create(&c0, &path, Meta::default()).await.unwrap();
    const IDLE: usize = 8;
    let mut consumers = Vec::new();
    for _ in 0..IDLE {
        let c = connect(hosts, SESSION).await;
        consumers.push(std::sync::Arc::new(NativeQueue::open(&c, &path).await.unwrap()));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(IDLE);
    for q in &consumers {
        let (q, tx) = (q.clone(), tx.clone());
        tokio::spawn(async move {
            if let Some(d) = q.take(Some(Duration::from_secs(30))).await.unwrap() {
                q.ack(&d).await.unwrap();
                let _ = tx.send(()).await;
            }
        });
    }
    // All of them must be waiting in line before we put.
    let deadline = Instant::now() + Duration::from_secs(10);
    while producer.stats().await.unwrap().waiting_consumers < IDLE as u64 {
        assert!(Instant::now() < deadline, "consumers never went idle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before: u64 = consumers.iter().map(|q| q.watch_wakeups()).sum();
    producer.put(Message::new("one")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    // The taker's departure passes the baton to one successor; give any herd
    // time to show up, then count.
    let deadline = Instant::now() + Duration::from_secs(10);
    while producer.stats().await.unwrap().waiting_consumers != IDLE as u64 - 1 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let woken: u64 = consumers.iter().map(|q| q.watch_wakeups()).sum::<u64>() - before;
    assert!(woken <= 3, "{woken} wakeups for one put among {IDLE} idle consumers");
    // Two more puts are delivered too (the baton keeps moving).
    producer.put(Message::new("two")).await.unwrap();
    producer.put(Message::new("three")).await.unwrap();
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    }
}

/// Poison messages reach the DLQ after exactly max_attempts deliveries even
/// when consumers crash on them (no nack ever sent) or nack them; good
/// messages are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_despite_crashing_consumers() {
    let hosts = Server::shared().hosts.clone();
    let path = unique_path("poison");
    let c0 = connect(&hosts, SESSION).await;
    let q0 = NativeQueue::create(&c0, &path, Meta { max_attempts: 3, lease_ms: 5_000, ..Meta::default() }).await.unwrap();
    let mut msgs = Vec::new();
    for i in 0..40 {
        let k = if i % 5 == 0 { format!("poison-{i}") } else { format!("good-{i}") };
        msgs.push(Message::new(k.clone()).key(k));
    }
    q0.put_batch(msgs).await.unwrap();
    let good = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let (hosts, path, good, stop) = (hosts.clone(), path.clone(), good.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(w + 11);
            'incarnation: while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let c = common::connect_detached(&hosts, Duration::from_millis(800)).await;
                let q = NativeQueue::open(&c, &path).await.unwrap();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let Some(d) = q.take(Some(Duration::from_millis(300))).await.unwrap() else { continue };
                    let body = String::from_utf8(d.payload.clone()).unwrap();
                    if body.starts_with("poison") {
                        if rng.bool() {
                            // Crash while processing: the claim only ends with the session.
                            continue 'incarnation;
                        }
                        q.nack(&d, Duration::ZERO).await.unwrap();
                    } else {
                        q.ack(&d).await.unwrap();
                        good.lock().unwrap().insert(body);
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = q0.stats().await.unwrap();
        if s.dlq == 8 && s.depth == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(good.lock().unwrap().len(), 32);
    let dl = q0.dlq(100).await.unwrap();
    let mut names: Vec<String> = dl.iter().map(|d| String::from_utf8(d.payload.clone()).unwrap()).collect();
    names.sort();
    let mut expect: Vec<String> = (0..40).filter(|i| i % 5 == 0).map(|i| format!("poison-{i}")).collect();
    expect.sort();
    assert_eq!(names, expect);
    assert!(dl.iter().all(|d| d.attempts == 3), "{dl:?}");
}

/// A hung holder's message comes back after its lease even while other
/// consumers are busy with a backlog (they never run dry, so they must look
/// for expired leases on their own).
#[tokio::test]
async fn expired_lease_is_redelivered_ahead_of_a_backlog() {
    let hosts = &Server::shared().hosts;
    let path = unique_path("lease-backlog");
    let ca = connect(hosts, SESSION).await;
    let a = NativeQueue::create(&ca, &path, Meta { lease_ms: 400, ..Meta::default() }).await.unwrap();
    a.put(Message::new("stuck")).await.unwrap();
    let hung = a.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    a.put_batch((0..1000).map(|i| Message::new(format!("b{i}"))).collect()).await.unwrap();
    let cb = connect(hosts, SESSION).await;
    let b = NativeQueue::open(&cb, &path).await.unwrap();
    let mut position = None;
    for i in 0..1001 {
        let d = b.take(Some(Duration::from_secs(10))).await.unwrap().unwrap();
        b.ack(&d).await.unwrap();
        if d.payload == b"stuck" {
            assert_eq!(d.attempt, 2);
            position = Some(i);
            break;
        }
    }
    let position = position.expect("stuck message never redelivered");
    assert!(position < 1000, "redelivered only after the whole backlog");
    assert!(matches!(a.ack(&hung).await, Err(QueueError::ClaimLost { .. })));
}

/// Un-keyed puts whose replies are lost in a partition: the producer works
/// out whether its multi committed (nonce in the item header), so no put
/// reported as done is missing and none is enqueued twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_puts_through_connection_loss_are_neither_lost_nor_doubled() {
    let hosts = Server::shared().hosts.clone();
    let path = unique_path("lost-reply");
    let c0 = connect(&hosts, SESSION).await;
    let q0 = NativeQueue::create(&c0, &path, Meta::default()).await.unwrap();
    let proxy = common::Proxy::start(&hosts).await;
    let cp = connect(&proxy.hosts, Duration::from_secs(8)).await;
    let producer = NativeQueue::open(&cp, &path).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut unknown) = (Vec::new(), Vec::new());
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match producer.put(Message::new(i.to_string())).await {
                    Ok(_) => ok.push(i),
                    Err(QueueError::Indeterminate { .. }) => unknown.push(i),
                    Err(e) => panic!("put {i}: {e}"),
                }
                i += 1;
            }
            (ok, unknown)
        })
    };
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.partition();
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.heal();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, unknown) = task.await.unwrap();
    assert!(ok.len() > 20, "too few puts: {}", ok.len());
    let mut seen = std::collections::HashMap::<u32, u32>::new();
    while let Some(d) = q0.take(Some(Duration::from_millis(300))).await.unwrap() {
        *seen.entry(String::from_utf8(d.payload.clone()).unwrap().parse().unwrap()).or_default() += 1;
        q0.ack(&d).await.unwrap();
    }
    for i in &ok {
        assert_eq!(seen.get(i), Some(&1), "put {i} reported done but present {:?} times", seen.get(i));
    }
    assert!(seen.values().all(|&n| n == 1), "a put was enqueued twice");
    assert!(seen.keys().all(|k| ok.contains(k) || unknown.contains(k)));
    // Nothing consumes meanwhile, so every lost reply can be resolved.
    assert!(unknown.is_empty(), "unresolved puts: {unknown:?}");
    eprintln!("{} puts, {} indeterminate", ok.len(), unknown.len());
}

/// A consumer whose connection keeps dropping (session survives): takes
/// whose reply was lost find their claim, acks are retried safely, and every
/// message is processed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_through_connection_loss_processes_each_message_once() {
    let hosts = Server::shared().hosts.clone();
    let path = unique_path("lost-ack");
    let c0 = connect(&hosts, SESSION).await;
    let q0 = NativeQueue::create(&c0, &path, Meta { lease_ms: 3_000, ..Meta::default() }).await.unwrap();
    q0.put_batch((0..400).map(|i| Message::new(i.to_string())).collect()).await.unwrap();
    let proxy = common::Proxy::start(&hosts).await;
    let cp = connect(&proxy.hosts, Duration::from_secs(8)).await;
    let consumer = NativeQueue::open(&cp, &path).await.unwrap();
    let task = tokio::spawn(async move {
        let mut seen = std::collections::HashMap::<String, u32>::new();
        while seen.len() < 400 {
            let d = consumer.take(Some(Duration::from_secs(30))).await.unwrap().expect("message");
            *seen.entry(String::from_utf8(d.payload.clone()).unwrap()).or_default() += 1;
            consumer.ack(&d).await.unwrap();
        }
        seen
    });
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.partition();
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.heal();
    }
    let seen = tokio::time::timeout(Duration::from_secs(90), task).await.unwrap().unwrap();
    assert!(seen.values().all(|&n| n == 1), "duplicates: {:?}", seen.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>());
    let s = q0.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight, s.removed_total, s.redeliveries), (0, 0, 400, 0));
}

/// An ack whose first attempt never reached the server, retried after the
/// lease ran out and another consumer had taken and acked the message, finds
/// the item gone: that is not proof that our ack removed it, so the ack must
/// not report success (the chaos test once saw a message processed twice
/// with both acks "successful").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_retried_past_the_lease_does_not_take_credit_for_anothers_ack() {
    let hosts = Server::shared().hosts.clone();
    let path = unique_path("late-ack");
    let proxy = common::Proxy::start(&hosts).await;
    // a notices a silent connection after 1 s; its session outlives the test.
    let ca = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(20))
        .with_connection_timeout(Duration::from_secs(1))
        .connect(&proxy.hosts)
        .await
        .unwrap();
    let a = NativeQueue::create(&ca, &path, Meta { lease_ms: 1_000, deq_shards: 1, ..Meta::default() }).await.unwrap();
    a.put(Message::new("warm-up")).await.unwrap();
    a.put(Message::new("job")).await.unwrap();
    // The first ack caches the counter it updates, so the next ack is a single request.
    let d0 = a.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    a.ack(&d0).await.unwrap();
    let da = a.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    // a's ack goes into the void: the client reports a connection loss, and
    // retries until the link is healed.
    let mut a_state = ca.state_watcher();
    proxy.blackhole();
    let late_ack = tokio::spawn(async move {
        let r = a.ack(&da).await;
        (r, a)
    });
    let cb = connect(&hosts, SESSION).await;
    let b = NativeQueue::open(&cb, &path).await.unwrap();
    let db = b.take(Some(Duration::from_secs(20))).await.unwrap().expect("redelivered after the lease");
    assert_eq!(db.attempt, 2);
    b.ack(&db).await.unwrap();
    // Heal only once a has given up on its connection (and so on its first
    // attempt); healed earlier, the lost request would simply never be answered.
    while a_state.peek_state() != zookeeper_client::SessionState::Disconnected {
        a_state.changed().await;
    }
    proxy.heal();
    let (r, _a) = late_ack.await.unwrap();
    let err = r.expect_err("a's ack reported success although b acked the message");
    assert!(matches!(err, QueueError::Indeterminate { .. } | QueueError::ClaimLost { .. }), "{err}");
}

#[tokio::test]
async fn take_batch_claims_in_order_and_ack_batch_settles_them() {
    let q = queue(Meta::default()).await;
    q.put_batch((0..50).map(|i| Message::new(format!("m{i:02}"))).collect()).await.unwrap();
    let first = q.take_batch(20, Some(Duration::from_secs(10))).await.unwrap();
    let names: Vec<String> = first.iter().map(|d| String::from_utf8(d.payload.clone()).unwrap()).collect();
    assert_eq!(names, (0..20).map(|i| format!("m{i:02}")).collect::<Vec<_>>(), "a lone consumer's batch is the head, in order");
    assert!(first.iter().all(|d| d.attempt == 1));
    assert_eq!(q.stats().await.unwrap().in_flight, 20);
    assert!(q.ack_batch(&first).await.unwrap().iter().all(Result::is_ok));
    // Asking for more than there is returns what there is, without waiting
    // for the timeout.
    let t = Instant::now();
    let rest = q.take_batch(100, Some(Duration::from_secs(10))).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "returned what was deliverable at once");
    assert_eq!(rest.len(), 30);
    assert_eq!(String::from_utf8(rest[0].payload.clone()).unwrap(), "m20");
    // A token fences each delivery of a batch on its own: one nacked, then
    // its old delivery cannot be acked.
    assert_eq!(q.nack(&rest[0], Duration::ZERO).await.unwrap(), NackOutcome::Requeued);
    let acks = q.ack_batch(&rest).await.unwrap();
    assert!(matches!(acks[0], Err(QueueError::ClaimLost { .. })), "{:?}", acks[0]);
    assert!(acks[1..].iter().all(Result::is_ok));
    let again = q.take_batch(10, Some(Duration::from_secs(10))).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((String::from_utf8(again[0].payload.clone()).unwrap().as_str(), again[0].attempt), ("m20", 2));
    q.ack(&again[0]).await.unwrap();
    assert!(q.take_batch(10, Some(Duration::from_millis(100))).await.unwrap().is_empty());
    let s = q.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight, s.removed_total), (0, 0, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_batch_takers_deliver_every_message_once() {
    let path = unique_path("qb");
    let hosts = Server::shared().hosts.clone();
    let c = connect(&hosts, SESSION).await;
    let q = NativeQueue::create(&c, &path, Meta::default()).await.unwrap();
    const N: usize = 600;
    q.put_batch((0..N).map(|i| Message::new(i.to_string())).collect()).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (hosts, path) = (hosts.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let c = connect(&hosts, SESSION).await;
            let q = NativeQueue::open(&c, &path).await.unwrap();
            let mut got = Vec::new();
            loop {
                let batch = q.take_batch(8 + w * 8, Some(Duration::from_millis(300))).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                for r in q.ack_batch(&batch).await.unwrap() {
                    r.unwrap();
                }
                got.extend(batch.into_iter().map(|d| String::from_utf8(d.payload).unwrap().parse::<usize>().unwrap()));
            }
            (got, q.claim_collisions())
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let (got, collisions) = t.await.unwrap();
        eprintln!("consumer took {} ({} claim collisions)", got.len(), collisions);
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "every message delivered and acked exactly once");
    let s = q.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight, s.redeliveries), (0, 0, 0));
}

/// Registered batch consumers split the items by class (`seq % members`),
/// so they do not collide; one whose class has run dry takes the others'
/// items, so nothing waits on a consumer that is not taking; a dropped handle
/// leaves the split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_consumers_split_the_items_and_take_the_others_when_their_own_run_out() {
    let path = unique_path("split");
    let hosts = Server::shared().hosts.clone();
    let q = NativeQueue::create(&connect(&hosts, SESSION).await, &path, Meta::default()).await.unwrap();
    let a = NativeQueue::open(&connect(&hosts, SESSION).await, &path).await.unwrap();
    let b = NativeQueue::open(&connect(&hosts, SESSION).await, &path).await.unwrap();
    a.join_batch_consumers().await.unwrap();
    let (slot_b, n) = b.join_batch_consumers().await.unwrap();
    let (slot_a, n_a) = a.join_batch_consumers().await.unwrap();
    assert_eq!((n, n_a), (2, 2), "both joined");
    assert_ne!(slot_a, slot_b, "distinct slots");
    // 40 consecutive ids: 20 in each class.
    q.put_batch((0..40).map(|i| Message::new(format!("m{i}"))).collect()).await.unwrap();
    let from_a = a.take_batch(100, Some(Duration::from_secs(10))).await.unwrap();
    let from_b = b.take_batch(100, Some(Duration::from_secs(10))).await.unwrap();
    assert_eq!(from_a.len(), 20, "a takes its own class only while it has items");
    assert_eq!(from_b.len(), 20);
    assert!(from_a.iter().all(|d| d.id.seq % 2 == slot_a as u64), "a took outside its class");
    assert!(from_b.iter().all(|d| d.id.seq % 2 == slot_b as u64), "b took outside its class");
    assert!(a.ack_batch(&from_a).await.unwrap().iter().chain(b.ack_batch(&from_b).await.unwrap().iter()).all(Result::is_ok));
    assert_eq!((a.claim_collisions(), b.claim_collisions()), (0, 0));
    // a stops taking; b drains its own class, then a's.
    q.put_batch((0..10).map(|i| Message::new(format!("n{i}"))).collect()).await.unwrap();
    let own = b.take_batch(100, Some(Duration::from_secs(10))).await.unwrap();
    assert_eq!(own.len(), 5);
    assert!(own.iter().all(|d| d.id.seq % 2 == slot_b as u64));
    let others = b.take_batch(100, Some(Duration::from_secs(10))).await.unwrap();
    assert_eq!(others.len(), 5, "b takes a's items once its own class is empty");
    assert!(others.iter().all(|d| d.id.seq % 2 == slot_a as u64));
    assert!(b.ack_batch(&own).await.unwrap().iter().chain(b.ack_batch(&others).await.unwrap().iter()).all(Result::is_ok));
    // a's class waits while b has its own to take, but not for ever: items
    // of a's class that have waited a second longer than b's oldest go
    // first (LAG_BEFORE_HELP).
    q.put_batch((0..4).map(|i| Message::new(format!("old{i}"))).collect()).await.unwrap();
    let first = b.take_batch(100, Some(Duration::from_secs(10))).await.unwrap();
    assert_eq!(first.len(), 2, "b takes its own class while it has items");
    tokio::time::sleep(Duration::from_millis(1200)).await; // the lag itself is the condition under test
    q.put_batch((0..4).map(|i| Message::new(format!("new{i}"))).collect()).await.unwrap();
    let next = b.take_batch(100, Some(Duration::from_secs(10))).await.unwrap();
    let names: Vec<String> = next.iter().map(|d| String::from_utf8(d.payload.clone()).unwrap()).collect();
    assert_eq!(next.len(), 4, "{names:?}");
    assert_eq!(next.iter().filter(|d| d.id.seq % 2 == slot_a as u64).count(), 2, "a's two old items, not its new ones: {names:?}");
    assert!(names.iter().filter(|n| n.starts_with("old")).count() == 2 && names.iter().filter(|n| n.starts_with("new")).count() == 2, "{names:?}");
    let rest = b.take_batch(100, Some(Duration::from_secs(10))).await.unwrap();
    assert_eq!(rest.len(), 2, "then a's new ones, its own class being empty");
    for batch in [&first, &next, &rest] {
        assert!(b.ack_batch(batch).await.unwrap().iter().all(Result::is_ok));
    }
    // A dropped handle leaves: b is alone again and takes every class.
    drop(a);
    let t = Instant::now();
    loop {
        let (_, n) = b.join_batch_consumers().await.unwrap();
        if n == 1 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "a's node outlived its handle");
        tokio::task::yield_now().await;
    }
    q.put_batch((0..6).map(|i| Message::new(format!("o{i}"))).collect()).await.unwrap();
    assert_eq!(b.take_batch(100, Some(Duration::from_secs(10))).await.unwrap().len(), 6);
    let s = q.stats().await.unwrap();
    assert_eq!(s.removed_total, 58);
}

/// `with_batch_linger`: a batch with fewer items than asked for waits the
/// linger once, then takes what is there; a full batch and a single `take`
/// do not wait for it.
#[tokio::test]
async fn batch_linger_waits_once_for_a_fuller_batch() {
    let linger = Duration::from_millis(1500);
    let path = unique_path("linger");
    let c = connect(&Server::shared().hosts, SESSION).await;
    NativeQueue::create(&c, &path, Meta::default()).await.unwrap();
    let q = NativeQueue::open(&c, &path).await.unwrap().with_batch_linger(linger);
    q.put(Message::new("one")).await.unwrap();
    let t = Instant::now();
    let got = q.take_batch(10, Some(Duration::from_secs(10))).await.unwrap();
    assert!(t.elapsed() >= linger, "returned after {:?}, before the linger", t.elapsed());
    assert_eq!(got.len(), 1);
    q.ack_batch(&got).await.unwrap();
    // Puts made while a batch lingers are in it (another queue, so that
    // the taker is its only consumer and every class is its own).
    let path2 = unique_path("linger");
    let q2 = NativeQueue::create(&c, &path2, Meta::default()).await.unwrap();
    q2.put(Message::new("two")).await.unwrap();
    let taker = {
        let c = c.clone();
        let path = path2.clone();
        tokio::spawn(async move {
            let q = NativeQueue::open(&c, &path).await.unwrap().with_batch_linger(linger);
            let got = q.take_batch(10, Some(Duration::from_secs(10))).await.unwrap();
            q.ack_batch(&got).await.unwrap();
            got.len()
        })
    };
    q2.put_batch((0..3).map(|i| Message::new(format!("late{i}"))).collect()).await.unwrap();
    assert_eq!(taker.await.unwrap(), 4, "the batch lingered for the late puts");
    q.put_batch((0..10).map(|i| Message::new(format!("m{i}"))).collect()).await.unwrap();
    let t = Instant::now();
    let full = q.take_batch(10, Some(Duration::from_secs(10))).await.unwrap();
    assert_eq!(full.len(), 10);
    assert!(t.elapsed() < linger, "a full batch waited {:?}", t.elapsed());
    q.ack_batch(&full).await.unwrap();
    q.put(Message::new("single")).await.unwrap();
    let t = Instant::now();
    let d = q.take(Some(Duration::from_secs(10))).await.unwrap().unwrap();
    assert!(t.elapsed() < linger, "take waited {:?}", t.elapsed());
    q.ack(&d).await.unwrap();
}

/// Ids follow real time across producers on different sessions: a put
/// acknowledged before another was invoked has the smaller id, and a lone
/// consumer walking the quiescent queue gets them in that order. Both
/// allocations; tiny buckets so sealed buckets roll over while producers
/// race. After a SIGKILL restart of the server no id is reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_follow_real_time_across_producers_and_restarts() {
    let mut server = Server::start_private().unwrap();
    for alloc in [Alloc::Counter, Alloc::Sealed { shards: 2 }] {
        let path = unique_path("order");
        let c = connect(&server.hosts, SESSION).await;
        NativeQueue::create(&c, &path, Meta { bucket_size: 4, alloc, ..Meta::default() }).await.unwrap();
        let mut log: Vec<(Instant, Instant, corral_queue::MsgId, String)> = Vec::new();
        for round in 0..2 {
            let mut tasks = Vec::new();
            for p in 0..4 {
                let (hosts, path) = (server.hosts.clone(), path.clone());
                tasks.push(tokio::spawn(async move {
                    let c = connect(&hosts, SESSION).await;
                    let q = NativeQueue::open(&c, &path).await.unwrap();
                    let mut out = Vec::new();
                    for i in 0..40 {
                        let name = format!("r{round}-p{p}-{i}");
                        let t0 = Instant::now();
                        let PutOutcome::Enqueued(id) = q.put(Message::new(name.clone())).await.unwrap() else { panic!("unkeyed put was a duplicate") };
                        out.push((t0, Instant::now(), id, name));
                    }
                    out
                }));
            }
            for t in tasks {
                log.extend(t.await.unwrap());
            }
            if round == 0 && !server.restart() {
                eprintln!("external server: no restart");
            }
        }
        let mut ids: Vec<_> = log.iter().map(|e| e.2).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), log.len(), "{alloc:?}: an id was given twice");
        for a in &log {
            for b in &log {
                if a.1 < b.0 {
                    assert!(a.2 < b.2, "{alloc:?}: {} ({}) was acknowledged before {} ({}) was invoked but has the larger id", a.3, a.2, b.3, b.2);
                }
            }
        }
        // A lone consumer on the quiescent queue: id order.
        let c = connect(&server.hosts, SESSION).await;
        let q = NativeQueue::open(&c, &path).await.unwrap();
        let mut by_id = log.clone();
        by_id.sort_by_key(|e| e.2);
        for e in &by_id {
            let d = q.take(Some(Duration::from_secs(10))).await.unwrap().expect("a message");
            assert_eq!((d.id, String::from_utf8(d.payload.clone()).unwrap()), (e.2, e.3.clone()), "{alloc:?}");
            q.ack(&d).await.unwrap();
        }
        let s = q.stats().await.unwrap();
        assert_eq!((s.depth, s.enqueued_total), (0, log.len() as u64), "{alloc:?}");
    }
}

/// Property: for any number of producers (separate sessions), bucket size,
/// batch sizes and priorities, a sealed queue's ids are unique, follow real
/// time across producers, and a lone consumer gets every message in id
/// order within a priority (priorities first). Few cases, each a real run.
#[test]
fn sealed_allocation_orders_any_mix_of_producers() {
    use proptest::prelude::*;
    let config = ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(producers in 1usize..5, bucket_size in 1u64..6, batches in proptest::collection::vec((1usize..5, 0u16..3), 3..8))| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let hosts = Server::shared().hosts.clone();
            let path = unique_path("prop-order");
            let c = connect(&hosts, SESSION).await;
            NativeQueue::create(&c, &path, Meta { bucket_size, alloc: Alloc::Sealed { shards: 2 }, ..Meta::default() }).await.unwrap();
            let mut tasks = Vec::new();
            for p in 0..producers {
                let (hosts, path, batches) = (hosts.clone(), path.clone(), batches.clone());
                tasks.push(tokio::spawn(async move {
                    let c = connect(&hosts, SESSION).await;
                    let q = NativeQueue::open(&c, &path).await.unwrap();
                    let mut out = Vec::new();
                    for (b, &(n, prio)) in batches.iter().enumerate() {
                        let msgs: Vec<Message> = (0..n).map(|i| Message::new(format!("p{p}-b{b}-{i}")).priority(prio)).collect();
                        let t0 = Instant::now();
                        let got = q.put_batch(msgs).await.unwrap();
                        let t1 = Instant::now();
                        for (i, o) in got.into_iter().enumerate() {
                            let PutOutcome::Enqueued(id) = o else { panic!("unkeyed put was a duplicate") };
                            out.push((t0, t1, id, format!("p{p}-b{b}-{i}")));
                        }
                    }
                    out
                }));
            }
            let mut log = Vec::new();
            for t in tasks {
                log.extend(t.await.unwrap());
            }
            let mut ids: Vec<_> = log.iter().map(|e| e.2).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), log.len(), "an id was given twice");
            for a in &log {
                for b in &log {
                    if a.1 < b.0 && a.2.priority == b.2.priority {
                        assert!(a.2 < b.2, "{} ({}) acknowledged before {} ({}) was invoked, larger id", a.3, a.2, b.3, b.2);
                    }
                }
            }
            let q = NativeQueue::open(&c, &path).await.unwrap();
            log.sort_by_key(|e| e.2);
            for e in &log {
                let d = q.take(Some(Duration::from_secs(10))).await.unwrap().expect("a message");
                assert_eq!((d.id, String::from_utf8(d.payload.clone()).unwrap()), (e.2, e.3.clone()));
                q.ack(&d).await.unwrap();
            }
        });
    });
}
