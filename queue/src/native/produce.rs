//! Producing: put, batches, bounds, idempotent keys, the claim-check's
//! blob writes, and resolving a put whose reply was lost.

use crate::plan::{Failed, Plan};
use super::*;

/// What each op of a sealed queue's put does; `usize` is the message's
/// position among those still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SealedOp {
    /// The lane's bucket is still open (version 0): nothing can enter a
    /// bucket once a later one exists.
    Open(u16),
    /// Adds to this producer's enqueue shard at its cached version.
    Shard,
    /// Bumps `P/enq`, which the first idle consumer watches.
    Doorbell,
    Key(usize),
    Item(usize),
    BlobRef(usize),
}

/// What each op of sealing a full bucket does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SealOp {
    Seal,
    Next,
}

/// What became of a sealed queue's put whose reply was lost.
enum LostPut {
    NotApplied,
    /// Committed; the ids, in the order of the pending messages.
    Applied(Vec<MsgId>),
    /// Committed or not, or committed with items consumed already: nobody
    /// can tell which ids they had.
    Unknown,
}

/// What each op of a put's multi does; `usize` is the message's position
/// among those still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutOp {
    /// Adds to `P/enq` at its cached version: allocates the sequence and
    /// enforces the bounds.
    Enq,
    Key(usize),
    Item(usize),
    BlobRef(usize),
}

