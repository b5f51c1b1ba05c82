//! The raft log and hard state as an append-only write-ahead log in segment
//! files: one `write` and one `fdatasync` per group of readies.
//!
//! The log is the hot path of every write, and an ordered key-value store
//! does too much for it: sled spent three times the CPU of the whole
//! request path on each entry (its page cache, its IO threads, and a
//! delete per entry when a snapshot let the log go). Every Raft store of
//! note keeps its log this way instead (etcd's WAL, ClickHouse Keeper's
//! changelog, TiKV's raft-engine); sled keeps what is keyed and rarely
//! written: snapshots and the conf state.
//!
//! A segment is `<seq:016x>.wal`: an 8-byte magic, then records
//! `len: u32 LE | crc32(kind | payload): u32 LE | kind: u8 | payload`,
//! then possibly zeros (a preallocated segment). Replay applies records in
//! order with raft's own rules, so appending is all there is to any change
//! of the log:
//! - an *entry* at an index at or below the last one replaces the tail
//!   from that index (a new leader overwriting an uncommitted suffix);
//! - a *hard state* replaces the previous one;
//! - a *reset* (a snapshot installed from the leader) drops every entry.
//!
//! Every new segment starts with the hard state of the records before it,
//! so whole old segments can be deleted once a snapshot covers their
//! entries. A record header of zeros ends a segment (the rest is
//! preallocation). A crash leaves at most a torn record at the end of the
//! last segment: replay stops there and it is zeroed (or cut off). Anything
//! wrong elsewhere is corruption and an error, never a guess.
//!
//! Preallocation (ZooKeeper's `preAllocSize`): an fdatasync after writing
//! into blocks that already exist, zero-filled, only flushes data; one
//! after growing the file also commits the new size and blocks through the
//! filesystem's journal, which took 170-200 µs instead of 110 µs here. So
//! with `prealloc > 0` the next segment is zero-filled to that size by a
//! background thread while the current one fills, and the first segment of
//! a fresh start (not preallocated: starting must stay fast) is left as
//! soon as that is ready.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};

const MAGIC: &[u8; 8] = b"CRLWAL01";
const RECORD_HEADER_BYTES: usize = 9;
/// A record's length beyond this is a torn or corrupt header, not a record
/// (an entry is one txn, bounded by `jute.maxbuffer` many times over).
const RECORD_BYTES_MAX: usize = 512 << 20;
/// A segment that is not preallocated is closed once it would pass this size.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;
/// A segment that is not preallocated is left for a preallocated one once
/// it holds this much and the preallocated one is ready.
const EARLY_ROLL_BYTES: u64 = 1 << 20;
/// Zeros are written in chunks of this size.
const ZERO_CHUNK: usize = 1 << 20;

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_RESET: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("log {path}: corrupt at byte {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("the log was crashed on purpose (an embedded server's kill)")]
    Crashed,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_path_buf(), source }
}

/// What replaying the log gives back.
#[derive(Debug, Default, PartialEq)]
pub struct Replayed {
    pub hard_state: Option<HardState>,
    /// Contiguous, by raft's rules (see the module comment).
    pub entries: Vec<Entry>,
    /// The (index, term) of the last reset, if the log holds one.
    pub reset: Option<(u64, u64)>,
}

impl Replayed {
    fn entry(&mut self, e: Entry) -> Result<(), String> {
        if let Some(last) = self.entries.last() {
            let first = self.entries[0].index;
            if e.index > last.index + 1 {
                return Err(format!("entry {:#x} after {:#x}: a gap", e.index, last.index));
            }
            // Raft's overwrite: everything from this index on goes.
            let keep = e.index.saturating_sub(first) as usize;
            self.entries.truncate(keep);
        }
        self.entries.push(e);
        Ok(())
    }
}

struct Segment {
    seq: u64,
    /// The highest entry index written to it (0: none).
    max_index: u64,
}

/// A segment file zero-filled ahead of use by a background thread.
struct Spare {
    seq: u64,
    thread: std::thread::JoinHandle<std::io::Result<File>>,
}

