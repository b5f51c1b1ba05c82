//! A filesystem that can lose what was never fsynced, as a power cut does
//! (Jepsen's LazyFS, in miniature): a FUSE passthrough mounted over a
//! member's data directory, its files kept in a backing directory beside
//! it. Writes stay in memory ([`overlay`]) until the file is fsynced;
//! [`Mount::power_cut`] drops them. kill -9 alone loses nothing a process
//! wrote (the kernel's page cache survives it), so a server that
//! acknowledges before its fsync (`--bug lost-ack`) is only caught with
//! this.
//!
//! The filesystem runs on threads of the process that mounts it (the
//! harness): no daemon to start or stop, and dropping the [`Mount`]
//! unmounts it. Mounting needs root (or fusermount3) and `/dev/fuse`.

mod fs;
mod overlay;

pub use fs::Cut;

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why this machine cannot mount it, if it cannot.
pub fn unavailable() -> Option<String> {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => None,
        Err(e) => Some(format!("FUSE is not available here (/dev/fuse: {e}); the lose-unsynced nemeses need it")),
    }
}

/// A mounted lazy filesystem. Dropping it unmounts (lazily, should a
/// process still hold a file open there) and waits for its thread.
pub struct Mount {
    session: Option<fuser::BackgroundSession>,
    shared: Arc<fs::Shared>,
    pub mountpoint: PathBuf,
    pub backing: PathBuf,
}

impl Mount {
    /// Mounts over `mountpoint` (an existing, empty directory) the files
    /// of `backing` (an existing directory), which from now on holds only
    /// what was synced.
    pub fn new(mountpoint: &Path, backing: &Path) -> std::io::Result<Mount> {
        let shared = fs::Shared::new(backing)?;
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![fuser::MountOption::FSName(format!("lazyfs:{}", backing.display())), fuser::MountOption::Subtype("corral-lazyfs".into())];
        let session = fuser::spawn_mount(fs::LazyFs(shared.clone()), mountpoint, &cfg)?;
        Ok(Mount { session: Some(session), shared, mountpoint: mountpoint.to_path_buf(), backing: backing.to_path_buf() })
    }

    /// Drops every write not yet fsynced, in every file: what a power cut
    /// does to a machine's page cache. Whoever had the files open should
    /// be dead by now (kill -9 first), as a machine's processes would be.
    pub fn power_cut(&self) -> Cut {
        let (cut, inos) = self.shared.power_cut();
        // The kernel caches no file data (direct I/O) and no attributes
        // (no time-to-live), but tell it anyway that these changed.
        if let Some(s) = &self.session {
            let notifier = s.notifier();
            for ino in inos {
                let _ = notifier.inval_inode(fuser::INodeNo(ino), 0, 0);
            }
        }
        cut
    }

    /// What a power cut now would drop.
    pub fn unsynced(&self) -> Cut {
        self.shared.unsynced()
    }

    /// Unmounts and waits for the filesystem's thread.
    pub fn unmount(mut self) -> std::io::Result<()> {
        match self.session.take() {
            Some(s) => s.umount_and_join(),
            None => Ok(()),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if let Err(e) = s.umount_and_join() {
                eprintln!("lazyfs: unmounting {}: {e}", self.mountpoint.display());
            }
        }
    }
}

/// Where [`over`] keeps a data directory's files: beside it.
pub fn backing_of(data: &Path) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(".lazyfs");
    data.with_file_name(name)
}

/// Puts the data directory `data` (whose server must not be running) on a
/// lazy filesystem: its files move to [`backing_of`] `data`, which is
/// mounted back over `data`. What they held before counts as synced.
pub fn over(data: &Path) -> std::io::Result<Mount> {
    let backing = backing_of(data);
    std::fs::rename(data, &backing)?;
    std::fs::create_dir(data)?;
    Mount::new(data, &backing)
}
