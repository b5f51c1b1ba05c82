//! One file's writes since its last fsync: what a power cut loses.
//!
//! The backing file holds only what was fsynced (or was there before the
//! mount). Everything written since lives here, as the page cache of a
//! real kernel would hold it: reads see it, a power cut drops it, an
//! fsync applies it to the backing file and syncs that.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Unsynced state of one file: its length now, the ranges written since
/// the last sync, and how far back a truncation hid the backing bytes.
#[derive(Debug)]
pub struct Overlay {
    /// The file's length as its users see it.
    len: u64,
    /// The backing file's length (only an apply changes it).
    backing_len: u64,
    /// Backing bytes at or past this offset were truncated away since the
    /// last sync: they read as zeros even if the file grew again, as a real
    /// file's would.
    hidden_from: u64,
    /// Written ranges by start offset; disjoint and never adjacent (a
    /// write next to a range extends it, so an appending log stays one
    /// range and grows in place).
    ranges: BTreeMap<u64, Vec<u8>>,
}

impl Overlay {
    /// An overlay on a backing file of `backing_len` bytes, nothing unsynced yet.
    pub fn new(backing_len: u64) -> Overlay {
        Overlay { len: backing_len, backing_len, hidden_from: backing_len, ranges: BTreeMap::new() }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Bytes a power cut would lose (written ranges; truncations count nothing).
    pub fn unsynced_bytes(&self) -> u64 {
        self.ranges.values().map(|r| r.len() as u64).sum()
    }

    pub fn write(&mut self, at: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = at + data.len() as u64;
        // The range that starts at or before `at` and reaches it, if any,
        // takes the write; otherwise a new one starts at `at`.
        let start = match self.ranges.range_mut(..=at).next_back() {
            Some((&s, buf)) if s + buf.len() as u64 >= at => {
                let (from, to) = ((at - s) as usize, (end - s) as usize);
                if to <= buf.len() {
                    // Inside one range: nothing else can overlap.
                    buf[from..to].copy_from_slice(data);
                    self.len = self.len.max(end);
                    return;
                }
                buf.truncate(from);
                buf.extend_from_slice(data);
                s
            }
            _ => {
                self.ranges.insert(at, data.to_vec());
                at
            }
        };
        // Later ranges that the write reaches or touches merge into it.
        let later: Vec<u64> = self.ranges.range(at + 1..=end).map(|(s, _)| *s).collect();
        for s in later {
            let next = self.ranges.remove(&s).expect("listed");
            let next_end = s + next.len() as u64;
            if next_end > end {
                let buf = self.ranges.get_mut(&start).expect("the write's range");
                buf.extend_from_slice(&next[(end - s) as usize..]);
            }
        }
        self.len = self.len.max(end);
    }

    /// ftruncate: shorter drops written bytes past `len` and hides the
    /// backing file's; longer reads as zeros.
    pub fn truncate(&mut self, len: u64) {
        if len < self.len {
            let cut: Vec<u64> = self.ranges.range(len..).map(|(s, _)| *s).collect();
            for s in cut {
                self.ranges.remove(&s);
            }
            if let Some((&s, buf)) = self.ranges.range_mut(..len).next_back() {
                if s + buf.len() as u64 > len {
                    buf.truncate((len - s) as usize);
                }
            }
            self.hidden_from = self.hidden_from.min(len);
        }
        self.len = len;
    }

    /// Up to `size` bytes at `at`: the backing file's visible bytes, zeros
    /// past them, written ranges over both.
    pub fn read(&self, backing: &File, at: u64, size: u32) -> std::io::Result<Vec<u8>> {
        let end = self.len.min(at.saturating_add(size as u64));
        if at >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - at) as usize];
        let visible = self.backing_len.min(self.hidden_from).min(end);
        if at < visible {
            read_full(backing, &mut out[..(visible - at) as usize], at)?;
        }
        // The range that starts before `at` may reach into the read.
        let first = self.ranges.range(..=at).next_back().map(|(s, _)| *s).unwrap_or(at);
        for (&s, buf) in self.ranges.range(first..end) {
            let (from, to) = (s.max(at), (s + buf.len() as u64).min(end));
            if from < to {
                out[(from - at) as usize..(to - at) as usize].copy_from_slice(&buf[(from - s) as usize..(to - s) as usize]);
            }
        }
        Ok(out)
    }

    /// Makes the backing file what its users see (not yet synced: the
    /// caller fsyncs it). The overlay is spent after this.
    pub fn apply(&self, backing: &File) -> std::io::Result<()> {
        if self.hidden_from < self.backing_len {
            backing.set_len(self.hidden_from)?;
        }
        for (&s, buf) in &self.ranges {
            backing.write_all_at(buf, s)?;
        }
        if backing.metadata()?.len() != self.len {
            backing.set_len(self.len)?;
        }
        Ok(())
    }
}

/// pread until `buf` is full; a short backing file leaves zeros.
fn read_full(file: &File, mut buf: &mut [u8], mut at: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, at) {
            Ok(0) => break,
            Ok(n) => {
                buf = &mut buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backing(bytes: &[u8]) -> (File, std::path::PathBuf) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!("lazyfs-overlay-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        std::fs::write(&p, bytes).unwrap();
        (std::fs::OpenOptions::new().read(true).write(true).open(&p).unwrap(), p)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, Vec<u8>),
        Truncate(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..200, proptest::collection::vec(any::<u8>(), 0..60)).prop_map(|(a, d)| Op::Write(a, d)),
            1 => (0u64..220).prop_map(Op::Truncate),
        ]
    }

    proptest! {
        // The overlay reads as a plain file given the same writes and
        // truncations would; applied, the backing file is that file; and
        // the ranges stay disjoint and apart.
        #[test]
        fn reads_and_applies_as_a_plain_file(base in proptest::collection::vec(any::<u8>(), 0..150), ops in proptest::collection::vec(op(), 0..25)) {
            let (file, path) = backing(&base);
            let mut model = base.clone();
            let mut o = Overlay::new(base.len() as u64);
            for op in &ops {
                match op {
                    Op::Write(a, d) => {
                        o.write(*a, d);
                        if !d.is_empty() {
                            let end = *a as usize + d.len();
                            if model.len() < end { model.resize(end, 0); }
                            model[*a as usize..end].copy_from_slice(d);
                        }
                    }
                    Op::Truncate(l) => { o.truncate(*l); model.resize(*l as usize, 0); }
                }
                let mut prev_end = None;
                for (s, b) in &o.ranges {
                    prop_assert!(!b.is_empty());
                    prop_assert!(prev_end.is_none_or(|e| e < *s), "ranges touch or overlap");
                    prev_end = Some(s + b.len() as u64);
                }
            }
            prop_assert_eq!(o.len(), model.len() as u64);
            prop_assert_eq!(o.read(&file, 0, 1000).unwrap(), model.clone());
            if model.len() > 10 {
                prop_assert_eq!(o.read(&file, 7, 3).unwrap(), model[7..10].to_vec());
            }
            prop_assert_eq!(std::fs::read(&path).unwrap(), base, "nothing reaches the backing file before apply");
            o.apply(&file).unwrap();
            prop_assert_eq!(std::fs::read(&path).unwrap(), model);
            let _ = std::fs::remove_file(&path);
        }
    }
}
