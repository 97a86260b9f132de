import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Java consumer without a group: assign() all partitions + seekToBeginning, poll(100 ms) until the end
 * offsets, and check exactly the records of ProducerCheck (indices 0..count-1, byte-exact) are there.
 * Usage: ConsumerCheck <bootstrap> <topic> <count>
 */
public class ConsumerCheck {
    static void fail(String msg) { System.err.println("FAIL: " + msg); System.exit(1); }

    public static void main(String[] a) throws Exception {
        String bootstrap = a[0], topic = a[1];
        int n = Integer.parseInt(a[2]);
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) tps.add(new TopicPartition(topic, pi.partition()));
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps, Duration.ofSeconds(30));
            long total = end.values().stream().mapToLong(Long::longValue).sum();
            if (total != n) fail("end offsets sum " + total + " != " + n + ": " + end);
            Map<TopicPartition, Long> next = new HashMap<>();
            for (TopicPartition tp : tps) next.put(tp, 0L);
            BitSet seen = new BitSet(n);
            long deadline = System.currentTimeMillis() + 60_000;
            int got = 0;
            while (got < n) {
                if (System.currentTimeMillis() > deadline) fail("timeout after " + got + "/" + n + " records");
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    if (r.offset() != next.get(tp)) fail("offset gap on " + tp + ": expected " + next.get(tp) + " got " + r.offset());
                    next.put(tp, r.offset() + 1);
                    String body = new String(r.value(), 5, r.value().length - 5, "UTF-8");
                    int i = Integer.parseInt(body.substring(body.indexOf(':') + 1, body.indexOf(',')));
                    if (!Arrays.equals(r.value(), ProducerCheck.value(i))) fail("value mismatch for record " + i);
                    byte[] key = (i % 4 == 0) ? ByteBuffer.allocate(8).putLong(i).array() : null;
                    if (!Arrays.equals(r.key(), key)) fail("key mismatch for record " + i);
                    if (seen.get(i)) fail("duplicate record " + i);
                    seen.set(i);
                    got++;
                }
            }
            if (seen.cardinality() != n) fail("missing records");
        }
        System.out.println("OK consumed " + n + " records");
    }
}
