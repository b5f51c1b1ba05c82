//! The session workload. Every worker but the last is an owner: it opens a
//! session, creates an ephemeral node `/jepsen/session/eN` (N unique for
//! the run). Every 50 ms for 0.3–1.5 s (half the sessions; the others
//! 5–8 s, beyond the session timeout) it checks it (exists, which returns
//! its ephemeralOwner) or, in turn, sets its data (a write, through the
//! log); then it closes the session; again until the time is up. The last
//! worker observes: it lists the nodes and checks the owners of a few of
//! them, each behind a sync, in its own session. After the run `final_read`
//! waits until the closed sessions' nodes are gone (each deletion awaited
//! with a watch, the session timeout bounding the wait) and lists what is
//! left.

use super::{connect, definite, error_name, fatal, members, session, Ctx, Recorder, OP_TIMEOUT, SESSION_TIMEOUT};
use crate::check::history::{Kind, Op, Outcome, FINAL_PROCESS};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use zookeeper_client as zk;

pub const PARENT: &str = "/jepsen/session";
pub const KEY: &str = "session";
const PACE: Duration = Duration::from_millis(50);

pub async fn setup(c: &zk::Client) -> Result<(), String> {
    super::create(c, PARENT, b"").await
}

fn number(name: &str) -> Option<i64> {
    name.strip_prefix('e')?.parse().ok()
}

pub async fn worker(ctx: Ctx) {
    if ctx.workers > 1 && ctx.id == ctx.workers - 1 {
        observer(ctx).await
    } else {
        owner(ctx).await
    }
}

/// Ends a session: closes it, or records that it expired.
fn close(ctx: &Ctx, process: u64, c: zk::Client, expired: bool) {
    // The session timeout the server granted: the checker holds an expiry
    // against it (no session may expire sooner after a write of its own).
    let granted = c.session_timeout().as_millis() as i64;
    let mut o = ctx.op(process, session(&c), KEY, Kind::Close, Some(granted));
    if expired {
        o.error = Some("SessionExpired".into());
    }
    drop(c);
    o.outcome = Outcome::Ok;
    o.complete_ns = Some(ctx.rec.now());
    ctx.rec.push(o);
}

/// Checks node `n`, recording its owner (none if absent); behind a sync
/// if `sync` (the observer's reads, so that they see every create
/// acknowledged before). `Err(expired)` if it did not answer.
async fn check(ctx: &Ctx, c: &zk::Client, process: u64, n: i64, sync: bool) -> Result<(), bool> {
    let mut o = ctx.op(process, session(c), KEY, Kind::Check, Some(n));
    let path = format!("{PARENT}/e{n}");
    let r = tokio::time::timeout(OP_TIMEOUT, async {
        if sync {
            c.sync(&path).await?;
        }
        c.check_stat(&path).await
    })
    .await;
    o.complete_ns = Some(ctx.rec.now());
    let r = match r {
        Ok(Ok(stat)) => {
            o.outcome = Outcome::Ok;
            o.expected = stat.map(|s| s.ephemeral_owner);
            Ok(())
        }
        Ok(Err(e)) => {
            o.outcome = Outcome::Fail;
            o.error = Some(error_name(&e));
            Err(fatal(&e))
        }
        Err(_) => {
            o.outcome = Outcome::Fail;
            o.error = Some("timeout".into());
            Err(false)
        }
    };
    ctx.rec.push(o);
    r
}

/// Sets node `n`'s data (its owner's own write, `f: write`): ok proves,
/// through the log, that the node existed then; NoNode that it did not
/// while the session was alive. `Err(expired)` if it was no definite answer.
async fn touch(ctx: &Ctx, c: &zk::Client, process: u64, n: i64, i: u64) -> Result<(), bool> {
    let mut o = ctx.op(process, session(c), KEY, Kind::Write, Some(n));
    let r = tokio::time::timeout(OP_TIMEOUT, c.set_data(&format!("{PARENT}/e{n}"), i.to_string().as_bytes(), None)).await;
    let r = match r {
        Ok(Ok(_)) => {
            o.outcome = Outcome::Ok;
            o.complete_ns = Some(ctx.rec.now());
            Ok(())
        }
        Ok(Err(e)) if definite(&e) => {
            o.outcome = Outcome::Fail;
            o.complete_ns = Some(ctx.rec.now());
            o.error = Some(error_name(&e));
            Ok(())
        }
        Ok(Err(e)) => {
            o.error = Some(error_name(&e));
            Err(fatal(&e))
        }
        Err(_) => {
            o.error = Some("timeout".into());
            Err(false)
        }
    };
    ctx.rec.push(o);
    r
}

