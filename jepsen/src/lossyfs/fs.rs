//! The FUSE callbacks: a passthrough to a backing directory whose file data writes stop in
//! memory until an fsync.
//!
//! Durability model (what a power loss keeps):
//! - File data reaches the backing file only on `fsync`/`fdatasync` of that file (an `msync`
//!   of a shared mapping arrives here as writes then an fsync), or on every write of a file
//!   opened `O_SYNC`/`O_DSYNC`. `flush` (sent on every `close`) is not durability and keeps
//!   nothing, as on a real disk where close() does not sync.
//! - Truncation and extension (`ftruncate`, `setLength`, `fallocate`) are metadata and are
//!   applied to the backing file at once, so they survive a power loss even without fsync:
//!   like ext4's data=ordered mode after its next journal commit. Held writes past the new
//!   length are dropped.
//! - Namespace operations (create, mkdir, unlink, rmdir, rename, link, symlink, chmod, chown,
//!   utimes) go straight to the backing directory and are durable at once. This is a
//!   simplification: a real disk can also lose a directory entry that was not fsynced (a
//!   created or renamed file may vanish), which this filesystem never does.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenAccMode,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use parking_lot::{Mutex, RwLock};

use super::extents::Extents;

/// How long the kernel may cache attributes and names. Every change goes through this mount,
/// so the kernel's cache is never stale for long; a power loss remounts, which drops it.
const TTL: Duration = Duration::from_secs(1);

/// What the filesystem does with writes; switched under the write lock, so every callback
/// that holds the read lock sees one mode from start to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Writes are held until fsync.
    Lossy,
    /// Clean shutdown under way: writes go to the backing file at once.
    WriteThrough,
    /// Power is lost: nothing reaches the backing directory any more.
    Dead,
}

/// State shared by the FUSE threads of one mount and the `LossyFs` handle.
pub(crate) struct State {
    root: PathBuf,
    pub(crate) mode: RwLock<Mode>,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    dirty: AtomicU64,
}

/// A file's bytes not yet durable, and a writable descriptor of it to make them durable with
/// (kept from the first write: the file may be renamed or unlinked before the fsync).
#[derive(Default)]
struct Data {
    extents: Extents,
    file: Option<Arc<File>>,
}

struct Node {
    /// Relative to the backing root ("" is the root).
    path: PathBuf,
    key: (u64, u64),
    lookups: u64,
    /// False once the backing inode's last name is gone: its held writes can never become
    /// durable, so they are dropped.
    linked: bool,
    data: Arc<Mutex<Data>>,
}

struct Inodes {
    nodes: HashMap<u64, Node>,
    /// Backing (st_dev, st_ino) to our inode number, so every name of one backing file is one
    /// FUSE inode with one page cache (mmap coherence) and one set of held writes.
    by_key: HashMap<(u64, u64), u64>,
    next: u64,
}

enum Handle {
    File { file: Arc<File>, writable: bool, sync: bool },
    Dir { entries: Vec<(u64, FileType, OsString)> },
}

type Res<T> = Result<T, Errno>;

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

fn attr(ino: u64, meta: &fs::Metadata, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: meta.blocks(),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: time(meta.ctime(), meta.ctime_nsec()),
        kind: kind_of(meta.mode()),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: meta.blksize() as u32,
        flags: 0,
    }
}

fn cpath(path: &Path) -> Res<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

fn check(rc: libc::c_int) -> Res<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(errno(io::Error::last_os_error()))
    }
}

fn timespec(t: Option<TimeOrNow>) -> libc::timespec {
    match t {
        None => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        Some(TimeOrNow::Now) => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long }
        }
    }
}

/// Reads `buf.len()` bytes at `offset`, zeros past the end of the file.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

impl State {
    pub(crate) fn new(root: PathBuf) -> io::Result<State> {
        let meta = fs::metadata(&root)?;
        let mut nodes = HashMap::new();
        let key = (meta.dev(), meta.ino());
        let root_ino = INodeNo::ROOT.0;
        nodes.insert(root_ino, Node { path: PathBuf::new(), key, lookups: 1, linked: true, data: Arc::default() });
        let by_key = HashMap::from([(key, root_ino)]);
        Ok(State {
            root,
            mode: RwLock::new(Mode::Lossy),
            inodes: Mutex::new(Inodes { nodes, by_key, next: root_ino + 1 }),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            dirty: AtomicU64::new(0),
        })
    }

