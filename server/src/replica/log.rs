//! The raft log as raft-rs reads it: entries since the last snapshot, the
//! hard and conf state, and the snapshot itself. In memory only: the
//! replica appends here what a `Ready` hands it, and the shell makes the
//! same writes durable (sled, or the simulator's store) before it reports
//! them persisted. raft-rs's `Storage` is read-only, so raft never writes.

use prost::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::core::snapshot::Snapshot as CoreSnapshot;

/// The core's state at a log index, with the raft metadata that goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSnapshot {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    pub core: CoreSnapshot,
}

impl LogSnapshot {
    /// The snapshot as raft sends it to a follower: the core's records,
    /// encoded with prost, as the data.
    pub fn to_raft(&self) -> Snapshot {
        let mut s = Snapshot::default();
        s.set_data(self.core.encode_to_vec().into());
        let meta: &mut SnapshotMetadata = s.mut_metadata();
        meta.index = self.index;
        meta.term = self.term;
        meta.set_conf_state(self.conf_state.clone());
        s
    }

    /// Decodes a snapshot received from the leader.
    pub fn from_raft(s: &Snapshot) -> Result<LogSnapshot, prost::DecodeError> {
        let meta = s.get_metadata();
        Ok(LogSnapshot {
            index: meta.index,
            term: meta.term,
            conf_state: meta.get_conf_state().clone(),
            core: CoreSnapshot::decode(s.get_data())?,
        })
    }
}

#[derive(Debug, Default)]
pub struct Log {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry the snapshot covers (0, 0 for none).
    snapshot_index: u64,
    snapshot_term: u64,
    snapshot: Option<LogSnapshot>,
    /// `entries[i].index == snapshot_index + 1 + i`.
    entries: Vec<Entry>,
}

impl Log {
    /// A log restored from what the store kept.
    pub fn restore(mut hard_state: HardState, conf_state: ConfState, snapshot: Option<LogSnapshot>, entries: Vec<Entry>) -> Log {
        let (snapshot_index, snapshot_term) = snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
        // A snapshot holds only committed entries, but the hard state that
        // recorded their commit may not have been synced before a crash
        // (commit-only changes need no fsync): raft-rs refuses a commit
        // index behind the snapshot.
        hard_state.commit = hard_state.commit.max(snapshot_index);
        hard_state.term = hard_state.term.max(snapshot_term);
        let log = Log { hard_state, conf_state, snapshot_index, snapshot_term, snapshot, entries: Vec::new() };
        let mut log = log;
        log.append(&entries);
        log
    }

    pub fn first_index(&self) -> u64 {
        self.snapshot_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    /// Appends entries, replacing any from the first one's index on (a new
    /// leader overwriting an uncommitted tail).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(first.index >= self.first_index(), "append at {} overwrites the snapshot at {}", first.index, self.snapshot_index);
        assert!(first.index <= self.last_index() + 1, "append at {} leaves a gap after {}", first.index, self.last_index());
        for w in entries.windows(2) {
            assert_eq!(w[1].index, w[0].index + 1, "append: entries not contiguous");
        }
        self.entries.truncate((first.index - self.first_index()) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// Installs a snapshot: everything up to it is replaced by it.
    pub fn install(&mut self, snap: LogSnapshot) {
        // Entries after the snapshot stay only if they agree with it.
        let keep = self.term_of(snap.index) == Some(snap.term);
        let rest: Vec<Entry> = if keep { self.entries.iter().filter(|e| e.index > snap.index).cloned().collect() } else { Vec::new() };
        self.snapshot_index = snap.index;
        self.snapshot_term = snap.term;
        self.conf_state = snap.conf_state.clone();
        self.hard_state.commit = self.hard_state.commit.max(snap.index);
        self.hard_state.term = self.hard_state.term.max(snap.term);
        self.snapshot = Some(snap);
        self.entries = rest;
    }

    /// Replaces the snapshot with a newer one taken locally at an applied
    /// index, dropping the entries it covers.
    pub fn compact(&mut self, snap: LogSnapshot) {
        assert!(snap.index >= self.snapshot_index, "compact to {} behind the snapshot at {}", snap.index, self.snapshot_index);
        assert!(snap.index <= self.last_index(), "compact to {} past the last entry {}", snap.index, self.last_index());
        assert_eq!(self.term_of(snap.index), Some(snap.term), "compact: term of {} differs", snap.index);
        let drop = (snap.index - self.snapshot_index) as usize;
        self.entries.drain(..drop);
        self.snapshot_index = snap.index;
        self.snapshot_term = snap.term;
        self.snapshot = Some(snap);
    }

    fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if idx < self.snapshot_index || idx > self.last_index() {
            return None;
        }
        Some(self.entries[(idx - self.first_index()) as usize].term)
    }
}

impl raft::Storage for Log {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState { hard_state: self.hard_state.clone(), conf_state: self.conf_state.clone() })
    }

    fn entries(&self, low: u64, high: u64, max_size: impl Into<Option<u64>>, _: GetEntriesContext) -> raft::Result<Vec<Entry>> {
        if low < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(high <= self.last_index() + 1, "entries: high {high} past the last index {}", self.last_index());
        let from = (low - self.first_index()) as usize;
        let to = (high - self.first_index()) as usize;
        let mut ents = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx).ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        match &self.snapshot {
            Some(s) if s.index >= request_index => Ok(s.to_raft()),
            _ => Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, ..Default::default() }
    }

    #[test]
    fn append_overwrites_the_tail_and_compaction_keeps_terms() {
        let mut log = Log::default();
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        log.append(&[entry(3, 2), entry(4, 2)]);
        assert_eq!(log.last_index(), 4);
        assert_eq!(Storage::term(&log, 3).unwrap(), 2);
        let snap = LogSnapshot { index: 2, term: 1, conf_state: ConfState::default(), core: CoreSnapshot::default() };
        log.compact(snap.clone());
        assert_eq!(log.first_index(), 3);
        assert_eq!(Storage::term(&log, 2).unwrap(), 1, "the snapshot's term stays known");
        assert!(Storage::term(&log, 1).is_err());
        assert!(log.entries(2, 4, None, GetEntriesContext::empty(false)).is_err(), "compacted");
        // Restored with a hard state older than the snapshot (its commit
        // advance was not synced): the commit index starts at the snapshot.
        let restored = Log::restore(HardState { term: 1, commit: 1, ..Default::default() }, ConfState::default(), Some(snap.clone()), vec![]);
        assert_eq!(restored.hard_state().commit, 2);
        assert_eq!(log.entries(3, 5, None, GetEntriesContext::empty(false)).unwrap().len(), 2);
        assert_eq!(LogSnapshot::from_raft(&log.snapshot(2, 0).unwrap()).unwrap(), snap);
    }
}
