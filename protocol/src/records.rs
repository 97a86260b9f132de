//! The records inside a v2 record batch: decompression, a zero-allocation walker that checks
//! every record is well formed, and a small codec for tests, the CLI and benches.
//!
//! Record layout (after the 61-byte batch header, possibly compressed as a whole):
//! ```text
//! length varint, attributes i8, timestampDelta varlong, offsetDelta varint,
//! keyLength varint (-1 = null), key, valueLength varint (-1 = null), value,
//! headerCount varint, headers: [keyLength varint, key, valueLength varint (-1 = null), value]
//! ```
//! Varints are zigzag-encoded like protobuf's `sint32`/`sint64`.
//!
//! [`validate_records`] is meant for the produce path: it never allocates per record, and
//! [`RecordValidator`] reuses one decompression buffer across batches. Decompressed sizes are
//! bounded so that a small compressed batch cannot make the broker allocate without limit.

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{self, BatchError, BatchHeader, Compression, BATCH_HEADER_LEN};

/// Default cap on the decompressed size of one batch's records. Kafka has no such knob, but a
/// produce request is capped at `socket.request.max.bytes` (100 MiB by default) compressed;
/// the cap exists so that a decompression bomb fails instead of exhausting memory.
pub const DEFAULT_MAX_DECOMPRESSED_LEN: usize = 256 * 1024 * 1024;

/// The 16-byte header of Java's `SnappyOutputStream` (xerial snappy-java framing): magic,
/// then version 1 and minimum compatible version 1 as big-endian i32s.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// The block size snappy-java uses when writing; each block is compressed on its own.
const XERIAL_BLOCK_LEN: usize = 32 * 1024;

// ------------------------------------------------------------------------------------------
// Varints and the record walker
// ------------------------------------------------------------------------------------------

/// A forward-only reader over a record section. Every read is bounds checked and reports
/// failure as `None`; the caller attaches the context.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// Unsigned LEB128 of at most `max_bytes` bytes (5 for 32-bit, 10 for 64-bit values).
    fn uvarint(&mut self, max_bytes: u32) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let b = self.u8()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i32> {
        let raw = self.uvarint(5)?;
        let raw = u32::try_from(raw).ok()?;
        Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    fn varlong(&mut self) -> Option<i64> {
        let raw = self.uvarint(10)?;
        Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.remaining() {
            return None;
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Some(out)
    }

    /// A varint length followed by that many bytes; -1 means null when `nullable`.
    fn sized(&mut self, nullable: bool) -> Option<Option<&'a [u8]>> {
        match self.varint()? {
            -1 if nullable => Some(None),
            len if len >= 0 => self.bytes(len as usize).map(Some),
            _ => None,
        }
    }
}

/// One record, borrowed from the (decompressed) record section.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// Unused by Kafka today; carried for completeness.
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The already-validated header section; iterate it with [`RecordView::headers`].
    headers_raw: &'a [u8],
    header_count: i32,
    /// The whole encoded record, its length prefix included.
    raw: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The record's headers as `(key, value)` pairs. Keys are raw bytes (Kafka requires UTF-8
    /// but does not check it on the broker); duplicate keys are allowed and kept in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let mut cursor = Cursor::new(self.headers_raw);
        (0..self.header_count).map_while(move |_| {
            // Validated by `parse_record`, so these reads cannot fail.
            let key = cursor.sized(false)??;
            let value = cursor.sized(true)?;
            Some((key, value))
        })
    }
}

