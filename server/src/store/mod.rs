//! Durable state: the raft log and hard state in a write-ahead log of
//! segment files ([`wal`]), snapshots of the core and the conf state in sled.
//!
//! The replica says what to write ([`Persist`]); [`Store::write`] buffers
//! it and [`Store::flush`] writes the buffer and, where raft needs it
//! (`must_sync`), fsyncs once for a whole group of readies before the shell
//! reports them persisted: group commit. Snapshots are written to sled by a
//! background thread and only then let the log segments before them go.
//! [`Store::recover`] reads everything back for [`crate::replica::Replica::new`].
//!
//! Two older formats are converted on open: the pre-raft one (a `log` tree
//! of txns keyed by zxid; its state becomes the first snapshot), and the
//! first raft one, which kept the log and hard state in sled trees (they
//! are copied into the write-ahead log, then dropped).

pub mod wal;

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
    #[error("storage: {0}")]
    Wal(#[from] wal::WalError),
    #[error("storage: corrupt {what} at index {index:#x}: {reason}")]
    Corrupt { what: &'static str, index: u64, reason: String },
}

fn corrupt(what: &'static str, index: u64, reason: impl ToString) -> StoreError {
    StoreError::Corrupt { what, index, reason: reason.to_string() }
}

/// The store. Cheap to clone: every clone is a handle on the same files,
/// so a background thread can write a snapshot while the replica appends.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    wal: wal::Wal,
    meta: sled::Tree,
    /// Snapshots, keyed `generation (8 bytes BE) | kind | key`: kind `n`
    /// a node by path, `s` a session by id, `m` the secret.
    snap: sled::Tree,
}

