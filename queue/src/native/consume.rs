//! Consuming: take (scan, claim), lease reaping, dead-lettering at claim
//! time, and the line of idle consumers.

use crate::plan::{Failed, Plan};
use super::*;

/// What each op of a claim's multi does; `usize` is the message's place in
/// the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimOp {
    /// Creates our ephemeral claim node (exists: someone holds it).
    Claim(usize),
    /// Rewrites the item (attempts + 1) at the version read: the new
    /// version is our token.
    Item(usize),
}

/// A claim ready to send: everything the multi writes, and the delivery it
/// becomes if it commits.
struct Prepared {
    item: String,
    claim: String,
    item_data: Vec<u8>,
    claim_data: Vec<u8>,
    /// The item's version when read; the claim is conditioned on it.
    version: i32,
    delivery: Delivery,
}

/// What reading an item decided.
enum Prep {
    Claim(Prepared),
    Done(ClaimResult),
}

/// What each op of a dead-lettering multi does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeadOp {
    /// Deletes the item at the version the decision was made on.
    Item,
    Claim,
    Dlq,
    Shard,
}

/// What each op of a lease reap does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReapOp {
    /// The claim is still the expired one we read (an extend changes it).
    Check,
    Delete,
}

impl NativeQueue {
    /// Claims the next deliverable message, waiting up to `timeout` (forever
    /// with `None`). Returns `None` on timeout.
    ///
    /// A payload in the blob store is read and verified before `take`
    /// returns. If that fails, the message goes back to the queue for a
    /// moment (the delivery counts as an attempt, so a blob that stays
    /// unreadable ends in the DLQ after `max_attempts`) and `take` fails
    /// with [`QueueError::Blob`].
    pub async fn take(&self, timeout: Option<Duration>) -> Result<Option<Delivery>> {
        Ok(self.take_batch(1, timeout).await?.pop())
    }

    /// Claims up to `max` deliverable messages with as few requests as it
    /// can (one multi-read of the items, one claim multi), waiting up to
    /// `timeout` for the first one; returns what was deliverable then, empty
    /// on timeout. Settle them with `ack_batch` (or one by one). Order and
    /// leases are as for `take`, each message with its own lease and token.
    ///
    /// A message whose blob cannot be read is returned to the queue as by
    /// `take` and left out of the batch; only if that leaves the batch
    /// empty does `take_batch` fail with the blob error.
    pub async fn take_batch(&self, max: usize, timeout: Option<Duration>) -> Result<Vec<Delivery>> {
        let max = max.clamp(1, MAX_TAKE_BATCH);
        let until = deadline(timeout);
        let mut cs = self.cons.lock().await;
        cs.linger_until = (max > 1 && !self.linger.is_zero()).then(|| Instant::now() + self.linger);
        if max > 1 && !cs.registered {
            // A failure only leaves this handle taking from every class, as
            // an unregistered consumer does, until its next take_batch.
            if let Err(e) = self.register(&mut cs).await {
                debug!(error = %e, "cannot join the batch consumers; taking from every class");
            }
        }
        loop {
            let mut waiter: Option<Waiter> = None;
            let result = self.take_inner(&mut cs, max, until, &mut waiter).await;
            if let Some(w) = waiter {
                w.release().await;
            }
            let batch = result?;
            if batch.is_empty() {
                return Ok(batch);
            }
            let mut out = Vec::with_capacity(batch.len());
            let mut blob_error = None;
            for mut d in batch {
                let Some(r) = d.header.blob.clone() else {
                    out.push(d);
                    continue;
                };
                match self.read_blob(&r).await {
                    Ok(payload) => {
                        d.payload = payload;
                        out.push(d);
                    },
                    Err(e) => {
                        warn!(id = %d.id, error = %e, "cannot read the message's blob; returning it to the queue");
                        match self.nack(&d, BLOB_RETRY_DELAY).await {
                            // Someone else claimed it meanwhile (our lease
                            // ran out), and may have acked it and deleted
                            // the blob: not ours to report.
                            Err(QueueError::ClaimLost { .. }) => {},
                            _ => blob_error = Some(e),
                        }
                    },
                }
            }
            match blob_error {
                Some(e) if out.is_empty() => return Err(e),
                // Every delivery's blob was lost to another consumer: look
                // for the next messages.
                None if out.is_empty() => continue,
                _ => return Ok(out),
            }
        }
    }

