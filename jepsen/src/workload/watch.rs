//! The watch workload: keys `/jepsen/w0` … `/jepsen/w{K-1}`, created with
//! `0`. The first one or two workers write: each owns a share of the keys
//! and sets them, in turn, to increasing values (one counter for the run).
//! The others watch every key: a getData with a watch on each, then, each
//! time a watch fires, the event and a getData that sets it again.

use super::{error_name, fatal, parse, session, Ctx, Recorder, Settled, OP_TIMEOUT};
use crate::check::history::{Kind, Op, Outcome, SETUP_PROCESS};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use zookeeper_client as zk;

pub fn path(k: usize) -> String {
    format!("/jepsen/w{k}")
}

pub async fn setup(c: &zk::Client, keys: usize, rec: &Recorder) -> Result<(), String> {
    for k in 0..keys {
        let mut o = Op::new(SETUP_PROCESS, &format!("w{k}"), Kind::Write, Some(0), None, rec.now(), None, Outcome::Info);
        super::create(c, &path(k), b"0").await?;
        o.outcome = Outcome::Ok;
        o.complete_ns = Some(rec.now());
        o.expected = Some(0);
        rec.push(o);
    }
    Ok(())
}

/// How many of the workers write.
fn writers(workers: usize) -> usize {
    if workers >= 4 {
        2
    } else {
        1
    }
}

pub async fn worker(ctx: Ctx, keys: usize) {
    let w = writers(ctx.workers);
    if ctx.id < w {
        let mine: Vec<usize> = (0..keys).filter(|k| k % w == ctx.id).collect();
        writer(ctx, &mine).await
    } else if ctx.workers > w {
        watcher(ctx, keys).await
    }
}

async fn writer(ctx: Ctx, keys: &[usize]) {
    let mut process = ctx.id as u64;
    let mut client: Option<zk::Client> = None;
    let mut turn = 0;
    while Instant::now() < ctx.deadline && !keys.is_empty() {
        ctx.pace.wait().await;
        let Some(c) = client.as_ref() else {
            client = ctx.connect().await;
            continue;
        };
        let k = keys[turn % keys.len()];
        turn += 1;
        let v = ctx.next.fetch_add(1, Ordering::Relaxed);
        let mut o = ctx.op(process, session(c), &format!("w{k}"), Kind::Write, Some(v));
        let r = tokio::time::timeout(OP_TIMEOUT, c.set_data(&path(k), v.to_string().as_bytes(), None)).await;
        if let Settled::Unknown { session_gone } = ctx.settle(&mut o, r, |o, stat| o.expected = Some(stat.version as i64))         {
            if session_gone {
                client = None;
            }
            process += ctx.workers as u64;
        }
        ctx.rec.push(o);
        // A pace the watchers can follow now and then.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// A watch that fired: the key, when it was set, what it said.
type Fired = (usize, u64, zk::WatchedEvent);

/// Reads key `k` with a watch (retrying until it answers), records the read
/// and hands the watch to a task that reports its event on `tx`. `Err`:
/// the session is gone, or the time is up.
async fn observe(ctx: &Ctx, c: &zk::Client, process: u64, k: usize, tx: &mpsc::UnboundedSender<Fired>) -> Result<(), ()> {
    while Instant::now() < ctx.deadline {
        let mut o = ctx.op(process, session(c), &format!("w{k}"), Kind::Observe, None);
        match tokio::time::timeout(OP_TIMEOUT, c.get_and_watch_data(&path(k))).await {
            Ok(Ok((data, stat, watcher))) => {
                let now = ctx.rec.now();
                o.outcome = Outcome::Ok;
                o.complete_ns = Some(now);
                o.value = parse(&data);
                o.expected = Some(stat.version as i64);
                ctx.rec.push(o);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send((k, now, watcher.changed().await));
                });
                return Ok(());
            }
            Ok(Err(e)) => {
                // A failed read changes nothing (and set no watch).
                o.outcome = Outcome::Fail;
                o.complete_ns = Some(ctx.rec.now());
                o.error = Some(error_name(&e));
                ctx.rec.push(o);
                if fatal(&e) {
                    return Err(());
                }
            }
            Err(_) => {
                o.outcome = Outcome::Fail;
                o.complete_ns = Some(ctx.rec.now());
                o.error = Some("timeout".into());
                ctx.rec.push(o);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(())
}

async fn watcher(ctx: Ctx, keys: usize) {
    let mut process = ctx.id as u64;
    'session: while Instant::now() < ctx.deadline {
        let Some(c) = ctx.connect().await else { continue };
        let (tx, mut rx) = mpsc::unbounded_channel::<Fired>();
        for k in 0..keys {
            if observe(&ctx, &c, process, k, &tx).await.is_err() {
                process += ctx.workers as u64;
                continue 'session;
            }
        }
        loop {
            let left = ctx.deadline.saturating_duration_since(Instant::now());
            let Ok(Some((k, set_ns, event))) = tokio::time::timeout(left, rx.recv()).await else { break 'session };
            let mut o = Op::new(process, &format!("w{k}"), Kind::Event, None, None, set_ns, Some(ctx.rec.now()), Outcome::Ok);
            o.member = ctx.member_id();
            o.session = session(&c);
            if event.event_type != zk::EventType::NodeDataChanged {
                o.error = Some(format!("{:?} {:?}", event.event_type, event.session_state));
            }
            ctx.rec.push(o);
            if event.event_type == zk::EventType::Session {
                // Expired or closed: a new session, a new history.
                process += ctx.workers as u64;
                continue 'session;
            }
            if observe(&ctx, &c, process, k, &tx).await.is_err() {
                process += ctx.workers as u64;
                continue 'session;
            }
        }
    }
}
