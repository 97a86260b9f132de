import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * The consumer group protocol (KIP-848, group.protocol=consumer) through the Java kafka-clients 4.x consumer.
 * Records are produced with GroupTestUtil's layout (key = value = "v<i>" in partition i % partitions).
 *
 * Usage:
 *   Kip848Check resume <bootstrap> <topic> <partitions> <group> <uniform|range> <from> <to> <produceAfter>
 *     as GroupResumeCheck: one consumer, commitSync after each record, reads exactly from..to-1 (then the
 *     records it produces itself), and the group's committed offsets end at the end offsets.
 *   Kip848Check regex <bootstrap> <prefix> <partitions> <group> <uniform|range> <records>
 *     subscribe(SubscriptionPattern "<prefix>-.*") (server-side regex, KIP-848): reads the <records> records of
 *     <prefix>-a and <prefix>-b and nothing of <prefix>x-c; a topic <prefix>-new created afterwards joins the
 *     assignment and its records are read too.
 *   Kip848Check restart <bootstrap> <topic> <partitions> <group> <uniform|range> <records>
 *     across a coordinator restart driven by the caller: reads records 0..records-1 (commitSync after each),
 *     prints "READY member=<id> epoch=<n>" and keeps polling (heartbeating) until a line arrives on stdin (the
 *     broker was killed and restarted meanwhile); then produces records..2*records-1 and reads exactly those.
 *     The member keeps its id, epoch and assignment throughout: no revocation, no lost partitions, no new
 *     assignment, no record twice.
 *   Kip848Check regexacl <bootstrap> <prefix> <partitions> <group> <uniform|range> <records> <client.properties>
 *     subscribe(SubscriptionPattern "<prefix>-.*") as a principal (from the properties file) that may describe
 *     <prefix>-a but not <prefix>-b: reads all of <prefix>-a and is never assigned a partition of <prefix>-b.
 *   Kip848Check two <bootstrap> <topic> <partitions> <group> <uniform|range>
 *     as GroupTwoMembersCheck: A alone owns everything; B joins and the partitions are split; B leaves and
 *     A owns everything again; every record produced meanwhile is consumed exactly once.
 */
