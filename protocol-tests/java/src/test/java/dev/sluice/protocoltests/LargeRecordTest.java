package dev.sluice.protocoltests;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

/** The topic's max.message.bytes is enforced by the broker, and a too-large record fails only itself. */
@ExtendWith(SluiceExtension.class)
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class LargeRecordTest {
    private static final long WAIT = 30;

    @Test
    void recordOverTopicMaxMessageBytesIsRejectedByTheBroker(SluiceBroker broker) throws Exception {
        String topic = Clients.uniqueTopic("java-large");
        try (Admin admin = Clients.admin(broker)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1)
                    .configs(Map.of("max.message.bytes", "100000")))).all().get(WAIT, TimeUnit.SECONDS);
        }
        byte[] ok = new byte[90 * 1024];
        Arrays.fill(ok, (byte) 'a');
        byte[] tooBig = new byte[200 * 1024];
        Arrays.fill(tooBig, (byte) 'b');
        // Raised so the client sends the 200 KB record instead of refusing it locally; default
        // settings otherwise (idempotent, acks=all, no compression).
        Map<String, Object> overrides = Map.of(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 1_048_576);
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(broker, overrides)) {
            RecordMetadata m = producer.send(new ProducerRecord<>(topic, 0, null, ok)).get(WAIT, TimeUnit.SECONDS);
            assertEquals(0, m.offset(), "the 90 KB record is stored");

            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> producer.send(new ProducerRecord<>(topic, 0, null, tooBig)).get(WAIT, TimeUnit.SECONDS),
                    "a 200 KB record on a topic with max.message.bytes=100000 must fail");
            assertInstanceOf(RecordTooLargeException.class, e.getCause(), "cause: " + e.getCause());

            // The producer stays usable: a small record after the rejected one is stored next.
            RecordMetadata after = producer.send(new ProducerRecord<>(topic, 0, null, "small".getBytes()))
                    .get(WAIT, TimeUnit.SECONDS);
            assertEquals(1, after.offset(), "the record after the rejected one");
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker)) {
            List<ConsumerRecord<byte[], byte[]>> got = Clients.readToEnd(consumer, List.of(tp), Duration.ofSeconds(30)).get(tp);
            assertEquals(2, got.size(), "the 90 KB record and the small one, nothing of the rejected one");
            assertArrayEquals(ok, got.get(0).value());
            assertArrayEquals("small".getBytes(), got.get(1).value());
        }
    }
}
