package dev.rill.golden;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Function;

import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.compress.Compression;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.message.ApiVersionsRequestData;
import org.apache.kafka.common.message.ApiVersionsResponseData;
import org.apache.kafka.common.message.CreateTopicsRequestData;
import org.apache.kafka.common.message.CreateTopicsResponseData;
import org.apache.kafka.common.message.DeleteTopicsRequestData;
import org.apache.kafka.common.message.DeleteTopicsResponseData;
import org.apache.kafka.common.message.DescribeClusterRequestData;
import org.apache.kafka.common.message.DescribeClusterResponseData;
import org.apache.kafka.common.message.DescribeConfigsRequestData;
import org.apache.kafka.common.message.DescribeConfigsResponseData;
import org.apache.kafka.common.message.DescribeTopicPartitionsRequestData;
import org.apache.kafka.common.message.DescribeTopicPartitionsResponseData;
import org.apache.kafka.common.message.FetchRequestData;
import org.apache.kafka.common.message.FetchResponseData;
import org.apache.kafka.common.message.FindCoordinatorRequestData;
import org.apache.kafka.common.message.FindCoordinatorResponseData;
import org.apache.kafka.common.message.HeartbeatRequestData;
import org.apache.kafka.common.message.HeartbeatResponseData;
import org.apache.kafka.common.message.IncrementalAlterConfigsRequestData;
import org.apache.kafka.common.message.IncrementalAlterConfigsResponseData;
import org.apache.kafka.common.message.InitProducerIdRequestData;
import org.apache.kafka.common.message.InitProducerIdResponseData;
import org.apache.kafka.common.message.JoinGroupRequestData;
import org.apache.kafka.common.message.JoinGroupResponseData;
import org.apache.kafka.common.message.ListOffsetsRequestData;
import org.apache.kafka.common.message.ListOffsetsResponseData;
import org.apache.kafka.common.message.MetadataRequestData;
import org.apache.kafka.common.message.MetadataResponseData;
import org.apache.kafka.common.message.OffsetCommitRequestData;
import org.apache.kafka.common.message.OffsetCommitResponseData;
import org.apache.kafka.common.message.OffsetFetchRequestData;
import org.apache.kafka.common.message.OffsetFetchResponseData;
import org.apache.kafka.common.message.ProduceRequestData;
import org.apache.kafka.common.message.ProduceResponseData;
import org.apache.kafka.common.message.RequestHeaderData;
import org.apache.kafka.common.message.ResponseHeaderData;
import org.apache.kafka.common.message.SyncGroupRequestData;
import org.apache.kafka.common.message.SyncGroupResponseData;
import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.Message;
import org.apache.kafka.common.protocol.ObjectSerializationCache;
import org.apache.kafka.common.protocol.types.RawTaggedField;
import org.apache.kafka.common.record.MemoryRecords;
import org.apache.kafka.common.record.SimpleRecord;

/**
 * Writes golden request/response frames (header + body, no size prefix) built and serialized
 * by the real Apache Kafka client classes, for every stable version of a representative set of
 * APIs. Output: {@code <dir>/<Api>Request-v<N>.bin} and {@code <dir>/<Api>Response-v<N>.bin}.
 *
 * Field values are deliberately non-default (nulls where nullable, tagged fields, topic ids,
 * unknown tagged fields in flexible versions) so a codec that drops or rewrites anything shows
 * up as a byte mismatch.
 */
public final class GenerateGolden {
    private static final Uuid TOPIC_ID = Uuid.fromString("YQ3lVEZlTwqNhJ0Cxe8MSw");
    private static final Uuid TOPIC_ID_2 = Uuid.fromString("f1GkP3wqRmKs0Zz9y8x7ww");
    private static final Uuid DIR_ID = Uuid.fromString("dkUzZSBpcyBhIGRpcmVjdA");
    private static final long TS = 1_700_000_000_123L;

    private final Path dir;
    private int written;
    private int correlation = 1000;

    private GenerateGolden(Path dir) {
        this.dir = dir;
    }

    public static void main(String[] args) throws IOException {
        Path dir = Path.of(args.length > 0 ? args[0] : "../tests/golden");
        Files.createDirectories(dir);
        GenerateGolden g = new GenerateGolden(dir);
        g.all();
        System.out.println("golden files written: " + g.written);
    }

    // ---------------------------------------------------------------------------------------
    // Serialization
    // ---------------------------------------------------------------------------------------

    /** A raw (unknown to the schema) tagged field, only valid on flexible versions. */
    private static void unknownTag(Message m, int tag, String payload) {
        m.unknownTaggedFields().add(new RawTaggedField(tag, payload.getBytes(StandardCharsets.UTF_8)));
    }

    private static byte[] serialize(Message header, short headerVersion, Message body, short version) {
        ObjectSerializationCache cache = new ObjectSerializationCache();
        int size = header.size(cache, headerVersion) + body.size(cache, version);
        ByteBuffer buf = ByteBuffer.allocate(size);
        ByteBufferAccessor acc = new ByteBufferAccessor(buf);
        header.write(acc, cache, headerVersion);
        body.write(acc, cache, version);
        if (buf.hasRemaining()) {
            throw new IllegalStateException("size mismatch: " + buf.remaining() + " bytes left");
        }
        return buf.array();
    }

    private void write(String file, byte[] bytes) throws IOException {
        Files.write(dir.resolve(file), bytes);
        written++;
    }

    /** Every stable version of {@code key} (oldest the 4.x client knows .. latest stable). */
    private static List<Short> versions(ApiKeys key) {
        List<Short> out = new ArrayList<>();
        for (short v = key.oldestVersion(); v <= key.latestVersion(false); v++) {
            out.add(v);
        }
        return out;
    }

