//! Request decoding and response encoding around the generated message codecs.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::protocol::{Message, VersionRange};
use thiserror::Error;

/// The fixed fields at the start of every request header, readable before the rest of the
/// header's version is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// A decoded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

impl Request {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
    pub fn client_id(&self) -> Option<&str> {
        self.header.client_id.as_ref().map(StrBytes::as_str)
    }
}

#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("request shorter than a header prefix ({0} bytes)")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("malformed {api_key:?} v{version} request: {source}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        #[source]
        source: anyhow::Error,
    },
}

/// Reads api key, version and correlation id from a request payload (after the size prefix).
pub fn peek_header(payload: &[u8]) -> Result<HeaderPrefix, DecodeError> {
    if payload.len() < 8 {
        return Err(DecodeError::TooShort(payload.len()));
    }
    Ok(HeaderPrefix {
        api_key: i16::from_be_bytes([payload[0], payload[1]]),
        api_version: i16::from_be_bytes([payload[2], payload[3]]),
        correlation_id: i32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]),
    })
}

/// Decodes a whole request payload. `supported` says which versions of an API this broker
/// accepts; anything outside it fails with `UnsupportedVersion` before the body is parsed.
/// Record batches inside the body stay slices of `payload` (no copy).
pub fn decode_request(
    mut payload: Bytes,
    supported: impl Fn(ApiKey) -> Option<(i16, i16)>,
) -> Result<Request, DecodeError> {
    let prefix = peek_header(&payload)?;
    let api_key = ApiKey::try_from(prefix.api_key).map_err(|_| DecodeError::UnknownApiKey(prefix.api_key))?;
    let version = prefix.api_version;
    match supported(api_key) {
        Some((min, max)) if version >= min && version <= max => {}
        _ => return Err(DecodeError::UnsupportedVersion { api_key, version }),
    }
    let malformed = |source| DecodeError::Malformed { api_key, version, source };
    let header = RequestHeader::decode(&mut payload, api_key.request_header_version(version)).map_err(malformed)?;
    let body = RequestKind::decode(api_key, &mut payload, version).map_err(malformed)?;
    // Kafka ignores bytes after the body (some clients send a few), and so do we.
    Ok(Request { api_key, header, body })
}

