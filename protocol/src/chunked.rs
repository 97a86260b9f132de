//! Response frames as a list of chunks, so record sets read from the log are sent as they are
//! instead of being copied into one response buffer (the fetch path's largest cost after the
//! socket write itself).

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

/// Byte slices shorter than this are copied: a separate chunk costs more than the copy.
const MIN_SHARED_LEN: usize = 1024;

/// A `BufMut` that copies small writes into a growing head buffer and, when asked to write a
/// slice that is exactly one of the `shared` buffers, closes the head and keeps a reference
/// to that buffer instead of copying it.
struct ChunkedBuf {
    done: Vec<Bytes>,
    done_len: usize,
    head: BytesMut,
    shared: Vec<Bytes>,
}

impl ChunkedBuf {
    fn close_head(&mut self) {
        if !self.head.is_empty() {
            let head = self.head.split().freeze();
            self.done_len += head.len();
            self.done.push(head);
        }
    }

    fn into_chunks(mut self) -> Vec<Bytes> {
        self.close_head();
        self.done
    }
}

// SAFETY: every method delegates to `head`, a `BytesMut`, whose contract this inherits.
unsafe impl BufMut for ChunkedBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded unchanged; the caller upholds BytesMut's contract.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= MIN_SHARED_LEN {
            let same = |b: &&Bytes| b.as_ptr() == src.as_ptr() && b.len() == src.len();
            if let Some(b) = self.shared.iter().find(same).cloned() {
                self.close_head();
                self.done_len += b.len();
                self.done.push(b);
                return;
            }
        }
        self.head.extend_from_slice(src);
    }
}

// Gaps (seek/range) are only used by the record-batch encoder and snappy framing, never by
// message encoding; they work within the open head, which is where a gap is always filled.
impl ByteBufMut for ChunkedBuf {
    fn offset(&self) -> usize {
        self.done_len + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        self.head.resize(offset.saturating_sub(self.done_len), 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let base = self.done_len;
        &mut self.head[r.start.saturating_sub(base)..r.end.saturating_sub(base)]
    }
}

/// Encodes a whole response frame (size prefix, header, body) as chunks. Record sets of a
/// Fetch response are referenced, not copied; every other response is one chunk.
pub fn encode_response_chunks(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Vec<Bytes>> {
    let ResponseKind::Fetch(fetch) = body else {
        let mut out = BytesMut::new();
        crate::request::encode_response(&mut out, api_key, version, correlation_id, body)?;
        return Ok(vec![out.freeze()]);
    };
    let shared = fetch
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.records.clone())
        .filter(|r| r.len() >= MIN_SHARED_LEN)
        .collect();
    let mut buf = ChunkedBuf { done: Vec::new(), done_len: 0, head: BytesMut::with_capacity(256), shared };
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))?;
    fetch.encode(&mut buf, version)?;
    let mut chunks = buf.into_chunks();
    let size = chunks.iter().map(Bytes::len).sum::<usize>() - 4;
    // The size prefix opens the first chunk, which is always the copied head.
    let mut first = BytesMut::from(&chunks[0][..]);
    first[..4].copy_from_slice(&(size as i32).to_be_bytes());
    chunks[0] = first.freeze();
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn fetch_with(records: Vec<Option<Bytes>>) -> ResponseKind {
        let parts = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default().with_partition_index(i as i32).with_high_watermark(9).with_records(r)
            })
            .collect();
        let topic = FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(parts);
        ResponseKind::Fetch(FetchResponse::default().with_responses(vec![topic]))
    }

    #[test]
    fn chunks_equal_the_copied_encoding_and_share_large_record_sets() {
        let big = Bytes::from(vec![7u8; 5000]);
        let body = fetch_with(vec![Some(big.clone()), Some(Bytes::from_static(b"small")), None, Some(big.clone())]);
        for version in [4, 11, 12, 16] {
            let mut copied = BytesMut::new();
            crate::request::encode_response(&mut copied, ApiKey::Fetch, version, 42, &body).unwrap();
            let chunks = encode_response_chunks(ApiKey::Fetch, version, 42, &body).unwrap();
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined, copied.to_vec(), "version {version}");
            let shared = chunks.iter().filter(|c| c.as_ptr() == big.as_ptr()).count();
            assert_eq!(shared, 2, "both large record sets are referenced, not copied (v{version})");
        }
    }

    #[test]
    fn other_responses_are_one_chunk() {
        let body = ResponseKind::ApiVersions(Default::default());
        let chunks = encode_response_chunks(ApiKey::ApiVersions, 3, 1, &body).unwrap();
        assert_eq!(chunks.len(), 1);
    }
}
