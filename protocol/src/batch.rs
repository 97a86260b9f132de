//! Record batch v2 (magic 2): header parsing, CRC32C validation and in-place stamping.
//!
//! Layout (big endian), offsets in bytes:
//! ```text
//!  0 baseOffset i64        8 batchLength i32      12 partitionLeaderEpoch i32
//! 16 magic i8             17 crc u32 (CRC32C of bytes 21..end)
//! 21 attributes i16       23 lastOffsetDelta i32 27 baseTimestamp i64
//! 35 maxTimestamp i64     43 producerId i64      51 producerEpoch i16
//! 53 baseSequence i32     57 recordsCount i32    61 records...
//! ```
//! Fields before the CRC (offset, length, leader epoch, magic) can be rewritten without
//! touching the checksum, which is why the broker can assign offsets without re-encoding.

use thiserror::Error;

/// Size of the fixed batch header; the records follow it.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes of a batch that precede and include `batchLength` (not counted by it).
pub const LOG_OVERHEAD: usize = 12;
const CRC_OFFSET: usize = 17;
const RECORDS_COUNT_OFFSET: usize = 57;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;

/// Compression codec, attribute bits 0-2. The discriminant is the attribute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    /// Every codec, in attribute order.
    pub const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];
}

/// Why a batch was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    UnsupportedMagic(i8),
    #[error("record batch length {0} is invalid")]
    InvalidLength(i32),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("unknown compression codec {0}")]
    UnknownCompression(i16),
    #[error("record batch has {0} records; a produced batch needs at least one")]
    InvalidRecordCount(i32),
    #[error("lastOffsetDelta {last_offset_delta} does not match {records} records")]
    InvalidOffsetDelta { last_offset_delta: i32, records: i32 },
    // The variants below come from walking the records themselves (see `crate::records`).
    #[error("cannot decompress {codec:?} records: {reason}")]
    Decompression { codec: Compression, reason: String },
    #[error("records decompress to more than {max} bytes")]
    DecompressedTooLarge { max: usize },
    #[error("record {index} is malformed: {reason}")]
    InvalidRecord { index: i32, reason: &'static str },
    #[error("batch declares {expected} records but holds {found}")]
    RecordCountMismatch { expected: i32, found: i32 },
    #[error("record {index} has offset delta {offset_delta}, expected {index}")]
    InvalidRecordOffsetDelta { index: i32, offset_delta: i32 },
    #[error("{trailing} bytes follow the last of {records} records")]
    TrailingRecordBytes { records: i32, trailing: usize },
    #[error("record {index} has no key; a compacted topic cannot accept a record without a key")]
    MissingKey { index: i32 },
}

/// The decoded fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Parses the fixed header at the start of `buf`. Checks magic and length only; the
    /// caller decides whether the whole batch must be present (see [`BatchHeader::total_len`]).
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            // The magic byte sits at 16; report it when we have it, it is the likelier problem.
            if buf.len() > 16 && buf[16] as i8 != 2 {
                return Err(BatchError::UnsupportedMagic(buf[16] as i8));
            }
            return Err(BatchError::Truncated { need: BATCH_HEADER_LEN, have: buf.len() });
        }
        let magic = buf[16] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let batch_length = i32_at(buf, 8);
        if (batch_length as i64) < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::InvalidLength(batch_length));
        }
        Ok(BatchHeader {
            base_offset: i64_at(buf, 0),
            batch_length,
            partition_leader_epoch: i32_at(buf, 12),
            magic,
            crc: u32::from_be_bytes(buf[17..21].try_into().expect("4 bytes")),
            attributes: i16_at(buf, 21),
            last_offset_delta: i32_at(buf, 23),
            base_timestamp: i64_at(buf, 27),
            max_timestamp: i64_at(buf, 35),
            producer_id: i64_at(buf, 43),
            producer_epoch: i16_at(buf, 51),
            base_sequence: i32_at(buf, 53),
            records_count: i32_at(buf, 57),
        })
    }

    /// Bytes the whole batch occupies, header included.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record (`base_offset + last_offset_delta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        match self.attributes & 0x07 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::UnknownCompression(other)),
        }
    }

    /// True when the batch carries LogAppendTime timestamps (attribute bit 3).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// CRC32C over the checksummed part of a whole batch.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Validates one whole batch as a log stores it: header, length, CRC, and a record count that
