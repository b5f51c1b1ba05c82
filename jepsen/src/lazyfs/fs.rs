//! The FUSE passthrough: every name and metadata change goes straight to
//! the backing directory; file data goes into an [`Overlay`] until an
//! fsync applies it. So the backing directory is, at any moment, what a
//! disk would hold after a power cut that spared the metadata.
//!
//! Inode numbers are the backing files' own (one backing filesystem, so
//! they are unique), but for the root, which FUSE calls 1 (ext4 never uses
//! inode 1 for a file). Attributes and names are given a time-to-live of
//! zero and every open is direct I/O, so that the kernel caches nothing
//! that a power cut could make stale: each read and write reaches us.

use super::overlay::Overlay;
use fuser::{Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

const TTL: Duration = Duration::ZERO;

/// What a power cut dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Files that had unsynced writes or truncations.
    pub files: usize,
    /// Bytes written and never synced.
    pub bytes: u64,
}

/// An open file: the backing file, opened by us.
struct Handle {
    ino: u64,
    file: File,
    writable: bool,
}

struct State {
    backing: PathBuf,
    /// The backing root's inode number, which FUSE knows as 1.
    root_ino: u64,
    /// Each inode's path under the backing root, as last looked up.
    paths: HashMap<u64, PathBuf>,
    overlays: HashMap<u64, Overlay>,
    handles: HashMap<u64, Handle>,
    /// Open handles per inode: an unlinked file's overlay lives as long
    /// as someone still has it open.
    open: HashMap<u64, usize>,
    /// Directory listings, taken at opendir.
    dirs: HashMap<u64, Vec<(u64, FileType, OsString)>>,
    next_fh: u64,
}

/// The state the mount and its FUSE session share.
pub struct Shared(Mutex<State>);

impl Shared {
    pub fn new(backing: &Path) -> std::io::Result<Arc<Shared>> {
        let root_ino = std::fs::metadata(backing)?.ino();
        let mut paths = HashMap::new();
        paths.insert(fuser::INodeNo::ROOT.0, PathBuf::new());
        let state = State { backing: backing.to_path_buf(), root_ino, paths, overlays: HashMap::new(), handles: HashMap::new(), open: HashMap::new(), dirs: HashMap::new(), next_fh: 1 };
        Ok(Arc::new(Shared(Mutex::new(state))))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in one request must not take the others down with it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops every unsynced write: the backing files are what is left.
    /// Returns the inodes that had any, for the kernel to forget.
    pub fn power_cut(&self) -> (Cut, Vec<u64>) {
        let mut s = self.lock();
        let cut = Cut { files: s.overlays.len(), bytes: s.overlays.values().map(Overlay::unsynced_bytes).sum() };
        let inos = s.overlays.drain().map(|(ino, _)| ino).collect();
        (cut, inos)
    }

    /// Bytes written and not yet synced, over all files.
    pub fn unsynced(&self) -> Cut {
        let s = self.lock();
        Cut { files: s.overlays.len(), bytes: s.overlays.values().map(Overlay::unsynced_bytes).sum() }
    }
}

fn err(e: std::io::Error) -> Errno {
    Errno::from(e)
}

impl State {
    fn real(&self, ino: u64) -> Result<PathBuf, Errno> {
        self.paths.get(&ino).map(|p| self.backing.join(p)).ok_or(Errno::ENOENT)
    }

    fn fuse_ino(&self, real: u64) -> u64 {
        if real == self.root_ino {
            INodeNo::ROOT.0
        } else {
            real
        }
    }

    fn attr(&self, meta: &Metadata) -> FileAttr {
        let ino = self.fuse_ino(meta.ino());
        let size = self.overlays.get(&ino).map_or(meta.len(), Overlay::len);
        let time = |s: i64, ns: i64| if s >= 0 { SystemTime::UNIX_EPOCH + Duration::new(s as u64, ns as u32) } else { SystemTime::UNIX_EPOCH };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: SystemTime::UNIX_EPOCH,
            kind: kind(meta.file_type()),
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Looks `name` up in `parent` on the backing directory and remembers
    /// its path.
    fn entry(&mut self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let rel = self.paths.get(&parent).ok_or(Errno::ENOENT)?.join(name);
        let meta = std::fs::symlink_metadata(self.backing.join(&rel)).map_err(err)?;
        let ino = self.fuse_ino(meta.ino());
        self.paths.insert(ino, rel);
        Ok(self.attr(&meta))
    }

    fn add_handle(&mut self, ino: u64, file: File, writable: bool) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, Handle { ino, file, writable });
        *self.open.entry(ino).or_default() += 1;
        fh
    }

    /// Forgets the overlay of an inode no name refers to and no one has
    /// open (its data can never be read or synced again).
    fn forget_if_gone(&mut self, ino: u64) {
        if self.open.get(&ino).copied().unwrap_or(0) > 0 {
            return;
        }
        let named = self.paths.get(&ino).and_then(|p| std::fs::symlink_metadata(self.backing.join(p)).ok()).is_some_and(|m| self.fuse_ino(m.ino()) == ino);
        if !named {
            self.overlays.remove(&ino);
            self.paths.remove(&ino);
        }
    }

