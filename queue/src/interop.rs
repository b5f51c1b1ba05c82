//! Interop layouts built on "items directory + directory of ephemeral locks":
//! kazoo's `LockingQueue` and Curator's `DistributedQueue` (with a lock path),
//! plus kazoo's lock-less `Queue`, whose consumers take by deleting.
//! All list the whole items directory on every change; that is how the other
//! clients work and the layout cannot avoid it (see docs/queue.md).
//!
//! Queues the other libraries created are opened as they are, recognised by
//! their nodes: no marker of ours is required or written.

use std::cmp::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client::{Acls, Client, CreateMode};

use crate::plan::{Failed, Plan};

/// What each op of a kazoo/Curator multi does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockOp {
    /// Our lock node (checked at the version we created it with: the fence).
    Lock,
    Item,
}

use crate::codec;
use crate::error::{deadline, QueueError, Result, ZkError};
use crate::native::retry_read;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `P/entries/entry-PPP-SEQ` raw bytes, locks `P/taken/<entry>` holding
    /// the consumer id.
    Kazoo,
    /// `P/queue-SEQ` holding an ItemSerializer envelope, locks
    /// `LOCKS/<item>` (empty).
    Curator,
    /// kazoo `Queue`: `P/entry-PPP-SEQ` raw bytes, no locks; a take deletes
    /// the entry (at most once, exactly as kazoo's `Queue.get`).
    KazooQueue,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Kazoo => "kazoo",
            Flavor::Curator => "curator",
            Flavor::KazooQueue => "kazoo-queue",
        }
    }
}

/// A message claimed from an interop queue.
#[derive(Debug, Clone)]
pub struct LockDelivery {
    /// The item's node name.
    pub name: String,
    /// One payload for kazoo; a Curator envelope may carry several
    /// (`putMulti`), all delivered and acked together.
    pub payloads: Vec<Vec<u8>>,
    pub priority: Option<u16>,
    raw: Vec<u8>,
    lock_version: i32,
}

#[derive(Debug)]
pub struct LockQueue {
    client: Client,
    flavor: Flavor,
    path: String,
    items: String,
    locks: String,
    id: Vec<u8>,
    /// The Curator queue holds `DistributedPriorityQueue` items: our puts
    /// must carry a priority in the name too, or Curator would misorder them.
    curator_priority: bool,
}

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

impl LockQueue {
    /// kazoo `LockingQueue(client, path)`.
    pub async fn kazoo(client: &Client, path: &str, create: bool) -> Result<Self> {
        let q = LockQueue {
            client: client.clone(),
            flavor: Flavor::Kazoo,
            path: path.into(),
            items: format!("{path}/entries"),
            locks: format!("{path}/taken"),
            // kazoo uses uuid4().hex as the lock owner id; any unique string
            // works, ours says who we are.
            id: format!("corral-{:016x}{:016x}", client.session_id().0, fastrand::u64(..)).into_bytes(),
            curator_priority: false,
        };
        q.init(create).await
    }

    /// kazoo `Queue(client, path)`: entries directly under `path`.
    pub async fn kazoo_queue(client: &Client, path: &str, create: bool) -> Result<Self> {
        let q = LockQueue { client: client.clone(), flavor: Flavor::KazooQueue, path: path.into(), items: path.into(), locks: String::new(), id: Vec::new(), curator_priority: false };
        q.init(create).await
    }

    /// Curator `QueueBuilder.builder(client, consumer, serializer, path).lockPath(locks)`.
    /// `locks` defaults to `PATH-locks` (it must not be inside `PATH`, whose
    /// children Curator treats as items).
    pub async fn curator(client: &Client, path: &str, locks: Option<&str>, create: bool) -> Result<Self> {
        let locks = locks.map(str::to_string).unwrap_or_else(|| format!("{path}-locks"));
        codec::validate_path(&locks).map_err(|reason| QueueError::BadPath { path: locks.clone(), reason })?;
        let q = LockQueue {
            client: client.clone(),
            flavor: Flavor::Curator,
            path: path.into(),
            items: path.into(),
            locks,
            id: Vec::new(),
            curator_priority: false,
        };
        q.init(create).await
    }

