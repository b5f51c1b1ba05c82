//! Durable state in sled: the txn log, plus a little metadata.
//!
//! Writes are group-committed: the processor hands over every txn of a
//! batch at once and `append` returns only after one fsync covers them all,
//! before any reply of that batch is sent. Recovery replays the log into a
//! fresh core.

use std::path::Path;

use prost::Message;

use crate::core::snapshot::{NodeRecord, SessionRecord, Snapshot};
use crate::core::txn::Txn;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage: corrupt log entry at zxid {zxid:#x}: {reason}")]
    Corrupt { zxid: u64, reason: String },
}

/// The store. Cheap to clone: every clone is a handle on the same database,
/// so a background thread can write a snapshot while the processor appends.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// Snapshots, keyed `generation (8 bytes BE) | kind (n/s) | key`.
    snap: sled::Tree,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(dir.join("corral.sled")).open()?;
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        let snap = db.open_tree("snapshot")?;
        Ok(Store { db, log, meta, snap })
    }

    /// The secret that keys session passwords, created on first open with
    /// `fresh` and kept for the life of the data directory.
    pub fn secret(&self, fresh: impl FnOnce() -> u64) -> Result<u64, StoreError> {
        if let Some(v) = self.meta.get("secret")? {
            let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt { zxid: 0, reason: "secret".into() })?;
            return Ok(u64::from_be_bytes(bytes));
        }
        let s = fresh();
        self.meta.insert("secret", &s.to_be_bytes())?;
        self.db.flush()?;
        Ok(s)
    }

    /// Appends txns (in zxid order) and makes them durable with one fsync.
    pub fn append(&self, txns: &[Txn]) -> Result<(), StoreError> {
        if txns.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for t in txns {
            batch.insert(&(t.zxid as u64).to_be_bytes(), t.encode_to_vec());
        }
        self.log.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Every logged txn after `after_zxid` in zxid order, checking that
    /// zxids strictly increase.
    pub fn replay(&self, after_zxid: i64) -> impl Iterator<Item = Result<Txn, StoreError>> + '_ {
        let mut last = after_zxid as u64;
        self.log.range((after_zxid as u64 + 1).to_be_bytes()..).map(move |kv| {
            let (k, v) = kv?;
            let zxid = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| StoreError::Corrupt { zxid: last, reason: "bad key".into() })?);
            let txn = Txn::decode(v.as_ref()).map_err(|e| StoreError::Corrupt { zxid, reason: e.to_string() })?;
            if txn.zxid as u64 != zxid || zxid <= last {
                return Err(StoreError::Corrupt { zxid, reason: format!("out of order after {last:#x}") });
            }
            last = zxid;
            Ok(txn)
        })
    }

    /// The current snapshot's (generation, zxid), if one was completed.
    fn snapshot_marker(&self) -> Result<Option<(u64, i64)>, StoreError> {
        let Some(v) = self.meta.get("snapshot")? else { return Ok(None) };
        let bad = || StoreError::Corrupt { zxid: 0, reason: "snapshot marker".into() };
        let b: [u8; 16] = v.as_ref().try_into().map_err(|_| bad())?;
        Ok(Some((u64::from_be_bytes(b[..8].try_into().unwrap()), i64::from_be_bytes(b[8..].try_into().unwrap()))))
    }

    /// Writes `snap` as a new generation, makes it current only once it is
    /// complete and durable, then drops the older generation and the log up
    /// to the snapshot's zxid. A crash at any point leaves one complete
    /// snapshot plus every txn after it.
    pub fn write_snapshot(&self, snap: &Snapshot) -> Result<(), StoreError> {
        let (gen, _) = self.snapshot_marker()?.unwrap_or((0, 0));
        let next = gen + 1;
        let key = |kind: u8, k: &[u8]| {
            let mut v = next.to_be_bytes().to_vec();
            v.push(kind);
            v.extend_from_slice(k);
            v
        };
        // Bounded batches so a huge tree does not build one huge batch in memory.
        for chunk in snap.nodes.chunks(10_000) {
            let mut batch = sled::Batch::default();
            for n in chunk {
                batch.insert(key(b'n', n.path.as_bytes()), n.encode_to_vec());
            }
            self.snap.apply_batch(batch)?;
        }
        let mut batch = sled::Batch::default();
        for s in &snap.sessions {
            batch.insert(key(b's', &s.session_id.to_be_bytes()), s.encode_to_vec());
        }
        self.snap.apply_batch(batch)?;
        self.db.flush()?;
        let mut marker = next.to_be_bytes().to_vec();
        marker.extend_from_slice(&snap.zxid.to_be_bytes());
        self.meta.insert("snapshot", marker)?;
        self.db.flush()?;
        // Cleanup: the old generation and the log it no longer needs.
        for k in self.snap.range(..next.to_be_bytes().to_vec()).keys() {
            self.snap.remove(k?)?;
        }
        for k in self.log.range(..=(snap.zxid as u64).to_be_bytes()).keys() {
            self.log.remove(k?)?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// The current snapshot, if any.
    pub fn load_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let Some((gen, zxid)) = self.snapshot_marker()? else { return Ok(None) };
        let mut snap = Snapshot { zxid, ..Default::default() };
        for kv in self.snap.scan_prefix(gen.to_be_bytes()) {
            let (k, v) = kv?;
            let corrupt = |e: prost::DecodeError| StoreError::Corrupt { zxid: zxid as u64, reason: format!("snapshot record: {e}") };
            match k.get(8) {
                Some(b'n') => snap.nodes.push(NodeRecord::decode(v.as_ref()).map_err(corrupt)?),
                Some(b's') => snap.sessions.push(SessionRecord::decode(v.as_ref()).map_err(corrupt)?),
                _ => return Err(StoreError::Corrupt { zxid: zxid as u64, reason: "snapshot key".into() }),
            }
        }
        Ok(Some(snap))
    }

    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::txn::*;

    #[test]
    fn appended_txns_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("corral-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let s = Store::open(&dir).unwrap();
            assert_eq!(s.secret(|| 42).unwrap(), 42);
            let txn = |zxid| Txn { zxid, session_id: 1, cxid: 1, time_ms: 5, ops: vec![TxnOp::new(Op::Delete(DeleteTxn { path: "/a".into() }))] };
            s.append(&[txn(1), txn(2)]).unwrap();
        }
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.secret(|| 7).unwrap(), 42);
        let zxids: Vec<i64> = s.replay(0).map(|t| t.unwrap().zxid).collect();
        assert_eq!(zxids, vec![1, 2]);
        assert_eq!(s.load_snapshot().unwrap(), None);
        let snap = Snapshot {
            zxid: 1,
            nodes: vec![NodeRecord { path: "/".into(), ..Default::default() }],
            sessions: vec![SessionRecord { session_id: 9, timeout_ms: 100 }],
        };
        s.write_snapshot(&snap).unwrap();
        let snap2 = Snapshot { zxid: 2, ..snap.clone() };
        s.write_snapshot(&snap2).unwrap();
        drop(s);
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.load_snapshot().unwrap(), Some(snap2), "the newest complete generation");
        assert_eq!(s.replay(2).count(), 0, "the log up to the snapshot is gone");
        assert_eq!(s.log_len(), 0);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