    /// The overlay of `ino`, made on the first unsynced change.
    fn overlay(&mut self, ino: u64, file: &File) -> Result<&mut Overlay, Errno> {
        if !self.overlays.contains_key(&ino) {
            let len = file.metadata().map_err(err)?.len();
            self.overlays.insert(ino, Overlay::new(len));
        }
        Ok(self.overlays.get_mut(&ino).expect("just made"))
    }

    /// A backing file of `ino` open for writing: the handle's, else one
    /// opened for the purpose.
    fn writable(&self, fh: Option<u64>, ino: u64) -> Result<File, Errno> {
        if let Some(h) = fh.and_then(|fh| self.handles.get(&fh)).filter(|h| h.writable) {
            return h.file.try_clone().map_err(err);
        }
        if let Some(h) = self.handles.values().find(|h| h.ino == ino && h.writable) {
            return h.file.try_clone().map_err(err);
        }
        OpenOptions::new().write(true).open(self.real(ino)?).map_err(err)
    }

    /// Makes `ino`'s unsynced data durable: applied to the backing file, synced.
    fn sync(&mut self, fh: Option<u64>, ino: u64, data_only: bool) -> Result<(), Errno> {
        let file = self.writable(fh, ino)?;
        if let Some(o) = self.overlays.get(&ino) {
            o.apply(&file).map_err(err)?;
            self.overlays.remove(&ino);
        }
        if data_only { file.sync_data() } else { file.sync_all() }.map_err(err)
    }
}

fn kind(t: std::fs::FileType) -> FileType {
    FileType::from_std(t).unwrap_or(FileType::RegularFile)
}

