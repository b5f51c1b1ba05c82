//! corral-queue: a work queue over any ZooKeeper-protocol server.
//!
//! The layouts share one API surface ([`Queue`]):
//! * [`native`]: priorities, delays, leases, fenced acks, DLQ, idempotent
//!   producers, exact bounds, flat cost at millions of pending items;
//! * [`interop`] `Flavor::Kazoo`: kazoo's `LockingQueue` node layout, for
//!   Python interop;
//! * [`interop`] `Flavor::KazooQueue`: kazoo's lock-less `Queue`;
//! * [`interop`] `Flavor::Curator`: Curator's `DistributedQueue` layout (with
//!   a lock path), for Java interop.
//!
//! See docs/queue.md for guarantees and failure behaviour.

pub mod blob;
pub mod codec;
pub mod error;
pub mod interop;
pub mod native;
mod plan;

use std::time::Duration;

pub use blob::{BlobStore, SweepReport};
pub use codec::{Alloc, BlobRef, Meta, MsgId};
pub use error::{BlobFault, QueueError, Result};
/// The blob store interface the claim-check takes (re-exported so callers
/// build stores with the same version).
pub use object_store;
pub use native::{DeadLetter, Delivery, Message, NackOutcome, NativeQueue, PutOutcome, Stats};
use zookeeper_client::Client;

/// Connects to `hosts` (a ZooKeeper connect string, optionally with chroot),
/// mapping failure to a clear [`QueueError::Unreachable`].
pub async fn connect(hosts: &str, session_timeout: Duration) -> Result<Client> {
    // Fail fast when every host refuses (a typo, a server that is down)
    // instead of waiting out the session timeout, but allow for a brief blip.
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let connector = Client::connector()
            .with_session_timeout(session_timeout)
            .with_connection_timeout(Duration::from_secs(5))
            .with_fail_eagerly();
        match tokio::time::timeout(Duration::from_secs(15), connector.connect(hosts)).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(zookeeper_client::Error::NoHosts)) => last = "connection refused or failed for every host".into(),
            Ok(Err(e)) => return Err(QueueError::Unreachable { hosts: hosts.into(), reason: e.to_string() }),
            Err(_) => return Err(QueueError::Unreachable { hosts: hosts.into(), reason: "timed out after 15s".into() }),
        }
    }
    Err(QueueError::Unreachable { hosts: hosts.into(), reason: last })
}

/// Guesses which layout lives at `path` from its data and children.
pub async fn detect_layout(client: &Client, path: &str) -> Result<String> {
    let (data, _) = match client.get_data(path).await {
        Ok(x) => x,
        Err(zookeeper_client::Error::NoNode) => return Err(QueueError::NotFound(path.into())),
        Err(e) => return Err(e.into()),
    };
    if data.starts_with(b"corral-queue native") {
        return Ok("native".into());
    }
    let children = client.list_children(path).await?;
    if children.iter().any(|c| c == "entries") && children.iter().any(|c| c == "taken") {
        return Ok("kazoo".into());
    }
    if !children.is_empty() && children.iter().all(|c| codec::parse_kazoo_entry(c).is_some()) {
        return Ok("kazoo-queue".into());
    }
    if children.iter().any(|c| c.starts_with(codec::CURATOR_PREFIX)) {
        return Ok("curator".into());
    }
    Ok(if children.is_empty() { "empty node".into() } else { "unrecognised".into() })
}

/// Which node layout a queue uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Native,
    /// kazoo `LockingQueue`; an existing kazoo `Queue` is recognised too.
    Kazoo,
    /// kazoo `Queue` (lock-less, take deletes).
    KazooQueue,
    Curator,
}

impl std::str::FromStr for Layout {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "native" => Ok(Layout::Native),
            "kazoo" => Ok(Layout::Kazoo),
            "kazoo-queue" => Ok(Layout::KazooQueue),
            "curator" => Ok(Layout::Curator),
            other => Err(QueueError::Invalid(format!("unknown layout {other:?} (native, kazoo, kazoo-queue or curator)"))),
        }
    }
}

/// A queue of any layout behind one interface (what the CLI uses).
#[derive(Debug)]
pub enum Queue {
    Native(Box<NativeQueue>),
    // Boxed as well: a Client handle is several hundred bytes.
    Lock(Box<interop::LockQueue>),
}

/// A claimed message of any layout.
#[derive(Debug, Clone)]
pub enum AnyDelivery {
    Native(Delivery),
    Lock(interop::LockDelivery),
}

impl AnyDelivery {
    pub fn id(&self) -> String {
        match self {
            AnyDelivery::Native(d) => d.id.name(),
            AnyDelivery::Lock(d) => d.name.clone(),
        }
    }

    /// The message body; a Curator envelope can hold several.
    pub fn payloads(&self) -> Vec<&[u8]> {
        match self {
            AnyDelivery::Native(d) => vec![&d.payload],
            AnyDelivery::Lock(d) => d.payloads.iter().map(Vec::as_slice).collect(),
        }
    }

    pub fn attempt(&self) -> Option<u32> {
        match self {
            AnyDelivery::Native(d) => Some(d.attempt),
            AnyDelivery::Lock(_) => None,
        }
    }
}

/// Layout-independent statistics; `None` where a layout cannot tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnyStats {
    pub layout: String,
    pub depth: u64,
    pub in_flight: u64,
    pub oldest_age: Option<Duration>,
    pub bytes: Option<u64>,
    pub redeliveries: Option<u64>,
    pub dlq: Option<u64>,
    pub waiting_consumers: Option<u64>,
    pub max_items: Option<u64>,
    pub max_bytes: Option<u64>,
}