/// fits the batch's offset range. Unlike [`validate`] this accepts what log compaction leaves:
/// fewer records than offsets (`recordsCount <= lastOffsetDelta + 1`), or none at all.
/// `batch` must hold exactly the batch (see [`split_batches`]).
pub fn validate_stored(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(BatchError::Truncated { need: header.total_len(), have: batch.len() });
    }
    header.compression()?;
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch { stored: header.crc, computed });
    }
    if header.records_count < 0 || header.records_count as i64 > header.last_offset_delta as i64 + 1 {
        return Err(BatchError::InvalidOffsetDelta {
            last_offset_delta: header.last_offset_delta,
            records: header.records_count,
        });
    }
    Ok(header)
}

/// Validates one whole batch as a producer sent it: header, length, CRC and record count.
/// `batch` must hold exactly the batch (see [`split_batches`]).
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = validate_stored(batch)?;
    if header.records_count <= 0 {
        return Err(BatchError::InvalidRecordCount(header.records_count));
    }
    if header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::InvalidOffsetDelta {
            last_offset_delta: header.last_offset_delta,
            records: header.records_count,
        });
    }
    Ok(header)
}

/// Iterates over the whole batches at the start of a buffer. A trailing partial batch ends
/// the iteration (fetch responses may legitimately end with one); a malformed header yields
/// an error and ends it too.
pub struct Batches<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Splits a record set into its batches, see [`Batches`].
pub fn split_batches(records: &[u8]) -> Batches<'_> {
    Batches { rest: records, failed: false }
}

impl<'a> Batches<'a> {
    /// Bytes not yet yielded (a trailing partial batch, after the iteration ends).
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let header = match BatchHeader::parse(self.rest) {
            Ok(h) => h,
            Err(BatchError::Truncated { .. }) => return None,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let len = header.total_len();
        if len > self.rest.len() {
            return None;
        }
        let (batch, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(Ok((header, batch)))
    }
}

/// The offset after the last whole batch of a record set (`None` if it holds none): where a
/// reader continues. Not the last record's offset plus one: a batch compaction emptied (or
/// thinned) still covers its whole offset range, and a reader that went by records would
/// fetch the same empty batch forever.
pub fn next_offset(records: &[u8]) -> Option<i64> {
    split_batches(records).map_while(Result::ok).last().map(|(h, _)| h.last_offset() + 1)
}

/// Writes the broker-assigned base offset and partition leader epoch into a batch. Both lie
/// outside the CRC, so the checksum stays valid.
pub fn stamp_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Turns a batch into a LogAppendTime batch stamped with `timestamp`: sets the timestamp-type
/// attribute and maxTimestamp, then recomputes the CRC (the only case that must).
pub fn stamp_log_append_time(batch: &mut [u8], timestamp: i64) {
    let attributes = i16_at(batch, ATTRIBUTES_OFFSET) | 0x08;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&timestamp.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Gives a batch a new record section (already compressed with the batch's codec) holding
/// `records_count` records, keeping every header field but the length, the count and the CRC
/// (which is recomputed). Log compaction uses it: the base offset, `lastOffsetDelta`,
/// timestamps, producer fields and attributes all stay, so the batch still spans the same
/// offsets even with fewer records, or none.
pub fn with_records(header_bytes: &[u8], records_count: i32, section: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + section.len());
    out.extend_from_slice(&header_bytes[..BATCH_HEADER_LEN]);
    out.extend_from_slice(section);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4].copy_from_slice(&records_count.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    out
}
