//! The unique-ids workload: workers create persistent sequential nodes
//! `/jepsen/ids/id-NNNNNNNNNN`; the sequence number is the id.

use super::{session, Ctx, Settled, OP_TIMEOUT};
use crate::check::history::Kind;
use std::time::Instant;
use zookeeper_client as zk;

pub const PARENT: &str = "/jepsen/ids";
pub const KEY: &str = "ids";

pub async fn setup(c: &zk::Client) -> Result<(), String> {
    super::create(c, PARENT, b"").await
}

pub async fn worker(ctx: Ctx) {
    let mut process = ctx.id as u64;
    let mut client: Option<zk::Client> = None;
    let opts = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let prefix = format!("{PARENT}/id-");
    while Instant::now() < ctx.deadline {
        ctx.pace.wait().await;
        let Some(c) = client.as_ref() else {
            client = ctx.connect().await;
            continue;
        };
        let mut o = ctx.op(process, session(c), KEY, Kind::Generate, None);
        let r = tokio::time::timeout(OP_TIMEOUT, c.create(&prefix, b"", &opts)).await;
        if let Settled::Unknown { session_gone } = ctx.settle(&mut o, r, |o, (_, seq)| o.value = Some(seq.into_i64()))         {
            if session_gone {
                client = None;
            }
            process += ctx.workers as u64;
        }
        ctx.rec.push(o);
    }
}
