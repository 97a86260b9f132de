//! The lossy filesystem keeps exactly what was fsynced across a power loss.
//!
//! These need root and /dev/fuse; without them they fail (with the reason), they do not skip:
//! a harness whose power-loss nemesis silently does nothing would pass every check.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rill_jepsen::lossyfs::LossyFs;

/// Fields drop in order: the mount goes before its temporary directory.
struct Fixture {
    fs: LossyFs,
    backing: PathBuf,
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

fn mounted() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let backing = dir.path().join("backing");
    let mnt = dir.path().join("mnt");
    let fs = match LossyFs::mount(&backing, &mnt) {
        Ok(fs) => fs,
        Err(e) => panic!("the lossy filesystem needs root and /dev/fuse: {e:#}"),
    };
    Fixture { fs, backing, mnt, _dir: dir }
}

fn read(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut out)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn only_fsynced_writes_survive_a_power_loss() {
    let mut fx = mounted();
    let path = fx.mnt.join("segment");
    let mut f = File::create(&path).unwrap();
    f.write_all(b"hello world").unwrap();
    f.sync_all().unwrap();
    // An overwrite and an append, neither synced; close() (FUSE flush) must not make them durable.
    f.write_all_at(b"HELLO", 0).unwrap();
    f.write_all(b" and more").unwrap();
    drop(f);
    assert_eq!(read(&path), b"HELLO world and more");
    assert_eq!(fs::metadata(&path).unwrap().len(), 20);
    assert_eq!(fx.fs.dirty_bytes(), 14);
    assert_eq!(fx.fs.dirty_files(), vec![(PathBuf::from("segment"), 14)]);
    assert_eq!(read(&fx.backing.join("segment")), b"hello world", "held writes must not reach the backing file");

    fx.fs.power_loss().unwrap();
    assert_eq!(read(&path), b"hello world");
    assert_eq!(fs::metadata(&path).unwrap().len(), 11);
    assert_eq!(fx.fs.dirty_bytes(), 0);

    // fdatasync counts as well, and an O_APPEND descriptor appends at the logical end.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"!").unwrap();
    f.sync_data().unwrap();
    f.write_all(b"?").unwrap();
    drop(f);
    assert_eq!(read(&path), b"hello world!?");
    fx.fs.power_loss().unwrap();
    assert_eq!(read(&path), b"hello world!");

    // A clean unmount keeps what was not synced, as a clean shutdown would.
    fs::write(&path, b"kept").unwrap();
    fx.fs.unmount().unwrap();
    assert_eq!(read(&fx.backing.join("segment")), b"kept");
}

#[test]
fn o_sync_writes_are_durable_without_fsync() {
    let mut fx = mounted();
    let path = fx.mnt.join("journal");
    let mut f = OpenOptions::new().write(true).create(true).custom_flags(libc::O_DSYNC).open(&path).unwrap();
    f.write_all(b"synchronous").unwrap();
    drop(f);
    assert_eq!(fx.fs.dirty_bytes(), 0);
    fx.fs.power_loss().unwrap();
    assert_eq!(read(&path), b"synchronous");
}

#[test]
fn directory_operations_are_durable_file_data_is_not() {
    let mut fx = mounted();
    let mnt = fx.mnt.clone();
    fs::create_dir(mnt.join("topic-0")).unwrap();
    let mut synced = File::create(mnt.join("topic-0/a.log")).unwrap();
    synced.write_all(b"durable").unwrap();
    synced.sync_all().unwrap();
    fs::write(mnt.join("topic-0/b.log"), b"volatile").unwrap();
    fs::write(mnt.join("topic-0/gone.log"), b"x").unwrap();
    fs::rename(mnt.join("topic-0/a.log"), mnt.join("topic-0/a2.log")).unwrap();
    fs::rename(mnt.join("topic-0/b.log"), mnt.join("topic-0/b2.log")).unwrap();
    // A renamed file's held writes follow it, and are still fsynced through an old descriptor.
    synced.write_all(b" too").unwrap();
    synced.sync_all().unwrap();
    drop(synced);
    fs::rename(mnt.join("topic-0"), mnt.join("topic-1")).unwrap();
    assert_eq!(read(&mnt.join("topic-1/b2.log")), b"volatile");
    fs::remove_file(mnt.join("topic-1/gone.log")).unwrap();
    // An unlinked file's writes can never become durable: they are not counted as held.
    assert_eq!(fx.fs.dirty_bytes(), 8);

    fx.fs.power_loss().unwrap();
    assert_eq!(names(&mnt), ["topic-1"]);
    assert_eq!(names(&mnt.join("topic-1")), ["a2.log", "b2.log"]);
    assert_eq!(read(&mnt.join("topic-1/a2.log")), b"durable too");
    // Created and renamed (durable), but its data never fsynced.
    assert_eq!(read(&mnt.join("topic-1/b2.log")), b"");
}

