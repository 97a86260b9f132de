//! A "lossy" FUSE passthrough filesystem that simulates power loss.
//!
//! A broker under test keeps its data directory on a [`LossyFs`] mount. Writes to files are
//! held in memory until the file is fsynced; [`LossyFs::power_loss`] throws away everything
//! held, so afterwards the mount shows exactly what a machine that lost power would find on
//! its disk: what was fsynced, and nothing else. A broker that acknowledges a write before it
//! is durable is caught losing it.
//!
//! What counts as durable (see `fs.rs` for the reasoning):
//! - file data: only after `fsync`/`fdatasync` of that file (an `msync` of a shared mapping
//!   reaches the filesystem as writes then an fsync), or a write on an `O_SYNC`/`O_DSYNC`
//!   descriptor. `close()` (FUSE `flush`) makes nothing durable.
//! - truncation and extension of a file (`ftruncate`, Java's `setLength`, `fallocate`):
//!   durable at once. Held writes past a new, shorter length are dropped.
//! - directory operations (create, mkdir, unlink, rmdir, rename, link, symlink, chmod, chown,
//!   utimes): durable at once. A simplification: a real disk can lose directory entries that
//!   were not fsynced; this filesystem never does, so it does not test directory fsyncs.
//!
//! The kernel's page cache never outlives a power loss: the old mount is unmounted and a new
//! one (a new superblock, so an empty cache) is mounted on the same mountpoint. Dirty pages of
//! shared mappings that the kernel had not written back are lost with it, like on real power
//! loss; ones it had written back are held writes and are lost unless fsynced.
//!
//! Needs root (or `CAP_SYS_ADMIN`) and `/dev/fuse`: it mounts with the mount(2) system call
//! itself, without libfuse or the `fusermount3` helper.

mod extents;
mod fs;

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};

use self::fs::{LossyFilesystem, Mode, State};

/// `statfs(2)`'s `f_type` of a FUSE mount.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// Threads serving the mount: an fsync in progress must not stall reads of other files.
const THREADS: usize = 4;

/// How long an unmount waits for the serving threads to end. A lazy unmount of a mount still
/// in use leaves them running until the last user goes; they are then left to end alone.
const JOIN_WAIT: Duration = Duration::from_secs(5);
const LAZY_JOIN_WAIT: Duration = Duration::from_millis(200);

/// A FUSE mount of `mountpoint` that passes through to `backing`, served by threads of this
/// process, holding every write that was not yet fsynced in memory.
pub struct LossyFs {
    backing: PathBuf,
    mountpoint: PathBuf,
    live: Option<Live>,
}

/// One mount: its state and the threads serving it. A power loss replaces it whole.
struct Live {
    state: Arc<State>,
    unmounter: SessionUnmounter,
    thread: JoinHandle<io::Result<()>>,
}

impl LossyFs {
    /// Mounts; returns once the mount is usable. Fails clearly if FUSE is unavailable.
    ///
    /// Both directories are created if missing. Neither may be inside the other (a mountpoint
    /// inside the backing directory would make lookups recurse into this filesystem).
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<LossyFs> {
        OpenOptions::new().read(true).write(true).open("/dev/fuse").context(
            "FUSE is unavailable: cannot open /dev/fuse (it needs the fuse kernel module, and in a \
             container the device passed in and CAP_SYS_ADMIN)",
        )?;
        std::fs::create_dir_all(backing).with_context(|| format!("creating {}", backing.display()))?;
        detach_if_dead(mountpoint);
        std::fs::create_dir_all(mountpoint).with_context(|| format!("creating {}", mountpoint.display()))?;
        let backing = backing.canonicalize().with_context(|| format!("resolving {}", backing.display()))?;
        let mountpoint = mountpoint.canonicalize().with_context(|| format!("resolving {}", mountpoint.display()))?;
        if backing.starts_with(&mountpoint) || mountpoint.starts_with(&backing) {
            bail!("backing directory {} and mountpoint {} must not nest", backing.display(), mountpoint.display());
        }
        let live = start(&backing, &mountpoint)?;
        Ok(LossyFs { backing, mountpoint, live: Some(live) })
    }

    /// Power loss: discards every write not yet made durable by fsync/fdatasync (or msync of a
    /// mapping, which reaches the FS as fsync), then remounts so the kernel's page cache of
    /// the old mount cannot serve the lost data. Callers kill every process using the mount
    /// first (kill -9). Afterwards the mount shows exactly the durable state.
    ///
    /// If a process still uses the mount, the old mount is detached lazily and answers its
    /// remaining users with EIO; they never see the new mount through descriptors they hold.
    pub fn power_loss(&mut self) -> Result<()> {
        if let Some(live) = self.live.take() {
            // From here on nothing reaches the backing directory: the write lock waits for
            // callbacks under way (an fsync half-applied completes first, as the disk would
            // finish a write it had started) and no later one does anything.
            *live.state.mode.write() = Mode::Dead;
            teardown(live, &self.mountpoint).context("unmounting after the power loss")?;
        }
        self.live = Some(start(&self.backing, &self.mountpoint)?);
        Ok(())
    }

    /// Makes every held write durable now, like sync(2) on a real disk (which this mount does
    /// not get: FUSE does not pass sync(2) or syncfs(2) on to the filesystem). For setup steps
    /// whose output must survive power losses but that do not fsync, e.g. Apache Kafka's
    /// storage format, whose bootstrap.checkpoint is otherwise lost and Kafka cannot start.
    pub fn sync(&self) -> Result<()> {
        let Some(live) = &self.live else { return Ok(()) };
        // First the kernel's dirty pages of shared mappings, which syncfs writes back to us as
        // held writes; it must run without the mode lock, since those writes need it.
        syncfs(&self.mountpoint)?;
        let _mode = live.state.mode.write();
        live.state.persist_all().context("writing held data to the backing directory")
    }