impl NativeQueue {
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
    pub(super) async fn offload(&self, mut msgs: Vec<Message>) -> Result<(Vec<Message>, Vec<Option<BlobRef>>)> {
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
    pub(super) async fn discard_blobs<'a>(&self, refs: impl Iterator<Item = &'a BlobRef>, check: bool) {
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

    pub(super) async fn ensure_blobs_dir(&self) -> Result<()> {
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
    pub(super) async fn cached_enq(&self, st: &mut ProducerState) -> Result<(Counter, i32)> {
        if let Some(x) = st.enq {
            return Ok(x);
        }
        let x = self.read_enq().await?;
        st.enq = Some(x);
        Ok(x)
    }

    pub(super) async fn read_enq(&self) -> Result<(Counter, i32)> {
        let path = self.p("enq");
        let (data, stat) = retry_read(|| self.client.get_data(&path)).await?;
        let c = Counter::decode(&data).map_err(|e| QueueError::Corrupt { what: "enq counter", path, reason: e.0 })?;
        Ok((c, stat.version))
    }

    pub(super) async fn ensure_bucket(&self, st: &mut ProducerState, prio: u16, bucket: u64) -> Result<()> {
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

    pub(super) async fn put_chunk(&self, st: &mut ProducerState, msgs: &[Message], refs: &[Option<BlobRef>], until: Option<Instant>) -> Result<Vec<PutOutcome>> {
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
        if let Alloc::Sealed { shards } = self.meta.alloc {
            return self.put_sealed(st, shards, msgs, refs, outcomes, pending).await;
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
            let mut plan = Plan::new(&self.client);
            plan.set_data(PutOp::Enq, &self.p("enq"), &new_enq.encode(), Some(version))?;
            for (j, &i) in pending.iter().enumerate() {
                let m = &msgs[i];
                let id = MsgId { priority: m.priority, seq: seq0 + j as u64 };
                if let Some(k) = &m.key {
                    plan.create(PutOp::Key(j), &self.key_path(k), id.name().as_bytes(), &persistent())?;
                }
                let not_before_ms = if m.delay.is_zero() { 0 } else { now + m.delay.as_millis() as u64 };
                let blob = refs[i].clone();
                let h = ItemHeader { enqueued_ms: now, nonce, not_before_ms, attempts: 0, priority: m.priority, key: m.key.clone(), blob };
                plan.create(PutOp::Item(j), &self.item_path(id), &codec::encode_item(&h, &m.payload), &persistent())?;
                if let Some(r) = self.blob_ref_node(refs[i].as_ref()) {
                    plan.create(PutOp::BlobRef(j), &r, b"", &persistent())?;
                }
            }
            match plan.commit().await {
                Ok(_) => {
                    st.enq = Some((new_enq, version + 1));
                    for (j, &i) in pending.iter().enumerate() {
                        outcomes[i] = Some(PutOutcome::Enqueued(MsgId { priority: msgs[i].priority, seq: seq0 + j as u64 }));
                    }
                    pending.clear();
                },
                Err(Failed::Op { role, source }) => {
                    match (role, source) {
                        (PutOp::Enq, ZkError::BadVersion | ZkError::NoNode) => st.enq = None,
                        (PutOp::Key(j), ZkError::NodeExists) => {
                            let i = pending.remove(j);
                            outcomes[i] = Some(self.duplicate(msgs[i].key.as_deref().unwrap_or_default()).await);
                        },
                        (PutOp::Item(_), ZkError::NoNode) => {
                            // Our bucket cache was wrong (someone removed an
                            // empty bucket we created but never used).
                            st.known_buckets.clear();
                        },
                        (PutOp::BlobRef(_), ZkError::NoNode) => {
                            self.blobs_dir_ready.store(false, Ordering::Relaxed);
                            self.ensure_blobs_dir().await?;
                        },
                        (_, e) => return Err(e.into()),
                    }
                },
                Err(Failed::Request(ZkError::ConnectionLoss)) => {
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
    pub(super) async fn resolve_lost_put(&self, version: i32, first: MsgId, nonce: u64) -> Result<Option<bool>> {
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

    /// The put of a sealed queue (`Alloc::Sealed`): unbounded, so nothing to
    /// admit; the server names the items in each lane's open bucket, and the
    /// totals go to the shard this producer sticks to. Producers conflict
    /// only when they share a shard, and then move to another.
    async fn put_sealed(&self, st: &mut ProducerState, shards: u32, msgs: &[Message], refs: &[Option<BlobRef>], mut outcomes: Vec<Option<PutOutcome>>, mut pending: Vec<usize>) -> Result<Vec<PutOutcome>> {
        let mut attempt = 0u32;
        let retry_until = Instant::now() + RETRY_WINDOW;
        while !pending.is_empty() {
            let (k, shard, version) = match st.shard {
                Some(x) => x,
                None => {
                    let k = fastrand::usize(..shards as usize);
                    let path = self.enq_shard_path(k);
                    let (data, stat) = retry_read(|| self.client.get_data(&path)).await?;
                    let c = Counter::decode(&data).map_err(|e| QueueError::Corrupt { what: "enq shard", path, reason: e.0 })?;
                    st.shard = Some((k, c, stat.version));
                    (k, c, stat.version)
                },
            };
            let lanes = self.open_buckets(st, pending.iter().map(|&i| msgs[i].priority)).await?;
            let now = now_ms();
            // Never 0: a shard's `last_put` of 0 means "none recorded".
            let nonce = fastrand::u64(1..);
            let add_bytes: u64 = pending.iter().map(|&i| refs[i].as_ref().map_or(msgs[i].payload.len() as u64, |r| r.size)).sum();
            let new = Counter { items: shard.items + pending.len() as u64, bytes: shard.bytes + add_bytes, last_put: nonce, ..shard };
            let mut plan = Plan::new(&self.client);
            for &lane in &lanes {
                plan.check(SealedOp::Open(lane), &self.bucket_path(lane, st.tail[&lane]), 0)?;
            }
            plan.set_data(SealedOp::Shard, &self.enq_shard_path(k), &new.encode(), Some(version))?;
            plan.set_data(SealedOp::Doorbell, &self.p("enq"), b"", None)?;
            for (j, &i) in pending.iter().enumerate() {
                let m = &msgs[i];
                if let Some(key) = &m.key {
                    // The id is the server's to give: it goes into the key
                    // node once the put has committed.
                    plan.create(SealedOp::Key(j), &self.key_path(key), b"", &persistent())?;
                }
                let not_before_ms = if m.delay.is_zero() { 0 } else { now + m.delay.as_millis() as u64 };
                let h = ItemHeader { enqueued_ms: now, nonce, not_before_ms, attempts: 0, priority: m.priority, key: m.key.clone(), blob: refs[i].clone() };
                let prefix = format!("{}/s", self.bucket_path(m.priority, st.tail[&m.priority]));
                plan.create(SealedOp::Item(j), &prefix, &codec::encode_item(&h, &m.payload), &persistent_seq())?;
                if let Some(r) = self.blob_ref_node(refs[i].as_ref()) {
                    plan.create(SealedOp::BlobRef(j), &r, b"", &persistent())?;
                }
            }
            match plan.commit().await {
                Ok(results) => {
                    st.shard = Some((k, new, version + 1));
                    let mut ids = vec![None; pending.len()];
                    for (role, r) in results {
                        if let (SealedOp::Item(j), zookeeper_client::MultiWriteResult::Create { path, .. }) = (role, r) {
                            let prio = msgs[pending[j]].priority;
                            ids[j] = path.rsplit('/').next().and_then(codec::parse_sealed_item).map(|suffix| MsgId { priority: prio, seq: codec::sealed_seq(st.tail[&prio], suffix) });
                        }
                    }
                    let mut ids_done = Vec::with_capacity(ids.len());
                    for (j, id) in ids.into_iter().enumerate() {
                        let id = id.ok_or_else(|| QueueError::Corrupt { what: "put reply", path: self.path.clone(), reason: "a created item without a sequential name".into() })?;
                        ids_done.push((pending[j], id));
                    }
                    self.after_sealed_put(st, msgs, &ids_done).await;
                    for (i, id) in ids_done {
                        outcomes[i] = Some(PutOutcome::Enqueued(id));
                    }
                    pending.clear();
                },
                Err(Failed::Op { role, source }) => match (role, source) {
                    // Sealed since we looked: the next bucket exists (it is
                    // created in the sealing transaction).
                    (SealedOp::Open(lane), ZkError::BadVersion) => {
                        let t = st.tail[&lane] + 1;
                        st.tail.insert(lane, t);
                    },
                    (SealedOp::Open(lane), ZkError::NoNode) => {
                        st.tail.remove(&lane);
                    },
                    (SealedOp::Shard, ZkError::BadVersion | ZkError::NoNode) => st.shard = None,
                    (SealedOp::Key(j), ZkError::NodeExists) => {
                        let i = pending.remove(j);
                        outcomes[i] = Some(self.duplicate(msgs[i].key.as_deref().unwrap_or_default()).await);
                    },
                    (SealedOp::BlobRef(_), ZkError::NoNode) => {
                        self.blobs_dir_ready.store(false, Ordering::Relaxed);
                        self.ensure_blobs_dir().await?;
                    },
                    (_, e) => return Err(e.into()),
                },
                Err(Failed::Request(ZkError::ConnectionLoss)) => {
                    st.shard = None;
                    if Instant::now() > retry_until {
                        return Err(QueueError::Indeterminate { op: "put" });
                    }
                    backoff_sleep(&mut attempt).await;
                    let targets: Vec<(u16, u64)> = lanes.iter().map(|&l| (l, st.tail[&l])).collect();
                    match self.resolve_lost_sealed_put(k, version, nonce, &targets, msgs, &pending).await? {
                        LostPut::NotApplied => {},
                        LostPut::Applied(ids) => {
                            let done: Vec<(usize, MsgId)> = pending.iter().copied().zip(ids).collect();
                            self.after_sealed_put(st, msgs, &done).await;
                            for (i, id) in done {
                                outcomes[i] = Some(PutOutcome::Enqueued(id));
                            }
                            pending.clear();
                        },
                        // Keyed messages can still be retried safely: a retry
                        // of a put that did commit shows up as a duplicate.
                        LostPut::Unknown if pending.iter().all(|&i| msgs[i].key.is_some()) => {},
                        LostPut::Unknown => return Err(QueueError::Indeterminate { op: "put" }),
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every message resolved")).collect())
    }

    /// After a sealed put committed: records each keyed message's id in its
    /// key node (for `Duplicate::original`; best effort, a duplicate found
    /// before reports no original), and seals the buckets it filled.
    async fn after_sealed_put(&self, st: &mut ProducerState, msgs: &[Message], done: &[(usize, MsgId)]) {
        let keyed: Vec<(String, MsgId)> = done.iter().filter_map(|&(i, id)| msgs[i].key.as_ref().map(|k| (self.key_path(k), id))).collect();
        if !keyed.is_empty() {
            let mut w = self.client.new_multi_writer();
            for (path, id) in &keyed {
                let _ = w.add_set_data(path, id.name().as_bytes(), Some(0));
            }
            if let Err(e) = w.commit().await {
                debug!(error = %e, "could not record the ids of keyed messages");
            }
        }
        self.seal_full(st, done.iter().map(|(_, id)| *id)).await;
    }

    /// Seals the buckets in which these new items reached the bucket size.
    pub(super) async fn seal_full(&self, st: &mut ProducerState, ids: impl Iterator<Item = MsgId>) {
        let mut full: Vec<(u16, u64)> = ids.filter(|id| u64::from(codec::sealed_parts(id.seq).1) + 1 >= self.meta.bucket_size).map(|id| (id.priority, codec::sealed_parts(id.seq).0)).collect();
        full.sort_unstable();
        full.dedup();
        for (lane, bucket) in full {
            self.seal(st, lane, bucket).await;
        }
    }

    /// Seals a full bucket and opens the next one, in one transaction, so
    /// the lane's last bucket is always open and a sealed bucket always has
    /// a successor. Someone else having sealed it is as good.
    async fn seal(&self, st: &mut ProducerState, lane: u16, bucket: u64) {
        let mut plan = Plan::new(&self.client);
        if plan.set_data(SealOp::Seal, &self.bucket_path(lane, bucket), b"sealed", Some(0)).is_err() || plan.create(SealOp::Next, &self.bucket_path(lane, bucket + 1), b"", &persistent()).is_err() {
            return;
        }
        match plan.commit().await {
            Ok(_) | Err(Failed::Op { role: SealOp::Seal, source: ZkError::BadVersion }) => {
                if st.tail.get(&lane).is_some_and(|&t| t <= bucket) {
                    st.tail.insert(lane, bucket + 1);
                }
            },
            Err(e) => {
                debug!(lane, bucket, error = ?e, "could not seal a full bucket; the next put will try again");
                st.tail.remove(&lane);
            },
        }
    }

    /// The lanes of `prios`, sorted, each with its open bucket known in
    /// `st.tail` (looked up where not cached).
    pub(super) async fn open_buckets(&self, st: &mut ProducerState, prios: impl Iterator<Item = u16>) -> Result<Vec<u16>> {
        let mut lanes: Vec<u16> = prios.collect();
        lanes.sort_unstable();
        lanes.dedup();
        for &lane in &lanes {
            if !st.tail.contains_key(&lane) {
                let tail = self.find_tail(lane).await?;
                st.tail.insert(lane, tail);
            }
        }
        Ok(lanes)
    }

    /// What a put of `key` that found its key node taken reports: the
    /// original's id, if the key node holds it yet.
    pub(super) async fn duplicate(&self, key: &str) -> PutOutcome {
        let original = self.client.get_data(&self.key_path(key)).await.ok().and_then(|(d, _)| MsgId::parse(std::str::from_utf8(&d).ok()?));
        PutOutcome::Duplicate { key: key.to_string(), original }
    }

    /// The open bucket of a lane: its last one (only a sealing transaction,
    /// which seals the previous one, creates buckets after the first). A lane
    /// without buckets gets bucket 0.
    async fn find_tail(&self, lane: u16) -> Result<u64> {
        let lane_path = self.lane_path(lane);
        loop {
            match retry_read(|| self.client.list_children(&lane_path)).await {
                Ok(children) => {
                    if let Some(b) = children.iter().filter_map(|c| codec::parse_bucket(c)).max() {
                        return Ok(b);
                    }
                    let first = self.bucket_path(lane, 0);
                    match retry_read(|| self.client.create(&first, b"", &persistent())).await {
                        Ok(_) | Err(ZkError::NodeExists) => return Ok(0),
                        Err(e) => return Err(e.into()),
                    }
                },
                Err(ZkError::NoNode) => match retry_read(|| self.client.create(&lane_path, b"", &persistent())).await {
                    Ok(_) | Err(ZkError::NodeExists) => {},
                    Err(e) => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// After a sealed put whose reply was lost: did it commit, and as which
    /// ids? Its shard says whether it committed unless another producer
    /// wrote the shard since; the ids are found by the put's nonce in the
    /// items of the buckets it targeted (a multi's creates in one bucket are
    /// consecutive), newest first.
    async fn resolve_lost_sealed_put(&self, k: usize, version: i32, nonce: u64, targets: &[(u16, u64)], msgs: &[Message], pending: &[usize]) -> Result<LostPut> {
        let path = self.enq_shard_path(k);
        let _ = retry_read(|| self.client.sync(&path)).await;
        let (data, stat) = retry_read(|| self.client.get_data(&path)).await?;
        let c = Counter::decode(&data).map_err(|e| QueueError::Corrupt { what: "enq shard", path: path.clone(), reason: e.0 })?;
        if stat.version == version || (stat.version == version + 1 && c.last_put != nonce) {
            return Ok(LostPut::NotApplied);
        }
        let mut ids = Vec::with_capacity(pending.len());
        for &(lane, bucket) in targets {
            let want = pending.iter().filter(|&&i| msgs[i].priority == lane).count();
            let Some(children) = self.list(&self.bucket_path(lane, bucket)).await? else { return Ok(LostPut::Unknown) };
            let mut suffixes: Vec<u32> = children.iter().filter_map(|c| codec::parse_sealed_item(c)).collect();
            suffixes.sort_unstable_by(|a, b| b.cmp(a));
            let mut found = Vec::new();
            for window in suffixes.chunks(32) {
                let ids_w: Vec<MsgId> = window.iter().map(|&s| MsgId { priority: lane, seq: codec::sealed_seq(bucket, s) }).collect();
                let paths: Vec<String> = ids_w.iter().map(|&id| self.item_path(id)).collect();
                let reads = futures_util::future::join_all(paths.iter().map(|p| retry_read(move || self.client.get_data(p)))).await;
                for (id, r) in ids_w.into_iter().zip(reads) {
                    if let Ok((data, _)) = r {
                        if codec::decode_item(&data).is_ok_and(|(h, _)| h.nonce == nonce) {
                            found.push(id);
                        }
                    }
                }
                if found.len() >= want {
                    break;
                }
            }
            if found.len() != want {
                return Ok(LostPut::Unknown);
            }
            found.sort_unstable();
            ids.push((lane, found));
        }
        // Per lane, the pending messages of that lane got ascending ids.
        let mut out = Vec::with_capacity(pending.len());
        let mut next: HashMap<u16, usize> = HashMap::new();
        for &i in pending {
            let lane = msgs[i].priority;
            let n = next.entry(lane).or_default();
            let Some((_, found)) = ids.iter().find(|(l, _)| *l == lane) else { return Ok(LostPut::Unknown) };
            out.push(found[*n]);
            *n += 1;
        }
        Ok(LostPut::Applied(out))
    }
}
