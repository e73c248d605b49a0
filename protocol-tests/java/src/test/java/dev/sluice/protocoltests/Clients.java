package dev.sluice.protocoltests;

import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.function.Supplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/** Client factories and small helpers shared by the tests. Consumers never use a group. */
final class Clients {
    static final Duration CLIENT_TIMEOUT = Duration.ofSeconds(30);

    private Clients() {}

    static String uniqueTopic(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().replace("-", "").substring(0, 12);
    }

    static Admin admin(SluiceBroker broker) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) CLIENT_TIMEOUT.toMillis());
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        return Admin.create(p);
    }

    /** A producer with the Java client's defaults (idempotence on, acks=all) plus {@code overrides}. */
    static KafkaProducer<byte[], byte[]> producer(SluiceBroker broker, Map<String, Object> overrides) {
        Map<String, Object> p = new HashMap<>();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        p.putAll(overrides);
        return new KafkaProducer<>(p);
    }

    static KafkaProducer<byte[], byte[]> producer(SluiceBroker broker) {
        return producer(broker, Map.of());
    }

    /** A consumer without group.id: callers assign() partitions and seek. */
    static KafkaConsumer<byte[], byte[]> consumer(SluiceBroker broker, Map<String, Object> overrides) {
        Map<String, Object> p = new HashMap<>();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) CLIENT_TIMEOUT.toMillis());
        p.putAll(overrides);
        return new KafkaConsumer<>(p);
    }

    static KafkaConsumer<byte[], byte[]> consumer(SluiceBroker broker) {
        return consumer(broker, Map.of());
    }

    /**
     * Assigns {@code partitions}, seeks to the beginning, and polls until every partition's position
     * has reached its end offset (as ListOffsets reports it now). Fails after {@code timeout}.
     */
    static Map<TopicPartition, List<ConsumerRecord<byte[], byte[]>>> readToEnd(
            KafkaConsumer<byte[], byte[]> consumer, Collection<TopicPartition> partitions, Duration timeout) {
        consumer.assign(partitions);
        consumer.seekToBeginning(partitions);
        Map<TopicPartition, Long> end = consumer.endOffsets(partitions);
        Map<TopicPartition, List<ConsumerRecord<byte[], byte[]>>> got = new HashMap<>();
        partitions.forEach(tp -> got.put(tp, new ArrayList<>()));
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            boolean done = partitions.stream().allMatch(tp -> consumer.position(tp) >= end.get(tp));
            if (done) {
                return got;
            }
            if (System.nanoTime() > deadline) {
                Map<TopicPartition, Long> positions = new HashMap<>();
                partitions.forEach(tp -> positions.put(tp, consumer.position(tp)));
                fail("consumer did not reach the end offsets within " + timeout.toSeconds() + " s: end offsets "
                        + end + ", positions " + positions);
            }
            ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(200));
            records.forEach(r -> got.get(new TopicPartition(r.topic(), r.partition())).add(r));
        }
    }

    /** Calls {@code probe} until it returns true; fails with {@code what} after {@code timeout}. */
    static void waitUntil(String what, Duration timeout, Supplier<Boolean> probe) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!probe.get()) {
            if (System.nanoTime() > deadline) {
                fail("timed out after " + timeout.toSeconds() + " s waiting for " + what);
            }
            Thread.sleep(100);
        }
    }
}
