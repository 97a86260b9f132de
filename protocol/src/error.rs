//! One error type for the crate and the one place its failures become Kafka error codes.
//!
//! The mapping follows what the Java broker answers for the same input, so that clients take
//! the same retry/fail decisions against Rill as against Kafka.

use kafka_protocol::ResponseError;
use thiserror::Error;

use crate::batch::BatchError;
use crate::frame::FrameError;
use crate::request::DecodeError;

/// Any failure of this crate.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// The size prefix is unusable; the connection must be closed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A request could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A record batch was refused.
    #[error(transparent)]
    Batch(#[from] BatchError),
}

impl ProtocolError {
    /// The Kafka error code to answer with, or `None` when the only sane reaction is to
    /// close the connection (an unusable frame or an unparseable request header: there is no
    /// correlation id to answer to, or the stream cannot be resynchronised).
    pub fn response_error(&self) -> Option<ResponseError> {
        match self {
            ProtocolError::Frame(_) => None,
            ProtocolError::Decode(e) => decode_error_code(e),
            ProtocolError::Batch(e) => Some(batch_error_code(e)),
        }
    }
}

/// The error code for a refused record batch, as the Java broker's `LogValidator` reports it:
/// structural damage is CORRUPT_MESSAGE, a well-formed batch that breaks a rule is
/// INVALID_RECORD.
pub fn batch_error_code(e: &BatchError) -> ResponseError {
    match e {
        BatchError::UnknownCompression(_) => ResponseError::UnsupportedCompressionType,
        BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::InvalidRecordCount(_)
        | BatchError::InvalidOffsetDelta { .. }
        | BatchError::InvalidRecordOffsetDelta { .. }
        | BatchError::MissingKey { .. } => ResponseError::InvalidRecord,
        BatchError::Truncated { .. }
        | BatchError::InvalidLength(_)
        | BatchError::CrcMismatch { .. }
        | BatchError::Decompression { .. }
        | BatchError::DecompressedTooLarge { .. }
        | BatchError::InvalidRecord { .. }
        | BatchError::RecordCountMismatch { .. }
        | BatchError::TrailingRecordBytes { .. } => ResponseError::CorruptMessage,
    }
}

/// The error code for a request that could not be decoded, or `None` when the request must
/// not be answered. Kafka answers an unsupported version (ApiVersions gets a special v0 reply,
/// which is the broker's job) and closes the connection on a malformed request; INVALID_REQUEST
/// is what it reports where a response is still possible.
pub fn decode_error_code(e: &DecodeError) -> Option<ResponseError> {
    match e {
        DecodeError::TooShort(_) | DecodeError::UnknownApiKey(_) => None,
        DecodeError::UnsupportedVersion { .. } => Some(ResponseError::UnsupportedVersion),
        DecodeError::Malformed { .. } => Some(ResponseError::InvalidRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(batch_error_code(&BatchError::CrcMismatch { stored: 1, computed: 2 }).code(), 2);
        assert_eq!(batch_error_code(&BatchError::UnknownCompression(7)).code(), 76);
        assert_eq!(batch_error_code(&BatchError::InvalidRecordOffsetDelta { index: 1, offset_delta: 5 }).code(), 87);
        assert_eq!(batch_error_code(&BatchError::InvalidRecord { index: 0, reason: "x" }).code(), 2);
        let unsupported = DecodeError::UnsupportedVersion { api_key: ApiKey::Produce, version: 99 };
        assert_eq!(decode_error_code(&unsupported).map(|e| e.code()), Some(35));
        assert_eq!(ProtocolError::from(FrameError::Negative(-1)).response_error(), None);
    }
}