impl Queue {
    /// Opens the queue at `path`. With `create`, a missing queue is created
    /// (native queues with `meta`); otherwise it is an error.
    pub async fn open(client: &Client, path: &str, layout: Layout, create: bool, meta: Meta) -> Result<Queue> {
        Ok(match layout {
            Layout::Native if create => Queue::Native(Box::new(NativeQueue::create(client, path, meta).await?)),
            Layout::Native => Queue::Native(Box::new(NativeQueue::open(client, path).await?)),
            Layout::Kazoo => Queue::Lock(Box::new(interop::LockQueue::kazoo(client, path, create).await?)),
            Layout::KazooQueue => Queue::Lock(Box::new(interop::LockQueue::kazoo_queue(client, path, create).await?)),
            Layout::Curator => Queue::Lock(Box::new(interop::LockQueue::curator(client, path, None, create).await?)),
        })
    }

    /// A Curator queue whose locks live at `locks` (Curator's `lockPath`)
    /// instead of the default `PATH-locks`.
    pub async fn open_curator(client: &Client, path: &str, locks: Option<&str>, create: bool) -> Result<Queue> {
        Ok(Queue::Lock(Box::new(interop::LockQueue::curator(client, path, locks, create).await?)))
    }

    /// Opens an existing queue of whatever layout is found at `path`.
    pub async fn open_existing(client: &Client, path: &str) -> Result<Queue> {
        codec::validate_path(path).map_err(|reason| QueueError::BadPath { path: path.into(), reason })?;
        let layout = match detect_layout(client, path).await?.as_str() {
            "native" => Layout::Native,
            "kazoo" => Layout::Kazoo,
            "kazoo-queue" => Layout::KazooQueue,
            "curator" => Layout::Curator,
            // An empty node may be a fresh Curator queue, a drained kazoo
            // Queue or anything else: only the user can say which.
            "empty node" => return Err(QueueError::Invalid(format!("{path} is an empty node: name its layout with --layout (kazoo, kazoo-queue or curator)"))),
            other => return Err(QueueError::WrongLayout { path: path.into(), expected: "native, kazoo, kazoo-queue or curator", found: other.into() }),
        };
        Queue::open(client, path, layout, false, Meta::default()).await
    }

    pub fn layout_name(&self) -> &'static str {
        match self {
            Queue::Native(_) => "native",
            Queue::Lock(q) => q.flavor().name(),
        }
    }

    pub async fn put(&self, msg: Message) -> Result<PutOutcome> {
        match self {
            Queue::Native(q) => q.put(msg).await,
            Queue::Lock(q) => {
                let layout = q.flavor().name();
                if !msg.delay.is_zero() {
                    return Err(QueueError::Unsupported { layout, what: "delayed delivery" });
                }
                if msg.key.is_some() {
                    return Err(QueueError::Unsupported { layout, what: "idempotency keys" });
                }
                let name = q.put(&msg.payload, msg.priority).await?;
                Ok(PutOutcome::Enqueued(MsgId { priority: msg.priority, seq: name.rsplit('-').next().and_then(codec::parse_zk_seq).unwrap_or(0) as u32 as u64 }))
            },
        }
    }

    pub async fn take(&self, timeout: Option<Duration>) -> Result<Option<AnyDelivery>> {
        Ok(match self {
            Queue::Native(q) => q.take(timeout).await?.map(AnyDelivery::Native),
            Queue::Lock(q) => q.take(timeout).await?.map(AnyDelivery::Lock),
        })
    }

    pub async fn ack(&self, d: &AnyDelivery) -> Result<()> {
        match (self, d) {
            (Queue::Native(q), AnyDelivery::Native(d)) => q.ack(d).await,
            (Queue::Lock(q), AnyDelivery::Lock(d)) => q.ack(d).await,
            _ => Err(QueueError::Invalid("delivery belongs to another layout".into())),
        }
    }

    /// Returns the message to the queue (after `delay`, native only).
    pub async fn nack(&self, d: &AnyDelivery, delay: Duration) -> Result<()> {
        match (self, d) {
            (Queue::Native(q), AnyDelivery::Native(d)) => q.nack(d, delay).await.map(|_| ()),
            (Queue::Lock(q), AnyDelivery::Lock(d)) if delay.is_zero() => q.release(d).await,
            (Queue::Lock(q), _) => Err(QueueError::Unsupported { layout: q.flavor().name(), what: "delayed nack" }),
            _ => Err(QueueError::Invalid("delivery belongs to another layout".into())),
        }
    }

    pub async fn stats(&self) -> Result<AnyStats> {
        match self {
            Queue::Native(q) => {
                let s = q.stats().await?;
                Ok(AnyStats {
                    layout: "native".into(),
                    depth: s.depth,
                    in_flight: s.in_flight,
                    oldest_age: s.oldest_age,
                    bytes: Some(s.bytes),
                    redeliveries: Some(s.redeliveries),
                    dlq: Some(s.dlq),
                    waiting_consumers: Some(s.waiting_consumers),
                    max_items: s.max_items,
                    max_bytes: s.max_bytes,
                })
            },
            Queue::Lock(q) => {
                let (depth, in_flight) = q.counts().await?;
                Ok(AnyStats {
                    layout: q.flavor().name().into(),
                    depth,
                    in_flight,
                    oldest_age: q.oldest_age().await?,
                    ..AnyStats::default()
                })
            },
        }
    }
}
