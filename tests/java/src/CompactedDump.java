import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Java consumer without a group: reads partition 0 of a topic from the beginning to its end offset
 * and prints one line per record, "offset key value" ("<null>" for a null value), for tests of
 * compacted topics (offset gaps, empty batches). Fails if the position does not reach the end.
 * Usage: CompactedDump <bootstrap> <topic>
 */
public class CompactedDump {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", a[0]);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        TopicPartition tp = new TopicPartition(a[1], 0);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long end = c.endOffsets(List.of(tp), Duration.ofSeconds(30)).get(tp);
            long deadline = System.currentTimeMillis() + 60_000;
            while (c.position(tp) < end) {
                if (System.currentTimeMillis() > deadline) {
                    System.err.println("FAIL: position " + c.position(tp) + " never reached end " + end);
                    System.exit(1);
                }
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100))) {
                    System.out.println(r.offset() + " " + r.key() + " " + (r.value() == null ? "<null>" : r.value()));
                }
            }
            System.out.println("END " + c.position(tp));
        }
    }
}
