//! Settling a delivery: ack, ack_batch, nack, extend; all fenced by the
//! delivery's token.

use crate::plan::{Failed, Plan};
use super::*;

/// What each op of an ack's multi does (`ack` and `ack_batch`); `usize` is
/// the delivery's place in the batch (0 for `ack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckOp {
    /// Deletes the item at the delivery's token: the fence.
    Item(usize),
    Claim(usize),
    BlobRef(usize),
    /// Adds to a deq shard's totals, at its cached version.
    Shard,
}

/// What each op of a nack's or an extend's multi does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SettleOp {
    /// Rewrites or checks the item at the delivery's token: the fence.
    Item,
    Claim,
}

impl NativeQueue {
    /// Deletes the blob of an acked message (best effort: a failure leaves an
    /// orphan for the sweeper).
    pub(super) async fn delete_acked_blob(&self, r: Option<&BlobRef>) {
        if let (Some(bs), Some(r)) = (&self.blobs, r) {
            if let Err(e) = bs.delete(&r.key).await {
                warn!(error = %e, "acked, but could not delete the blob; the sweeper will");
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
        self.ack_after(d, false).await
    }

    /// `ack`, knowing whether an earlier request that acked `d` (an
    /// `ack_batch` multi) lost its reply and so may have committed.
    async fn ack_after(&self, d: &Delivery, lost_reply: bool) -> Result<()> {
        let item = self.item_path(d.id);
        let claim = self.claim_path(d.id);
        let blob_ref = self.blob_ref_node(d.header.blob.as_ref());
        let mut with_claim = true;
        let mut with_ref = blob_ref.is_some();
        let mut after_loss = lost_reply;
        let mut attempt = 0;
        loop {
            let (shard, c, sv) = self.deq_shard().await?;
            let mut new = c;
            new.add(&Counter { items: 1, bytes: d.header.payload_size(&d.payload), redeliveries: d.attempt.saturating_sub(1) as u64, dead: 0, last_put: 0 });
            let mut plan = Plan::new(&self.client);
            plan.delete(AckOp::Item(0), &item, Some(d.token))?;
            if with_claim {
                plan.delete(AckOp::Claim(0), &claim, None)?;
            }
            if with_ref {
                plan.delete(AckOp::BlobRef(0), blob_ref.as_deref().unwrap(), None)?;
            }
            plan.set_data(AckOp::Shard, &self.deq_path(shard), &new.encode(), Some(sv))?;
            match plan.commit().await {
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
                Err(Failed::Op { role: AckOp::Item(_), source: ZkError::NoNode }) if after_loss => {
                    if now_ms() < d.lease_until_ms {
                        self.delete_acked_blob(d.header.blob.as_ref()).await;
                        return Ok(());
                    }
                    return Err(QueueError::Indeterminate { op: "ack" });
                },
                Err(Failed::Op { role: AckOp::Item(_), .. }) => return Err(QueueError::ClaimLost { id: d.id.name() }),
                // Our claim node vanished (lease reaped, or session blip) but
                // the item version proves nobody else claimed it since.
                Err(Failed::Op { role: AckOp::Claim(_), source: ZkError::NoNode }) => with_claim = false,
                // No reference node (it was never made, e.g. by hand): the
                // item version still fences the ack.
                Err(Failed::Op { role: AckOp::BlobRef(_), source: ZkError::NoNode }) => with_ref = false,
                Err(Failed::Op { role: AckOp::Shard, source: ZkError::BadVersion | ZkError::NoNode }) => self.set_deq_cache(shard, None),
                Err(Failed::Request(ZkError::ConnectionLoss)) if attempt < 60 => {
                    after_loss = true;
                    backoff_sleep(&mut attempt).await;
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Acknowledges many deliveries with few requests, one multi per chunk,
    /// with a result per delivery (in order). A delivery whose op is refused
    /// (claim lost, claim node gone, ...) is acked on its own, so its result
    /// says exactly what happened, and the rest go again as a batch; so do
    /// they after losing a race for the deq shard.
    pub async fn ack_batch(&self, ds: &[Delivery]) -> Result<Vec<Result<()>>> {
        let mut out: Vec<Option<Result<()>>> = ds.iter().map(|_| None).collect();
        // Two deletes per delivery, three with a blob reference.
        let per = if ds.iter().any(|d| d.header.blob.is_some()) { 3 } else { 2 };
        let indices: Vec<usize> = (0..ds.len()).collect();
        for chunk in indices.chunks(MAX_OPS_PER_MULTI / per - 1) {
            let mut chunk = chunk.to_vec();
            let mut races = 0;
            while !chunk.is_empty() {
                let (shard, c, sv) = self.deq_shard().await?;
                let mut new = c;
                let mut plan = Plan::new(&self.client);
                for (j, &i) in chunk.iter().enumerate() {
                    let d = &ds[i];
                    new.add(&Counter { items: 1, bytes: d.header.payload_size(&d.payload), redeliveries: d.attempt.saturating_sub(1) as u64, dead: 0, last_put: 0 });
                    plan.delete(AckOp::Item(j), &self.item_path(d.id), Some(d.token))?;
                    plan.delete(AckOp::Claim(j), &self.claim_path(d.id), None)?;
                    if let Some(r) = self.blob_ref_node(d.header.blob.as_ref()) {
                        plan.delete(AckOp::BlobRef(j), &r, None)?;
                    }
                }
                plan.set_data(AckOp::Shard, &self.deq_path(shard), &new.encode(), Some(sv))?;
                match plan.commit().await {
                    Ok(_) => {
                        self.set_deq_cache(shard, Some((new, sv + 1)));
                        for &i in &chunk {
                            self.delete_acked_blob(ds[i].header.blob.as_ref()).await;
                            out[i] = Some(Ok(()));
                        }
                        chunk.clear();
                    },
                    Err(Failed::Op { role: AckOp::Shard, .. }) if races < 8 => {
                        races += 1;
                        self.set_deq_cache(shard, None);
                    },
                    Err(Failed::Op { role: AckOp::Item(j) | AckOp::Claim(j) | AckOp::BlobRef(j), .. }) => {
                        let i = chunk.remove(j);
                        out[i] = Some(self.ack(&ds[i]).await);
                    },
                    // A lost reply: one by one, each knowing the batch may
                    // have committed (an item found gone is then ours to
                    // report acked while our lease lasts, not ClaimLost).
                    Err(Failed::Request(ZkError::ConnectionLoss)) => {
                        for i in chunk.drain(..) {
                            out[i] = Some(self.ack_after(&ds[i], true).await);
                        }
                    },
                    // A shard we keep losing: one by one.
                    Err(Failed::Op { .. }) => {
                        for i in chunk.drain(..) {
                            out[i] = Some(self.ack(&ds[i]).await);
                        }
                    },
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(out.into_iter().map(|r| r.expect("every delivery settled")).collect())
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
            let mut plan = Plan::new(&self.client);
            plan.set_data(SettleOp::Item, &self.item_path(d.id), &data, Some(d.token))?;
            if with_claim {
                plan.delete(SettleOp::Claim, &self.claim_path(d.id), None)?;
            }
            match plan.commit().await {
                Ok(_) => return Ok(NackOutcome::Requeued),
                Err(Failed::Op { role: SettleOp::Item, .. }) => return Err(QueueError::ClaimLost { id: d.id.name() }),
                Err(Failed::Op { role: SettleOp::Claim, source: ZkError::NoNode }) => with_claim = false,
                Err(Failed::Request(ZkError::ConnectionLoss)) if attempt < 60 => {
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
            let mut plan = Plan::new(&self.client);
            plan.check(SettleOp::Item, &item, d.token)?;
            if recreate {
                plan.create(SettleOp::Claim, &claim, &data, &ephemeral())?;
            } else {
                plan.set_data(SettleOp::Claim, &claim, &data, None)?;
            }
            match plan.commit().await {
                Ok(_) => {
                    d.lease_until_ms = lease_until_ms;
                    return Ok(());
                },
                Err(Failed::Op { role: SettleOp::Item, .. }) => return Err(QueueError::ClaimLost { id: d.id.name() }),
                // The lease was reaped but nobody has claimed the item since:
                // take the claim back.
                Err(Failed::Op { role: SettleOp::Claim, source: ZkError::NoNode }) if !recreate => recreate = true,
                Err(Failed::Op { role: SettleOp::Claim, .. }) => return Err(QueueError::ClaimLost { id: d.id.name() }),
                Err(Failed::Request(ZkError::ConnectionLoss)) if attempt < 60 => backoff_sleep(&mut attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