struct Inner {
    dir: PathBuf,
    /// Bytes each new segment is zero-filled to (0: none).
    prealloc: u64,
    /// Closed segments, oldest first.
    closed: Vec<Segment>,
    active: Segment,
    file: File,
    /// Where the next record goes in the active segment.
    bytes: u64,
    /// The magic and the hard state the active segment starts with.
    head: u64,
    /// The active segment's preallocated size (0: it grows as written).
    capacity: u64,
    /// `bytes` as of the last fdatasync: what a crash keeps.
    synced: u64,
    /// Set by [`Wal::crash`]: nothing more is written.
    crashed: bool,
    /// Records encoded and not yet written.
    buf: Vec<u8>,
    /// The highest entry index in `buf`.
    buf_max_index: u64,
    /// The last hard state appended (buffered or written).
    hard_state: Option<HardState>,
    /// The last hard state written: the head of the next segment (one that
    /// is only buffered may refer to entries not written yet).
    written_hard_state: Option<HardState>,
    spare: Option<Spare>,
}

/// The log. Cheap to clone: the persister appends while the snapshot
/// thread deletes segments a snapshot has made unnecessary.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Mutex<Inner>>,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.wal"))
}

fn spare_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.wal.prep"))
}

/// The segments in `dir`, by sequence number; leftover spares are removed.
fn list(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".wal.prep") {
            // Never renamed into place: an unused preallocation.
            let _ = std::fs::remove_file(entry.path());
        } else if let Some(hex) = name.strip_suffix(".wal") {
            if let Ok(seq) = u64::from_str_radix(hex, 16) {
                seqs.push(seq);
            }
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Writes zeros over `[from, to)` of `file`.
fn zero(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let chunk = vec![0u8; ZERO_CHUNK.min(to.saturating_sub(from) as usize)];
    let mut at = from;
    while at < to {
        let n = chunk.len().min((to - at) as usize);
        file.write_all_at(&chunk[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// How a segment's records ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// At the end of the file or at a header of zeros (preallocated space).
    Clean,
    /// At bytes that are not a whole, intact record.
    Torn,
}

/// One segment's records: calls `f` with each, and returns the length of
/// the valid prefix and how it ended.
fn scan(path: &Path, bytes: &[u8], mut f: impl FnMut(u8, &[u8], u64) -> Result<(), String>) -> Result<(u64, End), WalError> {
    let corrupt = |offset: usize, reason: String| WalError::Corrupt { path: path.to_path_buf(), offset: offset as u64, reason };
    if bytes.len() < MAGIC.len() {
        return Ok((0, End::Torn));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(0, "not a Corral log segment".into()));
    }
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + RECORD_HEADER_BYTES) else {
            let rest = &bytes[at..];
            return Ok((at as u64, if rest.iter().all(|b| *b == 0) { End::Clean } else { End::Torn }));
        };
        if header[..8].iter().all(|b| *b == 0) {
            return Ok((at as u64, End::Clean));
        }
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if len == 0 || len > RECORD_BYTES_MAX {
            return Ok((at as u64, End::Torn));
        }
        let Some(body) = bytes.get(at + 8..at + 8 + len) else { return Ok((at as u64, End::Torn)) };
        if crc32fast::hash(body) != crc {
            return Ok((at as u64, End::Torn));
        }
        f(body[0], &body[1..], at as u64).map_err(|reason| corrupt(at, reason))?;
        at += 8 + len;
    }
    Ok((at as u64, End::Clean))
}

fn replay_into(r: &mut Replayed, kind: u8, payload: &[u8]) -> Result<u64, String> {
    match kind {
        KIND_ENTRY => {
            let e = Entry::parse_from_bytes(payload).map_err(|e| format!("entry: {e}"))?;
            let index = e.index;
            r.entry(e)?;
            Ok(index)
        }
        KIND_HARD_STATE => {
            r.hard_state = Some(HardState::parse_from_bytes(payload).map_err(|e| format!("hard state: {e}"))?);
            Ok(0)
        }
        KIND_RESET => {
            let (Some(index), Some(term)) = (payload.get(0..8), payload.get(8..16)) else { return Err("reset: short".into()) };
            r.entries.clear();
            r.reset = Some((u64::from_le_bytes(index.try_into().expect("8")), u64::from_le_bytes(term.try_into().expect("8"))));
            Ok(0)
        }
        k => Err(format!("unknown record kind {k}")),
    }
}

/// Zero-fills a spare segment file in the background.
fn prepare_spare(dir: &Path, seq: u64, size: u64) -> Spare {
    let path = spare_path(dir, seq);
    let thread = std::thread::Builder::new().name("wal-prealloc".into()).spawn(move || {
        let file = OpenOptions::new().create(true).read(true).write(true).truncate(true).open(&path)?;
        zero(&file, 0, size)?;
        file.sync_all()?;
        Ok(file)
    });
    let thread = thread.unwrap_or_else(|e| std::thread::spawn(move || Err(e)));
    Spare { seq, thread }
}

impl Wal {
    /// Opens the log in `dir` (created if missing), zeroing a torn record
    /// at the end of the last segment. New segments are zero-filled to
    /// `prealloc` bytes ahead of use (0: they grow as written).
    pub fn open(dir: &Path, prealloc: u64) -> Result<Wal, WalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let seqs = list(dir)?;
        let mut closed = Vec::new();
        let mut hard_state = None;
        let mut tail: Option<(Segment, u64, u64, u64)> = None;
        let mut replayed = Replayed::default();
        for (i, &seq) in seqs.iter().enumerate() {
            let path = segment_path(dir, seq);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let mut max_index = 0;
            let mut head = MAGIC.len() as u64;
            let mut first = true;
            let (valid, end) = scan(&path, &bytes, |kind, payload, at| {
                max_index = max_index.max(replay_into(&mut replayed, kind, payload)?);
                if first && kind == KIND_HARD_STATE {
                    head = at + 8 + 1 + payload.len() as u64;
                }
                first = false;
                Ok(())
            })?;
            let last = i + 1 == seqs.len();
            if end == End::Torn && !last {
                return Err(WalError::Corrupt { path, offset: valid, reason: "a damaged record before the last segment".into() });
            }
            hard_state = replayed.hard_state.clone();
            if last {
                if end == End::Torn && valid > 0 {
                    tracing::warn!(path = %path.display(), at = valid, "zeroing a torn record at the end of the log (a crash mid-write)");
                }
                tail = Some((Segment { seq, max_index }, valid, bytes.len() as u64, head.min(valid)));
            } else {
                closed.push(Segment { seq, max_index });
            }
        }
        let (active, file, bytes, capacity, head) = match tail {
            Some((segment, valid, len, head)) if valid >= MAGIC.len() as u64 => {
                let path = segment_path(dir, segment.seq);
                let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io(&path))?;
                // Whatever follows the last whole record goes: zeros keep a
                // preallocated segment's size, a growing one is cut.
                let preallocated = prealloc > 0 && len == prealloc;
                if len > valid {
                    if preallocated {
                        zero(&file, valid, len).map_err(io(&path))?;
                    } else {
                        file.set_len(valid).map_err(io(&path))?;
                    }
                    file.sync_data().map_err(io(&path))?;
                }
                let capacity = if preallocated { len } else { 0 };
                (segment, file, valid, capacity, head)
            }
            // No segment yet, or the last one lost even its magic.
            other => {
                let seq = other.map_or(0, |(s, ..)| s.seq);
                let (file, head) = Self::start_segment(dir, seq, None, hard_state.as_ref())?;
                (Segment { seq, max_index: 0 }, file, head, 0, head)
            }
        };
        let spare = (prealloc > 0).then(|| prepare_spare(dir, active.seq + 1, prealloc));
        let inner = Inner {
            dir: dir.to_path_buf(),
            prealloc,
            closed,
            active,
            file,
            bytes,
            head,
            capacity,
            synced: bytes,
            crashed: false,
            buf: Vec::new(),
            buf_max_index: 0,
            written_hard_state: hard_state.clone(),
            hard_state,
            spare,
        };
        Ok(Wal { inner: Arc::new(Mutex::new(inner)) })
    }

    /// Makes segment `seq` from `spare` (a zero-filled file) or a new file,
    /// with the magic and `hard_state` at its start, durable. Returns the
    /// file and where its first record goes.
    fn start_segment(dir: &Path, seq: u64, spare: Option<File>, hard_state: Option<&HardState>) -> Result<(File, u64), WalError> {
        let path = segment_path(dir, seq);
        let file = match spare {
            Some(f) => {
                std::fs::rename(spare_path(dir, seq), &path).map_err(io(&path))?;
                f
            }
            None => OpenOptions::new().create(true).read(true).write(true).truncate(true).open(&path).map_err(io(&path))?,
        };
        let mut head = MAGIC.to_vec();
        if let Some(hs) = hard_state {
            encode(&mut head, KIND_HARD_STATE, |v| hs.write_to_vec(v).expect("a hard state encodes"));
        }
        file.write_all_at(&head, 0).map_err(io(&path))?;
        file.sync_data().map_err(io(&path))?;
        sync_dir(dir)?;
        Ok((file, head.len() as u64))
    }

    /// Everything the log holds, read again from its files.
    pub fn replay(&self) -> Result<Replayed, WalError> {
        let inner = self.inner.lock().expect("wal lock");
        let mut r = Replayed::default();
        let seqs: Vec<u64> = inner.closed.iter().map(|s| s.seq).chain([inner.active.seq]).collect();
        for seq in seqs {
            let path = segment_path(&inner.dir, seq);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let (valid, end) = scan(&path, &bytes, |kind, payload, _| replay_into(&mut r, kind, payload).map(drop))?;
            if end == End::Torn && seq != inner.active.seq {
                return Err(WalError::Corrupt { path, offset: valid, reason: "a damaged record before the last segment".into() });
            }
        }
        Ok(r)
    }

    pub fn append_entries(&self, entries: &[Entry]) {
        let mut inner = self.inner.lock().expect("wal lock");
        for e in entries {
            encode(&mut inner.buf, KIND_ENTRY, |v| e.write_to_vec(v).expect("an entry encodes"));
            inner.buf_max_index = inner.buf_max_index.max(e.index);
        }
    }

    pub fn set_hard_state(&self, hs: &HardState) {
        let mut inner = self.inner.lock().expect("wal lock");
        encode(&mut inner.buf, KIND_HARD_STATE, |v| hs.write_to_vec(v).expect("a hard state encodes"));
        inner.hard_state = Some(hs.clone());
    }

    /// Drops every entry: a snapshot at (`index`, `term`) replaced the log.
    pub fn reset(&self, index: u64, term: u64) {
        let mut inner = self.inner.lock().expect("wal lock");
        encode(&mut inner.buf, KIND_RESET, |v| {
            v.extend_from_slice(&index.to_le_bytes());
            v.extend_from_slice(&term.to_le_bytes());
        });
    }

    /// Writes what was appended; with `sync`, makes it durable. Moves to a
    /// new segment first when this one is full (or, not preallocated, when a
    /// preallocated one is ready).
    pub fn flush(&self, sync: bool) -> Result<(), WalError> {
        let mut guard = self.inner.lock().expect("wal lock");
        let inner = &mut *guard;
        if inner.crashed {
            return Err(WalError::Crashed);
        }
        if !inner.buf.is_empty() && inner.should_roll() {
            inner.roll()?;
        }
        let path = segment_path(&inner.dir, inner.active.seq);
        if !inner.buf.is_empty() {
            inner.file.write_all_at(&inner.buf, inner.bytes).map_err(io(&path))?;
            inner.bytes += inner.buf.len() as u64;
            inner.active.max_index = inner.active.max_index.max(inner.buf_max_index);
            inner.buf_max_index = 0;
            inner.written_hard_state = inner.hard_state.clone();
            // Keep the buffer's capacity for the next batch, unless one huge batch inflated it.
            if inner.buf.capacity() > 8 << 20 {
                inner.buf = Vec::new();
            } else {
                inner.buf.clear();
            }
        }
        if sync && inner.synced < inner.bytes {
            inner.file.sync_data().map_err(io(&path))?;
            inner.synced = inner.bytes;
        }
        Ok(())
    }

    /// What a power cut would do, for an embedded server's `kill`: drops
    /// everything written since the last fdatasync and refuses every later
    /// write. Closed segments were synced before they were closed.
    pub fn crash(&self) {
        let mut inner = self.inner.lock().expect("wal lock");
        inner.crashed = true;
        inner.buf.clear();
        let (synced, bytes) = (inner.synced, inner.bytes);
        if let Err(e) = zero(&inner.file, synced, bytes) {
            tracing::warn!("crash: cannot drop the log after byte {synced}: {e}");
        }
    }

    /// Deletes the oldest closed segments whose entries are all at or below
    /// `index` (covered by a durable snapshot).
    pub fn compact(&self, index: u64) -> Result<usize, WalError> {
        let (dir, gone) = {
            let mut inner = self.inner.lock().expect("wal lock");
            if inner.crashed {
                return Ok(0);
            }
            let n = inner.closed.iter().take_while(|s| s.max_index <= index).count();
            let gone: Vec<u64> = inner.closed.drain(..n).map(|s| s.seq).collect();
            (inner.dir.clone(), gone)
        };
        for &seq in &gone {
            let path = segment_path(&dir, seq);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        if !gone.is_empty() {
            sync_dir(&dir)?;
        }
        Ok(gone.len())
    }

    /// Bytes in all segments, preallocated space included.
    pub fn size_on_disk(&self) -> u64 {
        let inner = self.inner.lock().expect("wal lock");
        let seqs = inner.closed.iter().map(|s| s.seq).chain([inner.active.seq]);
        seqs.filter_map(|seq| std::fs::metadata(segment_path(&inner.dir, seq)).ok()).map(|m| m.len()).sum()
    }

    pub fn segments(&self) -> usize {
        self.inner.lock().expect("wal lock").closed.len() + 1
    }
}