    /// Bytes held in memory, not yet durable (for logs/metrics).
    pub fn dirty_bytes(&self) -> u64 {
        self.live.as_ref().map_or(0, |live| live.state.dirty_bytes())
    }

    /// Files with bytes not yet durable, as paths relative to the backing directory, with the
    /// bytes held for each (for debugging a lost write). A file written after its last name was
    /// removed is listed as "(unlinked)".
    pub fn dirty_files(&self) -> Vec<(PathBuf, u64)> {
        self.live.as_ref().map_or_else(Vec::new, |live| live.state.dirty_files())
    }

    /// The directory the mount passes through to.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Where the filesystem is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts cleanly (un-fsynced data is kept, i.e. written to backing, as on a clean shutdown).
    pub fn unmount(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let Some(live) = self.live.take() else { return Ok(()) };
        let persisted = {
            let mut mode = live.state.mode.write();
            // Writes that come after this (the kernel writing back dirty pages of mappings
            // during the unmount, or users of a lazily detached mount) go straight to the
            // backing files, as a clean shutdown would keep them.
            *mode = Mode::WriteThrough;
            live.state.persist_all().context("writing held data to the backing directory")
        };
        let synced = syncfs(&self.mountpoint);
        let unmounted = teardown(live, &self.mountpoint);
        persisted.and(synced).and(unmounted)
    }
}

impl Drop for LossyFs {
    /// Unmounts like [`LossyFs::unmount`] (lazily if busy); reports failures on stderr.
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("lossyfs: unmounting {}: {e:#}", self.mountpoint.display());
        }
    }
}

/// Mounts a fresh filesystem (no held writes, a new kernel superblock) and serves it.
fn start(backing: &Path, mountpoint: &Path) -> Result<Live> {
    let state = Arc::new(State::new(backing.to_path_buf()).with_context(|| format!("reading {}", backing.display()))?);
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("lossyfs:{}", backing.display())),
        MountOption::Subtype("lossyfs".into()),
        // The kernel checks permissions from the attributes we return, as on a local disk.
        MountOption::DefaultPermissions,
    ];
    // Brokers under test may run as users other than the one that mounted.
    config.acl = SessionACL::All;
    config.n_threads = Some(THREADS);
    config.clone_fd = true;
    let filesystem = LossyFilesystem { state: state.clone() };
    let mut session = Session::new(filesystem, mountpoint, &config).with_context(|| {
        format!("mounting a FUSE filesystem at {} (needs root and /dev/fuse)", mountpoint.display())
    })?;
    let unmounter = session.unmount_callable();
    let thread = std::thread::Builder::new()
        .name("lossyfs".into())
        .spawn(move || session.run())
        .context("starting the FUSE session thread")?;
    let live = Live { state, unmounter, thread };
    match fs_type(mountpoint) {
        Ok(FUSE_SUPER_MAGIC) => Ok(live),
        Ok(other) => {
            let _ = teardown(live, mountpoint);
            bail!("{} is not a FUSE mount after mounting (f_type {other:#x})", mountpoint.display())
        }
        Err(e) => {
            let _ = teardown(live, mountpoint);
            Err(e).with_context(|| format!("checking the new mount at {}", mountpoint.display()))
        }
    }
}

/// Unmounts one mount (lazily if it is busy) and waits a while for its threads to end.
fn teardown(mut live: Live, mountpoint: &Path) -> Result<()> {
    let wait = match live.unmounter.unmount() {
        Ok(()) => JOIN_WAIT,
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            // Still in use (a process holds a file or a mapping): detach it from the
            // mountpoint now so a new mount can take its place; it ends when its last user
            // does, which may be never for a test holding a mapping, so hardly wait.
            umount_detach(mountpoint).with_context(|| format!("lazily unmounting {}", mountpoint.display()))?;
            LAZY_JOIN_WAIT
        }
        Err(e) => return Err(e).with_context(|| format!("unmounting {}", mountpoint.display())),
    };
    let deadline = Instant::now() + wait;
    while !live.thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if live.thread.is_finished() {
        match live.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("lossyfs: the FUSE session at {} ended with: {e}", mountpoint.display()),
            Err(_) => eprintln!("lossyfs: the FUSE session thread at {} panicked", mountpoint.display()),
        }
    }
    Ok(())
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).with_context(|| format!("{} contains a NUL byte", path.display()))
}

fn umount_detach(mountpoint: &Path) -> Result<()> {
    let path = c_path(mountpoint)?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error()).context("umount2(MNT_DETACH)");
    }
    Ok(())
}

/// A FUSE mount whose server died (an earlier harness run killed mid-way) answers ENOTCONN and
/// would make mounting over it fail; it holds nothing, so detach it.
fn detach_if_dead(mountpoint: &Path) {
    if let Err(e) = std::fs::metadata(mountpoint) {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            let _ = umount_detach(mountpoint);
        }
    }
}

fn fs_type(path: &Path) -> Result<i64> {
    let c = c_path(path)?;
    // SAFETY: statfs is plain data; the path is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error()).context("statfs");
    }
    Ok(st.f_type as i64)
}

/// Makes the kernel write back the mount's dirty pages (of shared mappings) to the filesystem.
fn syncfs(mountpoint: &Path) -> Result<()> {
    let dir = std::fs::File::open(mountpoint).with_context(|| format!("opening {}", mountpoint.display()))?;
    // SAFETY: a valid open descriptor.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("syncfs {}", mountpoint.display()));
    }
    Ok(())
}
