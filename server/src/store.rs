//! Durable state in sled: the raft log, the hard and conf state, and
//! snapshots of the core.
//!
//! The replica says what to write ([`Persist`]); [`Store::persist`] writes
//! it and, where raft needs it (`must_sync`), fsyncs once for the whole
//! batch before the shell reports it persisted — group commit. Snapshots are
//! written by a background thread and only then let the log before them go.
//! [`Store::recover`] reads everything back for [`crate::replica::Replica::new`].
//!
//! Data directories of the first, pre-raft format (a `log` tree of txns
//! keyed by zxid) are converted on open: the txns are applied into a core,
//! which becomes the first snapshot of the raft log at the same zxid.

use std::path::Path;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};

use crate::core::snapshot::{NodeRecord, SessionRecord, Snapshot};
use crate::core::txn::Txn;
use crate::core::{Core, CoreConfig};
use crate::replica::log::LogSnapshot;
use crate::replica::{Persist, Recovered};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage: corrupt {what} at index {index:#x}: {reason}")]
    Corrupt { what: &'static str, index: u64, reason: String },
}

fn corrupt(what: &'static str, index: u64, reason: impl ToString) -> StoreError {
    StoreError::Corrupt { what, index, reason: reason.to_string() }
}

/// The store. Cheap to clone: every clone is a handle on the same database,
/// so a background thread can write a snapshot while the replica appends.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// Raft entries keyed by index (8 bytes BE), rust-protobuf encoded.
    entries: sled::Tree,
    meta: sled::Tree,
    /// Snapshots, keyed `generation (8 bytes BE) | kind | key`: kind `n`
    /// a node by path, `s` a session by id, `m` the secret.
    snap: sled::Tree,
}

const HARD_STATE: &str = "hard_state";
const CONF_STATE: &str = "conf_state";
/// The current snapshot: generation, index, term (8 bytes BE each); its conf state under `SNAPSHOT_CONF`.
const SNAPSHOT: &str = "raft_snapshot";
const SNAPSHOT_CONF: &str = "raft_snapshot_conf";
/// The pre-raft format's snapshot marker: generation, zxid.
const LEGACY_SNAPSHOT: &str = "snapshot";

/// How long a start waits for a previous process to release the data
/// directory (after kill -9 the old process may still be exiting).
const LOCK_WAIT_MS_MAX: u64 = 10_000;

