//! The unique-ids workload: workers create persistent sequential nodes
//! `/jepsen/ids/id-NNNNNNNNNN`; the sequence number is the id.

use super::{definite, error_name, fatal, session, Ctx, OP_TIMEOUT};
use crate::check::history::{Kind, Outcome};
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
        let Some(c) = client.as_ref() else {
            client = ctx.connect().await;
            continue;
        };
        let mut o = ctx.op(process, session(c), KEY, Kind::Generate, None);
        let r = tokio::time::timeout(OP_TIMEOUT, c.create(&prefix, b"", &opts)).await;
        match r {
            Ok(Ok((_, seq))) => {
                o.outcome = Outcome::Ok;
                o.complete_ns = Some(ctx.rec.now());
                o.value = Some(seq.into_i64());
            }
            Ok(Err(e)) if definite(&e) => {
                o.outcome = Outcome::Fail;
                o.complete_ns = Some(ctx.rec.now());
                o.error = Some(error_name(&e));
            }
            Ok(Err(e)) => {
                o.error = Some(error_name(&e));
                if fatal(&e) {
                    client = None;
                }
                process += ctx.workers as u64;
            }
            Err(_) => {
                o.error = Some("timeout".into());
                process += ctx.workers as u64;
            }
        }
        ctx.rec.push(o);
    }
}
