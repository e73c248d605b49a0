package dev.sluice.protocoltests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

/** The Java Admin client: topics, partitions, configs, cluster description. */
@ExtendWith(SluiceExtension.class)
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class AdminTest {
    private static final long WAIT = 30;

    static TopicDescription describe(Admin admin, String topic) throws Exception {
        return admin.describeTopics(List.of(topic)).allTopicNames().get(WAIT, TimeUnit.SECONDS).get(topic);
    }

    static Config topicConfig(Admin admin, String topic) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        return admin.describeConfigs(List.of(r)).all().get(WAIT, TimeUnit.SECONDS).get(r);
    }

    static void assertPartitionsLedByThisBroker(TopicDescription d, int partitions, int nodeId) {
        assertEquals(partitions, d.partitions().size(), "partition count of " + d.name());
        for (int p = 0; p < partitions; p++) {
            TopicPartitionInfo info = d.partitions().get(p);
            assertEquals(p, info.partition(), "partitions are listed in order");
            assertNotNull(info.leader(), "partition " + p + " has a leader");
            assertEquals(nodeId, info.leader().id(), "leader of partition " + p);
            assertEquals(List.of(nodeId), info.replicas().stream().map(Node::id).toList(), "replicas of partition " + p);
            assertEquals(List.of(nodeId), info.isr().stream().map(Node::id).toList(), "ISR of partition " + p);
        }
    }

    @Test
    void topicLifecycleCreateDescribeAddPartitionsDelete(SluiceBroker broker) throws Exception {
        String topic = Clients.uniqueTopic("java-admin-lifecycle");
        try (Admin admin = Clients.admin(broker)) {
            NewTopic nt = new NewTopic(topic, 3, (short) 1).configs(Map.of("retention.ms", "3600000"));
            admin.createTopics(List.of(nt)).all().get(WAIT, TimeUnit.SECONDS);

            Set<String> names = admin.listTopics().names().get(WAIT, TimeUnit.SECONDS);
            assertTrue(names.contains(topic), "listTopics shows the new topic: " + names);

            TopicDescription d = describe(admin, topic);
            assertFalse(d.isInternal());
            assertNotNull(d.topicId(), "topic id");
            assertPartitionsLedByThisBroker(d, 3, broker.nodeId());

            admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get(WAIT, TimeUnit.SECONDS);
            Clients.waitUntil("5 partitions in describeTopics", Duration.ofSeconds(15), () -> {
                try {
                    return describe(admin, topic).partitions().size() == 5;
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            assertPartitionsLedByThisBroker(describe(admin, topic), 5, broker.nodeId());
            try (KafkaProducer<byte[], byte[]> producer = Clients.producer(broker)) {
                RecordMetadata m = producer.send(new ProducerRecord<>(topic, 4, null, "to-new-partition".getBytes()))
                        .get(WAIT, TimeUnit.SECONDS);
                assertEquals(4, m.partition());
                assertEquals(0, m.offset(), "first record of a new partition");
            }

            admin.deleteTopics(List.of(topic)).all().get(WAIT, TimeUnit.SECONDS);
            Clients.waitUntil("topic gone from listTopics", Duration.ofSeconds(15), () -> {
                try {
                    return !admin.listTopics().names().get(WAIT, TimeUnit.SECONDS).contains(topic);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
        }
    }

    @Test
    void createExistingTopicFailsWithTopicExists(SluiceBroker broker) throws Exception {
        String topic = Clients.uniqueTopic("java-admin-exists");
        try (Admin admin = Clients.admin(broker)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(WAIT, TimeUnit.SECONDS);
            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(WAIT, TimeUnit.SECONDS));
            assertInstanceOf(TopicExistsException.class, e.getCause(), "cause: " + e.getCause());
            assertEquals(1, describe(admin, topic).partitions().size(), "the existing topic is unchanged");
        }
    }

    @Test
    void describeAndIncrementallyAlterTopicConfigs(SluiceBroker broker) throws Exception {
        String topic = Clients.uniqueTopic("java-admin-configs");
        try (Admin admin = Clients.admin(broker)) {
            NewTopic nt = new NewTopic(topic, 1, (short) 1).configs(Map.of("retention.ms", "3600000"));
            admin.createTopics(List.of(nt)).all().get(WAIT, TimeUnit.SECONDS);

            Config c = topicConfig(admin, topic);
            ConfigEntry retention = c.get("retention.ms");
            assertNotNull(retention, "retention.ms is described; got " + names(c.entries()));
            assertEquals("3600000", retention.value());
            assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, retention.source(), "source of retention.ms");
            ConfigEntry cleanup = c.get("cleanup.policy");
            assertNotNull(cleanup, "cleanup.policy is described; got " + names(c.entries()));
            assertEquals("delete", cleanup.value());
            assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, cleanup.source(), "source of cleanup.policy");
            assertTrue(cleanup.isDefault(), "cleanup.policy isDefault");

            ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Map<ConfigResource, Collection<AlterConfigOp>> ops = Map.of(r, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("max.message.bytes", "500000"), AlterConfigOp.OpType.SET)));
            admin.incrementalAlterConfigs(ops).all().get(WAIT, TimeUnit.SECONDS);

            Config after = topicConfig(admin, topic);
            assertEquals("7200000", after.get("retention.ms").value(), "retention.ms after SET");
            assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, after.get("retention.ms").source());
            assertEquals("500000", after.get("max.message.bytes").value(), "max.message.bytes after SET");
            assertEquals("delete", after.get("cleanup.policy").value(), "untouched config keeps its value");

            // DELETE puts the default back.
            admin.incrementalAlterConfigs(Map.of(r, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE))))
                    .all().get(WAIT, TimeUnit.SECONDS);
            ConfigEntry reverted = topicConfig(admin, topic).get("retention.ms");
            assertEquals("604800000", reverted.value(), "retention.ms after DELETE (Kafka's default, 7 days)");
            assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, reverted.source(), "source after DELETE");
        }
    }

    @Test
    void describeClusterShowsOneNodeAndAClusterId(SluiceBroker broker) throws Exception {
        try (Admin admin = Clients.admin(broker)) {
            DescribeClusterResult dc = admin.describeCluster();
            Collection<Node> nodes = dc.nodes().get(WAIT, TimeUnit.SECONDS);
            String clusterId = dc.clusterId().get(WAIT, TimeUnit.SECONDS);
            Node controller = dc.controller().get(WAIT, TimeUnit.SECONDS);
            System.out.println("describeCluster: nodes " + nodes + ", cluster id " + clusterId + ", controller " + controller);
            assertEquals(1, nodes.size(), "nodes: " + nodes);
            Node node = nodes.iterator().next();
            assertEquals(broker.nodeId(), node.id());
            assertEquals("127.0.0.1:" + broker.bootstrap().split(":")[1], node.host() + ":" + node.port());
            assertNotNull(clusterId, "cluster id");
            assertFalse(clusterId.isBlank(), "cluster id");
        }
    }

    private static List<String> names(Collection<ConfigEntry> entries) {
        return entries.stream().map(ConfigEntry::name).sorted().toList();
    }
}
