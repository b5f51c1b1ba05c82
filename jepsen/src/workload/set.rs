//! The set workload: workers add unique elements N as persistent children
//! `/jepsen/set/eN`; after the run a final read (getChildren) lists them
//! (`super::final_read`).

use super::{session, Ctx, Settled, OP_TIMEOUT};
use crate::check::history::Kind;
use std::sync::atomic::Ordering;
use std::time::Instant;
use zookeeper_client as zk;

pub const PARENT: &str = "/jepsen/set";
pub const KEY: &str = "set";

pub async fn setup(c: &zk::Client) -> Result<(), String> {
    super::create(c, PARENT, b"").await
}

/// Children's names as elements, and the names that are none.
pub fn elements(names: &[String]) -> (Vec<i64>, Vec<String>) {
    let mut values = Vec::new();
    let mut bad = Vec::new();
    for n in names {
        match n.strip_prefix('e').and_then(|v| v.parse().ok()) {
            Some(v) => values.push(v),
            None => bad.push(n.clone()),
        }
    }
    values.sort_unstable();
    (values, bad)
}

pub async fn worker(ctx: Ctx) {
    let mut process = ctx.id as u64;
    let mut client: Option<zk::Client> = None;
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    while Instant::now() < ctx.deadline {
        ctx.pace.wait().await;
        let Some(c) = client.as_ref() else {
            client = ctx.connect().await;
            continue;
        };
        let v = ctx.next.fetch_add(1, Ordering::Relaxed);
        let mut o = ctx.op(process, session(c), KEY, Kind::Add, Some(v));
        let r = tokio::time::timeout(OP_TIMEOUT, c.create(&format!("{PARENT}/e{v}"), b"", &opts)).await;
        if let Settled::Unknown { session_gone } = ctx.settle(&mut o, r, |_, _| {})         {
            if session_gone {
                client = None;
            }
            process += ctx.workers as u64;
        }
        ctx.rec.push(o);
    }
}
