package dev.sluice.protocoltests;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ch.qos.logback.classic.Level;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The Java producer with its default configuration (idempotent: InitProducerId, acks=all, up to 5
 * in-flight batches per partition, latest Produce version) and a group-less consumer (Fetch with
 * incremental fetch sessions): everything acknowledged comes back exactly once, in order.
 */
@ExtendWith(SluiceExtension.class)
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class ProduceConsumeTest {

    /** What was sent, and where the broker said it went. */
    record Sent(byte[] key, byte[] value, List<Header> headers, RecordMetadata meta) {}

    @Test
    void defaultProducerRoundTripOf20kRecordsOver6Partitions(SluiceBroker broker) throws Exception {
        String topic = Clients.uniqueTopic("java-roundtrip");
        int partitions = 6;
        int count = 20_000;
        try (Admin admin = Clients.admin(broker)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }

        List<Sent> sent = new ArrayList<>(count);
        double failedRecords;
        double retriedRecords;
        List<String> produceErrors;
        try (LogCapture senderWarnings = new LogCapture("org.apache.kafka.clients.producer.internals.Sender", Level.WARN);
             KafkaProducer<byte[], byte[]> producer = Clients.producer(broker)) {
            List<Future<RecordMetadata>> futures = new ArrayList<>(count);
            List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>(count);
            for (int i = 0; i < count; i++) {
                byte[] key = ("key-" + (i % 997)).getBytes(StandardCharsets.UTF_8);
                byte[] value = ("value-" + i + "-" + "x".repeat(i % 50)).getBytes(StandardCharsets.UTF_8);
                List<Header> headers = List.of(
                        new RecordHeader("seq", Integer.toString(i).getBytes(StandardCharsets.UTF_8)),
                        new RecordHeader("kind", (i % 2 == 0 ? "even" : "odd").getBytes(StandardCharsets.UTF_8)));
                ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, null, key, value, headers);
                records.add(r);
                futures.add(producer.send(r));
            }
            producer.flush();
            for (int i = 0; i < count; i++) {
                RecordMetadata meta;
                try {
                    meta = futures.get(i).get(60, TimeUnit.SECONDS);
                } catch (ExecutionException e) {
                    throw new AssertionError("send #" + i + " failed: " + e.getCause(), e.getCause());
                }
                ProducerRecord<byte[], byte[]> r = records.get(i);
                sent.add(new Sent(r.key(), r.value(), Arrays.asList(r.headers().toArray()), meta));
            }
            failedRecords = producerMetric(producer, "record-error-total");
            retriedRecords = producerMetric(producer, "record-retry-total");
            produceErrors = senderWarnings.matching("Got error produce response");
        }
        assertEquals(0.0, failedRecords, "records that failed");

        // Per partition, the offsets the broker acknowledged follow send order, densely from 0.
        Map<Integer, List<Sent>> byPartition = sent.stream()
                .collect(Collectors.groupingBy(s -> s.meta().partition()));
        assertEquals(partitions, byPartition.size(), "records should land on all " + partitions + " partitions");
        for (var e : byPartition.entrySet()) {
            List<Long> offsets = e.getValue().stream().map(s -> s.meta().offset()).toList();
            List<Long> expected = IntStream.range(0, offsets.size()).mapToObj(i -> (long) i).toList();
            assertEquals(expected, offsets, "acknowledged offsets of partition " + e.getKey() + " in send order");
        }

        List<TopicPartition> tps = IntStream.range(0, partitions).mapToObj(p -> new TopicPartition(topic, p)).toList();
        Map<TopicPartition, List<ConsumerRecord<byte[], byte[]>>> got;
        try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker)) {
            Map<TopicPartition, Long> end = consumer.endOffsets(tps);
            for (TopicPartition tp : tps) {
                assertEquals((long) byPartition.get(tp.partition()).size(), end.get(tp), "end offset of " + tp);
            }
            got = Clients.readToEnd(consumer, tps, Duration.ofSeconds(90));
        }
        int total = 0;
        for (TopicPartition tp : tps) {
            List<Sent> want = byPartition.get(tp.partition());
            List<ConsumerRecord<byte[], byte[]>> have = got.get(tp);
            assertEquals(want.size(), have.size(), "number of records read back from " + tp);
            for (int i = 0; i < want.size(); i++) {
                Sent s = want.get(i);
                ConsumerRecord<byte[], byte[]> r = have.get(i);
                String where = tp + " record #" + i;
                assertEquals(s.meta().offset(), r.offset(), where + " offset");
                assertArrayEquals(s.key(), r.key(), where + " key");
                assertArrayEquals(s.value(), r.value(), where + " value");
                assertEquals(s.meta().timestamp(), r.timestamp(), where + " timestamp");
                Header[] hs = r.headers().toArray();
                assertEquals(s.headers().size(), hs.length, where + " header count");
                for (int h = 0; h < hs.length; h++) {
                    assertEquals(s.headers().get(h).key(), hs[h].key(), where + " header key");
                    assertArrayEquals(s.headers().get(h).value(), hs[h].value(), where + " header value");
                }
            }
            total += have.size();
        }
        assertEquals(count, total);

        // Against a healthy single broker on loopback nothing is ever retried: a retry means the
        // broker answered a produce request with an error (the producer logs each as a WARN). Checked
        // last, so that a failure here means the data itself came back right.
        assertEquals(List.of(), produceErrors.stream().limit(5).toList(), "produce error responses ("
                + produceErrors.size() + " in all, " + retriedRecords + " records retried; first 5 shown)");
        assertEquals(0.0, retriedRecords, "records the producer had to retry");
    }

    static double producerMetric(KafkaProducer<?, ?> producer, String name) {
        return producer.metrics().entrySet().stream()
                .filter(e -> e.getKey().group().equals("producer-metrics") && e.getKey().name().equals(name))
                .mapToDouble(e -> ((Number) e.getValue().metricValue()).doubleValue())
                .findFirst()
                .orElseThrow(() -> new AssertionError("no producer metric " + name));
    }

    /**
     * Without idempotence, with up to 5 requests in flight on the connection and nothing failing,
     * a partition stores records in send order: Kafka handles one connection's requests one after
     * another. (Only a retry may reorder them, and there is none here.)
     */
    @Test
    void pipelinedNonIdempotentProducerKeepsSendOrder(SluiceBroker broker) throws Exception {
        String topic = Clients.uniqueTopic("java-pipelined-order");
        try (Admin admin = Clients.admin(broker)) {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }
        int count = 20_000;
        Map<String, Object> overrides = Map.of(
                "enable.idempotence", false,
                "acks", "1",
                "max.in.flight.requests.per.connection", 5,
                "batch.size", 2048,
                "retries", 0);
        List<Future<RecordMetadata>> futures = new ArrayList<>(count);
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(broker, overrides)) {
            for (int i = 0; i < count; i++) {
                byte[] v = ("r-" + i + "-" + "y".repeat(40)).getBytes(StandardCharsets.UTF_8);
                futures.add(producer.send(new ProducerRecord<>(topic, i % 2, null, v)));
            }
            producer.flush();
        }
        Map<Integer, List<Long>> offsets = new HashMap<>();
        for (int i = 0; i < count; i++) {
            RecordMetadata m = futures.get(i).get(30, TimeUnit.SECONDS);
            offsets.computeIfAbsent(m.partition(), k -> new ArrayList<>()).add(m.offset());
        }
        for (var e : offsets.entrySet()) {
            List<Long> got = e.getValue();
            int firstOutOfOrder = -1;
            for (int i = 0; i < got.size(); i++) {
                if (got.get(i) != i) {
                    firstOutOfOrder = i;
                    break;
                }
            }
            assertEquals(-1, firstOutOfOrder, "partition " + e.getKey() + ": the record sent #" + firstOutOfOrder
                    + " to it got offset " + (firstOutOfOrder < 0 ? 0 : got.get(firstOutOfOrder))
                    + " (records stored out of send order; requests of one connection handled concurrently?)");
        }
    }

    /**
     * A consumer polls while a producer writes small bursts to 3 partitions for a few seconds. The
     * Java consumer then fetches incrementally (KIP-227): a full fetch opens a session, later fetches
     * carry the session id and epoch and list only changed partitions. Seen through the client's
     * FetchSessionHandler log: the test requires incremental fetches to have been sent and answered,
     * and no session errors.
     */
    @Test
    void consumerKeepsUpWithBurstsThroughIncrementalFetchSessions(SluiceBroker broker) throws Exception {
        String topic = Clients.uniqueTopic("java-fetch-session");
        int partitions = 3;
        try (Admin admin = Clients.admin(broker)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }
        List<TopicPartition> tps = IntStream.range(0, partitions).mapToObj(p -> new TopicPartition(topic, p)).toList();

        Map<TopicPartition, List<String>> sentValues = new HashMap<>();
        Map<TopicPartition, List<Long>> sentOffsets = new HashMap<>();
        tps.forEach(tp -> {
            sentValues.put(tp, new ArrayList<>());
            sentOffsets.put(tp, new ArrayList<>());
        });
        Map<TopicPartition, List<ConsumerRecord<byte[], byte[]>>> got = new HashMap<>();
        tps.forEach(tp -> got.put(tp, new ArrayList<>()));

        try (LogCapture sessions = new LogCapture("org.apache.kafka.clients.FetchSessionHandler", Level.DEBUG);
             KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker);
             KafkaProducer<byte[], byte[]> producer = Clients.producer(broker)) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            consumer.poll(Duration.ofMillis(200)).forEach(r -> got.get(new TopicPartition(r.topic(), r.partition())).add(r));

            // Producer: 4 s of bursts, each burst 1..30 records to one or two partitions, then a pause.
            Thread producerThread = new Thread(() -> {
                long stop = System.nanoTime() + Duration.ofSeconds(4).toNanos();
                int n = 0;
                int burst = 0;
                while (System.nanoTime() < stop) {
                    List<Future<RecordMetadata>> fs = new ArrayList<>();
                    List<TopicPartition> targets = new ArrayList<>();
                    List<String> values = new ArrayList<>();
                    int size = 1 + (burst * 7) % 30;
                    for (int i = 0; i < size; i++) {
                        // Mostly one partition per burst, so some partitions are idle in a given fetch.
                        int p = (burst + (i % 5 == 4 ? 1 : 0)) % partitions;
                        String v = "m-" + n++;
                        fs.add(producer.send(new ProducerRecord<>(topic, p, null, v.getBytes(StandardCharsets.UTF_8))));
                        targets.add(new TopicPartition(topic, p));
                        values.add(v);
                    }
                    producer.flush();
                    for (int i = 0; i < fs.size(); i++) {
                        try {
                            RecordMetadata m = fs.get(i).get(30, TimeUnit.SECONDS);
                            synchronized (sentValues) {
                                sentValues.get(targets.get(i)).add(values.get(i));
                                sentOffsets.get(targets.get(i)).add(m.offset());
                            }
                        } catch (Exception e) {
                            throw new RuntimeException("send of " + values.get(i) + " failed", e);
                        }
                    }
                    burst++;
                    try {
                        Thread.sleep(20 + (burst % 4) * 40L);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            }, "burst-producer");
            List<Throwable> producerErrors = new ArrayList<>();
            producerThread.setUncaughtExceptionHandler((t, e) -> {
                synchronized (producerErrors) {
                    producerErrors.add(e);
                }
            });
            producerThread.start();

            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            while (producerThread.isAlive() && System.nanoTime() < deadline) {
                consumer.poll(Duration.ofMillis(100)).forEach(r -> got.get(new TopicPartition(r.topic(), r.partition())).add(r));
            }
            producerThread.join(30_000);
            synchronized (producerErrors) {
                if (!producerErrors.isEmpty()) {
                    throw new AssertionError("producer failed: " + producerErrors.get(0), producerErrors.get(0));
                }
            }
            Map<TopicPartition, Long> end = consumer.endOffsets(tps);
            while (!tps.stream().allMatch(tp -> consumer.position(tp) >= end.get(tp))) {
                assertTrue(System.nanoTime() < deadline, "consumer did not catch up: end " + end);
                consumer.poll(Duration.ofMillis(100)).forEach(r -> got.get(new TopicPartition(r.topic(), r.partition())).add(r));
            }
            // A few more polls with nothing new: no duplicates may show up.
            for (int i = 0; i < 5; i++) {
                consumer.poll(Duration.ofMillis(100)).forEach(r -> got.get(new TopicPartition(r.topic(), r.partition())).add(r));
            }

            int totalSent = 0;
            for (TopicPartition tp : tps) {
                List<String> want = sentValues.get(tp);
                List<String> have = got.get(tp).stream().map(r -> new String(r.value(), StandardCharsets.UTF_8)).toList();
                List<Long> haveOffsets = got.get(tp).stream().map(ConsumerRecord::offset).toList();
                assertEquals(want, have, "values read from " + tp + " (no loss, no duplicates, in order)");
                assertEquals(sentOffsets.get(tp), haveOffsets, "offsets read from " + tp);
                assertEquals(want.size(), end.get(tp), "end offset of " + tp);
                totalSent += want.size();
            }
            assertTrue(totalSent > 100, "the producer should have written a fair amount, wrote " + totalSent);

            long full = sessions.count("Built full fetch");
            long incremental = sessions.count("Built incremental fetch");
            long created = sessions.count("created a new incremental fetch session");
            long incrementalResponses = sessions.count("sent an incremental fetch response");
            List<String> errors = sessions.lines().stream()
                    .filter(l -> l.contains("error") || l.contains("unable to process") || l.contains("invalid"))
                    .toList();
            System.out.printf("fetch sessions: %d full fetches, %d incremental fetches, %d sessions created, "
                    + "%d incremental responses, %d records%n", full, incremental, created, incrementalResponses, totalSent);
            assertEquals(List.of(), errors, "FetchSessionHandler reported session errors");
            assertTrue(created >= 1, "no full fetch response created a fetch session (session id 0 every time?); "
                    + "first lines: " + sessions.lines().stream().limit(10).toList());
            assertTrue(incremental >= 10, "expected many incremental fetch requests, got " + incremental
                    + " (full: " + full + ")");
            assertTrue(incrementalResponses >= 10, "expected many incremental fetch responses, got " + incrementalResponses);
            assertTrue(incremental > full, "incremental fetches (" + incremental + ") should outnumber full ones (" + full + ")");
        }
    }
}
