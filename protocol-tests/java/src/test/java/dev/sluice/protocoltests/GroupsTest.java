package dev.sluice.protocoltests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsSpec;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.OffsetMetadataTooLarge;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Consumer groups through the Java client: KafkaConsumer.subscribe with the classic protocol and
 * with the KIP-848 consumer protocol, commitSync, a second member taking a share of the partitions,
 * committed offsets (with their metadata) read back through Admin.listConsumerGroupOffsets and
 * KafkaConsumer.committed.
 *
 * <p>The broker runs with {@code group.initial.rebalance.delay.ms=0} and
 * {@code offsets.topic.replication.factor=1}.
 */
@ExtendWith(SluiceExtension.class)
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class GroupsTest {
    private static final long WAIT = 30;
    private static final int PARTITIONS = 4;
    private static final int PER_PARTITION = 100;
    private static final Map<String, String> BROKER_SETTINGS = Map.of(
            "group.initial.rebalance.delay.ms", "0",
            "offsets.topic.replication.factor", "1");

    interface BrokerTest {
        void run(SluiceBroker broker) throws Exception;
    }

    /** Runs {@code test} against a broker started with BROKER_SETTINGS; its log tail on failure. */
    private static void withBroker(BrokerTest test) throws Exception {
        SluiceBroker broker = SluiceBroker.start(BROKER_SETTINGS);
        System.out.println("started " + broker);
        boolean passed = false;
        try {
            test.run(broker);
            passed = true;
        } catch (Throwable t) {
            System.err.println("sluice broker log (" + broker.bootstrap() + ")\n" + broker.logTail());
            t.addSuppressed(new SluiceExtension.BrokerLog(broker.logTail()));
            throw t;
        } finally {
            broker.close();
            if (passed && !"1".equals(System.getenv("SLUICE_KEEP_FILES"))) {
                broker.deleteFiles();
            } else {
                System.err.println("kept broker files: " + broker.logFile().getParent());
            }
        }
    }

    private static void createTopic(SluiceBroker broker, String topic, int partitions) throws Exception {
        try (Admin admin = Clients.admin(broker)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(WAIT, TimeUnit.SECONDS);
        }
    }

    /** PER_PARTITION records on each partition; the value is "round-p-i". */
    private static void produce(SluiceBroker broker, String topic, int round) throws Exception {
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(broker)) {
            for (int i = 0; i < PER_PARTITION; i++) {
                for (int p = 0; p < PARTITIONS; p++) {
                    byte[] value = (round + "-" + p + "-" + i).getBytes(StandardCharsets.UTF_8);
                    producer.send(new ProducerRecord<>(topic, p, null, value));
                }
            }
            producer.flush();
        }
    }

    /** A group member; for the classic protocol with the range assignor and quick heartbeats. */
    private static KafkaConsumer<byte[], byte[]> member(SluiceBroker broker, String group, String protocol, String clientId) {
        Map<String, Object> p = new HashMap<>();
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        if (protocol.equals("classic")) {
            // The consumer protocol refuses these: the broker sets them.
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, "org.apache.kafka.clients.consumer.RangeAssignor");
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
        }
        return Clients.consumer(broker, p);
    }

    /** What one member consumed, and the offsets it commits (position + its name as metadata). */
    static final class Member implements ConsumerRebalanceListener {
        final String name;
        final KafkaConsumer<byte[], byte[]> consumer;
        final List<ConsumerRecord<byte[], byte[]>> records = new ArrayList<>();
        final Map<TopicPartition, Long> next = new HashMap<>();
        /** The last commit of each partition by any member of the group (shared). */
        final Map<TopicPartition, OffsetAndMetadata> committed;
        int revocations;

        Member(String name, KafkaConsumer<byte[], byte[]> consumer, String topic, Map<TopicPartition, OffsetAndMetadata> committed) {
            this.name = name;
            this.consumer = consumer;
            this.committed = committed;
            consumer.subscribe(List.of(topic), this);
        }

        void poll() {
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                records.add(r);
                next.put(new TopicPartition(r.topic(), r.partition()), r.offset() + 1);
            }
        }

        /** commitSync of what was processed on {@code partitions} (or every owned one). */
        void commit(Collection<TopicPartition> partitions) {
            Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
            for (TopicPartition tp : partitions) {
                Long n = next.get(tp);
                if (n != null) {
                    offsets.put(tp, new OffsetAndMetadata(n, "committed by " + name));
                }
            }
            if (!offsets.isEmpty()) {
                consumer.commitSync(offsets);
                committed.putAll(offsets);
            }
        }

        Set<Integer> owned() {
            return consumer.assignment().stream().map(TopicPartition::partition).collect(Collectors.toCollection(TreeSet::new));
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            revocations++;
            commit(partitions);
            partitions.forEach(next::remove);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            partitions.forEach(next::remove);
        }
    }

    private static void pollUntil(String what, Duration timeout, List<Member> members, java.util.function.BooleanSupplier done) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!done.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                StringBuilder state = new StringBuilder();
                for (Member m : members) {
                    state.append(" ").append(m.name).append(": owns ").append(m.owned()).append(", consumed ").append(m.records.size());
                }
                fail("timed out after " + timeout.toSeconds() + " s waiting for " + what + ";" + state);
            }
            members.forEach(Member::poll);
        }
    }

    /**
     * One member subscribes and gets every partition, consumes part of the topic and commits; a
     * second member joins and both own a share; together they consume every record once
     * (the first commits what it processed when partitions are revoked); each commits, and
     * Admin.listConsumerGroupOffsets gives back exactly the committed offsets and metadata.
     */
    @ParameterizedTest(name = "group.protocol={0}")
    @ValueSource(strings = {"classic", "consumer"})
    void secondMemberTakesAShareAndCommittedOffsetsMatchAdmin(String protocol) throws Exception {
        withBroker(broker -> {
            long started = System.nanoTime();
            String topic = Clients.uniqueTopic("java-groups-" + protocol);
            String group = Clients.uniqueTopic("java-group-" + protocol);
            createTopic(broker, topic, PARTITIONS);
            produce(broker, topic, 1);
            int total = 2 * PARTITIONS * PER_PARTITION;

            Map<TopicPartition, OffsetAndMetadata> committed = new HashMap<>();
            Member a = new Member("a", member(broker, group, protocol, "member-a"), topic, committed);
            Member b = null;
            try {
                pollUntil("member a to own every partition and consume 100 records", Duration.ofSeconds(60), List.of(a),
                        () -> a.owned().size() == PARTITIONS && a.records.size() >= 100);
                a.commit(a.consumer.assignment());
                System.out.println(protocol + ": a owned " + a.owned() + ", consumed " + a.records.size()
                        + ", committed " + new TreeMap<>(offsets(a.committed)));

                Member second = new Member("b", member(broker, group, protocol, "member-b"), topic, committed);
                b = second;
                List<Member> both = List.of(a, second);
                pollUntil("both members to own a share of the partitions", Duration.ofSeconds(60), both, () -> {
                    Set<Integer> oa = a.owned(), ob = second.owned();
                    Set<Integer> union = new HashSet<>(oa);
                    union.addAll(ob);
                    return !oa.isEmpty() && !ob.isEmpty() && union.size() == PARTITIONS && oa.size() + ob.size() == PARTITIONS;
                });
                Set<Integer> shareA = a.owned(), shareB = second.owned();
                double rebalanceSeconds = (System.nanoTime() - started) / 1e9;
                produce(broker, topic, 2); // consumed by both, each from its share
                pollUntil("every record consumed", Duration.ofSeconds(60), both,
                        () -> distinct(both) >= total);
                a.commit(a.consumer.assignment());
                second.commit(second.consumer.assignment());

                // Every record once, each by the member owning its partition at the time.
                Map<String, Integer> seen = new HashMap<>();
                for (Member m : both) {
                    for (ConsumerRecord<byte[], byte[]> r : m.records) {
                        seen.merge(new String(r.value(), StandardCharsets.UTF_8), 1, Integer::sum);
                    }
                }
                long dups = seen.values().stream().filter(n -> n > 1).count();
                System.out.println(protocol + ": shares a " + shareA + " / b " + shareB + " (after " + String.format("%.1f", rebalanceSeconds)
                        + " s); consumed a " + a.records.size() + ", b " + second.records.size() + "; duplicates " + dups
                        + "; revocations a " + a.revocations + ", b " + second.revocations);
                assertEquals(total, seen.size(), "every record consumed");
                assertEquals(0, dups, "no record consumed twice");
                assertTrue(second.records.stream().allMatch(r -> shareB.contains(r.partition())), "b consumed only its share");
                assertFalse(second.records.isEmpty(), "b consumed records of its share");
                long aAfter = a.records.stream().filter(r -> new String(r.value(), StandardCharsets.UTF_8).startsWith("2-")).count();
                assertTrue(aAfter > 0, "a consumed records of its share after b joined");

                // What Admin reads back (OffsetFetch) is what was committed, metadata included.
                Map<TopicPartition, OffsetAndMetadata> expected = committed;
                try (Admin admin = Clients.admin(broker)) {
                    Map<TopicPartition, OffsetAndMetadata> fetched =
                            admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(WAIT, TimeUnit.SECONDS);
                    assertEquals(PARTITIONS, fetched.size(), "a committed offset for every partition: " + fetched);
                    for (int p = 0; p < PARTITIONS; p++) {
                        TopicPartition tp = new TopicPartition(topic, p);
                        assertEquals(new OffsetAndMetadata(2 * PER_PARTITION, expected.get(tp).metadata()), expected.get(tp),
                                "last commit of " + tp + " is its end");
                        assertEquals(expected.get(tp), fetched.get(tp), "committed offset and metadata of " + tp);
                    }
                    assertEquals(fetched, second.consumer.committed(Set.copyOf(fetched.keySet()), Duration.ofSeconds(WAIT)),
                            "KafkaConsumer.committed agrees with Admin");

                    ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all()
                            .get(WAIT, TimeUnit.SECONDS).get(group);
                    assertEquals(protocol.equals("classic") ? GroupType.CLASSIC : GroupType.CONSUMER, d.type(), "group type");
                    assertEquals(2, d.members().size(), "members: " + d.members());
                    Set<Set<Integer>> described = d.members().stream()
                            .map(m -> m.assignment().topicPartitions().stream().map(TopicPartition::partition)
                                    .collect(Collectors.toCollection(TreeSet::new)))
                            .collect(Collectors.toSet());
                    assertEquals(Set.of(shareA, shareB), described, "assignments in DescribeGroups");
                    System.out.println(protocol + ": listConsumerGroupOffsets " + new TreeMap<>(offsets(fetched))
                            + "; described " + d.type() + " " + d.groupState() + " with " + described
                            + "; " + String.format("%.1f", (System.nanoTime() - started) / 1e9) + " s");
                }
            } finally {
                a.consumer.close(Duration.ofSeconds(WAIT));
                if (b != null) {
                    b.consumer.close(Duration.ofSeconds(WAIT));
                }
            }
        });
    }

    private static int distinct(List<Member> members) {
        Set<String> s = new HashSet<>();
        members.forEach(m -> m.records.forEach(r -> s.add(new String(r.value(), StandardCharsets.UTF_8))));
        return s.size();
    }

    private static Map<String, Long> offsets(Map<TopicPartition, OffsetAndMetadata> m) {
        Map<String, Long> out = new HashMap<>();
        m.forEach((tp, o) -> out.put(tp.toString(), o.offset()));
        return out;
    }

    /**
     * OffsetCommit/OffsetFetch metadata round trip from a consumer that does not join (assign mode):
     * UTF-8 metadata, empty metadata and metadata of exactly 4096 bytes come back unchanged; 4097
     * bytes are refused with OffsetMetadataTooLarge and change nothing; a partition never committed
     * reads as no offset.
     */
    @Test
    void offsetFetchReturnsCommittedMetadata() throws Exception {
        withBroker(broker -> {
            String topic = Clients.uniqueTopic("java-groups-metadata");
            String group = Clients.uniqueTopic("java-group-metadata");
            createTopic(broker, topic, PARTITIONS);
            produce(broker, topic, 1);
            TopicPartition p0 = new TopicPartition(topic, 0), p1 = new TopicPartition(topic, 1),
                    p2 = new TopicPartition(topic, 2), p3 = new TopicPartition(topic, 3);
            String unicode = "métadonnées ✓ 日本 " + "\u0000" + "end";
            String limit = "L".repeat(4096);
            Map<TopicPartition, OffsetAndMetadata> commits = Map.of(
                    p0, new OffsetAndMetadata(7, unicode),
                    p1, new OffsetAndMetadata(0, ""),
                    p2, new OffsetAndMetadata(100, limit));
            try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(broker, Map.of(ConsumerConfig.GROUP_ID_CONFIG, group));
                 Admin admin = Clients.admin(broker)) {
                c.assign(List.of(p0, p1, p2, p3));
                c.commitSync(commits, Duration.ofSeconds(WAIT));

                Map<TopicPartition, OffsetAndMetadata> back = c.committed(Set.of(p0, p1, p2, p3), Duration.ofSeconds(WAIT));
                assertEquals(commits.get(p0), back.get(p0), "UTF-8 metadata round trip");
                assertEquals(commits.get(p1), back.get(p1), "empty metadata");
                assertEquals(commits.get(p2), back.get(p2), "4096-byte metadata");
                assertNull(back.get(p3), "a partition never committed has no offset: " + back.get(p3));

                OffsetMetadataTooLarge tooLarge = assertThrows(OffsetMetadataTooLarge.class,
                        () -> c.commitSync(Map.of(p0, new OffsetAndMetadata(9, limit + "!")), Duration.ofSeconds(WAIT)),
                        "4097 bytes of metadata");
                assertEquals(commits.get(p0), c.committed(Set.of(p0), Duration.ofSeconds(WAIT)).get(p0),
                        "the refused commit changed nothing");

                Map<TopicPartition, OffsetAndMetadata> viaAdmin = admin.listConsumerGroupOffsets(
                                Map.of(group, new ListConsumerGroupOffsetsSpec().topicPartitions(List.of(p0, p1, p2, p3))))
                        .partitionsToOffsetAndMetadata(group).get(WAIT, TimeUnit.SECONDS);
                assertEquals(commits.get(p0), viaAdmin.get(p0));
                assertEquals(commits.get(p1), viaAdmin.get(p1));
                assertEquals(commits.get(p2), viaAdmin.get(p2));
                assertNull(viaAdmin.get(p3), "Admin: no offset for a partition never committed");
                assertFalse(IntStream.range(0, 3).mapToObj(i -> viaAdmin.get(new TopicPartition(topic, i))).anyMatch(o -> o == null));
                System.out.println("metadata round trip: " + viaAdmin.get(p0).metadata().length() + " chars UTF-8, empty, "
                        + viaAdmin.get(p2).metadata().length() + " bytes; 4097 bytes refused with "
                        + tooLarge.getClass().getSimpleName());
            }
        });
    }
}
