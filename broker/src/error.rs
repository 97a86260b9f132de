//! The broker's error type, mapped to Kafka error codes in exactly one place ([`KafkaError::code`]).

use rill_protocol::ResponseError;
use rill_storage::StorageError;
use thiserror::Error;

use crate::topic_config::TopicConfigError;

#[derive(Debug, Error)]
pub enum KafkaError {
    #[error("This server does not host this topic-partition.")]
    UnknownTopicOrPartition,
    #[error("This server does not host this topic ID.")]
    UnknownTopicId,
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidRecord(String),
    #[error("corrupt record batch: {0}")]
    CorruptMessage(#[from] rill_protocol::batch::BatchError),
    #[error("The record batch of {size} bytes is larger than max.message.bytes ({max}).")]
    MessageTooLarge { size: usize, max: usize },
    #[error("The requested offset {requested} is not within [{log_start}, {log_end}].")]
    OffsetOutOfRange { requested: i64, log_start: i64, log_end: i64 },
    #[error("The producer's epoch is older than the broker's.")]
    InvalidProducerEpoch,
    #[error("Out of order sequence number for producer {producer_id}: expected {expected}, got {got}.")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
    #[error("Topic deletion is disabled.")]
    TopicDeletionDisabled,
    #[error("Invalid required acks value {0}.")]
    InvalidRequiredAcks(i16),
    #[error("storage failure: {0}")]
    Storage(StorageError),
    #[error("The request timed out.")]
    RequestTimedOut,
    #[error("{0}")]
    PolicyViolation(String),
    #[error("{0}")]
    UnsupportedForMessageFormat(String),
    #[error("This server is not the leader for that topic-partition.")]
    NotLeaderOrFollower,
    #[error("There is no leader for this topic-partition as we are in the middle of a leadership election.")]
    LeaderNotAvailable,
    #[error("The metadata quorum is not available: {0}")]
    NotController(String),
    #[error("No partition reassignment is in progress.")]
    NoReassignmentInProgress,
    #[error("{0}")]
    DuplicateVoter(String),
    #[error("{0}")]
    VoterNotFound(String),
    #[error("{0}")]
    InconsistentClusterId(String),
    /// What the metadata leader answered a request forwarded to it with.
    #[error("{1}")]
    Forwarded(ResponseError, String),
}

impl From<StorageError> for KafkaError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::OffsetOutOfRange { requested, log_start, log_end } => {
                KafkaError::OffsetOutOfRange { requested, log_start, log_end }
            }
            other => KafkaError::Storage(other),
        }
    }
}

impl From<TopicConfigError> for KafkaError {
    fn from(e: TopicConfigError) -> Self {
        KafkaError::InvalidConfig(e.to_string())
    }
}

impl KafkaError {
    /// The Kafka error this maps to.
    pub fn response_error(&self) -> ResponseError {
        use KafkaError::*;
        match self {
            UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            UnknownTopicId => ResponseError::UnknownTopicId,
            TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            InvalidTopic(_) => ResponseError::InvalidTopicException,
            InvalidPartitions(_) => ResponseError::InvalidPartitions,
            InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
            LeaderNotAvailable => ResponseError::LeaderNotAvailable,
            // Retriable for every client: they refresh metadata and try again.
            NotController(_) => ResponseError::RequestTimedOut,
            InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            InvalidConfig(_) => ResponseError::InvalidConfig,
            InvalidRequest(_) => ResponseError::InvalidRequest,
            InvalidRecord(_) => ResponseError::InvalidRecord,
            CorruptMessage(e) => rill_protocol::error::batch_error_code(e),
            MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
            OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            TopicDeletionDisabled => ResponseError::TopicDeletionDisabled,
            InvalidRequiredAcks(_) => ResponseError::InvalidRequiredAcks,
            Storage(_) => ResponseError::KafkaStorageError,
            RequestTimedOut => ResponseError::RequestTimedOut,
            PolicyViolation(_) => ResponseError::PolicyViolation,
            UnsupportedForMessageFormat(_) => ResponseError::UnsupportedForMessageFormat,
            NoReassignmentInProgress => ResponseError::NoReassignmentInProgress,
            DuplicateVoter(_) => ResponseError::DuplicateVoter,
            VoterNotFound(_) => ResponseError::VoterNotFound,
            InconsistentClusterId(_) => ResponseError::InconsistentClusterId,
            Forwarded(e, _) => *e,
        }
    }

    pub fn code(&self) -> i16 {
        self.response_error().code()
    }
}

/// Kafka's code for a result: 0 on success.
pub fn code_of<T>(r: &Result<T, KafkaError>) -> i16 {
    r.as_ref().err().map_or(0, KafkaError::code)
}