    pub(crate) fn dirty_bytes(&self) -> u64 {
        self.dirty.load(Ordering::Relaxed)
    }

    /// Backing paths (relative to the backing root) of files with held writes, and how many
    /// bytes each holds. A file with no name left is listed as "(unlinked)".
    pub(crate) fn dirty_files(&self) -> Vec<(PathBuf, u64)> {
        let nodes: Vec<(PathBuf, bool, Arc<Mutex<Data>>)> =
            self.inodes.lock().nodes.values().map(|n| (n.path.clone(), n.linked, n.data.clone())).collect();
        let mut out: Vec<(PathBuf, u64)> = nodes
            .into_iter()
            .filter_map(|(path, linked, data)| {
                let bytes = data.lock().extents.bytes();
                let path = if linked { path } else { PathBuf::from("(unlinked)") };
                (bytes > 0).then_some((path, bytes))
            })
            .collect();
        out.sort();
        out
    }

    /// Makes every held write durable (clean shutdown). Callers hold the mode lock for writing,
    /// so no callback runs meanwhile.
    pub(crate) fn persist_all(&self) -> io::Result<()> {
        let datas: Vec<Arc<Mutex<Data>>> = self.inodes.lock().nodes.values().map(|n| n.data.clone()).collect();
        let mut first_err = None;
        for data in datas {
            if let Err(e) = self.persist(&data, None, false) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn node(&self, ino: INodeNo) -> Res<(PathBuf, Arc<Mutex<Data>>)> {
        let inodes = self.inodes.lock();
        let node = inodes.nodes.get(&ino.0).ok_or(Errno::ENOENT)?;
        Ok((self.abs(&node.path), node.data.clone()))
    }

    fn rel_path(&self, ino: INodeNo) -> Res<PathBuf> {
        let inodes = self.inodes.lock();
        Ok(inodes.nodes.get(&ino.0).ok_or(Errno::ENOENT)?.path.clone())
    }

    fn handle(&self, fh: FileHandle) -> Res<Arc<Handle>> {
        self.handles.lock().get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn file_handle(&self, fh: FileHandle) -> Res<(Arc<File>, bool, bool)> {
        match &*self.handle(fh)? {
            Handle::File { file, writable, sync } => Ok((file.clone(), *writable, *sync)),
            Handle::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    fn add_handle(&self, handle: Handle) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, Arc::new(handle));
        FileHandle(fh)
    }

    /// The logical size: the backing file's length, or further if held writes extend it.
    /// Truncation shortens both at once, so the larger of the two is always right.
    fn size(meta: &fs::Metadata, data: &Data) -> u64 {
        if meta.is_file() {
            meta.len().max(data.extents.end())
        } else {
            meta.len()
        }
    }

    /// Registers (or finds) the inode for a backing entry just looked up or created, counting
    /// one kernel lookup reference, and returns its attributes.
    fn remember(&self, rel: PathBuf, meta: &fs::Metadata) -> FileAttr {
        let key = (meta.dev(), meta.ino());
        let (ino, data) = {
            let mut inodes = self.inodes.lock();
            let ino = match inodes.by_key.get(&key) {
                Some(&ino) => ino,
                None => {
                    let ino = inodes.next;
                    inodes.next += 1;
                    inodes.by_key.insert(key, ino);
                    ino
                }
            };
            let node = inodes.nodes.entry(ino).or_insert_with(|| Node {
                path: PathBuf::new(),
                key,
                lookups: 0,
                linked: true,
                data: Arc::default(),
            });
            node.path = rel;
            node.lookups += 1;
            (ino, node.data.clone())
        };
        let size = Self::size(meta, &data.lock());
        attr(ino, meta, size)
    }

    /// The backing inode with `key` lost its last name: a later inode reusing the number must
    /// not inherit its held writes, and those writes can never become durable.
    fn forget_key(&self, key: (u64, u64)) {
        let data = {
            let mut inodes = self.inodes.lock();
            let Some(ino) = inodes.by_key.remove(&key) else { return };
            let Some(node) = inodes.nodes.get_mut(&ino) else { return };
            node.linked = false;
            node.data.clone()
        };
        let mut data = data.lock();
        self.dirty.fetch_sub(data.extents.bytes(), Ordering::Relaxed);
        data.extents.clear();
    }

    /// Writes the held bytes to the backing file and syncs it. `fallback` is the descriptor
    /// the fsync came on, used when no write is held (a truncation may still want syncing).
    fn persist(&self, data: &Mutex<Data>, fallback: Option<&Arc<File>>, datasync: bool) -> io::Result<()> {
        let file = {
            let mut data = data.lock();
            let file = data.file.clone().or_else(|| fallback.cloned());
            if !data.extents.is_empty() {
                let Some(file) = &file else {
                    return Err(io::Error::from_raw_os_error(libc::EBADF));
                };
                for (offset, bytes) in data.extents.iter() {
                    file.write_all_at(bytes, offset)?;
                }
                self.dirty.fetch_sub(data.extents.bytes(), Ordering::Relaxed);
                data.extents.clear();
            }
            // Nothing held: the descriptor need not stay open.
            data.file = None;
            file
        };
        // Outside the lock: once written to the backing file, the bytes are durable in this
        // model (the host does not lose power), so reads may go on while the host syncs.
        match file {
            Some(file) if datasync => file.sync_data(),
            Some(file) => file.sync_all(),
            None => Ok(()),
        }
    }

    fn truncate(&self, path: &Path, data: &Mutex<Data>, fh_file: Option<Arc<File>>, len: u64) -> Res<()> {
        let mut data = data.lock();
        match fh_file.or_else(|| data.file.clone()) {
            Some(file) => file.set_len(len).map_err(errno)?,
            None => OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(len)).map_err(errno)?,
        }
        let before = data.extents.bytes();
        data.extents.truncate(len);
        self.dirty.fetch_sub(before - data.extents.bytes(), Ordering::Relaxed);
        Ok(())
    }

    fn getattr_of(&self, ino: INodeNo, fh: Option<FileHandle>) -> Res<FileAttr> {
        let (path, data) = self.node(ino)?;
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Unlinked but still open: the descriptor still reaches it.
            Err(e) => match fh.map(|fh| self.file_handle(fh)) {
                Some(Ok((file, _, _))) => file.metadata().map_err(errno)?,
                _ => return Err(errno(e)),
            },
        };
        let size = Self::size(&meta, &data.lock());
        Ok(attr(ino.0, &meta, size))
    }

    fn lookup_child(&self, parent: INodeNo, name: &OsStr) -> Res<FileAttr> {
        let rel = self.rel_path(parent)?.join(name);
        let meta = fs::symlink_metadata(self.abs(&rel)).map_err(errno)?;
        Ok(self.remember(rel, &meta))
    }

    /// Rewrites the recorded paths of `from` and everything under it to live under `to`.
    fn move_paths(nodes: &mut HashMap<u64, Node>, moved: &[u64], from: &Path, to: &Path) {
        for ino in moved {
            if let Some(node) = nodes.get_mut(ino) {
                if let Ok(rest) = node.path.strip_prefix(from) {
                    node.path = if rest.as_os_str().is_empty() { to.to_path_buf() } else { to.join(rest) };
                }
            }
        }
    }

    fn under(nodes: &HashMap<u64, Node>, prefix: &Path) -> Vec<u64> {
        nodes.iter().filter(|(_, n)| n.path.starts_with(prefix)).map(|(&ino, _)| ino).collect()
    }

    fn rename_impl(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Res<()> {
        let from = self.rel_path(parent)?.join(name);
        let to = self.rel_path(newparent)?.join(newname);
        let (from_abs, to_abs) = (self.abs(&from), self.abs(&to));
        let source = fs::symlink_metadata(&from_abs).map_err(errno)?;
        // Renaming a name onto another name of the same inode replaces nothing.
        let replaced =
            fs::symlink_metadata(&to_abs).ok().filter(|m| (m.dev(), m.ino()) != (source.dev(), source.ino()));
        if flags.is_empty() {
            fs::rename(&from_abs, &to_abs).map_err(errno)?;
        } else {
            let (a, b) = (cpath(&from_abs)?, cpath(&to_abs)?);
            // SAFETY: both are valid NUL-terminated paths for the duration of the call.
            check(unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags.bits()) })?;
        }
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        if let (Some(meta), false) = (&replaced, exchange) {
            let still_linked = !meta.is_dir() && meta.nlink() > 1;
            if !still_linked {
                self.forget_key((meta.dev(), meta.ino()));
            }
        }
        let mut inodes = self.inodes.lock();
        let moved_from = Self::under(&inodes.nodes, &from);
        let moved_to = if exchange { Self::under(&inodes.nodes, &to) } else { Vec::new() };
        Self::move_paths(&mut inodes.nodes, &moved_from, &from, &to);
        Self::move_paths(&mut inodes.nodes, &moved_to, &to, &from);
        Ok(())
    }

