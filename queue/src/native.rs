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
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions, MultiReadResult, MultiWriteError};

use crate::blob::{BlobStore, SweepReport};
use crate::codec::{self, BlobRef, ClaimData, Counter, ItemHeader, Meta, MsgId};
use crate::error::{deadline, BlobFault, QueueError, Result, ZkError};

const ROOT_MARK: &[u8] = b"corral-queue native-v1";
/// Cached listings are trusted for at most this long before a consumer looks
/// at the server again (it also re-reads whenever its cache runs dry), so a
/// busy consumer still notices released claims ahead of its position.
const FRESH_INTERVAL: Duration = Duration::from_millis(500);
/// Upper bound on one idle wait even without any watch firing: a safety net
/// for watches lost across a reconnect, not the delivery mechanism.
const SAFETY_RESCAN: Duration = Duration::from_secs(5);
/// How long operations keep retrying through connection loss (e.g. a server
/// restart) before giving up.
const RETRY_WINDOW: Duration = Duration::from_secs(30);
const MAX_KEY_LEN: usize = 512;
/// Upper bound on how far from the head a colliding consumer may start.
const MAX_SPREAD: usize = 16;
const MAX_OPS_PER_MULTI: usize = 600;
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

fn ephemeral_seq() -> CreateOptions<'static> {
    CreateMode::EphemeralSequential.with_acls(Acls::anyone_all())
}

/// Requests in flight when a connection breaks fail with the I/O error
/// itself (`Custom`), not `ConnectionLoss`; both mean "outcome unknown,
/// session probably alive", so treat them alike.
pub(crate) fn normalize(e: ZkError) -> ZkError {
    match e {
        ZkError::Custom(_) => ZkError::ConnectionLoss,
        e => e,
    }
}

pub(crate) async fn commit(w: &mut zookeeper_client::MultiWriter<'_>) -> Result<Vec<zookeeper_client::MultiWriteResult>, MultiWriteError> {
    w.commit().await.map_err(|e| match e {
        MultiWriteError::RequestFailed { source } => MultiWriteError::RequestFailed { source: normalize(source) },
        e => e,
    })
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
}

enum ClaimResult {
    Got(Delivery),
    Gone,
    Taken,
    Delayed(u64),
}

/// What an op of a put multi creates (to interpret a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutOp {
    Enq,
    Key,
    Item,
    BlobRef,
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

