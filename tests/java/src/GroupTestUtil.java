import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.serialization.*;

/**
 * Shared helpers for the Java consumer-group programs (Group*Check). Records are produced with
 * key = value = "v<i>" to partition i % partitions, so a consumed value identifies its record.
 */
public class GroupTestUtil {
    static void fail(String msg) {
        System.err.println("FAIL: " + msg);
        System.err.flush();
        Runtime.getRuntime().halt(1); // threads/consumers may still be running
    }

    static void check(boolean ok, String msg) { if (!ok) fail(msg); }

    static String assignor(String strategy) {
        switch (strategy) {
            case "range": return RangeAssignor.class.getName();
            case "cooperative-sticky": return CooperativeStickyAssignor.class.getName();
            default: fail("unknown strategy " + strategy); return null;
        }
    }

    /** CLIENT-PROFILES Java consumer + group settings. */
    static Properties consumerProps(String bootstrap, String group, String strategy) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        p.put("group.protocol", "classic");
        p.put("partition.assignment.strategy", assignor(strategy));
        p.put("heartbeat.interval.ms", "500");
        p.put("session.timeout.ms", "10000");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        return p;
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("request.timeout.ms", "15000");
        p.put("default.api.timeout.ms", "30000");
        return Admin.create(p);
    }

    static KafkaProducer<String, String> producer(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("acks", "all");
        p.put("linger.ms", "0");
        p.put("delivery.timeout.ms", "60000");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    static void send(KafkaProducer<String, String> prod, String topic, int partitions, int i) throws Exception {
        prod.send(new ProducerRecord<>(topic, i % partitions, "v" + i, "v" + i)).get(60, TimeUnit.SECONDS);
    }

    /** Produce records from..to-1 (acks=all, each acknowledged). */
    static void produce(String bootstrap, String topic, int partitions, int from, int to) throws Exception {
        try (KafkaProducer<String, String> prod = producer(bootstrap)) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = from; i < to; i++) fs.add(prod.send(new ProducerRecord<>(topic, i % partitions, "v" + i, "v" + i)));
            for (Future<RecordMetadata> f : fs) f.get(60, TimeUnit.SECONDS);
        }
    }

    static int index(ConsumerRecord<String, String> r) {
        check(r.value() != null && r.value().startsWith("v") && r.value().equals(r.key()), "unexpected record " + r);
        return Integer.parseInt(r.value().substring(1));
    }

    static void sleep(long ms) {
        try { Thread.sleep(ms); } catch (InterruptedException e) { throw new RuntimeException(e); }
    }

    static boolean waitUntil(long timeoutMs, java.util.function.BooleanSupplier cond) {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (System.currentTimeMillis() < deadline) {
            if (cond.getAsBoolean()) return true;
            sleep(50);
        }
        return cond.getAsBoolean();
    }

    /**
     * One group member on its own thread: subscribe(topic), poll(100 ms), commitSync after each record.
     * A commit refused with RebalanceInProgressException stays pending and is retried after the next poll
     * or in onPartitionsRevoked, so every processed record is committed before its partition moves.
     * Every consumed record index is counted in the shared `seen` map (for exactly-once checks).
     */
    static class Member implements Runnable, ConsumerRebalanceListener {
        final String name, topic;
        final Properties props;
        final ConcurrentMap<Integer, Integer> seen;
        final AtomicInteger assignedCalls = new AtomicInteger(), revokedCalls = new AtomicInteger(), lostCalls = new AtomicInteger();
        final AtomicInteger consumed = new AtomicInteger();
        final List<String> events = Collections.synchronizedList(new ArrayList<>());
        volatile Set<TopicPartition> assignment = Set.of();
        volatile boolean stop;
        volatile Throwable error;
        final Thread thread;
        private KafkaConsumer<String, String> c;
        private final Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();

        Member(String name, Properties props, String topic, ConcurrentMap<Integer, Integer> seen) {
            this.name = name; this.props = props; this.topic = topic; this.seen = seen;
            this.thread = new Thread(this, name);
            this.thread.setDaemon(true);
        }

        Member start() { thread.start(); return this; }

        void stopAndJoin() throws InterruptedException {
            stop = true;
            thread.join(60_000);
            check(!thread.isAlive(), name + ": did not close within 60 s");
            check(error == null, name + ": failed: " + error);
        }

        private void tryCommit() {
            if (pending.isEmpty()) return;
            try {
                c.commitSync(new HashMap<>(pending), Duration.ofSeconds(30));
                pending.clear();
            } catch (RebalanceInProgressException e) {
                events.add("commit deferred (rebalance in progress) " + pending);
            }
        }

        public void run() {
            try {
                c = new KafkaConsumer<>(props);
                c.subscribe(List.of(topic), this);
                while (!stop) {
                    ConsumerRecords<String, String> recs = c.poll(Duration.ofMillis(100));
                    tryCommit();
                    for (ConsumerRecord<String, String> r : recs) {
                        int i = index(r);
                        seen.merge(i, 1, Integer::sum);
                        consumed.incrementAndGet();
                        pending.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                        tryCommit();
                    }
                    assignment = Set.copyOf(c.assignment());
                }
                tryCommit();
                check(pending.isEmpty(), name + ": uncommitted offsets at close: " + pending);
                c.close(Duration.ofSeconds(30));
            } catch (Throwable t) {
                error = t;
                t.printStackTrace();
            }
        }

        public void onPartitionsRevoked(Collection<TopicPartition> parts) {
            revokedCalls.incrementAndGet();
            events.add("revoked " + parts);
            Map<TopicPartition, OffsetAndMetadata> mine = new HashMap<>();
            for (TopicPartition tp : parts) if (pending.containsKey(tp)) mine.put(tp, pending.remove(tp));
            if (!mine.isEmpty()) c.commitSync(mine, Duration.ofSeconds(30));
            assignment = Set.copyOf(c.assignment());
        }

        public void onPartitionsAssigned(Collection<TopicPartition> parts) {
            assignedCalls.incrementAndGet();
            events.add("assigned " + parts);
            assignment = Set.copyOf(c.assignment());
        }

        public void onPartitionsLost(Collection<TopicPartition> parts) {
            lostCalls.incrementAndGet();
            events.add("LOST " + parts);
            for (TopicPartition tp : parts) pending.remove(tp);
            assignment = Set.copyOf(c.assignment());
        }
    }

    static Set<TopicPartition> allPartitions(String topic, int partitions) {
        Set<TopicPartition> s = new HashSet<>();
        for (int p = 0; p < partitions; p++) s.add(new TopicPartition(topic, p));
        return s;
    }

    /** Every index in [0, n) seen exactly once, nothing else. */
    static void checkExactlyOnce(Map<Integer, Integer> seen, int n, String what) {
        List<Integer> missing = new ArrayList<>(), dup = new ArrayList<>(), extra = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Integer k = seen.get(i);
            if (k == null) missing.add(i);
            else if (k > 1) dup.add(i);
        }
        for (int i : seen.keySet()) if (i < 0 || i >= n) extra.add(i);
        check(missing.isEmpty() && dup.isEmpty() && extra.isEmpty(), what + ": missing=" + head(missing) + " duplicated=" + head(dup) + " unexpected=" + head(extra));
    }

    static String head(List<Integer> l) {
        return l.size() <= 20 ? l.toString() : l.subList(0, 20) + "... (" + l.size() + ")";
    }

    /** Committed offsets of the group == end offsets of every partition. */
    static void checkCommittedAtEnd(Admin admin, String group, String topic, int partitions) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
        Map<TopicPartition, OffsetSpec> req = new HashMap<>();
        for (TopicPartition tp : allPartitions(topic, partitions)) req.put(tp, OffsetSpec.latest());
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> end = admin.listOffsets(req).all().get(30, TimeUnit.SECONDS);
        for (TopicPartition tp : allPartitions(topic, partitions)) {
            OffsetAndMetadata om = committed.get(tp);
            long e = end.get(tp).offset();
            check(om != null && om.offset() == e, "group " + group + " committed " + om + " on " + tp + ", end offset " + e + " (all committed: " + committed + ")");
        }
    }
}