/// Parses one record at the cursor. The record's own length prefix must match exactly the
/// bytes its fields occupy: Java rejects both short and padded records.
fn parse_record<'a>(cursor: &mut Cursor<'a>) -> Result<RecordView<'a>, &'static str> {
    let start = cursor.pos;
    let len = cursor.varint().ok_or("record length varint truncated or overlong")?;
    if len < 0 {
        return Err("negative record length");
    }
    let body = cursor.bytes(len as usize).ok_or("record extends past the end of the batch")?;
    let mut c = Cursor::new(body);
    let attributes = c.u8().ok_or("record truncated at attributes")? as i8;
    let timestamp_delta = c.varlong().ok_or("record truncated at timestampDelta")?;
    let offset_delta = c.varint().ok_or("record truncated at offsetDelta")?;
    let key = c.sized(true).ok_or("invalid record key")?;
    let value = c.sized(true).ok_or("invalid record value")?;
    let header_count = c.varint().ok_or("record truncated at header count")?;
    if header_count < 0 {
        return Err("negative header count");
    }
    let headers_start = c.pos;
    for _ in 0..header_count {
        c.sized(false).ok_or("invalid header key")?;
        c.sized(true).ok_or("invalid header value")?;
    }
    let headers_raw = &body[headers_start..c.pos];
    if c.remaining() != 0 {
        return Err("record length exceeds its fields");
    }
    let raw = &cursor.buf[start..cursor.pos];
    Ok(RecordView { attributes, timestamp_delta, offset_delta, key, value, headers_raw, header_count, raw })
}

/// Walks exactly `count` records in `section`, calling `f` on each. With `strict_offsets`,
/// record `i` must have offset delta `i` (what a producer must send). Fails on any malformed
/// record and on bytes left over after the last one.
fn walk_records<'a>(
    section: &'a [u8],
    count: i32,
    strict_offsets: bool,
    mut f: impl FnMut(RecordView<'a>),
) -> Result<(), BatchError> {
    let mut cursor = Cursor::new(section);
    for index in 0..count {
        if cursor.remaining() == 0 {
            return Err(BatchError::RecordCountMismatch { expected: count, found: index });
        }
        let record = parse_record(&mut cursor).map_err(|reason| BatchError::InvalidRecord { index, reason })?;
        if strict_offsets && record.offset_delta != index {
            return Err(BatchError::InvalidRecordOffsetDelta { index, offset_delta: record.offset_delta });
        }
        f(record);
    }
    if cursor.remaining() != 0 {
        return Err(BatchError::TrailingRecordBytes { records: count, trailing: cursor.remaining() });
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Decompression
// ------------------------------------------------------------------------------------------

fn decompression_error(codec: Compression, reason: impl std::fmt::Display) -> BatchError {
    BatchError::Decompression { codec, reason: reason.to_string() }
}

/// Reads all of `reader` into `out`, failing once more than `max` bytes come out.
fn read_bounded(codec: Compression, reader: impl Read, out: &mut Vec<u8>, max: usize) -> Result<(), BatchError> {
    let mut limited = reader.take(max as u64 + 1);
    limited.read_to_end(out).map_err(|e| decompression_error(codec, e))?;
    if out.len() > max {
        return Err(BatchError::DecompressedTooLarge { max });
    }
    Ok(())
}

/// Snappy as Kafka clients write it: the xerial framing (Java) or, for librdkafka's older
/// producers and other clients, one raw snappy block.
fn snappy_decompress(input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), BatchError> {
    let codec = Compression::Snappy;
    let append_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let len = snap::raw::decompress_len(block).map_err(|e| decompression_error(codec, e))?;
        let start = out.len();
        if len > max - start {
            return Err(BatchError::DecompressedTooLarge { max });
        }
        out.resize(start + len, 0);
        snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(|e| decompression_error(codec, e))?;
        Ok(())
    };
    // Only the 8-byte magic identifies the framing; the version words that follow vary
    // between snappy-java releases and are ignored by it too.
    if input.len() < XERIAL_HEADER.len() || input[..8] != XERIAL_HEADER[..8] {
        return append_block(input, out);
    }
    let mut rest = &input[XERIAL_HEADER.len()..];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(decompression_error(codec, "truncated xerial block length"));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        if len > rest.len() {
            return Err(decompression_error(codec, "xerial block extends past the batch"));
        }
        let (block, tail) = rest.split_at(len);
        append_block(block, out)?;
        rest = tail;
    }
    Ok(())
}

