//! Golden-bytes tests against the real Apache Kafka Java client.
//!
//! `tests/golden/*.bin` are request and response frames (header + body, without the 4-byte
//! size prefix) built and serialized by `org.apache.kafka:kafka-clients` 4.1.1, for every
//! stable version of a representative set of APIs, with non-default field values: nulls,
//! tagged fields, unknown tagged fields, topic ids, real record batches (none and gzip). The
//! generator is `golden-java/` (run `golden-java/regen.sh`); the files are checked in, so this
//! test needs no Java.
//!
//! Every file must decode (header and body) and re-encode to exactly the same bytes. Every
//! request must also go through the broker's entry point, [`rill_protocol::decode_request`].
//! Record batches inside Produce requests and Fetch responses must pass the broker's batch
//! validation and decode to the records the Java client wrote.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use rill_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use rill_protocol::{batch, decode_request, records, Decodable, Encodable};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// A golden file: `<Api>Request-v<N>.bin` or `<Api>Response-v<N>.bin`.
struct Case {
    file: String,
    api: String,
    side: Side,
    version: i16,
    bytes: Bytes,
}

fn load_cases() -> Vec<Case> {
    let dir = golden_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("golden directory {} is missing ({e}); run golden-java/regen.sh", dir.display()));
    let mut cases = Vec::new();
    for entry in entries {
        let path = entry.expect("read_dir entry").path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".bin") else {
            continue;
        };
        let (name, version) = stem.rsplit_once("-v").unwrap_or_else(|| panic!("bad golden file name {file}"));
        let version: i16 = version.parse().unwrap_or_else(|_| panic!("bad version in {file}"));
        let (api, side) = if let Some(api) = name.strip_suffix("Request") {
            (api, Side::Request)
        } else if let Some(api) = name.strip_suffix("Response") {
            (api, Side::Response)
        } else {
            panic!("golden file {file} is neither a Request nor a Response");
        };
        let bytes = Bytes::from(std::fs::read(&path).unwrap());
        let api = api.to_string();
        cases.push(Case { file, api, side, version, bytes });
    }
    cases.sort_by(|a, b| {
        (&a.api, a.side == Side::Response, a.version).cmp(&(&b.api, b.side == Side::Response, b.version))
    });
    assert!(!cases.is_empty(), "no golden files in {}; run golden-java/regen.sh", dir.display());
    cases
}

/// The api key a golden file is named after, found by its `Debug` name (`ApiKey::Metadata`).
fn api_key_named(name: &str) -> ApiKey {
    (0..200)
        .filter_map(|k| ApiKey::try_from(k).ok())
        .find(|k| format!("{k:?}") == name)
        .unwrap_or_else(|| panic!("no ApiKey named {name}"))
}

/// Where two byte strings first differ, with a little context, for failure messages.
fn describe_mismatch(expected: &[u8], actual: &[u8]) -> String {
    let at = expected.iter().zip(actual).position(|(a, b)| a != b).unwrap_or(expected.len().min(actual.len()));
    let window = |b: &[u8]| {
        let lo = at.saturating_sub(8);
        let hi = (at + 16).min(b.len());
        b[lo..hi].iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x} ");
            s
        })
    };
    format!(
        "first difference at byte {at} (java {} bytes, rust {} bytes)\n  java: {}\n  rust: {}",
        expected.len(),
        actual.len(),
        window(expected),
        window(actual)
    )
}

/// Decodes one golden request with the generated codecs and re-encodes it.
fn roundtrip_request(case: &Case, api_key: ApiKey) -> Result<RequestKind, String> {
    let mut buf = case.bytes.clone();
    if buf.len() < 4 {
        return Err("shorter than a header prefix".into());
    }
    let key = i16::from_be_bytes([buf[0], buf[1]]);
    let version = i16::from_be_bytes([buf[2], buf[3]]);
    if key != api_key as i16 || version != case.version {
        return Err(format!("header says api key {key} v{version}, file name says {api_key:?} v{}", case.version));
    }
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut buf, header_version).map_err(|e| format!("header: {e:#}"))?;
    let body = RequestKind::decode(api_key, &mut buf, version).map_err(|e| format!("body: {e:#}"))?;
    if !buf.is_empty() {
        return Err(format!("{} bytes left after the body", buf.len()));
    }
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).map_err(|e| format!("encode header: {e:#}"))?;
    let header_len = out.len();
    body.encode(&mut out, version).map_err(|e| format!("encode body: {e:#}"))?;
    if out[..] != case.bytes[..] {
        return Err(format!(
            "re-encoded bytes differ (header is {header_len} bytes): {}",
            describe_mismatch(&case.bytes, &out)
        ));
    }
    let size = rill_protocol::request_body_size(&body, version).map_err(|e| format!("size: {e:#}"))?;
    if size != out.len() - header_len {
        return Err(format!("request_body_size says {size}, encoded body is {}", out.len() - header_len));
    }

    // The broker's path: same payload through decode_request, accepting every version.
    let request =
        decode_request(case.bytes.clone(), |_| Some((0, i16::MAX))).map_err(|e| format!("decode_request: {e:#}"))?;
    if request.api_key != api_key || request.version() != version || request.header != header {
        return Err("decode_request gave a different header".into());
    }
    if request.body != body {
        return Err("decode_request gave a different body".into());
    }
    // And with the versions the broker advertises.
    if let Some((min, max)) = rill_protocol::supported_versions(api_key) {
        if version >= min && version <= max {
            decode_request(case.bytes.clone(), rill_protocol::supported_versions)
                .map_err(|e| format!("decode_request(supported_versions): {e:#}"))?;
        }
    }
    Ok(body)
}

