//! Simulated clients: what a ZooKeeper client does, reduced to what the
//! checks need. A client holds one session, talks to one member at a time,
//! keeps up to a few requests in flight, pings when idle, gives up on a
//! member it has not heard from for two thirds of its session timeout, and
//! reconnects elsewhere with its session id, password and last seen zxid.

use std::collections::VecDeque;

use protocol::{CheckVersionRequest, CreateRequest, DeleteRequest, ExistsRequest, GetChildrenRequest, GetDataRequest, MultiOp, MultiRequest, Request, SetDataRequest, SyncRequest};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The paths clients work on: a few registers, a parent for sequential
/// children, and one ephemeral per client.
pub const REGISTERS: &[&str] = &["/r0", "/r1", "/r2", "/r3"];
pub const SEQ_PARENT: &str = "/s";

/// Requests at most in flight per client.
pub const IN_FLIGHT_MAX: usize = 3;

/// Session timeout the clients ask for (milliseconds).
pub const SESSION_TIMEOUT_MS: i32 = 4000;

#[derive(Debug, Clone, PartialEq)]
pub enum ClientState {
    /// Waiting to (re)connect at `retry_at_ms`.
    Disconnected { retry_at_ms: i64 },
    Connecting { node: usize, conn: u64 },
    Connected { node: usize, conn: u64 },
}

/// A request in flight.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub xid: i32,
    pub req: Request,
    pub invoked_ms: i64,
    /// The highest index of a write acknowledged to anyone before this was
    /// sent: a linearizable read must reflect it.
    pub acked_before: u64,
}

#[derive(Debug)]
pub struct Client {
    pub id: usize,
    pub state: ClientState,
    /// 0 until the first connect succeeds; back to 0 when it expired.
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub timeout_ms: i32,
    /// The highest zxid this session has seen in a reply (never goes back).
    pub last_zxid: i64,
    pub next_xid: i32,
    pub in_flight: VecDeque<InFlight>,
    pub last_heard_ms: i64,
    pub last_sent_ms: i64,
    /// Writes acknowledged in the liveness phase (it ends when every client has one).
    pub live_writes: u32,
    /// Sessions this client has started (a new one after each expiry or close).
    pub sessions_started: u32,
    /// The last time a member answered this client (a reply or a connect):
    /// when, which session, and the leader and term that member followed.
    pub served: Option<Served>,
    /// Data values this client has drawn (what makes each one unique).
    pub values_drawn: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub at_ms: i64,
    /// The member that answered.
    pub member: usize,
    pub session_id: i64,
    pub leader: u64,
    pub term: u64,
    /// Whether that member's link to its leader was up.
    pub linked: bool,
}

impl Client {
    pub fn new(id: usize) -> Client {
        Client {
            id,
            state: ClientState::Disconnected { retry_at_ms: 0 },
            session_id: 0,
            passwd: vec![0; 16],
            timeout_ms: SESSION_TIMEOUT_MS,
            last_zxid: 0,
            next_xid: 1,
            in_flight: VecDeque::new(),
            last_heard_ms: 0,
            last_sent_ms: 0,
            live_writes: 0,
            sessions_started: 0,
            served: None,
            values_drawn: 0,
        }
    }

    pub fn ephemeral_path(&self) -> String {
        format!("/e{}", self.id)
    }

    pub fn take_xid(&mut self) -> i32 {
        let x = self.next_xid;
        self.next_xid += 1;
        x
    }
}

/// Unique data per run (client id and count), so a value read names the
/// write that wrote it, as the shared read model needs
/// (`corral_check::read_model`). The draw stays, so each seed still makes
/// the choices it made before the data became unique.
fn data(rng: &mut ChaCha8Rng, client: &mut Client) -> Vec<u8> {
    let n: u32 = rng.gen_range(0..1_000_000);
    client.values_drawn += 1;
    let unique = (client.values_drawn * 1024 + client.id as u64) * 1_000_000 + n as u64;
    unique.to_string().into_bytes()
}

/// A random operation of the workload mix.
pub fn random_request(rng: &mut ChaCha8Rng, client: &mut Client) -> Request {
    let register = REGISTERS[rng.gen_range(0..REGISTERS.len())].to_string();
    let open = vec![protocol::Acl { perms: 31, id: protocol::Id { scheme: "world".into(), id: "anyone".into() } }];
    match rng.gen_range(0..100) {
        0..=24 => Request::GetData(GetDataRequest { path: register, watch: rng.gen_bool(0.2) }),
        25..=44 => Request::SetData(SetDataRequest { path: register, data: Some(data(rng, client)), version: if rng.gen_bool(0.5) { -1 } else { rng.gen_range(0..4) } }),
        45..=54 => Request::Create(CreateRequest { path: register, data: Some(data(rng, client)), acl: open, flags: 0 }),
        55..=59 => Request::Delete(DeleteRequest { path: register, version: -1 }),
        60..=69 => Request::Create(CreateRequest { path: format!("{SEQ_PARENT}/n"), data: Some(data(rng, client)), acl: open, flags: 2 }),
        70..=72 => Request::Create(CreateRequest { path: SEQ_PARENT.into(), data: None, acl: open, flags: 0 }),
        73..=79 => Request::Create(CreateRequest { path: client.ephemeral_path(), data: Some(data(rng, client)), acl: open, flags: 1 }),
        80..=84 => Request::Delete(DeleteRequest { path: client.ephemeral_path(), version: -1 }),
        85..=89 => Request::Exists(ExistsRequest { path: register, watch: rng.gen_bool(0.3) }),
        90..=94 => Request::GetChildren(GetChildrenRequest { path: SEQ_PARENT.into(), watch: false }),
        95..=96 => Request::Sync(SyncRequest { path: "/".into() }),
        97 => {
            // All or nothing: a check on one register, then writes to two.
            let other = REGISTERS[rng.gen_range(0..REGISTERS.len())].to_string();
            Request::Multi(MultiRequest {
                ops: vec![
                    MultiOp::Check(CheckVersionRequest { path: register.clone(), version: rng.gen_range(-1..3) }),
                    MultiOp::SetData(SetDataRequest { path: register, data: Some(data(rng, client)), version: -1 }),
                    MultiOp::Create(CreateRequest { path: other, data: Some(data(rng, client)), acl: open, flags: 0 }),
                ],
            })
        }
        98 => Request::CreateContainer(CreateRequest { path: "/c".into(), data: None, acl: open, flags: 4 }),
        _ => Request::CloseSession,
    }
}

/// A write that must succeed once the ensemble is healed (liveness).
pub fn liveness_write(client: &Client, n: u32) -> Request {
    Request::SetData(SetDataRequest { path: "/".into(), data: Some(format!("live-{}-{n}", client.id).into_bytes()), version: -1 })
}
