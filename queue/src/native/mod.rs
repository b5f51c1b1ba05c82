//! The native layout. See docs/queue.md for the design; in short:
//!
//! ```text
//! P                       "corral-queue native-v1"
//! P/meta                  configuration (codec::Meta)
//! P/enq                   totals ever enqueued; its version serialises producers
//! P/deq/NN                totals ever removed, sharded so acks rarely conflict
//! P/ready/pPPP/bBBBB/SEQ  items: lane per priority, bucket = SEQ / bucket_size
//! P/claims/PPP-SEQ        ephemeral claim: lease deadline, token, consumer
//! P/waiters/w-NNNN        ephemeral sequential: idle consumers, in line
//! P/dlq/PPP-SEQ           dead letters
//! P/keys/sNN/kKEY         idempotency keys
//! P/blobs/ID              claim-check: one per blob an item or dead letter references
//! ```
//!
//! Fencing: a claim bumps the item's version; that version is the consumer's
//! token, and ack/nack/extend are multis conditioned on it. Any later claim
//! (after a crash or lease takeover) bumps the version again, so a consumer
//! that lost its claim can never ack, nack or extend.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use object_store::ObjectStore;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, warn};
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions, MultiReadResult};

use crate::blob::{BlobStore, SweepReport};
use crate::codec::{self, Alloc, BlobRef, ClaimData, Counter, ItemHeader, Meta, MsgId};
use crate::error::{deadline, normalize, BlobFault, QueueError, Result, ZkError};

const ROOT_MARK: &[u8] = b"corral-queue native-v1";
/// Sealed buckets (`Alloc::Sealed`). A reader that knows only v1 refuses it.
const ROOT_MARK_V2: &[u8] = b"corral-queue native-v2";
/// Cached listings are trusted for at most this long before a consumer looks
/// at the server again (it also re-reads whenever its cache runs dry), so a
/// busy consumer still notices released claims ahead of its position.
const FRESH_INTERVAL: Duration = Duration::from_millis(500);
/// A scan that keeps finding items gone or held by others re-reads the
/// queue if its cache is older than this (see `scan`).
const STALE_AFTER_MISSES: Duration = Duration::from_millis(10);
/// Upper bound on one idle wait even without any watch firing: a safety net
/// for watches lost across a reconnect, not the delivery mechanism.
const SAFETY_RESCAN: Duration = Duration::from_secs(5);
/// How long operations keep retrying through connection loss (e.g. a server
/// restart) before giving up.
const RETRY_WINDOW: Duration = Duration::from_secs(30);
const MAX_KEY_LEN: usize = 512;
/// Upper bound on how far from the head a colliding consumer may start.
const MAX_SPREAD: usize = 16;
/// A split batch consumer takes another class's items ahead of its own once
/// they have waited this much longer than its own oldest: their owner has
/// stopped taking or fallen behind.
const LAG_BEFORE_HELP: Duration = Duration::from_secs(1);
const MAX_OPS_PER_MULTI: usize = 600;
/// Most messages one `take_batch` claims (two ops each in one multi).
pub const MAX_TAKE_BATCH: usize = 256;
/// A delivery whose blob could not be read goes back to the queue for this
/// long (it counts as an attempt, so a blob that stays unreadable ends in
/// the DLQ after `max_attempts`).
const BLOB_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Blobs written (or deleted) concurrently by one batch.
const BLOB_CONCURRENCY: usize = 8;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn persistent() -> CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn ephemeral() -> CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

fn persistent_seq() -> CreateOptions<'static> {
    CreateMode::PersistentSequential.with_acls(Acls::anyone_all())
}

fn ephemeral_seq() -> CreateOptions<'static> {
    CreateMode::EphemeralSequential.with_acls(Acls::anyone_all())
}


/// Retries an idempotent operation through connection loss.
pub(crate) async fn retry_read<T, F, Fut>(mut f: F) -> Result<T, ZkError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ZkError>>,
{
    let until = Instant::now() + RETRY_WINDOW;
    let mut backoff = Duration::from_millis(20);
    loop {
        match f().await.map_err(normalize) {
            Err(ZkError::ConnectionLoss) if Instant::now() < until => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            },
            r => return r,
        }
    }
}

pub(crate) async fn backoff_sleep(attempt: &mut u32) {
    let ms = (10u64 << (*attempt).min(6)).min(500);
    *attempt += 1;
    tokio::time::sleep(Duration::from_millis(ms / 2 + fastrand::u64(0..=ms / 2))).await;
}