    async fn init(mut self, create: bool) -> Result<Self> {
        codec::validate_path(&self.path).map_err(|reason| QueueError::BadPath { path: self.path.clone(), reason })?;
        let existing = match retry_read(|| self.client.get_data(&self.path)).await {
            Ok((data, _)) => Some(data),
            Err(ZkError::NoNode) => None,
            Err(e) => return Err(e.into()),
        };
        let Some(data) = existing else {
            if !create {
                return Err(QueueError::NotFound(self.path.clone()));
            }
            for d in self.dirs() {
                self.client.mkdir(&d, &persistent()).await?;
            }
            return Ok(self);
        };
        if data.starts_with(b"corral-queue native") {
            return Err(QueueError::WrongLayout { path: self.path.clone(), expected: self.flavor.name(), found: "native".into() });
        }
        // The queue node exists: whoever made it (kazoo, Curator, us), its
        // children say which layout it holds.
        let children = retry_read(|| self.client.list_children(&self.path)).await?;
        self.adopt(&children)?;
        // kazoo's LockingQueue ensures both of its directories on first use
        // and Curator creates its lock path on start(); doing the same here is
        // what those libraries would do, not a marker of ours.
        for d in self.dirs() {
            if d != self.path {
                self.client.mkdir(&d, &persistent()).await?;
            }
        }
        Ok(self)
    }

    /// Directories this flavor needs.
    fn dirs(&self) -> Vec<String> {
        match self.flavor {
            Flavor::KazooQueue => vec![self.items.clone()],
            _ => vec![self.items.clone(), self.locks.clone()],
        }
    }