impl NativeQueue {
    /// Opens the queue at `path`, creating it with `meta` if it does not exist.
    pub async fn create(client: &Client, path: &str, meta: Meta) -> Result<Self> {
        codec::validate_path(path).map_err(|reason| QueueError::BadPath { path: path.into(), reason })?;
        if meta.bucket_size == 0 || meta.deq_shards == 0 || meta.deq_shards > 256 {
            return Err(QueueError::Invalid("bucket_size must be > 0 and deq_shards in 1..=256".into()));
        }
        loop {
            match Self::open(client, path).await {
                Err(QueueError::NotFound(_)) => {},
                r => return r,
            }
            let mut w = client.new_multi_writer();
            let p = |rel: &str| format!("{path}/{rel}");
            let opts = persistent();
            w.add_create(path, ROOT_MARK, &opts)?;
            w.add_create(&p("meta"), &meta.encode(), &opts)?;
            w.add_create(&p("enq"), &Counter::default().encode(), &opts)?;
            w.add_create(&p("deq"), b"", &opts)?;
            for i in 0..meta.deq_shards {
                w.add_create(&p(&format!("deq/{i:02}")), &Counter::default().encode(), &opts)?;
            }
            for d in ["ready", "claims", "waiters", "dlq", "keys", "blobs"] {
                w.add_create(&p(d), b"", &opts)?;
            }
            for s in 0..codec::KEY_SHARDS {
                w.add_create(&p(&format!("keys/{}", codec::key_shard_name(s))), b"", &opts)?;
            }
            match commit(&mut w).await {
                Ok(_) => continue,
                Err(MultiWriteError::OperationFailed { index: 0, source: ZkError::NodeExists }) => continue,
                Err(MultiWriteError::OperationFailed { index: 0, source: ZkError::NoNode }) => {
                    let parent = &path[..path.rfind('/').unwrap()];
                    if !parent.is_empty() {
                        client.mkdir(parent, &persistent()).await?;
                    }
                },
                Err(MultiWriteError::RequestFailed { source: ZkError::ConnectionLoss }) => {
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
        if root != ROOT_MARK {
            let found = crate::detect_layout(client, path).await.unwrap_or_else(|_| "unknown".into());
            return Err(QueueError::WrongLayout { path: path.into(), expected: "native", found });
        }
        let meta_path = format!("{path}/meta");
        let (data, _) = match retry_read(|| client.get_data(&meta_path)).await {
            Ok(x) => x,
            Err(ZkError::NoNode) => return Err(QueueError::NotFound(path.into())),
            Err(e) => return Err(e.into()),
        };
        let meta = Meta::decode(&data).map_err(|e| QueueError::Corrupt { what: "meta", path: meta_path, reason: e.0 })?;
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
        let b = codec::bucket_of(id.seq, self.meta.bucket_size);
        format!("{}/{}", self.bucket_path(id.priority, b), codec::item_name(id.seq))
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

    // -----------------------------------------------------------------------
    // Producing
    // -----------------------------------------------------------------------

    pub async fn put(&self, msg: Message) -> Result<PutOutcome> {
        Ok(self.put_batch_wait(vec![msg], None).await?.remove(0))
    }

    /// Like `put`, but waits up to `timeout` for room instead of failing with
    /// `Full` straight away.
    pub async fn put_wait(&self, msg: Message, timeout: Duration) -> Result<PutOutcome> {
        Ok(self.put_batch_wait(vec![msg], Some(timeout)).await?.remove(0))
    }

    pub async fn put_batch(&self, msgs: Vec<Message>) -> Result<Vec<PutOutcome>> {
        self.put_batch_wait(msgs, None).await
    }

    /// Puts many messages with as few multi requests as fit under the request
    /// size limit. Each chunk is atomic (all or nothing, and within bounds);
    /// chunks are applied in order and an error stops at the failing chunk.
    pub async fn put_batch_wait(&self, msgs: Vec<Message>, timeout: Option<Duration>) -> Result<Vec<PutOutcome>> {
        let until = deadline(timeout);
        let mut sizes = Vec::with_capacity(msgs.len());
        for m in &msgs {
            if m.priority > codec::MAX_PRIORITY {
                return Err(QueueError::Invalid(format!("priority {} above {}", m.priority, codec::MAX_PRIORITY)));
            }
            if let Some(k) = &m.key {
                if k.is_empty() || k.len() > MAX_KEY_LEN {
                    return Err(QueueError::Invalid(format!("key must be 1..={MAX_KEY_LEN} bytes")));
                }
            }
            let key_ops = m.key.as_ref().map_or(0, |k| self.key_path(k).len() + 3 * k.len() + codec::OP_OVERHEAD + 24);
            // A payload for the blob store leaves a reference in the item and
            // a reference node beside it.
            let body = match &self.blobs {
                Some(b) if b.offloads(m.payload.len()) => codec::blob_ref_len(b.key_len()) + self.path.len() + 50 + codec::OP_OVERHEAD,
                _ => m.payload.len(),
            };
            let size = body + codec::item_overhead(m.key.as_deref()) + self.path.len() + 60 + codec::OP_OVERHEAD + key_ops;
            if size > codec::REQUEST_BUDGET {
                return Err(QueueError::TooLarge { size: m.payload.len(), limit: codec::REQUEST_BUDGET - (size - body) });
            }
            sizes.push(size);
        }
        // Claim-check: large payloads go to the blob store first, so an item
        // never references a blob that is not there yet.
        let (msgs, refs) = self.offload(msgs).await?;
        let mut out = Vec::with_capacity(msgs.len());
        let mut st = self.prod.lock().await;
        // Up to three creates per message (key, item, blob reference).
        let per_msg = if refs.iter().any(Option::is_some) { 3 } else { 2 };
        for range in codec::chunk_by_budget(&sizes, codec::REQUEST_BUDGET, MAX_OPS_PER_MULTI / per_msg) {
            match self.put_chunk(&mut st, &msgs[range.clone()], &refs[range.clone()], until).await {
                Ok(o) => out.extend(o),
                Err(e) => {
                    drop(st);
                    // Later chunks were never sent: their blobs are garbage.
                    // The failing chunk's are too if nothing references them
                    // after a definite refusal; after any other failure the
                    // put may have committed, so the sweeper decides.
                    self.discard_blobs(refs[range.end..].iter().flatten(), false).await;
                    if matches!(e, QueueError::Full { .. }) {
                        self.discard_blobs(refs[range].iter().flatten(), true).await;
                    }
                    return Err(e);
                },
            }
        }
        drop(st);
        // A duplicate keyed put added nothing, unless it was our own earlier
        // attempt whose reply was lost: its reference node says which.
        let dups = out.iter().zip(&refs).filter(|(o, _)| matches!(o, PutOutcome::Duplicate { .. })).filter_map(|(_, r)| r.as_ref());
        self.discard_blobs(dups, true).await;
        Ok(out)
    }

    /// Writes the payloads above the threshold to the blob store (a few at a
    /// time) and returns the messages with those payloads taken out, and
    /// each message's reference.
    async fn offload(&self, mut msgs: Vec<Message>) -> Result<(Vec<Message>, Vec<Option<BlobRef>>)> {
        let mut refs: Vec<Option<BlobRef>> = vec![None; msgs.len()];
        let Some(bs) = &self.blobs else { return Ok((msgs, refs)) };
        let big: Vec<(usize, Vec<u8>)> =
            msgs.iter_mut().enumerate().filter(|(_, m)| bs.offloads(m.payload.len())).map(|(i, m)| (i, std::mem::take(&mut m.payload))).collect();
        if big.is_empty() {
            return Ok((msgs, refs));
        }
        let results: Vec<(usize, Result<BlobRef>)> =
            futures_util::stream::iter(big).map(|(i, p)| async move { (i, bs.put(p).await) }).buffered(BLOB_CONCURRENCY).collect().await;
        let mut first_err = None;
        for (i, r) in results {
            match r {
                Ok(r) => refs[i] = Some(r),
                Err(e) => {
                    first_err.get_or_insert(e);
                },
            }
        }
        if let Some(e) = first_err {
            self.discard_blobs(refs.iter().flatten(), false).await;
            return Err(e);
        }
        Ok((msgs, refs))
    }

    /// Best-effort removal of blobs a failed or duplicate put wrote. With
    /// `check`, only those no reference node names (the put may have
    /// committed them); what fails here is left to the sweeper.
    async fn discard_blobs<'a>(&self, refs: impl Iterator<Item = &'a BlobRef>, check: bool) {
        let Some(bs) = &self.blobs else { return };
        let refs: Vec<&BlobRef> = refs.collect();
        for chunk in refs.chunks(200) {
            let keep: Vec<bool> = if check {
                let paths: Vec<String> = chunk.iter().map(|r| self.blob_ref_node(Some(r)).unwrap_or_default()).collect();
                match self.get_data_many(&paths).await {
                    Ok(res) => res.iter().map(|r| !matches!(r, MultiReadResult::Error { err: ZkError::NoNode })).collect(),
                    Err(_) => continue,
                }
            } else {
                vec![false; chunk.len()]
            };
            for (r, keep) in chunk.iter().zip(keep) {
                if !keep {
                    if let Err(e) = bs.delete(&r.key).await {
                        warn!(error = %e, "could not delete an unused blob; the sweeper will");
                    }
                }
            }
        }
    }

    /// Deletes the blob of an acked message (best effort: a failure leaves an
    /// orphan for the sweeper).
    async fn delete_acked_blob(&self, r: Option<&BlobRef>) {
        if let (Some(bs), Some(r)) = (&self.blobs, r) {
            if let Err(e) = bs.delete(&r.key).await {
                warn!(error = %e, "acked, but could not delete the blob; the sweeper will");
            }
        }
    }

    async fn ensure_blobs_dir(&self) -> Result<()> {
        if self.blobs_dir_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let path = self.p("blobs");
        match retry_read(|| self.client.create(&path, b"", &persistent())).await {
            Ok(_) | Err(ZkError::NodeExists) => {},
            Err(e) => return Err(e.into()),
        }
        self.blobs_dir_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The producer's cached `P/enq` counter and version, read on first use
    /// (and after a conflict cleared it).
    async fn cached_enq(&self, st: &mut ProducerState) -> Result<(Counter, i32)> {
        if let Some(x) = st.enq {
            return Ok(x);
        }
        let x = self.read_enq().await?;
        st.enq = Some(x);
        Ok(x)
    }

    async fn read_enq(&self) -> Result<(Counter, i32)> {
        let path = self.p("enq");
        let (data, stat) = retry_read(|| self.client.get_data(&path)).await?;
        let c = Counter::decode(&data).map_err(|e| QueueError::Corrupt { what: "enq counter", path, reason: e.0 })?;
        Ok((c, stat.version))
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

    async fn ensure_bucket(&self, st: &mut ProducerState, prio: u16, bucket: u64) -> Result<()> {
        if st.known_buckets.contains(&(prio, bucket)) {
            return Ok(());
        }
        if st.known_buckets.len() > 4096 {
            st.known_buckets.clear();
        }
        for path in [self.lane_path(prio), self.bucket_path(prio, bucket)] {
            match retry_read(|| self.client.create(&path, b"", &persistent())).await {
                Ok(_) | Err(ZkError::NodeExists) => {},
                Err(e) => return Err(e.into()),
            }
        }
        st.known_buckets.insert((prio, bucket));
        Ok(())
    }

    async fn put_chunk(&self, st: &mut ProducerState, msgs: &[Message], refs: &[Option<BlobRef>], until: Option<Instant>) -> Result<Vec<PutOutcome>> {
        if refs.iter().any(Option::is_some) {
            self.ensure_blobs_dir().await?;
        }
        let mut outcomes: Vec<Option<PutOutcome>> = vec![None; msgs.len()];
        let mut pending: Vec<usize> = (0..msgs.len()).collect();
        let keyed: Vec<usize> = pending.iter().copied().filter(|&i| msgs[i].key.is_some()).collect();
        if keyed.len() > 1 {
            // A retried batch is often all duplicates: find them in one read
            // instead of failing the multi once per duplicate.
            let paths: Vec<String> = keyed.iter().map(|&i| self.key_path(msgs[i].key.as_deref().unwrap())).collect();
            let res = self.get_data_many(&paths).await?;
            for (&i, r) in keyed.iter().zip(res) {
                if let MultiReadResult::Data { data, .. } = r {
                    let original = std::str::from_utf8(&data).ok().and_then(MsgId::parse);
                    outcomes[i] = Some(PutOutcome::Duplicate { key: msgs[i].key.clone().unwrap(), original });
                    pending.retain(|&p| p != i);
                }
            }
        }
        let mut attempt = 0u32;
        let retry_until = Instant::now() + RETRY_WINDOW;
        while !pending.is_empty() {
            let (enq, version) = self.cached_enq(st).await?;
            let add_items = pending.len() as u64;
            let add_bytes: u64 = pending.iter().map(|&i| refs[i].as_ref().map_or(msgs[i].payload.len() as u64, |r| r.size)).sum();
            if !codec::admits(&enq, &st.deq_sum, add_items, add_bytes, self.meta.max_items, self.meta.max_bytes) {
                // The cached deq total only ever lags; refresh it (and enq)
                // before concluding the queue is really full.
                let _ = self.client.sync(&self.p("deq")).await;
                st.deq_sum = self.read_deq().await?;
                let fresh = self.read_enq().await?;
                st.enq = Some(fresh);
                if !codec::admits(&fresh.0, &st.deq_sum, add_items, add_bytes, self.meta.max_items, self.meta.max_bytes) {
                    if until.is_some_and(|u| Instant::now() < u) {
                        backoff_sleep(&mut attempt).await;
                        continue;
                    }
                    let depth = fresh.0.items.saturating_sub(st.deq_sum.items);
                    let bytes = fresh.0.bytes.saturating_sub(st.deq_sum.bytes);
                    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
                    return Err(QueueError::Full {
                        path: self.path.clone(),
                        items: depth,
                        bytes,
                        max_items: show(self.meta.max_items),
                        max_bytes: show(self.meta.max_bytes),
                    });
                }
                continue;
            }
            let now = now_ms();
            let nonce = fastrand::u64(..);
            let seq0 = enq.items;
            for (j, &i) in pending.iter().enumerate() {
                let b = codec::bucket_of(seq0 + j as u64, self.meta.bucket_size);
                self.ensure_bucket(st, msgs[i].priority, b).await?;
            }
            let new_enq = Counter { items: enq.items + add_items, bytes: enq.bytes + add_bytes, ..enq };
            let mut w = self.client.new_multi_writer();
            // op index -> (pending position, what the op creates)
            let mut ops: Vec<(usize, PutOp)> = vec![(usize::MAX, PutOp::Enq)];
            w.add_set_data(&self.p("enq"), &new_enq.encode(), Some(version))?;
            for (j, &i) in pending.iter().enumerate() {
                let m = &msgs[i];
                let id = MsgId { priority: m.priority, seq: seq0 + j as u64 };
                if let Some(k) = &m.key {
                    w.add_create(&self.key_path(k), id.name().as_bytes(), &persistent())?;
                    ops.push((j, PutOp::Key));
                }
                let not_before_ms = if m.delay.is_zero() { 0 } else { now + m.delay.as_millis() as u64 };
                let blob = refs[i].clone();
                let h = ItemHeader { enqueued_ms: now, nonce, not_before_ms, attempts: 0, priority: m.priority, key: m.key.clone(), blob };
                w.add_create(&self.item_path(id), &codec::encode_item(&h, &m.payload), &persistent())?;
                ops.push((j, PutOp::Item));
                if let Some(r) = self.blob_ref_node(refs[i].as_ref()) {
                    w.add_create(&r, b"", &persistent())?;
                    ops.push((j, PutOp::BlobRef));
                }
            }
            match commit(&mut w).await {
                Ok(_) => {
                    st.enq = Some((new_enq, version + 1));
                    for (j, &i) in pending.iter().enumerate() {
                        outcomes[i] = Some(PutOutcome::Enqueued(MsgId { priority: msgs[i].priority, seq: seq0 + j as u64 }));
                    }
                    pending.clear();
                },
                Err(MultiWriteError::OperationFailed { index, source }) => {
                    let (j, op) = ops.get(index).copied().unwrap_or((usize::MAX, PutOp::Enq));
                    match source {
                        ZkError::BadVersion | ZkError::NoNode if index == 0 => st.enq = None,
                        ZkError::NodeExists if op == PutOp::Key => {
                            let i = pending.remove(j);
                            let key = msgs[i].key.clone().unwrap();
                            let original = self.client.get_data(&self.key_path(&key)).await.ok().and_then(|(d, _)| MsgId::parse(std::str::from_utf8(&d).ok()?));
                            outcomes[i] = Some(PutOutcome::Duplicate { key, original });
                        },
                        ZkError::NoNode if op == PutOp::Item => {
                            // Our bucket cache was wrong (someone removed an
                            // empty bucket we created but never used).
                            st.known_buckets.clear();
                        },
                        ZkError::NoNode if op == PutOp::BlobRef => {
                            self.blobs_dir_ready.store(false, Ordering::Relaxed);
                            self.ensure_blobs_dir().await?;
                        },
                        e => return Err(e.into()),
                    }
                },
                Err(MultiWriteError::RequestFailed { source: ZkError::ConnectionLoss }) => {
                    st.enq = None;
                    if Instant::now() > retry_until {
                        return Err(QueueError::Indeterminate { op: "put" });
                    }
                    backoff_sleep(&mut attempt).await;
                    let first = MsgId { priority: msgs[pending[0]].priority, seq: seq0 };
                    match self.resolve_lost_put(version, first, nonce).await? {
                        Some(true) => {
                            for (j, &i) in pending.iter().enumerate() {
                                outcomes[i] = Some(PutOutcome::Enqueued(MsgId { priority: msgs[i].priority, seq: seq0 + j as u64 }));
                            }
                            pending.clear();
                        },
                        Some(false) => {},
                        // Keyed messages can still be retried safely: a retry
                        // of a put that did commit shows up as a duplicate.
                        None if pending.iter().all(|&i| msgs[i].key.is_some()) => {},
                        None => return Err(QueueError::Indeterminate { op: "put" }),
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every message resolved")).collect())
    }

    /// After a put whose reply was lost: did the multi that expected `P/enq`
    /// at `version` commit? `Some(false)` if `P/enq` is still at that
    /// version (ZooKeeper applies a session's requests in order and refuses
    /// stale ones from an old connection, so a read after reconnecting sees
    /// it) or another producer's items took our sequence numbers; `Some(true)`
    /// if the first item carries our nonce; `None` if it is gone already
    /// (consumed) and nobody can tell.
    async fn resolve_lost_put(&self, version: i32, first: MsgId, nonce: u64) -> Result<Option<bool>> {
        let enq = self.p("enq");
        let _ = retry_read(|| self.client.sync(&enq)).await;
        let (_, now) = self.read_enq().await?;
        if now == version {
            return Ok(Some(false));
        }
        let item = self.item_path(first);
        match retry_read(|| self.client.get_data(&item)).await {
            Ok((data, _)) => Ok(codec::decode_item(&data).ok().map(|(h, _)| h.nonce == nonce)),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    // -----------------------------------------------------------------------
    // Consuming
    // -----------------------------------------------------------------------

    /// Claims the next deliverable message, waiting up to `timeout` (forever
    /// with `None`). Returns `None` on timeout.
    ///
    /// A payload in the blob store is read and verified before `take`
    /// returns. If that fails, the message goes back to the queue for a
    /// moment (the delivery counts as an attempt, so a blob that stays
    /// unreadable ends in the DLQ after `max_attempts`) and `take` fails
    /// with [`QueueError::Blob`].
    pub async fn take(&self, timeout: Option<Duration>) -> Result<Option<Delivery>> {
        let until = deadline(timeout);
        let mut cs = self.cons.lock().await;
        loop {
            let mut waiter: Option<Waiter> = None;
            let result = self.take_inner(&mut cs, until, &mut waiter).await;
            if let Some(w) = waiter {
                w.release().await;
            }
            let mut d = match result {
                Ok(Some(d)) => d,
                r => return r,
            };
            let Some(r) = d.header.blob.clone() else { return Ok(Some(d)) };
            match self.read_blob(&r).await {
                Ok(payload) => {
                    d.payload = payload;
                    return Ok(Some(d));
                },
                Err(e) => {
                    warn!(id = %d.id, error = %e, "cannot read the message's blob; returning it to the queue");
                    match self.nack(&d, BLOB_RETRY_DELAY).await {
                        // Someone else claimed it meanwhile (our lease ran
                        // out), and may have acked it and deleted the blob:
                        // not ours to report. Look for the next message.
                        Err(QueueError::ClaimLost { .. }) => continue,
                        _ => return Err(e),
                    }
                },
            }
        }
    }

    async fn read_blob(&self, r: &BlobRef) -> Result<Vec<u8>> {
        match &self.blobs {
            Some(bs) => bs.get(r).await,
            None => Err(QueueError::Blob {
                key: r.key.clone(),
                fault: BlobFault::NotConfigured,
                reason: "the payload is in a blob store, but this queue handle has none (with_blob_store / --blob-dir)".into(),
            }),
        }
    }

    async fn take_inner(&self, cs: &mut ConsumerState, until: Option<Instant>, waiter: &mut Option<Waiter>) -> Result<Option<Delivery>> {
        loop {
            // Busy consumers never run dry, so they also look for expired
            // leases on a timer; otherwise a hung holder's message would wait
            // behind the whole backlog.
            let reap_every = Duration::from_millis((self.meta.lease_ms / 2).clamp(100, 1000));
            if cs.last_reap.is_none_or(|t| t.elapsed() > reap_every) {
                self.refresh(cs).await?;
                self.reap(cs).await?;
            }
            let stale = cs.last_fresh.is_none_or(|t| t.elapsed() > FRESH_INTERVAL);
            if !stale {
                if let Some(d) = self.scan(cs).await? {
                    return Ok(Some(d));
                }
            }
            self.refresh(cs).await?;
            if let Some(d) = self.scan(cs).await? {
                return Ok(Some(d));
            }
            let (reaped, next_lease) = self.reap(cs).await?;
            if reaped {
                continue;
            }
            let now = now_ms();
            let next_due = cs.not_before.values().copied().filter(|&t| t > now).min();
            let wake_ms = [next_lease, next_due].into_iter().flatten().min();
            let mut safety = Instant::now() + SAFETY_RESCAN;
            if let Some(u) = until {
                if Instant::now() >= u {
                    return Ok(None);
                }
                safety = safety.min(u);
            }
            let mut wake = safety;
            if let Some(ms) = wake_ms {
                wake = wake.min(Instant::now() + Duration::from_millis(ms.saturating_sub(now) + 1));
            }
            if waiter.is_none() {
                match Waiter::create(&self.client, &self.p("waiters")).await {
                    Ok(w) => *waiter = Some(w),
                    // Not retried: a blind retry could leave an orphan node of
                    // ours in the line. Look again shortly instead.
                    Err(QueueError::Zk(ZkError::ConnectionLoss)) => {
                        tokio::time::sleep_until(wake.min(Instant::now() + Duration::from_millis(200))).await;
                        continue;
                    },
                    Err(e) => return Err(e),
                }
            }
            self.wait(cs, waiter.as_ref().unwrap(), wake, safety).await?;
        }
    }

    /// Re-reads the small, hot parts of the queue in one request and drops
    /// cached listings so the next scan sees the server's current state.
    async fn refresh(&self, cs: &mut ConsumerState) -> Result<()> {
        let (enq_p, ready_p, claims_p) = (self.p("enq"), self.p("ready"), self.p("claims"));
        let res = retry_read(|| {
            let mut r = self.client.new_multi_reader();
            r.add_get_data(&enq_p).unwrap();
            r.add_get_children(&ready_p).unwrap();
            r.add_get_children(&claims_p).unwrap();
            r.commit()
        })
        .await?;
        let mut it = res.into_iter();
        match it.next() {
            Some(MultiReadResult::Data { data, stat }) => {
                let c = Counter::decode(&data).map_err(|e| QueueError::Corrupt { what: "enq counter", path: enq_p.clone(), reason: e.0 })?;
                cs.enq_items = c.items;
                cs.enq_version = stat.version;
            },
            Some(MultiReadResult::Error { err: ZkError::NoNode }) => return Err(QueueError::NotFound(self.path.clone())),
            Some(MultiReadResult::Error { err }) => return Err(err.into()),
            _ => return Err(QueueError::Corrupt { what: "multi read", path: enq_p, reason: "short reply".into() }),
        }
        match it.next() {
            Some(MultiReadResult::Children { children }) => {
                let mut lanes: Vec<u16> = children.iter().filter_map(|c| codec::parse_lane(c)).collect();
                lanes.sort_unstable();
                cs.lanes = lanes;
            },
            Some(MultiReadResult::Error { err }) => return Err(err.into()),
            _ => {},
        }
        match it.next() {
            Some(MultiReadResult::Children { children }) => {
                cs.claimed = children.iter().filter_map(|c| MsgId::parse(c)).collect();
                cs.claim_names = children;
            },
            Some(MultiReadResult::Error { err }) => return Err(err.into()),
            _ => {},
        }
        cs.buckets.clear();
        cs.listings.clear();
        let now = now_ms();
        cs.not_before.retain(|_, t| *t > now);
        cs.last_fresh = Some(Instant::now());
        Ok(())
    }

    async fn list(&self, path: &str) -> Result<Option<Vec<String>>> {
        match retry_read(|| self.client.list_children(path)).await {
            Ok(c) => Ok(Some(c)),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Walks lanes (priority order), buckets and items (sequence order) from
    /// the cache, listing from the server only what is not cached, and claims
    /// the first deliverable item.
    // The entry API cannot span the awaits between lookup and insert.
    #[allow(clippy::map_entry)]
    async fn scan(&self, cs: &mut ConsumerState) -> Result<Option<Delivery>> {
        let mut collided = false;
        let lanes = cs.lanes.clone();
        for lane in lanes {
            if !cs.buckets.contains_key(&lane) {
                let Some(children) = self.list(&self.lane_path(lane)).await? else { continue };
                let mut b: Vec<u64> = children.iter().filter_map(|c| codec::parse_bucket(c)).collect();
                b.sort_unstable();
                cs.buckets.insert(lane, b);
            }
            let buckets = cs.buckets[&lane].clone();
            for bucket in buckets {
                if !cs.listings.contains_key(&(lane, bucket)) {
                    match self.list(&self.bucket_path(lane, bucket)).await? {
                        None => {
                            cs.buckets.get_mut(&lane).unwrap().retain(|&b| b != bucket);
                            continue;
                        },
                        Some(children) => {
                            let mut s: Vec<u64> = children.iter().filter_map(|c| codec::parse_item(c)).collect();
                            s.sort_unstable();
                            cs.listings.insert((lane, bucket), s.into());
                        },
                    }
                }
                let now = now_ms();
                let mut seqs: Vec<u64> = cs.listings[&(lane, bucket)]
                    .iter()
                    .copied()
                    .filter(|&seq| {
                        let id = MsgId { priority: lane, seq };
                        !cs.claimed.contains(&id) && cs.not_before.get(&id).is_none_or(|&t| t <= now)
                    })
                    .collect();
                // Competing consumers walking the same list in lockstep all
                // aim at the same head item. A consumer that keeps colliding
                // starts at a random one of the first `spread` candidates
                // instead; a lone consumer never collides, keeps spread 1 and
                // so takes strictly in order.
                let window = cs.spread.min(seqs.len());
                if window > 1 {
                    let first = seqs.remove(fastrand::usize(..window));
                    seqs.insert(0, first);
                }
                for seq in seqs {
                    let id = MsgId { priority: lane, seq };
                    if cs.claimed.contains(&id) {
                        continue;
                    }
                    match self.try_claim(id).await? {
                        ClaimResult::Got(d) => {
                            cs.listings.get_mut(&(lane, bucket)).unwrap().retain(|&s| s != seq);
                            cs.claimed.insert(id);
                            if !collided {
                                cs.spread = (cs.spread - 1).max(1);
                            }
                            return Ok(Some(d));
                        },
                        ClaimResult::Gone => cs.listings.get_mut(&(lane, bucket)).unwrap().retain(|&s| s != seq),
                        ClaimResult::Taken => {
                            self.collisions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            cs.claimed.insert(id);
                            if !collided {
                                cs.spread = (cs.spread * 2).min(MAX_SPREAD);
                            }
                            collided = true;
                        },
                        ClaimResult::Delayed(t) => {
                            cs.not_before.insert(id, t);
                        },
                    }
                }
                if cs.listings[&(lane, bucket)].is_empty() && codec::bucket_end(bucket, self.meta.bucket_size) <= cs.enq_items {
                    // Every sequence number of this bucket has been allocated,
                    // so no put can target it again: remove it to keep lane
                    // listings short. NotEmpty just means items are in flight.
                    match self.client.delete(&self.bucket_path(lane, bucket), None).await {
                        Ok(()) | Err(ZkError::NoNode) => {
                            cs.buckets.get_mut(&lane).unwrap().retain(|&b| b != bucket);
                            cs.listings.remove(&(lane, bucket));
                        },
                        Err(_) => {},
                    }
                }
            }
        }
        Ok(None)
    }

    async fn try_claim(&self, id: MsgId) -> Result<ClaimResult> {
        let item = self.item_path(id);
        let (data, stat) = match retry_read(|| self.client.get_data(&item)).await {
            Ok(x) => x,
            Err(ZkError::NoNode) => return Ok(ClaimResult::Gone),
            Err(e) => return Err(e.into()),
        };
        let (mut h, payload) = match codec::decode_item(&data) {
            Ok(x) => x,
            Err(e) => {
                warn!(path = %item, error = %e, "skipping malformed item");
                return Ok(ClaimResult::Taken);
            },
        };
        let now = now_ms();
        if h.not_before_ms > now {
            return Ok(ClaimResult::Delayed(h.not_before_ms));
        }
        if self.meta.max_attempts > 0 && h.attempts >= self.meta.max_attempts {
            // Delivered max_attempts times already (each claim counts, so a
            // consumer that crashes on a poison message every time ends here).
            let claim = self.claim_path(id);
            if retry_read(|| self.client.check_stat(&claim)).await?.is_some() {
                return Ok(ClaimResult::Taken);
            }
            self.dead_letter(id, &h, payload, stat.version, false).await?;
            return Ok(ClaimResult::Gone);
        }
        h.attempts += 1;
        let lease_until_ms = now + self.meta.lease_ms;
        let token = stat.version + 1;
        let claim_data = codec::encode_claim(&ClaimData { lease_until_ms, token, consumer: self.consumer_id.clone() });
        let claim = self.claim_path(id);
        let mut w = self.client.new_multi_writer();
        w.add_create(&claim, &claim_data, &ephemeral())?;
        w.add_set_data(&item, &codec::encode_item(&h, payload), Some(stat.version))?;
        let delivery = Delivery {
            id,
            payload: payload.to_vec(),
            attempt: h.attempts,
            enqueued_ms: h.enqueued_ms,
            lease_until_ms,
            key: h.key.clone(),
            token,
            header: h,
        };
        match commit(&mut w).await {
            Ok(_) => Ok(ClaimResult::Got(delivery)),
            Err(MultiWriteError::OperationFailed { index: 0, source: ZkError::NodeExists }) => Ok(ClaimResult::Taken),
            Err(MultiWriteError::OperationFailed { index: 1, source: ZkError::NoNode }) => Ok(ClaimResult::Gone),
            Err(MultiWriteError::OperationFailed { index: 1, source: ZkError::BadVersion }) => Ok(ClaimResult::Taken),
            Err(MultiWriteError::RequestFailed { source: ZkError::ConnectionLoss }) => {
                // The claim may have committed. Our session outlives the
                // connection; a claim owned by it that names this handle
                // (several handles may share a session) is ours.
                let sid = self.client.session_id().0;
                let owned = match retry_read(|| self.client.get_data(&claim)).await {
                    Ok((data, stat)) => {
                        stat.ephemeral_owner == sid
                            && codec::decode_claim(&data).is_ok_and(|c| c.consumer == self.consumer_id && c.token == token)
                    },
                    Err(ZkError::NoNode) => false,
                    Err(e) => return Err(e.into()),
                };
                let item_v = match retry_read(|| self.client.check_stat(&item)).await? {
                    Some(s) => s.version,
                    None => return Ok(ClaimResult::Gone),
                };
                if owned && item_v == token {
                    Ok(ClaimResult::Got(delivery))
                } else {
                    Ok(ClaimResult::Taken)
                }
            },
            Err(e) => Err(e.into()),
        }
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

    /// Moves an item to the DLQ, conditioned on its version. Returns false if
    /// the item changed underneath (someone else claimed or removed it).
    async fn dead_letter(&self, id: MsgId, h: &ItemHeader, payload: &[u8], version: i32, with_claim: bool) -> Result<bool> {
        let item = self.item_path(id);
        let claim = self.claim_path(id);
        let dlq = self.p(&format!("dlq/{}", id.name()));
        let data = codec::encode_item(h, payload);
        let mut with_claim = with_claim;
        let mut attempt = 0;
        loop {
            let (shard, c, sv) = self.deq_shard().await?;
            let delta = Counter { items: 1, bytes: h.payload_size(payload), redeliveries: h.attempts.saturating_sub(1) as u64, dead: 1 };
            let mut new = c;
            new.add(&delta);
            let mut w = self.client.new_multi_writer();
            w.add_delete(&item, Some(version))?;
            if with_claim {
                w.add_delete(&claim, None)?;
            }
            w.add_create(&dlq, &data, &persistent())?;
            w.add_set_data(&self.deq_path(shard), &new.encode(), Some(sv))?;
            let shard_index = if with_claim { 3 } else { 2 };
            match commit(&mut w).await {
                Ok(_) => {
                    self.set_deq_cache(shard, Some((new, sv + 1)));
                    debug!(id = %id, "dead-lettered");
                    return Ok(true);
                },
                Err(MultiWriteError::OperationFailed { index: 0, .. }) => return Ok(false),
                Err(MultiWriteError::OperationFailed { index: 1, source: ZkError::NoNode }) if with_claim => with_claim = false,
                Err(MultiWriteError::OperationFailed { index, source: ZkError::BadVersion | ZkError::NoNode }) if index == shard_index => {
                    self.set_deq_cache(shard, None)
                },
                Err(MultiWriteError::RequestFailed { source: ZkError::ConnectionLoss }) if attempt < 50 => backoff_sleep(&mut attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Acknowledges (removes) a delivered message. Fails with `ClaimLost` if
    /// the message was delivered to someone else since.
    ///
    /// A blob-store payload's blob is deleted after the item (claim-check):
    /// the item and its reference node go in the ack's transaction, the
    /// blob after it; if that delete fails, the sweeper collects the blob.
    pub async fn ack(&self, d: &Delivery) -> Result<()> {
        let item = self.item_path(d.id);
        let claim = self.claim_path(d.id);
        let blob_ref = self.blob_ref_node(d.header.blob.as_ref());
        let mut with_claim = true;
        let mut with_ref = blob_ref.is_some();
        let mut after_loss = false;
        let mut attempt = 0;
        loop {
            let (shard, c, sv) = self.deq_shard().await?;
            let mut new = c;
            new.add(&Counter { items: 1, bytes: d.header.payload_size(&d.payload), redeliveries: d.attempt.saturating_sub(1) as u64, dead: 0 });
            let mut w = self.client.new_multi_writer();
            w.add_delete(&item, Some(d.token))?;
            if with_claim {
                w.add_delete(&claim, None)?;
            }
            let ref_index = 1 + with_claim as usize;
            if with_ref {
                w.add_delete(blob_ref.as_deref().unwrap(), None)?;
            }
            w.add_set_data(&self.deq_path(shard), &new.encode(), Some(sv))?;
            let shard_index = ref_index + with_ref as usize;
            match commit(&mut w).await {
                Ok(_) => {
                    self.set_deq_cache(shard, Some((new, sv + 1)));
                    self.delete_acked_blob(d.header.blob.as_ref()).await;
                    return Ok(());
                },
                // Gone after a lost reply: our first attempt committed, or our
                // lease ran out and another consumer took and acked it. Our
                // claim is our session's ephemeral, so before the lease's end
                // only our ack can have removed it (a reaper waits for the
                // end, by a clock within the leases' skew margin); after it
                // nobody can tell.
                Err(MultiWriteError::OperationFailed { index: 0, source: ZkError::NoNode }) if after_loss => {
                    if now_ms() < d.lease_until_ms {
                        self.delete_acked_blob(d.header.blob.as_ref()).await;
                        return Ok(());
                    }
                    return Err(QueueError::Indeterminate { op: "ack" });
                },
                Err(MultiWriteError::OperationFailed { index: 0, .. }) => return Err(QueueError::ClaimLost { id: d.id.name() }),
                // Our claim node vanished (lease reaped, or session blip) but
                // the item version proves nobody else claimed it since.
                Err(MultiWriteError::OperationFailed { index: 1, source: ZkError::NoNode }) if with_claim => with_claim = false,
                // No reference node (it was never made, e.g. by hand): the
                // item version still fences the ack.
                Err(MultiWriteError::OperationFailed { index, source: ZkError::NoNode }) if with_ref && index == ref_index => with_ref = false,
                Err(MultiWriteError::OperationFailed { index, source: ZkError::BadVersion | ZkError::NoNode }) if index == shard_index => {
                    self.set_deq_cache(shard, None)
                },
                Err(MultiWriteError::RequestFailed { source: ZkError::ConnectionLoss }) if attempt < 60 => {
                    after_loss = true;
                    backoff_sleep(&mut attempt).await;
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Acknowledges many deliveries with few requests. Each chunk is one multi;
    /// if a chunk fails (some claim lost), its deliveries are acked one by one
    /// so the result says exactly which ones were lost.
    pub async fn ack_batch(&self, ds: &[Delivery]) -> Result<Vec<Result<()>>> {
        let mut out = Vec::with_capacity(ds.len());
        // Two deletes per delivery, three with a blob reference.
        let per = if ds.iter().any(|d| d.header.blob.is_some()) { 3 } else { 2 };
        for chunk in ds.chunks(MAX_OPS_PER_MULTI / per - 1) {
            let (shard, c, sv) = self.deq_shard().await?;
            let mut new = c;
            let mut w = self.client.new_multi_writer();
            let mut n_ops = 0;
            for d in chunk {
                new.add(&Counter { items: 1, bytes: d.header.payload_size(&d.payload), redeliveries: d.attempt.saturating_sub(1) as u64, dead: 0 });
                w.add_delete(&self.item_path(d.id), Some(d.token))?;
                w.add_delete(&self.claim_path(d.id), None)?;
                n_ops += 2;
                if let Some(r) = self.blob_ref_node(d.header.blob.as_ref()) {
                    w.add_delete(&r, None)?;
                    n_ops += 1;
                }
            }
            w.add_set_data(&self.deq_path(shard), &new.encode(), Some(sv))?;
            match commit(&mut w).await {
                Ok(_) => {
                    self.set_deq_cache(shard, Some((new, sv + 1)));
                    for d in chunk {
                        self.delete_acked_blob(d.header.blob.as_ref()).await;
                    }
                    out.extend(chunk.iter().map(|_| Ok(())));
                },
                Err(MultiWriteError::OperationFailed { index, .. }) => {
                    if index == n_ops {
                        self.set_deq_cache(shard, None);
                    }
                    for d in chunk {
                        out.push(self.ack(d).await);
                    }
                },
                Err(MultiWriteError::RequestFailed { source: ZkError::ConnectionLoss }) => {
                    for d in chunk {
                        out.push(self.ack(d).await);
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Returns a message to the queue, deliverable again after `delay`. A
    /// message that has used up its attempts goes to the DLQ instead.
    pub async fn nack(&self, d: &Delivery, delay: Duration) -> Result<NackOutcome> {
        if self.meta.max_attempts > 0 && d.attempt >= self.meta.max_attempts {
            return if self.dead_letter(d.id, &d.header, &d.payload, d.token, true).await? {
                Ok(NackOutcome::DeadLettered)
            } else {
                Err(QueueError::ClaimLost { id: d.id.name() })
            };
        }
        let mut h = d.header.clone();
        h.not_before_ms = if delay.is_zero() { 0 } else { now_ms() + delay.as_millis() as u64 };
        let data = codec::encode_item(&h, &d.payload);
        let mut with_claim = true;
        let mut attempt = 0;
        loop {
            let mut w = self.client.new_multi_writer();
            w.add_set_data(&self.item_path(d.id), &data, Some(d.token))?;
            if with_claim {
                w.add_delete(&self.claim_path(d.id), None)?;
            }
            match commit(&mut w).await {
                Ok(_) => return Ok(NackOutcome::Requeued),
                Err(MultiWriteError::OperationFailed { index: 0, .. }) => return Err(QueueError::ClaimLost { id: d.id.name() }),
                Err(MultiWriteError::OperationFailed { index: 1, source: ZkError::NoNode }) => with_claim = false,
                Err(MultiWriteError::RequestFailed { source: ZkError::ConnectionLoss }) if attempt < 60 => {
                    // A committed nack bumped the version, so a retry of it
                    // fails the version check; report that as lost rather
                    // than guess.
                    backoff_sleep(&mut attempt).await;
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Extends the lease of a delivery to now + `lease`.
    pub async fn extend(&self, d: &mut Delivery, lease: Duration) -> Result<()> {
        let lease_until_ms = now_ms() + lease.as_millis() as u64;
        let data = codec::encode_claim(&ClaimData { lease_until_ms, token: d.token, consumer: self.consumer_id.clone() });
        let item = self.item_path(d.id);
        let claim = self.claim_path(d.id);
        let mut attempt = 0;
        let mut recreate = false;
        loop {
            let mut w = self.client.new_multi_writer();
            w.add_check_version(&item, d.token)?;
            if recreate {
                w.add_create(&claim, &data, &ephemeral())?;
            } else {
                w.add_set_data(&claim, &data, None)?;
            }
            match commit(&mut w).await {
                Ok(_) => {
                    d.lease_until_ms = lease_until_ms;
                    return Ok(());
                },
                Err(MultiWriteError::OperationFailed { index: 0, .. }) => return Err(QueueError::ClaimLost { id: d.id.name() }),
                // The lease was reaped but nobody has claimed the item since:
                // take the claim back.
                Err(MultiWriteError::OperationFailed { index: 1, source: ZkError::NoNode }) if !recreate => recreate = true,
                Err(MultiWriteError::OperationFailed { index: 1, .. }) => return Err(QueueError::ClaimLost { id: d.id.name() }),
                Err(MultiWriteError::RequestFailed { source: ZkError::ConnectionLoss }) if attempt < 60 => backoff_sleep(&mut attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Releases claims whose lease has run out, so their items can be claimed
    /// again. Returns whether anything was released and the earliest lease
    /// deadline still running.
    async fn reap(&self, cs: &mut ConsumerState) -> Result<(bool, Option<u64>)> {
        cs.last_reap = Some(Instant::now());
        let now = now_ms();
        let mut reaped = false;
        let mut next: Option<u64> = None;
        for chunk in cs.claim_names.clone().chunks(200) {
            let paths: Vec<String> = chunk.iter().map(|n| self.p(&format!("claims/{n}"))).collect();
            let res = self.get_data_many(&paths).await?;
            for (path, r) in paths.iter().zip(res) {
                let MultiReadResult::Data { data, stat } = r else { continue };
                let Ok(c) = codec::decode_claim(&data) else { continue };
                if c.lease_until_ms <= now {
                    let mut w = self.client.new_multi_writer();
                    w.add_check_version(path, stat.version)?;
                    w.add_delete(path, Some(stat.version))?;
                    if commit(&mut w).await.is_ok() {
                        debug!(claim = %path, consumer = %c.consumer, "lease expired; released");
                        reaped = true;
                        if let Some(id) = path.rsplit('/').next().and_then(MsgId::parse) {
                            cs.claimed.remove(&id);
                        }
                    }
                } else {
                    next = Some(next.map_or(c.lease_until_ms, |n| n.min(c.lease_until_ms)));
                }
            }
        }
        Ok((reaped, next))
    }

    /// Sleeps until something that could make a message deliverable happens.
    /// Idle consumers form a line of ephemeral sequential nodes; only the
    /// first watches the queue (puts via `enq`, released claims via `claims`),
    /// the others watch their predecessor. A put therefore wakes one consumer,
    /// which passes the baton on when it leaves, instead of waking them all.
    ///
    /// Timers (next delayed message due, next lease expiry) are only armed by
    /// the first in line (`wake`); the rest use `safety` (deadline or safety
    /// rescan), so a message falling due wakes one consumer, not all.
    async fn wait(&self, cs: &ConsumerState, waiter: &Waiter, wake: Instant, safety: Instant) -> Result<()> {
        let dir = self.p("waiters");
        let mut line = match self.list(&dir).await? {
            Some(l) => l,
            None => return Err(QueueError::NotFound(self.path.clone())),
        };
        line.sort_by(|a, b| {
            let sa = a.rsplit('-').next().and_then(codec::parse_zk_seq).unwrap_or(i32::MAX);
            let sb = b.rsplit('-').next().and_then(codec::parse_zk_seq).unwrap_or(i32::MAX);
            codec::zk_seq_order(sa, sb)
        });
        let Some(pos) = line.iter().position(|n| *n == waiter.name) else {
            // Our node is gone (session trouble); rescan rather than wait.
            return Ok(());
        };
        if pos == 0 {
            let (stat, enq_w) = match self.client.check_and_watch_stat(&self.p("enq")).await.map_err(normalize) {
                Ok(x) => x,
                // Rescan rather than fail; the scan's reads retry through it.
                Err(ZkError::ConnectionLoss) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return Ok(());
                },
                Err(e) => return Err(e.into()),
            };
            if stat.is_none_or(|s| s.version != cs.enq_version) {
                return Ok(());
            }
            let (claims, claims_w) = match self.client.list_and_watch_children(&self.p("claims")).await.map_err(normalize) {
                Ok(x) => x,
                // Rescan rather than fail; the scan's reads retry through it.
                Err(ZkError::ConnectionLoss) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return Ok(());
                },
                Err(e) => return Err(e.into()),
            };
            let now: HashSet<&String> = claims.iter().collect();
            if cs.claim_names.iter().any(|c| !now.contains(c)) {
                return Ok(());
            }
            tokio::select! {
                _ = enq_w.changed() => self.count_wakeup(),
                _ = claims_w.changed() => self.count_wakeup(),
                _ = tokio::time::sleep_until(wake) => {},
            }
        } else {
            let pred = format!("{dir}/{}", line[pos - 1]);
            let (stat, w) = match self.client.check_and_watch_stat(&pred).await.map_err(normalize) {
                Ok(x) => x,
                // Rescan rather than fail; the scan's reads retry through it.
                Err(ZkError::ConnectionLoss) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return Ok(());
                },
                Err(e) => return Err(e.into()),
            };
            if stat.is_none() {
                return Ok(());
            }
            tokio::select! {
                _ = w.changed() => self.count_wakeup(),
                _ = tokio::time::sleep_until(safety) => {},
            }
        }
        Ok(())
    }

    fn count_wakeup(&self) {
        self.wakeups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    // -----------------------------------------------------------------------
    // Observability and maintenance
    // -----------------------------------------------------------------------

    /// How often this handle's idle consumer was woken by a watch (as opposed
    /// to a timer). Lets callers and tests check that puts do not wake every
    /// idle consumer.
    pub fn watch_wakeups(&self) -> u64 {
        self.wakeups.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How often this handle tried to claim a message another consumer had
    /// just claimed (a wasted round trip; grows with competing consumers).
    pub fn claim_collisions(&self) -> u64 {
        self.collisions.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn stats(&self) -> Result<Stats> {
        let enq = self.read_enq().await?.0;
        let deq = self.read_deq().await?;
        let count = |rel: &'static str| async move {
            let p = self.p(rel);
            Ok::<u64, QueueError>(retry_read(|| self.client.check_stat(&p)).await?.map_or(0, |s| s.num_children as u64))
        };
        let mut oldest: Option<u64> = None;
        let mut lanes: Vec<u16> = self.list(&self.p("ready")).await?.unwrap_or_default().iter().filter_map(|l| codec::parse_lane(l)).collect();
        lanes.sort_unstable();
        'lanes: for lane in lanes {
            let mut buckets: Vec<u64> = self.list(&self.lane_path(lane)).await?.unwrap_or_default().iter().filter_map(|b| codec::parse_bucket(b)).collect();
            buckets.sort_unstable();
            for b in buckets {
                let mut items: Vec<u64> = self.list(&self.bucket_path(lane, b)).await?.unwrap_or_default().iter().filter_map(|i| codec::parse_item(i)).collect();
                items.sort_unstable();
                if let Some(&seq) = items.first() {
                    if let Ok((data, _)) = self.client.get_data(&self.item_path(MsgId { priority: lane, seq })).await {
                        if let Ok((h, _)) = codec::decode_item(&data) {
                            oldest = Some(oldest.map_or(h.enqueued_ms, |o| o.min(h.enqueued_ms)));
                        }
                    }
                    continue 'lanes;
                }
            }
        }
        let now = now_ms();
        Ok(Stats {
            depth: enq.items.saturating_sub(deq.items),
            bytes: enq.bytes.saturating_sub(deq.bytes),
            in_flight: count("claims").await?,
            dlq: count("dlq").await?,
            oldest_age: oldest.map(|o| Duration::from_millis(now.saturating_sub(o))),
            redeliveries: deq.redeliveries,
            enqueued_total: enq.items,
            removed_total: deq.items,
            dead_lettered_total: deq.dead,
            waiting_consumers: count("waiters").await?,
            max_items: self.meta.max_items,
            max_bytes: self.meta.max_bytes,
        })
    }

    /// Up to `limit` dead letters, oldest first.
    pub async fn dlq(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut names = self.list(&self.p("dlq")).await?.unwrap_or_default();
        names.sort();
        let mut out = Vec::new();
        for n in names.into_iter().take(limit) {
            let path = self.p(&format!("dlq/{n}"));
            let Ok((data, _)) = self.client.get_data(&path).await else { continue };
            let (h, payload) = codec::decode_item(&data).map_err(|e| QueueError::Corrupt { what: "dead letter", path, reason: e.0 })?;
            let (payload, blob_error) = match &h.blob {
                None => (payload.to_vec(), None),
                Some(r) => match self.read_blob(r).await {
                    Ok(p) => (p, None),
                    Err(e) => (Vec::new(), Some(e.to_string())),
                },
            };
            out.push(DeadLetter { id: n, payload, attempts: h.attempts, enqueued_ms: h.enqueued_ms, key: h.key, blob: h.blob, blob_error });
        }
        Ok(out)
    }

    /// Moves up to `limit` dead letters (oldest first) back into the queue at
    /// its tail with a fresh attempt count, e.g. after fixing the bug that
    /// poisoned them. Bounds apply (fails with `Full` like a put); keys are
    /// kept, but not re-checked. Returns how many were requeued.
    pub async fn requeue_dead_letters(&self, limit: usize) -> Result<usize> {
        let mut names = self.list(&self.p("dlq")).await?.unwrap_or_default();
        names.sort();
        names.truncate(limit);
        let mut entries = Vec::new();
        for n in names {
            let path = self.p(&format!("dlq/{n}"));
            let Ok((data, _)) = retry_read(|| self.client.get_data(&path)).await else { continue };
            let (mut h, payload) = codec::decode_item(&data).map_err(|e| QueueError::Corrupt { what: "dead letter", path: path.clone(), reason: e.0 })?;
            h.attempts = 0;
            h.not_before_ms = 0;
            entries.push((path, h, payload.to_vec()));
        }
        let mut st = self.prod.lock().await;
        let mut moved = 0;
        let mut attempt = 0u32;
        for chunk in entries.chunks(MAX_OPS_PER_MULTI / 2 - 1) {
            let mut chunk: Vec<&(String, ItemHeader, Vec<u8>)> = chunk.iter().collect();
            while !chunk.is_empty() {
                let (enq, version) = self.cached_enq(&mut st).await?;
                let n = chunk.len() as u64;
                let bytes: u64 = chunk.iter().map(|e| e.1.payload_size(&e.2)).sum();
                if !codec::admits(&enq, &st.deq_sum, n, bytes, self.meta.max_items, self.meta.max_bytes) {
                    st.deq_sum = self.read_deq().await?;
                    let fresh = self.read_enq().await?;
                    st.enq = Some(fresh);
                    if !codec::admits(&fresh.0, &st.deq_sum, n, bytes, self.meta.max_items, self.meta.max_bytes) {
                        let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
                        return Err(QueueError::Full {
                            path: self.path.clone(),
                            items: fresh.0.items.saturating_sub(st.deq_sum.items),
                            bytes: fresh.0.bytes.saturating_sub(st.deq_sum.bytes),
                            max_items: show(self.meta.max_items),
                            max_bytes: show(self.meta.max_bytes),
                        });
                    }
                    continue;
                }
                for (j, e) in chunk.iter().enumerate() {
                    self.ensure_bucket(&mut st, e.1.priority, codec::bucket_of(enq.items + j as u64, self.meta.bucket_size)).await?;
                }
                let new_enq = Counter { items: enq.items + n, bytes: enq.bytes + bytes, ..enq };
                let mut w = self.client.new_multi_writer();
                w.add_set_data(&self.p("enq"), &new_enq.encode(), Some(version))?;
                for (j, e) in chunk.iter().enumerate() {
                    let id = MsgId { priority: e.1.priority, seq: enq.items + j as u64 };
                    w.add_create(&self.item_path(id), &codec::encode_item(&e.1, &e.2), &persistent())?;
                    w.add_delete(&e.0, None)?;
                }
                match commit(&mut w).await {
                    Ok(_) => {
                        st.enq = Some((new_enq, version + 1));
                        moved += chunk.len();
                        chunk.clear();
                    },
                    Err(MultiWriteError::OperationFailed { index: 0, .. }) => st.enq = None,
                    // Someone else requeued or removed that dead letter.
                    Err(MultiWriteError::OperationFailed { index, source: ZkError::NoNode }) if index % 2 == 0 => {
                        chunk.remove(index / 2 - 1);
                    },
                    Err(MultiWriteError::OperationFailed { source: ZkError::NoNode, .. }) => st.known_buckets.clear(),
                    Err(MultiWriteError::RequestFailed { source: ZkError::ConnectionLoss }) if attempt < 20 => {
                        st.enq = None;
                        backoff_sleep(&mut attempt).await;
                    },
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(moved)
    }

    /// Forgets idempotency keys older than `age`, so they can be reused and do
    /// not accumulate forever. Returns how many were removed.
    pub async fn purge_keys(&self, age: Duration) -> Result<usize> {
        let cutoff = now_ms().saturating_sub(age.as_millis() as u64) as i64;
        let mut removed = 0;
        for s in 0..codec::KEY_SHARDS {
            let dir = self.p(&format!("keys/{}", codec::key_shard_name(s)));
            for n in self.list(&dir).await?.unwrap_or_default() {
                let path = format!("{dir}/{n}");
                if let Ok(Some(stat)) = self.client.check_stat(&path).await {
                    if stat.ctime <= cutoff && self.client.delete(&path, Some(stat.version)).await.is_ok() {
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Deletes orphan blobs: those under this queue's prefix that are older
    /// than `grace` (by the store's modification time) and that no item or
    /// dead letter references (no `P/blobs/ID` node). Orphans come from
    /// crashes between the two steps of a put (blob written, item not) or
    /// of an ack (item deleted, blob not), and from puts whose outcome was
    /// unknown. `grace` must exceed the longest put (blob write to item
    /// commit, retries included) plus the clock skew between the store and
    /// this host: a younger blob may belong to a put still in progress.
    /// Objects not named like this library's blobs are never touched.
    pub async fn sweep_blobs(&self, grace: Duration) -> Result<SweepReport> {
        let Some(bs) = &self.blobs else {
            return Err(QueueError::Invalid("sweep_blobs needs a blob store (with_blob_store / --blob-dir)".into()));
        };
        let cutoff = now_ms() as i64 - grace.as_millis().min(i64::MAX as u128) as i64;
        let mut report = SweepReport::default();
        let mut listing = bs.store.list(Some(&bs.base));
        let mut batch: Vec<(String, object_store::path::Path)> = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| QueueError::Blob { key: bs.base.to_string(), fault: BlobFault::Store, reason: format!("listing the blob store failed: {e}") })?;
            report.listed += 1;
            // Exactly BASE/HH/ID: a nested queue's blobs (BASE/child/...) are
            // not ours.
            let parts: Vec<String> = meta.location.prefix_match(&bs.base).map(|it| it.map(|p| p.as_ref().to_string()).collect()).unwrap_or_default();
            let id = match parts.as_slice() {
                [hh, id] if codec::is_blob_id(id) && id.starts_with(hh.as_str()) && hh.len() == 2 => id.clone(),
                _ => {
                    report.foreign += 1;
                    continue;
                },
            };
            if meta.last_modified.timestamp_millis() > cutoff {
                report.young += 1;
                continue;
            }
            batch.push((id, meta.location));
            if batch.len() >= 200 {
                self.sweep_batch(bs, &mut batch, &mut report).await?;
            }
        }
        self.sweep_batch(bs, &mut batch, &mut report).await?;
        Ok(report)
    }

    async fn sweep_batch(&self, bs: &BlobStore, batch: &mut Vec<(String, object_store::path::Path)>, report: &mut SweepReport) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let paths: Vec<String> = batch.iter().map(|(id, _)| self.blob_ref_path(id)).collect();
        let res = self.get_data_many(&paths).await?;
        for ((_, location), r) in batch.drain(..).zip(res) {
            match r {
                MultiReadResult::Error { err: ZkError::NoNode } => {
                    bs.delete(location.as_ref()).await?;
                    report.deleted += 1;
                },
                MultiReadResult::Error { err } => return Err(err.into()),
                _ => report.referenced += 1,
            }
        }
        Ok(())
    }
}

/// An idle consumer's place in line. Released explicitly when `take` returns;
/// if the future is dropped instead, Drop removes it in the background (and
/// it is ephemeral, so a crash removes it too).
struct Waiter {
    client: Client,
    path: String,
    name: String,
    released: bool,
}

impl Waiter {
    async fn create(client: &Client, dir: &str) -> Result<Waiter> {
        let prefix = format!("{dir}/w-");
        let (_, seq) = client.create(&prefix, b"", &ephemeral_seq()).await.map_err(normalize)?;
        let name = format!("w-{seq}");
        Ok(Waiter { client: client.clone(), path: format!("{dir}/{name}"), name, released: false })
    }

    async fn release(mut self) {
        self.released = true;
        let _ = self.client.delete(&self.path, None).await;
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.released {
            let client = self.client.clone();
            let path = std::mem::take(&mut self.path);
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    let _ = client.delete(&path, None).await;
                });
            }
        }
    }
}
