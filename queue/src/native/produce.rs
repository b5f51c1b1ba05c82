//! Producing: put, batches, bounds, idempotent keys, the claim-check's
//! blob writes, and resolving a put whose reply was lost.

use crate::plan::{Failed, Plan};
use super::*;

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
                            let key = msgs[i].key.clone().unwrap();
                            let original = self.client.get_data(&self.key_path(&key)).await.ok().and_then(|(d, _)| MsgId::parse(std::str::from_utf8(&d).ok()?));
                            outcomes[i] = Some(PutOutcome::Duplicate { key, original });
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
}
