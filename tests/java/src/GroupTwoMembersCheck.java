import java.util.*;
import java.util.concurrent.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;

/**
 * Two members (threads) of one group, commitSync after each record, while this program keeps producing.
 * Phase 1: member A alone owns all partitions. Phase 2: B joins, the partitions are split (disjoint, non-empty,
 * covering the topic). Phase 3: B closes (LeaveGroup), A owns all partitions again. Then production stops, A
 * drains, and every produced record must have been consumed exactly once across A and B, and the group's
 * committed offsets must equal the end offsets.
 * Usage: GroupTwoMembersCheck <bootstrap> <topic> <partitions> <group> <range|cooperative-sticky>
 */
public class GroupTwoMembersCheck {
    static volatile int produced = 0;

    public static void main(String[] a) throws Exception {
        String bootstrap = a[0], topic = a[1], group = a[3], strategy = a[4];
        int partitions = Integer.parseInt(a[2]);
        Set<TopicPartition> all = GroupTestUtil.allPartitions(topic, partitions);
        ConcurrentMap<Integer, Integer> seen = new ConcurrentHashMap<>();
        GroupTestUtil.Member A = new GroupTestUtil.Member("A", GroupTestUtil.consumerProps(bootstrap, group, strategy), topic, seen);
        GroupTestUtil.Member B = new GroupTestUtil.Member("B", GroupTestUtil.consumerProps(bootstrap, group, strategy), topic, seen);

        // Background producer: one record every 5 ms until told to stop.
        final java.util.concurrent.atomic.AtomicBoolean stopProducing = new java.util.concurrent.atomic.AtomicBoolean();
        final Throwable[] prodError = {null};
        Thread prod = new Thread(() -> {
            try (var p = GroupTestUtil.producer(bootstrap)) {
                while (!stopProducing.get()) {
                    GroupTestUtil.send(p, topic, partitions, produced);
                    produced++;
                    GroupTestUtil.sleep(5);
                }
            } catch (Throwable t) { prodError[0] = t; }
        }, "producer");
        prod.setDaemon(true);

        try (Admin admin = GroupTestUtil.admin(bootstrap)) {
            GroupTestUtil.produce(bootstrap, topic, partitions, 0, 300); // some backlog
            produced = 300;
            prod.start();

            A.start();
            GroupTestUtil.check(GroupTestUtil.waitUntil(30_000, () -> A.assignment.equals(all) && A.consumed.get() > 100),
                    "phase 1: A alone should own " + all + " and consume; has " + A.assignment + ", consumed " + A.consumed + " events " + A.events);

            B.start();
            GroupTestUtil.check(GroupTestUtil.waitUntil(30_000, () -> split(A.assignment, B.assignment, all)),
                    "phase 2: partitions not split: A=" + A.assignment + " B=" + B.assignment + "\nA events " + A.events + "\nB events " + B.events);
            int bBefore = B.consumed.get();
            GroupTestUtil.check(GroupTestUtil.waitUntil(20_000, () -> B.consumed.get() > bBefore + 20 && split(A.assignment, B.assignment, all)),
                    "phase 2: B does not consume its partitions: A=" + A.assignment + " B=" + B.assignment + " B consumed " + B.consumed);
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(30, TimeUnit.SECONDS);
            GroupTestUtil.check(d.groupState() == GroupState.STABLE && d.members().size() == 2,
                    "phase 2: describeConsumerGroups " + d);
            Set<TopicPartition> described = new HashSet<>();
            for (MemberDescription m : d.members()) {
                Set<TopicPartition> tps = m.assignment().topicPartitions();
                GroupTestUtil.check(Collections.disjoint(described, tps), "described assignments overlap: " + d);
                described.addAll(tps);
            }
            GroupTestUtil.check(described.equals(all), "described assignments do not cover the topic: " + d);

            B.stopAndJoin(); // close() sends LeaveGroup
            GroupTestUtil.check(GroupTestUtil.waitUntil(30_000, () -> A.assignment.equals(all)),
                    "phase 3: after B left, A should own " + all + "; has " + A.assignment + "\nA events " + A.events);
            int aBefore = A.consumed.get();
            GroupTestUtil.check(GroupTestUtil.waitUntil(20_000, () -> A.consumed.get() > aBefore + 20), "phase 3: A does not consume");

            stopProducing.set(true);
            prod.join(60_000);
            GroupTestUtil.check(prodError[0] == null, "producer failed: " + prodError[0]);
            int n = produced;
            GroupTestUtil.check(GroupTestUtil.waitUntil(60_000, () -> seen.size() >= n), "drain: consumed " + seen.size() + " of " + n);
            GroupTestUtil.sleep(1000); // anything beyond would be a duplicate
            A.stopAndJoin();
            GroupTestUtil.checkExactlyOnce(seen, n, "records 0.." + (n - 1) + " over A and B (A events " + A.events + ", B events " + B.events + ")");
            GroupTestUtil.checkCommittedAtEnd(admin, group, topic, partitions);
            System.out.println("OK two members (" + strategy + "): " + n + " records exactly once; A consumed " + A.consumed + ", B consumed " + B.consumed
                    + "; A events " + A.events + "; B events " + B.events);
        }
    }

    static boolean split(Set<TopicPartition> x, Set<TopicPartition> y, Set<TopicPartition> all) {
        if (x.isEmpty() || y.isEmpty() || !Collections.disjoint(x, y)) return false;
        Set<TopicPartition> u = new HashSet<>(x);
        u.addAll(y);
        return u.equals(all);
    }
}