/// Opens sled, waiting (bounded) while another process holds its lock.
fn open_waiting_for_lock(path: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    let mut logged = false;
    loop {
        match sled::Config::new().path(path).open() {
            Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("lock") => {
                if started.elapsed().as_millis() as u64 >= LOCK_WAIT_MS_MAX {
                    return Err(sled::Error::Io(e).into());
                }
                if !logged {
                    tracing::warn!(path = %path.display(), "data directory locked by another process (still exiting?); waiting up to {} s", LOCK_WAIT_MS_MAX / 1000);
                    logged = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

fn be(v: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(at..at + 8)?.try_into().ok()?))
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = open_waiting_for_lock(&dir.join("corral.sled"))?;
        let entries = db.open_tree("raft_log")?;
        let meta = db.open_tree("meta")?;
        let snap = db.open_tree("snapshot")?;
        Ok(Store { db, entries, meta, snap })
    }

    /// Writes what a ready asked for; fsyncs if `must_sync`.
    pub fn persist(&self, p: &Persist) -> Result<(), StoreError> {
        self.write(p)?;
        if p.must_sync || p.snapshot.is_some() {
            self.sync()?;
        }
        Ok(())
    }

    /// Makes everything written so far durable (one fsync for many readies).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Writes what a ready asked for, without the fsync.
    pub fn write(&self, p: &Persist) -> Result<(), StoreError> {
        if let Some(s) = &p.snapshot {
            // A snapshot from the leader replaces the log it covers.
            self.write_snapshot(s)?;
            for k in self.entries.range(..=s.index.to_be_bytes()).keys() {
                self.entries.remove(k?)?;
            }
        }
        if let Some(first) = p.entries.first() {
            let mut batch = sled::Batch::default();
            // A new leader's entries replace any stored tail from their first index on.
            for k in self.entries.range(first.index.to_be_bytes()..).keys() {
                batch.remove(k?);
            }
            let mut expected = first.index;
            for e in &p.entries {
                assert_eq!(e.index, expected, "persist: entries not contiguous");
                expected += 1;
                let bytes = e.write_to_bytes().map_err(|err| corrupt("entry", e.index, err))?;
                batch.insert(&e.index.to_be_bytes(), bytes);
            }
            self.entries.apply_batch(batch)?;
        }
        if let Some(hs) = &p.hard_state {
            self.meta.insert(HARD_STATE, hs.write_to_bytes().map_err(|e| corrupt("hard state", 0, e))?)?;
        }
        Ok(())
    }

    pub fn set_conf_state(&self, cs: &ConfState) -> Result<(), StoreError> {
        self.meta.insert(CONF_STATE, cs.write_to_bytes().map_err(|e| corrupt("conf state", 0, e))?)?;
        self.db.flush()?;
        Ok(())
    }

    /// Everything kept, for the replica to restart from. Converts a data
    /// directory of the pre-raft format first.
    pub fn recover(&self, core_cfg: &CoreConfig, my_id: u64) -> Result<Recovered, StoreError> {
        self.migrate_legacy(core_cfg, my_id)?;
        let hard_state = match self.meta.get(HARD_STATE)? {
            Some(v) => HardState::parse_from_bytes(&v).map_err(|e| corrupt("hard state", 0, e))?,
            None => HardState::default(),
        };
        let conf_state = match self.meta.get(CONF_STATE)? {
            Some(v) => Some(ConfState::parse_from_bytes(&v).map_err(|e| corrupt("conf state", 0, e))?),
            None => None,
        };
        let snapshot = self.load_snapshot()?;
        let after = snapshot.as_ref().map_or(0, |s| s.index);
        let mut entries = Vec::new();
        for kv in self.entries.range((after + 1).to_be_bytes()..) {
            let (k, v) = kv?;
            let index = be(&k, 0).ok_or_else(|| corrupt("entry key", after, "length"))?;
            let e = Entry::parse_from_bytes(&v).map_err(|err| corrupt("entry", index, err))?;
            let expected = entries.last().map_or(after + 1, |p: &Entry| p.index + 1);
            if e.index != index || index != expected {
                return Err(corrupt("entry", index, format!("expected index {expected:#x}")));
            }
            entries.push(e);
        }
        Ok(Recovered { hard_state, conf_state, snapshot, entries })
    }

    /// The current snapshot's (generation, index, term), if one was completed.
    fn snapshot_marker(&self) -> Result<Option<(u64, u64, u64)>, StoreError> {
        let Some(v) = self.meta.get(SNAPSHOT)? else { return Ok(None) };
        match (be(&v, 0), be(&v, 8), be(&v, 16)) {
            (Some(g), Some(i), Some(t)) if v.len() == 24 => Ok(Some((g, i, t))),
            _ => Err(corrupt("snapshot marker", 0, "length")),
        }
    }

    fn next_generation(&self) -> Result<u64, StoreError> {
        let current = self.snapshot_marker()?.map_or(0, |(g, _, _)| g);
        let legacy = self.meta.get(LEGACY_SNAPSHOT)?.and_then(|v| be(&v, 0)).unwrap_or(0);
        Ok(current.max(legacy) + 1)
    }

    /// Writes `snap` as a new generation, makes it current only once it is
    /// complete and durable, then drops the older generation and the log up
    /// to the snapshot's index. A crash at any point leaves one complete
    /// snapshot plus every entry after it.
    pub fn write_snapshot(&self, s: &LogSnapshot) -> Result<(), StoreError> {
        if self.snapshot_marker()?.is_some_and(|(_, index, _)| index >= s.index) {
            return Ok(()); // a newer one is already current
        }
        let next = self.next_generation()?;
        let key = |kind: u8, k: &[u8]| {
            let mut v = next.to_be_bytes().to_vec();
            v.push(kind);
            v.extend_from_slice(k);
            v
        };
        // Bounded batches so a huge tree does not build one huge batch in memory.
        for chunk in s.core.nodes.chunks(10_000) {
            let mut batch = sled::Batch::default();
            for n in chunk {
                batch.insert(key(b'n', n.path.as_bytes()), n.encode_to_vec());
            }
            self.snap.apply_batch(batch)?;
        }
        let mut batch = sled::Batch::default();
        batch.insert(key(b'm', b"secret"), &s.core.secret.to_be_bytes());
        for r in &s.core.sessions {
            batch.insert(key(b's', &r.session_id.to_be_bytes()), r.encode_to_vec());
        }
        self.snap.apply_batch(batch)?;
        self.db.flush()?;
        let mut marker = next.to_be_bytes().to_vec();
        marker.extend_from_slice(&s.index.to_be_bytes());
        marker.extend_from_slice(&s.term.to_be_bytes());
        let conf = s.conf_state.write_to_bytes().map_err(|e| corrupt("conf state", s.index, e))?;
        self.meta.transaction(|m| {
            m.insert(SNAPSHOT, marker.clone())?;
            m.insert(SNAPSHOT_CONF, conf.clone())?;
            m.remove(LEGACY_SNAPSHOT)?;
            Ok(())
        })
        .map_err(|e: sled::transaction::TransactionError<()>| match e {
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
            sled::transaction::TransactionError::Abort(()) => corrupt("snapshot marker", s.index, "aborted"),
        })?;
        self.db.flush()?;
        // Cleanup: the old generations and the log the snapshot covers.
        for k in self.snap.range(..next.to_be_bytes().to_vec()).keys() {
            self.snap.remove(k?)?;
        }
        for k in self.entries.range(..=s.index.to_be_bytes()).keys() {
            self.entries.remove(k?)?;
        }
        self.db.flush()?;
        Ok(())
    }

    fn load_generation(&self, gen: u64, zxid: i64) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot { zxid, ..Default::default() };
        for kv in self.snap.scan_prefix(gen.to_be_bytes()) {
            let (k, v) = kv?;
            let bad = |e: prost::DecodeError| corrupt("snapshot record", zxid as u64, e);
            match k.get(8) {
                Some(b'n') => snap.nodes.push(NodeRecord::decode(v.as_ref()).map_err(bad)?),
                Some(b's') => snap.sessions.push(SessionRecord::decode(v.as_ref()).map_err(bad)?),
                Some(b'm') if k.get(9..) == Some(b"secret") => {
                    snap.secret = be(&v, 0).filter(|_| v.len() == 8).ok_or_else(|| corrupt("snapshot secret", zxid as u64, "length"))?;
                }
                _ => return Err(corrupt("snapshot key", zxid as u64, "kind")),
            }
        }
        Ok(snap)
    }

    /// The current snapshot, if any.
    pub fn load_snapshot(&self) -> Result<Option<LogSnapshot>, StoreError> {
        let Some((gen, index, term)) = self.snapshot_marker()? else { return Ok(None) };
        let conf_state = match self.meta.get(SNAPSHOT_CONF)? {
            Some(v) => ConfState::parse_from_bytes(&v).map_err(|e| corrupt("snapshot conf state", index, e))?,
            None => return Err(corrupt("snapshot conf state", index, "missing")),
        };
        let core = self.load_generation(gen, index as i64)?;
        Ok(Some(LogSnapshot { index, term, conf_state, core }))
    }

    /// Converts a pre-raft data directory (txns keyed by zxid in `log`, a
    /// snapshot marked by `snapshot`): the state they make becomes a raft
    /// snapshot at the last zxid, term 1, with this member as the only
    /// voter; then the old log goes. Idempotent: a crash midway converts
    /// again on the next open.
    fn migrate_legacy(&self, core_cfg: &CoreConfig, my_id: u64) -> Result<(), StoreError> {
        let legacy_log = self.db.open_tree("log")?;
        let legacy_marker = self.meta.get(LEGACY_SNAPSHOT)?;
        if legacy_log.is_empty() && legacy_marker.is_none() {
            return Ok(());
        }
        // The first format kept the password secret beside the log; it now
        // travels in the snapshot, replicated.
        let secret = match self.meta.get("secret")? {
            Some(v) => be(&v, 0).filter(|_| v.len() == 8).ok_or_else(|| corrupt("legacy secret", 0, "length"))?,
            None => 0,
        };
        let mut core = Core::new(core_cfg.clone(), secret, 0);
        if let Some(v) = legacy_marker {
            let (gen, zxid) = match (be(&v, 0), be(&v, 8)) {
                (Some(g), Some(z)) if v.len() == 16 => (g, z as i64),
                _ => return Err(corrupt("legacy snapshot marker", 0, "length")),
            };
            core = Core::restore(core_cfg.clone(), secret, 0, &self.load_generation(gen, zxid)?);
        }
        for kv in legacy_log.range((core.last_zxid() as u64 + 1).to_be_bytes()..) {
            let (k, v) = kv?;
            let zxid = be(&k, 0).ok_or_else(|| corrupt("legacy log key", 0, "length"))?;
            let txn = Txn::decode(v.as_ref()).map_err(|e| corrupt("legacy txn", zxid, e))?;
            if txn.zxid as u64 != zxid || txn.zxid <= core.last_zxid() {
                return Err(corrupt("legacy txn", zxid, "out of order"));
            }
            core.apply(&txn);
        }
        let index = core.last_zxid() as u64;
        tracing::info!(zxid = format!("{index:#x}"), nodes = core.tree.len(), "converting the data directory to the raft log format");
        let conf_state = ConfState { voters: vec![my_id], ..Default::default() };
        self.write_snapshot(&LogSnapshot { index, term: 1, conf_state: conf_state.clone(), core: core.snapshot() })?;
        let hs = HardState { term: 1, vote: 0, commit: index, ..Default::default() };
        self.meta.insert(HARD_STATE, hs.write_to_bytes().map_err(|e| corrupt("hard state", 0, e))?)?;
        self.meta.insert(CONF_STATE, conf_state.write_to_bytes().map_err(|e| corrupt("conf state", 0, e))?)?;
        self.db.flush()?;
        self.db.drop_tree("log")?;
        self.db.flush()?;
        Ok(())
    }

    pub fn log_len(&self) -> usize {
        self.entries.len()
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::txn::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("corral-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, data: vec![index as u8].into(), ..Default::default() }
    }

    #[test]
    fn persisted_entries_and_snapshots_survive_reopen() {
        let dir = temp_dir("reopen");
        let cfg = CoreConfig::default();
        {
            let s = Store::open(&dir).unwrap();
            let hs = HardState { term: 2, vote: 1, commit: 2, ..Default::default() };
            s.persist(&Persist { number: 1, entries: vec![entry(1, 1), entry(2, 1), entry(3, 1)], hard_state: Some(hs), snapshot: None, must_sync: true }).unwrap();
            // A new leader's entries replace the tail.
            s.persist(&Persist { number: 2, entries: vec![entry(3, 2)], hard_state: None, snapshot: None, must_sync: true }).unwrap();
        }
        let s = Store::open(&dir).unwrap();
        let r = s.recover(&cfg, 1).unwrap();
        assert_eq!(r.entries.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(), vec![(1, 1), (2, 1), (3, 2)]);
        assert_eq!(r.hard_state.commit, 2);
        assert!(r.snapshot.is_none());
        let snap = LogSnapshot {
            index: 2,
            term: 1,
            conf_state: ConfState { voters: vec![1], ..Default::default() },
            core: Snapshot { zxid: 2, nodes: vec![NodeRecord { path: "/".into(), ..Default::default() }], sessions: vec![SessionRecord { session_id: 9, timeout_ms: 100 }], secret: 42 },
        };
        s.write_snapshot(&snap).unwrap();
        drop(s);
        let s = Store::open(&dir).unwrap();
        let r = s.recover(&cfg, 1).unwrap();
        assert_eq!(r.snapshot, Some(snap), "the newest complete generation");
        assert_eq!(r.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![3], "the log up to the snapshot is gone");
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_pre_raft_data_directory_is_converted() {
        let dir = temp_dir("legacy");
        {
            // The first format: txns keyed by zxid in `log`.
            let db = sled::Config::new().path(dir.join("corral.sled")).open().unwrap();
            let log = db.open_tree("log").unwrap();
            let session = Txn { zxid: 1, session_id: 5, cxid: 0, time_ms: 1, ops: vec![TxnOp::new(Op::CreateSession(CreateSessionTxn { session_id: 5, timeout_ms: 4000 }))] };
            let create = Txn {
                zxid: 2,
                session_id: 5,
                cxid: 1,
                time_ms: 2,
                ops: vec![TxnOp::new(Op::Create(CreateTxn { path: "/kept".into(), data: Some(b"v".to_vec()), acl: vec![], ephemeral_owner: 0 }))],
            };
            for t in [session, create] {
                log.insert((t.zxid as u64).to_be_bytes(), t.encode_to_vec()).unwrap();
            }
            db.open_tree("meta").unwrap().insert("secret", &42u64.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let s = Store::open(&dir).unwrap();
        let r = s.recover(&CoreConfig::default(), 3).unwrap();
        let snap = r.snapshot.expect("converted into a snapshot");
        assert_eq!((snap.index, snap.term, snap.conf_state.voters.clone()), (2, 1, vec![3]));
        assert!(snap.core.nodes.iter().any(|n| n.path == "/kept" && n.data.as_deref() == Some(&b"v"[..])));
        assert_eq!(snap.core.sessions.len(), 1);
        assert_eq!(snap.core.secret, 42, "session passwords stay valid across the conversion");
        assert_eq!(r.hard_state.commit, 2);
        drop(s);
        // Converting twice is harmless: the old log is gone.
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.recover(&CoreConfig::default(), 3).unwrap().snapshot.unwrap().index, 2);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