async fn owner(ctx: Ctx) {
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ (0x5e55_1011 * (ctx.id as u64 + 1)));
    let mut process = ctx.id as u64;
    let opts = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    while Instant::now() < ctx.deadline {
        let Some(c) = ctx.connect().await else { continue };
        let n = ctx.next.fetch_add(1, Ordering::Relaxed);
        let mut o = ctx.op(process, session(&c), KEY, Kind::Create, Some(n));
        let r = tokio::time::timeout(OP_TIMEOUT, c.create(&format!("{PARENT}/e{n}"), b"", &opts)).await;
        let mut expired = false;
        let created = match r {
            Ok(Ok(_)) => {
                o.outcome = Outcome::Ok;
                o.complete_ns = Some(ctx.rec.now());
                true
            }
            Ok(Err(e)) => {
                if definite(&e) {
                    o.outcome = Outcome::Fail;
                    o.complete_ns = Some(ctx.rec.now());
                }
                expired = fatal(&e);
                o.error = Some(error_name(&e));
                false
            }
            Err(_) => {
                o.error = Some("timeout".into());
                false
            }
        };
        ctx.rec.push(o);
        if created {
            // Reads and writes of its own node, in turn.
            // Half the sessions outlive the session timeout: a server that
            // expires a live session (a member's clock, outside the log)
            // shows only on those.
            let life = if rng.gen_bool(0.5) { rng.gen_range(300..=1500) } else { rng.gen_range(5000..=8000) };
            let until = (Instant::now() + Duration::from_millis(life)).min(ctx.deadline);
            let mut i = 0;
            while Instant::now() < until {
                tokio::time::sleep(PACE).await;
                i += 1;
                let r = if i % 2 == 1 { check(&ctx, &c, process, n, false).await } else { touch(&ctx, &c, process, n, i).await };
                if r == Err(true) {
                    expired = true;
                    break;
                }
            }
        }
        // One session a process: its ops are that session's.
        close(&ctx, process, c, expired);
        process += ctx.workers as u64;
    }
}

async fn observer(ctx: Ctx) {
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ 0x0b5e_47e5);
    let mut process = ctx.id as u64;
    while Instant::now() < ctx.deadline {
        let Some(c) = ctx.connect().await else { continue };
        let mut expired = false;
        while Instant::now() < ctx.deadline {
            tokio::time::sleep(PACE).await;
            let names = match tokio::time::timeout(OP_TIMEOUT, c.list_children(PARENT)).await {
                Ok(Ok(names)) => names,
                Ok(Err(e)) if fatal(&e) => {
                    expired = true;
                    break;
                }
                _ => continue,
            };
            let mut ns: Vec<i64> = names.iter().filter_map(|n| number(n)).collect();
            for _ in 0..ns.len().min(3) {
                let n = ns.swap_remove(rng.gen_range(0..ns.len()));
                if let Err(true) = check(&ctx, &c, process, n, true).await {
                    expired = true;
                }
            }
            if expired {
                break;
            }
        }
        close(&ctx, process, c, expired);
        process += ctx.workers as u64;
    }
}

/// After the run, every fault undone and every session closed: waits for
/// the nodes to go (a watch on each, on one member; bounded by three
/// session timeouts, as a session whose close was lost expires a timeout
/// after the new leader took it over), then lists what is left behind a
/// sync, as the final read. Tried on each member in turn.
pub async fn final_read(hosts: &[String], rec: &Recorder, timeout: Duration) -> Result<(), String> {
    let until = Instant::now() + timeout;
    let bound = Instant::now() + 3 * SESSION_TIMEOUT;
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
        loop {
            let mut op = Op::new(FINAL_PROCESS, KEY, Kind::Read, None, None, rec.now(), None, Outcome::Info);
            op.member = Some(member as u32 + 1);
            op.session = session(&c);
            let listed = tokio::time::timeout(OP_TIMEOUT, async {
                c.sync(PARENT).await?;
                c.list_children(PARENT).await
            })
            .await;
            let names = match listed {
                Ok(Ok(names)) => names,
                Ok(Err(e)) => {
                    said[member] = format!("{e}");
                    break;
                }
                Err(_) => {
                    said[member] = "timed out".to_string();
                    break;
                }
            };
            if names.is_empty() || Instant::now() >= bound {
                op.outcome = Outcome::Ok;
                op.complete_ns = Some(rec.now());
                let mut values: Vec<i64> = names.iter().filter_map(|n| number(n)).collect();
                values.sort_unstable();
                let bad: Vec<&str> = names.iter().filter(|n| number(n).is_none()).map(String::as_str).collect();
                if !bad.is_empty() {
                    op.error = Some(format!("children that are no node of this workload: {}", bad.join(" ")));
                }
                op.values = Some(values);
                rec.push(op);
                return Ok(());
            }
            // Wait for the first node left to go, then list again.
            let path = format!("{PARENT}/{}", names[0]);
            match tokio::time::timeout(OP_TIMEOUT, c.check_and_watch_stat(&path)).await {
                Ok(Ok((Some(_), w))) => {
                    let _ = tokio::time::timeout(bound.saturating_duration_since(Instant::now()), w.changed()).await;
                }
                Ok(Ok((None, _))) => {}
                Ok(Err(e)) => {
                    said[member] = format!("{e}");
                    break;
                }
                Err(_) => {
                    said[member] = "timed out".to_string();
                    break;
                }
            }
        }
    }
    Err(format!("final read: nothing for {timeout:?}: {}", members(&said)))
}