/// Options for creating a native queue. Existing queues keep the options
/// they were created with.
pub type NativeOptions = Meta;

/// A message to enqueue.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub payload: Vec<u8>,
    /// 0..=999, lower is delivered first.
    pub priority: u16,
    /// Not deliverable before now + delay.
    pub delay: Duration,
    /// Idempotency key: a put whose key already exists is a no-op.
    pub key: Option<String>,
}

impl Message {
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Message { payload: payload.into(), priority: codec::DEFAULT_PRIORITY, delay: Duration::ZERO, key: None }
    }

    pub fn priority(mut self, p: u16) -> Self {
        self.priority = p;
        self
    }

    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    pub fn key(mut self, k: impl Into<String>) -> Self {
        self.key = Some(k.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Enqueued(MsgId),
    /// A message with this key was put before; nothing was added. `original`
    /// is its id when known.
    Duplicate { key: String, original: Option<MsgId> },
}

/// A claimed message. Ack, nack or extend it before the lease runs out.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: MsgId,
    pub payload: Vec<u8>,
    /// 1 on first delivery.
    pub attempt: u32,
    pub enqueued_ms: u64,
    pub lease_until_ms: u64,
    pub key: Option<String>,
    token: i32,
    header: ItemHeader,
}

impl Delivery {
    /// Where the payload was stored when it went to the blob store
    /// (claim-check); `payload` holds it already, read and verified.
    pub fn blob(&self) -> Option<&BlobRef> {
        self.header.blob.as_ref()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackOutcome {
    Requeued,
    DeadLettered,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages in the queue, in flight included, dead letters excluded.
    pub depth: u64,
    pub bytes: u64,
    pub in_flight: u64,
    pub dlq: u64,
    /// Age of the oldest pending message (by the producer's clock).
    pub oldest_age: Option<Duration>,
    /// Extra deliveries of messages that have since been acked or dead-lettered.
    pub redeliveries: u64,
    pub enqueued_total: u64,
    pub removed_total: u64,
    pub dead_lettered_total: u64,
    pub waiting_consumers: u64,
    pub max_items: Option<u64>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    /// For a blob item, read from the blob store when this handle has one
    /// (otherwise empty; see `blob` and `blob_error`).
    pub payload: Vec<u8>,
    pub attempts: u32,
    pub enqueued_ms: u64,
    pub key: Option<String>,
    /// Claim-check reference when the payload is in the blob store.
    pub blob: Option<BlobRef>,
    /// Why the blob's payload could not be read, if it could not.
    pub blob_error: Option<String>,
}

#[derive(Default)]
struct ProducerState {
    /// Sealed queues: the enqueue shard this producer sticks to, with its
    /// cached value and version.
    shard: Option<(usize, Counter, i32)>,
    /// Sealed queues: the open (last) bucket of each lane, as last seen.
    tail: HashMap<u16, u64>,
    enq: Option<(Counter, i32)>,
    deq_sum: Counter,
    known_buckets: HashSet<(u16, u64)>,
}

#[derive(Default)]
struct ConsumerState {
    lanes: Vec<u16>,
    buckets: HashMap<u16, Vec<u64>>,
    listings: HashMap<(u16, u64), VecDeque<u64>>,
    claimed: HashSet<MsgId>,
    claim_names: Vec<String>,
    not_before: HashMap<MsgId, u64>,
    enq_items: u64,
    enq_version: i32,
    last_fresh: Option<Instant>,
    last_reap: Option<Instant>,
    /// How many head candidates to pick among (see `scan`); 1 = strict order.
    spread: usize,
    /// Until when the current `take_batch` may wait for a fuller batch
    /// (see `with_batch_linger`); `None` once it has waited.
    linger_until: Option<Instant>,
    /// This handle's place among the registered batch consumers (slot,
    /// count), as of the last refresh; `None`: not registered (see
    /// `register`).
    members: Option<(usize, usize)>,
    /// Our node in `P/consumers` exists (as far as we know).
    registered: bool,
    /// When a split batch consumer first saw each item of a bucket it
    /// listed afresh (see `LAG_BEFORE_HELP`).
    first_seen: HashMap<(u16, u64), HashMap<u64, Instant>>,
}

enum ClaimResult {
    Got(Delivery),
    Gone,
    Taken,
    Delayed(u64),
}

/// Leaves the batch consumers' split when the handle goes (the node would
/// otherwise stay as long as the session, and its class would wait for
/// others to find their own empty).
impl Drop for NativeQueue {
    fn drop(&mut self) {
        if self.cons.get_mut().registered {
            let client = self.client.clone();
            let path = self.p(&format!("consumers/{}", self.consumer_id));
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    let _ = client.delete(&path, None).await;
                });
            }
        }
    }
}

