import java.util.*;
import java.util.concurrent.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;

/**
 * Static membership (KIP-345): two members with group.instance.id s1 / s2, session.timeout.ms=10000.
 * Each in turn (s1 = the first joiner, i.e. the leader; then s2) is closed -- a static Java member does not send
 * LeaveGroup -- and restarted with the same group.instance.id well within the session timeout. The restarted
 * member must get the same assignment, and the other member must see no rebalance (no rebalance-listener call,
 * same assignment, same member id in describeConsumerGroups; group Stable with 2 members throughout).
 * Records produced before and after the restarts must be consumed exactly once overall.
 * Usage: GroupStaticCheck <bootstrap> <topic> <partitions> <group> <range|cooperative-sticky>
 */
public class GroupStaticCheck {
    static String bootstrap, topic, group, strategy;
    static ConcurrentMap<Integer, Integer> seen = new ConcurrentHashMap<>();

    static GroupTestUtil.Member member(String id) {
        Properties p = GroupTestUtil.consumerProps(bootstrap, group, strategy);
        p.put("group.instance.id", id);
        p.put("session.timeout.ms", "10000");
        return new GroupTestUtil.Member(id, p, topic, seen).start();
    }

    static ConsumerGroupDescription describe(Admin admin) throws Exception {
        return admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(30, TimeUnit.SECONDS);
    }

    static Map<String, String> memberIds(ConsumerGroupDescription d) {
        Map<String, String> m = new TreeMap<>();
        for (MemberDescription md : d.members()) m.put(md.groupInstanceId().orElse("<none>"), md.consumerId());
        return m;
    }

    public static void main(String[] a) throws Exception {
        bootstrap = a[0]; topic = a[1]; group = a[3]; strategy = a[4];
        int partitions = Integer.parseInt(a[2]);
        Set<TopicPartition> all = GroupTestUtil.allPartitions(topic, partitions);
        try (Admin admin = GroupTestUtil.admin(bootstrap)) {
            GroupTestUtil.produce(bootstrap, topic, partitions, 0, 300);
            GroupTestUtil.Member[] m = new GroupTestUtil.Member[2];
            m[0] = member("s1");
            GroupTestUtil.check(GroupTestUtil.waitUntil(30_000, () -> m[0].assignment.equals(all)), "s1 alone should own " + all + ", has " + m[0].assignment);
            m[1] = member("s2");
            GroupTestUtil.check(GroupTestUtil.waitUntil(30_000, () -> GroupTwoMembersCheck.split(m[0].assignment, m[1].assignment, all)),
                    "partitions not split between s1 " + m[0].assignment + " and s2 " + m[1].assignment);
            GroupTestUtil.check(GroupTestUtil.waitUntil(30_000, () -> seen.size() >= 300), "consumed only " + seen.size() + " of the first 300 records");
            GroupTestUtil.sleep(1500);
            ConsumerGroupDescription d0 = describe(admin);
            GroupTestUtil.check(d0.groupState() == GroupState.STABLE && d0.members().size() == 2, "before restarts: " + d0);
            int next = 300;

            for (int k = 0; k < 2; k++) {
                GroupTestUtil.Member restarted = m[k], other = m[1 - k];
                String id = restarted.name;
                Set<TopicPartition> before = restarted.assignment, otherBefore = other.assignment;
                int oa = other.assignedCalls.get(), or = other.revokedCalls.get(), ol = other.lostCalls.get();
                Map<String, String> idsBefore = memberIds(describe(admin));

                long t0 = System.currentTimeMillis();
                restarted.stopAndJoin(); // close(): a static member does not leave the group
                ConsumerGroupDescription dClosed = describe(admin);
                GroupTestUtil.check(dClosed.members().size() == 2 && dClosed.groupState() == GroupState.STABLE,
                        id + " closed: a static member must stay in the group until its session times out: " + dClosed);
                GroupTestUtil.sleep(1000);
                GroupTestUtil.Member again = member(id);
                m[k] = again;
                GroupTestUtil.check(GroupTestUtil.waitUntil(8_000, () -> !again.assignment.isEmpty()),
                        id + " restarted: no assignment after 8 s; events " + again.events);
                long elapsed = System.currentTimeMillis() - t0;
                GroupTestUtil.check(elapsed < 10_000, id + " restart took " + elapsed + " ms, not within the session timeout");
                GroupTestUtil.check(again.assignment.equals(before), id + " restarted with assignment " + again.assignment + ", before " + before);

                GroupTestUtil.produce(bootstrap, topic, partitions, next, next + 150);
                next += 150;
                final int want = next;
                GroupTestUtil.check(GroupTestUtil.waitUntil(30_000, () -> seen.size() >= want), "consumed " + seen.size() + " of " + want);
                GroupTestUtil.sleep(2000); // > several heartbeat intervals: a rebalance would have started by now

                GroupTestUtil.check(other.assignedCalls.get() == oa && other.revokedCalls.get() == or && other.lostCalls.get() == ol,
                        "restart of " + id + " caused a rebalance of " + other.name + ": events " + other.events);
                GroupTestUtil.check(other.assignment.equals(otherBefore), other.name + " assignment changed: " + otherBefore + " -> " + other.assignment);
                ConsumerGroupDescription d = describe(admin);
                Map<String, String> ids = memberIds(d);
                GroupTestUtil.check(d.groupState() == GroupState.STABLE && d.members().size() == 2, "after restart of " + id + ": " + d);
                GroupTestUtil.check(ids.keySet().equals(Set.of("s1", "s2")), "instance ids " + ids);
                GroupTestUtil.check(ids.get(other.name).equals(idsBefore.get(other.name)), other.name + " member id changed: " + idsBefore + " -> " + ids);
                for (MemberDescription md : d.members())
                    if (md.groupInstanceId().orElse("").equals(id))
                        GroupTestUtil.check(md.assignment().topicPartitions().equals(before), "described assignment of " + id + ": " + md);
                System.out.println("restart of " + id + " ok in " + elapsed + " ms; member ids " + idsBefore + " -> " + ids);
            }
            m[0].stopAndJoin();
            m[1].stopAndJoin();
            GroupTestUtil.checkExactlyOnce(seen, next, "records 0.." + (next - 1));
            GroupTestUtil.checkCommittedAtEnd(admin, group, topic, partitions);
            System.out.println("OK static membership (" + strategy + "): " + next + " records exactly once");
        }
    }
}
