//! Durable state in sled: the txn log, plus a little metadata.
//!
//! Writes are group-committed: the processor hands over every txn of a
//! batch at once and `append` returns only after one fsync covers them all,
//! before any reply of that batch is sent. Recovery replays the log into a
//! fresh core.

use std::path::Path;

use prost::Message;

use crate::core::txn::Txn;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage: corrupt log entry at zxid {zxid:#x}: {reason}")]
    Corrupt { zxid: u64, reason: String },
}

pub struct Store {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(dir.join("corral.sled")).open()?;
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        Ok(Store { db, log, meta })
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

    /// Every logged txn in zxid order, checking that zxids strictly increase.
    pub fn replay(&self) -> impl Iterator<Item = Result<Txn, StoreError>> + '_ {
        let mut last = 0u64;
        self.log.iter().map(move |kv| {
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
        let zxids: Vec<i64> = s.replay().map(|t| t.unwrap().zxid).collect();
        assert_eq!(zxids, vec![1, 2]);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
