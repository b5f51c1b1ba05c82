//! The total-queue workload: the queue workload without keys, so a put
//! whose reply was lost may come back `Indeterminate` (docs/queue.md, "Not
//! guaranteed"), on an unbounded native queue (layout native-v2, sealed
//! buckets, small ones so that buckets are sealed and cleaned up during
//! the run). Half the workers (even ids) put unique payloads N; of the
//! consumers, every other one takes and acks in batches (`take_batch`,
//! `ack_batch`), the rest one at a time; now and then a consumer leaves
//! what it took to its lease. After the run the queue is drained and its
//! stats recorded (`queue::drain`), which the checker holds the deliveries
//! against (`check::total_queue`).
//!
//! A batch take that returns n deliveries is recorded as n takes with the
//! batch's times, and its acks likewise one per delivery; a take that
//! erred is one indeterminate take whose `expected` is how many messages
//! it asked for (what it may have claimed).

use super::queue::{open, payload, record, LEASE_MS, TAKE_WAIT};
use super::{session, Ctx, OP_TIMEOUT};
use crate::check::history::{Kind, Outcome};
use corral_queue::{Delivery, Message, Meta, NativeQueue, PutOutcome, QueueError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::Ordering;
use std::time::Instant;
use zookeeper_client as zk;

pub const PATH: &str = "/jepsen/total-queue";
pub use crate::check::total_queue::KEY;
/// Items per bucket: small, so that a short run seals buckets, puts race
/// the seals and consumers delete drained buckets.
const BUCKET_SIZE: u64 = 50;
/// What a batch consumer asks for at once.
const BATCH: usize = 4;

pub async fn setup(c: &zk::Client) -> Result<(), String> {
    // No dead-lettering (every message stays deliverable until acked), no
    // bounds (so the sealed allocation).
    let meta = Meta { lease_ms: LEASE_MS, max_attempts: 0, bucket_size: BUCKET_SIZE, ..Meta::default() };
    NativeQueue::create(c, PATH, meta).await.map(|_| ()).map_err(|e| format!("setup: create the queue {PATH}: {e}"))
}

pub async fn worker(ctx: Ctx) {
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ (0x7071_cc1 * (ctx.id as u64 + 1)));
    let producer = ctx.id % 2 == 0;
    let batch = if ctx.id % 4 == 3 { BATCH } else { 1 };
    let mut process = ctx.id as u64;
    let mut queue: Option<NativeQueue> = None;
    while Instant::now() < ctx.deadline {
        ctx.pace.wait().await;
        let Some(q) = queue.as_ref() else {
            queue = open(&ctx, PATH).await;
            continue;
        };
        let (indeterminate, expired) = if producer { put(&ctx, q, process).await } else { consume(&ctx, q, process, batch, &mut rng).await };
        if indeterminate {
            process += ctx.workers as u64;
        }
        if expired {
            queue = None;
        }
    }
}

/// One unkeyed put; returns whether it was indeterminate and whether the session is gone.
async fn put(ctx: &Ctx, q: &NativeQueue, process: u64) -> (bool, bool) {
    let v = ctx.next.fetch_add(1, Ordering::Relaxed);
    let mut o = ctx.op(process, session(q.client()), KEY, Kind::Put, Some(v));
    let r = tokio::time::timeout(OP_TIMEOUT, q.put(Message::new(v.to_string()))).await;
    let r = record(ctx, &mut o, r.map(|r| r.map(|p| matches!(p, PutOutcome::Duplicate { .. }))));
    ctx.rec.push(o);
    r
}

/// One take (of up to `batch` messages) and the acks of what it delivered.
async fn consume(ctx: &Ctx, q: &NativeQueue, process: u64, batch: usize, rng: &mut ChaCha8Rng) -> (bool, bool) {
    let session = session(q.client());
    let mut o = ctx.op(process, session.clone(), KEY, Kind::Take, None);
    let r = tokio::time::timeout(OP_TIMEOUT + TAKE_WAIT, async {
        if batch > 1 {
            q.take_batch(batch, Some(TAKE_WAIT)).await
        } else {
            q.take(Some(TAKE_WAIT)).await.map(|d| d.into_iter().collect())
        }
    })
    .await;
    let ds: Vec<Delivery> = match r {
        Ok(Ok(ds)) if ds.is_empty() => {
            o.outcome = Outcome::Fail;
            o.complete_ns = Some(ctx.rec.now());
            o.error = Some("empty".into());
            ctx.rec.push(o);
            return (false, false);
        }
        Ok(Ok(ds)) => ds,
        Ok(Err(e)) => {
            // Claims may have been made; their messages come back after the lease.
            o.expected = Some(batch as i64);
            o.error = Some(e.to_string());
            ctx.rec.push(o);
            return (true, matches!(e, QueueError::SessionExpired));
        }
        Err(_) => {
            o.expected = Some(batch as i64);
            o.error = Some("timeout".into());
            ctx.rec.push(o);
            return (true, false);
        }
    };
    let done = ctx.rec.now();
    for d in &ds {
        let mut t = o.clone();
        t.value = Some(payload(d).unwrap_or(-1));
        t.outcome = Outcome::Ok;
        t.complete_ns = Some(done);
        if payload(d).is_none() {
            t.error = Some(format!("payload is no number: {:?}", String::from_utf8_lossy(&d.payload)));
        }
        ctx.rec.push(t);
    }
    // Left to its lease, as by a consumer that crashed.
    if rng.gen_ratio(1, 30) {
        return (false, false);
    }
    if let ([d], 1) = (ds.as_slice(), batch) {
        let mut a = ctx.op(process, session, KEY, Kind::Ack, payload(d).or(Some(-1)));
        let r = tokio::time::timeout(OP_TIMEOUT, q.ack(d)).await;
        let r = record(ctx, &mut a, r.map(|r| r.map(|()| false)));
        ctx.rec.push(a);
        return r;
    }
    let acks: Vec<_> = ds.iter().map(|d| ctx.op(process, session.clone(), KEY, Kind::Ack, payload(d).or(Some(-1)))).collect();
    let r = tokio::time::timeout(OP_TIMEOUT, q.ack_batch(&ds)).await;
    super::queue::settle_ack_batch(&ctx.rec, acks, &r)
}