    private void api(String name, ApiKeys key, Function<Short, Message> request, Function<Short, Message> response)
        throws IOException {
        for (short v : versions(key)) {
            int corr = correlation++;
            short reqHv = key.requestHeaderVersion(v);
            RequestHeaderData rh = new RequestHeaderData()
                .setRequestApiKey(key.id)
                .setRequestApiVersion(v)
                .setCorrelationId(corr)
                // A null client id on every third request (nullable in header v1+).
                .setClientId(corr % 3 == 0 ? null : "rill-golden/" + name + "-v" + v);
            if (reqHv >= 2 && corr % 2 == 0) {
                unknownTag(rh, 7, "hdr");
            }
            Message req = request.apply(v);
            try {
                write(name + "Request-v" + v + ".bin", serialize(rh, reqHv, req, v));
            } catch (RuntimeException e) {
                throw new IllegalStateException(name + "Request v" + v + ": " + e, e);
            }

            short respHv = key.responseHeaderVersion(v);
            ResponseHeaderData resh = new ResponseHeaderData().setCorrelationId(corr);
            if (respHv >= 1 && corr % 2 == 1) {
                unknownTag(resh, 5, "rh");
            }
            Message resp = response.apply(v);
            try {
                write(name + "Response-v" + v + ".bin", serialize(resh, respHv, resp, v));
            } catch (RuntimeException e) {
                throw new IllegalStateException(name + "Response v" + v + ": " + e, e);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Records
    // ---------------------------------------------------------------------------------------

    private static SimpleRecord[] sampleRecords() {
        Header[] headers = {
            new RecordHeader("trace-id", "abc123".getBytes(StandardCharsets.UTF_8)),
            new RecordHeader("empty", null),
        };
        return new SimpleRecord[] {
            new SimpleRecord(TS, "key-0".getBytes(StandardCharsets.UTF_8), "value-0".getBytes(StandardCharsets.UTF_8), headers),
            new SimpleRecord(TS + 1, null, "value-1 (null key)".getBytes(StandardCharsets.UTF_8)),
            new SimpleRecord(TS + 2, "key-2".getBytes(StandardCharsets.UTF_8), null),
        };
    }

    private static ByteBuffer bytes(MemoryRecords r) {
        ByteBuffer b = r.buffer();
        byte[] copy = new byte[b.remaining()];
        b.duplicate().get(copy);
        return ByteBuffer.wrap(copy);
    }

    private static MemoryRecords plainBatch() {
        return MemoryRecords.withRecords(Compression.NONE, sampleRecords());
    }

    private static MemoryRecords gzipBatch() {
        return MemoryRecords.withRecords(Compression.gzip().build(), sampleRecords());
    }

    private static MemoryRecords idempotentBatch() {
        return MemoryRecords.withIdempotentRecords(Compression.NONE, 4242L, (short) 3, 17, sampleRecords());
    }

    /** Two batches back to back, as a fetch response carries them, starting at offset 100. */
    private static MemoryRecords fetchedRecords() {
        MemoryRecords a = MemoryRecords.withRecords(100L, Compression.NONE, sampleRecords());
        MemoryRecords b = MemoryRecords.withRecords(103L, Compression.gzip().build(), sampleRecords());
        ByteBuffer both = ByteBuffer.allocate(a.sizeInBytes() + b.sizeInBytes());
        both.put(a.buffer().duplicate()).put(b.buffer().duplicate()).flip();
        return MemoryRecords.readableRecords(both);
    }

    // ---------------------------------------------------------------------------------------
    // Messages
    // ---------------------------------------------------------------------------------------

    private void all() throws IOException {
        api("ApiVersions", ApiKeys.API_VERSIONS, GenerateGolden::apiVersionsRequest, GenerateGolden::apiVersionsResponse);
        api("Metadata", ApiKeys.METADATA, GenerateGolden::metadataRequest, GenerateGolden::metadataResponse);
        api("Produce", ApiKeys.PRODUCE, GenerateGolden::produceRequest, GenerateGolden::produceResponse);
        api("Fetch", ApiKeys.FETCH, GenerateGolden::fetchRequest, GenerateGolden::fetchResponse);
        api("ListOffsets", ApiKeys.LIST_OFFSETS, GenerateGolden::listOffsetsRequest, GenerateGolden::listOffsetsResponse);
        api("CreateTopics", ApiKeys.CREATE_TOPICS, GenerateGolden::createTopicsRequest, GenerateGolden::createTopicsResponse);
        api("DeleteTopics", ApiKeys.DELETE_TOPICS, GenerateGolden::deleteTopicsRequest, GenerateGolden::deleteTopicsResponse);
        api("DescribeConfigs", ApiKeys.DESCRIBE_CONFIGS, GenerateGolden::describeConfigsRequest,
            GenerateGolden::describeConfigsResponse);
        api("IncrementalAlterConfigs", ApiKeys.INCREMENTAL_ALTER_CONFIGS, GenerateGolden::incrementalAlterConfigsRequest,
            GenerateGolden::incrementalAlterConfigsResponse);
        api("InitProducerId", ApiKeys.INIT_PRODUCER_ID, GenerateGolden::initProducerIdRequest,
            GenerateGolden::initProducerIdResponse);
        api("FindCoordinator", ApiKeys.FIND_COORDINATOR, GenerateGolden::findCoordinatorRequest,
            GenerateGolden::findCoordinatorResponse);
        api("JoinGroup", ApiKeys.JOIN_GROUP, GenerateGolden::joinGroupRequest, GenerateGolden::joinGroupResponse);
        api("SyncGroup", ApiKeys.SYNC_GROUP, GenerateGolden::syncGroupRequest, GenerateGolden::syncGroupResponse);
        api("Heartbeat", ApiKeys.HEARTBEAT, GenerateGolden::heartbeatRequest, GenerateGolden::heartbeatResponse);
        api("OffsetCommit", ApiKeys.OFFSET_COMMIT, GenerateGolden::offsetCommitRequest, GenerateGolden::offsetCommitResponse);
        api("OffsetFetch", ApiKeys.OFFSET_FETCH, GenerateGolden::offsetFetchRequest, GenerateGolden::offsetFetchResponse);
        api("DescribeCluster", ApiKeys.DESCRIBE_CLUSTER, GenerateGolden::describeClusterRequest,
            GenerateGolden::describeClusterResponse);
        api("DescribeTopicPartitions", ApiKeys.DESCRIBE_TOPIC_PARTITIONS, GenerateGolden::describeTopicPartitionsRequest,
            GenerateGolden::describeTopicPartitionsResponse);
    }

    // ApiVersions ----------------------------------------------------------------------------

    private static Message apiVersionsRequest(short v) {
        ApiVersionsRequestData d = new ApiVersionsRequestData()
            .setClientSoftwareName("apache-kafka-java")
            .setClientSoftwareVersion("4.1.1");
        if (v >= 3) {
            unknownTag(d, 42, "x");
        }
        return d;
    }

    private static Message apiVersionsResponse(short v) {
        ApiVersionsResponseData d = new ApiVersionsResponseData().setErrorCode((short) 0).setThrottleTimeMs(12);
        ApiVersionsResponseData.ApiVersionCollection keys = new ApiVersionsResponseData.ApiVersionCollection();
        keys.add(new ApiVersionsResponseData.ApiVersion().setApiKey((short) 0).setMinVersion((short) 3).setMaxVersion((short) 13));
        keys.add(new ApiVersionsResponseData.ApiVersion().setApiKey((short) 1).setMinVersion((short) 4).setMaxVersion((short) 17));
        keys.add(new ApiVersionsResponseData.ApiVersion().setApiKey((short) 18).setMinVersion((short) 0).setMaxVersion((short) 4));
        d.setApiKeys(keys);
        if (v >= 3) {
            ApiVersionsResponseData.SupportedFeatureKeyCollection sf = new ApiVersionsResponseData.SupportedFeatureKeyCollection();
            sf.add(new ApiVersionsResponseData.SupportedFeatureKey().setName("metadata.version").setMinVersion((short) 7).setMaxVersion((short) 27));
            d.setSupportedFeatures(sf);
            d.setFinalizedFeaturesEpoch(99L);
            ApiVersionsResponseData.FinalizedFeatureKeyCollection ff = new ApiVersionsResponseData.FinalizedFeatureKeyCollection();
            ff.add(new ApiVersionsResponseData.FinalizedFeatureKey().setName("metadata.version").setMinVersionLevel((short) 27).setMaxVersionLevel((short) 27));
            d.setFinalizedFeatures(ff);
            d.setZkMigrationReady(true);
        }
        return d;
    }

    // Metadata -------------------------------------------------------------------------------

    private static Message metadataRequest(short v) {
        MetadataRequestData d = new MetadataRequestData();
        List<MetadataRequestData.MetadataRequestTopic> topics = new ArrayList<>();
        topics.add(new MetadataRequestData.MetadataRequestTopic().setName("orders").setTopicId(TOPIC_ID));
        if (v >= 10) {
            // Lookup by id only: null name.
            topics.add(new MetadataRequestData.MetadataRequestTopic().setName(null).setTopicId(TOPIC_ID_2));
        } else {
            topics.add(new MetadataRequestData.MetadataRequestTopic().setName("payments"));
        }
        d.setTopics(topics);
        if (v >= 4) {
            d.setAllowAutoTopicCreation(false);
        }
        if (v >= 8 && v <= 10) {
            d.setIncludeClusterAuthorizedOperations(true);
        }
        if (v >= 8) {
            d.setIncludeTopicAuthorizedOperations(true);
        }
        if (v >= 9) {
            unknownTag(d, 10, "metadata-extra");
        }
        return d;
    }

    private static Message metadataResponse(short v) {
        MetadataResponseData d = new MetadataResponseData().setThrottleTimeMs(5).setClusterId("rill-cluster-Zq").setControllerId(2);
        MetadataResponseData.MetadataResponseBrokerCollection brokers = new MetadataResponseData.MetadataResponseBrokerCollection();
        brokers.add(new MetadataResponseData.MetadataResponseBroker().setNodeId(1).setHost("b1.example").setPort(9092).setRack("rack-a"));
        brokers.add(new MetadataResponseData.MetadataResponseBroker().setNodeId(2).setHost("b2.example").setPort(9093).setRack(null));
        d.setBrokers(brokers);
        MetadataResponseData.MetadataResponseTopicCollection topics = new MetadataResponseData.MetadataResponseTopicCollection();
        MetadataResponseData.MetadataResponseTopic t = new MetadataResponseData.MetadataResponseTopic()
            .setErrorCode((short) 0).setName("orders").setTopicId(TOPIC_ID).setIsInternal(false);
        t.partitions().add(new MetadataResponseData.MetadataResponsePartition()
            .setErrorCode((short) 0).setPartitionIndex(0).setLeaderId(1).setLeaderEpoch(4)
            .setReplicaNodes(Arrays.asList(1, 2)).setIsrNodes(Arrays.asList(1, 2)).setOfflineReplicas(List.of()));
        t.partitions().add(new MetadataResponseData.MetadataResponsePartition()
            .setErrorCode((short) 9).setPartitionIndex(1).setLeaderId(-1).setLeaderEpoch(-1)
            .setReplicaNodes(Arrays.asList(2, 1)).setIsrNodes(List.of(2)).setOfflineReplicas(List.of(1)));
        if (v >= 8) {
            t.setTopicAuthorizedOperations(0x0ff8);
        }
        topics.add(t);
        MetadataResponseData.MetadataResponseTopic internal = new MetadataResponseData.MetadataResponseTopic()
            .setErrorCode((short) 3).setName(v >= 12 ? null : "__consumer_offsets").setTopicId(TOPIC_ID_2).setIsInternal(true);
        if (v >= 8) {
            internal.setTopicAuthorizedOperations(-2147483648);
        }
        topics.add(internal);
        d.setTopics(topics);
        if (v >= 8 && v <= 10) {
            d.setClusterAuthorizedOperations(0x0120);
        }
        if (v >= 13) {
            d.setErrorCode((short) 0);
        }
        return d;
    }

    // Produce --------------------------------------------------------------------------------

    private static Message produceRequest(short v) {
        ProduceRequestData d = new ProduceRequestData()
            .setTransactionalId(v % 2 == 0 ? "txn-golden" : null)
            .setAcks((short) -1)
            .setTimeoutMs(30000);
        ProduceRequestData.TopicProduceDataCollection topics = new ProduceRequestData.TopicProduceDataCollection();
        ProduceRequestData.TopicProduceData t = new ProduceRequestData.TopicProduceData().setName("orders").setTopicId(TOPIC_ID);
        t.partitionData().add(new ProduceRequestData.PartitionProduceData().setIndex(0).setRecords(plainBatch()));
        t.partitionData().add(new ProduceRequestData.PartitionProduceData().setIndex(1).setRecords(gzipBatch()));
        t.partitionData().add(new ProduceRequestData.PartitionProduceData().setIndex(2).setRecords(idempotentBatch()));
        topics.add(t);
        ProduceRequestData.TopicProduceData t2 = new ProduceRequestData.TopicProduceData().setName("payments").setTopicId(TOPIC_ID_2);
        t2.partitionData().add(new ProduceRequestData.PartitionProduceData().setIndex(7).setRecords(gzipBatch()));
        topics.add(t2);
        d.setTopicData(topics);
        if (v >= 9) {
            unknownTag(d, 3, "p");
        }
        return d;
    }

    private static Message produceResponse(short v) {
        ProduceResponseData d = new ProduceResponseData().setThrottleTimeMs(7);
        ProduceResponseData.TopicProduceResponseCollection rs = new ProduceResponseData.TopicProduceResponseCollection();
        ProduceResponseData.TopicProduceResponse t = new ProduceResponseData.TopicProduceResponse().setName("orders").setTopicId(TOPIC_ID);
        t.partitionResponses().add(new ProduceResponseData.PartitionProduceResponse()
            .setIndex(0).setErrorCode((short) 0).setBaseOffset(1234567890123L).setLogAppendTimeMs(TS).setLogStartOffset(10L));
        ProduceResponseData.PartitionProduceResponse failed = new ProduceResponseData.PartitionProduceResponse()
            .setIndex(1).setErrorCode((short) 87).setBaseOffset(-1L).setLogAppendTimeMs(-1L).setLogStartOffset(-1L)
            .setRecordErrors(List.of(
                new ProduceResponseData.BatchIndexAndErrorMessage().setBatchIndex(2).setBatchIndexErrorMessage("bad record"),
                new ProduceResponseData.BatchIndexAndErrorMessage().setBatchIndex(5).setBatchIndexErrorMessage(null)))
            .setErrorMessage("INVALID_RECORD");
        if (v >= 10) {
            failed.setCurrentLeader(new ProduceResponseData.LeaderIdAndEpoch().setLeaderId(2).setLeaderEpoch(11));
        }
        t.partitionResponses().add(failed);
        rs.add(t);
        d.setResponses(rs);
        if (v >= 10) {
            ProduceResponseData.NodeEndpointCollection eps = new ProduceResponseData.NodeEndpointCollection();
            eps.add(new ProduceResponseData.NodeEndpoint().setNodeId(2).setHost("b2.example").setPort(9093).setRack("rack-b"));
            eps.add(new ProduceResponseData.NodeEndpoint().setNodeId(3).setHost("b3.example").setPort(9094).setRack(null));
            d.setNodeEndpoints(eps);
        }
        return d;
    }

    // Fetch ----------------------------------------------------------------------------------

    private static Message fetchRequest(short v) {
        FetchRequestData d = new FetchRequestData()
            .setClusterId(v >= 12 ? "rill-cluster-Zq" : null)
            .setMaxWaitMs(500).setMinBytes(1).setMaxBytes(52428800)
            .setIsolationLevel((byte) 1).setSessionId(0).setSessionEpoch(-1)
            .setRackId("rack-a");
        if (v >= 15) {
            d.setReplicaState(new FetchRequestData.ReplicaState().setReplicaId(3).setReplicaEpoch(77L));
        } else {
            d.setReplicaId(-1);
        }
        FetchRequestData.FetchTopic t = new FetchRequestData.FetchTopic().setTopic("orders").setTopicId(TOPIC_ID);
        FetchRequestData.FetchPartition p0 = new FetchRequestData.FetchPartition()
            .setPartition(0).setCurrentLeaderEpoch(4).setFetchOffset(100L).setLogStartOffset(0L).setPartitionMaxBytes(1048576);
        FetchRequestData.FetchPartition p1 = new FetchRequestData.FetchPartition()
            .setPartition(1).setCurrentLeaderEpoch(-1).setFetchOffset(0L).setLogStartOffset(-1L).setPartitionMaxBytes(65536);
        if (v >= 12) {
            p0.setLastFetchedEpoch(3);
        }
        if (v >= 17) {
            p0.setReplicaDirectoryId(DIR_ID);
        }
        if (v >= 18) {
            p0.setHighWatermark(99L);
        }
        t.setPartitions(List.of(p0, p1));
        d.setTopics(List.of(t));
        if (v >= 7) {
            d.setForgottenTopicsData(List.of(new FetchRequestData.ForgottenTopic()
                .setTopic("old-topic").setTopicId(TOPIC_ID_2).setPartitions(List.of(0, 3))));
        }
        return d;
    }

    private static Message fetchResponse(short v) {
        FetchResponseData d = new FetchResponseData().setThrottleTimeMs(3).setErrorCode((short) 0);
        if (v >= 7) {
            d.setSessionId(123456);
        }
        FetchResponseData.FetchableTopicResponse t = new FetchResponseData.FetchableTopicResponse().setTopic("orders").setTopicId(TOPIC_ID);
        FetchResponseData.PartitionData p0 = new FetchResponseData.PartitionData()
            .setPartitionIndex(0).setErrorCode((short) 0).setHighWatermark(106L).setLastStableOffset(106L).setLogStartOffset(0L)
            .setAbortedTransactions(List.of(new FetchResponseData.AbortedTransaction().setProducerId(4242L).setFirstOffset(90L)))
            .setRecords(fetchedRecords());
        if (v >= 11) {
            p0.setPreferredReadReplica(-1);
        }
        FetchResponseData.PartitionData p1 = new FetchResponseData.PartitionData()
            .setPartitionIndex(1).setErrorCode((short) 74).setHighWatermark(-1L).setLastStableOffset(-1L).setLogStartOffset(-1L)
            .setAbortedTransactions(null).setRecords(MemoryRecords.EMPTY);
        if (v >= 11) {
            p1.setPreferredReadReplica(2);
        }
        if (v >= 12) {
            p1.setDivergingEpoch(new FetchResponseData.EpochEndOffset().setEpoch(5).setEndOffset(80L));
            p1.setCurrentLeader(new FetchResponseData.LeaderIdAndEpoch().setLeaderId(2).setLeaderEpoch(6));
            p1.setSnapshotId(new FetchResponseData.SnapshotId().setEndOffset(70L).setEpoch(4));
            unknownTag(p1, 9, "part");
        }
        FetchResponseData.PartitionData p2 = new FetchResponseData.PartitionData()
            .setPartitionIndex(2).setErrorCode((short) 0).setHighWatermark(0L).setRecords(null);
        t.setPartitions(List.of(p0, p1, p2));
        d.setResponses(List.of(t));
        if (v >= 16) {
            FetchResponseData.NodeEndpointCollection eps = new FetchResponseData.NodeEndpointCollection();
            eps.add(new FetchResponseData.NodeEndpoint().setNodeId(2).setHost("b2.example").setPort(9093).setRack(null));
            d.setNodeEndpoints(eps);
        }
        return d;
    }

    // ListOffsets ----------------------------------------------------------------------------

    private static Message listOffsetsRequest(short v) {
        ListOffsetsRequestData d = new ListOffsetsRequestData().setReplicaId(-1).setTimeoutMs(1500);
        if (v >= 2) {
            d.setIsolationLevel((byte) 1);
        }
        ListOffsetsRequestData.ListOffsetsTopic t = new ListOffsetsRequestData.ListOffsetsTopic().setName("orders");
        t.setPartitions(List.of(
            new ListOffsetsRequestData.ListOffsetsPartition().setPartitionIndex(0).setCurrentLeaderEpoch(4).setTimestamp(-1L),
            new ListOffsetsRequestData.ListOffsetsPartition().setPartitionIndex(1).setCurrentLeaderEpoch(-1).setTimestamp(-2L),
            new ListOffsetsRequestData.ListOffsetsPartition().setPartitionIndex(2).setTimestamp(TS)));
        d.setTopics(List.of(t));
        return d;
    }

    private static Message listOffsetsResponse(short v) {
        ListOffsetsResponseData d = new ListOffsetsResponseData().setThrottleTimeMs(1);
        ListOffsetsResponseData.ListOffsetsTopicResponse t = new ListOffsetsResponseData.ListOffsetsTopicResponse().setName("orders");
        ListOffsetsResponseData.ListOffsetsPartitionResponse p0 = new ListOffsetsResponseData.ListOffsetsPartitionResponse()
            .setPartitionIndex(0).setErrorCode((short) 0).setTimestamp(-1L).setOffset(106L);
        ListOffsetsResponseData.ListOffsetsPartitionResponse p1 = new ListOffsetsResponseData.ListOffsetsPartitionResponse()
            .setPartitionIndex(1).setErrorCode((short) 6).setTimestamp(TS).setOffset(5L);
        if (v >= 4) {
            p0.setLeaderEpoch(4);
            p1.setLeaderEpoch(-1);
        }
        t.setPartitions(List.of(p0, p1));
        d.setTopics(List.of(t));
        return d;
    }

    // CreateTopics ---------------------------------------------------------------------------

    private static Message createTopicsRequest(short v) {
        CreateTopicsRequestData d = new CreateTopicsRequestData().setTimeoutMs(15000).setValidateOnly(true);
        CreateTopicsRequestData.CreatableTopicCollection topics = new CreateTopicsRequestData.CreatableTopicCollection();
        CreateTopicsRequestData.CreatableTopic a = new CreateTopicsRequestData.CreatableTopic()
            .setName("new-topic").setNumPartitions(3).setReplicationFactor((short) 2);
        CreateTopicsRequestData.CreatableTopicConfigCollection cfg = new CreateTopicsRequestData.CreatableTopicConfigCollection();
        cfg.add(new CreateTopicsRequestData.CreatableTopicConfig().setName("cleanup.policy").setValue("compact"));
        cfg.add(new CreateTopicsRequestData.CreatableTopicConfig().setName("retention.ms").setValue(null));
        a.setConfigs(cfg);
        topics.add(a);
        CreateTopicsRequestData.CreatableTopic b = new CreateTopicsRequestData.CreatableTopic()
            .setName("assigned").setNumPartitions(-1).setReplicationFactor((short) -1);
        CreateTopicsRequestData.CreatableReplicaAssignmentCollection asg = new CreateTopicsRequestData.CreatableReplicaAssignmentCollection();
        asg.add(new CreateTopicsRequestData.CreatableReplicaAssignment().setPartitionIndex(0).setBrokerIds(List.of(1, 2)));
        asg.add(new CreateTopicsRequestData.CreatableReplicaAssignment().setPartitionIndex(1).setBrokerIds(List.of(2, 3)));
        b.setAssignments(asg);
        topics.add(b);
        d.setTopics(topics);
        return d;
    }

    private static Message createTopicsResponse(short v) {
        CreateTopicsResponseData d = new CreateTopicsResponseData().setThrottleTimeMs(0);
        CreateTopicsResponseData.CreatableTopicResultCollection rs = new CreateTopicsResponseData.CreatableTopicResultCollection();
        CreateTopicsResponseData.CreatableTopicResult ok = new CreateTopicsResponseData.CreatableTopicResult()
            .setName("new-topic").setTopicId(TOPIC_ID).setErrorCode((short) 0).setErrorMessage(null)
            .setNumPartitions(3).setReplicationFactor((short) 2).setTopicConfigErrorCode((short) 29);
        List<CreateTopicsResponseData.CreatableTopicConfigs> configs = new ArrayList<>();
        configs.add(new CreateTopicsResponseData.CreatableTopicConfigs()
            .setName("cleanup.policy").setValue("compact").setReadOnly(false).setConfigSource((byte) 1).setIsSensitive(false));
        configs.add(new CreateTopicsResponseData.CreatableTopicConfigs()
            .setName("sasl.jaas.config").setValue(null).setReadOnly(true).setConfigSource((byte) 5).setIsSensitive(true));
        ok.setConfigs(configs);
        rs.add(ok);
        rs.add(new CreateTopicsResponseData.CreatableTopicResult()
            .setName("assigned").setErrorCode((short) 36).setErrorMessage("Topic 'assigned' already exists.")
            .setNumPartitions(-1).setReplicationFactor((short) -1).setConfigs(null));
        d.setTopics(rs);
        return d;
    }

    // DeleteTopics ---------------------------------------------------------------------------

    private static Message deleteTopicsRequest(short v) {
        DeleteTopicsRequestData d = new DeleteTopicsRequestData().setTimeoutMs(30000);
        if (v >= 6) {
            d.setTopics(List.of(
                new DeleteTopicsRequestData.DeleteTopicState().setName("gone").setTopicId(Uuid.ZERO_UUID),
                new DeleteTopicsRequestData.DeleteTopicState().setName(null).setTopicId(TOPIC_ID)));
        } else {
            d.setTopicNames(List.of("gone", "also-gone"));
        }
        return d;
    }

    private static Message deleteTopicsResponse(short v) {
        DeleteTopicsResponseData d = new DeleteTopicsResponseData().setThrottleTimeMs(2);
        DeleteTopicsResponseData.DeletableTopicResultCollection rs = new DeleteTopicsResponseData.DeletableTopicResultCollection();
        rs.add(new DeleteTopicsResponseData.DeletableTopicResult().setName("gone").setTopicId(TOPIC_ID_2).setErrorCode((short) 0));
        rs.add(new DeleteTopicsResponseData.DeletableTopicResult()
            .setName(v >= 6 ? null : "also-gone").setTopicId(TOPIC_ID).setErrorCode((short) 100)
            .setErrorMessage("This server does not host this topic ID."));
        d.setResponses(rs);
        return d;
    }

    // DescribeConfigs ------------------------------------------------------------------------

    private static Message describeConfigsRequest(short v) {
        DescribeConfigsRequestData d = new DescribeConfigsRequestData().setIncludeSynonyms(true);
        if (v >= 3) {
            d.setIncludeDocumentation(true);
        }
        d.setResources(List.of(
            new DescribeConfigsRequestData.DescribeConfigsResource().setResourceType((byte) 2).setResourceName("orders")
                .setConfigurationKeys(List.of("retention.ms", "cleanup.policy")),
            new DescribeConfigsRequestData.DescribeConfigsResource().setResourceType((byte) 4).setResourceName("1")
                .setConfigurationKeys(null)));
        return d;
    }

    private static Message describeConfigsResponse(short v) {
        DescribeConfigsResponseData d = new DescribeConfigsResponseData().setThrottleTimeMs(4);
        DescribeConfigsResponseData.DescribeConfigsResult r = new DescribeConfigsResponseData.DescribeConfigsResult()
            .setErrorCode((short) 0).setErrorMessage(null).setResourceType((byte) 2).setResourceName("orders");
        r.setConfigs(List.of(
            new DescribeConfigsResponseData.DescribeConfigsResourceResult()
                .setName("retention.ms").setValue("604800000").setReadOnly(false).setConfigSource((byte) 1).setIsSensitive(false)
                .setSynonyms(List.of(
                    new DescribeConfigsResponseData.DescribeConfigsSynonym().setName("retention.ms").setValue("604800000").setSource((byte) 1),
                    new DescribeConfigsResponseData.DescribeConfigsSynonym().setName("log.retention.ms").setValue(null).setSource((byte) 5)))
                .setConfigType((byte) 5).setDocumentation("How long to keep a log segment."),
            new DescribeConfigsResponseData.DescribeConfigsResourceResult()
                .setName("ssl.key.password").setValue(null).setReadOnly(true).setConfigSource((byte) 4).setIsSensitive(true)
                .setConfigType((byte) 7).setDocumentation(null)));
        DescribeConfigsResponseData.DescribeConfigsResult err = new DescribeConfigsResponseData.DescribeConfigsResult()
            .setErrorCode((short) 3).setErrorMessage("Unknown topic").setResourceType((byte) 2).setResourceName("missing");
        d.setResults(List.of(r, err));
        return d;
    }

    // IncrementalAlterConfigs ----------------------------------------------------------------

    private static Message incrementalAlterConfigsRequest(short v) {
        IncrementalAlterConfigsRequestData d = new IncrementalAlterConfigsRequestData().setValidateOnly(true);
        IncrementalAlterConfigsRequestData.AlterConfigsResourceCollection res = new IncrementalAlterConfigsRequestData.AlterConfigsResourceCollection();
        IncrementalAlterConfigsRequestData.AlterConfigsResource r = new IncrementalAlterConfigsRequestData.AlterConfigsResource()
            .setResourceType((byte) 2).setResourceName("orders");
        IncrementalAlterConfigsRequestData.AlterableConfigCollection cfgs = new IncrementalAlterConfigsRequestData.AlterableConfigCollection();
        cfgs.add(new IncrementalAlterConfigsRequestData.AlterableConfig().setName("retention.ms").setConfigOperation((byte) 0).setValue("3600000"));
        cfgs.add(new IncrementalAlterConfigsRequestData.AlterableConfig().setName("segment.bytes").setConfigOperation((byte) 1).setValue(null));
        cfgs.add(new IncrementalAlterConfigsRequestData.AlterableConfig().setName("cleanup.policy").setConfigOperation((byte) 2).setValue("compact"));
        r.setConfigs(cfgs);
        res.add(r);
        d.setResources(res);
        if (v >= 1) {
            unknownTag(r, 4, "res");
        }
        return d;
    }

    private static Message incrementalAlterConfigsResponse(short v) {
        IncrementalAlterConfigsResponseData d = new IncrementalAlterConfigsResponseData().setThrottleTimeMs(8);
        d.setResponses(List.of(
            new IncrementalAlterConfigsResponseData.AlterConfigsResourceResponse()
                .setErrorCode((short) 0).setErrorMessage(null).setResourceType((byte) 2).setResourceName("orders"),
            new IncrementalAlterConfigsResponseData.AlterConfigsResourceResponse()
                .setErrorCode((short) 40).setErrorMessage("Invalid value x for configuration segment.bytes")
                .setResourceType((byte) 4).setResourceName("1")));
        return d;
    }

    // InitProducerId -------------------------------------------------------------------------

    private static Message initProducerIdRequest(short v) {
        InitProducerIdRequestData d = new InitProducerIdRequestData()
            .setTransactionalId(v % 2 == 0 ? "txn-golden" : null).setTransactionTimeoutMs(60000);
        if (v >= 3) {
            d.setProducerId(4242L).setProducerEpoch((short) 3);
        }
        return d;
    }

    private static Message initProducerIdResponse(short v) {
        return new InitProducerIdResponseData().setThrottleTimeMs(0).setErrorCode((short) 0)
            .setProducerId(4243L).setProducerEpoch((short) 0);
    }

    // FindCoordinator ------------------------------------------------------------------------

    private static Message findCoordinatorRequest(short v) {
        FindCoordinatorRequestData d = new FindCoordinatorRequestData();
        if (v <= 3) {
            d.setKey("group-golden");
        } else {
            d.setCoordinatorKeys(List.of("txn-golden", "txn-other"));
        }
        if (v >= 1) {
            d.setKeyType((byte) 1);
        }
        return d;
    }

    private static Message findCoordinatorResponse(short v) {
        FindCoordinatorResponseData d = new FindCoordinatorResponseData().setThrottleTimeMs(6);
        if (v <= 3) {
            d.setErrorCode((short) 0).setErrorMessage(v >= 1 ? "NONE" : null).setNodeId(2).setHost("b2.example").setPort(9093);
        } else {
            d.setCoordinators(List.of(
                new FindCoordinatorResponseData.Coordinator().setKey("txn-golden").setNodeId(2).setHost("b2.example").setPort(9093)
                    .setErrorCode((short) 0).setErrorMessage(null),
                new FindCoordinatorResponseData.Coordinator().setKey("txn-other").setNodeId(-1).setHost("").setPort(-1)
                    .setErrorCode((short) 15).setErrorMessage("The coordinator is not available.")));
        }
        return d;
    }

    // JoinGroup / SyncGroup / Heartbeat ------------------------------------------------------

    private static Message joinGroupRequest(short v) {
        JoinGroupRequestData d = new JoinGroupRequestData()
            .setGroupId("group-golden").setSessionTimeoutMs(45000).setRebalanceTimeoutMs(300000)
            .setMemberId(v >= 4 ? "consumer-1-3b0c" : "").setProtocolType("consumer").setReason("rebalance: new topic");
        if (v >= 5) {
            d.setGroupInstanceId(v % 2 == 0 ? "static-1" : null);
        }
        JoinGroupRequestData.JoinGroupRequestProtocolCollection ps = new JoinGroupRequestData.JoinGroupRequestProtocolCollection();
        ps.add(new JoinGroupRequestData.JoinGroupRequestProtocol().setName("cooperative-sticky").setMetadata(new byte[] {0, 3, 0, 0, 0, 1, 0, 6}));
        ps.add(new JoinGroupRequestData.JoinGroupRequestProtocol().setName("range").setMetadata(new byte[0]));
        d.setProtocols(ps);
        return d;
    }

    private static Message joinGroupResponse(short v) {
        JoinGroupResponseData d = new JoinGroupResponseData()
            .setThrottleTimeMs(0).setErrorCode((short) 0).setGenerationId(12)
            .setProtocolType("consumer").setProtocolName("range").setLeader("consumer-1-3b0c").setMemberId("consumer-1-3b0c");
        if (v >= 9) {
            d.setSkipAssignment(true);
        }
        d.setMembers(List.of(
            new JoinGroupResponseData.JoinGroupResponseMember().setMemberId("consumer-1-3b0c").setGroupInstanceId("static-1")
                .setMetadata(new byte[] {0, 3, 1, 2}),
            new JoinGroupResponseData.JoinGroupResponseMember().setMemberId("consumer-2-77aa").setGroupInstanceId(null)
                .setMetadata(new byte[0])));
        return d;
    }

    private static Message syncGroupRequest(short v) {
        SyncGroupRequestData d = new SyncGroupRequestData()
            .setGroupId("group-golden").setGenerationId(12).setMemberId("consumer-1-3b0c")
            .setProtocolType("consumer").setProtocolName("range");
        if (v >= 3) {
            d.setGroupInstanceId("static-1");
        }
        d.setAssignments(List.of(
            new SyncGroupRequestData.SyncGroupRequestAssignment().setMemberId("consumer-1-3b0c").setAssignment(new byte[] {0, 3, 0, 0, 0, 1}),
            new SyncGroupRequestData.SyncGroupRequestAssignment().setMemberId("consumer-2-77aa").setAssignment(new byte[0])));
        return d;
    }

    private static Message syncGroupResponse(short v) {
        return new SyncGroupResponseData().setThrottleTimeMs(9).setErrorCode((short) 0)
            .setProtocolType(null).setProtocolName("range").setAssignment(new byte[] {0, 3, 0, 0, 0, 1, 0, 6, 'o', 'r', 'd', 'e', 'r', 's'});
    }

    private static Message heartbeatRequest(short v) {
        HeartbeatRequestData d = new HeartbeatRequestData().setGroupId("group-golden").setGenerationId(12).setMemberId("consumer-1-3b0c");
        if (v >= 3) {
            d.setGroupInstanceId(null);
        }
        return d;
    }

    private static Message heartbeatResponse(short v) {
        return new HeartbeatResponseData().setThrottleTimeMs(1).setErrorCode((short) 27);
    }

    // OffsetCommit / OffsetFetch -------------------------------------------------------------

    private static Message offsetCommitRequest(short v) {
        OffsetCommitRequestData d = new OffsetCommitRequestData()
            .setGroupId("group-golden").setGenerationIdOrMemberEpoch(12).setMemberId("consumer-1-3b0c").setRetentionTimeMs(86400000L);
        if (v >= 7) {
            d.setGroupInstanceId("static-1");
        }
        OffsetCommitRequestData.OffsetCommitRequestTopic t = new OffsetCommitRequestData.OffsetCommitRequestTopic()
            .setName("orders").setTopicId(TOPIC_ID);
        t.setPartitions(List.of(
            new OffsetCommitRequestData.OffsetCommitRequestPartition().setPartitionIndex(0).setCommittedOffset(106L)
                .setCommittedLeaderEpoch(4).setCommittedMetadata("meta"),
            new OffsetCommitRequestData.OffsetCommitRequestPartition().setPartitionIndex(1).setCommittedOffset(0L)
                .setCommittedLeaderEpoch(-1).setCommittedMetadata(null)));
        d.setTopics(List.of(t));
        return d;
    }

    private static Message offsetCommitResponse(short v) {
        OffsetCommitResponseData d = new OffsetCommitResponseData().setThrottleTimeMs(2);
        OffsetCommitResponseData.OffsetCommitResponseTopic t = new OffsetCommitResponseData.OffsetCommitResponseTopic()
            .setName("orders").setTopicId(TOPIC_ID);
        t.setPartitions(List.of(
            new OffsetCommitResponseData.OffsetCommitResponsePartition().setPartitionIndex(0).setErrorCode((short) 0),
            new OffsetCommitResponseData.OffsetCommitResponsePartition().setPartitionIndex(1).setErrorCode((short) 22)));
        d.setTopics(List.of(t));
        return d;
    }

    private static Message offsetFetchRequest(short v) {
        OffsetFetchRequestData d = new OffsetFetchRequestData();
        if (v <= 7) {
            d.setGroupId("group-golden");
            d.setTopics(v >= 2 && v % 2 == 0 ? null : List.of(
                new OffsetFetchRequestData.OffsetFetchRequestTopic().setName("orders").setPartitionIndexes(List.of(0, 1, 2))));
        } else {
            d.setGroups(List.of(
                new OffsetFetchRequestData.OffsetFetchRequestGroup().setGroupId("group-golden").setMemberId("consumer-1-3b0c").setMemberEpoch(5)
                    .setTopics(List.of(new OffsetFetchRequestData.OffsetFetchRequestTopics()
                        .setName("orders").setTopicId(TOPIC_ID).setPartitionIndexes(List.of(0, 1)))),
                new OffsetFetchRequestData.OffsetFetchRequestGroup().setGroupId("group-all").setMemberId(null).setTopics(null)));
        }
        if (v >= 7) {
            d.setRequireStable(true);
        }
        return d;
    }

    private static Message offsetFetchResponse(short v) {
        OffsetFetchResponseData d = new OffsetFetchResponseData().setThrottleTimeMs(3);
        if (v <= 7) {
            d.setErrorCode((short) 0);
            d.setTopics(List.of(new OffsetFetchResponseData.OffsetFetchResponseTopic().setName("orders").setPartitions(List.of(
                new OffsetFetchResponseData.OffsetFetchResponsePartition().setPartitionIndex(0).setCommittedOffset(106L)
                    .setCommittedLeaderEpoch(4).setMetadata("meta").setErrorCode((short) 0),
                new OffsetFetchResponseData.OffsetFetchResponsePartition().setPartitionIndex(1).setCommittedOffset(-1L)
                    .setCommittedLeaderEpoch(-1).setMetadata(null).setErrorCode((short) 0)))));
        } else {
            d.setGroups(List.of(
                new OffsetFetchResponseData.OffsetFetchResponseGroup().setGroupId("group-golden").setErrorCode((short) 0)
                    .setTopics(List.of(new OffsetFetchResponseData.OffsetFetchResponseTopics().setName("orders").setTopicId(TOPIC_ID)
                        .setPartitions(List.of(
                            new OffsetFetchResponseData.OffsetFetchResponsePartitions().setPartitionIndex(0).setCommittedOffset(106L)
                                .setCommittedLeaderEpoch(4).setMetadata("meta").setErrorCode((short) 0),
                            new OffsetFetchResponseData.OffsetFetchResponsePartitions().setPartitionIndex(1).setCommittedOffset(-1L)
                                .setCommittedLeaderEpoch(-1).setMetadata(null).setErrorCode((short) 0))))),
                new OffsetFetchResponseData.OffsetFetchResponseGroup().setGroupId("group-all").setErrorCode((short) 16)));
        }
        return d;
    }

    // DescribeCluster ------------------------------------------------------------------------

    private static Message describeClusterRequest(short v) {
        DescribeClusterRequestData d = new DescribeClusterRequestData().setIncludeClusterAuthorizedOperations(true);
        if (v >= 1) {
            d.setEndpointType((byte) 2);
        }
        if (v >= 2) {
            d.setIncludeFencedBrokers(true);
        }
        unknownTag(d, 11, "dc");
        return d;
    }

    private static Message describeClusterResponse(short v) {
        DescribeClusterResponseData d = new DescribeClusterResponseData()
            .setThrottleTimeMs(0).setErrorCode((short) 0).setErrorMessage(null).setClusterId("rill-cluster-Zq").setControllerId(1)
            .setClusterAuthorizedOperations(0x0120);
        if (v >= 1) {
            d.setEndpointType((byte) 2);
        }
        DescribeClusterResponseData.DescribeClusterBrokerCollection bs = new DescribeClusterResponseData.DescribeClusterBrokerCollection();
        DescribeClusterResponseData.DescribeClusterBroker b1 = new DescribeClusterResponseData.DescribeClusterBroker()
            .setBrokerId(1).setHost("b1.example").setPort(9092).setRack("rack-a");
        DescribeClusterResponseData.DescribeClusterBroker b2 = new DescribeClusterResponseData.DescribeClusterBroker()
            .setBrokerId(2).setHost("b2.example").setPort(9093).setRack(null);
        if (v >= 2) {
            b2.setIsFenced(true);
        }
        bs.add(b1);
        bs.add(b2);
        d.setBrokers(bs);
        return d;
    }

    // DescribeTopicPartitions ----------------------------------------------------------------

    private static Message describeTopicPartitionsRequest(short v) {
        return new DescribeTopicPartitionsRequestData()
            .setTopics(List.of(
                new DescribeTopicPartitionsRequestData.TopicRequest().setName("orders"),
                new DescribeTopicPartitionsRequestData.TopicRequest().setName("payments")))
            .setResponsePartitionLimit(500)
            .setCursor(new DescribeTopicPartitionsRequestData.Cursor().setTopicName("orders").setPartitionIndex(1));
    }

    private static Message describeTopicPartitionsResponse(short v) {
        DescribeTopicPartitionsResponseData d = new DescribeTopicPartitionsResponseData().setThrottleTimeMs(0);
        DescribeTopicPartitionsResponseData.DescribeTopicPartitionsResponseTopicCollection ts =
            new DescribeTopicPartitionsResponseData.DescribeTopicPartitionsResponseTopicCollection();
        DescribeTopicPartitionsResponseData.DescribeTopicPartitionsResponseTopic t = new DescribeTopicPartitionsResponseData.DescribeTopicPartitionsResponseTopic()
            .setErrorCode((short) 0).setName("orders").setTopicId(TOPIC_ID).setIsInternal(false).setTopicAuthorizedOperations(0x0ff8);
        t.setPartitions(List.of(
            new DescribeTopicPartitionsResponseData.DescribeTopicPartitionsResponsePartition()
                .setErrorCode((short) 0).setPartitionIndex(1).setLeaderId(1).setLeaderEpoch(4)
                .setReplicaNodes(List.of(1, 2, 3)).setIsrNodes(List.of(1, 2)).setEligibleLeaderReplicas(List.of(3))
                .setLastKnownElr(null).setOfflineReplicas(List.of()),
            new DescribeTopicPartitionsResponseData.DescribeTopicPartitionsResponsePartition()
                .setErrorCode((short) 0).setPartitionIndex(2).setLeaderId(2).setLeaderEpoch(-1)
                .setReplicaNodes(List.of(2)).setIsrNodes(List.of(2)).setEligibleLeaderReplicas(null)
                .setLastKnownElr(List.of(1)).setOfflineReplicas(List.of(3))));
        ts.add(t);
        ts.add(new DescribeTopicPartitionsResponseData.DescribeTopicPartitionsResponseTopic()
            .setErrorCode((short) 3).setName(null).setTopicId(Uuid.ZERO_UUID));
        d.setTopics(ts);
        d.setNextCursor(v >= 0 ? new DescribeTopicPartitionsResponseData.Cursor().setTopicName("payments").setPartitionIndex(0) : null);
        return d;
    }
}