/// The first raft format's hard state and log (now in the write-ahead log).
const LEGACY_HARD_STATE: &str = "hard_state";
const LEGACY_RAFT_LOG: &str = "raft_log";
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
    /// Opens the store in `dir`; new log segments are zero-filled to
    /// `prealloc` bytes ahead of use (0: they grow as written).
    pub fn open(dir: &Path, prealloc: u64) -> Result<Store, StoreError> {
        // sled's lock comes first: it keeps a second process off the log too.
        let db = open_waiting_for_lock(&dir.join("corral.sled"))?;
        let wal = wal::Wal::open(&dir.join("corral.log"), prealloc)?;
        let meta = db.open_tree("meta")?;
        let snap = db.open_tree("snapshot")?;
        Ok(Store { db, wal, meta, snap })
    }

    /// Writes what a ready asked for; fsyncs if `must_sync`.
    pub fn persist(&self, p: &Persist) -> Result<(), StoreError> {
        self.write(p)?;
        self.flush(p.must_sync || p.snapshot.is_some())
    }

    /// Writes everything buffered by [`Store::write`]; with `sync`, makes it
    /// durable (one fsync for many readies).
    pub fn flush(&self, sync: bool) -> Result<(), StoreError> {
        Ok(self.wal.flush(sync)?)
    }

    /// Buffers what a ready asked for; [`Store::flush`] writes it. A
    /// snapshot from the leader is written (and made durable) at once.
    pub fn write(&self, p: &Persist) -> Result<(), StoreError> {
        if let Some(s) = &p.snapshot {
            // A snapshot from the leader replaces the log it covers.
            self.write_snapshot(s)?;
            self.wal.reset(s.index, s.term);
        }
        if let Some(first) = p.entries.first() {
            let mut expected = first.index;
            for e in &p.entries {
                assert_eq!(e.index, expected, "persist: entries not contiguous");
                expected += 1;
            }
            self.wal.append_entries(&p.entries);
        }
        if let Some(hs) = &p.hard_state {
            self.wal.set_hard_state(hs);
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
        self.migrate_sled_log()?;
        let conf_state = match self.meta.get(CONF_STATE)? {
            Some(v) => Some(ConfState::parse_from_bytes(&v).map_err(|e| corrupt("conf state", 0, e))?),
            None => None,
        };
        let snapshot = self.load_snapshot()?;
        let replayed = self.wal.replay()?;
        let (after, after_term) = snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
        let mut entries: Vec<Entry> = replayed.entries.into_iter().filter(|e| e.index > after).collect();
        if let Some(first) = entries.first() {
            if first.index != after + 1 {
                return Err(corrupt("log", first.index, format!("starts after the snapshot at {after:#x}")));
            }
        }
        // Terms never decrease along a raft log. A lower one after the
        // snapshot is a stale tail written before the snapshot arrived (a
        // crash between the two): it differs from the committed log, so it
        // was never committed and can go.
        let mut term = after_term;
        if let Some(bad) = entries.iter().position(|e| std::mem::replace(&mut term, e.term) > e.term) {
            tracing::warn!(index = format!("{:#x}", entries[bad].index), "dropping a stale log tail older than the snapshot before it");
            entries.truncate(bad);
        }
        Ok(Recovered { hard_state: replayed.hard_state.unwrap_or_default(), conf_state, snapshot, entries })
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
        // Cleanup: the old generations and the log segments the snapshot covers.
        for k in self.snap.range(..next.to_be_bytes().to_vec()).keys() {
            self.snap.remove(k?)?;
        }
        self.db.flush()?;
        self.wal.compact(s.index)?;
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
        self.wal.set_hard_state(&hs);
        self.wal.flush(true)?;
        self.meta.insert(CONF_STATE, conf_state.write_to_bytes().map_err(|e| corrupt("conf state", 0, e))?)?;
        self.db.flush()?;
        self.db.drop_tree("log")?;
        self.db.flush()?;
        Ok(())
    }

    /// Converts the first raft format, which kept the log in a sled tree
    /// and the hard state in `meta`: both are appended to the write-ahead
    /// log and made durable, then dropped. A crash midway converts again
    /// (appending the same entries again replaces them, by raft's rule).
    fn migrate_sled_log(&self) -> Result<(), StoreError> {
        // Opening a tree creates it: look before opening.
        let has_log = self.db.tree_names().iter().any(|n| n.as_ref() == LEGACY_RAFT_LOG.as_bytes());
        let hard_state = self.meta.get(LEGACY_HARD_STATE)?;
        if !has_log && hard_state.is_none() {
            return Ok(());
        }
        let log = self.db.open_tree(LEGACY_RAFT_LOG)?;
        tracing::info!(entries = log.len(), "moving the raft log from sled into the write-ahead log");
        let mut batch = Vec::new();
        for kv in log.iter() {
            let (k, v) = kv?;
            let index = be(&k, 0).ok_or_else(|| corrupt("entry key", 0, "length"))?;
            batch.push(Entry::parse_from_bytes(&v).map_err(|err| corrupt("entry", index, err))?);
            if batch.len() == 10_000 {
                self.wal.append_entries(&batch);
                self.wal.flush(false)?;
                batch.clear();
            }
        }
        self.wal.append_entries(&batch);
        if let Some(v) = hard_state {
            self.wal.set_hard_state(&HardState::parse_from_bytes(&v).map_err(|e| corrupt("hard state", 0, e))?);
        }
        self.wal.flush(true)?;
        self.meta.remove(LEGACY_HARD_STATE)?;
        self.db.flush()?;
        self.db.drop_tree(LEGACY_RAFT_LOG)?;
        self.db.flush()?;
        Ok(())
    }

    /// Loses everything not yet synced and refuses later writes: an
    /// embedded server's `kill` (see [`wal::Wal::crash`]).
    pub fn crash(&self) {
        self.wal.crash();
    }

    /// Bytes of the snapshots (sled) and the log.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + self.wal.size_on_disk()
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
            let s = Store::open(&dir, 0).unwrap();
            let hs = HardState { term: 2, vote: 1, commit: 2, ..Default::default() };
            s.persist(&Persist { number: 1, entries: vec![entry(1, 1), entry(2, 1), entry(3, 1)], hard_state: Some(hs), snapshot: None, must_sync: true }).unwrap();
            // A new leader's entries replace the tail.
            s.persist(&Persist { number: 2, entries: vec![entry(3, 2)], hard_state: None, snapshot: None, must_sync: true }).unwrap();
        }
        let s = Store::open(&dir, 0).unwrap();
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
        let s = Store::open(&dir, 0).unwrap();
        let r = s.recover(&cfg, 1).unwrap();
        assert_eq!(r.snapshot, Some(snap), "the newest complete generation");
        assert_eq!(r.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![3], "the log up to the snapshot is gone");
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_log_kept_in_sled_moves_into_the_write_ahead_log() {
        let dir = temp_dir("sled-log");
        {
            // The first raft format: entries in the `raft_log` tree, the hard state in `meta`.
            let db = sled::Config::new().path(dir.join("corral.sled")).open().unwrap();
            let log = db.open_tree(LEGACY_RAFT_LOG).unwrap();
            for e in [entry(1, 1), entry(2, 1), entry(3, 2)] {
                log.insert(e.index.to_be_bytes(), e.write_to_bytes().unwrap()).unwrap();
            }
            let hs = HardState { term: 2, vote: 3, commit: 2, ..Default::default() };
            db.open_tree("meta").unwrap().insert(LEGACY_HARD_STATE, hs.write_to_bytes().unwrap()).unwrap();
            db.flush().unwrap();
        }
        for _ in 0..2 {
            let s = Store::open(&dir, 0).unwrap();
            let r = s.recover(&CoreConfig::default(), 1).unwrap();
            assert_eq!(r.entries.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(), vec![(1, 1), (2, 1), (3, 2)]);
            assert_eq!((r.hard_state.term, r.hard_state.vote, r.hard_state.commit), (2, 3, 2));
            assert!(!s.db.tree_names().iter().any(|n| n.as_ref() == LEGACY_RAFT_LOG.as_bytes()), "the sled log is gone");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_tail_behind_a_snapshot_is_dropped() {
        // A crash after the leader's snapshot (index 2, term 3) reached sled
        // and before the log's reset: entries of term 1 follow it.
        let dir = temp_dir("stale-tail");
        {
            let s = Store::open(&dir, 0).unwrap();
            s.persist(&Persist { number: 1, entries: vec![entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)], hard_state: None, snapshot: None, must_sync: true }).unwrap();
            let core = Snapshot { zxid: 2, nodes: vec![NodeRecord { path: "/".into(), ..Default::default() }], sessions: vec![], secret: 7 };
            s.write_snapshot(&LogSnapshot { index: 2, term: 3, conf_state: ConfState { voters: vec![1], ..Default::default() }, core }).unwrap();
        }
        let r = Store::open(&dir, 0).unwrap().recover(&CoreConfig::default(), 1).unwrap();
        assert_eq!(r.snapshot.map(|s| s.index), Some(2));
        assert!(r.entries.is_empty(), "entries of a lower term than the snapshot's are stale: {:?}", r.entries);
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
        let s = Store::open(&dir, 0).unwrap();
        let r = s.recover(&CoreConfig::default(), 3).unwrap();
        let snap = r.snapshot.expect("converted into a snapshot");
        assert_eq!((snap.index, snap.term, snap.conf_state.voters.clone()), (2, 1, vec![3]));
        assert!(snap.core.nodes.iter().any(|n| n.path == "/kept" && n.data.as_deref() == Some(&b"v"[..])));
        assert_eq!(snap.core.sessions.len(), 1);
        assert_eq!(snap.core.secret, 42, "session passwords stay valid across the conversion");
        assert_eq!(r.hard_state.commit, 2);
        drop(s);
        // Converting twice is harmless: the old log is gone.
        let s = Store::open(&dir, 0).unwrap();
        assert_eq!(s.recover(&CoreConfig::default(), 3).unwrap().snapshot.unwrap().index, 2);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