/// Appends one whole response frame (size prefix, header, body) to `out`.
pub fn encode_response(
    out: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<()> {
    let start = out.len();
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(out, api_key.response_header_version(version))?;
    body.encode(out, version)?;
    let size = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Expands to a match over every message kind the pinned crate generates, calling
/// `compute_size` on the message inside. `RequestKind`/`ResponseKind` have no such method.
macro_rules! kind_size {
    ($kind:ident, $body:expr, $version:expr, [$($variant:ident),* $(,)?]) => {
        match $body {
            $($kind::$variant(x) => x.compute_size($version),)*
            #[allow(unreachable_patterns)]
            _ => Err(anyhow::anyhow!("unknown message kind")),
        }
    };
}

macro_rules! for_all_kinds {
    ($kind:ident, $body:expr, $version:expr) => {
        kind_size!(
            $kind,
            $body,
            $version,
            [
                Produce,
                Fetch,
                ListOffsets,
                Metadata,
                OffsetCommit,
                OffsetFetch,
                FindCoordinator,
                JoinGroup,
                Heartbeat,
                LeaveGroup,
                SyncGroup,
                DescribeGroups,
                ListGroups,
                SaslHandshake,
                ApiVersions,
                CreateTopics,
                DeleteTopics,
                DeleteRecords,
                InitProducerId,
                OffsetForLeaderEpoch,
                AddPartitionsToTxn,
                AddOffsetsToTxn,
                EndTxn,
                WriteTxnMarkers,
                TxnOffsetCommit,
                DescribeAcls,
                CreateAcls,
                DeleteAcls,
                DescribeConfigs,
                AlterConfigs,
                AlterReplicaLogDirs,
                DescribeLogDirs,
                SaslAuthenticate,
                CreatePartitions,
                CreateDelegationToken,
                RenewDelegationToken,
                ExpireDelegationToken,
                DescribeDelegationToken,
                DeleteGroups,
                ElectLeaders,
                IncrementalAlterConfigs,
                AlterPartitionReassignments,
                ListPartitionReassignments,
                OffsetDelete,
                DescribeClientQuotas,
                AlterClientQuotas,
                DescribeUserScramCredentials,
                AlterUserScramCredentials,
                Vote,
                BeginQuorumEpoch,
                EndQuorumEpoch,
                DescribeQuorum,
                AlterPartition,
                UpdateFeatures,
                Envelope,
                FetchSnapshot,
                DescribeCluster,
                DescribeProducers,
                BrokerRegistration,
                BrokerHeartbeat,
                UnregisterBroker,
                DescribeTransactions,
                ListTransactions,
                AllocateProducerIds,
                ConsumerGroupHeartbeat,
                ConsumerGroupDescribe,
                ControllerRegistration,
                GetTelemetrySubscriptions,
                PushTelemetry,
                AssignReplicasToDirs,
                ListConfigResources,
                DescribeTopicPartitions,
                ShareGroupHeartbeat,
                ShareGroupDescribe,
                ShareFetch,
                ShareAcknowledge,
                AddRaftVoter,
                RemoveRaftVoter,
                UpdateRaftVoter,
                InitializeShareGroupState,
                ReadShareGroupState,
                WriteShareGroupState,
                DeleteShareGroupState,
                ReadShareGroupStateSummary,
                DescribeShareGroupOffsets,
                AlterShareGroupOffsets,
                DeleteShareGroupOffsets
            ]
        )
    };
}

/// Encoded size of a request body at `version` (header and size prefix excluded), without
/// encoding it.
pub fn request_body_size(body: &RequestKind, version: i16) -> anyhow::Result<usize> {
    for_all_kinds!(RequestKind, body, version)
}

/// Encoded size of a response body at `version` (header and size prefix excluded), without
/// encoding it; lets the broker size a response frame before writing it.
pub fn response_body_size(body: &ResponseKind, version: i16) -> anyhow::Result<usize> {
    for_all_kinds!(ResponseKind, body, version)
}

/// The versions of `api_key` this crate can both decode (request) and encode (response).
///
/// Use this, not `ApiKey::valid_versions()`, to decide what to advertise in ApiVersions: in
/// kafka-protocol 0.18 the latter claims OffsetCommit v10, OffsetFetch v10 and InitProducerId
/// v6, whose request codecs stop at v9, v9 and v5 (they were unstable in Kafka 4.1).
pub fn supported_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    #[allow(unreachable_patterns)]
    let (request, response): (VersionRange, VersionRange) = match api_key {
        ApiKey::Produce => (<ProduceRequest as Message>::VERSIONS, <ProduceResponse as Message>::VERSIONS),
        ApiKey::Fetch => (<FetchRequest as Message>::VERSIONS, <FetchResponse as Message>::VERSIONS),
        ApiKey::ListOffsets => (<ListOffsetsRequest as Message>::VERSIONS, <ListOffsetsResponse as Message>::VERSIONS),
        ApiKey::Metadata => (<MetadataRequest as Message>::VERSIONS, <MetadataResponse as Message>::VERSIONS),
        ApiKey::OffsetCommit => {
            (<OffsetCommitRequest as Message>::VERSIONS, <OffsetCommitResponse as Message>::VERSIONS)
        }
        ApiKey::OffsetFetch => (<OffsetFetchRequest as Message>::VERSIONS, <OffsetFetchResponse as Message>::VERSIONS),
        ApiKey::FindCoordinator => {
            (<FindCoordinatorRequest as Message>::VERSIONS, <FindCoordinatorResponse as Message>::VERSIONS)
        }
        ApiKey::JoinGroup => (<JoinGroupRequest as Message>::VERSIONS, <JoinGroupResponse as Message>::VERSIONS),
        ApiKey::Heartbeat => (<HeartbeatRequest as Message>::VERSIONS, <HeartbeatResponse as Message>::VERSIONS),
        ApiKey::LeaveGroup => (<LeaveGroupRequest as Message>::VERSIONS, <LeaveGroupResponse as Message>::VERSIONS),
        ApiKey::SyncGroup => (<SyncGroupRequest as Message>::VERSIONS, <SyncGroupResponse as Message>::VERSIONS),
        ApiKey::DescribeGroups => {
            (<DescribeGroupsRequest as Message>::VERSIONS, <DescribeGroupsResponse as Message>::VERSIONS)
        }
        ApiKey::ListGroups => (<ListGroupsRequest as Message>::VERSIONS, <ListGroupsResponse as Message>::VERSIONS),
        ApiKey::SaslHandshake => {
            (<SaslHandshakeRequest as Message>::VERSIONS, <SaslHandshakeResponse as Message>::VERSIONS)
        }
        ApiKey::ApiVersions => (<ApiVersionsRequest as Message>::VERSIONS, <ApiVersionsResponse as Message>::VERSIONS),
        ApiKey::CreateTopics => {
            (<CreateTopicsRequest as Message>::VERSIONS, <CreateTopicsResponse as Message>::VERSIONS)
        }
        ApiKey::DeleteTopics => {
            (<DeleteTopicsRequest as Message>::VERSIONS, <DeleteTopicsResponse as Message>::VERSIONS)
        }
        ApiKey::DeleteRecords => {
            (<DeleteRecordsRequest as Message>::VERSIONS, <DeleteRecordsResponse as Message>::VERSIONS)
        }
        ApiKey::InitProducerId => {
            (<InitProducerIdRequest as Message>::VERSIONS, <InitProducerIdResponse as Message>::VERSIONS)
        }
        ApiKey::OffsetForLeaderEpoch => {
            (<OffsetForLeaderEpochRequest as Message>::VERSIONS, <OffsetForLeaderEpochResponse as Message>::VERSIONS)
        }
        ApiKey::AddPartitionsToTxn => {
            (<AddPartitionsToTxnRequest as Message>::VERSIONS, <AddPartitionsToTxnResponse as Message>::VERSIONS)
        }
        ApiKey::AddOffsetsToTxn => {
            (<AddOffsetsToTxnRequest as Message>::VERSIONS, <AddOffsetsToTxnResponse as Message>::VERSIONS)
        }
        ApiKey::EndTxn => (<EndTxnRequest as Message>::VERSIONS, <EndTxnResponse as Message>::VERSIONS),
        ApiKey::WriteTxnMarkers => {
            (<WriteTxnMarkersRequest as Message>::VERSIONS, <WriteTxnMarkersResponse as Message>::VERSIONS)
        }
        ApiKey::TxnOffsetCommit => {
            (<TxnOffsetCommitRequest as Message>::VERSIONS, <TxnOffsetCommitResponse as Message>::VERSIONS)
        }
        ApiKey::DescribeAcls => {
            (<DescribeAclsRequest as Message>::VERSIONS, <DescribeAclsResponse as Message>::VERSIONS)
        }
        ApiKey::CreateAcls => (<CreateAclsRequest as Message>::VERSIONS, <CreateAclsResponse as Message>::VERSIONS),
        ApiKey::DeleteAcls => (<DeleteAclsRequest as Message>::VERSIONS, <DeleteAclsResponse as Message>::VERSIONS),
        ApiKey::DescribeConfigs => {
            (<DescribeConfigsRequest as Message>::VERSIONS, <DescribeConfigsResponse as Message>::VERSIONS)
        }
        ApiKey::AlterConfigs => {
            (<AlterConfigsRequest as Message>::VERSIONS, <AlterConfigsResponse as Message>::VERSIONS)
        }
        ApiKey::AlterReplicaLogDirs => {
            (<AlterReplicaLogDirsRequest as Message>::VERSIONS, <AlterReplicaLogDirsResponse as Message>::VERSIONS)
        }
        ApiKey::DescribeLogDirs => {
            (<DescribeLogDirsRequest as Message>::VERSIONS, <DescribeLogDirsResponse as Message>::VERSIONS)
        }
        ApiKey::SaslAuthenticate => {
            (<SaslAuthenticateRequest as Message>::VERSIONS, <SaslAuthenticateResponse as Message>::VERSIONS)
        }
        ApiKey::CreatePartitions => {
            (<CreatePartitionsRequest as Message>::VERSIONS, <CreatePartitionsResponse as Message>::VERSIONS)
        }
        ApiKey::CreateDelegationToken => {
            (<CreateDelegationTokenRequest as Message>::VERSIONS, <CreateDelegationTokenResponse as Message>::VERSIONS)
        }
        ApiKey::RenewDelegationToken => {
            (<RenewDelegationTokenRequest as Message>::VERSIONS, <RenewDelegationTokenResponse as Message>::VERSIONS)
        }
        ApiKey::ExpireDelegationToken => {
            (<ExpireDelegationTokenRequest as Message>::VERSIONS, <ExpireDelegationTokenResponse as Message>::VERSIONS)
        }
        ApiKey::DescribeDelegationToken => (
            <DescribeDelegationTokenRequest as Message>::VERSIONS,
            <DescribeDelegationTokenResponse as Message>::VERSIONS,
        ),
        ApiKey::DeleteGroups => {
            (<DeleteGroupsRequest as Message>::VERSIONS, <DeleteGroupsResponse as Message>::VERSIONS)
        }
        ApiKey::ElectLeaders => {
            (<ElectLeadersRequest as Message>::VERSIONS, <ElectLeadersResponse as Message>::VERSIONS)
        }
        ApiKey::IncrementalAlterConfigs => (
            <IncrementalAlterConfigsRequest as Message>::VERSIONS,
            <IncrementalAlterConfigsResponse as Message>::VERSIONS,
        ),
        ApiKey::AlterPartitionReassignments => (
            <AlterPartitionReassignmentsRequest as Message>::VERSIONS,
            <AlterPartitionReassignmentsResponse as Message>::VERSIONS,
        ),
        ApiKey::ListPartitionReassignments => (
            <ListPartitionReassignmentsRequest as Message>::VERSIONS,
            <ListPartitionReassignmentsResponse as Message>::VERSIONS,
        ),
        ApiKey::OffsetDelete => {
            (<OffsetDeleteRequest as Message>::VERSIONS, <OffsetDeleteResponse as Message>::VERSIONS)
        }
        ApiKey::DescribeClientQuotas => {
            (<DescribeClientQuotasRequest as Message>::VERSIONS, <DescribeClientQuotasResponse as Message>::VERSIONS)
        }
        ApiKey::AlterClientQuotas => {
            (<AlterClientQuotasRequest as Message>::VERSIONS, <AlterClientQuotasResponse as Message>::VERSIONS)
        }
        ApiKey::DescribeUserScramCredentials => (
            <DescribeUserScramCredentialsRequest as Message>::VERSIONS,
            <DescribeUserScramCredentialsResponse as Message>::VERSIONS,
        ),
        ApiKey::AlterUserScramCredentials => (
            <AlterUserScramCredentialsRequest as Message>::VERSIONS,
            <AlterUserScramCredentialsResponse as Message>::VERSIONS,
        ),
        ApiKey::Vote => (<VoteRequest as Message>::VERSIONS, <VoteResponse as Message>::VERSIONS),
        ApiKey::BeginQuorumEpoch => {
            (<BeginQuorumEpochRequest as Message>::VERSIONS, <BeginQuorumEpochResponse as Message>::VERSIONS)
        }
        ApiKey::EndQuorumEpoch => {
            (<EndQuorumEpochRequest as Message>::VERSIONS, <EndQuorumEpochResponse as Message>::VERSIONS)
        }
        ApiKey::DescribeQuorum => {
            (<DescribeQuorumRequest as Message>::VERSIONS, <DescribeQuorumResponse as Message>::VERSIONS)
        }
        ApiKey::AlterPartition => {
            (<AlterPartitionRequest as Message>::VERSIONS, <AlterPartitionResponse as Message>::VERSIONS)
        }
        ApiKey::UpdateFeatures => {
            (<UpdateFeaturesRequest as Message>::VERSIONS, <UpdateFeaturesResponse as Message>::VERSIONS)
        }
        ApiKey::Envelope => (<EnvelopeRequest as Message>::VERSIONS, <EnvelopeResponse as Message>::VERSIONS),
        ApiKey::FetchSnapshot => {
            (<FetchSnapshotRequest as Message>::VERSIONS, <FetchSnapshotResponse as Message>::VERSIONS)
        }
        ApiKey::DescribeCluster => {
            (<DescribeClusterRequest as Message>::VERSIONS, <DescribeClusterResponse as Message>::VERSIONS)
        }
        ApiKey::DescribeProducers => {
            (<DescribeProducersRequest as Message>::VERSIONS, <DescribeProducersResponse as Message>::VERSIONS)
        }
        ApiKey::BrokerRegistration => {
            (<BrokerRegistrationRequest as Message>::VERSIONS, <BrokerRegistrationResponse as Message>::VERSIONS)
        }
        ApiKey::BrokerHeartbeat => {
            (<BrokerHeartbeatRequest as Message>::VERSIONS, <BrokerHeartbeatResponse as Message>::VERSIONS)
        }
        ApiKey::UnregisterBroker => {
            (<UnregisterBrokerRequest as Message>::VERSIONS, <UnregisterBrokerResponse as Message>::VERSIONS)
        }
        ApiKey::DescribeTransactions => {
            (<DescribeTransactionsRequest as Message>::VERSIONS, <DescribeTransactionsResponse as Message>::VERSIONS)
        }
        ApiKey::ListTransactions => {
            (<ListTransactionsRequest as Message>::VERSIONS, <ListTransactionsResponse as Message>::VERSIONS)
        }
        ApiKey::AllocateProducerIds => {
            (<AllocateProducerIdsRequest as Message>::VERSIONS, <AllocateProducerIdsResponse as Message>::VERSIONS)
        }
        ApiKey::ConsumerGroupHeartbeat => (
            <ConsumerGroupHeartbeatRequest as Message>::VERSIONS,
            <ConsumerGroupHeartbeatResponse as Message>::VERSIONS,
        ),
        ApiKey::ConsumerGroupDescribe => {
            (<ConsumerGroupDescribeRequest as Message>::VERSIONS, <ConsumerGroupDescribeResponse as Message>::VERSIONS)
        }
        ApiKey::ControllerRegistration => (
            <ControllerRegistrationRequest as Message>::VERSIONS,
            <ControllerRegistrationResponse as Message>::VERSIONS,
        ),
        ApiKey::GetTelemetrySubscriptions => (
            <GetTelemetrySubscriptionsRequest as Message>::VERSIONS,
            <GetTelemetrySubscriptionsResponse as Message>::VERSIONS,
        ),
        ApiKey::PushTelemetry => {
            (<PushTelemetryRequest as Message>::VERSIONS, <PushTelemetryResponse as Message>::VERSIONS)
        }
        ApiKey::AssignReplicasToDirs => {
            (<AssignReplicasToDirsRequest as Message>::VERSIONS, <AssignReplicasToDirsResponse as Message>::VERSIONS)
        }
        ApiKey::ListConfigResources => {
            (<ListConfigResourcesRequest as Message>::VERSIONS, <ListConfigResourcesResponse as Message>::VERSIONS)
        }
        ApiKey::DescribeTopicPartitions => (
            <DescribeTopicPartitionsRequest as Message>::VERSIONS,
            <DescribeTopicPartitionsResponse as Message>::VERSIONS,
        ),
        ApiKey::ShareGroupHeartbeat => {
            (<ShareGroupHeartbeatRequest as Message>::VERSIONS, <ShareGroupHeartbeatResponse as Message>::VERSIONS)
        }
        ApiKey::ShareGroupDescribe => {
            (<ShareGroupDescribeRequest as Message>::VERSIONS, <ShareGroupDescribeResponse as Message>::VERSIONS)
        }
        ApiKey::ShareFetch => (<ShareFetchRequest as Message>::VERSIONS, <ShareFetchResponse as Message>::VERSIONS),
        ApiKey::ShareAcknowledge => {
            (<ShareAcknowledgeRequest as Message>::VERSIONS, <ShareAcknowledgeResponse as Message>::VERSIONS)
        }
        ApiKey::AddRaftVoter => {
            (<AddRaftVoterRequest as Message>::VERSIONS, <AddRaftVoterResponse as Message>::VERSIONS)
        }
        ApiKey::RemoveRaftVoter => {
            (<RemoveRaftVoterRequest as Message>::VERSIONS, <RemoveRaftVoterResponse as Message>::VERSIONS)
        }
        ApiKey::UpdateRaftVoter => {
            (<UpdateRaftVoterRequest as Message>::VERSIONS, <UpdateRaftVoterResponse as Message>::VERSIONS)
        }
        ApiKey::InitializeShareGroupState => (
            <InitializeShareGroupStateRequest as Message>::VERSIONS,
            <InitializeShareGroupStateResponse as Message>::VERSIONS,
        ),
        ApiKey::ReadShareGroupState => {
            (<ReadShareGroupStateRequest as Message>::VERSIONS, <ReadShareGroupStateResponse as Message>::VERSIONS)
        }
        ApiKey::WriteShareGroupState => {
            (<WriteShareGroupStateRequest as Message>::VERSIONS, <WriteShareGroupStateResponse as Message>::VERSIONS)
        }
        ApiKey::DeleteShareGroupState => {
            (<DeleteShareGroupStateRequest as Message>::VERSIONS, <DeleteShareGroupStateResponse as Message>::VERSIONS)
        }
        ApiKey::ReadShareGroupStateSummary => (
            <ReadShareGroupStateSummaryRequest as Message>::VERSIONS,
            <ReadShareGroupStateSummaryResponse as Message>::VERSIONS,
        ),
        ApiKey::DescribeShareGroupOffsets => (
            <DescribeShareGroupOffsetsRequest as Message>::VERSIONS,
            <DescribeShareGroupOffsetsResponse as Message>::VERSIONS,
        ),
        ApiKey::AlterShareGroupOffsets => (
            <AlterShareGroupOffsetsRequest as Message>::VERSIONS,
            <AlterShareGroupOffsetsResponse as Message>::VERSIONS,
        ),
        ApiKey::DeleteShareGroupOffsets => (
            <DeleteShareGroupOffsetsRequest as Message>::VERSIONS,
            <DeleteShareGroupOffsetsResponse as Message>::VERSIONS,
        ),
        _ => return None,
    };
    let declared = api_key.valid_versions();
    let min = declared.min.max(request.min).max(response.min);
    let max = declared.max.min(request.max).min(response.max);
    (min <= max).then_some((min, max))
}