    /// Checks an existing queue node's children against the requested layout,
    /// switching kazoo `LockingQueue` to kazoo `Queue` when the node holds the
    /// latter's entries (both are what a user means by "a kazoo queue").
    fn adopt(&mut self, children: &[String]) -> Result<()> {
        let wrong = |expected: &'static str, found: &str| QueueError::WrongLayout { path: self.path.clone(), expected, found: found.into() };
        let has_dirs = children.iter().any(|c| c == "entries" || c == "taken");
        let has_entries = children.iter().any(|c| codec::parse_kazoo_entry(c).is_some());
        match self.flavor {
            Flavor::Kazoo if has_dirs && has_entries => Err(wrong("kazoo", "both kazoo LockingQueue directories and kazoo Queue entries")),
            Flavor::Kazoo if has_entries => {
                self.flavor = Flavor::KazooQueue;
                self.items = self.path.clone();
                self.locks = String::new();
                Ok(())
            },
            // kazoo's Queue.get would try to take (and fail to delete) any
            // non-entry child, so never add directories to a node it uses.
            Flavor::KazooQueue if has_dirs => Err(wrong("kazoo-queue", "kazoo LockingQueue (entries/, taken/)")),
            Flavor::Curator => {
                let plain = children.iter().any(|c| codec::parse_curator_item(c).is_some());
                self.curator_priority = children.iter().any(|c| codec::parse_curator_priority_item(c).is_some());
                // DistributedIdQueue puts an id between `queue-` and the
                // sequence, ordered by a rule we do not implement: refuse
                // rather than misorder. So is a mix of plain and priority
                // items, which no single Curator queue writes.
                match children.iter().find(|c| c.starts_with(codec::CURATOR_PREFIX) && !self.is_item(c)) {
                    Some(c) => Err(wrong("curator", &format!("Curator id queue or unknown item name ({c:?}), which is not supported"))),
                    None if plain && self.curator_priority => Err(wrong("curator", "both plain and priority Curator items")),
                    None => Ok(()),
                }
            },
            _ => Ok(()),
        }
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    fn order(&self, a: &str, b: &str) -> Ordering {
        match self.flavor {
            Flavor::Kazoo | Flavor::KazooQueue => codec::kazoo_order(a, b),
            Flavor::Curator => codec::curator_order(a, b),
        }
    }

    fn is_item(&self, name: &str) -> bool {
        match self.flavor {
            Flavor::Kazoo | Flavor::KazooQueue => codec::parse_kazoo_entry(name).is_some(),
            Flavor::Curator => codec::parse_curator_item(name).is_some() || codec::parse_curator_priority_item(name).is_some(),
        }
    }

    fn create_prefix(&self, priority: u16) -> String {
        match self.flavor {
            Flavor::Kazoo | Flavor::KazooQueue => format!("{}/{}", self.items, codec::kazoo_entry_prefix(priority)),
            Flavor::Curator if self.curator_priority => format!("{}/{}", self.items, codec::curator_priority_prefix(priority.into())),
            Flavor::Curator => format!("{}/{}", self.items, codec::CURATOR_PREFIX),
        }
    }

    fn encode(&self, payloads: &[&[u8]]) -> Vec<u8> {
        match self.flavor {
            Flavor::Kazoo | Flavor::KazooQueue => payloads.concat(),
            Flavor::Curator => codec::encode_curator(payloads),
        }
    }

    /// Enqueues one message (one kazoo entry; one single-item Curator envelope).
    pub async fn put(&self, payload: &[u8], priority: u16) -> Result<String> {
        if self.flavor == Flavor::Curator && priority != codec::DEFAULT_PRIORITY && !self.curator_priority {
            return Err(QueueError::Unsupported { layout: "curator", what: "priorities (except on an existing DistributedPriorityQueue)" });
        }
        if priority > codec::MAX_PRIORITY {
            return Err(QueueError::Invalid(format!("priority {priority} above {}", codec::MAX_PRIORITY)));
        }
        let data = self.encode(&[payload]);
        if data.len() + 200 > codec::REQUEST_BUDGET {
            return Err(QueueError::TooLarge { size: payload.len(), limit: codec::REQUEST_BUDGET - 200 });
        }
        let prefix = self.create_prefix(priority);
        let mut created = self.client.create(&prefix, &data, &CreateMode::PersistentSequential.with_acls(Acls::anyone_all())).await.map_err(crate::error::normalize);
        // Curator makes the queue node a container, which the server reaps
        // once it is empty; Curator's own put re-creates it, and so do we.
        if matches!(created, Err(ZkError::NoNode)) && self.flavor == Flavor::Curator {
            self.client.mkdir(&self.items, &persistent()).await?;
            created = self.client.create(&prefix, &data, &CreateMode::PersistentSequential.with_acls(Acls::anyone_all())).await.map_err(crate::error::normalize);
        }
        match created {
            Ok((_, seq)) => Ok(format!("{}{}", prefix.rsplit('/').next().unwrap(), seq)),
            Err(ZkError::NoNode) => Err(QueueError::NotFound(self.path.clone())),
            Err(ZkError::ConnectionLoss) => Err(QueueError::Indeterminate { op: "put" }),
            Err(e) => Err(e.into()),
        }
    }

    /// Enqueues many messages with multi requests chunked under the request
    /// limit (kazoo's `put_all` does the same in one transaction).
    pub async fn put_batch(&self, payloads: &[Vec<u8>], priority: u16) -> Result<Vec<String>> {
        let prefix = self.create_prefix(priority);
        let sizes: Vec<usize> = payloads.iter().map(|p| p.len() + 16 + prefix.len() + codec::OP_OVERHEAD).collect();
        let mut names = Vec::new();
        for r in codec::chunk_by_budget(&sizes, codec::REQUEST_BUDGET, 500) {
            let mut plan = Plan::new(&self.client);
            for p in &payloads[r] {
                plan.create(LockOp::Item, &prefix, &self.encode(&[p]), &CreateMode::PersistentSequential.with_acls(Acls::anyone_all()))?;
            }
            for (_, res) in plan.commit().await? {
                if let zookeeper_client::MultiWriteResult::Create { path, .. } = res {
                    names.push(path.rsplit('/').next().unwrap_or_default().to_string());
                }
            }
        }
        Ok(names)
    }

    /// Claims the first available item in delivery order, waiting up to
    /// `timeout` (forever with `None`).
    pub async fn take(&self, timeout: Option<Duration>) -> Result<Option<LockDelivery>> {
        let until = deadline(timeout);
        loop {
            let (mut items, items_w) = match self.client.list_and_watch_children(&self.items).await.map_err(crate::error::normalize) {
                Ok(x) => x,
                // A reaped Curator container is an empty queue, not a
                // missing one: wait for a producer to re-create it.
                Err(ZkError::NoNode) if self.flavor == Flavor::Curator => {
                    let (stat, w) = self.client.check_and_watch_stat(&self.items).await?;
                    if stat.is_none() {
                        match until {
                            Some(u) if Instant::now() >= u => return Ok(None),
                            Some(u) => {
                                let _ = tokio::time::timeout_at(u, w.changed()).await;
                            },
                            None => {
                                w.changed().await;
                            },
                        }
                    }
                    continue;
                },
                Err(ZkError::NoNode) => return Err(QueueError::NotFound(self.path.clone())),
                Err(ZkError::ConnectionLoss) => {
                    if until.is_some_and(|u| Instant::now() >= u) {
                        return Ok(None);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                },
                Err(e) => return Err(e.into()),
            };
            if self.flavor == Flavor::KazooQueue {
                items.retain(|n| self.is_item(n));
                items.sort_by(|a, b| self.order(a, b));
                for name in items {
                    if let Some(d) = self.take_by_delete(&name).await? {
                        return Ok(Some(d));
                    }
                }
                let sleep = match until {
                    Some(u) if Instant::now() >= u => return Ok(None),
                    Some(u) => u,
                    None => Instant::now() + Duration::from_secs(3600),
                };
                tokio::select! {
                    _ = items_w.changed() => {},
                    _ = tokio::time::sleep_until(sleep) => {},
                }
                continue;
            }
            let (taken, taken_w) = match self.client.list_and_watch_children(&self.locks).await.map_err(crate::error::normalize) {
                Ok(x) => x,
                Err(ZkError::NoNode) => return Err(QueueError::NotFound(self.path.clone())),
                Err(ZkError::ConnectionLoss) => {
                    if until.is_some_and(|u| Instant::now() >= u) {
                        return Ok(None);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                },
                Err(e) => return Err(e.into()),
            };
            let taken: std::collections::HashSet<String> = taken.into_iter().collect();
            items.retain(|n| self.is_item(n) && !taken.contains(n));
            items.sort_by(|a, b| self.order(a, b));
            for name in items {
                if let Some(d) = self.try_take(&name).await? {
                    return Ok(Some(d));
                }
            }
            let sleep = match until {
                Some(u) if Instant::now() >= u => return Ok(None),
                Some(u) => u,
                None => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                _ = items_w.changed() => {},
                _ = taken_w.changed() => {},
                _ = tokio::time::sleep_until(sleep) => {},
            }
        }
    }

    /// kazoo `Queue.get`: read, then delete; whoever deletes it owns it. The
    /// entry is gone before the caller processes it (at most once), because
    /// kazoo's consumers honour no lock we could take instead.
    async fn take_by_delete(&self, name: &str) -> Result<Option<LockDelivery>> {
        let item = format!("{}/{name}", self.items);
        let (raw, stat) = match retry_read(|| self.client.get_data(&item)).await {
            Ok(x) => x,
            Err(ZkError::NoNode) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match self.client.delete(&item, Some(stat.version)).await.map_err(crate::error::normalize) {
            Ok(()) => {},
            Err(ZkError::NoNode) => return Ok(None),
            Err(ZkError::ConnectionLoss) => return Err(QueueError::Indeterminate { op: "take" }),
            Err(e) => return Err(e.into()),
        }
        let priority = codec::parse_kazoo_entry(name).map(|(p, _)| p);
        Ok(Some(LockDelivery { name: name.to_string(), payloads: vec![raw.clone()], priority, raw, lock_version: -1 }))
    }

    async fn try_take(&self, name: &str) -> Result<Option<LockDelivery>> {
        let lock = format!("{}/{name}", self.locks);
        let item = format!("{}/{name}", self.items);
        let lock_stat = match self.client.create(&lock, &self.id, &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await {
            Ok((stat, _)) => stat,
            Err(ZkError::NodeExists) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let raw = match retry_read(|| self.client.get_data(&item)).await {
            Ok((data, _)) => data,
            Err(ZkError::NoNode) => {
                let _ = self.client.delete(&lock, None).await;
                return Ok(None);
            },
            Err(e) => return Err(e.into()),
        };
        let payloads = match self.flavor {
            Flavor::Kazoo | Flavor::KazooQueue => vec![raw.clone()],
            Flavor::Curator => match codec::decode_curator(&raw) {
                Ok(p) => p,
                Err(e) => {
                    let _ = self.client.delete(&lock, None).await;
                    return Err(QueueError::Corrupt { what: "curator envelope", path: item, reason: e.0 });
                },
            },
        };
        let priority = codec::parse_kazoo_entry(name).map(|(p, _)| p);
        Ok(Some(LockDelivery { name: name.to_string(), payloads, priority, raw, lock_version: lock_stat.version }))
    }

    /// Removes the item and its lock in one transaction, conditioned on the
    /// lock still existing (it is ephemeral: it exists only while our session
    /// lives, and the server refuses requests from an expired session).
    pub async fn ack(&self, d: &LockDelivery) -> Result<()> {
        if self.flavor == Flavor::KazooQueue {
            return Ok(()); // the take already deleted it
        }
        let lock = format!("{}/{}", self.locks, d.name);
        let item = format!("{}/{}", self.items, d.name);
        let mut after_loss = false;
        let mut attempt = 0;
        loop {
            let mut plan = Plan::new(&self.client);
            plan.check(LockOp::Lock, &lock, d.lock_version)?;
            plan.delete(LockOp::Item, &item, None)?;
            plan.delete(LockOp::Lock, &lock, None)?;
            match plan.commit().await {
                Ok(_) => return Ok(()),
                // Lock and item both gone after a lost reply: our first
                // attempt committed (our session is alive, so nobody else
                // could have held the lock).
                Err(Failed::Op { role: LockOp::Lock, source: ZkError::NoNode })
                    if after_loss && retry_read(|| self.client.check_stat(&item)).await?.is_none() =>
                {
                    return Ok(())
                },
                Err(Failed::Op { .. }) => return Err(QueueError::ClaimLost { id: d.name.clone() }),
                Err(Failed::Request(ZkError::ConnectionLoss)) if attempt < 60 => {
                    after_loss = true;
                    crate::native::backoff_sleep(&mut attempt).await;
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Gives the item back. kazoo: just drop the lock (it keeps its place).
    /// Curator: re-create it at the tail, as Curator's own REQUEUE does.
    pub async fn release(&self, d: &LockDelivery) -> Result<()> {
        if self.flavor == Flavor::KazooQueue {
            // Already deleted: put it back at the tail of its priority, which
            // is what kazoo's docs tell a failing consumer to do.
            self.put(&d.raw, d.priority.unwrap_or(codec::DEFAULT_PRIORITY)).await?;
            return Ok(());
        }
        let lock = format!("{}/{}", self.locks, d.name);
        let mut plan = Plan::new(&self.client);
        plan.check(LockOp::Lock, &lock, d.lock_version)?;
        if self.flavor == Flavor::Curator {
            // Same name before the sequence: a priority item keeps its priority.
            let name = match codec::parse_curator_priority_item(&d.name) {
                Some((p, _)) => codec::curator_priority_prefix(p),
                None => codec::CURATOR_PREFIX.to_string(),
            };
            let prefix = format!("{}/{name}", self.items);
            plan.delete(LockOp::Item, &format!("{}/{}", self.items, d.name), None)?;
            plan.create(LockOp::Item, &prefix, &d.raw, &CreateMode::PersistentSequential.with_acls(Acls::anyone_all()))?;
        }
        plan.delete(LockOp::Lock, &lock, None)?;
        match plan.commit().await {
            Ok(_) => Ok(()),
            Err(Failed::Op { .. }) => Err(QueueError::ClaimLost { id: d.name.clone() }),
            Err(e) => Err(e.into()),
        }
    }

    /// (pending items including in-flight, in-flight)
    pub async fn counts(&self) -> Result<(u64, u64)> {
        let items = match retry_read(|| self.client.check_stat(&self.items)).await? {
            Some(s) => s,
            None if self.flavor == Flavor::Curator => return Ok((0, 0)), // reaped container: empty
            None => return Err(QueueError::NotFound(self.path.clone())),
        };
        if self.flavor == Flavor::KazooQueue {
            return Ok((items.num_children as u64, 0));
        }
        let locks = retry_read(|| self.client.check_stat(&self.locks)).await?.map_or(0, |s| s.num_children);
        Ok((items.num_children as u64, locks as u64))
    }

    /// Age of the oldest item by its znode ctime (server clock).
    pub async fn oldest_age(&self) -> Result<Option<Duration>> {
        let mut items = match retry_read(|| self.client.list_children(&self.items)).await {
            Ok(items) => items,
            Err(ZkError::NoNode) if self.flavor == Flavor::Curator => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        items.retain(|n| self.is_item(n));
        let Some(first) = items.iter().min_by(|a, b| self.order(a, b)) else { return Ok(None) };
        let Some(stat) = self.client.check_stat(&format!("{}/{first}", self.items)).await? else { return Ok(None) };
        let now = crate::native::now_ms() as i64;
        Ok(Some(Duration::from_millis(now.saturating_sub(stat.ctime).max(0) as u64)))
    }
}