/// Decodes one golden response with the generated codecs and re-encodes it.
fn roundtrip_response(case: &Case, api_key: ApiKey) -> Result<ResponseKind, String> {
    let mut buf = case.bytes.clone();
    let version = case.version;
    let header_version = api_key.response_header_version(version);
    if api_key == ApiKey::ApiVersions && header_version != 0 {
        return Err(format!("ApiVersions v{version} response header must be v0, got v{header_version}"));
    }
    let header = ResponseHeader::decode(&mut buf, header_version).map_err(|e| format!("header: {e:#}"))?;
    let body = ResponseKind::decode(api_key, &mut buf, version).map_err(|e| format!("body: {e:#}"))?;
    if !buf.is_empty() {
        return Err(format!("{} bytes left after the body", buf.len()));
    }
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).map_err(|e| format!("encode header: {e:#}"))?;
    let header_len = out.len();
    body.encode(&mut out, version).map_err(|e| format!("encode body: {e:#}"))?;
    if out[..] != case.bytes[..] {
        return Err(format!(
            "re-encoded bytes differ (header is {header_len} bytes): {}",
            describe_mismatch(&case.bytes, &out)
        ));
    }
    let size = rill_protocol::response_body_size(&body, version).map_err(|e| format!("size: {e:#}"))?;
    if size != out.len() - header_len {
        return Err(format!("response_body_size says {size}, encoded body is {}", out.len() - header_len));
    }

    // The broker's framing: encode_response writes size prefix + header + body. The Java
    // header may carry unknown tagged fields that encode_response (rightly) does not, so
    // compare only when the header is plain.
    if header.unknown_tagged_fields.is_empty() {
        let mut framed = BytesMut::new();
        rill_protocol::encode_response(&mut framed, api_key, version, header.correlation_id, &body)
            .map_err(|e| format!("encode_response: {e:#}"))?;
        let size = i32::from_be_bytes(framed[..4].try_into().unwrap());
        if size as usize != framed.len() - 4 || framed[4..] != case.bytes[..] {
            return Err(format!("encode_response differs: {}", describe_mismatch(&case.bytes, &framed[4..])));
        }
    }
    Ok(body)
}

/// `Err(message)` unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// The three records `GenerateGolden.sampleRecords()` writes into every batch.
fn check_sample_records(records: &[records::RecordOut], base: i64, what: &str) -> Result<(), String> {
    const TS: i64 = 1_700_000_000_123;
    ensure!(records.len() == 3, "{what}: {} records, expected 3", records.len());
    for (i, r) in records.iter().enumerate() {
        ensure!(r.offset == base + i as i64, "{what}: record {i} has offset {}", r.offset);
        ensure!(r.timestamp == TS + i as i64, "{what}: record {i} has timestamp {}", r.timestamp);
        ensure!(!r.control, "{what}: record {i} is a control record");
    }
    let some = |b: &'static [u8]| Some(Bytes::from_static(b));
    let header = |key: &'static [u8], value: Option<&'static [u8]>| records::RecordHeader {
        key: Bytes::from_static(key),
        value: value.map(Bytes::from_static),
    };
    let expected = [
        (some(b"key-0"), some(b"value-0"), vec![header(b"trace-id", Some(b"abc123")), header(b"empty", None)]),
        (None, some(b"value-1 (null key)"), vec![]),
        (some(b"key-2"), None, vec![]),
    ];
    for (i, (r, (key, value, headers))) in records.iter().zip(expected).enumerate() {
        ensure!(r.key == key && r.value == value, "{what}: record {i} is {:?} = {:?}", r.key, r.value);
        ensure!(r.headers == headers, "{what}: record {i} has headers {:?}", r.headers);
    }
    Ok(())
}

