use super::*;
use crate::batch::{validate, BatchError, Compression};
use kafka_protocol::records::{
    Compression as KpCompression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;

const HEADERS: &[Header<'static>] = &[("trace", Some(b"abc")), ("trace", None), ("", Some(b""))];

fn sample() -> Vec<RecordIn<'static>> {
    vec![
        RecordIn { key: Some(b"k0"), value: Some(b"hello"), headers: &[], timestamp: 1_700_000_000_000 },
        RecordIn { key: None, value: None, headers: HEADERS, timestamp: 1_699_999_999_000 },
        RecordIn { key: Some(b""), value: Some(&[7u8; 5000]), headers: &HEADERS[..1], timestamp: 1_700_000_000_123 },
    ]
}

fn expected(records: &[RecordIn<'_>], base_offset: i64) -> Vec<RecordOut> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| RecordOut {
            offset: base_offset + i as i64,
            timestamp: r.timestamp,
            key: r.key.map(Bytes::copy_from_slice),
            value: r.value.map(Bytes::copy_from_slice),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| RecordHeader {
                    key: Bytes::copy_from_slice(k.as_bytes()),
                    value: v.map(Bytes::copy_from_slice),
                })
                .collect(),
            control: false,
        })
        .collect()
}

/// Rewrites part of a batch and fixes its CRC, to build batches that are well framed but
/// wrong inside.
fn with_fixed_crc(mut batch: BytesMut, edit: impl FnOnce(&mut BytesMut)) -> BytesMut {
    edit(&mut batch);
    let len = (batch.len() - crate::batch::LOG_OVERHEAD) as i32;
    batch[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crate::batch::compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn kp_compression(c: Compression) -> KpCompression {
    match c {
        Compression::None => KpCompression::None,
        Compression::Gzip => KpCompression::Gzip,
        Compression::Snappy => KpCompression::Snappy,
        Compression::Lz4 => KpCompression::Lz4,
        Compression::Zstd => KpCompression::Zstd,
    }
}

#[test]
fn every_codec_round_trips() {
    let records = sample();
    for codec in Compression::ALL {
        let options = EncodeOptions { compression: codec, base_offset: 40, ..EncodeOptions::default() };
        let batch = encode_batch(&records, &options);
        let header = validate(&batch).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(header.compression(), Ok(codec));
        validate_records(&batch).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(decode_batches(&batch).unwrap(), expected(&records, 40), "{codec:?}");
        if codec != Compression::None {
            assert!(batch.len() < 5000, "{codec:?} did not compress the repetitive value");
        }
    }
}

#[test]
fn our_batches_decode_with_kafka_protocol() {
    let records = sample();
    for codec in Compression::ALL {
        let batch = encode_batch(&records, &EncodeOptions { compression: codec, ..EncodeOptions::default() });
        let mut buf = batch.freeze();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(set.records.len(), 3);
        assert_eq!(set.records[2].value.as_deref(), Some(&[7u8; 5000][..]));
        assert_eq!(set.records[1].timestamp, 1_699_999_999_000);
    }
}

#[test]
fn kafka_protocol_batches_validate_and_decode() {
    let record = |offset: i64, value: &'static [u8]| Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: 9,
        producer_epoch: 1,
        sequence: offset as i32,
        timestamp_type: TimestampType::Creation,
        offset,
        timestamp: 1000 + offset,
        key: None,
        value: Some(Bytes::from_static(value)),
        headers: Default::default(),
    };
    let records = [record(0, b"a"), record(1, b"bb"), record(2, &[3u8; 100_000])];
    for codec in Compression::ALL {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: kp_compression(codec) };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        validate(&buf).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        validate_records(&buf).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        let out = decode_batches(&buf).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].value.as_deref(), Some(&[3u8; 100_000][..]));
        assert_eq!(out[1].timestamp, 1001);
    }
}

