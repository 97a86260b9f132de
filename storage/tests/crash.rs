//! A real crash: a child process appends and syncs in a loop, reporting what is durable; the
//! parent kills it with SIGKILL mid-flight and checks every synced offset survives byte-exact.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{batch, stamped};
use rill_storage::{LogConfig, PartitionLog};

const CHILD_ENV: &str = "RILL_STORAGE_CRASH_CHILD_DIR";
const EPOCH: i32 = 7;

fn config() -> LogConfig {
    LogConfig { segment_bytes: 8 << 10, index_interval_bytes: 512, segment_index_bytes: 4096, ..LogConfig::default() }
}

/// The i-th batch the child writes (deterministic so the parent can rebuild it).
fn nth_batch(i: u64) -> Vec<u8> {
    batch((i % 3) as i32 + 1, i as i64, (i * 37 % 300) as usize + 1, i as u8)
}

/// Not a test on its own: the body of the child process, a no-op unless spawned by the parent.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let log = PartitionLog::open(Path::new(&dir), config()).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let mut b = nth_batch(i);
        let info = log.append(&mut b, EPOCH, None).unwrap();
        if i % 3 == 2 {
            log.sync(info.last_offset + 1).unwrap();
            writeln!(out, "synced {i} {}", info.last_offset + 1).unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn kill_9_loses_nothing_synced() {
    for kill_after in [50, 400, 1500] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut synced = (0u64, 0i64);
        let mut lines = 0;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let mut parts = line.split_whitespace();
            if parts.next() != Some("synced") {
                continue;
            }
            synced = (parts.next().unwrap().parse().unwrap(), parts.next().unwrap().parse().unwrap());
            lines += 1;
            if lines == kill_after {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        child.wait().unwrap();
        assert!(lines == kill_after, "child stopped early");

        let log = PartitionLog::open(dir.path(), config()).unwrap();
        let end = log.log_end_offset();
        assert!(end >= synced.1, "log end {end} below synced offset {}", synced.1);
        // Every batch present (synced ones and any that reached the page cache) is exact.
        let (mut i, mut offset) = (0u64, 0i64);
        while offset < end {
            let expect = stamped(nth_batch(i), offset, EPOCH);
            let got = log.read(offset, 1, i64::MAX).unwrap().records;
            assert_eq!(&got[..], &expect[..], "batch {i} at offset {offset}");
            offset += (i % 3) as i64 + 1;
            i += 1;
        }
        assert_eq!(offset, end, "log ends on a batch boundary");
        assert!(i > synced.0);
    }
}