/// Produce batches must pass the broker's produce-path validation (header, CRC, records) and
/// decode to the records Java wrote. Returns the number of batches.
fn check_produce_records(case: &Case, body: &RequestKind) -> Result<usize, String> {
    let RequestKind::Produce(req) = body else { return Err("not a produce request".into()) };
    let mut batches = 0;
    for topic in &req.topic_data {
        for p in &topic.partition_data {
            let what = format!("partition {}", p.index);
            let recs = p.records.as_ref().ok_or_else(|| format!("{what}: null records"))?;
            for item in batch::split_batches(recs) {
                let (_, b) = item.map_err(|e| format!("{what}: split_batches: {e}"))?;
                batch::validate(b).map_err(|e| format!("{what}: batch::validate: {e}"))?;
                records::validate_records(b).map_err(|e| format!("{what}: validate_records: {e}"))?;
                batches += 1;
            }
            let decoded = records::decode_batches(recs).map_err(|e| format!("{what}: decode_batches: {e}"))?;
            check_sample_records(&decoded, 0, &what)?;
        }
    }
    ensure!(batches > 0, "{}: no record batches", case.file);
    Ok(batches)
}

/// Fetch responses carry two batches at offset 100.. (none, then gzip), an empty record set
/// and a null one. Returns the number of batches.
fn check_fetch_records(body: &ResponseKind) -> Result<usize, String> {
    let ResponseKind::Fetch(resp) = body else { return Err("not a fetch response".into()) };
    let parts: Vec<_> = resp.responses.iter().flat_map(|t| &t.partitions).collect();
    ensure!(parts.len() == 3, "{} partitions, expected 3", parts.len());
    let recs = parts[0].records.as_ref().ok_or("partition 0: null records")?;
    let decoded = records::decode_batches(recs).map_err(|e| format!("partition 0: decode_batches: {e}"))?;
    ensure!(decoded.len() == 6, "partition 0: {} records, expected 6", decoded.len());
    check_sample_records(&decoded[..3], 100, "partition 0, batch 1")?;
    check_sample_records(&decoded[3..], 103, "partition 0, batch 2 (gzip)")?;
    ensure!(parts[1].records.as_deref() == Some(&[][..]), "partition 1: records should be empty, not null");
    ensure!(parts[2].records.is_none(), "partition 2: records should be null");
    Ok(2)
}

#[test]
fn java_client_golden_bytes_roundtrip() {
    let cases = load_cases();
    let mut failures = Vec::new();
    let (mut requests, mut responses, mut batches) = (0, 0, 0);
    let mut apis = std::collections::BTreeSet::new();
    for case in &cases {
        let api_key = api_key_named(&case.api);
        apis.insert(case.api.clone());
        let result = match case.side {
            Side::Request => roundtrip_request(case, api_key).and_then(|body| {
                if api_key == ApiKey::Produce {
                    batches += check_produce_records(case, &body)?;
                }
                requests += 1;
                Ok(())
            }),
            Side::Response => roundtrip_response(case, api_key).and_then(|body| {
                if api_key == ApiKey::Fetch {
                    batches += check_fetch_records(&body)?;
                }
                responses += 1;
                Ok(())
            }),
        };
        if let Err(e) = result {
            failures.push(format!("{}: {e}", case.file));
        }
    }
    eprintln!(
        "golden: {} files ({requests} requests, {responses} responses ok), {} APIs, {batches} record batches",
        cases.len(),
        apis.len()
    );
    assert!(failures.is_empty(), "{} of {} golden files failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    // Every API must have both sides, so a lost file shows up.
    for api in &apis {
        for side in [Side::Request, Side::Response] {
            assert!(cases.iter().any(|c| &c.api == api && c.side == side), "{api}: no {side:?} golden files");
        }
    }
}

/// The golden set must cover the oldest version Kafka 4.0 accepts (KIP-896) and the newest
/// stable one, for the APIs a Kafka client needs first.
#[test]
fn golden_set_covers_version_extremes() {
    let cases = load_cases();
    let has = |api: &str, side: Side, v: i16| cases.iter().any(|c| c.api == api && c.side == side && c.version == v);
    for (api, oldest, newest) in [
        ("ApiVersions", 0, 4),
        ("Metadata", 0, 13),
        ("Produce", 3, 13),
        ("Fetch", 4, 18),
        ("ListOffsets", 1, 10),
        ("CreateTopics", 2, 7),
        ("DeleteTopics", 1, 6),
        ("DescribeConfigs", 1, 4),
        ("IncrementalAlterConfigs", 0, 1),
        ("InitProducerId", 0, 5),
        ("FindCoordinator", 0, 6),
        ("JoinGroup", 0, 9),
        ("OffsetCommit", 2, 9),
        ("DescribeCluster", 0, 2),
        ("DescribeTopicPartitions", 0, 0),
    ] {
        for side in [Side::Request, Side::Response] {
            for v in oldest..=newest {
                assert!(has(api, side, v), "missing golden {api}{side:?}-v{v}.bin");
            }
        }
    }
}