#[test]
fn raw_snappy_without_xerial_framing_is_accepted() {
    let records = sample();
    let plain = encode_batch(&records, &EncodeOptions::default());
    let raw = snap::raw::Encoder::new().compress_vec(&plain[BATCH_HEADER_LEN..]).unwrap();
    let batch = with_fixed_crc(plain.clone(), |b| {
        b.truncate(BATCH_HEADER_LEN);
        b[22] |= Compression::Snappy as u8;
        b.extend_from_slice(&raw);
    });
    validate(&batch).unwrap();
    validate_records(&batch).unwrap();
    assert_eq!(decode_batches(&batch).unwrap(), expected(&records, 0));
}

#[test]
fn crc_mismatch_truncation_and_bad_magic_are_refused() {
    let batch = encode_batch(&sample(), &EncodeOptions { compression: Compression::Lz4, ..EncodeOptions::default() });

    let mut corrupt = batch.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(matches!(validate(&corrupt), Err(BatchError::CrcMismatch { .. })));
    assert!(matches!(decode_batches(&corrupt), Err(BatchError::CrcMismatch { .. })));

    let short = &batch[..batch.len() - 3];
    assert!(matches!(validate(short), Err(BatchError::Truncated { .. })));
    assert!(matches!(validate_records(short), Err(BatchError::Truncated { .. })));
    // A fetch response may end in a partial batch: decoding skips it.
    assert_eq!(decode_batches(short).unwrap(), vec![]);

    let mut magic = batch.clone();
    magic[16] = 1;
    assert_eq!(validate(&magic), Err(BatchError::UnsupportedMagic(1)));
    assert_eq!(validate_records(&magic), Err(BatchError::UnsupportedMagic(1)));
    assert_eq!(decode_batches(&magic), Err(BatchError::UnsupportedMagic(1)));
}

#[test]
fn record_level_damage_is_refused() {
    let records = sample();
    let plain = encode_batch(&records, &EncodeOptions::default());

    // Header claims one more record than the section holds (and lastOffsetDelta agrees).
    let more = with_fixed_crc(plain.clone(), |b| {
        b[57..61].copy_from_slice(&4i32.to_be_bytes());
        b[23..27].copy_from_slice(&3i32.to_be_bytes());
    });
    validate(&more).unwrap();
    assert_eq!(validate_records(&more), Err(BatchError::RecordCountMismatch { expected: 4, found: 3 }));

    // Header claims fewer records: the last one is left over.
    let fewer = with_fixed_crc(plain.clone(), |b| {
        b[57..61].copy_from_slice(&2i32.to_be_bytes());
        b[23..27].copy_from_slice(&1i32.to_be_bytes());
    });
    assert!(matches!(validate_records(&fewer), Err(BatchError::TrailingRecordBytes { records: 2, .. })));

    // Second record's offset delta (byte after length, attributes, timestampDelta) changed.
    let one = encode_batch(&records[..1], &EncodeOptions::default());
    let mut two_records = BytesMut::from(&one[..]);
    let first_record = one[BATCH_HEADER_LEN..].to_vec();
    let two = with_fixed_crc(two_records.split(), |b| {
        b.extend_from_slice(&first_record); // offset delta 0 again
        b[57..61].copy_from_slice(&2i32.to_be_bytes());
        b[23..27].copy_from_slice(&1i32.to_be_bytes());
    });
    validate(&two).unwrap();
    assert_eq!(validate_records(&two), Err(BatchError::InvalidRecordOffsetDelta { index: 1, offset_delta: 0 }));
    // Decoding tolerates it (compaction leaves gaps; duplicates are the validator's business).
    assert_eq!(decode_batches(&two).unwrap().len(), 2);

    // A record length larger than the rest of the section.
    let long = with_fixed_crc(plain.clone(), |b| b[BATCH_HEADER_LEN] = 0x7e);
    assert!(matches!(validate_records(&long), Err(BatchError::InvalidRecord { index: 0, .. })));

    // A negative key length other than -1.
    let key_len_at = BATCH_HEADER_LEN + 1 + 1 + 1 + 1; // length, attributes, tsDelta, offsetDelta
    let bad_key = with_fixed_crc(plain.clone(), |b| b[key_len_at] = 0x03); // zigzag -2
    assert!(matches!(validate_records(&bad_key), Err(BatchError::InvalidRecord { index: 0, .. })));
}