/// Decompresses `input` (a compressed record section) into `out`, which is cleared first.
pub fn decompress_into(codec: Compression, input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), BatchError> {
    out.clear();
    match codec {
        Compression::None => {
            if input.len() > max {
                return Err(BatchError::DecompressedTooLarge { max });
            }
            out.extend_from_slice(input);
            Ok(())
        }
        // Java's GZIPInputStream accepts concatenated members, so use the multi-member decoder.
        Compression::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(input), out, max),
        Compression::Snappy => snappy_decompress(input, out, max),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(input).map_err(|e| decompression_error(codec, e))?;
            read_bounded(codec, decoder, out, max)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(|e| decompression_error(codec, e))?;
            read_bounded(codec, decoder, out, max)
        }
    }
}

/// Compresses a record section with Kafka's framing for `codec` (xerial for snappy, the LZ4
/// frame format for lz4), appending to `out`.
pub fn compress_into(codec: Compression, input: &[u8], out: &mut impl BufMut) {
    // Compressing into memory can only fail on allocation failure, which aborts anyway.
    match codec {
        Compression::None => out.put_slice(input),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out.writer(), flate2::Compression::default());
            std::io::Write::write_all(&mut e, input).expect("in-memory gzip");
            e.finish().expect("in-memory gzip");
        }
        Compression::Snappy => {
            out.put_slice(XERIAL_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            let mut block = vec![0u8; snap::raw::max_compress_len(XERIAL_BLOCK_LEN)];
            for chunk in input.chunks(XERIAL_BLOCK_LEN) {
                let n = encoder.compress(chunk, &mut block).expect("snappy block within max_compress_len");
                out.put_u32(n as u32);
                out.put_slice(&block[..n]);
            }
        }
        Compression::Lz4 => {
            // Java's KafkaLZ4BlockOutputStream: 64 KiB independent blocks, no checksums.
            let mut e = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(out.writer())
                .expect("in-memory lz4");
            std::io::Write::write_all(&mut e, input).expect("in-memory lz4");
            e.finish().1.expect("in-memory lz4");
        }
        Compression::Zstd => {
            zstd::stream::copy_encode(input, out.writer(), 3).expect("in-memory zstd");
        }
    }
}

/// The (decompressed) record section of a whole batch whose header is `header`: a slice of
/// `batch`, or of `scratch` when compressed. A batch of zero records (which compaction leaves)
/// has no section to decompress, as in Java's `DefaultRecordBatch`.
fn record_section<'s>(
    header: &BatchHeader,
    batch: &'s [u8],
    scratch: &'s mut Vec<u8>,
    max: usize,
) -> Result<&'s [u8], BatchError> {
    let section = &batch[BATCH_HEADER_LEN..header.total_len()];
    match header.compression()? {
        _ if header.records_count == 0 => Ok(&[]),
        Compression::None => Ok(section),
        codec => {
            decompress_into(codec, section, scratch, max)?;
            Ok(&scratch[..])
        }
    }
}

// ------------------------------------------------------------------------------------------
// Validation
// ------------------------------------------------------------------------------------------

/// Checks the records of produced batches, reusing one decompression buffer across calls.
#[derive(Debug)]
pub struct RecordValidator {
    scratch: Vec<u8>,
    max_decompressed: usize,
}

impl Default for RecordValidator {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_DECOMPRESSED_LEN)
    }
}

impl RecordValidator {
    /// A validator that refuses batches whose records decompress to more than
    /// `max_decompressed` bytes.
    pub fn new(max_decompressed: usize) -> Self {
        RecordValidator { scratch: Vec::new(), max_decompressed }
    }

    /// See [`validate_records`].
    pub fn validate(&mut self, batch: &[u8]) -> Result<(), BatchError> {
        self.check(batch, false)
    }

