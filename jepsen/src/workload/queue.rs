//! The queue workload, on our queue crate (`corral_queue::NativeQueue`,
//! docs/queue.md): half the workers (even ids) put keyed messages with
//! unique payloads N (key `kN`), the others take and ack them; now and then
//! a consumer leaves a delivery unacked, to its lease (2 s), as a crashed
//! consumer would. After the run the queue is drained (`drain`).

use super::{connect, members, session, Ctx, OP_TIMEOUT};
use crate::check::history::{Kind, Op, Outcome, FINAL_PROCESS};
use corral_queue::{Message, Meta, NativeQueue, PutOutcome, QueueError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use zookeeper_client as zk;

pub const PATH: &str = "/jepsen/queue";
pub const KEY: &str = "queue";
/// Short leases, so that abandoned deliveries come back within the run.
pub(super) const LEASE_MS: u64 = 2000;
/// How long a take waits for a message before it reports none.
pub(super) const TAKE_WAIT: Duration = Duration::from_millis(500);

pub async fn setup(c: &zk::Client) -> Result<(), String> {
    // No dead-lettering: every message stays deliverable until acked.
    let meta = Meta { lease_ms: LEASE_MS, max_attempts: 0, ..Meta::default() };
    NativeQueue::create(c, PATH, meta).await.map(|_| ()).map_err(|e| format!("setup: create the queue {PATH}: {e}"))
}

pub(super) fn payload(d: &corral_queue::Delivery) -> Option<i64> {
    super::parse(&d.payload)
}

/// Whether a queue error says the operation certainly did nothing.
pub(super) fn definite(e: &QueueError) -> bool {
    matches!(e, QueueError::Full { .. } | QueueError::TooLarge { .. } | QueueError::Invalid(_) | QueueError::BadPath { .. } | QueueError::ClaimLost { .. })
}

pub(super) async fn open(ctx: &Ctx, path: &str) -> Option<NativeQueue> {
    let c = ctx.connect().await?;
    match tokio::time::timeout(OP_TIMEOUT, NativeQueue::open(&c, path)).await {
        Ok(Ok(q)) => Some(q),
        _ => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

pub async fn worker(ctx: Ctx) {
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ (0x51_7cc1 * (ctx.id as u64 + 1)));
    let producer = ctx.id % 2 == 0;
    let mut process = ctx.id as u64;
    let mut queue: Option<NativeQueue> = None;
    while Instant::now() < ctx.deadline {
        ctx.pace.wait().await;
        let Some(q) = queue.as_ref() else {
            queue = open(&ctx, PATH).await;
            continue;
        };
        let session = session(q.client());
        let (indeterminate, expired) = if producer {
            let v = ctx.next.fetch_add(1, Ordering::Relaxed);
            let mut o = ctx.op(process, session, KEY, Kind::Put, Some(v));
            let r = tokio::time::timeout(OP_TIMEOUT, q.put(Message::new(v.to_string()).key(format!("k{v}")))).await;
            let r = record(&ctx, &mut o, r.map(|r| r.map(|p| matches!(p, PutOutcome::Duplicate { .. }))));
            ctx.rec.push(o);
            r
        } else {
            let mut o = ctx.op(process, session.clone(), KEY, Kind::Take, None);
            let mut expired = false;
            let r = tokio::time::timeout(OP_TIMEOUT + TAKE_WAIT, q.take(Some(TAKE_WAIT))).await;
            let d = match r {
                Ok(Ok(Some(d))) => {
                    o.value = Some(payload(&d).unwrap_or(-1));
                    o.outcome = Outcome::Ok;
                    o.complete_ns = Some(ctx.rec.now());
                    if payload(&d).is_none() {
                        o.error = Some(format!("payload is no number: {:?}", String::from_utf8_lossy(&d.payload)));
                    }
                    Some(d)
                }
                Ok(Ok(None)) => {
                    o.outcome = Outcome::Fail;
                    o.complete_ns = Some(ctx.rec.now());
                    o.error = Some("empty".into());
                    None
                }
                Ok(Err(e)) => {
                    // A claim may have been made; its message comes back after the lease.
                    expired = matches!(e, QueueError::SessionExpired);
                    o.error = Some(e.to_string());
                    None
                }
                Err(_) => {
                    o.error = Some("timeout".into());
                    None
                }
            };
            let taken = o.outcome != Outcome::Info;
            ctx.rec.push(o);
            match d {
                // Left to its lease, as by a consumer that crashed.
                Some(_) if rng.gen_ratio(1, 30) => (false, false),
                Some(d) => {
                    let mut a = ctx.op(process, session, KEY, Kind::Ack, payload(&d).or(Some(-1)));
                    let r = tokio::time::timeout(OP_TIMEOUT, q.ack(&d)).await;
                    let r = record(&ctx, &mut a, r.map(|r| r.map(|()| false)));
                    ctx.rec.push(a);
                    r
                }
                None => (!taken, expired),
            }
        };
        if indeterminate {
            process += ctx.workers as u64;
        }
        if expired {
            queue = None;
        }
    }
}

/// Fills in a put's or ack's outcome; returns whether it was indeterminate
/// and whether the session is gone.
pub(super) fn record(ctx: &Ctx, o: &mut Op, r: Result<Result<bool, QueueError>, tokio::time::error::Elapsed>) -> (bool, bool) {
    match r {
        Ok(Ok(duplicate)) => {
            o.outcome = Outcome::Ok;
            o.complete_ns = Some(ctx.rec.now());
            if duplicate {
                o.error = Some("the key was put before".into());
            }
            (false, false)
        }
        Ok(Err(e)) if definite(&e) => {
            o.outcome = Outcome::Fail;
            o.complete_ns = Some(ctx.rec.now());
            o.error = Some(e.to_string());
            (false, false)
        }
        Ok(Err(e)) => {
            let expired = matches!(e, QueueError::SessionExpired);
            o.error = Some(e.to_string());
            (true, expired)
        }
        Err(_) => {
            o.error = Some("timeout".into());
            (true, false)
        }
    }
}

/// After the run, with every fault undone: takes and acks (as
/// `FINAL_PROCESS`) the queue at `path` until a take finds nothing and its
/// depth is 0, then records its stats as a read of `key`: `value` the
/// depth, `values` [enqueued_total, removed_total, redeliveries]. Claims of
/// dead consumers come back when their lease ends. Tried on each member in
/// turn.
/// Records the outcome of each ack of an `ack_batch` (one op per delivery,
/// all completing when the batch did); returns whether any was
/// indeterminate and whether the session expired.
pub(super) fn settle_ack_batch(rec: &super::Recorder, acks: Vec<Op>, r: &Result<Result<Vec<Result<(), QueueError>>, QueueError>, tokio::time::error::Elapsed>) -> (bool, bool) {
    let done = rec.now();
    let (mut indeterminate, mut expired) = (false, false);
    for (i, mut a) in acks.into_iter().enumerate() {
        let unknown = |a: &mut Op, e: &QueueError| {
            a.error = Some(e.to_string());
            matches!(e, QueueError::SessionExpired)
        };
        match r {
            Ok(Ok(results)) => match results.get(i) {
                Some(Ok(())) => {
                    a.outcome = Outcome::Ok;
                    a.complete_ns = Some(done);
                }
                Some(Err(e)) if definite(e) => {
                    a.outcome = Outcome::Fail;
                    a.complete_ns = Some(done);
                    a.error = Some(e.to_string());
                }
                Some(Err(e)) => {
                    expired |= unknown(&mut a, e);
                    indeterminate = true;
                }
                None => {
                    a.error = Some("ack_batch returned no result for it".into());
                    indeterminate = true;
                }
            },
            Ok(Err(e)) => {
                expired |= unknown(&mut a, e);
                indeterminate = true;
            }
            Err(_) => {
                a.error = Some("timeout".into());
                indeterminate = true;
            }
        }
        rec.push(a);
    }
    (indeterminate, expired)
}

/// Messages the final drain takes (and acks) at a time.
const DRAIN_BATCH: usize = 64;

pub async fn drain(hosts: &[String], rec: &super::Recorder, timeout: Duration, path: &str, key: &str) -> Result<(), String> {
    let until = Instant::now() + timeout;
    // What each member said last, for the error if none answers.
    let mut said = vec![String::from("not tried"); hosts.len()];
    let mut attempt = 0;
    while Instant::now() < until {
        attempt += 1;
        let member = attempt % hosts.len();
        let Some(c) = connect(&hosts[member]).await else {
            said[member] = "did not take a session".to_string();
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let q = match tokio::time::timeout(OP_TIMEOUT, NativeQueue::open(&c, path)).await {
            Ok(Ok(q)) => q,
            Ok(Err(e)) => {
                said[member] = format!("open: {e}");
                continue;
            }
            Err(_) => {
                said[member] = "open timed out".to_string();
                continue;
            }
        };
        let op = |f, value| {
            let mut o = Op::new(FINAL_PROCESS, key, f, value, None, rec.now(), None, Outcome::Info);
            o.member = Some(member as u32 + 1);
            o.session = session(&c);
            o
        };
        loop {
            if Instant::now() > until {
                break;
            }
            let mut t = op(Kind::Take, None);
            // In batches: a backlog left by flat-out producers (thousands a
            // second) must drain within the final read's time.
            match tokio::time::timeout(OP_TIMEOUT + Duration::from_secs(1), q.take_batch(DRAIN_BATCH, Some(Duration::from_secs(1)))).await {
                Ok(Ok(ds)) if !ds.is_empty() => {
                    let done = rec.now();
                    for d in &ds {
                        let mut t = t.clone();
                        t.value = Some(payload(d).unwrap_or(-1));
                        t.outcome = Outcome::Ok;
                        t.complete_ns = Some(done);
                        rec.push(t);
                    }
                    let acks: Vec<Op> = ds.iter().map(|d| op(Kind::Ack, payload(d).or(Some(-1)))).collect();
                    let r = tokio::time::timeout(OP_TIMEOUT, q.ack_batch(&ds)).await;
                    settle_ack_batch(rec, acks, &r);
                }
                Ok(Ok(_)) => {
                    // Nothing deliverable now: done if nothing is left at all.
                    let mut d = op(Kind::Read, None);
                    match tokio::time::timeout(OP_TIMEOUT, q.stats()).await {
                        Ok(Ok(s)) => {
                            d.value = Some(s.depth as i64);
                            d.values = Some(vec![s.enqueued_total as i64, s.removed_total as i64, s.redeliveries as i64]);
                            d.outcome = Outcome::Ok;
                            d.complete_ns = Some(rec.now());
                            rec.push(d);
                            if s.depth == 0 {
                                return Ok(());
                            }
                        }
                        Ok(Err(e)) => {
                            said[member] = format!("stats: {e}");
                            break;
                        }
                        Err(_) => {
                            said[member] = "stats timed out".to_string();
                            break;
                        }
                    }
                }
                Ok(Err(e)) => {
                    t.error = Some(e.to_string());
                    rec.push(t);
                    said[member] = format!("take: {e}");
                    break;
                }
                Err(_) => {
                    t.error = Some("timeout".into());
                    rec.push(t);
                    said[member] = "take timed out".to_string();
                    break;
                }
            }
        }
    }
    Err(format!("drain: the queue was not empty after {timeout:?}: {}", members(&said)))
}