#[test]
fn corrupt_compressed_sections_are_refused() {
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let batch = encode_batch(&sample(), &EncodeOptions { compression: codec, ..EncodeOptions::default() });
        let damaged = with_fixed_crc(batch, |b| {
            let mid = BATCH_HEADER_LEN + (b.len() - BATCH_HEADER_LEN) / 2;
            b.truncate(mid);
        });
        validate(&damaged).unwrap();
        let err = validate_records(&damaged).unwrap_err();
        assert!(
            matches!(
                err,
                BatchError::Decompression { .. }
                    | BatchError::InvalidRecord { .. }
                    | BatchError::RecordCountMismatch { .. }
            ),
            "{codec:?}: {err:?}"
        );
    }
}

#[test]
fn decompressed_size_is_bounded() {
    let big = vec![0u8; 1 << 20];
    let records = [RecordIn { value: Some(&big), ..RecordIn::default() }];
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let batch = encode_batch(&records, &EncodeOptions { compression: codec, ..EncodeOptions::default() });
        assert!(batch.len() < 64 * 1024, "{codec:?}");
        let mut validator = RecordValidator::new(512 * 1024);
        assert_eq!(validator.validate(&batch), Err(BatchError::DecompressedTooLarge { max: 512 * 1024 }), "{codec:?}");
        RecordValidator::new(2 << 20).validate(&batch).unwrap();
    }
}

#[test]
fn validator_reuses_its_buffer_across_batches() {
    let mut validator = RecordValidator::default();
    for codec in Compression::ALL {
        let batch = encode_batch(&sample(), &EncodeOptions { compression: codec, ..EncodeOptions::default() });
        validator.validate(&batch).unwrap();
    }
}

#[test]
fn log_append_time_batches_report_the_batch_timestamp() {
    let mut batch = encode_batch(&sample(), &EncodeOptions::default());
    crate::batch::stamp_log_append_time(&mut batch, 42);
    assert!(decode_batches(&batch).unwrap().iter().all(|r| r.timestamp == 42));
}

#[test]
fn several_batches_decode_in_order() {
    let mut set = encode_batch(&sample(), &EncodeOptions::default());
    set.extend_from_slice(&encode_batch(
        &sample()[..1],
        &EncodeOptions { base_offset: 3, compression: Compression::Zstd, ..EncodeOptions::default() },
    ));
    let offsets: Vec<i64> = decode_batches(&set).unwrap().iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3]);
}

fn codec() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}

type Header<'a> = (&'a str, Option<&'a [u8]>);
type OwnedRecord = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>, i64);