    /// [`RecordValidator::validate`] for a compacted topic, where every record needs a key
    /// (Kafka's LogValidator refuses keyless records there with INVALID_RECORD).
    pub fn validate_keyed(&mut self, batch: &[u8]) -> Result<(), BatchError> {
        self.check(batch, true)
    }

    fn check(&mut self, batch: &[u8], require_keys: bool) -> Result<(), BatchError> {
        let header = BatchHeader::parse(batch)?;
        if batch.len() < header.total_len() {
            return Err(BatchError::Truncated { need: header.total_len(), have: batch.len() });
        }
        let records = record_section(&header, batch, &mut self.scratch, self.max_decompressed)?;
        let mut missing_key = None;
        walk_records(records, header.records_count, true, |r| {
            if require_keys && r.key.is_none() && missing_key.is_none() {
                missing_key = Some(r.offset_delta);
            }
        })?;
        match missing_key {
            Some(index) => Err(BatchError::MissingKey { index }),
            None => Ok(()),
        }
    }
}

/// Checks that a batch which already passed [`batch::validate`] holds exactly `records_count`
/// well-formed records with offset deltas `0..records_count`, decompressing first if needed.
/// Allocates at most one decompression buffer; use [`RecordValidator`] to reuse it.
pub fn validate_records(batch: &[u8]) -> Result<(), BatchError> {
    RecordValidator::default().validate(batch)
}

// ------------------------------------------------------------------------------------------
// Codec for tests, the CLI and benches (allocates freely)
// ------------------------------------------------------------------------------------------

/// A record to encode.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordIn<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Header keys and values; keys may repeat.
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// CreateTime, milliseconds since the epoch.
    pub timestamp: i64,
}

/// Batch-level settings for [`encode_batch`].
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    pub compression: Compression,
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    /// -1 for a non-idempotent producer.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
}

impl Default for EncodeOptions {
    /// What a plain (non-idempotent) producer sends, uncompressed.
    fn default() -> Self {
        EncodeOptions {
            compression: Compression::None,
            base_offset: 0,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
        }
    }
}

fn put_varint(out: &mut impl BufMut, v: i32) {
    put_uvarint(out, ((v << 1) ^ (v >> 31)) as u32 as u64);
}
fn put_varlong(out: &mut impl BufMut, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}
fn put_uvarint(out: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}
fn put_sized(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.put_slice(b);
        }
    }
}

