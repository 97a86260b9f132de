//! Bounded resources: thousands of partitions in one process must fit in vm.max_map_count
//! (65530) and a sane number of file descriptors. Own test binary so the counts are ours.

mod common;

use std::fs;

use common::batch;
use rill_storage::{LogConfig, PartitionLog};

fn maps() -> usize {
    fs::read_to_string("/proc/self/maps").unwrap().lines().count()
}

fn fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn two_thousand_partitions_stay_within_map_limits() {
    const N: usize = 2000;
    // tmpfs when available: this test is about maps and descriptors, not disk flush latency.
    let shm = std::path::Path::new("/dev/shm");
    let root = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
    let config =
        LogConfig { segment_bytes: 1024, segment_index_bytes: 4096, index_interval_bytes: 128, ..LogConfig::default() };
    let (maps_before, fds_before) = (maps(), fds());
    let logs: Vec<PartitionLog> =
        (0..N).map(|p| PartitionLog::open(&root.path().join(format!("t-{p}")), config.clone()).unwrap()).collect();
    for log in &logs {
        // Several segments each, then a read from the oldest one (opens it through the cache).
        for i in 0..8 {
            log.append(&mut batch(2, i, 200, i as u8), 0, None).unwrap();
        }
        log.sync(i64::MAX).unwrap();
        assert!(log.segment_count() >= 3);
        assert_eq!(log.read(0, 1, i64::MAX).unwrap().records.len(), 261);
        assert_eq!(log.offset_for_timestamp(5).unwrap(), Some((10, 5)));
    }
    let (maps_used, fds_used) = (maps() - maps_before, fds() - fds_before);
    println!("{N} partitions: {maps_used} maps, {fds_used} fds");
    // Active segment: 2 index maps + 1 fd; reader cache: 2 maps + 1 fd.
    assert!(maps_used <= N * 4 + 64, "{maps_used} maps for {N} partitions");
    assert!(fds_used <= N * 2 + 64, "{fds_used} fds for {N} partitions");
    for log in &logs {
        log.close().unwrap();
    }
    let maps_left = maps().saturating_sub(maps_before);
    assert!(maps_left < 64, "{maps_left} maps left after close");
    drop(logs);
    assert!(fds() <= fds_before + 8);
    // Reopening all of them is cheap and starts with only the active segments mapped.
    let before = maps();
    let logs: Vec<PartitionLog> =
        (0..N).map(|p| PartitionLog::open(&root.path().join(format!("t-{p}")), config.clone()).unwrap()).collect();
    let used = maps() - before;
    assert!(used <= N * 2 + 64, "{used} maps after reopen");
    assert!(logs.iter().all(|l| l.log_end_offset() == 16));
}
