// The matrix's `java` client: the Apache Kafka Java client (KafkaProducer, KafkaConsumer with the
// classic group protocol, Admin). See ../../../../../../CONTRACT.md (protocol-tests/matrix).
package dev.sluice.matrix;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Comparator;
import java.util.Deque;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.ApiException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.internals.AppInfoParser;

public final class Main {
    static final String CLIENT = "java";
    static final List<String> SCENARIOS = List.of(
            "metadata", "topic_admin",
            "compression_none", "compression_gzip", "compression_snappy", "compression_lz4", "compression_zstd",
            "keyed_partitioning", "headers_nulls", "idempotent", "group_resume", "timestamp_offsets",
            "large_records");
    static final long TIMEOUT_S = 60;
    static final PrintStream OUT =
            new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);

    private Main() {}

    // ---- outcomes ----

    /** The scenario saw something other than what it expected. */
    static final class Failed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Failed(String message) {
            super(message);
        }
    }

    /** The library has no API for what the scenario needs. */
    static final class Unsupported extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Unsupported(String message) {
            super(message);
        }
    }

    static void check(boolean cond, String format, Object... args) {
        if (!cond) {
            throw new Failed(String.format(format, args));
        }
    }

    static void log(String msg) {
        System.err.println(msg);
        System.err.flush();
    }

    static synchronized void emit(Map<String, Object> obj) {
        OUT.print(json(obj));
        OUT.print('\n');
        OUT.flush();
    }

    /** Strips the wrappers (ExecutionException and the like) off a library error. */
    static Throwable unwrap(Throwable t) {
        Throwable c = t;
        while ((c instanceof ExecutionException || c instanceof java.util.concurrent.CompletionException
                || (c instanceof KafkaException && !(c instanceof ApiException))) && c.getCause() != null) {
            c = c.getCause();
        }
        return c;
    }

    /** Kafka's protocol name for the broker error inside a Java client error (its ApiException). */
    static String errName(Throwable t) {
        Throwable c = unwrap(t);
        if (c instanceof ApiException) {
            return Errors.forException(c).name();
        }
        return describe(c);
    }

    /** One line about an error: its Kafka name if it has one, its class and message. */
    static String describe(Throwable t) {
        Throwable c = unwrap(t);
        String what = c.getClass().getSimpleName() + ": " + c.getMessage();
        if (c instanceof ApiException) {
            return Errors.forException(c).name() + " (" + what + ")";
        }
        return what;
    }

    // ---- JSON (a small writer; stdout must stay plain ASCII JSON lines) ----

    static String json(Object v) {
        StringBuilder sb = new StringBuilder();
        writeJson(sb, v);
        return sb.toString();
    }

    static void writeJson(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof String s) {
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char ch = s.charAt(i);
                switch (ch) {
                    case '"' -> sb.append("\\\"");
                    case '\\' -> sb.append("\\\\");
                    case '\n' -> sb.append("\\n");
                    case '\r' -> sb.append("\\r");
                    case '\t' -> sb.append("\\t");
                    default -> {
                        if (ch < 0x20 || ch >= 0x7f) {
                            sb.append(String.format("\\u%04x", (int) ch));
                        } else {
                            sb.append(ch);
                        }
                    }
                }
            }
            sb.append('"');
        } else if (v instanceof Boolean || v instanceof Integer || v instanceof Long || v instanceof Short) {
            sb.append(v);
        } else if (v instanceof Double d) {
            sb.append(d.isNaN() || d.isInfinite() ? "null" : BigDecimal.valueOf(d).toPlainString());
        } else if (v instanceof Map<?, ?> m) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!first) {
                    sb.append(", ");
                }
                first = false;
                writeJson(sb, String.valueOf(e.getKey()));
                sb.append(": ");
                writeJson(sb, e.getValue());
            }
            sb.append('}');
        } else if (v instanceof Iterable<?> it) {
            sb.append('[');
            boolean first = true;
            for (Object o : it) {
                if (!first) {
                    sb.append(", ");
                }
                first = false;
                writeJson(sb, o);
            }
            sb.append(']');
        } else {
            throw new IllegalArgumentException("no JSON form for " + v.getClass());
        }
    }

    /** An ordered JSON object. */
    static Map<String, Object> obj(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    static byte[] bytes(String s) {
        return s == null ? null : s.getBytes(StandardCharsets.UTF_8);
    }

    /** A nullable byte string as a JSON value: null stays null. */
    static String str(byte[] b) {
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    // ---- the scenario context ----

    interface Scenario {
        Map<String, Object> run(Ctx ctx) throws Exception;
    }

    interface Probe {
        /** null when done, else what was seen (for the failure message). */
        String probe() throws Exception;
    }

    static final class Ctx {
        final String scenario;
        final String bootstrap;
        final String runId;
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_S);
        volatile String step = "start";
        private final Deque<AutoCloseable> open = new ArrayDeque<>();
        private final List<KafkaConsumer<?, ?>> consumers = new ArrayList<>();
        private final List<Runnable> aborts = new ArrayList<>();

        Ctx(String scenario, String bootstrap, String runId) {
            this.scenario = scenario;
            this.bootstrap = bootstrap;
            this.runId = runId;
        }

        /** {@code mx-java-<scenario>-<RID>}, with {@code -<n>} for the n-th one (n >= 2). */
        String topic(int n) {
            String base = "mx-" + CLIENT + "-" + scenario + "-" + runId;
            return n == 1 ? base : base + "-" + n;
        }

        String group(int n) {
            return topic(n);
        }

        void step(String what) {
            step = what;
            log("[" + CLIENT + " " + scenario + "] " + what);
        }

        /** Milliseconds left before the deadline (at least a little, for cleanup calls). */
        long remainingMs() {
            return Math.max(500, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime()));
        }

        boolean timeLeft(long ms) {
            return deadline - System.nanoTime() > TimeUnit.MILLISECONDS.toNanos(ms);
        }

        <T> T await(Future<T> f) throws ExecutionException, InterruptedException {
            try {
                return f.get(remainingMs(), TimeUnit.MILLISECONDS);
            } catch (TimeoutException e) {
                throw new Failed("timed out after " + TIMEOUT_S + " s in " + step);
            }
        }

        /** Calls probe every `everyMs` until it returns null; fails a little before the deadline. */
        void poll(String what, long everyMs, Probe probe) throws InterruptedException {
            step(what);
            String last;
            while (true) {
                try {
                    last = probe.probe();
                } catch (ExecutionException | ApiException e) {
                    last = describe(e);
                } catch (InterruptedException e) {
                    throw e;
                } catch (Failed e) {
                    last = e.getMessage();
                } catch (Exception e) {
                    last = describe(e);
                }
                if (last == null) {
                    return;
                }
                if (!timeLeft(everyMs + 1500)) {
                    throw new Failed("gave up waiting for " + what + ": " + last);
                }
                Thread.sleep(everyMs);
            }
        }

        private Properties base() {
            Properties p = new Properties();
            p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(CommonClientConfigs.CLIENT_ID_CONFIG, "mx-java-" + scenario);
            return p;
        }

        Admin admin() {
            Properties p = base();
            p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
            p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
            Admin a = Admin.create(p);
            synchronized (this) {
                open.push(() -> a.close(Duration.ofSeconds(5)));
                aborts.add(() -> a.close(Duration.ZERO));
            }
            return a;
        }

        KafkaProducer<byte[], byte[]> producer(Map<String, Object> extra) {
            Properties p = base();
            p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
            p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
            p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30000);
            p.putAll(extra);
            KafkaProducer<byte[], byte[]> pr =
                    new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
            synchronized (this) {
                open.push(() -> pr.close(Duration.ofSeconds(5)));
                aborts.add(() -> pr.close(Duration.ZERO));
            }
            return pr;
        }

        /** A consumer (classic group protocol when it has a group.id), reading from the beginning. */
        KafkaConsumer<byte[], byte[]> consumer(Map<String, Object> extra) {
            Properties p = base();
            p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
            p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 250);
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
            p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
            p.putAll(extra);
            KafkaConsumer<byte[], byte[]> c =
                    new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
            synchronized (this) {
                consumers.add(c);
                open.push(() -> close(c));
                aborts.add(c::wakeup);
            }
            return c;
        }

        /** Closes a consumer now (leaving its group); closing again later does nothing. */
        void close(KafkaConsumer<?, ?> c) {
            synchronized (this) {
                if (!consumers.remove(c)) {
                    return;
                }
            }
            c.close(CloseOptions.timeout(Duration.ofSeconds(10)));
        }

        /** Closes every client the scenario made (on the scenario's own thread). */
        void closeAll() {
            while (true) {
                AutoCloseable c;
                synchronized (this) {
                    c = open.poll();
                }
                if (c == null) {
                    return;
                }
                try {
                    c.close();
                } catch (Exception e) {
                    log("[" + CLIENT + " " + scenario + "] close: " + describe(e));
                }
            }
        }

        /** After a timeout (from another thread): wake the consumers, stop the other clients. */
        void abort(Thread worker) {
            List<Runnable> todo;
            synchronized (this) {
                todo = new ArrayList<>(aborts);
            }
            for (Runnable r : todo) {
                try {
                    r.run();
                } catch (Exception e) {
                    // best effort
                }
            }
            worker.interrupt();
        }
    }

    // ---- helpers ----

    static void createTopic(Ctx ctx, Admin admin, String topic, int partitions, Map<String, String> configs)
            throws Exception {
        ctx.step("create topic with " + partitions + " partitions");
        NewTopic nt = new NewTopic(topic, partitions, (short) 1);
        if (configs != null) {
            nt.configs(configs);
        }
        ctx.await(admin.createTopics(List.of(nt)).all());
        waitLeaders(ctx, admin, topic, partitions);
    }

    static TopicDescription describeTopic(Ctx ctx, Admin admin, String topic) throws Exception {
        return ctx.await(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
    }

    /** Waits until the topic's metadata shows n partitions, each with a leader. */
    static void waitLeaders(Ctx ctx, Admin admin, String topic, int n) throws Exception {
        ctx.poll("wait for partition leaders", 50, () -> {
            TopicDescription td = describeTopic(ctx, admin, topic);
            if (td.partitions().size() != n) {
                return td.partitions().size() + " partitions";
            }
            for (TopicPartitionInfo p : td.partitions()) {
                if (p.leader() == null || p.leader().isEmpty()) {
                    return "partition " + p.partition() + " has no leader";
                }
            }
            return null;
        });
    }

    /** Sends the records, waits for every ack and returns their metadata. */
    static List<RecordMetadata> produce(Ctx ctx, KafkaProducer<byte[], byte[]> producer,
            List<ProducerRecord<byte[], byte[]>> recs) throws Exception {
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        for (ProducerRecord<byte[], byte[]> r : recs) {
            sent.add(producer.send(r));
        }
        List<RecordMetadata> out = new ArrayList<>();
        for (int i = 0; i < sent.size(); i++) {
            try {
                out.add(ctx.await(sent.get(i)));
            } catch (ExecutionException e) {
                throw new Failed("produce of record " + i + " failed: " + describe(e));
            }
        }
        return out;
    }

    static void checkAckedOffsets(List<RecordMetadata> acked, int n) {
        check(acked.size() == n, "%d records acknowledged, expected %d", acked.size(), n);
        for (int i = 0; i < n; i++) {
            check(acked.get(i).offset() == i, "record %d acknowledged at offset %d, expected %d",
                    i, acked.get(i).offset(), i);
        }
    }

    /** Polls the consumer until it has read `count` records (or the time is nearly up). */
    static List<ConsumerRecord<byte[], byte[]>> pollFor(Ctx ctx, KafkaConsumer<byte[], byte[]> c, int count) {
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        while (out.size() < count && ctx.timeLeft(1500)) {
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                out.add(r);
            }
        }
        return out;
    }

    /** Reads exactly `count` records of one partition from its beginning (no group). */
    static List<ConsumerRecord<byte[], byte[]>> readPartition(Ctx ctx, String topic, int partition, int count) {
        KafkaConsumer<byte[], byte[]> c = ctx.consumer(Map.of());
        TopicPartition tp = new TopicPartition(topic, partition);
        c.assign(List.of(tp));
        c.seekToBeginning(List.of(tp));
        List<ConsumerRecord<byte[], byte[]>> out = pollFor(ctx, c, count);
        ctx.close(c);
        check(out.size() == count, "read %d records of %s[%d], expected %d", out.size(), topic, partition, count);
        return out;
    }

    interface Want {
        String at(int i);
    }

    /** read is exactly n records at offsets 0..n-1 with key wantKey(i) (null: a null key) and value wantValue(i). */
    static void checkSequence(List<ConsumerRecord<byte[], byte[]>> read, int n, Want wantKey, Want wantValue) {
        check(read.size() == n, "read %d records, expected %d", read.size(), n);
        for (int i = 0; i < n; i++) {
            ConsumerRecord<byte[], byte[]> r = read.get(i);
            check(r.offset() == i, "record %d is at offset %d, expected %d", i, r.offset(), i);
            check(Arrays.equals(r.key(), bytes(wantKey.at(i))), "record at offset %d has key %s, expected %s",
                    r.offset(), str(r.key()), wantKey.at(i));
            check(Arrays.equals(r.value(), bytes(wantValue.at(i))), "record at offset %d has value %s, expected %s",
                    r.offset(), abbrev(str(r.value())), wantValue.at(i));
        }
    }

    static String abbrev(String s) {
        return s == null || s.length() <= 40 ? s : s.substring(0, 40) + "...";
    }

    // ---- scenarios ----

    static Map<String, Object> metadata(Ctx ctx) throws Exception {
        Admin admin = ctx.admin();
        String topic = ctx.topic(1);
        createTopic(ctx, admin, topic, 3, null);

        ctx.step("describe cluster");
        DescribeClusterResult dc = admin.describeCluster();
        Collection<Node> nodes = ctx.await(dc.nodes());
        Node controller = ctx.await(dc.controller());
        int colon = ctx.bootstrap.lastIndexOf(':');
        String host = ctx.bootstrap.substring(0, colon);
        int port = Integer.parseInt(ctx.bootstrap.substring(colon + 1));
        Set<Integer> listed = new HashSet<>();
        boolean atBootstrap = false;
        for (Node n : nodes) {
            listed.add(n.id());
            atBootstrap |= n.host().equals(host) && n.port() == port;
        }
        check(!nodes.isEmpty(), "no brokers listed");
        check(atBootstrap, "no broker at %s: %s", ctx.bootstrap, nodes);

        ctx.step("describe topic");
        TopicDescription td = describeTopic(ctx, admin, topic);
        check(td.partitions().size() == 3, "%d partitions, expected 3", td.partitions().size());
        List<Integer> replicas = new ArrayList<>();
        List<TopicPartitionInfo> parts = new ArrayList<>(td.partitions());
        parts.sort(Comparator.comparingInt(TopicPartitionInfo::partition));
        for (TopicPartitionInfo p : parts) {
            check(p.leader() != null && listed.contains(p.leader().id()),
                    "partition %d leader %s is not a listed broker", p.partition(), p.leader());
            check(p.replicas().size() == 1, "partition %d has replicas %s, expected 1", p.partition(), p.replicas());
            replicas.add(p.replicas().size());
        }
        Boolean controllerListed = null; // null when the broker names no controller
        if (controller != null && !controller.isEmpty() && controller.id() >= 0) {
            controllerListed = listed.contains(controller.id());
            check(controllerListed, "controller %s is not a listed broker", controller);
        }
        return obj("brokers", nodes.size(), "partitions", td.partitions().size(), "replicas", replicas,
                "controller_listed", controllerListed);
    }

    static Map<String, ConfigEntry> topicConfigs(Ctx ctx, Admin admin, String topic) throws Exception {
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config cfg = ctx.await(admin.describeConfigs(List.of(res)).all()).get(res);
        check(cfg != null, "no configs described for the topic");
        Map<String, ConfigEntry> out = new HashMap<>();
        for (ConfigEntry e : cfg.entries()) {
            out.put(e.name(), e);
        }
        check(out.get("retention.ms") != null && out.get("retention.ms").value() != null
                && out.get("cleanup.policy") != null && out.get("cleanup.policy").value() != null,
                "retention.ms or cleanup.policy missing from the described configs");
        return out;
    }

    static Map<String, Object> topicAdmin(Ctx ctx) throws Exception {
        Admin admin = ctx.admin();
        String topic = ctx.topic(1);
        Map<String, Object> obs = obj();
        createTopic(ctx, admin, topic, 3, Map.of("retention.ms", "3600000"));

        ctx.step("describe topic");
        int partitions = describeTopic(ctx, admin, topic).partitions().size();
        obs.put("partitions", partitions);
        check(partitions == 3, "describe: %d partitions, expected 3", partitions);

        ctx.step("describe configs");
        Map<String, ConfigEntry> cfg = topicConfigs(ctx, admin, topic);
        ConfigEntry retention = cfg.get("retention.ms");
        ConfigEntry cleanup = cfg.get("cleanup.policy");
        obs.put("retention_ms", retention.value());
        obs.put("cleanup_policy", cleanup.value());
        check(retention.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                "retention.ms source %s, expected a topic override", retention.source());
        check(cleanup.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                "cleanup.policy source %s, expected a default", cleanup.source());
        check("3600000".equals(retention.value()), "retention.ms %s, expected 3600000", retention.value());
        check("delete".equals(cleanup.value()), "cleanup.policy %s, expected delete", cleanup.value());

        ctx.step("incremental alter configs");
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        ctx.await(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET)))).all());
        // Kafka applies an acknowledged config change to its brokers asynchronously: poll.
        String[] altered = {null};
        ctx.poll("read back retention.ms", 50, () -> {
            altered[0] = topicConfigs(ctx, admin, topic).get("retention.ms").value();
            return "7200000".equals(altered[0]) ? null : "retention.ms " + altered[0];
        });
        obs.put("retention_ms_altered", altered[0]);

        ctx.step("create partitions");
        ctx.await(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(4))).all());
        waitLeaders(ctx, admin, topic, 4);
        int after = describeTopic(ctx, admin, topic).partitions().size();
        obs.put("partitions_after_create_partitions", after);
        check(after == 4, "%d partitions after create partitions, expected 4", after);

        ctx.step("create again");
        String again;
        try {
            ctx.await(admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all());
            again = "no error";
        } catch (ExecutionException e) {
            again = errName(e);
        }
        obs.put("create_again", again);
        check("TOPIC_ALREADY_EXISTS".equals(again), "create again: %s", again);

        ctx.step("delete topic");
        ctx.await(admin.deleteTopics(List.of(topic)).all());
        ctx.poll("deleted topic gone from metadata", 100, () ->
                ctx.await(admin.listTopics().names()).contains(topic) ? "still listed" : null);

        ctx.step("delete unknown topic");
        String unknown;
        try {
            ctx.await(admin.deleteTopics(List.of(topic + "-never")).all());
            unknown = "no error";
        } catch (ExecutionException e) {
            unknown = errName(e);
        }
        obs.put("delete_unknown", unknown);
        check("UNKNOWN_TOPIC_OR_PARTITION".equals(unknown), "delete unknown: %s", unknown);
        return obs;
    }

    static Scenario compression(String codec) {
        return ctx -> {
            String topic = ctx.topic(1);
            createTopic(ctx, ctx.admin(), topic, 1, null);
            ctx.step("produce with " + codec);
            KafkaProducer<byte[], byte[]> producer = ctx.producer(Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec));
            List<ProducerRecord<byte[], byte[]>> recs = new ArrayList<>();
            for (int i = 0; i < 100; i++) {
                recs.add(new ProducerRecord<>(topic, bytes("k-" + i), bytes("v-" + i)));
            }
            checkAckedOffsets(produce(ctx, producer, recs), 100);
            ctx.step("consume");
            List<ConsumerRecord<byte[], byte[]>> read = readPartition(ctx, topic, 0, 100);
            checkSequence(read, 100, i -> "k-" + i, i -> "v-" + i);
            return obj("records", read.size(), "offsets", List.of(read.get(0).offset(), read.get(99).offset()));
        };
    }

    static Map<String, Object> keyedPartitioning(Ctx ctx) throws Exception {
        String topic = ctx.topic(1);
        createTopic(ctx, ctx.admin(), topic, 6, null);
        KafkaProducer<byte[], byte[]> producer = ctx.producer(Map.of()); // the default partitioner
        List<Map<String, Integer>> rounds = new ArrayList<>();
        for (int round = 1; round <= 2; round++) {
            ctx.step("produce round " + round);
            List<ProducerRecord<byte[], byte[]>> recs = new ArrayList<>();
            for (int i = 0; i < 60; i++) {
                recs.add(new ProducerRecord<>(topic, bytes("key-" + i), bytes("r" + round + "-key-" + i)));
            }
            List<RecordMetadata> acks = produce(ctx, producer, recs);
            Map<String, Integer> partitionOf = new HashMap<>();
            for (int i = 0; i < 60; i++) {
                partitionOf.put("key-" + i, acks.get(i).partition());
            }
            rounds.add(partitionOf);
        }
        Map<String, Object> partitionOf = new TreeMap<>(Comparator.comparingInt((String k) ->
                Integer.parseInt(k.substring(4))));
        for (int i = 0; i < 60; i++) {
            String k = "key-" + i;
            int p1 = rounds.get(0).get(k);
            int p2 = rounds.get(1).get(k);
            check(p1 == p2, "%s went to partition %d, then to %d", k, p1, p2);
            partitionOf.put(k, p1);
        }

        ctx.step("read every partition");
        KafkaConsumer<byte[], byte[]> c = ctx.consumer(Map.of());
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < 6; p++) {
            tps.add(new TopicPartition(topic, p));
        }
        c.assign(tps);
        c.seekToBeginning(tps);
        List<ConsumerRecord<byte[], byte[]>> read = pollFor(ctx, c, 120);
        long total = 0;
        for (long end : c.endOffsets(tps, Duration.ofMillis(ctx.remainingMs())).values()) {
            total += end;
        }
        ctx.close(c);
        check(read.size() == 120, "read %d records in all partitions, expected 120", read.size());
        check(total == 120, "the partitions' end offsets add up to %d, expected 120", total);
        Map<String, List<Integer>> found = new HashMap<>();
        for (ConsumerRecord<byte[], byte[]> r : read) {
            found.computeIfAbsent(str(r.key()), k -> new ArrayList<>()).add(r.partition());
        }
        for (int i = 0; i < 60; i++) {
            String k = "key-" + i;
            List<Integer> f = found.getOrDefault(k, List.of());
            Object p = partitionOf.get(k);
            check(f.size() == 2 && f.get(0).equals(p) && f.get(1).equals(p), "%s reported in partition %s, found in %s",
                    k, p, f);
        }
        return obj("records", read.size(), "partition_of", partitionOf);
    }

    /** One record of headers_nulls: key, value, headers (name, value) in order; nulls stay null. */
    record Sent(String key, String value, List<String[]> headers) {
        Object json() {
            List<Object> hs = new ArrayList<>();
            for (String[] h : headers) {
                hs.add(Arrays.asList(h[0], h[1]));
            }
            return Arrays.asList(key, value, hs);
        }
    }

    static Object recordJson(ConsumerRecord<byte[], byte[]> r) {
        List<Object> hs = new ArrayList<>();
        for (Header h : r.headers()) {
            hs.add(Arrays.asList(h.key(), str(h.value())));
        }
        return Arrays.asList(str(r.key()), str(r.value()), hs);
    }

    static Map<String, Object> headersNulls(Ctx ctx) throws Exception {
        String topic = ctx.topic(1);
        createTopic(ctx, ctx.admin(), topic, 1, null);
        // RecordHeader's value may be null: the Java client sends it as a null header value.
        List<Sent> sent = List.of(
                new Sent(null, "v1", List.of()),
                new Sent("k2", null, List.of()),
                new Sent("k3", "", List.of()),
                new Sent("k4", "v4", List.of(new String[] {"h1", "a"}, new String[] {"h1", "b"},
                        new String[] {"empty", ""})),
                new Sent("k5", "v5", List.<String[]>of(new String[] {"n", null})));
        ctx.step("produce");
        List<ProducerRecord<byte[], byte[]>> recs = new ArrayList<>();
        for (Sent s : sent) {
            List<Header> headers = new ArrayList<>();
            for (String[] h : s.headers()) {
                headers.add(new RecordHeader(h[0], bytes(h[1])));
            }
            recs.add(new ProducerRecord<>(topic, null, bytes(s.key()), bytes(s.value()), headers));
        }
        produce(ctx, ctx.producer(Map.of()), recs);
        ctx.step("consume");
        List<ConsumerRecord<byte[], byte[]>> got = readPartition(ctx, topic, 0, sent.size());
        List<Object> gotJson = new ArrayList<>();
        List<Object> sentJson = new ArrayList<>();
        for (ConsumerRecord<byte[], byte[]> r : got) {
            gotJson.add(recordJson(r));
        }
        for (Sent s : sent) {
            sentJson.add(s.json());
        }
        // Equal JSON forms: null and empty differ, header order and repeats count.
        check(gotJson.equals(sentJson), "read back %s, sent %s", json(gotJson), json(sentJson));
        return obj("records", gotJson);
    }

    static Map<String, Object> idempotent(Ctx ctx) throws Exception {
        String topic = ctx.topic(1);
        createTopic(ctx, ctx.admin(), topic, 1, null);
        ctx.step("idempotent produce");
        KafkaProducer<byte[], byte[]> producer = ctx.producer(Map.of(
                ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true, ProducerConfig.ACKS_CONFIG, "all"));
        List<ProducerRecord<byte[], byte[]>> recs = new ArrayList<>();
        for (int i = 0; i < 200; i++) {
            recs.add(new ProducerRecord<>(topic, null, bytes("i-" + i)));
        }
        checkAckedOffsets(produce(ctx, producer, recs), 200);
        ctx.step("consume");
        List<ConsumerRecord<byte[], byte[]>> read = readPartition(ctx, topic, 0, 200);
        checkSequence(read, 200, i -> null, i -> "i-" + i);
        return obj("records", read.size(), "offsets", List.of(read.get(0).offset(), read.get(199).offset()));
    }

    static Map<String, Object> groupResume(Ctx ctx) throws Exception {
        String topic = ctx.topic(1);
        String group = ctx.group(1);
        Admin admin = ctx.admin();
        createTopic(ctx, admin, topic, 3, null);
        KafkaProducer<byte[], byte[]> producer = ctx.producer(Map.of());
        ctx.step("produce 30");
        List<ProducerRecord<byte[], byte[]>> first = new ArrayList<>();
        for (int i = 0; i < 30; i++) {
            first.add(new ProducerRecord<>(topic, i % 3, null, bytes("a-" + i)));
        }
        produce(ctx, producer, first);
        Map<String, Object> groupConf = Map.of(ConsumerConfig.GROUP_ID_CONFIG, group);

        ctx.step("consumer A");
        KafkaConsumer<byte[], byte[]> a = ctx.consumer(groupConf);
        a.subscribe(List.of(topic));
        List<ConsumerRecord<byte[], byte[]>> readA = pollFor(ctx, a, 30);
        check(readA.size() == 30, "consumer A read %d records, expected 30", readA.size());
        ctx.step("consumer A commit");
        a.commitSync(Duration.ofMillis(ctx.remainingMs()));
        ctx.step("consumer A close");
        ctx.close(a); // leaves the group

        ctx.step("produce 10 more");
        List<ProducerRecord<byte[], byte[]>> more = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            more.add(new ProducerRecord<>(topic, i % 3, null, bytes("b-" + i)));
        }
        produce(ctx, producer, more);

        ctx.step("consumer B");
        KafkaConsumer<byte[], byte[]> b = ctx.consumer(groupConf);
        b.subscribe(List.of(topic));
        List<ConsumerRecord<byte[], byte[]>> readB = pollFor(ctx, b, 10);
        TreeSet<String> values = new TreeSet<>();
        for (ConsumerRecord<byte[], byte[]> r : readB) {
            values.add(str(r.value()));
        }
        TreeSet<String> want = new TreeSet<>();
        for (int i = 0; i < 10; i++) {
            want.add("b-" + i);
        }
        check(readB.size() == 10 && values.equals(want), "consumer B read %d records %s, expected %s",
                readB.size(), values, want);
        ctx.step("consumer B commit");
        b.commitSync(Duration.ofMillis(ctx.remainingMs()));
        ctx.step("consumer B close");
        ctx.close(b);

        ctx.step("fetch committed offsets");
        Map<TopicPartition, OffsetAndMetadata> offsets =
                ctx.await(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        List<Long> committed = new ArrayList<>();
        for (int p = 0; p < 3; p++) {
            OffsetAndMetadata o = offsets.get(new TopicPartition(topic, p));
            check(o != null, "no committed offset for partition %d", p);
            committed.add(o.offset());
        }
        check(committed.equals(List.of(14L, 13L, 13L)), "committed %s, expected [14, 13, 13]", committed);
        return obj("first", readA.size(), "second", readB.size(), "committed", committed);
    }

    static Map<String, Object> timestampOffsets(Ctx ctx) throws Exception {
        String topic = ctx.topic(1);
        Admin admin = ctx.admin();
        createTopic(ctx, admin, topic, 1, null);
        long t0 = (System.currentTimeMillis() / 1000 - 60) * 1000;
        ctx.step("produce with timestamps");
        List<ProducerRecord<byte[], byte[]>> recs = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            recs.add(new ProducerRecord<>(topic, 0, t0 + 1000L * i, null, bytes("t-" + i)));
        }
        produce(ctx, ctx.producer(Map.of()), recs);

        ctx.step("list offsets");
        TopicPartition tp = new TopicPartition(topic, 0);
        Map<String, Object> obs = obj();
        Map<String, OffsetSpec> specs = new LinkedHashMap<>();
        specs.put("earliest", OffsetSpec.earliest());
        specs.put("latest", OffsetSpec.latest());
        specs.put("t0+500", OffsetSpec.forTimestamp(t0 + 500));
        specs.put("t0+2000", OffsetSpec.forTimestamp(t0 + 2000));
        specs.put("after_last", OffsetSpec.forTimestamp(t0 + 10000));
        for (Map.Entry<String, OffsetSpec> e : specs.entrySet()) {
            ctx.step("list offsets " + e.getKey());
            long offset = ctx.await(admin.listOffsets(Map.of(tp, e.getValue())).partitionResult(tp)).offset();
            obs.put(e.getKey(), offset < 0 ? -1L : offset); // -1: no record at or after that time
        }
        Map<String, Object> want = obj("earliest", 0L, "latest", 3L, "t0+500", 1L, "t0+2000", 2L, "after_last", -1L);
        check(obs.equals(want), "saw %s, expected %s", json(obs), json(want));
        return obs;
    }

    static Map<String, Object> largeRecords(Ctx ctx) throws Exception {
        String topic = ctx.topic(1);
        createTopic(ctx, ctx.admin(), topic, 1, Map.of("max.message.bytes", "200000"));
        // Client-side limits raised so that the broker decides; no compression; no retries (which
        // the idempotent producer requires, so it is off here).
        KafkaProducer<byte[], byte[]> producer = ctx.producer(Map.of(
                ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 1048576,
                ProducerConfig.COMPRESSION_TYPE_CONFIG, "none",
                ProducerConfig.RETRIES_CONFIG, 0,
                ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false,
                ProducerConfig.ACKS_CONFIG, "all"));
        Map<String, Object> obs = obj();
        byte[] near = new byte[190000];
        for (int i = 0; i < near.length; i++) {
            near[i] = (byte) ((i * 7) % 251);
        }
        ctx.step("produce 190000 bytes");
        String nearResult = send(ctx, producer, topic, near);
        obs.put("near_limit", nearResult);
        check("ok".equals(nearResult), "190000-byte record refused: %s", nearResult);
        ctx.step("produce 210000 bytes");
        String over = send(ctx, producer, topic, new byte[210000]);
        obs.put("over_limit", over);
        check("MESSAGE_TOO_LARGE".equals(over), "210000-byte record: %s", over);
        ctx.step("produce after");
        String after = send(ctx, producer, topic, bytes("small"));
        obs.put("after", after);
        check("ok".equals(after), "small record after the refusal: %s", after);
        ctx.step("read back");
        List<ConsumerRecord<byte[], byte[]>> read = readPartition(ctx, topic, 0, 2);
        check(Arrays.equals(read.get(0).value(), near), "190000-byte value read back differs (%d bytes)",
                read.get(0).value() == null ? -1 : read.get(0).value().length);
        check(Arrays.equals(read.get(1).value(), bytes("small")), "small value read back as %s",
                abbrev(str(read.get(1).value())));
        return obs;
    }

    /** "ok" when the record was acknowledged, else the error's Kafka name. */
    static String send(Ctx ctx, KafkaProducer<byte[], byte[]> producer, String topic, byte[] value)
            throws InterruptedException {
        try {
            ctx.await(producer.send(new ProducerRecord<>(topic, null, value)));
            return "ok";
        } catch (ExecutionException | KafkaException e) {
            return errName(e);
        }
    }

    // ---- running the scenarios ----

    static Map<String, Scenario> table() {
        Map<String, Scenario> t = new HashMap<>();
        t.put("metadata", Main::metadata);
        t.put("topic_admin", Main::topicAdmin);
        for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
            t.put("compression_" + codec, compression(codec));
        }
        t.put("keyed_partitioning", Main::keyedPartitioning);
        t.put("headers_nulls", Main::headersNulls);
        t.put("idempotent", Main::idempotent);
        t.put("group_resume", Main::groupResume);
        t.put("timestamp_offsets", Main::timestampOffsets);
        t.put("large_records", Main::largeRecords);
        return t;
    }

    static void runScenarios(String version, String bootstrap, String runId, List<String> names)
            throws InterruptedException {
        Map<String, Scenario> table = table();
        for (String name : names) {
            Ctx ctx = new Ctx(name, bootstrap, runId);
            long started = System.nanoTime();
            CompletableFuture<Map<String, Object>> done = new CompletableFuture<>();
            Thread worker = new Thread(() -> {
                Map<String, Object> out = obj("status", "fail", "reason", "", "observed", obj());
                try {
                    Scenario s = table.get(name);
                    if (s == null) {
                        throw new Failed("no such scenario in this program: " + name);
                    }
                    out.put("observed", Objects.requireNonNullElse(s.run(ctx), obj()));
                    out.put("status", "pass");
                } catch (Unsupported e) {
                    out.put("status", "unsupported");
                    out.put("reason", e.getMessage());
                } catch (Failed e) {
                    out.put("reason", e.getMessage() + " (step: " + ctx.step + ")");
                } catch (Throwable e) { // a library error is a failure of the scenario, with its message
                    out.put("reason", describe(e) + " (step: " + ctx.step + ")");
                } finally {
                    ctx.closeAll();
                    done.complete(out);
                }
            }, "scenario-" + name);
            worker.setDaemon(true);
            worker.start();
            Map<String, Object> out;
            try {
                out = done.get(TIMEOUT_S, TimeUnit.SECONDS);
            } catch (TimeoutException e) {
                String step = ctx.step;
                ctx.abort(worker);
                out = obj("status", "fail", "reason", "timed out after " + TIMEOUT_S + " s in " + step,
                        "observed", obj());
                worker.join(5000); // let it close its clients before the next scenario starts
            } catch (ExecutionException e) {
                out = obj("status", "fail", "reason", describe(e), "observed", obj());
            }
            String reason = String.join(" ", String.valueOf(out.get("reason")).trim().split("\\s+"));
            if (reason.length() > 1000) {
                reason = reason.substring(0, 1000);
            }
            double seconds = Math.round((System.nanoTime() - started) / 1e6) / 1000.0;
            emit(obj("client", CLIENT, "version", version, "scenario", name, "status", out.get("status"),
                    "reason", reason, "seconds", seconds, "observed", out.get("observed")));
        }
    }

    // ---- member ----

    /** One consumer-group member (roundrobin) for the runner's mixed_group scenario. */
    static void member(String bootstrap, String group, String topic) {
        AtomicBoolean stdinClosed = new AtomicBoolean(false);
        Thread watcher = new Thread(() -> {
            byte[] buf = new byte[4096];
            try {
                while (System.in.read(buf) >= 0) {
                    // the runner sends nothing; EOF is the signal to leave
                }
            } catch (IOException e) {
                // treat as closed
            }
            stdinClosed.set(true);
        }, "stdin-watcher");
        watcher.setDaemon(true);
        watcher.start();

        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(CommonClientConfigs.CLIENT_ID_CONFIG, "mx-java-member");
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RoundRobinAssignor.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 250);
        KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
        TreeSet<Integer> assigned = new TreeSet<>();
        List<Integer> last = new ArrayList<>();
        Runnable report = () -> {
            List<Integer> now = new ArrayList<>(assigned);
            last.clear();
            last.addAll(now);
            emit(obj("event", "assigned", "partitions", now));
        };
        consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                assigned.clear(); // the whole current set (eager and cooperative alike)
                for (TopicPartition tp : consumer.assignment()) {
                    if (tp.topic().equals(topic)) {
                        assigned.add(tp.partition());
                    }
                }
                report.run(); // every completed assignment, even when nothing changed
            }

            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                drop(partitions);
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> partitions) {
                drop(partitions);
            }

            private void drop(Collection<TopicPartition> partitions) {
                for (TopicPartition tp : partitions) {
                    if (tp.topic().equals(topic)) {
                        assigned.remove(tp.partition());
                    }
                }
                if (!last.equals(new ArrayList<>(assigned))) {
                    report.run();
                }
            }
        });
        while (!stdinClosed.get()) {
            ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(200));
            if (recs.isEmpty()) {
                continue;
            }
            try {
                consumer.commitSync(Duration.ofSeconds(10));
            } catch (KafkaException e) {
                log("member: commit failed: " + describe(e)); // the records are printed anyway
            }
            for (ConsumerRecord<byte[], byte[]> r : recs) {
                emit(obj("event", "record", "partition", r.partition(), "offset", r.offset(),
                        "value", str(r.value())));
            }
        }
        consumer.close(CloseOptions.timeout(Duration.ofSeconds(20))); // leaves the group
        emit(obj("event", "closed"));
    }

    // ---- command line ----

    static void usage(String msg) {
        log("java matrix client: " + msg);
        log("usage: scenarios --bootstrap HOST:PORT --run-id RID [--only NAME,NAME...]");
        log("       member --bootstrap HOST:PORT --group G --topic T");
        System.exit(2);
    }

    public static void main(String[] args) {
        if (args.length == 0) {
            usage("no sub-command");
        }
        Map<String, String> opts = new HashMap<>();
        for (int i = 1; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                usage("bad argument " + args[i]);
            }
            opts.put(args[i].substring(2), args[++i]);
        }
        int code = 0;
        try {
            switch (args[0]) {
                case "scenarios" -> {
                    String bootstrap = opts.get("bootstrap");
                    String runId = opts.get("run-id");
                    if (bootstrap == null || runId == null) {
                        usage("scenarios needs --bootstrap and --run-id");
                    }
                    List<String> names = SCENARIOS;
                    String only = opts.getOrDefault("only", "");
                    if (!only.isEmpty()) {
                        names = List.of(only.split(","));
                    }
                    runScenarios(AppInfoParser.getVersion(), bootstrap, runId, names);
                }
                case "member" -> {
                    if (opts.get("bootstrap") == null || opts.get("group") == null || opts.get("topic") == null) {
                        usage("member needs --bootstrap, --group and --topic");
                    }
                    member(opts.get("bootstrap"), opts.get("group"), opts.get("topic"));
                }
                default -> usage("unknown sub-command " + args[0]);
            }
        } catch (Throwable t) {
            log("java matrix client: " + describe(t));
            t.printStackTrace();
            code = 1;
        }
        OUT.flush();
        System.exit(code); // the clients' threads are daemons, but do not wait for a stuck one
    }
}
