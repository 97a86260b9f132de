//! Rill's Kafka wire codec.
//!
//! This crate turns bytes into typed Kafka requests and typed responses into bytes: frame
//! boundaries, request/response headers, every message (through the generated codecs of the
//! pinned `kafka-protocol` crate, built from the Apache Kafka 4.1 JSON schemas) and the record
//! batch v2 format. It must never do I/O, and it must never re-encode a record batch on the
//! produce path: batches are validated and stamped in place.

pub mod batch;
pub mod error;
pub mod records;

/// The generated message types, re-exported so the rest of Rill names one crate.
pub use kafka_protocol::messages;
pub use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
pub use kafka_protocol::ResponseError;
pub mod chunked;
pub mod frame;
pub mod request;

pub use chunked::encode_response_chunks;
pub use request::{
    decode_request, encode_response, peek_header, request_body_size, response_body_size, supported_versions,
    DecodeError, HeaderPrefix, Request,
};