/// pread up to `size` bytes; shorter at the end of the file.
fn pread(file: &File, at: u64, size: u32) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// The FUSE request handler (one per mount).
pub struct LazyFs(pub Arc<Shared>);

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.0.lock().entry(parent.0, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = self.0.lock();
        // Through an open handle the file may have no name any more.
        let meta = match fh.and_then(|fh| s.handles.get(&fh.0)) {
            Some(h) => h.file.metadata().map_err(err),
            None => s.real(ino.0).and_then(|p| std::fs::symlink_metadata(p).map_err(err)),
        };
        match meta {
            Ok(m) => reply.attr(&TTL, &s.attr(&m)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.0.lock();
        let result = (|| -> Result<FileAttr, Errno> {
            let path = s.real(ino.0)?;
            // Metadata goes straight to the backing file; times are left
            // as the backing filesystem keeps them.
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777)).map_err(err)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::chown(&path, uid, gid).map_err(err)?;
            }
            if let Some(len) = size {
                // A truncation is data: unsynced until an fsync.
                let file = s.writable(fh.map(|f| f.0), ino.0)?;
                s.overlay(ino.0, &file)?.truncate(len);
            }
            let meta = match fh.and_then(|fh| s.handles.get(&fh.0)) {
                Some(h) => h.file.metadata(),
                None => std::fs::symlink_metadata(&path),
            };
            Ok(s.attr(&meta.map_err(err)?))
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut s = self.0.lock();
        let result = s.real(parent.0).and_then(|p| {
            let path = p.join(name);
            std::fs::create_dir(&path).map_err(err)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !umask & 0o7777)).map_err(err)?;
            s.entry(parent.0, name)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.0.lock();
        let result = s.real(parent.0).and_then(|p| {
            let path = p.join(name);
            let ino = s.fuse_ino(std::fs::symlink_metadata(&path).map_err(err)?.ino());
            std::fs::remove_file(&path).map_err(err)?;
            s.forget_if_gone(ino);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let s = self.0.lock();
        match s.real(parent.0).and_then(|p| std::fs::remove_dir(p.join(name)).map_err(err)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(&self, _req: &Request, parent: INodeNo, name: &OsStr, newparent: INodeNo, newname: &OsStr, flags: RenameFlags, reply: ReplyEmpty) {
        let mut s = self.0.lock();
        let result = (|| -> Result<(), Errno> {
            let (from_rel, to_rel) = (s.paths.get(&parent.0).ok_or(Errno::ENOENT)?.join(name), s.paths.get(&newparent.0).ok_or(Errno::ENOENT)?.join(newname));
            let (from, to) = (s.backing.join(&from_rel), s.backing.join(&to_rel));
            let replaced = std::fs::symlink_metadata(&to).ok().map(|m| s.fuse_ino(m.ino()));
            if flags.is_empty() {
                std::fs::rename(&from, &to).map_err(err)?;
            } else {
                use std::os::unix::ffi::OsStrExt;
                let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL);
                let (cf, ct) = (c(&from)?, c(&to)?);
                // SAFETY: both are valid NUL-terminated paths for the call's duration.
                let rc = unsafe { libc::renameat2(libc::AT_FDCWD, cf.as_ptr(), libc::AT_FDCWD, ct.as_ptr(), flags.bits()) };
                if rc != 0 {
                    return Err(err(std::io::Error::last_os_error()));
                }
            }
            // Every path under the old name now lives under the new one.
            for p in s.paths.values_mut() {
                if let Ok(rest) = p.strip_prefix(&from_rel) {
                    *p = if rest.as_os_str().is_empty() { to_rel.clone() } else { to_rel.join(rest) };
                }
            }
            if let Some(ino) = replaced {
                s.forget_if_gone(ino);
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.0.lock();
        let result = s.real(ino.0).and_then(|path| {
            // Opened for writing when we may, even for a reader: an fsync
            // through any handle applies the overlay. Truncation and
            // append are the kernel's (setattr, offsets), not the flags'.
            let (file, writable) = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => (f, true),
                Err(_) => {
                    let write_only = matches!(flags.acc_mode(), OpenAccMode::O_WRONLY);
                    (OpenOptions::new().read(!write_only).write(write_only).open(&path).map_err(err)?, write_only)
                }
            };
            Ok(s.add_handle(ino.0, file, writable))
        });
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, flags: i32, reply: ReplyCreate) {
        let mut s = self.0.lock();
        let result = (|| -> Result<(FileAttr, u64), Errno> {
            let path = s.real(parent.0)?.join(name);
            // The new name is metadata: on the backing directory at once.
            let mut o = OpenOptions::new();
            o.read(true).write(true).mode(mode & !umask & 0o7777);
            if flags & libc::O_EXCL != 0 {
                o.create_new(true);
            } else {
                o.create(true);
            }
            let file = o.open(&path).map_err(err)?;
            let ino = s.fuse_ino(file.metadata().map_err(err)?.ino());
            if flags & libc::O_TRUNC != 0 {
                s.overlay(ino, &file)?.truncate(0);
            }
            let attr = s.entry(parent.0, name)?;
            Ok((attr, s.add_handle(ino, file, true)))
        })();
        match result {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, size: u32, _flags: OpenFlags, _lock_owner: Option<fuser::LockOwner>, reply: ReplyData) {
        let s = self.0.lock();
        let Some(h) = s.handles.get(&fh.0) else { return reply.error(Errno::EBADF) };
        let data = match s.overlays.get(&ino.0) {
            Some(o) => o.read(&h.file, offset, size),
            None => pread(&h.file, offset, size),
        };
        match data {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(err(e)),
        }
    }

    fn write(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, data: &[u8], _write_flags: fuser::WriteFlags, _flags: OpenFlags, _lock_owner: Option<fuser::LockOwner>, reply: ReplyWrite) {
        let mut s = self.0.lock();
        let file = match s.handles.get(&fh.0).map(|h| h.file.try_clone()) {
            Some(Ok(f)) => f,
            Some(Err(e)) => return reply.error(err(e)),
            None => return reply.error(Errno::EBADF),
        };
        match s.overlay(ino.0, &file) {
            Ok(o) => {
                o.write(offset, data);
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: fuser::LockOwner, reply: ReplyEmpty) {
        // close() makes nothing durable.
        reply.ok();
    }

    fn release(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: OpenFlags, _lock_owner: Option<fuser::LockOwner>, _flush: bool, reply: ReplyEmpty) {
        let mut s = self.0.lock();
        if s.handles.remove(&fh.0).is_some() {
            if let Some(n) = s.open.get_mut(&ino.0) {
                *n -= 1;
                if *n == 0 {
                    s.open.remove(&ino.0);
                }
            }
            s.forget_if_gone(ino.0);
        }
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        match self.0.lock().sync(Some(fh.0), ino.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.0.lock();
        let result = (|| -> Result<u64, Errno> {
            let path = s.real(ino.0)?;
            let mut list = vec![(ino.0, FileType::Directory, OsString::from(".")), (ino.0, FileType::Directory, OsString::from(".."))];
            for e in std::fs::read_dir(&path).map_err(err)? {
                let e = e.map_err(err)?;
                let t = e.file_type().map_err(err)?;
                list.push((s.fuse_ino(e.ino()), kind(t), e.file_name()));
            }
            let fh = s.next_fh;
            s.next_fh += 1;
            s.dirs.insert(fh, list);
            Ok(fh)
        })();
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let s = self.0.lock();
        let Some(list) = s.dirs.get(&fh.0) else { return reply.error(Errno::EBADF) };
        for (i, (ino, kind, name)) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.0.lock().dirs.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Names were applied to the backing directory as they changed:
        // syncing it is all that is left.
        let s = self.0.lock();
        match s.real(ino.0).and_then(|p| File::open(p).and_then(|d| d.sync_all()).map_err(err)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        use std::os::unix::ffi::OsStrExt;
        let backing = self.0.lock().backing.clone();
        let Ok(path) = std::ffi::CString::new(backing.as_os_str().as_bytes()) else { return reply.error(Errno::EINVAL) };
        // SAFETY: statvfs fills the zeroed struct; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return reply.error(err(std::io::Error::last_os_error()));
        }
        reply.statfs(st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree, st.f_bsize as u32, st.f_namemax as u32, st.f_frsize as u32);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