pub struct NativeQueue {
    client: Client,
    path: String,
    meta: Meta,
    consumer_id: String,
    prod: Mutex<ProducerState>,
    cons: Mutex<ConsumerState>,
    deq: std::sync::Mutex<Vec<Option<(Counter, i32)>>>,
    wakeups: std::sync::atomic::AtomicU64,
    collisions: std::sync::atomic::AtomicU64,
    /// The largest item (bytes, as stored) this handle has read: sizes the
    /// multi-reads of `take_batch`.
    largest_item: std::sync::atomic::AtomicUsize,
    /// How long `take_batch` may wait for a fuller batch (zero: never).
    linger: Duration,
    blobs: Option<BlobStore>,
    /// `P/blobs` is known to exist (queues created before the claim-check
    /// lack it until a producer with a blob store creates it).
    blobs_dir_ready: AtomicBool,
}

impl std::fmt::Debug for NativeQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeQueue").field("path", &self.path).field("meta", &self.meta).finish()
    }
}


mod admin;
mod consume;
mod produce;
mod settle;

use crate::plan::{Failed, Plan};

impl NativeQueue {
    /// Opens the queue at `path`, creating it with `meta` if it does not exist.
    pub async fn create(client: &Client, path: &str, meta: Meta) -> Result<Self> {
        codec::validate_path(path).map_err(|reason| QueueError::BadPath { path: path.into(), reason })?;
        let meta = meta.resolved();
        if let Alloc::Sealed { shards } = meta.alloc {
            if shards == 0 || shards > 256 || meta.max_items.is_some() || meta.max_bytes.is_some() {
                return Err(QueueError::Invalid("sealed buckets need an unbounded queue and 1..=256 enqueue shards (bounds need Alloc::Counter)".into()));
            }
        }
        if meta.bucket_size == 0 || meta.deq_shards == 0 || meta.deq_shards > 256 {
            return Err(QueueError::Invalid("bucket_size must be > 0 and deq_shards in 1..=256".into()));
        }
        loop {
            match Self::open(client, path).await {
                Err(QueueError::NotFound(_)) => {},
                r => return r,
            }
            // Roles: the root, whose failure says the queue or its parent
            // is (not) there, and everything beneath it.
            let mut plan = Plan::new(client);
            let p = |rel: &str| format!("{path}/{rel}");
            let opts = persistent();
            let sealed = matches!(meta.alloc, Alloc::Sealed { .. });
            plan.create(true, path, if sealed { ROOT_MARK_V2 } else { ROOT_MARK }, &opts)?;
            plan.create(false, &p("meta"), &meta.encode(), &opts)?;
            if let Alloc::Sealed { shards } = meta.alloc {
                // `P/enq` is then only the doorbell idle consumers watch.
                plan.create(false, &p("enq"), b"", &opts)?;
                plan.create(false, &p("enqs"), b"", &opts)?;
                for i in 0..shards {
                    plan.create(false, &p(&format!("enqs/{i:02}")), &Counter::default().encode(), &opts)?;
                }
            } else {
                plan.create(false, &p("enq"), &Counter::default().encode(), &opts)?;
            }
            plan.create(false, &p("deq"), b"", &opts)?;
            for i in 0..meta.deq_shards {
                plan.create(false, &p(&format!("deq/{i:02}")), &Counter::default().encode(), &opts)?;
            }
            for d in ["ready", "claims", "waiters", "consumers", "dlq", "keys", "blobs"] {
                plan.create(false, &p(d), b"", &opts)?;
            }
            for s in 0..codec::KEY_SHARDS {
                plan.create(false, &p(&format!("keys/{}", codec::key_shard_name(s))), b"", &opts)?;
            }
            match plan.commit().await {
                Ok(_) => continue,
                Err(Failed::Op { role: true, source: ZkError::NodeExists }) => continue,
                Err(Failed::Op { role: true, source: ZkError::NoNode }) => {
                    let parent = &path[..path.rfind('/').unwrap()];
                    if !parent.is_empty() {
                        client.mkdir(parent, &persistent()).await?;
                    }
                },
                Err(Failed::Request(ZkError::ConnectionLoss)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Opens an existing native queue.
    pub async fn open(client: &Client, path: &str) -> Result<Self> {
        codec::validate_path(path).map_err(|reason| QueueError::BadPath { path: path.into(), reason })?;
        let root = match retry_read(|| client.get_data(path)).await {
            Ok((data, _)) => data,
            Err(ZkError::NoNode) => return Err(QueueError::NotFound(path.into())),
            Err(e) => return Err(e.into()),
        };
        if root != ROOT_MARK && root != ROOT_MARK_V2 {
            let found = crate::detect_layout(client, path).await.unwrap_or_else(|_| "unknown".into());
            return Err(QueueError::WrongLayout { path: path.into(), expected: "native", found });
        }
        let meta_path = format!("{path}/meta");
        let (data, _) = match retry_read(|| client.get_data(&meta_path)).await {
            Ok(x) => x,
            Err(ZkError::NoNode) => return Err(QueueError::NotFound(path.into())),
            Err(e) => return Err(e.into()),
        };
        let meta = Meta::decode(&data).map_err(|e| QueueError::Corrupt { what: "meta", path: meta_path.clone(), reason: e.0 })?;
        if (root == ROOT_MARK_V2) != matches!(meta.alloc, Alloc::Sealed { .. }) {
            return Err(QueueError::Corrupt { what: "meta", path: meta_path, reason: "the layout in meta and the queue node disagree".into() });
        }
        let consumer_id = format!("{:x}-{:08x}", client.session_id().0, fastrand::u32(..));
        Ok(NativeQueue {
            client: client.clone(),
            path: path.to_string(),
            deq: std::sync::Mutex::new(vec![None; meta.deq_shards as usize]),
            meta,
            consumer_id,
            prod: Mutex::default(),
            cons: Mutex::new(ConsumerState { spread: 1, ..ConsumerState::default() }),
            wakeups: Default::default(),
            collisions: Default::default(),
            largest_item: Default::default(),
            linger: Duration::ZERO,
            blobs: None,
            blobs_dir_ready: AtomicBool::new(false),
        })
    }

    /// Claim-check: payloads larger than `threshold_bytes` are written to
    /// `store` (under `prefix/<queue path>/`) and the item holds a reference
    /// (key, size, SHA-256) instead; `take` reads and verifies them, `ack`
    /// deletes them after the item. Every handle that takes, acks or sweeps
    /// such items needs the same store and prefix. See docs/queue.md,
    /// "Large payloads".
    pub fn with_blob_store(mut self, store: Arc<dyn ObjectStore>, prefix: &str, threshold_bytes: usize) -> Self {
        self.blobs = Some(BlobStore::new(store, prefix, &self.path, threshold_bytes));
        self
    }

    /// Lets `take_batch` wait up to `linger` for a fuller batch: when fewer
    /// than `max` messages of this consumer's own class (see docs/queue.md,
    /// "Batch consumers split the items") are deliverable but the queue is
    /// not empty, it looks again `linger` after it was called, and claims
    /// what is there then.
    /// Competing batch consumers that run dry otherwise take a few messages
    /// at a time, collide over the same few, and spend a claim multi and an
    /// ack multi on each handful; lingering trades that much latency for
    /// fewer, fuller batches (Kafka's `fetch.max.wait.ms`). Zero (the
    /// default) never waits; `take` never waits.
    pub fn with_batch_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    pub fn blob_store(&self) -> Option<&BlobStore> {
        self.blobs.as_ref()
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn p(&self, rel: &str) -> String {
        format!("{}/{}", self.path, rel)
    }

    fn lane_path(&self, prio: u16) -> String {
        format!("{}/ready/{}", self.path, codec::lane_name(prio))
    }

    fn bucket_path(&self, prio: u16, bucket: u64) -> String {
        format!("{}/ready/{}/{}", self.path, codec::lane_name(prio), codec::bucket_name(bucket))
    }

    fn item_path(&self, id: MsgId) -> String {
        if self.sealed() {
            let (b, suffix) = codec::sealed_parts(id.seq);
            return format!("{}/{}", self.bucket_path(id.priority, b), codec::sealed_item_name(suffix));
        }
        let b = codec::bucket_of(id.seq, self.meta.bucket_size);
        format!("{}/{}", self.bucket_path(id.priority, b), codec::item_name(id.seq))
    }

    /// Whether items are named by the server in sealed buckets
    /// (`Alloc::Sealed`) rather than by the `P/enq` counter.
    fn sealed(&self) -> bool {
        matches!(self.meta.alloc, Alloc::Sealed { .. })
    }

    /// The sequence number of the item named `name` in `bucket`, if it names one.
    fn parse_item_in(&self, bucket: u64, name: &str) -> Option<u64> {
        if self.sealed() {
            codec::parse_sealed_item(name).map(|suffix| codec::sealed_seq(bucket, suffix))
        } else {
            codec::parse_item(name)
        }
    }

    fn enq_shard_path(&self, shard: usize) -> String {
        format!("{}/enqs/{shard:02}", self.path)
    }

    /// Totals ever enqueued: `P/enq`, or the sum of its shards.
    async fn read_enq_total(&self) -> Result<Counter> {
        let Alloc::Sealed { shards } = self.meta.alloc else {
            return Ok(self.read_enq().await?.0);
        };
        let paths: Vec<String> = (0..shards as usize).map(|i| self.enq_shard_path(i)).collect();
        let mut sum = Counter::default();
        for (i, r) in self.get_data_many(&paths).await?.into_iter().enumerate() {
            match r {
                MultiReadResult::Data { data, .. } => {
                    sum.add(&Counter::decode(&data).map_err(|e| QueueError::Corrupt { what: "enq shard", path: paths[i].clone(), reason: e.0 })?);
                },
                MultiReadResult::Error { err } => return Err(err.into()),
                _ => {},
            }
        }
        Ok(sum)
    }

    fn claim_path(&self, id: MsgId) -> String {
        format!("{}/claims/{}", self.path, id.name())
    }

    fn key_path(&self, key: &str) -> String {
        format!("{}/keys/{}/{}", self.path, codec::key_shard_name(codec::key_shard(key)), codec::key_node_name(key))
    }

    fn deq_path(&self, shard: usize) -> String {
        format!("{}/deq/{shard:02}", self.path)
    }

    /// The node that says an item or dead letter references blob `id`.
    fn blob_ref_path(&self, id: &str) -> String {
        format!("{}/blobs/{id}", self.path)
    }

    fn blob_ref_node(&self, r: Option<&BlobRef>) -> Option<String> {
        r.and_then(BlobRef::id).map(|id| self.blob_ref_path(id))
    }

    /// Reads many nodes' data in one multi-read, retried through connection loss.
    async fn get_data_many(&self, paths: &[String]) -> Result<Vec<MultiReadResult>> {
        Ok(retry_read(|| {
            let mut r = self.client.new_multi_reader();
            for p in paths {
                r.add_get_data(p).unwrap();
            }
            r.commit()
        })
        .await?)
    }

    /// Sum of all deq shards, read in one request so it is a consistent
    /// snapshot; also refreshes the shard cache used by acks.
    async fn read_deq(&self) -> Result<Counter> {
        let paths: Vec<String> = (0..self.meta.deq_shards as usize).map(|i| self.deq_path(i)).collect();
        let results = self.get_data_many(&paths).await?;
        let mut sum = Counter::default();
        let mut cache = self.deq.lock().unwrap();
        for (i, res) in results.into_iter().enumerate() {
            match res {
                MultiReadResult::Data { data, stat } => {
                    let c = Counter::decode(&data).map_err(|e| QueueError::Corrupt { what: "deq counter", path: paths[i].clone(), reason: e.0 })?;
                    sum.add(&c);
                    cache[i] = Some((c, stat.version));
                },
                MultiReadResult::Error { err } => return Err(err.into()),
                _ => {},
            }
        }
        Ok(sum)
    }

    /// Picks a deq shard at random (spreading ack contention) and returns its
    /// cached or freshly read value and version.
    async fn deq_shard(&self) -> Result<(usize, Counter, i32)> {
        let i = fastrand::usize(..self.meta.deq_shards as usize);
        if let Some((c, v)) = self.deq.lock().unwrap()[i] {
            return Ok((i, c, v));
        }
        let path = self.deq_path(i);
        let (data, stat) = retry_read(|| self.client.get_data(&path)).await?;
        let c = Counter::decode(&data).map_err(|e| QueueError::Corrupt { what: "deq counter", path, reason: e.0 })?;
        self.deq.lock().unwrap()[i] = Some((c, stat.version));
        Ok((i, c, stat.version))
    }

    fn set_deq_cache(&self, i: usize, v: Option<(Counter, i32)>) {
        self.deq.lock().unwrap()[i] = v;
    }
}
