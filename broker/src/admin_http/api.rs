//! `/v1/...`: JSON status of the broker, its topics and consumer groups, and a record browser.
//! Runs on a blocking thread (it reads logs and takes partition locks).

use std::sync::atomic::Ordering;

use hyper::StatusCode;
use serde_json::{json, Value};

use super::{error, json, Reply};
use crate::broker::Broker;
use crate::metrics::{disk_space, group_lag};
use crate::topics::{Partition, Topic};

/// Most records one browser request returns.
const MAX_RECORDS: usize = 500;
/// Bytes read from the log per browser request, at most (a batch larger than this is still
/// read whole, once).
const MAX_READ_BYTES: usize = 4 << 20;

pub fn handle(broker: &Broker, ready: bool, path: &str, query: &str) -> Reply {
    let parts: Vec<String> = path.trim_end_matches('/').split('/').skip(2).map(percent_decode).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["cluster"] => json(StatusCode::OK, &cluster(broker, ready)),
        ["topics"] => {
            json(StatusCode::OK, &Value::Array(broker.topics.list().iter().map(|t| topic_summary(t)).collect()))
        }
        ["topics", name] => match broker.topics.get(name) {
            Some(t) => json(StatusCode::OK, &topic_detail(&t, broker.node_id())),
            None => error(StatusCode::NOT_FOUND, "no such topic"),
        },
        ["topics", name, "partitions", p, "records"] => {
            let Ok(p) = p.parse::<i32>() else { return error(StatusCode::BAD_REQUEST, "partition is not a number") };
            let limit =
                query_param(query, "limit").and_then(|v| v.parse().ok()).unwrap_or(20usize).clamp(1, MAX_RECORDS);
            match broker.topics.partition(name, p) {
                Ok(part) => match newest_records(&part, limit) {
                    Ok(v) => json(StatusCode::OK, &v),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
                },
                Err(_) => error(StatusCode::NOT_FOUND, "no such topic or partition"),
            }
        }
        ["groups"] => json(StatusCode::OK, &groups(broker)),
        ["groups", id] => match group_detail(broker, id) {
            Some(v) => json(StatusCode::OK, &v),
            None => error(StatusCode::NOT_FOUND, "no such group"),
        },
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sum(t: &Topic, f: impl Fn(&Partition) -> u64) -> u64 {
    t.hosted().map(|p| f(p)).sum()
}

fn cluster(broker: &Broker, ready: bool) -> Value {
    let topics = broker.topics.list();
    let groups = broker.groups.list();
    let c = &broker.config;
    let dirs: Vec<Value> = c
        .log_dirs
        .iter()
        .map(|d| {
            let (free, total) = disk_space(d).unwrap_or((0, 0));
            json!({ "dir": d.display().to_string(), "free_bytes": free, "total_bytes": total })
        })
        .collect();
    let advertised: Vec<Value> =
        c.advertised_listeners.iter().map(|l| json!({ "name": l.name, "host": l.host, "port": l.port })).collect();
    let total = |f: fn(&Partition) -> u64| topics.iter().map(|t| sum(t, f)).sum::<u64>();
    json!({
        "cluster_id": broker.topics.cluster_id(),
        "node_id": broker.node_id(),
        "controller_id": broker.node_id(),
        "version": env!("CARGO_PKG_VERSION"),
        "ready": ready,
        "uptime_seconds": crate::metrics::get().uptime().as_secs_f64(),
        "brokers": [{ "node_id": broker.node_id(), "listeners": advertised }],
        "topics": topics.len(),
        "partitions": topics.iter().map(|t| t.partitions.len()).sum::<usize>(),
        "under_replicated_partitions": 0,
        "offline_partitions": 0,
        "groups": groups.len(),
        "log_size_bytes": total(|p| p.log.size_bytes()),
        "bytes_in_total": total(|p| p.stats.bytes_in.load(Ordering::Relaxed)),
        "bytes_out_total": total(|p| p.stats.bytes_out.load(Ordering::Relaxed)),
        "messages_in_total": total(|p| p.stats.messages_in.load(Ordering::Relaxed)),
        "messages_out_total": total(|p| p.stats.messages_out.load(Ordering::Relaxed)),
        "log_dirs": dirs,
    })
}

fn partition_json(p: &Partition, leader: i32) -> Value {
    json!({
        "partition": p.index,
        "leader": leader,
        "log_start_offset": p.log.log_start_offset(),
        "log_end_offset": p.log.log_end_offset(),
        "size_bytes": p.log.size_bytes(),
        "segments": p.log.segment_count(),
        "bytes_in": p.stats.bytes_in.load(Ordering::Relaxed),
        "bytes_out": p.stats.bytes_out.load(Ordering::Relaxed),
        "messages_in": p.stats.messages_in.load(Ordering::Relaxed),
        "messages_out": p.stats.messages_out.load(Ordering::Relaxed),
    })
}

fn topic_summary(t: &Topic) -> Value {
    json!({
        "name": t.name,
        "id": t.id.to_string(),
        "internal": t.name == crate::groups::OFFSETS_TOPIC,
        "partitions": t.partitions.len(),
        "size_bytes": sum(t, |p| p.log.size_bytes()),
        "messages": sum(t, |p| (p.log.log_end_offset() - p.log.log_start_offset()).max(0) as u64),
        "bytes_in": sum(t, |p| p.stats.bytes_in.load(Ordering::Relaxed)),
        "bytes_out": sum(t, |p| p.stats.bytes_out.load(Ordering::Relaxed)),
        "messages_in": sum(t, |p| p.stats.messages_in.load(Ordering::Relaxed)),
        "messages_out": sum(t, |p| p.stats.messages_out.load(Ordering::Relaxed)),
    })
}

fn topic_detail(t: &Topic, leader: i32) -> Value {
    let mut v = topic_summary(t);
    v["configs"] = json!(t.configs);
    v["partition_details"] = Value::Array(t.hosted().map(|p| partition_json(p, leader)).collect());
    v
}

fn groups(broker: &Broker) -> Value {
    Value::Array(
        broker
            .groups
            .snapshots()
            .into_iter()
            .map(|s| {
                let lag = group_lag(broker, &s.group);
                json!({
                    "group": s.group,
                    "type": s.kind,
                    "state": s.state,
                    "members": s.members,
                    "generation": s.generation,
                    "partitions": lag.len(),
                    "lag": lag.iter().map(|l| l.lag).sum::<i64>(),
                })
            })
            .collect(),
    )
}

fn group_detail(broker: &Broker, id: &str) -> Option<Value> {
    let snap = broker.groups.snapshots().into_iter().find(|s| s.group == id)?;
    let members: Vec<Value> = broker
        .groups
        .describe(id)
        .map(|d| {
            d.members
                .iter()
                .map(|m| json!({ "member_id": m.member_id, "client_id": m.client_id, "client_host": m.client_host, "instance_id": m.instance_id }))
                .collect()
        })
        .unwrap_or_default();
    let lag = group_lag(broker, id);
    Some(json!({
        "group": snap.group,
        "type": snap.kind,
        "state": snap.state,
        "generation": snap.generation,
        "members": members,
        "lag": lag.iter().map(|l| l.lag).sum::<i64>(),
        "offsets": lag,
    }))
}

/// A key or value three ways: UTF-8 text if it is, hex, and the schema id if it looks like
/// Confluent's wire format (magic 0, 4-byte schema id, then the encoded payload).
fn bytes_json(b: Option<&[u8]>) -> Value {
    let Some(b) = b else { return Value::Null };
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let schema_id = (b.len() >= 5 && b[0] == 0).then(|| i32::from_be_bytes([b[1], b[2], b[3], b[4]]));
    json!({
        "size": b.len(),
        "text": std::str::from_utf8(b).ok(),
        "hex": hex,
        "schema_id": schema_id,
    })
}

/// The newest `limit` records of a partition, oldest first.
fn newest_records(p: &Partition, limit: usize) -> Result<Value, String> {
    let end = p.log.log_end_offset();
    let log_start = p.log.log_start_offset();
    let from = (end - limit as i64).max(log_start);
    let mut records = Vec::new();
    let mut offset = from;
    let mut read_bytes = 0usize;
    while offset < end && read_bytes < MAX_READ_BYTES {
        let r = p.log.read(offset, 1 << 20, end).map_err(|e| e.to_string())?;
        if r.records.is_empty() {
            break;
        }
        read_bytes += r.records.len();
        let decoded = rill_protocol::records::decode_batches(&r.records).map_err(|e| e.to_string())?;
        let Some(next) = rill_protocol::batch::next_offset(&r.records) else { break };
        for rec in decoded.into_iter().filter(|r| r.offset >= from && !r.control) {
            records.push(json!({
                "offset": rec.offset,
                "timestamp": rec.timestamp,
                "key": bytes_json(rec.key.as_deref()),
                "value": bytes_json(rec.value.as_deref()),
                "headers": rec.headers.iter().map(|h| json!({
                    "key": String::from_utf8_lossy(&h.key),
                    "value": bytes_json(h.value.as_deref()),
                })).collect::<Vec<_>>(),
            }));
        }
        // Continue after the last whole batch (compacted batches may end in removed records).
        offset = next;
    }
    Ok(json!({
        "topic": p.topic,
        "partition": p.index,
        "log_start_offset": log_start,
        "log_end_offset": end,
        "records": records,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("my%20group%2F1"), "my group/1");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
    }

    #[test]
    fn confluent_schema_id_is_read_from_the_wire_format() {
        let v = bytes_json(Some(&[0, 0, 0, 1, 44, 2, 3]));
        assert_eq!(v["schema_id"], 300);
        assert_eq!(v["hex"], "000000012c0203");
        assert_eq!(bytes_json(Some(b"hi"))["schema_id"], Value::Null);
    }
}
