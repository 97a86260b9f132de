//! DeleteRecords and DescribeLogDirs.

use std::collections::BTreeMap;
use std::path::Path;

use rill_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use rill_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use rill_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName,
};

use super::s;
use crate::broker::Broker;
use crate::error::KafkaError;

pub fn delete_records(broker: &Broker, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topics.get(t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|dp| {
                    let result = topic
                        .as_ref()
                        .ok_or(KafkaError::UnknownTopicOrPartition)
                        .and_then(|t| t.partition(dp.partition_index))
                        .and_then(|p| {
                            p.check_leader()?;
                            let hw = p.high_watermark();
                            // -1 means "up to the high watermark".
                            let target = if dp.offset == -1 { hw } else { dp.offset };
                            if target < 0 || target > hw {
                                return Err(KafkaError::OffsetOutOfRange {
                                    requested: target,
                                    log_start: p.log.log_start_offset(),
                                    log_end: hw,
                                });
                            }
                            match (&broker.cluster, topic.as_ref()) {
                                // Every replica must move its log start, so the request goes
                                // through the metadata log; this node (the leader) then
                                // deletes at once and answers with its new log start.
                                (Some(_), Some(t)) => broker.delete_records_replicated(t, &p, target),
                                _ => Ok(p.log.delete_records_before(target)?),
                            }
                        });
                    let r = DeleteRecordsPartitionResult::default().with_partition_index(dp.partition_index);
                    match result {
                        Ok(low) => r.with_low_watermark(low),
                        Err(e) => r.with_error_code(e.code()).with_low_watermark(-1),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

/// (total, usable) bytes of the filesystem holding `path`, or -1s when it cannot be read.
fn disk_space(path: &Path) -> (i64, i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return (-1, -1);
    };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return (-1, -1);
    }
    let frsize = st.f_frsize as i64;
    (st.f_blocks as i64 * frsize, st.f_bavail as i64 * frsize)
}

pub fn describe_log_dirs(broker: &Broker, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // None means every partition.
    let filter: Option<BTreeMap<String, Vec<i32>>> =
        req.topics.map(|ts| ts.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
    let mut per_dir: BTreeMap<std::path::PathBuf, BTreeMap<String, Vec<DescribeLogDirsPartition>>> =
        broker.config.log_dirs.iter().map(|d| (d.clone(), BTreeMap::new())).collect();
    for t in broker.topics.list() {
        let wanted = match &filter {
            None => None,
            Some(f) => match f.get(&t.name) {
                Some(ps) => Some(ps),
                None => continue,
            },
        };
        for p in t.hosted() {
            if wanted.is_some_and(|w| !w.contains(&p.index)) {
                continue;
            }
            let dir = p.dir.parent().map(Path::to_path_buf).unwrap_or_default();
            let entry = DescribeLogDirsPartition::default()
                .with_partition_index(p.index)
                .with_partition_size(p.log.size_bytes() as i64)
                .with_offset_lag(0);
            per_dir.entry(dir).or_default().entry(t.name.clone()).or_default().push(entry);
        }
    }
    let results = per_dir
        .into_iter()
        .map(|(dir, topics)| {
            let (total, usable) = disk_space(&dir);
            let abs = std::fs::canonicalize(&dir).unwrap_or(dir);
            DescribeLogDirsResult::default()
                .with_log_dir(s(abs.display().to_string()))
                .with_total_bytes(total)
                .with_usable_bytes(usable)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, parts)| {
                            DescribeLogDirsTopic::default().with_name(TopicName(s(name))).with_partitions(parts)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeLogDirsResponse::default().with_results(results)
}
