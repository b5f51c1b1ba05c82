//! Interop layouts built on "items directory + directory of ephemeral locks":
//! kazoo's `LockingQueue` and Curator's `DistributedQueue` (with a lock path).
//! Both list the whole items directory on every change; that is how the other
//! clients work and the layout cannot avoid it (see docs/queue.md).

use std::cmp::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client::{Acls, Client, CreateMode, MultiWriteError};

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
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Kazoo => "kazoo",
            Flavor::Curator => "curator",
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
        };
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
        };
        q.init(create).await
    }

    async fn init(self, create: bool) -> Result<Self> {
        codec::validate_path(&self.path).map_err(|reason| QueueError::BadPath { path: self.path.clone(), reason })?;
        if create {
            for d in [&self.items, &self.locks] {
                self.client.mkdir(d, &persistent()).await?;
            }
        } else {
            for d in [&self.items, &self.locks] {
                if retry_read(|| self.client.check_stat(d)).await?.is_none() {
                    return Err(QueueError::NotFound(self.path.clone()));
                }
            }
            if self.flavor == Flavor::Curator {
                let (data, _) = retry_read(|| self.client.get_data(&self.path)).await?;
                if data.starts_with(b"corral-queue native") {
                    return Err(QueueError::WrongLayout { path: self.path.clone(), expected: "curator", found: "native".into() });
                }
            }
        }
        Ok(self)
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    fn order(&self, a: &str, b: &str) -> Ordering {
        match self.flavor {
            Flavor::Kazoo => codec::kazoo_order(a, b),
            Flavor::Curator => codec::curator_order(a, b),
        }
    }

    fn is_item(&self, name: &str) -> bool {
        match self.flavor {
            Flavor::Kazoo => codec::parse_kazoo_entry(name).is_some(),
            Flavor::Curator => codec::parse_curator_item(name).is_some(),
        }
    }

    fn create_prefix(&self, priority: u16) -> String {
        match self.flavor {
            Flavor::Kazoo => format!("{}/{}", self.items, codec::kazoo_entry_prefix(priority)),
            Flavor::Curator => format!("{}/{}", self.items, codec::CURATOR_PREFIX),
        }
    }

    fn encode(&self, payloads: &[&[u8]]) -> Vec<u8> {
        match self.flavor {
            Flavor::Kazoo => payloads.concat(),
            Flavor::Curator => codec::encode_curator(payloads),
        }
    }

    /// Enqueues one message (one kazoo entry; one single-item Curator envelope).
    pub async fn put(&self, payload: &[u8], priority: u16) -> Result<String> {
        if self.flavor == Flavor::Curator && priority != codec::DEFAULT_PRIORITY {
            return Err(QueueError::Unsupported { layout: "curator", what: "priorities" });
        }
        if priority > codec::MAX_PRIORITY {
            return Err(QueueError::Invalid(format!("priority {priority} above {}", codec::MAX_PRIORITY)));
        }
        let data = self.encode(&[payload]);
        if data.len() + 200 > codec::REQUEST_BUDGET {
            return Err(QueueError::TooLarge { size: payload.len(), limit: codec::REQUEST_BUDGET - 200 });
        }
        let prefix = self.create_prefix(priority);
        match self.client.create(&prefix, &data, &CreateMode::PersistentSequential.with_acls(Acls::anyone_all())).await.map_err(crate::native::normalize) {
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
            let mut w = self.client.new_multi_writer();
            for p in &payloads[r] {
                w.add_create(&prefix, &self.encode(&[p]), &CreateMode::PersistentSequential.with_acls(Acls::anyone_all()))?;
            }
            for res in crate::native::commit(&mut w).await? {
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
            let (mut items, items_w) = match self.client.list_and_watch_children(&self.items).await.map_err(crate::native::normalize) {
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
            let (taken, taken_w) = match self.client.list_and_watch_children(&self.locks).await.map_err(crate::native::normalize) {
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
            Flavor::Kazoo => vec![raw.clone()],
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
        let lock = format!("{}/{}", self.locks, d.name);
        let item = format!("{}/{}", self.items, d.name);
        let mut after_loss = false;
        let mut attempt = 0;
        loop {
            let mut w = self.client.new_multi_writer();
            w.add_check_version(&lock, d.lock_version)?;
            w.add_delete(&item, None)?;
            w.add_delete(&lock, None)?;
            match crate::native::commit(&mut w).await {
                Ok(_) => return Ok(()),
                // Lock and item both gone after a lost reply: our first
                // attempt committed (our session is alive, so nobody else
                // could have held the lock).
                Err(MultiWriteError::OperationFailed { index: 0, source: ZkError::NoNode })
                    if after_loss && retry_read(|| self.client.check_stat(&item)).await?.is_none() =>
                {
                    return Ok(())
                },
                Err(MultiWriteError::OperationFailed { .. }) => return Err(QueueError::ClaimLost { id: d.name.clone() }),
                Err(MultiWriteError::RequestFailed { source: ZkError::ConnectionLoss }) if attempt < 60 => {
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
        let lock = format!("{}/{}", self.locks, d.name);
        let mut w = self.client.new_multi_writer();
        w.add_check_version(&lock, d.lock_version)?;
        if self.flavor == Flavor::Curator {
            w.add_delete(&format!("{}/{}", self.items, d.name), None)?;
            w.add_create(&self.create_prefix(codec::DEFAULT_PRIORITY), &d.raw, &CreateMode::PersistentSequential.with_acls(Acls::anyone_all()))?;
        }
        w.add_delete(&lock, None)?;
        match crate::native::commit(&mut w).await {
            Ok(_) => Ok(()),
            Err(MultiWriteError::OperationFailed { .. }) => Err(QueueError::ClaimLost { id: d.name.clone() }),
            Err(e) => Err(e.into()),
        }
    }

    /// (pending items including in-flight, in-flight)
    pub async fn counts(&self) -> Result<(u64, u64)> {
        let items = retry_read(|| self.client.check_stat(&self.items)).await?.ok_or_else(|| QueueError::NotFound(self.path.clone()))?;
        let locks = retry_read(|| self.client.check_stat(&self.locks)).await?.map_or(0, |s| s.num_children);
        Ok((items.num_children as u64, locks as u64))
    }

    /// Age of the oldest item by its znode ctime (server clock).
    pub async fn oldest_age(&self) -> Result<Option<Duration>> {
        let mut items = retry_read(|| self.client.list_children(&self.items)).await?;
        items.retain(|n| self.is_item(n));
        let Some(first) = items.iter().min_by(|a, b| self.order(a, b)) else { return Ok(None) };
        let Some(stat) = self.client.check_stat(&format!("{}/{first}", self.items)).await? else { return Ok(None) };
        let now = crate::native::now_ms() as i64;
        Ok(Some(Duration::from_millis(now.saturating_sub(stat.ctime).max(0) as u64)))
    }
}
