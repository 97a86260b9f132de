import java.nio.file.Files;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;
import org.apache.kafka.streams.*;
import org.apache.kafka.streams.kstream.*;

/**
 * A Kafka Streams application against the broker under test: reads `in`, writes the values in
 * upper case to `in`-upper, and counts values through a state store (a repartition topic and a
 * changelog topic, both created by Streams with CreateTopics) into `in`-counts. Group
 * membership goes through the classic protocol with StreamsPartitionAssignor ("stream"
 * protocol, its own userData). Usage: StreamsCheck bootstrap inTopic appId
 */
public class StreamsCheck {
    static final String[] WORDS = {"apple", "banana", "cherry"};

    /** Streams created its internal topics (CreateTopics, a compacted changelog) and leads its
     * group with the "stream" assignor over the classic protocol. */
    static void checkInternals(String bootstrap, String appId) throws Exception {
        try (Admin admin = GroupTestUtil.admin(bootstrap)) {
            String changelog = appId + "-word-counts-changelog", repartition = appId + "-word-counts-repartition";
            Set<String> topics = admin.listTopics().names().get();
            GroupTestUtil.check(topics.contains(changelog) && topics.contains(repartition),
                "internal topics missing: " + topics);
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
            String policy = admin.describeConfigs(List.of(res)).all().get().get(res).get("cleanup.policy").value();
            GroupTestUtil.check(policy.equals("compact"), "changelog cleanup.policy=" + policy);
            long deadline = System.currentTimeMillis() + 30_000;
            while (true) {
                ConsumerGroupDescription g = admin.describeConsumerGroups(List.of(appId)).all().get().get(appId);
                if (g.partitionAssignor().equals("stream") && !g.members().isEmpty()) {
                    System.out.println("group " + appId + " assignor=stream members=" + g.members().size());
                    return;
                }
                GroupTestUtil.check(System.currentTimeMillis() < deadline,
                    "group " + appId + ": assignor " + g.partitionAssignor() + ", state " + g.groupState());
                Thread.sleep(200);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], in = args[1], appId = args[2];
        String upper = in + "-upper", counts = in + "-counts";
        int n = 30;
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("streams-check").toString());
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        // Purge consumed repartition records (DeleteRecords) soon, not after the default 30 s.
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        StreamsBuilder b = new StreamsBuilder();
        KStream<String, String> src = b.stream(in);
        src.mapValues(v -> v.toUpperCase()).to(upper);
        src.groupBy((k, v) -> v).count(Materialized.as("word-counts"))
            .toStream().mapValues(c -> Long.toString(c)).to(counts);

        KafkaStreams streams = new KafkaStreams(b.build(), p);
        streams.setUncaughtExceptionHandler(e -> {
            GroupTestUtil.fail("stream thread died: " + e);
            return null;
        });
        streams.start();
        long deadline = System.currentTimeMillis() + 90_000;
        while (streams.state() != KafkaStreams.State.RUNNING) {
            GroupTestUtil.check(System.currentTimeMillis() < deadline, "streams not RUNNING: " + streams.state());
            Thread.sleep(100);
        }
        System.out.println("streams RUNNING");
        checkInternals(bootstrap, appId);

        Map<String, Long> expected = new TreeMap<>();
        List<String> expectedUpper = new ArrayList<>();
        try (KafkaProducer<String, String> prod = GroupTestUtil.producer(bootstrap)) {
            for (int i = 0; i < n; i++) {
                String w = WORDS[i % WORDS.length] + (i % 2);
                prod.send(new ProducerRecord<>(in, "k" + i, w)).get();
                expected.merge(w, 1L, Long::sum);
                expectedUpper.add(w.toUpperCase());
            }
        }

        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        List<String> gotUpper = new ArrayList<>();
        Map<String, Long> gotCounts = new TreeMap<>();
        try (KafkaConsumer<String, String> cons = new KafkaConsumer<>(c)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (String t : List.of(upper, counts)) {
                deadline = System.currentTimeMillis() + 60_000;
                while (cons.partitionsFor(t) == null || cons.partitionsFor(t).isEmpty()) {
                    GroupTestUtil.check(System.currentTimeMillis() < deadline, "no topic " + t);
                    Thread.sleep(200);
                }
                cons.partitionsFor(t).forEach(pi -> tps.add(new TopicPartition(t, pi.partition())));
            }
            cons.assign(tps);
            cons.seekToBeginning(tps);
            deadline = System.currentTimeMillis() + 90_000;
            while (gotUpper.size() < n || !gotCounts.equals(expected)) {
                GroupTestUtil.check(System.currentTimeMillis() < deadline,
                    "timed out: upper " + gotUpper.size() + "/" + n + ", counts " + gotCounts + " want " + expected);
                for (ConsumerRecord<String, String> r : cons.poll(Duration.ofMillis(500))) {
                    if (r.topic().equals(upper)) gotUpper.add(r.value());
                    else gotCounts.put(r.key(), Long.parseLong(r.value()));
                }
            }
        }
        Collections.sort(gotUpper);
        Collections.sort(expectedUpper);
        GroupTestUtil.check(gotUpper.equals(expectedUpper), "upper " + gotUpper + " want " + expectedUpper);
        streams.close(Duration.ofSeconds(30));
        System.out.println("OK streams upper=" + gotUpper.size() + " counts=" + gotCounts);
    }
}
