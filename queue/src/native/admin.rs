//! Observability and maintenance: stats, the DLQ, key purging and the
//! blob sweeper.

use crate::plan::{Failed, Plan};
use super::*;

/// What each op of a requeue's multi does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequeueOp {
    /// Adds to `P/enq` at its cached version (allocates the sequence).
    Enq,
    /// Creates the `j`th dead letter of the chunk as an item again.
    Item(usize),
    /// Deletes the `j`th dead letter.
    Dead(usize),
    /// Sealed queues: the lane's bucket is still open.
    Open(u16),
    /// Sealed queues: bumps `P/enq` for the idle consumers.
    Doorbell,
}

impl NativeQueue {
    pub async fn stats(&self) -> Result<Stats> {
        let enq = self.read_enq_total().await?;
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
                let mut items: Vec<u64> = self.list(&self.bucket_path(lane, b)).await?.unwrap_or_default().iter().filter_map(|i| self.parse_item_in(b, i)).collect();
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
        if let Alloc::Sealed { shards } = self.meta.alloc {
            return self.requeue_sealed(&mut st, shards, entries).await;
        }
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
                let mut plan = Plan::new(&self.client);
                plan.set_data(RequeueOp::Enq, &self.p("enq"), &new_enq.encode(), Some(version))?;
                for (j, e) in chunk.iter().enumerate() {
                    let id = MsgId { priority: e.1.priority, seq: enq.items + j as u64 };
                    plan.create(RequeueOp::Item(j), &self.item_path(id), &codec::encode_item(&e.1, &e.2), &persistent())?;
                    plan.delete(RequeueOp::Dead(j), &e.0, None)?;
                }
                match plan.commit().await {
                    Ok(_) => {
                        st.enq = Some((new_enq, version + 1));
                        moved += chunk.len();
                        chunk.clear();
                    },
                    Err(Failed::Op { role: RequeueOp::Enq, .. }) => st.enq = None,
                    // Someone else requeued or removed that dead letter.
                    Err(Failed::Op { role: RequeueOp::Dead(j), source: ZkError::NoNode }) => {
                        chunk.remove(j);
                    },
                    // Our bucket cache was wrong.
                    Err(Failed::Op { role: RequeueOp::Item(_), source: ZkError::NoNode }) => st.known_buckets.clear(),
                    Err(Failed::Request(ZkError::ConnectionLoss)) if attempt < 20 => {
                        st.enq = None;
                        backoff_sleep(&mut attempt).await;
                    },
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(moved)
    }

    /// `requeue_dead_letters` for a sealed queue: like its put, into each
    /// lane's open bucket, with the totals on a random enqueue shard.
    async fn requeue_sealed(&self, st: &mut ProducerState, shards: u32, entries: Vec<(String, ItemHeader, Vec<u8>)>) -> Result<usize> {
        let mut moved = 0;
        let mut attempt = 0u32;
        for chunk in entries.chunks(MAX_OPS_PER_MULTI / 2 - 4) {
            let mut chunk: Vec<&(String, ItemHeader, Vec<u8>)> = chunk.iter().collect();
            while !chunk.is_empty() {
                let k = fastrand::usize(..shards as usize);
                let shard_path = self.enq_shard_path(k);
                let (data, stat) = retry_read(|| self.client.get_data(&shard_path)).await?;
                let c = Counter::decode(&data).map_err(|e| QueueError::Corrupt { what: "enq shard", path: shard_path.clone(), reason: e.0 })?;
                let bytes: u64 = chunk.iter().map(|e| e.1.payload_size(&e.2)).sum();
                let new = Counter { items: c.items + chunk.len() as u64, bytes: c.bytes + bytes, last_put: 0, ..c };
                let lanes = self.open_buckets(st, chunk.iter().map(|e| e.1.priority)).await?;
                let mut plan = Plan::new(&self.client);
                for &lane in &lanes {
                    plan.check(RequeueOp::Open(lane), &self.bucket_path(lane, st.tail[&lane]), 0)?;
                }
                plan.set_data(RequeueOp::Enq, &shard_path, &new.encode(), Some(stat.version))?;
                plan.set_data(RequeueOp::Doorbell, &self.p("enq"), b"", None)?;
                for (j, e) in chunk.iter().enumerate() {
                    let prefix = format!("{}/s", self.bucket_path(e.1.priority, st.tail[&e.1.priority]));
                    plan.create(RequeueOp::Item(j), &prefix, &codec::encode_item(&e.1, &e.2), &persistent_seq())?;
                    plan.delete(RequeueOp::Dead(j), &e.0, None)?;
                }
                match plan.commit().await {
                    Ok(results) => {
                        let ids: Vec<MsgId> = results
                            .into_iter()
                            .filter_map(|(role, r)| match (role, r) {
                                (RequeueOp::Item(j), zookeeper_client::MultiWriteResult::Create { path, .. }) => {
                                    let prio = chunk[j].1.priority;
                                    let suffix = codec::parse_sealed_item(path.rsplit('/').next()?)?;
                                    Some(MsgId { priority: prio, seq: codec::sealed_seq(st.tail[&prio], suffix) })
                                },
                                _ => None,
                            })
                            .collect();
                        self.seal_full(st, ids.into_iter()).await;
                        moved += chunk.len();
                        chunk.clear();
                    },
                    Err(Failed::Op { role: RequeueOp::Open(lane), source: ZkError::BadVersion }) => {
                        let t = st.tail[&lane] + 1;
                        st.tail.insert(lane, t);
                    },
                    Err(Failed::Op { role: RequeueOp::Open(lane), source: ZkError::NoNode }) => {
                        st.tail.remove(&lane);
                    },
                    Err(Failed::Op { role: RequeueOp::Enq, .. }) => {},
                    // Someone else requeued or removed that dead letter.
                    Err(Failed::Op { role: RequeueOp::Dead(j), source: ZkError::NoNode }) => {
                        chunk.remove(j);
                    },
                    // Moving a dead letter is not idempotent (a retry would
                    // find it gone and move on), so a lost reply is simply
                    // looked at again: the entry is gone (moved) or still there.
                    Err(Failed::Request(ZkError::ConnectionLoss)) if attempt < 20 => {
                        backoff_sleep(&mut attempt).await;
                        let mut still = Vec::new();
                        for e in chunk {
                            if retry_read(|| self.client.check_stat(&e.0)).await?.is_some() {
                                still.push(e);
                            } else {
                                moved += 1;
                            }
                        }
                        chunk = still;
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

    pub(super) async fn sweep_batch(&self, bs: &BlobStore, batch: &mut Vec<(String, object_store::path::Path)>, report: &mut SweepReport) -> Result<()> {
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