public class Kip848Check {
    static Properties props(String bootstrap, String group, String assignor) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("group.protocol", "consumer");
        p.put("group.remote.assignor", assignor);
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        return p;
    }

    public static void main(String[] a) throws Exception {
        String mode = a[0], bootstrap = a[1], topic = a[2], group = a[4], assignor = a[5];
        int partitions = Integer.parseInt(a[3]);
        if (mode.equals("resume")) resume(bootstrap, topic, partitions, group, assignor,
                Integer.parseInt(a[6]), Integer.parseInt(a[7]), Integer.parseInt(a[8]));
        else if (mode.equals("two")) two(bootstrap, topic, partitions, group, assignor);
        else if (mode.equals("regex")) regex(bootstrap, topic, partitions, group, assignor, Integer.parseInt(a[6]));
        else if (mode.equals("restart")) restart(bootstrap, topic, partitions, group, assignor, Integer.parseInt(a[6]));
        else if (mode.equals("regexacl")) regexAcl(bootstrap, topic, partitions, group, assignor, Integer.parseInt(a[6]), a[7]);
        else GroupTestUtil.fail("unknown mode " + mode);
    }

    static void resume(String bootstrap, String topic, int partitions, String group, String assignor, int from, int to, int after) throws Exception {
        Map<Integer, Integer> seen = new HashMap<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(props(bootstrap, group, assignor));
             Admin admin = GroupTestUtil.admin(bootstrap)) {
            c.subscribe(List.of(topic));
            GroupResumeCheck.consume(c, seen, from, to, 90_000);
            GroupTestUtil.check(c.assignment().equals(GroupTestUtil.allPartitions(topic, partitions)),
                    "sole member should own all partitions, has " + c.assignment());
            GroupResumeCheck.idle(c, seen, 3_000, "after records " + from + ".." + (to - 1));
            if (after > 0) {
                GroupTestUtil.produce(bootstrap, topic, partitions, to, to + after);
                GroupResumeCheck.consume(c, seen, to, to + after, 60_000);
                GroupResumeCheck.idle(c, seen, 1_000, "after the later records");
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
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(30, TimeUnit.SECONDS);
            GroupTestUtil.check(d.type() == GroupType.CONSUMER && d.members().size() == 1, "describeConsumerGroups " + d);
            boolean listed = false;
            for (GroupListing l : admin.listGroups().all().get(30, TimeUnit.SECONDS))
                if (l.groupId().equals(group)) {
                    listed = true;
                    GroupTestUtil.check(l.type().equals(Optional.of(GroupType.CONSUMER)), "listGroups type " + l);
                }
            GroupTestUtil.check(listed, "group not listed");
        }
        System.out.println("OK kip848 resumed group " + group + " (" + assignor + "): consumed " + from + ".." + (to + after - 1));
    }

    static void regex(String bootstrap, String prefix, int partitions, String group, String assignor, int records) throws Exception {
        Map<String, Set<String>> seen = new HashMap<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(props(bootstrap, group, assignor));
             Admin admin = GroupTestUtil.admin(bootstrap)) {
            c.subscribe(new SubscriptionPattern(prefix + "-.*"));
            long deadline = System.currentTimeMillis() + 90_000;
            while (System.currentTimeMillis() < deadline && count(seen, prefix + "-a", prefix + "-b") < 2 * records) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    seen.computeIfAbsent(r.topic(), t -> new HashSet<>()).add(r.value());
                    c.commitSync(Map.of(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1)));
                }
            }
            GroupTestUtil.check(count(seen, prefix + "-a", prefix + "-b") == 2 * records, "matching topics not read whole: " + sizes(seen));
            GroupTestUtil.check(!seen.containsKey(prefix + "x-c"), "read a topic the regex does not match: " + sizes(seen));
            for (TopicPartition tp : c.assignment())
                GroupTestUtil.check(tp.topic().startsWith(prefix + "-"), "assigned " + tp);
            admin.createTopics(List.of(new NewTopic(prefix + "-new", partitions, (short) -1))).all().get(30, TimeUnit.SECONDS);
            GroupTestUtil.produce(bootstrap, prefix + "-new", partitions, 0, records);
            deadline = System.currentTimeMillis() + 90_000;
            while (System.currentTimeMillis() < deadline && count(seen, prefix + "-new") < records) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200)))
                    seen.computeIfAbsent(r.topic(), t -> new HashSet<>()).add(r.value());
            }
            GroupTestUtil.check(count(seen, prefix + "-new") == records, "the new matching topic was not read: " + sizes(seen));
            System.out.println("OK kip848 regex: " + sizes(seen));
        }
    }

    static void restart(String bootstrap, String topic, int partitions, String group, String assignor, int records) throws Exception {
        Map<Integer, Integer> seen = new HashMap<>();
        List<String> events = Collections.synchronizedList(new ArrayList<>());
        Properties p = props(bootstrap, group, assignor);
        // Generous, so a slow restart is not what the check measures.
        p.put("request.timeout.ms", "10000");
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                public void onPartitionsRevoked(Collection<TopicPartition> ps) { if (!ps.isEmpty()) events.add("revoked " + ps); }
                public void onPartitionsAssigned(Collection<TopicPartition> ps) { if (!ps.isEmpty()) events.add("assigned " + ps); }
                public void onPartitionsLost(Collection<TopicPartition> ps) { events.add("lost " + ps); }
            });
            GroupResumeCheck.consume(c, seen, 0, records, 90_000);
            GroupTestUtil.check(c.assignment().equals(GroupTestUtil.allPartitions(topic, partitions)),
                    "sole member should own all partitions, has " + c.assignment());
            String member = c.groupMetadata().memberId();
            int epoch = c.groupMetadata().generationId();
            int eventsBefore = events.size();
            System.out.println("READY member=" + member + " epoch=" + epoch);
            System.out.flush();
            BufferedReaderThread go = new BufferedReaderThread();
            go.start();
            long deadline = System.currentTimeMillis() + 180_000;
            while (!go.done) {
                GroupTestUtil.check(System.currentTimeMillis() < deadline, "no go from the caller");
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100)))
                    GroupTestUtil.fail("unexpected record " + GroupTestUtil.index(r) + " while the broker restarted");
            }
            GroupTestUtil.produce(bootstrap, topic, partitions, records, 2 * records);
            GroupResumeCheck.consume(c, seen, records, 2 * records, 90_000);
            // Several heartbeats after the restart, so a late fence would show.
            GroupResumeCheck.idle(c, seen, 12_000, "after the restart");
            for (int i = 0; i < 2 * records; i++)
                GroupTestUtil.check(seen.getOrDefault(i, 0) == 1, "record " + i + " consumed " + seen.getOrDefault(i, 0) + " times");
            List<String> after = new ArrayList<>(events.subList(eventsBefore, events.size()));
            GroupTestUtil.check(after.isEmpty(), "the assignment changed across the restart: " + after);
            GroupTestUtil.check(c.groupMetadata().memberId().equals(member), "member id changed: " + member + " -> " + c.groupMetadata().memberId());
            GroupTestUtil.check(c.groupMetadata().generationId() == epoch, "member epoch changed: " + epoch + " -> " + c.groupMetadata().generationId());
            GroupTestUtil.check(c.assignment().equals(GroupTestUtil.allPartitions(topic, partitions)), "assignment after the restart " + c.assignment());
            System.out.println("OK kip848 restart: member " + member + " kept epoch " + epoch + ", read 0.." + (2 * records - 1) + " once");
        }
    }

    /** Waits for one line on stdin (the caller's go-ahead). */
    static class BufferedReaderThread extends Thread {
        volatile boolean done;
        BufferedReaderThread() { setDaemon(true); }
        public void run() {
            try { new java.io.BufferedReader(new java.io.InputStreamReader(System.in)).readLine(); } catch (Exception e) { }
            done = true;
        }
    }

    static void regexAcl(String bootstrap, String prefix, int partitions, String group, String assignor, int records, String propsFile) throws Exception {
        Map<String, Set<String>> seen = new HashMap<>();
        Properties p = props(bootstrap, group, assignor);
        try (java.io.FileReader r = new java.io.FileReader(propsFile)) { p.load(r); }
        Set<TopicPartition> everAssigned = Collections.synchronizedSet(new HashSet<>());
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            c.subscribe(new SubscriptionPattern(prefix + "-.*"), new ConsumerRebalanceListener() {
                public void onPartitionsRevoked(Collection<TopicPartition> ps) { }
                public void onPartitionsAssigned(Collection<TopicPartition> ps) { everAssigned.addAll(ps); }
            });
            long deadline = System.currentTimeMillis() + 90_000;
            while (System.currentTimeMillis() < deadline && count(seen, prefix + "-a") < records) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    seen.computeIfAbsent(r.topic(), t -> new HashSet<>()).add(r.value());
                    c.commitSync(Map.of(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1)));
                }
            }
            GroupTestUtil.check(count(seen, prefix + "-a") == records, "the describable topic was not read whole: " + sizes(seen));
            // A few heartbeats more: the undescribable topic must not turn up later either.
            long end = System.currentTimeMillis() + 6_000;
            while (System.currentTimeMillis() < end)
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200)))
                    seen.computeIfAbsent(r.topic(), t -> new HashSet<>()).add(r.value());
            GroupTestUtil.check(!seen.containsKey(prefix + "-b"), "read a topic the principal may not describe: " + sizes(seen));
            for (TopicPartition tp : everAssigned)
                GroupTestUtil.check(tp.topic().equals(prefix + "-a"), "assigned " + tp + ", all: " + everAssigned);
            GroupTestUtil.check(!everAssigned.isEmpty(), "nothing assigned");
            // The coordinator's own view (the client could not even name a topic it may not describe).
            try (Admin admin = Admin.create(p)) {
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(30, TimeUnit.SECONDS);
                GroupTestUtil.check(d.members().size() == 1, "describeConsumerGroups " + d);
                for (MemberDescription m : d.members()) {
                    for (TopicPartition tp : m.assignment().topicPartitions())
                        GroupTestUtil.check(tp.topic().equals(prefix + "-a"), "coordinator assigned " + tp + ": " + d);
                    GroupTestUtil.check(m.assignment().topicPartitions().size() == partitions, "coordinator assignment " + d);
                }
            }
            System.out.println("OK kip848 regexacl: assigned " + new TreeSet<>(everAssigned.stream().map(Object::toString).toList()) + ", read " + sizes(seen));
        }
    }

    static int count(Map<String, Set<String>> seen, String... topics) {
        int n = 0;
        for (String t : topics) n += seen.getOrDefault(t, Set.of()).size();
        return n;
    }

    static Map<String, Integer> sizes(Map<String, Set<String>> seen) {
        Map<String, Integer> m = new TreeMap<>();
        seen.forEach((t, v) -> m.put(t, v.size()));
        return m;
    }

    static void two(String bootstrap, String topic, int partitions, String group, String assignor) throws Exception {
        Set<TopicPartition> all = GroupTestUtil.allPartitions(topic, partitions);
        ConcurrentMap<Integer, Integer> seen = new ConcurrentHashMap<>();
        Member848 A = new Member848("A", props(bootstrap, group, assignor), topic, seen);
        Member848 B = new Member848("B", props(bootstrap, group, assignor), topic, seen);
        final int[] produced = {0};
        final java.util.concurrent.atomic.AtomicBoolean stopProducing = new java.util.concurrent.atomic.AtomicBoolean();
        final Throwable[] prodError = {null};
        Thread prod = new Thread(() -> {
            try (var p = GroupTestUtil.producer(bootstrap)) {
                while (!stopProducing.get()) {
                    GroupTestUtil.send(p, topic, partitions, produced[0]);
                    synchronized (produced) { produced[0]++; }
                    GroupTestUtil.sleep(5);
                }
            } catch (Throwable t) { prodError[0] = t; }
        }, "producer");
        prod.setDaemon(true);

        try (Admin admin = GroupTestUtil.admin(bootstrap)) {
            GroupTestUtil.produce(bootstrap, topic, partitions, 0, 300);
            produced[0] = 300;
            prod.start();

            A.start();
            GroupTestUtil.check(GroupTestUtil.waitUntil(60_000, () -> A.assignment.equals(all) && A.consumed.get() > 100),
                    "phase 1: A alone should own " + all + " and consume; has " + A.assignment + ", consumed " + A.consumed + " events " + A.events);

            B.start();
            GroupTestUtil.check(GroupTestUtil.waitUntil(60_000, () -> GroupTwoMembersCheck.split(A.assignment, B.assignment, all)),
                    "phase 2: partitions not split: A=" + A.assignment + " B=" + B.assignment + "\nA events " + A.events + "\nB events " + B.events);
            GroupTestUtil.check(A.assignment.size() == partitions / 2 && B.assignment.size() == partitions / 2,
                    "phase 2: uneven split A=" + A.assignment + " B=" + B.assignment);
            int bBefore = B.consumed.get();
            GroupTestUtil.check(GroupTestUtil.waitUntil(30_000, () -> B.consumed.get() > bBefore + 20),
                    "phase 2: B does not consume its partitions: A=" + A.assignment + " B=" + B.assignment + " B consumed " + B.consumed);
            ConsumerGroupDescription d = null;
            for (int i = 0; i < 40; i++) { // the group is Stable once both acknowledged their assignment
                d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(30, TimeUnit.SECONDS);
                if (d.groupState() == GroupState.STABLE) break;
                GroupTestUtil.sleep(500);
            }
            GroupTestUtil.check(d.groupState() == GroupState.STABLE && d.members().size() == 2 && d.type() == GroupType.CONSUMER,
                    "phase 2: describeConsumerGroups " + d);
            Set<TopicPartition> described = new HashSet<>();
            for (MemberDescription m : d.members()) {
                Set<TopicPartition> tps = m.assignment().topicPartitions();
                GroupTestUtil.check(Collections.disjoint(described, tps), "described assignments overlap: " + d);
                described.addAll(tps);
            }
            GroupTestUtil.check(described.equals(all), "described assignments do not cover the topic: " + d);

            B.stopAndJoin(); // close() leaves the group (member epoch -1)
            GroupTestUtil.check(GroupTestUtil.waitUntil(60_000, () -> A.assignment.equals(all)),
                    "phase 3: after B left, A should own " + all + "; has " + A.assignment + "\nA events " + A.events);
            int aBefore = A.consumed.get();
            GroupTestUtil.check(GroupTestUtil.waitUntil(30_000, () -> A.consumed.get() > aBefore + 20), "phase 3: A does not consume");

            stopProducing.set(true);
            prod.join(60_000);
            GroupTestUtil.check(prodError[0] == null, "producer failed: " + prodError[0]);
            int n = produced[0];
            GroupTestUtil.check(GroupTestUtil.waitUntil(60_000, () -> seen.size() >= n), "drain: consumed " + seen.size() + " of " + n);
            GroupTestUtil.sleep(1000);
            A.stopAndJoin();
            GroupTestUtil.checkExactlyOnce(seen, n, "records 0.." + (n - 1) + " over A and B (A events " + A.events + ", B events " + B.events + ")");
            GroupTestUtil.checkCommittedAtEnd(admin, group, topic, partitions);
            System.out.println("OK kip848 two members (" + assignor + "): " + n + " records exactly once; A consumed " + A.consumed + ", B consumed " + B.consumed
                    + "; A events " + A.events + "; B events " + B.events);
        }
    }

    /**
     * GroupTestUtil.Member for the consumer protocol: also retries a commit refused with CommitFailedException.
     * One group member on its own thread: subscribe(topic), poll(100 ms), commitSync after each record.
     * A commit refused with RebalanceInProgressException stays pending and is retried after the next poll
     * or in onPartitionsRevoked, so every processed record is committed before its partition moves.
     * Every consumed record index is counted in the shared `seen` map (for exactly-once checks).
     */
    static class Member848 implements Runnable, ConsumerRebalanceListener {
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

        Member848(String name, Properties props, String topic, ConcurrentMap<Integer, Integer> seen) {
            this.name = name; this.props = props; this.topic = topic; this.seen = seen;
            this.thread = new Thread(this, name);
            this.thread.setDaemon(true);
        }

        Member848 start() { thread.start(); return this; }

        void stopAndJoin() throws InterruptedException {
            stop = true;
            thread.join(60_000);
            GroupTestUtil.check(!thread.isAlive(), name + ": did not close within 60 s");
            GroupTestUtil.check(error == null, name + ": failed: " + error);
        }

        private void tryCommit() {
            if (pending.isEmpty()) return;
            try {
                c.commitSync(new HashMap<>(pending), Duration.ofSeconds(30));
                pending.clear();
            } catch (RebalanceInProgressException e) {
                events.add("commit deferred (rebalance in progress) " + pending);
            } catch (CommitFailedException e) {
                // KIP-848: a commit racing a member epoch bump fails with STALE_MEMBER_EPOCH (Kafka too);
                // the partitions are still ours (else onPartitionsLost drops them): retry after the next poll.
                events.add("commit retried (" + e.getMessage() + ") " + pending);
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
                        int i = GroupTestUtil.index(r);
                        seen.merge(i, 1, Integer::sum);
                        consumed.incrementAndGet();
                        pending.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                        tryCommit();
                    }
                    assignment = Set.copyOf(c.assignment());
                }
                tryCommit();
                GroupTestUtil.check(pending.isEmpty(), name + ": uncommitted offsets at close: " + pending);
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

}