    fn unlink_impl(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Res<()> {
        let path = self.abs(&self.rel_path(parent)?.join(name));
        let meta = fs::symlink_metadata(&path).map_err(errno)?;
        if dir {
            fs::remove_dir(&path).map_err(errno)?;
        } else {
            fs::remove_file(&path).map_err(errno)?;
        }
        if dir || meta.nlink() <= 1 {
            self.forget_key((meta.dev(), meta.ino()));
        }
        Ok(())
    }

    fn open_backing(path: &Path, flags: OpenFlags) -> Res<(File, bool, bool)> {
        let writable = flags.acc_mode() != OpenAccMode::O_RDONLY;
        // The backing file is only ever accessed with explicit offsets; O_APPEND would make
        // pwrite ignore them (the kernel already turned appends into offsets at the logical
        // size), O_TRUNC is sent as a separate setattr, and reads of a write-only descriptor
        // are still needed to merge held writes.
        let file = OpenOptions::new().read(true).write(writable).open(path).map_err(errno)?;
        let sync = flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0;
        Ok((file, writable, sync))
    }

    fn read_impl(&self, ino: INodeNo, fh: FileHandle, offset: u64, size: u32) -> Res<Vec<u8>> {
        let (file, _, _) = self.file_handle(fh)?;
        let (_, data) = self.node(ino)?;
        // Held while reading the backing file too, so an fsync moving bytes from the extents
        // to the backing file cannot make them invisible in between.
        let data = data.lock();
        let len = file.metadata().map_err(errno)?.len().max(data.extents.end());
        if offset >= len {
            return Ok(Vec::new());
        }
        let n = (len - offset).min(u64::from(size)) as usize;
        let mut buf = vec![0u8; n];
        read_full_at(&file, &mut buf, offset).map_err(errno)?;
        data.extents.overlay_onto(offset, &mut buf);
        Ok(buf)
    }

    fn write_impl(
        &self,
        mode: Mode,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        flags: OpenFlags,
    ) -> Res<()> {
        let (file, writable, sync) = self.file_handle(fh)?;
        if !writable {
            return Err(Errno::EBADF);
        }
        if mode == Mode::WriteThrough {
            return file.write_all_at(bytes, offset).map_err(errno);
        }
        let (_, data) = self.node(ino)?;
        {
            let mut data = data.lock();
            let before = data.extents.bytes();
            data.extents.write(offset, bytes);
            let after = data.extents.bytes();
            self.dirty.fetch_add(after - before, Ordering::Relaxed);
            data.file.get_or_insert_with(|| file.clone());
        }
        if sync || flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0 {
            self.persist(&data, Some(&file), true).map_err(errno)?;
        }
        Ok(())
    }

    fn readdir_entries(&self, ino: INodeNo) -> Res<Vec<(u64, FileType, OsString)>> {
        let path = self.node(ino)?.0;
        let mut entries =
            vec![(ino.0, FileType::Directory, OsString::from(".")), (ino.0, FileType::Directory, OsString::from(".."))];
        for entry in fs::read_dir(&path).map_err(errno)? {
            let entry = entry.map_err(errno)?;
            let kind = entry.file_type().ok().and_then(FileType::from_std).unwrap_or(FileType::RegularFile);
            // readdir's inode numbers only fill d_ino; lookups use names.
            let ino = std::os::unix::fs::DirEntryExt::ino(&entry);
            entries.push((ino, kind, entry.file_name()));
        }
        Ok(entries)
    }

    fn statfs_impl(&self) -> Res<libc::statvfs> {
        let root = cpath(&self.root)?;
        // SAFETY: statvfs is plain data; the path is a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        check(unsafe { libc::statvfs(root.as_ptr(), &mut st) })?;
        Ok(st)
    }
}

/// The `fuser::Filesystem` of one mount. Every callback holds the mode lock for reading from
/// start to end, so a power loss (which takes it for writing) falls between callbacks, never
/// in the middle of an fsync half-applied.
pub(crate) struct LossyFilesystem {
    pub(crate) state: Arc<State>,
}

macro_rules! alive {
    ($self:ident, $reply:ident) => {{
        let guard = $self.state.mode.read();
        if *guard == Mode::Dead {
            $reply.error(Errno::EIO);
            return;
        }
        guard
    }};
}

impl Filesystem for LossyFilesystem {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _mode = alive!(self, reply);
        match self.state.lookup_child(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut inodes = self.state.inodes.lock();
        let Some(node) = inodes.nodes.get_mut(&ino.0) else { return };
        node.lookups = node.lookups.saturating_sub(nlookup);
        if node.lookups > 0 || ino == INodeNo::ROOT {
            return;
        }
        // Held writes of a linked file outlive the kernel's reference: they are still the
        // file's content and can still be fsynced after the next lookup.
        let keep = node.linked && node.data.try_lock().is_none_or(|d| !d.extents.is_empty());
        if keep {
            return;
        }
        let key = node.key;
        inodes.nodes.remove(&ino.0);
        if inodes.by_key.get(&key) == Some(&ino.0) {
            inodes.by_key.remove(&key);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let _mode = alive!(self, reply);
        match self.state.getattr_of(ino, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
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
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _mode = alive!(self, reply);
        let result = (|| -> Res<FileAttr> {
            let (path, data) = self.state.node(ino)?;
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777)).map_err(errno)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid).map_err(errno)?;
            }
            if let Some(len) = size {
                let fh_file = match fh.map(|fh| self.state.file_handle(fh)) {
                    Some(Ok((file, true, _))) => Some(file),
                    _ => None,
                };
                self.state.truncate(&path, &data, fh_file, len)?;
            }
            if atime.is_some() || mtime.is_some() {
                let c = cpath(&path)?;
                let times = [timespec(atime), timespec(mtime)];
                // SAFETY: valid C path and a two-element timespec array, as utimensat wants.
                check(unsafe {
                    libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
                })?;
            }
            self.state.getattr_of(ino, fh)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _mode = alive!(self, reply);
        match self.state.node(ino).and_then(|(path, _)| fs::read_link(path).map_err(errno)) {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let _mode = alive!(self, reply);
        let result = (|| -> Res<FileAttr> {
            let rel = self.state.rel_path(parent)?.join(name);
            let path = self.state.abs(&rel);
            fs::DirBuilder::new().mode(mode & !umask & 0o7777).create(&path).map_err(errno)?;
            let meta = fs::symlink_metadata(&path).map_err(errno)?;
            Ok(self.state.remember(rel, &meta))
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _mode = alive!(self, reply);
        match self.state.unlink_impl(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _mode = alive!(self, reply);
        match self.state.unlink_impl(parent, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let _mode = alive!(self, reply);
        let result = (|| -> Res<FileAttr> {
            let rel = self.state.rel_path(parent)?.join(link_name);
            let path = self.state.abs(&rel);
            std::os::unix::fs::symlink(target, &path).map_err(errno)?;
            let meta = fs::symlink_metadata(&path).map_err(errno)?;
            Ok(self.state.remember(rel, &meta))
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _mode = alive!(self, reply);
        match self.state.rename_impl(parent, name, newparent, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let _mode = alive!(self, reply);
        let result = (|| -> Res<FileAttr> {
            let (old, _) = self.state.node(ino)?;
            let rel = self.state.rel_path(newparent)?.join(newname);
            let path = self.state.abs(&rel);
            fs::hard_link(&old, &path).map_err(errno)?;
            let meta = fs::symlink_metadata(&path).map_err(errno)?;
            Ok(self.state.remember(rel, &meta))
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _mode = alive!(self, reply);
        let result = self.state.node(ino).and_then(|(path, _)| State::open_backing(&path, flags));
        match result {
            Ok((file, writable, sync)) => {
                let fh = self.state.add_handle(Handle::File { file: Arc::new(file), writable, sync });
                // Every change goes through this mount, so the kernel's page cache of the file
                // stays right across opens; a power loss remounts, which drops it.
                reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _mode = alive!(self, reply);
        match self.state.read_impl(ino, fh, offset, size) {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mode = alive!(self, reply);
        let Ok(len) = u32::try_from(data.len()) else {
            reply.error(Errno::EINVAL);
            return;
        };
        match self.state.write_impl(*mode, ino, fh, offset, data, flags) {
            Ok(()) => reply.written(len),
            Err(e) => reply.error(e),
        }
    }

    /// Called on every close(): not a durability point, so it keeps nothing.
    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Held writes keep their own descriptor, so closing loses nothing.
        self.state.handles.lock().remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let _mode = alive!(self, reply);
        let result = (|| -> Res<()> {
            let (_, data) = self.state.node(ino)?;
            let fallback = self.state.file_handle(fh).ok().map(|(file, _, _)| file);
            self.state.persist(&data, fallback.as_ref(), datasync).map_err(errno)
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _mode = alive!(self, reply);
        match self.state.readdir_entries(ino) {
            Ok(entries) => reply.opened(self.state.add_handle(Handle::Dir { entries }), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let _mode = alive!(self, reply);
        let handle = match self.state.handle(fh) {
            Ok(handle) => handle,
            Err(e) => return reply.error(e),
        };
        let Handle::Dir { entries } = &*handle else {
            return reply.error(Errno::ENOTDIR);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.state.handles.lock().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let _mode = alive!(self, reply);
        // Directory entries are already durable in this model; syncing the backing directory
        // keeps the call as slow as a real one, which matters for timing-sensitive callers.
        match self.state.node(ino).and_then(|(path, _)| File::open(path).and_then(|d| d.sync_all()).map_err(errno)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.state.statfs_impl() {
            Ok(st) => reply.statfs(
                st.f_blocks,
                st.f_bfree,
                st.f_bavail,
                st.f_files,
                st.f_ffree,
                st.f_bsize as u32,
                st.f_namemax as u32,
                st.f_frsize as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _mode = alive!(self, reply);
        let result = (|| -> Res<(FileAttr, FileHandle)> {
            let rel = self.state.rel_path(parent)?.join(name);
            let path = self.state.abs(&rel);
            let flags = OpenFlags(flags);
            let writable = flags.acc_mode() != OpenAccMode::O_RDONLY;
            let mut options = OpenOptions::new();
            options.read(true).write(true).mode(mode & !umask & 0o7777);
            if flags.0 & libc::O_EXCL != 0 {
                options.create_new(true);
            } else {
                options.create(true);
            }
            let file = options.open(&path).map_err(errno)?;
            let meta = file.metadata().map_err(errno)?;
            let attr = self.state.remember(rel, &meta);
            if flags.0 & libc::O_TRUNC != 0 {
                let (_, data) = self.state.node(attr.ino)?;
                let file = Arc::new(file.try_clone().map_err(errno)?);
                self.state.truncate(&path, &data, Some(file), 0)?;
            }
            let sync = flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0;
            let fh = self.state.add_handle(Handle::File { file: Arc::new(file), writable, sync });
            let attr = self.state.getattr_of(attr.ino, Some(fh))?;
            Ok((attr, fh))
        })();
        match result {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _mode = alive!(self, reply);
        // Only plain preallocation, applied at once like a truncation that extends; punching
        // holes or collapsing ranges would have to edit held writes too.
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let result = (|| -> Res<()> {
            let (_, data) = self.state.node(ino)?;
            let (file, _, _) = self.state.file_handle(fh)?;
            let _data = data.lock();
            let want = offset.checked_add(length).ok_or(Errno::EFBIG)?;
            if file.metadata().map_err(errno)?.len() < want {
                file.set_len(want).map_err(errno)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
