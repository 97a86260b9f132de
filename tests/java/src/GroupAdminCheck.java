import java.util.*;
import java.util.concurrent.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.*;

/**
 * AdminClient consumer-group operations against a classic group on a 3-partition topic with 30 records
 * (record i in partition i % 3 at offset i / 3):
 * list/describe (Stable, one member owning all partitions)/listConsumerGroupOffsets while a member is active;
 * deleteConsumerGroups / deleteConsumerGroupOffsets refused while active; after the member leaves (Empty):
 * alterConsumerGroupOffsets (p0 -> 2, p1 -> 0), deleteConsumerGroupOffsets (p2), a new member resumes exactly
 * from there (p2 from the earliest offset); finally deleteConsumerGroups removes the group and its offsets.
 * Usage: GroupAdminCheck <bootstrap> <topic> <group>
 */
public class GroupAdminCheck {
    static final int N = 30, P = 3;

    static Throwable failureOf(KafkaFuture<?> f) throws Exception {
        try {
            f.get(30, TimeUnit.SECONDS);
            return null;
        } catch (ExecutionException e) {
            return e.getCause();
        }
    }

    static Map<TopicPartition, Long> offsets(Admin admin, String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> m = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
        Map<TopicPartition, Long> out = new TreeMap<>(Comparator.comparing(TopicPartition::toString));
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : m.entrySet()) if (e.getValue() != null) out.put(e.getKey(), e.getValue().offset());
        return out;
    }

    static Optional<ConsumerGroupListing> listed(Admin admin, String group) throws Exception {
        for (ConsumerGroupListing l : admin.listConsumerGroups().all().get(30, TimeUnit.SECONDS))
            if (l.groupId().equals(group)) return Optional.of(l);
        return Optional.empty();
    }

    public static void main(String[] a) throws Exception {
        String bootstrap = a[0], topic = a[1], group = a[2];
        TopicPartition p0 = new TopicPartition(topic, 0), p1 = new TopicPartition(topic, 1), p2 = new TopicPartition(topic, 2);
        Set<TopicPartition> all = Set.of(p0, p1, p2);
        try (Admin admin = GroupTestUtil.admin(bootstrap)) {
            GroupTestUtil.produce(bootstrap, topic, P, 0, N);
            ConcurrentMap<Integer, Integer> seen = new ConcurrentHashMap<>();
            GroupTestUtil.Member c1 = new GroupTestUtil.Member("c1", GroupTestUtil.consumerProps(bootstrap, group, "range"), topic, seen).start();
            GroupTestUtil.check(GroupTestUtil.waitUntil(30_000, () -> seen.size() >= N && c1.assignment.equals(all)),
                    "c1 consumed " + seen.size() + " of " + N + ", assignment " + c1.assignment);
            GroupTestUtil.sleep(500);

            // --- active group ---
            Optional<ConsumerGroupListing> l = listed(admin, group);
            GroupTestUtil.check(l.isPresent(), "listConsumerGroups does not list " + group);
            GroupTestUtil.check(l.get().groupState().equals(Optional.of(GroupState.STABLE)), "listConsumerGroups state: " + l.get());
            GroupTestUtil.check(!l.get().isSimpleConsumerGroup(), "listed as simple consumer group: " + l.get());

            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(30, TimeUnit.SECONDS);
            GroupTestUtil.check(d.groupState() == GroupState.STABLE, "describe state: " + d);
            GroupTestUtil.check(d.members().size() == 1, "describe members: " + d);
            MemberDescription md = d.members().iterator().next();
            GroupTestUtil.check(md.assignment().topicPartitions().equals(all), "described assignment: " + md);
            GroupTestUtil.check(!md.consumerId().isEmpty() && md.clientId().startsWith("consumer-" + group), "described member ids: " + md);
            GroupTestUtil.check("range".equals(d.partitionAssignor()), "partitionAssignor: " + d.partitionAssignor());
            GroupTestUtil.check(!d.isSimpleConsumerGroup() && d.coordinator() != null && d.coordinator().id() >= 0, "describe: " + d);

            Map<TopicPartition, Long> want = Map.of(p0, 10L, p1, 10L, p2, 10L);
            GroupTestUtil.check(offsets(admin, group).equals(want), "listConsumerGroupOffsets " + offsets(admin, group) + " != " + want);

            Throwable t = failureOf(admin.deleteConsumerGroups(List.of(group)).all());
            GroupTestUtil.check(t instanceof GroupNotEmptyException, "deleteConsumerGroups on an active group: expected GroupNotEmptyException, got " + t);
            t = failureOf(admin.deleteConsumerGroupOffsets(group, Set.of(p2)).all());
            GroupTestUtil.check(t instanceof GroupSubscribedToTopicException,
                    "deleteConsumerGroupOffsets of a subscribed topic: expected GroupSubscribedToTopicException, got " + t);
            t = failureOf(admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(0))).all());
            GroupTestUtil.check(t instanceof UnknownMemberIdException,
                    "alterConsumerGroupOffsets on an active group: expected UnknownMemberIdException, got " + t);
            GroupTestUtil.check(offsets(admin, group).equals(want), "offsets changed by refused operations: " + offsets(admin, group));

            // --- empty group ---
            c1.stopAndJoin(); // LeaveGroup
            d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(30, TimeUnit.SECONDS);
            GroupTestUtil.check(d.groupState() == GroupState.EMPTY && d.members().isEmpty(), "after leave: " + d);
            l = listed(admin, group);
            GroupTestUtil.check(l.isPresent() && l.get().groupState().equals(Optional.of(GroupState.EMPTY)), "listConsumerGroups after leave: " + l);

            Map<TopicPartition, OffsetAndMetadata> alter = Map.of(p0, new OffsetAndMetadata(2, "altered"), p1, new OffsetAndMetadata(0));
            t = failureOf(admin.alterConsumerGroupOffsets(group, alter).all());
            GroupTestUtil.check(t == null, "alterConsumerGroupOffsets on an empty group failed: " + t);
            Map<TopicPartition, OffsetAndMetadata> raw = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            GroupTestUtil.check("altered".equals(raw.get(p0).metadata()), "metadata of altered offset: " + raw);
            want = Map.of(p0, 2L, p1, 0L, p2, 10L);
            GroupTestUtil.check(offsets(admin, group).equals(want), "after alter: " + offsets(admin, group) + " != " + want);

            t = failureOf(admin.deleteConsumerGroupOffsets(group, Set.of(p2)).all());
            GroupTestUtil.check(t == null, "deleteConsumerGroupOffsets on an empty group failed: " + t);
            want = Map.of(p0, 2L, p1, 0L);
            GroupTestUtil.check(offsets(admin, group).equals(want), "after deleteConsumerGroupOffsets(p2): " + offsets(admin, group) + " != " + want);

            // A new member resumes: p0 from offset 2, p1 from 0, p2 (no offset) from the earliest.
            ConcurrentMap<Integer, Integer> seen2 = new ConcurrentHashMap<>();
            GroupTestUtil.Member c2 = new GroupTestUtil.Member("c2", GroupTestUtil.consumerProps(bootstrap, group, "range"), topic, seen2).start();
            Set<Integer> expected = new TreeSet<>();
            for (int i = 0; i < N; i++) if (i % P != 0 || i / P >= 2) expected.add(i);
            GroupTestUtil.check(GroupTestUtil.waitUntil(30_000, () -> seen2.size() >= expected.size()),
                    "resumed member consumed " + new TreeSet<>(seen2.keySet()) + ", expected " + expected);
            GroupTestUtil.sleep(2000);
            c2.stopAndJoin();
            GroupTestUtil.check(seen2.keySet().equals(expected) && seen2.values().stream().allMatch(k -> k == 1),
                    "resumed member consumed " + new TreeMap<>(seen2) + ", expected each of " + expected + " once");
            GroupTestUtil.check(offsets(admin, group).equals(Map.of(p0, 10L, p1, 10L, p2, 10L)), "after resume: " + offsets(admin, group));

            // --- delete ---
            t = failureOf(admin.deleteConsumerGroups(List.of(group)).all());
            GroupTestUtil.check(t == null, "deleteConsumerGroups on an empty group failed: " + t);
            GroupTestUtil.check(listed(admin, group).isEmpty(), "deleted group still listed: " + listed(admin, group));
            try {
                d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(30, TimeUnit.SECONDS);
                GroupTestUtil.check(d.groupState() == GroupState.DEAD && d.members().isEmpty(), "describe deleted group: " + d);
            } catch (ExecutionException e) {
                GroupTestUtil.check(e.getCause() instanceof GroupIdNotFoundException, "describe deleted group: " + e.getCause());
            }
            GroupTestUtil.check(offsets(admin, group).isEmpty(), "offsets of deleted group: " + offsets(admin, group));
            t = failureOf(admin.deleteConsumerGroups(List.of(group)).all());
            GroupTestUtil.check(t instanceof GroupIdNotFoundException, "deleting a deleted group: expected GroupIdNotFoundException, got " + t);
        }
        System.out.println("OK admin consumer groups");
    }
}
