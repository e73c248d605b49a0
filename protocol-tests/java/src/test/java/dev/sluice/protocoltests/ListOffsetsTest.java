package dev.sluice.protocoltests;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

/** ListOffsets through Admin.listOffsets and KafkaConsumer.offsetsForTimes, with explicit record timestamps. */
@ExtendWith(SluiceExtension.class)
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class ListOffsetsTest {
    private static final long WAIT = 30;
    /** 2023-11-14T22:13:20Z; record i has timestamp BASE + 1000 * i. */
    private static final long BASE = 1_700_000_000_000L;

    /**
     * 20 records on one partition: the first 10 in one batch (so a lookup must look inside a batch),
     * the last 10 each in its own batch.
     */
    private static TopicPartition produceTimestamped(SluiceBroker broker, String topic) throws Exception {
        try (Admin admin = Clients.admin(broker)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(WAIT, TimeUnit.SECONDS);
        }
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(broker, Map.of(ProducerConfig.LINGER_MS_CONFIG, 200))) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < 10; i++) {
                fs.add(producer.send(new ProducerRecord<>(topic, 0, BASE + 1000L * i, null, ("v" + i).getBytes())));
            }
            producer.flush();
            for (int i = 10; i < 20; i++) {
                fs.add(producer.send(new ProducerRecord<>(topic, 0, BASE + 1000L * i, null, ("v" + i).getBytes())));
                producer.flush();
            }
            for (int i = 0; i < fs.size(); i++) {
                RecordMetadata m = fs.get(i).get(WAIT, TimeUnit.SECONDS);
                assertEquals(i, m.offset(), "offset of record " + i);
                assertEquals(BASE + 1000L * i, m.timestamp(), "timestamp of record " + i + " (CreateTime)");
            }
        }
        return new TopicPartition(topic, 0);
    }

    private static ListOffsetsResultInfo list(Admin admin, TopicPartition tp, OffsetSpec spec) throws Exception {
        return admin.listOffsets(Map.of(tp, spec)).partitionResult(tp).get(WAIT, TimeUnit.SECONDS);
    }

    @Test
    void earliestLatestAndForTimestamp(SluiceBroker broker) throws Exception {
        TopicPartition tp = produceTimestamped(broker, Clients.uniqueTopic("java-list-offsets"));
        try (Admin admin = Clients.admin(broker)) {
            assertEquals(0, list(admin, tp, OffsetSpec.earliest()).offset(), "earliest");
            assertEquals(20, list(admin, tp, OffsetSpec.latest()).offset(), "latest");

            // Exact hit inside the first batch, between two records, in the one-record batches.
            ListOffsetsResultInfo exact = list(admin, tp, OffsetSpec.forTimestamp(BASE + 3000));
            assertEquals(3, exact.offset(), "offset for an exact timestamp inside a batch");
            assertEquals(BASE + 3000, exact.timestamp(), "timestamp returned with it");
            ListOffsetsResultInfo between = list(admin, tp, OffsetSpec.forTimestamp(BASE + 4500));
            assertEquals(5, between.offset(), "first record at or after the timestamp");
            assertEquals(BASE + 5000, between.timestamp());
            ListOffsetsResultInfo later = list(admin, tp, OffsetSpec.forTimestamp(BASE + 14_200));
            assertEquals(15, later.offset(), "lookup among one-record batches");
            assertEquals(BASE + 15_000, later.timestamp());
            assertEquals(0, list(admin, tp, OffsetSpec.forTimestamp(BASE - 60_000)).offset(), "timestamp before all records");
            ListOffsetsResultInfo none = list(admin, tp, OffsetSpec.forTimestamp(BASE + 60_000));
            assertEquals(-1, none.offset(), "no record at or after the timestamp: offset -1");
        }
        try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker)) {
            Map<TopicPartition, OffsetAndTimestamp> r = consumer.offsetsForTimes(Map.of(tp, BASE + 7000), Clients.CLIENT_TIMEOUT);
            OffsetAndTimestamp at = r.get(tp);
            assertEquals(7, at == null ? null : at.offset(), "consumer.offsetsForTimes offset: " + at);
            assertEquals(BASE + 7000, at.timestamp(), "consumer.offsetsForTimes timestamp");
            Map<TopicPartition, OffsetAndTimestamp> none = consumer.offsetsForTimes(Map.of(tp, BASE + 60_000), Clients.CLIENT_TIMEOUT);
            assertEquals(null, none.get(tp), "consumer.offsetsForTimes past the last record");
            assertEquals(Map.of(tp, 0L), consumer.beginningOffsets(List.of(tp)));
            assertEquals(Map.of(tp, 20L), consumer.endOffsets(List.of(tp)));
        }
    }

    /** OffsetSpec.maxTimestamp (ListOffsets v7, KIP-734): the record with the largest timestamp. */
    @Test
    void maxTimestamp(SluiceBroker broker) throws Exception {
        String topic = Clients.uniqueTopic("java-max-ts");
        TopicPartition tp = produceTimestamped(broker, topic);
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(broker)) {
            // An older timestamp after the newest one: the max stays at offset 19.
            producer.send(new ProducerRecord<>(topic, 0, BASE, null, "late".getBytes())).get(WAIT, TimeUnit.SECONDS);
        }
        try (Admin admin = Clients.admin(broker)) {
            ListOffsetsResultInfo max = list(admin, tp, OffsetSpec.maxTimestamp());
            assertEquals(19, max.offset(), "offset of the record with the largest timestamp");
            assertEquals(BASE + 19_000, max.timestamp());
        }
    }
}
