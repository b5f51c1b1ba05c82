//! The workloads' clients: what each worker does against the ensemble and
//! how it records it. Each workload has its module; this one holds what
//! they share (the recorder, connecting, classifying errors) and picks the
//! workload's setup, workers and final read. Imports go one way: the runner
//! uses this, this uses `check` for the op types, never the reverse.

pub mod counter;
pub mod lock;
pub mod queue;
pub mod register;
pub mod session;
pub mod set;
pub mod total_queue;
pub mod unique_ids;
pub mod watch;

use crate::check::history::{Kind, Op, Outcome, FINAL_PROCESS};
use crate::check::Workload;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zookeeper_client as zk;

/// How long one operation may take before it counts as indeterminate.
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// The session timeout the workers ask for (the tests' servers allow 4 s at most).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(4);
/// How long the final read may keep retrying before the run is a harness error.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Recorder {
    pub start: Instant,
    pub ops: Mutex<Vec<Op>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder { start: Instant::now(), ops: Mutex::new(Vec::new()) }
    }
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    pub fn push(&self, mut op: Op) {
        let mut ops = self.ops.lock().unwrap();
        op.index = ops.len();
        ops.push(op);
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

pub fn parse(data: &[u8]) -> Option<i64> {
    std::str::from_utf8(data).ok()?.trim().parse().ok()
}

pub fn error_name(e: &zk::Error) -> String {
    format!("{e:?}")
}

/// Whether the client is of no more use (its session is gone).
pub fn fatal(e: &zk::Error) -> bool {
    matches!(e, zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed)
}

/// Whether an error is the server's definite refusal: the request was
/// processed and did nothing. Anything else (connection loss, session
/// expiry, a timeout) may have taken effect.
pub fn definite(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::NoNode
            | zk::Error::NodeExists
            | zk::Error::BadVersion
            | zk::Error::NotEmpty
            | zk::Error::NoChildrenForEphemerals
            | zk::Error::InvalidAcl
            | zk::Error::NoAuth
            | zk::Error::BadArguments(_)
    )
}

pub async fn connect(host: &str) -> Option<zk::Client> {
    let c = zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .with_connection_timeout(Duration::from_secs(1))
        .with_fail_eagerly()
        .connect(host);
    tokio::time::timeout(Duration::from_secs(3), c).await.ok()?.ok()
}

/// What each member said, for an error: `member 1: ..., member 2: ...`.
pub fn members(said: &[String]) -> String {
    said.iter().enumerate().map(|(i, s)| format!("member {}: {s}", i + 1)).collect::<Vec<_>>().join("; ")
}

/// A session's id as the history records it.
pub fn session(c: &zk::Client) -> Option<String> {
    Some(format!("{:#x}", c.session_id().0))
}

/// How an op ended, as far as its worker's next steps go.
pub enum Settled {
    Known,
    Unknown { session_gone: bool },
}

/// What every worker is given.
#[derive(Clone)]
pub struct Ctx {
    /// The worker's number; its first process id.
    pub id: usize,
    pub workers: usize,
    pub members: usize,
    /// The member it is bound to (0-based).
    pub member: usize,
    pub host: String,
    pub seed: u64,
    pub deadline: Instant,
    pub rec: Arc<Recorder>,
    /// A counter shared by the workers (unique values, elements).
    pub next: Arc<AtomicI64>,
    /// `--rate`: how often this worker may invoke an op.
    pub pace: Arc<Pace>,
}