/// Encodes `records` as one v2 batch with offset deltas `0..n` and a valid CRC, the way a
/// producer does.
///
/// # Panics
/// If `records` is empty (a batch must hold at least one record).
pub fn encode_batch(records: &[RecordIn<'_>], options: &EncodeOptions) -> BytesMut {
    assert!(!records.is_empty(), "a record batch needs at least one record");
    let base_timestamp = records[0].timestamp;
    let max_timestamp = records.iter().map(|r| r.timestamp).max().expect("non-empty");

    let mut section = Vec::new();
    let mut record = Vec::new();
    for (i, r) in records.iter().enumerate() {
        record.clear();
        record.put_i8(0);
        put_varlong(&mut record, r.timestamp - base_timestamp);
        put_varint(&mut record, i as i32);
        put_sized(&mut record, r.key);
        put_sized(&mut record, r.value);
        put_varint(&mut record, r.headers.len() as i32);
        for (k, v) in r.headers {
            put_sized(&mut record, Some(k.as_bytes()));
            put_sized(&mut record, *v);
        }
        put_varint(&mut section, record.len() as i32);
        section.extend_from_slice(&record);
    }

    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + section.len());
    out.put_i64(options.base_offset);
    out.put_i32(0); // batchLength, filled below
    out.put_i32(options.partition_leader_epoch);
    out.put_i8(2);
    out.put_u32(0); // crc, filled below
    let mut attributes = options.compression as i16;
    if options.transactional {
        attributes |= 0x10;
    }
    out.put_i16(attributes);
    out.put_i32(records.len() as i32 - 1);
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(options.producer_id);
    out.put_i16(options.producer_epoch);
    out.put_i32(options.base_sequence);
    out.put_i32(records.len() as i32);
    compress_into(options.compression, &section, &mut out);

    let batch_length = (out.len() - batch::LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A record header as decoded by [`decode_batches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// A record as decoded by [`decode_batches`], with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOut {
    pub offset: i64,
    /// The record's CreateTime, or the batch's LogAppendTime when the batch uses that.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
    /// True for transaction markers and other control records.
    pub control: bool,
}

/// Decodes every whole batch in a record set (a produce payload or a fetch response's
/// records) into records. Each batch's CRC is checked; a trailing partial batch is ignored,
/// as fetch responses may end with one. Unlike [`validate_records`] this accepts offset gaps,
/// which log compaction leaves behind.
pub fn decode_batches(bytes: &[u8]) -> Result<Vec<RecordOut>, BatchError> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for item in batch::split_batches(bytes) {
        let (header, batch) = item?;
        let computed = batch::compute_crc(batch);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch { stored: header.crc, computed });
        }
        let records = record_section(&header, batch, &mut scratch, DEFAULT_MAX_DECOMPRESSED_LEN)?;
        let copy = |b: &[u8]| Bytes::copy_from_slice(b);
        walk_records(records, header.records_count, false, |r| {
            out.push(RecordOut {
                offset: header.base_offset + i64::from(r.offset_delta),
                timestamp: if header.is_log_append_time() {
                    header.max_timestamp
                } else {
                    header.base_timestamp + r.timestamp_delta
                },
                key: r.key.map(copy),
                value: r.value.map(copy),
                headers: r.headers().map(|(k, v)| RecordHeader { key: copy(k), value: v.map(copy) }).collect(),
                control: header.is_control(),
            })
        })?;
    }
    Ok(out)
}

/// Iterates over the records of one batch without copying them, for callers that want the
/// walker without the allocations of [`decode_batches`]. `scratch` holds decompressed bytes.
pub fn for_each_record<'a>(
    batch: &'a [u8],
    scratch: &'a mut Vec<u8>,
    f: impl FnMut(RecordView<'a>),
) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if batch.len() < header.total_len() {
        return Err(BatchError::Truncated { need: header.total_len(), have: batch.len() });
    }
    let records = record_section(&header, batch, scratch, DEFAULT_MAX_DECOMPRESSED_LEN)?;
    walk_records(records, header.records_count, false, f)?;
    Ok(header)
}

/// Log compaction's filter: rewrites one stored batch keeping only the records `keep` accepts.
/// Returns `None` when every record is kept (the batch stays byte-exact), else the new batch:
/// same header fields (base offset, `lastOffsetDelta`, timestamps, producer id, epoch and
/// sequence, attributes) with the kept records, unchanged and with their original offset and
/// timestamp deltas, recompressed with the batch's codec. A batch that keeps no record at all
/// becomes an empty batch (count 0, no record bytes, as Kafka writes them), still spanning its
/// offsets. `scratch` holds decompressed bytes.
pub fn retain_records(
    batch: &[u8],
    scratch: &mut Vec<u8>,
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Option<Vec<u8>>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if batch.len() < header.total_len() {
        return Err(BatchError::Truncated { need: header.total_len(), have: batch.len() });
    }
    let codec = header.compression()?;
    let records = record_section(&header, batch, scratch, DEFAULT_MAX_DECOMPRESSED_LEN)?;
    let mut kept = Vec::new();
    let mut kept_count = 0;
    walk_records(records, header.records_count, false, |r| {
        if keep(&r) {
            kept.extend_from_slice(r.raw);
            kept_count += 1;
        }
    })?;
    if kept_count == header.records_count {
        return Ok(None);
    }
    let mut compressed = Vec::new();
    if kept_count > 0 {
        compress_into(codec, &kept, &mut compressed);
    }
    Ok(Some(batch::with_records(batch, kept_count, &compressed)))
}

#[cfg(test)]
mod tests;