    pub(super) async fn read_blob(&self, r: &BlobRef) -> Result<Vec<u8>> {
        match &self.blobs {
            Some(bs) => bs.get(r).await,
            None => Err(QueueError::Blob {
                key: r.key.clone(),
                fault: BlobFault::NotConfigured,
                reason: "the payload is in a blob store, but this queue handle has none (with_blob_store / --blob-dir)".into(),
            }),
        }
    }

    async fn take_inner(&self, cs: &mut ConsumerState, want: usize, until: Option<Instant>, waiter: &mut Option<Waiter>) -> Result<Vec<Delivery>> {
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
                let got = self.scan(cs, want, false).await?;
                if !got.is_empty() {
                    return Ok(got);
                }
            }
            self.refresh(cs).await?;
            let got = self.scan(cs, want, true).await?;
            if !got.is_empty() {
                return Ok(got);
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
                    return Ok(Vec::new());
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
    pub(super) async fn refresh(&self, cs: &mut ConsumerState) -> Result<()> {
        let (enq_p, ready_p, claims_p, members_p) = (self.p("enq"), self.p("ready"), self.p("claims"), self.p("consumers"));
        let res = retry_read(|| {
            let mut r = self.client.new_multi_reader();
            r.add_get_data(&enq_p).unwrap();
            r.add_get_children(&ready_p).unwrap();
            r.add_get_children(&claims_p).unwrap();
            if cs.registered {
                r.add_get_children(&members_p).unwrap();
            }
            r.commit()
        })
        .await?;
        let mut it = res.into_iter();
        match it.next() {
            Some(MultiReadResult::Data { data, stat }) => {
                // In a sealed queue `P/enq` is only a doorbell.
                if !self.sealed() {
                    let c = Counter::decode(&data).map_err(|e| QueueError::Corrupt { what: "enq counter", path: enq_p.clone(), reason: e.0 })?;
                    cs.enq_items = c.items;
                }
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
        cs.members = None;
        if cs.registered {
            match it.next() {
                Some(MultiReadResult::Children { mut children }) => {
                    children.sort_unstable();
                    match children.iter().position(|c| *c == self.consumer_id) {
                        Some(slot) => cs.members = Some((slot, children.len())),
                        // Our node went with a session that ended: join again.
                        None => cs.registered = false,
                    }
                },
                _ => cs.registered = false,
            }
        }
        cs.buckets.clear();
        cs.listings.clear();
        // Buckets others deleted are never listed by us again; a split
        // consumer looks at a handful at a time, so many means stale.
        if cs.first_seen.len() > 64 {
            cs.first_seen.clear();
        }
        let now = now_ms();
        cs.not_before.retain(|_, t| *t > now);
        cs.last_fresh = Some(Instant::now());
        Ok(())
    }

    /// Joins the batch consumers that split the queue's items among
    /// themselves (docs/queue.md, "Batch consumers split the items") and
    /// returns this handle's place among them: (slot, members). `take_batch`
    /// joins by itself on first use; call this to join up front, or to see
    /// where a consumer stands. The handle leaves when it is dropped, or
    /// when its session ends.
    pub async fn join_batch_consumers(&self) -> Result<(usize, usize)> {
        let mut cs = self.cons.lock().await;
        self.register(&mut cs).await?;
        self.refresh(&mut cs).await?;
        cs.members.ok_or_else(|| QueueError::Corrupt { what: "consumers", path: self.p("consumers"), reason: "our node is not among the consumers right after joining".into() })
    }

    /// Joins the batch consumers (see `scan`): an ephemeral node
    /// `P/consumers/<consumer id>`. It is named, not sequential, so a retry
    /// after a lost reply finds its own node instead of leaving an orphan;
    /// the members' sorted names give each its slot.
    async fn register(&self, cs: &mut ConsumerState) -> Result<()> {
        let dir = self.p("consumers");
        let path = format!("{dir}/{}", self.consumer_id);
        let mut made_dir = false;
        loop {
            match retry_read(|| self.client.create(&path, b"", &ephemeral())).await {
                Ok(_) | Err(ZkError::NodeExists) => {
                    cs.registered = true;
                    // Learn our slot now rather than at the next refresh.
                    cs.last_fresh = None;
                    return Ok(());
                },
                // A queue created before consumers registered.
                Err(ZkError::NoNode) if !made_dir => {
                    made_dir = true;
                    match retry_read(|| self.client.create(&dir, b"", &persistent())).await {
                        Ok(_) | Err(ZkError::NodeExists) => {},
                        Err(e) => return Err(e.into()),
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A bucket's items and the claims, in one request (`None`: the bucket
    /// is gone).
    async fn list_with_claims(&self, bucket: &str) -> Result<Option<(Vec<String>, Vec<String>)>> {
        let claims = self.p("claims");
        let res = retry_read(|| {
            let mut r = self.client.new_multi_reader();
            r.add_get_children(bucket).unwrap();
            r.add_get_children(&claims).unwrap();
            r.commit()
        })
        .await?;
        let mut it = res.into_iter();
        let items = match it.next() {
            Some(MultiReadResult::Children { children }) => children,
            Some(MultiReadResult::Error { err: ZkError::NoNode }) => return Ok(None),
            Some(MultiReadResult::Error { err }) => return Err(err.into()),
            _ => return Err(QueueError::Corrupt { what: "multi read", path: bucket.to_owned(), reason: "short reply".into() }),
        };
        match it.next() {
            Some(MultiReadResult::Children { children }) => Ok(Some((items, children))),
            Some(MultiReadResult::Error { err }) => Err(err.into()),
            _ => Err(QueueError::Corrupt { what: "multi read", path: claims, reason: "short reply".into() }),
        }
    }

    pub(super) async fn list(&self, path: &str) -> Result<Option<Vec<String>>> {
        match retry_read(|| self.client.list_children(path)).await {
            Ok(c) => Ok(Some(c)),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Walks lanes (priority order), buckets and items (sequence order) from
    /// the cache, listing from the server only what is not cached, and claims
    /// the first `want` deliverable items (fewer if there are fewer).
    // The entry API cannot span the awaits between lookup and insert.
    #[allow(clippy::map_entry)]
    pub(super) async fn scan(&self, cs: &mut ConsumerState, want: usize, fresh: bool) -> Result<Vec<Delivery>> {
        let mut collided = false;
        let mut got = Vec::new();
        // Items found gone or held by others. Past a batch's worth, a cache
        // that is not fresh is mostly what competing consumers took since:
        // return, so `take_inner` re-reads rather than wading through it one
        // round trip per batch.
        let mut misses = 0;
        // Right after a refresh (`fresh`) there is nothing better to read.
        let miss_limit = if fresh { usize::MAX } else { want.max(4) };
        let batch = want > 1;
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
                let bucket_path = self.bucket_path(lane, bucket);
                if !batch && !cs.listings.contains_key(&(lane, bucket)) {
                    match self.list(&bucket_path).await? {
                        None => {
                            cs.buckets.get_mut(&lane).unwrap().retain(|&b| b != bucket);
                            continue;
                        },
                        Some(children) => {
                            let mut s: Vec<u64> = children.iter().filter_map(|c| self.parse_item_in(bucket, c)).collect();
                            s.sort_unstable();
                            cs.listings.insert((lane, bucket), s.into());
                        },
                    }
                }
                // Batch consumers split the items among themselves: each
                // registered one owns the items whose sequence number falls
                // in its class (`seq % members == slot`, see `register`) and
                // takes from the others' classes only when its own is empty,
                // or when theirs have fallen `LAG_BEFORE_HELP` behind.
                // Without this, competing batch consumers all aim at the same
                // few items at the head: most claim multis were refused (each
                // a logged txn) and most reads were of items already gone.
                //
                // A batch looks at the bucket and at the claims afresh, in one
                // request, when its cached listing has less than a batch of
                // its own class left: a listing cached since the last refresh
                // lacks what was put since and, outside its own class, is
                // mostly what competitors took since. A single take walks its
                // cached listing.
                let cs_members = if batch { cs.members } else { None };
                let class = |seq: u64| own_class(seq, cs_members);
                let mut rounds = 0;
                let mut gone_bucket = false;
                while got.len() < want {
                    if !batch && misses >= miss_limit && cs.last_fresh.is_none_or(|t| t.elapsed() > STALE_AFTER_MISSES) {
                        break;
                    }
                    let now = now_ms();
                    let available = |cs: &ConsumerState, seq: u64| {
                        let id = MsgId { priority: lane, seq };
                        !cs.claimed.contains(&id) && cs.not_before.get(&id).is_none_or(|&t| t <= now)
                    };
                    let mut listed = false;
                    if batch {
                        let own_cached = cs.listings.get(&(lane, bucket)).map_or(0, |l| l.iter().filter(|&&seq| class(seq) && available(cs, seq)).count());
                        if own_cached < want - got.len() {
                            let Some((items, claims)) = self.list_with_claims(bucket_path.as_str()).await? else {
                                gone_bucket = true;
                                break;
                            };
                            let mut s: Vec<u64> = items.iter().filter_map(|c| self.parse_item_in(bucket, c)).collect();
                            s.sort_unstable();
                            if cs_members.is_some() {
                                let seen_now = Instant::now();
                                let old = cs.first_seen.remove(&(lane, bucket)).unwrap_or_default();
                                let seen: HashMap<u64, Instant> = s.iter().map(|&seq| (seq, old.get(&seq).copied().unwrap_or(seen_now))).collect();
                                cs.first_seen.insert((lane, bucket), seen);
                            }
                            cs.listings.insert((lane, bucket), s.into());
                            cs.claimed = claims.iter().filter_map(|c| MsgId::parse(c)).collect();
                            cs.claim_names = claims;
                            listed = true;
                        }
                    }
                    let mut seqs: Vec<u64> = cs.listings[&(lane, bucket)].iter().copied().filter(|&seq| available(cs, seq)).collect();
                    let own = seqs.iter().filter(|&&seq| class(seq)).count();
                    // Too few of our own for a full batch: wait once for more
                    // (see `with_batch_linger`), then look again.
                    if batch && got.is_empty() && !seqs.is_empty() && own < want {
                        if let Some(t) = cs.linger_until.take() {
                            if Instant::now() < t {
                                tokio::time::sleep_until(t).await;
                                continue;
                            }
                        }
                    }
                    let stealing = own == 0 && cs_members.is_some();
                    let mut lagging = false;
                    if own > 0 && cs_members.is_some() {
                        // Our own class, in order: nobody else aims at it.
                        // But items of another class that have waited
                        // LAG_BEFORE_HELP longer than our own oldest one
                        // go first: their owner has stopped or fallen
                        // behind, and would otherwise hold them for as long
                        // as the rest of us never run dry.
                        let seen = cs.first_seen.get(&(lane, bucket));
                        let at = |seq: u64| seen.and_then(|m| m.get(&seq)).copied();
                        let own_oldest = seqs.iter().filter(|&&seq| class(seq)).filter_map(|&seq| at(seq)).min();
                        let behind: Vec<u64> = match own_oldest {
                            Some(t) => seqs.iter().copied().filter(|&seq| !class(seq) && at(seq).is_some_and(|s| s + LAG_BEFORE_HELP < t)).collect(),
                            None => Vec::new(),
                        };
                        lagging = !behind.is_empty();
                        seqs.retain(|&seq| class(seq));
                        seqs.splice(0..0, behind);
                    } else {
                        // Competing consumers walking the same list in
                        // lockstep all aim at the same head item. A consumer
                        // that keeps colliding starts at a random one of the
                        // first `spread` candidates instead (a batch: at a
                        // random one of the first `spread` batches' worth,
                        // taking the run from there); a lone consumer never
                        // collides, keeps spread 1 and so takes strictly in
                        // order.
                        let window = (cs.spread * want).min(seqs.len());
                        if want == 1 && window > 1 {
                            let first = seqs.remove(fastrand::usize(..window));
                            seqs.insert(0, first);
                        } else if cs.spread > 1 && window > 1 {
                            seqs.rotate_left(fastrand::usize(..window));
                        }
                    }
                    let ids: Vec<MsgId> = seqs.iter().take(want - got.len()).map(|&seq| MsgId { priority: lane, seq }).collect();
                    if ids.is_empty() {
                        break;
                    }
                    // Claims need no fresh look when we just listed, or when
                    // the items are of our own class.
                    let listed = listed || (batch && !stealing && !lagging && cs_members.is_some());
                    let exhausted = ids.len() == seqs.len();
                    rounds += 1;
                    let mut contended = false;
                    for (id, result) in self.claim_many(&ids, listed, batch.then_some(bucket_path.as_str())).await? {
                        match result {
                            ClaimResult::Got(d) => {
                                cs.listings.get_mut(&(lane, bucket)).unwrap().retain(|&s| s != id.seq);
                                cs.claimed.insert(id);
                                got.push(d);
                            },
                            ClaimResult::Gone => {
                                misses += 1;
                                cs.listings.get_mut(&(lane, bucket)).unwrap().retain(|&s| s != id.seq);
                            },
                            ClaimResult::Taken => {
                                misses += 1;
                                contended = true;
                                // Split consumers collide only when their views
                                // of who is in the split differ (one joined or
                                // left since a refresh) or one is taking from
                                // others' classes: look again soon.
                                if cs_members.is_some() {
                                    cs.last_fresh = None;
                                }
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
                    // A batch that has something returns it rather than fight
                    // competitors for the rest, or list again for what it
                    // already knows is not there.
                    if batch && !got.is_empty() && (contended || exhausted || rounds >= 2) {
                        break;
                    }
                    if batch && exhausted && !contended {
                        break;
                    }
                }
                if gone_bucket {
                    cs.buckets.get_mut(&lane).unwrap().retain(|&b| b != bucket);
                    cs.listings.remove(&(lane, bucket));
                    cs.first_seen.remove(&(lane, bucket));
                    continue;
                }
                // Remove drained buckets no put can target again, to keep lane
                // listings short. v1: every sequence number of the bucket has
                // been allocated. Sealed: the bucket is sealed (version 1;
                // the lane's last bucket never is), which the delete checks.
                // NotEmpty just means items are in flight.
                let last = cs.buckets[&lane].last() == Some(&bucket);
                let (done, version) = if self.sealed() { (!last, Some(1)) } else { (codec::bucket_end(bucket, self.meta.bucket_size) <= cs.enq_items, None) };
                if cs.listings[&(lane, bucket)].is_empty() && done {
                    match self.client.delete(&self.bucket_path(lane, bucket), version).await {
                        Ok(()) | Err(ZkError::NoNode) => {
                            cs.buckets.get_mut(&lane).unwrap().retain(|&b| b != bucket);
                            cs.listings.remove(&(lane, bucket));
                            cs.first_seen.remove(&(lane, bucket));
                        },
                        Err(_) => {},
                    }
                }
                if got.len() >= want || misses >= miss_limit {
                    break;
                }
            }
            if got.len() >= want || misses >= miss_limit {
                break;
            }
        }
        if !got.is_empty() && !collided {
            cs.spread = (cs.spread - 1).max(1);
        }
        Ok(got)
    }

    /// Claims several items: their reads pipelined, then one multi that
    /// claims every one still deliverable. An op refused (another consumer
    /// took that item, or it is gone) sends the multi again without that
    /// item, so the others are not lost to one collision.
    pub(super) async fn claim_many(&self, ids: &[MsgId], listed: bool, bucket: Option<&str>) -> Result<Vec<(MsgId, ClaimResult)>> {
        // A batch whose caller did not just list `P/claims` asks which of its
        // items are claimed now: between refreshes a consumer's listing still
        // holds what others claimed since, and reading those (payload and
        // all) or offering them in the claim multi (refused, sent again) is
        // wasted work. One listing of `P/claims` (one name per message in
        // flight) does it for the whole batch.
        let claims_dir = self.p("claims");
        let mut out = Vec::with_capacity(ids.len());
        let mut wanted = Vec::with_capacity(ids.len());
        if ids.len() > 1 && !listed {
            let held: HashSet<String> = retry_read(|| self.client.list_children(&claims_dir)).await.map(|names| names.into_iter().collect()).unwrap_or_default();
            for &id in ids {
                if held.contains(&id.name()) {
                    out.push((id, ClaimResult::Taken));
                } else {
                    wanted.push(id);
                }
            }
        } else {
            wanted.extend_from_slice(ids);
        }
        let paths: Vec<String> = wanted.iter().map(|&id| self.item_path(id)).collect();
        // Multi-reads, as many items in each as the largest item this
        // handle has seen says fit in READ_BUDGET: one request and one reply
        // for a batch's worth of small items instead of one each.
        let largest = self.largest_item.load(std::sync::atomic::Ordering::Relaxed).max(1024);
        let per_read = (codec::READ_BUDGET / largest).max(1);
        let mut reads = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(per_read) {
            if chunk.len() == 1 {
                reads.push(retry_read(|| self.client.get_data(&chunk[0])).await);
                continue;
            }
            for r in self.get_data_many(chunk).await? {
                reads.push(match r {
                    MultiReadResult::Data { data, stat } => Ok((data, stat)),
                    MultiReadResult::Error { err } => Err(err),
                    _ => Err(ZkError::MarshallingError),
                });
            }
        }
        let mut ready = Vec::new();
        for ((&id, path), read) in wanted.iter().zip(paths).zip(reads) {
            match read {
                Ok((data, stat)) => {
                    self.largest_item.fetch_max(data.len(), std::sync::atomic::Ordering::Relaxed);
                    match self.prepare_claim(id, path, &data, stat.version).await? {
                        Prep::Claim(p) => ready.push(p),
                        Prep::Done(r) => out.push((id, r)),
                    }
                },
                Err(ZkError::NoNode) => out.push((id, ClaimResult::Gone)),
                Err(e) => return Err(e.into()),
            }
        }
        let mut refused = false;
        while !ready.is_empty() {
            // A refused multi means competitors are taking these items right
            // now, and each further refusal would cost a logged txn to learn
            // of one more: look at the bucket and the claims again (one read)
            // and offer only what is still free.
            if refused && ready.len() > 1 {
                if let Some(bucket) = bucket {
                    match self.list_with_claims(bucket).await? {
                        None => {
                            out.extend(ready.drain(..).map(|p| (p.delivery.id, ClaimResult::Gone)));
                            break;
                        },
                        Some((items, claims)) => {
                            let items: HashSet<String> = items.into_iter().map(|c| format!("{bucket}/{c}")).collect();
                            let claims: HashSet<String> = claims.into_iter().collect();
                            let mut keep = Vec::with_capacity(ready.len());
                            for p in ready.drain(..) {
                                if !items.contains(&p.item) {
                                    out.push((p.delivery.id, ClaimResult::Gone));
                                } else if claims.contains(&p.delivery.id.name()) {
                                    out.push((p.delivery.id, ClaimResult::Taken));
                                } else {
                                    keep.push(p);
                                }
                            }
                            ready = keep;
                            if ready.is_empty() {
                                break;
                            }
                        },
                    }
                }
            }
            // A claim rewrites the item, payload and all: as many as fit in
            // one request (at least one; a single item always fits).
            let mut n = 0;
            let mut size = 0;
            for p in &ready {
                size += p.item_data.len() + p.item.len() + p.claim.len() + p.claim_data.len() + 2 * codec::OP_OVERHEAD;
                if n > 0 && size > codec::REQUEST_BUDGET {
                    break;
                }
                n += 1;
            }
            let mut plan = Plan::new(&self.client);
            for (k, p) in ready[..n].iter().enumerate() {
                plan.create(ClaimOp::Claim(k), &p.claim, &p.claim_data, &ephemeral())?;
                plan.set_data(ClaimOp::Item(k), &p.item, &p.item_data, Some(p.version))?;
            }
            match plan.commit().await {
                Ok(_) => out.extend(ready.drain(..n).map(|p| (p.delivery.id, ClaimResult::Got(p.delivery)))),
                Err(Failed::Op { role: ClaimOp::Claim(k), source: ZkError::NodeExists } | Failed::Op { role: ClaimOp::Item(k), source: ZkError::BadVersion }) => {
                    refused = true;
                    let p = ready.remove(k);
                    out.push((p.delivery.id, ClaimResult::Taken));
                },
                Err(Failed::Op { role: ClaimOp::Item(k), source: ZkError::NoNode }) => {
                    refused = true;
                    let p = ready.remove(k);
                    out.push((p.delivery.id, ClaimResult::Gone));
                },
                Err(Failed::Request(ZkError::ConnectionLoss)) => {
                    for p in ready.drain(..n).collect::<Vec<_>>() {
                        let id = p.delivery.id;
                        out.push((id, self.resolve_lost_claim(p).await?));
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Decides what to do with an item just read (at `version`): claim it
    /// (the multi's ops, ready to send), or not (delayed, malformed, or
    /// dead-lettered here because it used up its attempts).
    async fn prepare_claim(&self, id: MsgId, item: String, data: &[u8], version: i32) -> Result<Prep> {
        let (mut h, payload) = match codec::decode_item(data) {
            Ok(x) => x,
            Err(e) => {
                warn!(path = %item, error = %e, "skipping malformed item");
                return Ok(Prep::Done(ClaimResult::Taken));
            },
        };
        let now = now_ms();
        if h.not_before_ms > now {
            return Ok(Prep::Done(ClaimResult::Delayed(h.not_before_ms)));
        }
        let claim = self.claim_path(id);
        if self.meta.max_attempts > 0 && h.attempts >= self.meta.max_attempts {
            // Delivered max_attempts times already (each claim counts, so a
            // consumer that crashes on a poison message every time ends here).
            if retry_read(|| self.client.check_stat(&claim)).await?.is_some() {
                return Ok(Prep::Done(ClaimResult::Taken));
            }
            self.dead_letter(id, &h, payload, version, false).await?;
            return Ok(Prep::Done(ClaimResult::Gone));
        }
        h.attempts += 1;
        let lease_until_ms = now + self.meta.lease_ms;
        let token = version + 1;
        let claim_data = codec::encode_claim(&ClaimData { lease_until_ms, token, consumer: self.consumer_id.clone() });
        let item_data = codec::encode_item(&h, payload);
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
        Ok(Prep::Claim(Prepared { item, claim, item_data, claim_data, version, delivery }))
    }

    /// After a claim whose reply was lost: it may have committed. Our
    /// session outlives the connection; a claim owned by it that names this
    /// handle (several handles may share a session) at our token is ours.
    async fn resolve_lost_claim(&self, p: Prepared) -> Result<ClaimResult> {
        let sid = self.client.session_id().0;
        let token = p.delivery.token;
        let owned = match retry_read(|| self.client.get_data(&p.claim)).await {
            Ok((data, stat)) => stat.ephemeral_owner == sid && codec::decode_claim(&data).is_ok_and(|c| c.consumer == self.consumer_id && c.token == token),
            Err(ZkError::NoNode) => false,
            Err(e) => return Err(e.into()),
        };
        let item_v = match retry_read(|| self.client.check_stat(&p.item)).await? {
            Some(s) => s.version,
            None => return Ok(ClaimResult::Gone),
        };
        Ok(if owned && item_v == token { ClaimResult::Got(p.delivery) } else { ClaimResult::Taken })
    }

    /// Moves an item to the DLQ, conditioned on its version. Returns false if
    /// the item changed underneath (someone else claimed or removed it).
    pub(super) async fn dead_letter(&self, id: MsgId, h: &ItemHeader, payload: &[u8], version: i32, with_claim: bool) -> Result<bool> {
        let item = self.item_path(id);
        let claim = self.claim_path(id);
        let dlq = self.p(&format!("dlq/{}", id.name()));
        let data = codec::encode_item(h, payload);
        let mut with_claim = with_claim;
        let mut attempt = 0;
        loop {
            let (shard, c, sv) = self.deq_shard().await?;
            let delta = Counter { items: 1, bytes: h.payload_size(payload), redeliveries: h.attempts.saturating_sub(1) as u64, dead: 1, last_put: 0 };
            let mut new = c;
            new.add(&delta);
            let mut plan = Plan::new(&self.client);
            plan.delete(DeadOp::Item, &item, Some(version))?;
            if with_claim {
                plan.delete(DeadOp::Claim, &claim, None)?;
            }
            plan.create(DeadOp::Dlq, &dlq, &data, &persistent())?;
            plan.set_data(DeadOp::Shard, &self.deq_path(shard), &new.encode(), Some(sv))?;
            match plan.commit().await {
                Ok(_) => {
                    self.set_deq_cache(shard, Some((new, sv + 1)));
                    debug!(id = %id, "dead-lettered");
                    return Ok(true);
                },
                Err(Failed::Op { role: DeadOp::Item, .. }) => return Ok(false),
                Err(Failed::Op { role: DeadOp::Claim, source: ZkError::NoNode }) => with_claim = false,
                Err(Failed::Op { role: DeadOp::Shard, source: ZkError::BadVersion | ZkError::NoNode }) => self.set_deq_cache(shard, None),
                Err(Failed::Request(ZkError::ConnectionLoss)) if attempt < 50 => backoff_sleep(&mut attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Releases claims whose lease has run out, so their items can be claimed
    /// again. Returns whether anything was released and the earliest lease
    /// deadline still running.
    pub(super) async fn reap(&self, cs: &mut ConsumerState) -> Result<(bool, Option<u64>)> {
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
                    let mut plan = Plan::new(&self.client);
                    plan.check(ReapOp::Check, path, stat.version)?;
                    plan.delete(ReapOp::Delete, path, Some(stat.version))?;
                    if plan.commit().await.is_ok() {
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

    pub(super) fn count_wakeup(&self) {
        self.wakeups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

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

/// Whether `seq` is in the class of the batch consumer at `slot` of
/// `members` (every item is, for an unregistered or lone consumer).
fn own_class(seq: u64, members: Option<(usize, usize)>) -> bool {
    match members {
        Some((slot, n)) if n > 1 => (seq % n as u64) as usize == slot,
        _ => true,
    }
}