fn owned_record() -> impl Strategy<Value = OwnedRecord> {
    (
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
        prop::collection::vec(("[a-z]{0,8}", prop::option::of(prop::collection::vec(any::<u8>(), 0..20))), 0..4),
        any::<i64>().prop_map(|t| t >> 2),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn random_records_round_trip(records in prop::collection::vec(owned_record(), 1..20), codec in codec(), base in 0i64..1 << 40) {
        let headers: Vec<Vec<Header<'_>>> =
            records.iter().map(|r| r.2.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect()).collect();
        // Keep timestamps within a varlong delta of the first.
        let first_ts = records[0].3;
        let ins: Vec<RecordIn<'_>> = records
            .iter()
            .zip(&headers)
            .map(|(r, h)| RecordIn { key: r.0.as_deref(), value: r.1.as_deref(), headers: h, timestamp: first_ts.saturating_add(r.3 >> 20) })
            .collect();
        let batch = encode_batch(&ins, &EncodeOptions { compression: codec, base_offset: base, ..EncodeOptions::default() });
        prop_assert!(validate(&batch).is_ok());
        prop_assert_eq!(validate_records(&batch), Ok(()));
        prop_assert_eq!(decode_batches(&batch).unwrap(), expected(&ins, base));
    }

    #[test]
    fn garbage_record_sections_never_panic(section in prop::collection::vec(any::<u8>(), 0..400), count in 1i32..5, attrs in 0i16..5) {
        let base = encode_batch(&sample()[..1], &EncodeOptions::default());
        let batch = with_fixed_crc(base, |b| {
            b.truncate(BATCH_HEADER_LEN);
            b[21..23].copy_from_slice(&attrs.to_be_bytes());
            b[57..61].copy_from_slice(&count.to_be_bytes());
            b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
            b.extend_from_slice(&section);
        });
        let _ = validate_records(&batch);
        let _ = decode_batches(&batch);
    }
}

/// Compaction's rewrite keeps the surviving records with their offsets and timestamps, the
/// header fields that place the batch (base offset, lastOffsetDelta, producer fields), and a
/// valid CRC, for every codec; an independent decoder (kafka-protocol) reads the result.
#[test]
fn retain_records_keeps_offsets_and_header_fields() {
    let records = sample();
    for codec in Compression::ALL {
        let options = EncodeOptions {
            compression: codec,
            base_offset: 40,
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 11,
            ..EncodeOptions::default()
        };
        let batch = encode_batch(&records, &options);
        let mut scratch = Vec::new();
        assert_eq!(retain_records(&batch, &mut scratch, |_| true).unwrap(), None, "{codec:?}: all kept");

        let kept = retain_records(&batch, &mut scratch, |r| r.offset_delta != 1).unwrap().expect("rewritten");
        let before = BatchHeader::parse(&batch).unwrap();
        let after = crate::batch::validate_stored(&kept).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(after.records_count, 2);
        assert_eq!(after.compression(), Ok(codec));
        assert_eq!(
            (after.base_offset, after.last_offset_delta, after.producer_id, after.producer_epoch, after.base_sequence),
            (40, 2, 7, 2, 11)
        );
        assert_eq!((after.base_timestamp, after.max_timestamp), (before.base_timestamp, before.max_timestamp));
        let mut want = expected(&records, 40);
        want.remove(1);
        assert_eq!(decode_batches(&kept).unwrap(), want, "{codec:?}");
        let mut buf = Bytes::from(kept.clone());
        let set = RecordBatchDecoder::decode(&mut buf).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(set.records.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![40, 42], "{codec:?}");

        let empty = retain_records(&batch, &mut scratch, |_| false).unwrap().expect("rewritten");
        let h = crate::batch::validate_stored(&empty).unwrap();
        assert_eq!((h.records_count, h.last_offset(), h.total_len()), (0, 42, BATCH_HEADER_LEN), "{codec:?}");
        assert!(decode_batches(&empty).unwrap().is_empty());
        assert_eq!(validate(&empty), Err(BatchError::InvalidRecordCount(0)), "a producer may not send one");
    }
}

#[test]
fn stored_batches_may_hold_fewer_records_than_offsets_but_not_more() {
    let batch = encode_batch(&sample(), &EncodeOptions::default());
    let too_many = with_fixed_crc(batch, |b| b[57..61].copy_from_slice(&4i32.to_be_bytes()));
    assert_eq!(
        crate::batch::validate_stored(&too_many),
        Err(BatchError::InvalidOffsetDelta { last_offset_delta: 2, records: 4 })
    );
}

#[test]
fn compacted_topics_need_keys() {
    let mut v = RecordValidator::default();
    let keyed = encode_batch(&sample()[..1], &EncodeOptions::default());
    v.validate_keyed(&keyed).unwrap();
    let keyless = encode_batch(&sample(), &EncodeOptions { compression: Compression::Lz4, ..EncodeOptions::default() });
    v.validate(&keyless).unwrap();
    assert_eq!(v.validate_keyed(&keyless), Err(BatchError::MissingKey { index: 1 }));
}

#[test]
fn next_offset_goes_by_batches_not_records() {
    let batch = encode_batch(&sample(), &EncodeOptions { base_offset: 10, ..EncodeOptions::default() });
    let empty = retain_records(&batch, &mut Vec::new(), |_| false).unwrap().unwrap();
    assert_eq!(crate::batch::next_offset(&empty), Some(13));
    let mut two = batch.to_vec();
    two.extend_from_slice(&empty);
    two.extend_from_slice(&batch[..20]); // a trailing partial batch is not counted
    assert_eq!(crate::batch::next_offset(&two), Some(13));
    assert_eq!(crate::batch::next_offset(&[]), None);
}
