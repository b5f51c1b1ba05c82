//! The counter workload: one node, `/jepsen/counter`, holds a number (0 at
//! first, recorded as the setup's write). Workers read it (getData) or add
//! one by a CAS loop: getData, then setData of value + 1 with the version
//! read, again from the read on BadVersion. After the run a final read
//! (`super::final_read`) takes the total.

use super::{definite, error_name, fatal, parse, session, Ctx, Recorder, OP_TIMEOUT};
use crate::check::history::{Kind, Op, Outcome, SETUP_PROCESS};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;
use zookeeper_client as zk;

pub const PATH: &str = "/jepsen/counter";
pub const KEY: &str = "counter";

pub async fn setup(c: &zk::Client, rec: &Recorder) -> Result<(), String> {
    let invoke = rec.now();
    super::create(c, PATH, b"0").await?;
    rec.push(Op::new(SETUP_PROCESS, KEY, Kind::Write, Some(0), None, invoke, Some(rec.now()), Outcome::Ok));
    Ok(())
}

/// How an increment ended.
enum Incr {
    /// Wrote `value`, having read `expected`.
    Ok { expected: i64, value: i64 },
    /// Nothing written: a read failed, the node held no number, or
    /// BadVersion until the op's time was up. And whether the session is gone.
    Fail(String, bool),
    /// A setData whose answer never came (or was not the server's refusal):
    /// it may have taken effect.
    Info(String, bool),
}

async fn increment(c: &zk::Client, until: Instant) -> Incr {
    let mut tries = 0;
    loop {
        tries += 1;
        let left = until.saturating_duration_since(Instant::now());
        let (data, stat) = match tokio::time::timeout(left, c.get_data(PATH)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Incr::Fail(format!("read: {}", error_name(&e)), fatal(&e)),
            Err(_) => return Incr::Fail(format!("read: timeout after {tries} tries"), false),
        };
        let Some(v) = parse(&data) else { return Incr::Fail("the node holds no number".into(), false) };
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.set_data(PATH, (v + 1).to_string().as_bytes(), Some(stat.version))).await {
            Ok(Ok(_)) => return Incr::Ok { expected: v, value: v + 1 },
            Ok(Err(zk::Error::BadVersion)) if Instant::now() < until => continue,
            Ok(Err(e)) if definite(&e) => return Incr::Fail(format!("{} after {tries} tries", error_name(&e)), false),
            Ok(Err(e)) => return Incr::Info(error_name(&e), fatal(&e)),
            Err(_) => return Incr::Info("timeout".into(), false),
        }
    }
}

/// Half reads, half increments, on one member until the deadline.
pub async fn worker(ctx: Ctx) {
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ (0x9e37_79b9 * (ctx.id as u64 + 1)));
    let mut process = ctx.id as u64;
    let mut client: Option<zk::Client> = None;
    while Instant::now() < ctx.deadline {
        ctx.pace.wait().await;
        let Some(c) = client.as_ref() else {
            client = ctx.connect().await;
            continue;
        };
        if rng.gen_bool(0.5) {
            let mut o = ctx.op(process, session(c), KEY, Kind::Read, None);
            let got = tokio::time::timeout(OP_TIMEOUT, c.get_data(PATH)).await;
            o.complete_ns = Some(ctx.rec.now());
            match got {
                Ok(Ok((data, _))) => {
                    o.outcome = Outcome::Ok;
                    o.value = parse(&data);
                }
                Ok(Err(e)) => {
                    o.outcome = Outcome::Fail;
                    o.error = Some(error_name(&e));
                    if fatal(&e) {
                        client = None;
                    }
                }
                Err(_) => {
                    o.outcome = Outcome::Fail;
                    o.error = Some("timeout".into());
                }
            }
            ctx.rec.push(o);
            continue;
        }
        let mut o = ctx.op(process, session(c), KEY, Kind::Incr, None);
        match increment(c, Instant::now() + OP_TIMEOUT).await {
            Incr::Ok { expected, value } => {
                o.outcome = Outcome::Ok;
                o.complete_ns = Some(ctx.rec.now());
                o.expected = Some(expected);
                o.value = Some(value);
            }
            Incr::Fail(e, gone) => {
                o.outcome = Outcome::Fail;
                o.complete_ns = Some(ctx.rec.now());
                o.error = Some(e);
                if gone {
                    client = None;
                }
            }
            Incr::Info(e, gone) => {
                o.error = Some(e);
                if gone {
                    client = None;
                }
                process += ctx.workers as u64;
            }
        }
        ctx.rec.push(o);
    }
}

