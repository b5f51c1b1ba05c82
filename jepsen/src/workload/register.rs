//! The register workload: reads, writes and CAS (a read, then setData with
//! the version it saw) on a few keys, `/jepsen/r0` … `/jepsen/r{K-1}`.

use super::{error_name, fatal, parse, session, Ctx, Recorder, OP_TIMEOUT};
use crate::check::history::{Kind, Op, Outcome, SETUP_PROCESS};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use zookeeper_client as zk;

/// Creates the keys with value 0, recorded as writes of the setup process.
pub async fn setup(c: &zk::Client, keys: usize, rec: &Recorder) -> Result<(), String> {
    for k in 0..keys {
        let invoke = rec.now();
        super::create(c, &format!("/jepsen/r{k}"), b"0").await?;
        rec.push(Op::new(SETUP_PROCESS, &format!("r{k}"), Kind::Write, Some(0), None, invoke, Some(rec.now()), Outcome::Ok));
    }
    Ok(())
}

/// One worker, bound to one member as real deployments bind clients to a
/// server: reads, writes and CAS (a read, then setData with the version it
/// saw) on random keys until the deadline (readers: reads only). After an indeterminate op it goes
/// on as a new process, since the old op may still be in flight.
pub async fn worker(ctx: Ctx, keys: usize) {
    let (w, workers, members) = (ctx.id, ctx.workers, ctx.members);
    let (rec, next_value) = (&ctx.rec, &ctx.next);
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ (0x9e37_79b9 * (w as u64 + 1)));
    let mut process = w as u64;
    let mut client: Option<zk::Client> = None;
    // Every other worker of a member only reads, as many clients of a
    // coordination service do. Such a session never waits behind a write of
    // its own, which on a member cut off from the majority would hold its
    // reads back (ZooKeeper's per-session order) and hide what they see.
    let reader = (w / members) % 2 == 1;
    while Instant::now() < ctx.deadline {
        ctx.pace.wait().await;
        let Some(c) = client.as_ref() else {
            client = super::connect(&ctx.host).await;
            if client.is_none() {
                // Back off: the member is down, paused or cut off.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let session = session(c);
        let key = format!("r{}", rng.gen_range(0..keys));
        let path = format!("/jepsen/{key}");
        let op = |f, value, expected| {
            let mut o = ctx.op(process, session.clone(), &key, f, value);
            o.expected = expected;
            o
        };
        let roll = if reader { 0 } else { rng.gen_range(0..4) };
        // Every CAS starts with a read, recorded as one; a plain write does not read.
        let seen = if roll == 2 {
            None
        } else {
            let mut read = op(Kind::Read, None, None);
            let got = tokio::time::timeout(OP_TIMEOUT, c.get_data(&path)).await;
            read.complete_ns = Some(rec.now());
            let seen = match got {
                Ok(Ok((data, stat))) => {
                    read.outcome = Outcome::Ok;
                    read.value = parse(&data);
                    Some((read.value, stat.version))
                }
                Ok(Err(e)) => {
                    read.outcome = Outcome::Fail;
                    read.error = Some(error_name(&e));
                    if fatal(&e) {
                        client = None;
                    }
                    None
                }
                Err(_) => {
                    read.outcome = Outcome::Fail;
                    read.error = Some("timeout".into());
                    None
                }
            };
            rec.push(read);
            seen
        };
        if roll < 2 || (roll == 3 && seen.is_none()) {
            continue;
        }
        let Some(c) = client.as_ref() else { continue };
        let value = next_value.fetch_add(1, Ordering::Relaxed);
        let (f, expected, version) = match (roll, seen) {
            (3, Some((v, version))) => (Kind::Cas, v, Some(version)),
            _ => (Kind::Write, None, None),
        };
        let mut o = op(f, Some(value), expected);
        let r = tokio::time::timeout(OP_TIMEOUT, c.set_data(&path, value.to_string().as_bytes(), version)).await;
        match r {
            Ok(Ok(_)) => {
                o.outcome = Outcome::Ok;
                o.complete_ns = Some(rec.now());
            }
            Ok(Err(zk::Error::BadVersion)) if f == Kind::Cas => {
                o.outcome = Outcome::Fail;
                o.complete_ns = Some(rec.now());
                o.error = Some("BadVersion".into());
            }
            Ok(Err(e)) => {
                // Anything else may or may not have been applied (a
                // connection lost after the request went out).
                o.error = Some(error_name(&e));
                if fatal(&e) {
                    client = None;
                }
                process += workers as u64;
            }
            Err(_) => {
                o.error = Some("timeout".into());
                process += workers as u64;
            }
        }
        rec.push(o);
    }
}
