import java.util.*;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Java AdminClient round: createTopics, listTopics, describeTopics, describeConfigs,
 * incrementalAlterConfigs, deleteRecords, describeCluster, describeLogDirs, deleteTopics.
 * Usage: AdminCheck <bootstrap> <topic>
 */
public class AdminCheck {
    static void fail(String msg) { System.err.println("FAIL: " + msg); System.exit(1); }
    static void check(boolean ok, String msg) { if (!ok) fail(msg); }
    static final long T = 30;

    public static void main(String[] a) throws Exception {
        String bootstrap = a[0], topic = a[1];
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("default.api.timeout.ms", "30000");
        try (Admin admin = Admin.create(p)) {
            Collection<Node> nodes = admin.describeCluster().nodes().get(T, TimeUnit.SECONDS);
            check(nodes.size() == 1, "describeCluster nodes " + nodes);
            Node node = nodes.iterator().next();
            check(admin.describeCluster().clusterId().get(T, TimeUnit.SECONDS) != null, "no cluster id");
            Node ctl = admin.describeCluster().controller().get(T, TimeUnit.SECONDS);
            System.out.println("cluster node " + node + " controller " + ctl);

            // Operator-style topic: partition count + retention in days.
            NewTopic nt = new NewTopic(topic, 3, (short) 1).configs(Map.of("retention.ms", String.valueOf(7L * 86400000)));
            admin.createTopics(List.of(nt)).all().get(T, TimeUnit.SECONDS);

            Set<String> names = admin.listTopics().names().get(T, TimeUnit.SECONDS);
            check(names.contains(topic), "listTopics lacks " + topic + ": " + names);

            TopicDescription td = null;
            for (int i = 0; i < 100; i++) {  // leaders may take a moment
                td = admin.describeTopics(List.of(topic)).allTopicNames().get(T, TimeUnit.SECONDS).get(topic);
                if (td.partitions().stream().allMatch(x -> x.leader() != null && x.leader().id() == node.id())) break;
                Thread.sleep(100);
            }
            check(td.partitions().size() == 3, "partitions " + td.partitions());
            for (TopicPartitionInfo tpi : td.partitions()) {
                check(tpi.leader() != null && tpi.leader().id() == node.id(), "leader of " + tpi);
                check(tpi.replicas().size() == 1 && tpi.isr().size() == 1, "replicas/isr of " + tpi);
            }
            check(!td.isInternal(), "topic internal");
            check(td.topicId() != null && !td.topicId().equals(Uuid.ZERO_UUID), "no topic id");

            ConfigResource cr = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config cfg = admin.describeConfigs(List.of(cr)).all().get(T, TimeUnit.SECONDS).get(cr);
            check(String.valueOf(7L * 86400000).equals(cfg.get("retention.ms").value()), "retention.ms " + cfg.get("retention.ms"));
            check(cfg.get("retention.ms").source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, "source " + cfg.get("retention.ms").source());
            check(cfg.get("cleanup.policy") != null && "delete".equals(cfg.get("cleanup.policy").value()), "cleanup.policy " + cfg.get("cleanup.policy"));

            admin.incrementalAlterConfigs(Map.of(cr, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "86400000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("max.message.bytes", "2097152"), AlterConfigOp.OpType.SET)))).all().get(T, TimeUnit.SECONDS);
            cfg = admin.describeConfigs(List.of(cr)).all().get(T, TimeUnit.SECONDS).get(cr);
            check("86400000".equals(cfg.get("retention.ms").value()), "altered retention.ms " + cfg.get("retention.ms"));
            check("2097152".equals(cfg.get("max.message.bytes").value()), "altered max.message.bytes " + cfg.get("max.message.bytes"));

            ConfigResource br = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(node.id()));
            Config bcfg = admin.describeConfigs(List.of(br)).all().get(T, TimeUnit.SECONDS).get(br);
            check(bcfg.get("node.id") != null || bcfg.get("broker.id") != null, "broker config lacks node.id/broker.id");

            // 10 records to partition 0, then delete records before offset 6.
            Properties pp = new Properties();
            pp.put("bootstrap.servers", bootstrap);
            pp.put("key.serializer", StringSerializer.class.getName());
            pp.put("value.serializer", StringSerializer.class.getName());
            pp.put("enable.idempotence", "false");
            try (KafkaProducer<String, String> prod = new KafkaProducer<>(pp)) {
                for (int i = 0; i < 10; i++) prod.send(new ProducerRecord<>(topic, 0, null, "r" + i)).get(T, TimeUnit.SECONDS);
            }
            TopicPartition tp0 = new TopicPartition(topic, 0);
            DeletedRecords dr = admin.deleteRecords(Map.of(tp0, RecordsToDelete.beforeOffset(6))).lowWatermarks().get(tp0).get(T, TimeUnit.SECONDS);
            check(dr.lowWatermark() == 6, "lowWatermark " + dr.lowWatermark());
            ListOffsetsResult.ListOffsetsResultInfo lo = admin.listOffsets(Map.of(tp0, OffsetSpec.earliest())).partitionResult(tp0).get(T, TimeUnit.SECONDS);
            ListOffsetsResult.ListOffsetsResultInfo hi = admin.listOffsets(Map.of(tp0, OffsetSpec.latest())).partitionResult(tp0).get(T, TimeUnit.SECONDS);
            check(lo.offset() == 6 && hi.offset() == 10, "after deleteRecords earliest=" + lo.offset() + " latest=" + hi.offset());

            Map<Integer, Map<String, LogDirDescription>> dirs = admin.describeLogDirs(List.of(node.id())).allDescriptions().get(T, TimeUnit.SECONDS);
            Map<String, LogDirDescription> mine = dirs.get(node.id());
            check(mine != null && !mine.isEmpty(), "describeLogDirs empty: " + dirs);
            boolean found = false;
            for (LogDirDescription d : mine.values()) {
                check(d.error() == null, "log dir error " + d.error());
                ReplicaInfo ri = d.replicaInfos().get(tp0);
                if (ri != null) { found = true; check(ri.size() > 0, "replica size " + ri.size()); }
            }
            check(found, "describeLogDirs has no replica for " + tp0 + ": " + mine);

            admin.deleteTopics(List.of(topic)).all().get(T, TimeUnit.SECONDS);
            for (int i = 0; i < 300 && admin.listTopics().names().get(T, TimeUnit.SECONDS).contains(topic); i++) Thread.sleep(100);
            check(!admin.listTopics().names().get(T, TimeUnit.SECONDS).contains(topic), "topic still listed after delete");
            try {
                admin.describeTopics(List.of(topic)).allTopicNames().get(T, TimeUnit.SECONDS);
                fail("describeTopics of a deleted topic succeeded");
            } catch (java.util.concurrent.ExecutionException e) {
                check(e.getCause() instanceof UnknownTopicOrPartitionException, "unexpected " + e.getCause());
            }
        }
        System.out.println("OK admin");
    }
}