/// A worker's share of `--rate`: one op invocation per interval, on a
/// fixed schedule (an op that overruns its slot does not make the next ones
/// come faster to catch up). No interval: flat out.
#[derive(Debug, Default)]
pub struct Pace {
    every: Option<Duration>,
    next: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Pace {
    pub fn new(every: Option<Duration>) -> Pace {
        Pace { every, next: std::sync::Mutex::new(None) }
    }

    /// Waits for this worker's next slot. The schedule is in time, so this
    /// is a plain sleep.
    pub async fn wait(&self) {
        let Some(every) = self.every else { return };
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let (at, following) = slot(*next, tokio::time::Instant::now(), every);
            *next = Some(following);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// When the op whose slot was planned at `next` may start if asked `now`,
/// and the slot after it. A late op starts now and the schedule moves on
/// from there (no burst to catch up).
fn slot<T: Copy + Ord + std::ops::Add<Duration, Output = T>>(next: Option<T>, now: T, every: Duration) -> (T, T) {
    let at = next.map_or(now, |n| n.max(now));
    (at, at + every)
}

#[cfg(test)]
mod pace_tests {
    use super::slot;
    use std::time::Duration;

    #[test]
    fn slots_are_an_interval_apart_and_overruns_do_not_bunch_up() {
        let every = Duration::from_millis(100);
        // Times as durations since some start.
        let ms = Duration::from_millis;
        let (at, next) = slot(None, ms(0), every);
        assert_eq!((at, next), (ms(0), ms(100)), "the first slot is now");
        // Asked early: wait for the slot.
        let (at, next) = slot(Some(next), ms(30), every);
        assert_eq!((at, next), (ms(100), ms(200)));
        // Asked 250 ms late (an op overran): start now, next one interval on,
        // not the missed slots at once.
        let (at, next) = slot(Some(next), ms(450), every);
        assert_eq!((at, next), (ms(450), ms(550)));
    }
}

impl Ctx {
    pub fn member_id(&self) -> Option<u32> {
        Some(self.member as u32 + 1)
    }

    /// An op of `process` on `key` invoked now, indeterminate until told.
    pub fn op(&self, process: u64, session: Option<String>, key: &str, f: Kind, value: Option<i64>) -> Op {
        let mut o = Op::new(process, key, f, value, None, self.rec.now(), None, Outcome::Info);
        o.member = self.member_id();
        o.session = session;
        o
    }

    /// Records how `o` ended: ok (`ok` fills in what it returned), failed
    /// for certain, or unknown (a timeout or a lost connection). For an
    /// unknown outcome the worker must go on as a new process, since the op
    /// may still be in flight, and drop its client if the session is gone.
    pub fn settle<T>(&self, o: &mut Op, r: Result<Result<T, zk::Error>, tokio::time::error::Elapsed>, ok: impl FnOnce(&mut Op, T)) -> Settled {
        match r {
            Ok(Ok(v)) => {
                o.outcome = Outcome::Ok;
                o.complete_ns = Some(self.rec.now());
                ok(o, v);
                Settled::Known
            }
            Ok(Err(e)) if definite(&e) => {
                o.outcome = Outcome::Fail;
                o.complete_ns = Some(self.rec.now());
                o.error = Some(error_name(&e));
                Settled::Known
            }
            Ok(Err(e)) => {
                o.error = Some(error_name(&e));
                Settled::Unknown { session_gone: fatal(&e) }
            }
            Err(_) => {
                o.error = Some("timeout".into());
                Settled::Unknown { session_gone: false }
            }
        }
    }

    /// Connects, backing off while the member is down, paused or cut off;
    /// `None` once the time is up.
    pub async fn connect(&self) -> Option<zk::Client> {
        while Instant::now() < self.deadline {
            if let Some(c) = connect(&self.host).await {
                return Some(c);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

/// The nodes a workload needs, created before the workers start (the
/// register's keys and the counter's node are recorded as writes of the
/// setup process).
pub async fn setup(workload: Workload, hosts: &str, keys: usize, rec: &Recorder) -> Result<(), String> {
    let c = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .with_connection_timeout(Duration::from_secs(5))
        .connect(hosts)
        .await
        .map_err(|e| format!("setup: connect to {hosts}: {e}"))?;
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    c.create("/jepsen", b"", &opts).await.map_err(|e| format!("setup: create /jepsen: {e}"))?;
    match workload {
        Workload::Register => register::setup(&c, keys, rec).await,
        Workload::Counter => counter::setup(&c, rec).await,
        Workload::Set => set::setup(&c).await,
        Workload::UniqueIds => unique_ids::setup(&c).await,
        Workload::Lock => lock::setup(&c).await,
        Workload::Queue => queue::setup(&c).await,
        Workload::TotalQueue => total_queue::setup(&c).await,
        Workload::Watch => watch::setup(&c, keys, rec).await,
        Workload::Session => session::setup(&c).await,
    }
}

/// Creates a persistent node for the setup.
pub async fn create(c: &zk::Client, path: &str, data: &[u8]) -> Result<(), String> {
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    c.create(path, data, &opts).await.map(|_| ()).map_err(|e| format!("setup: create {path}: {e}"))
}

/// Runs one worker of `workload` until the deadline.
pub async fn worker(workload: Workload, ctx: Ctx, keys: usize) {
    match workload {
        Workload::Register => register::worker(ctx, keys).await,
        Workload::Set => set::worker(ctx).await,
        Workload::Counter => counter::worker(ctx).await,
        Workload::UniqueIds => unique_ids::worker(ctx).await,
        Workload::Lock => lock::worker(ctx).await,
        Workload::Queue => queue::worker(ctx).await,
        Workload::TotalQueue => total_queue::worker(ctx).await,
        Workload::Watch => watch::worker(ctx, keys).await,
        Workload::Session => session::worker(ctx).await,
    }
}

/// After the run, with every fault undone: the workload's final read, if it
/// has one, recorded as an op of `FINAL_PROCESS`. Tried on each member in
/// turn until one answers; a `sync` first, so that the member has applied
/// everything committed before (ZooKeeper's reads may lag otherwise).
pub async fn final_read(workload: Workload, hosts: &[String], rec: &Recorder) -> Result<(), String> {
    let (path, key) = match workload {
        Workload::Set => (set::PARENT, set::KEY),
        Workload::Counter => (counter::PATH, counter::KEY),
        // The queue's is a drain; the session's waits for the closed sessions' nodes to go.
        Workload::Queue => return queue::drain(hosts, rec, FINAL_READ_TIMEOUT, queue::PATH, queue::KEY).await,
        Workload::TotalQueue => return queue::drain(hosts, rec, FINAL_READ_TIMEOUT, total_queue::PATH, total_queue::KEY).await,
        Workload::Session => return session::final_read(hosts, rec, FINAL_READ_TIMEOUT).await,
        _ => return Ok(()),
    };
    let until = Instant::now() + FINAL_READ_TIMEOUT;
    let mut last = String::from("no member answered");
    let mut attempt = 0;
    loop {
        attempt += 1;
        if Instant::now() > until {
            return Err(format!("final read: nothing for {FINAL_READ_TIMEOUT:?}: {last}"));
        }
        let member = attempt % hosts.len();
        let Some(c) = connect(&hosts[member]).await else {
            last = format!("member {} did not take a session", member + 1);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut op = Op::new(FINAL_PROCESS, key, Kind::Read, None, None, rec.now(), None, Outcome::Info);
        op.member = Some(member as u32 + 1);
        op.session = session(&c);
        let got = tokio::time::timeout(OP_TIMEOUT, async {
            // A node the setup made may be gone (a server that lost
            // acknowledged writes): the sync goes through the root then.
            match c.sync(path).await {
                Err(zk::Error::NoNode) => c.sync("/").await?,
                r => r?,
            }
            match workload {
                // No parent: no element is left, which the checker judges.
                Workload::Set => match c.list_children(path).await {
                    Err(zk::Error::NoNode) => Ok(Read::Gone),
                    r => r.map(Read::Children),
                },
                _ => c.get_data(path).await.map(|(d, _)| Read::Data(d)),
            }
        })
        .await;
        match got {
            Ok(Ok(read)) => {
                op.complete_ns = Some(rec.now());
                op.outcome = Outcome::Ok;
                match read {
                    Read::Children(names) => {
                        let (values, bad) = set::elements(&names);
                        op.values = Some(values);
                        if !bad.is_empty() {
                            op.error = Some(format!("children that are no element: {}", bad.join(" ")));
                        }
                    }
                    Read::Gone => {
                        // Every element is lost: the checker says so; the
                        // history's read is an empty one.
                        eprintln!("final read: {path} is gone (its create was acknowledged in the setup)");
                        op.values = Some(Vec::new());
                    }
                    Read::Data(d) => op.value = parse(&d),
                }
                rec.push(op);
                return Ok(());
            }
            Ok(Err(e)) => last = format!("member {}: {e}", member + 1),
            Err(_) => last = format!("member {}: timed out", member + 1),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

enum Read {
    Children(Vec<String>),
    /// The set's parent does not exist.
    Gone,
    Data(Vec<u8>),
}
