import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;

/**
 * One CLIENT-PROFILES Java consumer (subscribe, poll(100 ms), commitSync after each record) in group <group>:
 * must read exactly the records <from>..<to>-1 (each once; produced beforehand with GroupTestUtil's layout),
 * then nothing more for 3 s; then, if <produceAfter> > 0, this program produces records <to>..<to+produceAfter>-1
 * and the consumer must read exactly those. Finally the group's committed offsets must equal the end offsets.
 * Usage: GroupResumeCheck <bootstrap> <topic> <partitions> <group> <range|cooperative-sticky> <from> <to> <produceAfter>
 */
public class GroupResumeCheck {
    public static void main(String[] a) throws Exception {
        String bootstrap = a[0], topic = a[1], group = a[3], strategy = a[4];
        int partitions = Integer.parseInt(a[2]), from = Integer.parseInt(a[5]), to = Integer.parseInt(a[6]), after = Integer.parseInt(a[7]);
        Map<Integer, Integer> seen = new HashMap<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(GroupTestUtil.consumerProps(bootstrap, group, strategy));
             Admin admin = GroupTestUtil.admin(bootstrap)) {
            c.subscribe(List.of(topic));
            consume(c, seen, from, to, 60_000);
            GroupTestUtil.check(c.assignment().equals(GroupTestUtil.allPartitions(topic, partitions)),
                    "sole member should own all partitions, has " + c.assignment());
            idle(c, seen, 3_000, "after records " + from + ".." + (to - 1));
            if (after > 0) {
                GroupTestUtil.produce(bootstrap, topic, partitions, to, to + after);
                consume(c, seen, to, to + after, 60_000);
                idle(c, seen, 1_000, "after the later records");
            }
            for (int i = from; i < to + after; i++)
                GroupTestUtil.check(seen.getOrDefault(i, 0) == 1, "record " + i + " consumed " + seen.getOrDefault(i, 0) + " times");
            Map<TopicPartition, OffsetAndMetadata> committed = c.committed(c.assignment(), Duration.ofSeconds(30));
            Map<TopicPartition, Long> end = c.endOffsets(c.assignment(), Duration.ofSeconds(30));
            for (TopicPartition tp : c.assignment()) {
                OffsetAndMetadata om = committed.get(tp);
                GroupTestUtil.check(om != null && om.offset() == end.get(tp), "committed " + om + " != end offset " + end.get(tp) + " on " + tp);
            }
            GroupTestUtil.checkCommittedAtEnd(admin, group, topic, partitions);
        }
        System.out.println("OK resumed group " + group + " (" + strategy + "): consumed " + from + ".." + (to + after - 1));
    }

    static void record(KafkaConsumer<String, String> c, Map<Integer, Integer> seen, ConsumerRecord<String, String> r) {
        seen.merge(GroupTestUtil.index(r), 1, Integer::sum);
        c.commitSync(Map.of(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1)), Duration.ofSeconds(30));
    }

    /** Poll until every record from..to-1 is consumed; any record outside that range (or seen twice) fails. */
    static void consume(KafkaConsumer<String, String> c, Map<Integer, Integer> seen, int from, int to, long timeoutMs) {
        long deadline = System.currentTimeMillis() + timeoutMs;
        int got = 0;
        // Also wait for the assignment when nothing is expected, so that "nothing arrives" means something.
        while (got < to - from || c.assignment().isEmpty()) {
            GroupTestUtil.check(System.currentTimeMillis() < deadline, "timeout: consumed " + got + " of records " + from + ".." + (to - 1)
                    + ", assignment " + c.assignment());
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100))) {
                int i = GroupTestUtil.index(r);
                GroupTestUtil.check(i >= from && i < to, "unexpected record " + i + " (" + r.topic() + "-" + r.partition() + "@" + r.offset()
                        + "), expected only " + from + ".." + (to - 1));
                GroupTestUtil.check(!seen.containsKey(i), "duplicate record " + i + " at " + r.partition() + "@" + r.offset());
                record(c, seen, r);
                got++;
            }
        }
    }

    static void idle(KafkaConsumer<String, String> c, Map<Integer, Integer> seen, long ms, String when) {
        long end = System.currentTimeMillis() + ms;
        while (System.currentTimeMillis() < end)
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100)))
                GroupTestUtil.fail("unexpected record " + GroupTestUtil.index(r) + " at " + r.partition() + "@" + r.offset() + " " + when);
    }
}
