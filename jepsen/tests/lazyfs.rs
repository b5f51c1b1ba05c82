//! The lose-unsynced nemeses' filesystem (`src/lazyfs`), mounted for real:
//! what was fsynced survives a power cut byte for byte, what was not is
//! gone (length too), and until the cut every read sees it all. Then the
//! nemeses end to end: `--bug lost-ack` (acknowledged before the fsync)
//! loses acknowledged adds in a power cut of the ensemble, and Corral
//! without it loses none. Needs /dev/fuse and root (or fusermount3); says
//! so loudly and passes where it has neither.

mod common;

use common::{events, n, results, test};
use corral_jepsen::lazyfs::{self, Mount};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// A mount point and backing directory of their own, removed at the end.
struct Dirs(PathBuf);

impl Dirs {
    fn new(name: &str) -> Dirs {
        let d = std::env::temp_dir().join(format!("corral-lazyfs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("mnt")).unwrap();
        std::fs::create_dir_all(d.join("backing")).unwrap();
        Dirs(d)
    }
    fn mnt(&self) -> PathBuf {
        self.0.join("mnt")
    }
    fn backing(&self) -> PathBuf {
        self.0.join("backing")
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fuse() -> bool {
    match lazyfs::unavailable() {
        Some(why) => {
            eprintln!("\n*** SKIPPED: {why} ***\n");
            false
        }
        None => true,
    }
}

fn mounted(dirs: &Dirs) -> Option<Mount> {
    fuse().then(|| Mount::new(&dirs.mnt(), &dirs.backing()).expect("mount lazyfs"))
}

/// No lazyfs mount left behind by a run (the harness unmounts its own).
fn no_lazyfs_mounts() {
    let left: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains("corral-lazyfs")).map(str::to_owned).collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
}

fn is_mounted(p: &std::path::Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

#[test]
fn a_power_cut_keeps_what_was_synced_and_drops_the_rest() {
    let dirs = Dirs::new("cut");
    let Some(m) = mounted(&dirs) else { return };
    assert!(is_mounted(&dirs.mnt()));
    let path = dirs.mnt().join("log");
    let synced: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let unsynced = vec![0xabu8; 50_000];

    let mut f = OpenOptions::new().create(true).read(true).write(true).open(&path).unwrap();
    f.write_all(&synced).unwrap();
    f.sync_data().unwrap();
    f.write_all(&unsynced).unwrap();
    // Overwrites inside the synced part are unsynced too.
    f.write_all_at(b"XYZ", 10).unwrap();
    // Before the cut: everything, through this handle and a new one.
    let mut all = synced.clone();
    all.extend_from_slice(&unsynced);
    all[10..13].copy_from_slice(b"XYZ");
    assert_eq!(std::fs::read(&path).unwrap(), all);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 150_000);
    let mut back = vec![0u8; 5];
    f.read_exact_at(&mut back, 149_995).unwrap();
    assert_eq!(back, [0xab; 5]);
    // The backing file has only what was synced.
    assert_eq!(std::fs::read(dirs.backing().join("log")).unwrap(), synced);
    let pending = m.unsynced();
    assert_eq!((pending.files, pending.bytes), (1, 50_003));

    // A second file, never synced at all: it exists (names are
    // metadata, applied at once) but its data is lost.
    std::fs::write(dirs.mnt().join("never"), b"not synced").unwrap();
    // A third, synced, then truncated without a sync: the cut undoes the truncation.
    let mut t = File::create(dirs.mnt().join("trunc")).unwrap();
    t.write_all(b"0123456789").unwrap();
    t.sync_all().unwrap();
    t.set_len(3).unwrap();
    assert_eq!(std::fs::read(dirs.mnt().join("trunc")).unwrap(), b"012");
    drop((f, t));

    let cut = m.power_cut();
    assert_eq!(cut.files, 3, "{cut:?}");
    assert_eq!(cut.bytes, 50_003 + 10, "{cut:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 100_000, "the unsynced tail is gone, length too");
    assert_eq!(std::fs::read(&path).unwrap(), synced, "the synced part survives byte for byte");
    assert_eq!(std::fs::read(dirs.mnt().join("never")).unwrap(), b"");
    assert_eq!(std::fs::read(dirs.mnt().join("trunc")).unwrap(), b"0123456789");
    assert_eq!(m.unsynced().bytes, 0);

    // Renames, deletes and directories pass through; a rename keeps a
    // file's unsynced data with it.
    std::fs::create_dir(dirs.mnt().join("sub")).unwrap();
    std::fs::write(dirs.mnt().join("sub/a"), b"moved").unwrap();
    std::fs::rename(dirs.mnt().join("sub/a"), dirs.mnt().join("b")).unwrap();
    assert_eq!(std::fs::read(dirs.mnt().join("b")).unwrap(), b"moved");
    File::open(dirs.mnt().join("b")).unwrap().sync_all().unwrap();
    assert_eq!(std::fs::read(dirs.backing().join("b")).unwrap(), b"moved");
    std::fs::remove_file(dirs.mnt().join("never")).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dirs.mnt()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["b", "log", "sub", "trunc"]);

    m.unmount().unwrap();
    assert!(!is_mounted(&dirs.mnt()), "unmounted");
    assert_eq!(std::fs::read_dir(dirs.mnt()).unwrap().count(), 0);
}

#[test]
fn lost_ack_bug_loses_acknowledged_adds_in_a_power_cut() {
    if !fuse() {
        return;
    }
    // The bug acknowledges raft appends before the log is written and
    // never fsyncs: kill -9 alone loses nothing (the page cache survives),
    // a power cut of every member loses what they acknowledged. Whether a
    // cut falls in a short run is the schedule's: up to three seeds.
    let mut last = None;
    for seed in ["27", "28", "29"] {
        let (code, out, dir) = test("set", &["--nemesis", "lose-unsynced-all", "--time", "6", "--bug", "lost-ack", "--seed", seed]);
        no_lazyfs_mounts();
        if code == 1 {
            assert!(out.contains("INVALID: the final read does not match the adds") && out.contains(" lost (acknowledged, not read): "), "{out}");
            let r = results(&dir.0);
            assert!(!r["check"]["lost"].as_array().unwrap().is_empty(), "{}", r["check"]);
            assert!(events(&r).iter().any(|e| e.starts_with("power cut every member")), "{:?}", events(&r));
            return;
        }
        eprintln!("seed {seed}: not caught (exit {code}); next seed");
        last = Some(out);
    }
    panic!("lost-ack not caught in three runs: {}", last.unwrap());
}

#[test]
fn power_cuts_lose_nothing_acknowledged() {
    if !fuse() {
        return;
    }
    // Seed 31 cuts one member, then all three.
    let (code, out, dir) = test("set", &["--nemesis", "lose-unsynced,lose-unsynced-all", "--time", "7", "--seed", "31"]);
    no_lazyfs_mounts();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\nVALID\n"), "{out}");
    let r = results(&dir.0);
    let ev = events(&r);
    assert!(ev.iter().any(|e| e.starts_with("power cut member ")), "{ev:?}");
    assert!(ev.iter().any(|e| e.starts_with("power cut every member")), "{ev:?}");
    assert!(n(&r["check"]["ok"]) > 200, "{}", r["check"]);
}
