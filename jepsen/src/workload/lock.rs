//! The lock workload, with ZooKeeper's lock recipe: create an ephemeral
//! sequential node `/jepsen/lock/lock-N`; list the children; if ours is the
//! lowest we hold the lock, else watch the next lower one (exists with a
//! watch) and, once it is gone, list again. Hold briefly, then release by
//! deleting our node. The acquire is recorded from the create to the
//! moment we know we hold; the release around the delete.

use super::{definite, error_name, session, Ctx, OP_TIMEOUT};
use crate::check::history::{Kind, Outcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};
use zookeeper_client as zk;

pub const PARENT: &str = "/jepsen/lock";
pub const KEY: &str = "lock";

pub async fn setup(c: &zk::Client) -> Result<(), String> {
    super::create(c, PARENT, b"").await
}

fn sequence(name: &str) -> Option<i64> {
    name.strip_prefix("lock-")?.parse().ok()
}

/// Waits until node `seq` is the lowest; `Err` says why it gave up (the run
/// ended, an error, the node gone with the session).
async fn wait_until_lowest(c: &zk::Client, seq: i64, deadline: Instant) -> Result<(), String> {
    loop {
        if Instant::now() >= deadline {
            return Err("gave up: the run ended".into());
        }
        let names = match tokio::time::timeout(OP_TIMEOUT, c.list_children(PARENT)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(format!("getChildren: {}", error_name(&e))),
            Err(_) => return Err("getChildren: timeout".into()),
        };
        if !names.iter().any(|n| sequence(n) == Some(seq)) {
            return Err("our node is gone (the session expired)".into());
        }
        // The next lower node, the one to wait for.
        let Some((_, before)) = names.iter().filter_map(|n| sequence(n).map(|s| (s, n))).filter(|(s, _)| *s < seq).max() else {
            return Ok(());
        };
        let path = format!("{PARENT}/{before}");
        let watcher = match tokio::time::timeout(OP_TIMEOUT, c.check_and_watch_stat(&path)).await {
            Ok(Ok((Some(_), w))) => w,
            Ok(Ok((None, _))) => continue, // gone already
            Ok(Err(e)) => return Err(format!("exists: {}", error_name(&e))),
            Err(_) => return Err("exists: timeout".into()),
        };
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), watcher.changed()).await {
            Ok(e) if e.event_type == zk::EventType::Session => return Err(format!("session {:?}", e.session_state)),
            Ok(_) => {}
            Err(_) => return Err("gave up waiting: the run ended".into()),
        }
    }
}

/// Acquire, hold 5–25 ms, release; again until the deadline.
pub async fn worker(ctx: Ctx) {
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ (0x9e37_79b9 * (ctx.id as u64 + 1)));
    let mut process = ctx.id as u64;
    let mut client: Option<zk::Client> = None;
    let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let prefix = format!("{PARENT}/lock-");
    while Instant::now() < ctx.deadline {
        ctx.pace.wait().await;
        let Some(c) = client.as_ref() else {
            client = ctx.connect().await;
            continue;
        };
        let session = session(c);
        let mut acq = ctx.op(process, session.clone(), KEY, Kind::Acquire, None);
        let created = tokio::time::timeout(OP_TIMEOUT, c.create(&prefix, b"", &opts)).await;
        let seq = match created {
            Ok(Ok((_, seq))) => seq.into_i64(),
            Ok(Err(e)) if definite(&e) => {
                acq.outcome = Outcome::Fail;
                acq.complete_ns = Some(ctx.rec.now());
                acq.error = Some(error_name(&e));
                ctx.rec.push(acq);
                continue;
            }
            other => {
                // Our node may exist: a new session (closing this one
                // removes it) and a new process.
                acq.error = Some(match other {
                    Ok(Err(e)) => error_name(&e),
                    _ => "timeout".into(),
                });
                ctx.rec.push(acq);
                client = None;
                process += ctx.workers as u64;
                continue;
            }
        };
        acq.value = Some(seq);
        if let Err(e) = wait_until_lowest(c, seq, ctx.deadline).await {
            // Never held. Closing the session removes our node.
            acq.outcome = Outcome::Fail;
            acq.complete_ns = Some(ctx.rec.now());
            acq.error = Some(e);
            ctx.rec.push(acq);
            client = None;
            continue;
        }
        acq.outcome = Outcome::Ok;
        acq.complete_ns = Some(ctx.rec.now());
        ctx.rec.push(acq);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..=25))).await;
        let mut rel = ctx.op(process, session, KEY, Kind::Release, Some(seq));
        let deleted = tokio::time::timeout(OP_TIMEOUT, c.delete(&format!("{prefix}{}", zk_name(seq)), None)).await;
        match deleted {
            Ok(Ok(())) => {
                rel.outcome = Outcome::Ok;
                rel.complete_ns = Some(ctx.rec.now());
            }
            Ok(Err(e)) if definite(&e) => {
                // NoNode: the node went with the session, before the release.
                rel.outcome = Outcome::Fail;
                rel.complete_ns = Some(ctx.rec.now());
                rel.error = Some(error_name(&e));
                client = None;
            }
            other => {
                // The node may still be there, and would block everyone:
                // a new session (closing this one removes it).
                rel.error = Some(match other {
                    Ok(Err(e)) => error_name(&e),
                    _ => "timeout".into(),
                });
                client = None;
                process += ctx.workers as u64;
            }
        }
        ctx.rec.push(rel);
    }
}

/// A sequence number as ZooKeeper writes it in a node's name.
fn zk_name(seq: i64) -> String {
    if seq <= i64::from(i32::MAX) {
        format!("{seq:010}")
    } else {
        format!("{seq:019}")
    }
}