impl Inner {
    fn should_roll(&self) -> bool {
        let has_records = self.bytes > self.head;
        let need = self.bytes + self.buf.len() as u64;
        if !has_records {
            return false; // a batch larger than any segment goes in whole
        }
        if self.capacity > 0 {
            return need > self.capacity;
        }
        let spare_ready = self.spare.as_ref().is_some_and(|s| s.thread.is_finished());
        need > SEGMENT_BYTES_MAX || (self.bytes >= EARLY_ROLL_BYTES && spare_ready)
    }

    /// Closes the active segment (made durable first: a later segment's
    /// records must never survive an earlier one's) and starts the next.
    fn roll(&mut self) -> Result<(), WalError> {
        let path = segment_path(&self.dir, self.active.seq);
        if self.synced < self.bytes {
            self.file.sync_data().map_err(io(&path))?;
            self.synced = self.bytes;
        }
        let seq = self.active.seq + 1;
        let spare = match self.spare.take() {
            Some(s) if s.seq == seq => match s.thread.join() {
                Ok(Ok(f)) => Some(f),
                Ok(Err(e)) => {
                    tracing::warn!("cannot preallocate the next log segment ({e}); it grows as written");
                    None
                }
                Err(_) => None,
            },
            _ => None,
        };
        let capacity = if spare.is_some() { self.prealloc } else { 0 };
        let (file, head) = Wal::start_segment(&self.dir, seq, spare, self.written_hard_state.as_ref())?;
        let old = std::mem::replace(&mut self.active, Segment { seq, max_index: 0 });
        self.closed.push(old);
        self.file = file;
        self.bytes = head;
        self.head = head;
        self.synced = head;
        self.capacity = capacity;
        if self.prealloc > 0 {
            self.spare = Some(prepare_spare(&self.dir, seq + 1, self.prealloc));
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A spare still being zero-filled is waited for: no thread outlives
        // the log, and the next open removes the unused file.
        if let Some(s) = self.spare.take() {
            let _ = s.thread.join();
        }
    }
}

/// Appends one record of `kind` whose payload `body` writes.
fn encode(buf: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 8]);
    buf.push(kind);
    body(buf);
    let len = (buf.len() - start - 8) as u32;
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads a whole file (for tests that damage segments).
#[cfg(test)]
fn read(path: &Path) -> Vec<u8> {
    use std::io::Read as _;
    let mut v = Vec::new();
    File::open(path).unwrap().read_to_end(&mut v).unwrap();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("corral-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; (index % 7) as usize].into(),
            ..Default::default()
        }
    }

    fn indexes(r: &Replayed) -> Vec<(u64, u64)> {
        r.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn entries_hard_state_and_overwrites_survive_reopen() {
        let dir = temp_dir("reopen");
        {
            let w = Wal::open(&dir, 0).unwrap();
            w.append_entries(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
            w.set_hard_state(&HardState {
                term: 1,
                vote: 1,
                commit: 1,
                ..Default::default()
            });
            w.flush(true).unwrap();
            // A new leader's entries replace the tail from their first index.
            w.append_entries(&[entry(2, 2)]);
            w.set_hard_state(&HardState {
                term: 2,
                vote: 2,
                commit: 2,
                ..Default::default()
            });
            w.flush(true).unwrap();
        }
        let w = Wal::open(&dir, 0).unwrap();
        let r = w.replay().unwrap();
        assert_eq!(indexes(&r), vec![(1, 1), (2, 2)]);
        assert_eq!(r.hard_state.map(|h| (h.term, h.commit)), Some((2, 2)));
        w.reset(10, 3);
        w.append_entries(&[entry(11, 3)]);
        w.flush(true).unwrap();
        let r = Wal::open(&dir, 0).unwrap().replay().unwrap();
        assert_eq!((indexes(&r), r.reset), (vec![(11, 3)], Some((10, 3))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_and_appending_goes_on_after_it() {
        let dir = temp_dir("torn");
        {
            let w = Wal::open(&dir, 0).unwrap();
            w.append_entries(&[entry(1, 1), entry(2, 1)]);
            w.flush(true).unwrap();
        }
        let path = segment_path(&dir, 0);
        let whole = read(&path).len();
        // Half a record at the end, as a crash mid-write leaves it.
        let mut half = Vec::new();
        encode(&mut half, KIND_ENTRY, |v| {
            entry(3, 1).write_to_vec(v).unwrap()
        });
        half.truncate(half.len() / 2);
        {
            use std::io::Write as _;
            OpenOptions::new().append(true).open(&path).unwrap().write_all(&half).unwrap();
        }
        let w = Wal::open(&dir, 0).unwrap();
        assert_eq!(
            read(&path).len(),
            whole,
            "cut back to the last whole record"
        );
        w.append_entries(&[entry(3, 2)]);
        w.flush(true).unwrap();
        assert_eq!(
            indexes(&Wal::open(&dir, 0).unwrap().replay().unwrap()),
            vec![(1, 1), (2, 1), (3, 2)]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_crash_keeps_what_was_synced_and_nothing_after() {
        let dir = temp_dir("crash");
        let w = Wal::open(&dir, 0).unwrap();
        w.append_entries(&[entry(1, 1)]);
        w.flush(true).unwrap();
        w.append_entries(&[entry(2, 1)]);
        w.flush(false).unwrap(); // written, not synced
        w.append_entries(&[entry(3, 1)]); // only buffered
        w.crash();
        w.append_entries(&[entry(4, 1)]);
        assert!(matches!(w.flush(true), Err(WalError::Crashed)));
        drop(w);
        assert_eq!(indexes(&Wal::open(&dir, 0).unwrap().replay().unwrap()), vec![(1, 1)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_before_the_last_segment_is_an_error() {
        let dir = temp_dir("damage");
        {
            let w = Wal::open(&dir, 0).unwrap();
            w.append_entries(&[entry(1, 1), entry(2, 1)]);
            w.flush(true).unwrap();
        }
        // A second segment makes the first one not the last.
        Wal::start_segment(&dir, 1, None, None).unwrap();
        let path = segment_path(&dir, 0);
        let mut bytes = read(&path);
        let n = bytes.len();
        bytes[n - 2] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let err = Wal::open(&dir, 0).err().expect("corruption is refused");
        assert!(err.to_string().contains("damaged record"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_segments_roll_over_and_compaction_keeps_the_hard_state() {
        let dir = temp_dir("segments");
        let w = Wal::open(&dir, 0).unwrap();
        let big = |index: u64| Entry { index, term: 1, data: vec![0u8; 1 << 20].into(), ..Default::default() };
        // 1 MiB entries plus their headers: a segment holds one fewer than 64.
        let per_segment = (SEGMENT_BYTES_MAX >> 20) - 1;
        w.set_hard_state(&HardState { term: 1, vote: 1, commit: 1, ..Default::default() });
        for i in 1..=per_segment * 2 + 3 {
            w.append_entries(&[big(i)]);
            w.flush(true).unwrap();
        }
        assert_eq!(w.segments(), 3);
        let maxes: Vec<u64> = w.inner.lock().unwrap().closed.iter().map(|s| s.max_index).collect();
        assert_eq!(maxes, vec![per_segment, per_segment * 2], "records never straddle segments");
        w.set_hard_state(&HardState { term: 1, vote: 1, commit: 9, ..Default::default() });
        w.flush(true).unwrap();
        assert_eq!(w.compact(per_segment - 1).unwrap(), 0, "the first segment still holds an entry above the snapshot");
        assert_eq!(w.compact(per_segment * 2).unwrap(), 2);
        assert_eq!(w.segments(), 1);
        drop(w);
        let r = Wal::open(&dir, 0).unwrap().replay().unwrap();
        assert_eq!(r.hard_state.map(|h| h.commit), Some(9));
        assert_eq!(r.entries.first().map(|e| e.index), Some(per_segment * 2 + 1));
        assert_eq!(r.entries.last().map(|e| e.index), Some(per_segment * 2 + 3));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn preallocated_segments_take_over_and_survive_torn_tails() {
        let dir = temp_dir("prealloc");
        let prealloc = 4 << 20;
        let w = Wal::open(&dir, prealloc).unwrap();
        let mid = |index: u64| Entry { index, term: 1, data: vec![7u8; 300 << 10].into(), ..Default::default() };
        // The first segment (not preallocated) is left once it holds 1 MiB and the spare is ready.
        let mut i = 0;
        while w.segments() < 3 {
            i += 1;
            w.append_entries(&[mid(i)]);
            w.set_hard_state(&HardState { term: 1, vote: 1, commit: i, ..Default::default() });
            w.flush(true).unwrap();
            if let Some(s) = w.inner.lock().unwrap().spare.as_ref() {
                while !s.thread.is_finished() {
                    std::thread::yield_now();
                }
            }
            assert!(i < 100, "segments never rolled");
        }
        let second = segment_path(&dir, 1);
        assert_eq!(std::fs::metadata(&second).unwrap().len(), prealloc, "the second segment was preallocated");
        assert!(i <= 4 + 14, "the first segment was left early ({i} entries)");
        // Half a record lands in the preallocated active segment, then a crash.
        let (active, at) = { let g = w.inner.lock().unwrap(); (segment_path(&dir, g.active.seq), g.bytes) };
        drop(w);
        let mut rec = Vec::new();
        encode(&mut rec, KIND_ENTRY, |v| mid(i + 1).write_to_vec(v).unwrap());
        OpenOptions::new().write(true).open(&active).unwrap().write_all_at(&rec[..rec.len() / 2], at).unwrap();
        let w = Wal::open(&dir, prealloc).unwrap();
        assert_eq!(std::fs::metadata(&active).unwrap().len(), prealloc, "zeroed, not cut: still preallocated");
        let r = w.replay().unwrap();
        assert_eq!(r.entries.last().map(|e| e.index), Some(i));
        assert_eq!(r.hard_state.map(|h| h.commit), Some(i));
        w.append_entries(&[mid(i + 1)]);
        w.flush(true).unwrap();
        drop(w);
        let r = Wal::open(&dir, prealloc).unwrap().replay().unwrap();
        assert_eq!(r.entries.iter().map(|e| e.index).collect::<Vec<_>>(), (1..=i + 1).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Append `n` entries starting `back` below the next index, at `term`.
        Append {
            back: u64,
            n: u64,
            term: u64,
        },
        Hard(u64),
        Reset(u64),
        Flush {
            sync: bool,
        },
        /// Crash, losing up to `cut` bytes of what was written since the last fsync.
        Crash {
            cut: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..3, 1u64..4, 1u64..5).prop_map(|(back, n, term)| Op::Append { back, n, term }),
            1 => (0u64..100).prop_map(Op::Hard),
            1 => (0u64..50).prop_map(Op::Reset),
            3 => any::<bool>().prop_map(|sync| Op::Flush { sync }),
            1 => (0u64..300).prop_map(|cut| Op::Crash { cut }),
        ]
    }

    /// Where the next record will end up in the active segment.
    fn offset(w: &Wal) -> u64 {
        let i = w.inner.lock().unwrap();
        i.bytes + i.buf.len() as u64
    }

    fn copy(r: &Replayed) -> Replayed {
        Replayed {
            hard_state: r.hard_state.clone(),
            entries: r.entries.clone(),
            reset: r.reset,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A crash that tears off any part of what was written after the
        /// last fsync leaves exactly the state of some record boundary at or
        /// after that fsync, and replay follows raft's rules as the model does.
        #[test]
        fn replay_matches_the_model_across_torn_crashes(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = temp_dir(&format!("prop-{:?}", std::thread::current().id()).replace(['(', ')'], ""));
            let mut w = Wal::open(&dir, 0).unwrap();
            let mut model = Replayed::default();
            // The model's state after each record: (end offset in the segment, state).
            let mut history = vec![(offset(&w), copy(&model))];
            let mut synced = offset(&w);
            let mut next = 1u64;
            for op in ops {
                match op {
                    Op::Append { back, n, term } => {
                        let first = next.saturating_sub(back).max(model.entries.first().map_or(1, |e| e.index));
                        for e in (first..first + n).map(|i| entry(i, term)) {
                            model.entry(e.clone()).unwrap();
                            w.append_entries(&[e]);
                            history.push((offset(&w), copy(&model)));
                        }
                        next = first + n;
                    }
                    Op::Hard(c) => {
                        let hs = HardState { term: 1, vote: 1, commit: c, ..Default::default() };
                        model.hard_state = Some(hs.clone());
                        w.set_hard_state(&hs);
                        history.push((offset(&w), copy(&model)));
                    }
                    Op::Reset(i) => {
                        model.entries.clear();
                        model.reset = Some((i, 1));
                        w.reset(i, 1);
                        history.push((offset(&w), copy(&model)));
                        next = i + 1;
                    }
                    Op::Flush { sync } => {
                        w.flush(sync).unwrap();
                        if sync { synced = offset(&w); }
                    }
                    Op::Crash { cut } => {
                        w.flush(false).unwrap();
                        let len = offset(&w);
                        drop(w);
                        let kept = len.saturating_sub(cut).max(synced);
                        let path = segment_path(&dir, *list(&dir).unwrap().last().unwrap());
                        OpenOptions::new().write(true).open(&path).unwrap().set_len(kept).unwrap();
                        w = Wal::open(&dir, 0).unwrap();
                        let (end, expected) = history.iter().rev().find(|(end, _)| *end <= kept).expect("the segment's start");
                        let r = w.replay().unwrap();
                        prop_assert_eq!(indexes(&r), indexes(expected));
                        prop_assert_eq!(&r.hard_state, &expected.hard_state);
                        prop_assert_eq!(offset(&w), *end, "cut back to the last whole record");
                        model = r;
                        let end = *end;
                        history.retain(|(e, _)| *e <= end);
                        synced = end;
                        next = model.entries.last().map_or(model.reset.map_or(1, |(i, _)| i + 1), |e| e.index + 1);
                    }
                }
            }
            w.flush(true).unwrap();
            drop(w);
            let r = Wal::open(&dir, 0).unwrap().replay().unwrap();
            prop_assert_eq!(indexes(&r), indexes(&model));
            prop_assert_eq!(r.hard_state, model.hard_state);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