#[test]
fn mmap_writes_survive_only_if_msynced() {
    let mut fx = mounted();
    let path = fx.mnt.join("00000000000000000000.index");
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    // Preallocated like a Kafka or Rill index: the extension is metadata, durable at once.
    file.set_len(8192).unwrap();
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
    map[..4096].fill(1);
    // msync(MS_SYNC): the kernel writes the dirty page back, then fsyncs.
    map.flush().unwrap();
    assert_eq!(&read(&fx.backing.join("00000000000000000000.index"))[..4096], &[1u8; 4096][..]);
    map[4096..].fill(2);
    let before = read(&path);
    assert!(before[4096..].iter().all(|&b| b == 2), "a read sees the mapping's unsynced writes");
    drop(map);
    drop(file);
    // close() of a FUSE file writes back dirty pages: they arrive as writes, and are held.
    assert!(fx.fs.dirty_bytes() >= 4096, "held: {}", fx.fs.dirty_bytes());

    fx.fs.power_loss().unwrap();
    let after = read(&path);
    assert_eq!(after.len(), 8192);
    assert!(after[..4096].iter().all(|&b| b == 1), "msynced page lost");
    assert!(after[4096..].iter().all(|&b| b == 0), "unsynced page survived");
}

#[test]
fn unsynced_mmap_writes_of_a_live_mapping_are_lost() {
    // The writer is killed with its mapping still dirty in the kernel's page cache: those
    // pages must not survive the remount.
    let mut fx = mounted();
    let path = fx.mnt.join("index");
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    file.set_len(4096).unwrap();
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
    map.fill(7);
    // Held open across the power loss: the old mount is busy and is detached lazily.
    fx.fs.power_loss().unwrap();
    assert_eq!(read(&path), vec![0u8; 4096]);
    drop(map);
    drop(file);
}

#[test]
fn truncation_and_extension_are_durable_at_once() {
    let mut fx = mounted();
    let path = fx.mnt.join("log");
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    f.write_all_at(b"0123456789", 0).unwrap();
    f.sync_all().unwrap();
    f.write_all_at(b"abcdef", 10).unwrap();
    // Shrinking drops held bytes past the new end; what is left below it stays held.
    f.set_len(12).unwrap();
    assert_eq!(read(&path), b"0123456789ab");
    assert_eq!(fx.fs.dirty_bytes(), 2);
    f.set_len(20).unwrap();
    assert_eq!(read(&path), b"0123456789ab\0\0\0\0\0\0\0\0");
    drop(f);

    fx.fs.power_loss().unwrap();
    // The length (20) is durable; the held "ab" is not.
    assert_eq!(read(&path), b"0123456789\0\0\0\0\0\0\0\0\0\0");

    // Recovery truncating a torn tail, as a broker does at start-up: durable without fsync.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(4).unwrap();
    drop(f);
    fx.fs.power_loss().unwrap();
    assert_eq!(read(&path), b"0123");
}

#[test]
fn concurrent_writers_keep_exactly_their_fsynced_prefixes() {
    let mut fx = mounted();
    let writers: Vec<_> = (0..6u8)
        .map(|w| {
            let path = fx.mnt.join(format!("w{w}"));
            std::thread::spawn(move || {
                let mut f = File::create(&path).unwrap();
                let mut written = Vec::new();
                let mut durable = Vec::new();
                for i in 0..400u32 {
                    // Record sizes that straddle pages and FUSE write sizes.
                    let chunk = vec![w.wrapping_mul(31).wrapping_add(i as u8); 1 + (i as usize * 977) % 9000];
                    f.write_all(&chunk).unwrap();
                    written.extend_from_slice(&chunk);
                    if i % 7 == 3 {
                        f.sync_data().unwrap();
                        durable.clone_from(&written);
                    }
                }
                (path, written, durable)
            })
        })
        .collect();
    let results: Vec<_> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    for (path, written, _) in &results {
        assert!(read(path) == *written, "{} reads back wrong before the power loss", path.display());
    }
    let held: u64 = results.iter().map(|(_, w, d)| (w.len() - d.len()) as u64).sum();
    assert_eq!(fx.fs.dirty_bytes(), held);
    fx.fs.power_loss().unwrap();
    for (path, _, durable) in &results {
        let after = read(path);
        assert!(
            after == *durable,
            "{}: {} bytes after the power loss, {} fsynced",
            path.display(),
            after.len(),
            durable.len()
        );
    }
}
