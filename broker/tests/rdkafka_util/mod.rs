//! rdkafka helpers for the black-box client tests: create topics, build producers and
//! assign-only consumers (Sluice has no consumer groups), wait for delivery reports with a
//! deadline, and read whole partitions back from offset 0 to the high watermark.
//!
//! Kept apart from `common` so that tests which speak raw frames do not pull in librdkafka.
//! Nothing here commits offsets or joins a group.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::future_producer::{Delivery, DeliveryFuture};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

/// Timeout for one metadata/watermark/admin round trip.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A client config pointing at `bootstrap`, with `extra` settings on top.
pub fn client_config(bootstrap: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config
}

/// Creates `name` with `partitions` partitions and topic configs `configs`; panics with the
/// broker's error if it refuses.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap, &[]).create().expect("admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics([&topic], &options)).expect("CreateTopics request");
    for result in results {
        if let Err((topic, code)) = result {
            panic!("CreateTopics {topic} failed: {code:?}");
        }
    }
}

/// A producer with `extra` settings (acks, compression, idempotence...) on top of a large
/// local queue, so a test can enqueue a whole data set without QueueFull.
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    producer_config(bootstrap, extra).create().expect("producer")
}

/// The config [`producer`] uses, for a producer with its own context.
pub fn producer_config(bootstrap: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = client_config(
        bootstrap,
        &[("queue.buffering.max.messages", "1000000"), ("queue.buffering.max.kbytes", "1048576")],
    );
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config
}

/// A consumer that is only ever `assign()`ed: a group id is required by librdkafka but never
/// used, nothing is committed.
pub fn consumer(bootstrap: &str) -> BaseConsumer {
    client_config(
        bootstrap,
        &[
            ("group.id", "sluice-tests-unused"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
            ("auto.offset.reset", "error"),
        ],
    )
    .create()
    .expect("consumer")
}

/// Waits for every delivery report, giving up at `timeout`. A report that never arrives is a
/// failed test, not a hang.
pub fn await_deliveries(futures: Vec<DeliveryFuture>, timeout: Duration) -> Vec<Result<Delivery, KafkaError>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let all = futures::future::join_all(futures);
    let results = runtime
        .block_on(async { tokio::time::timeout(timeout, all).await })
        .unwrap_or_else(|_| panic!("delivery reports did not all arrive within {timeout:?}"));
    results
        .into_iter()
        .map(|r| match r.expect("delivery report channel dropped") {
            Ok(delivery) => Ok(delivery),
            Err((error, _message)) => Err(error),
        })
        .collect()
}

/// `(low, high)` watermarks of every partition `0..partitions`.
pub fn watermarks(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
                .unwrap_or_else(|e| panic!("watermarks of {topic}-{p}: {e}"))
        })
        .collect()
}

/// Every message of partitions `0..partitions`, read from offset 0 up to the high watermark
/// seen when the call starts, grouped by partition in the order received. Panics on a
/// consumer error or if the data does not arrive within `timeout`.
pub fn consume_all(bootstrap: &str, topic: &str, partitions: i32, timeout: Duration) -> Vec<Vec<OwnedMessage>> {
    let consumer = consumer(bootstrap);
    let highs: Vec<i64> = watermarks(&consumer, topic, partitions).into_iter().map(|(_, h)| h).collect();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Offset(0)).expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let mut received: Vec<Vec<OwnedMessage>> = (0..partitions).map(|_| Vec::new()).collect();
    let mut next: Vec<i64> = vec![0; partitions as usize];
    let deadline = Instant::now() + timeout;
    let mut transport_errors = 0u32;
    while (0..partitions as usize).any(|p| next[p] < highs[p]) {
        assert!(
            Instant::now() < deadline,
            "consumed only {next:?} of high watermarks {highs:?} of {topic} within {timeout:?} \
             ({transport_errors} transport errors)"
        );
        let Some(result) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = match result {
            Ok(m) => m,
            // librdkafka reports lost connections as errors and reconnects by itself.
            Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure,
            )) => {
                transport_errors += 1;
                continue;
            }
            Err(e) => panic!("consuming {topic}: {e}"),
        };
        let p = message.partition() as usize;
        next[p] = next[p].max(message.offset() + 1);
        if message.offset() < highs[p] {
            received[p].push(message.detach());
        }
    }
    received
}

/// Asserts that `messages` (one partition, in the order received) hold offsets `0..high`, each
/// exactly once, in order.
pub fn assert_contiguous(topic: &str, partition: usize, messages: &[OwnedMessage], high: i64) {
    let offsets: Vec<i64> = messages.iter().map(Message::offset).collect();
    let expected: Vec<i64> = (0..high).collect();
    if offsets != expected {
        let first_bad = offsets.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "{topic}-{partition}: consumed {} messages, expected offsets 0..{high} once each in order; \
             first mismatch at index {first_bad:?}",
            offsets.len()
        );
    }
}

/// A record's user-visible content: key, value and headers (name, value) in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Content {
    /// The content of a consumed message; no headers and zero headers compare equal.
    pub fn of(message: &OwnedMessage) -> Self {
        let headers = message
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        Content { key: message.key().map(<[u8]>::to_vec), value: message.payload().map(<[u8]>::to_vec), headers }
    }
}

/// The `.log` segment files of `<data_dir>/<topic>-<p>`: name → size in bytes.
pub fn segment_files(data_dir: &std::path::Path, topic: &str, partition: i32) -> BTreeMap<String, u64> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut files = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else { return files };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".log") {
            files.insert(name, entry.metadata().map(|m| m.len()).unwrap_or(0));
        }
    }
    files
}

/// Partition -> (leader, isr) of `topic` as the brokers at `bootstrap` report it; `None` while
/// the topic is unknown or has an error.
pub fn leaders_and_isr(bootstrap: &str, topic: &str) -> Option<BTreeMap<i32, (i32, Vec<i32>)>> {
    let consumer: BaseConsumer = client_config(bootstrap, &[]).create().ok()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
    let t = metadata.topics().iter().find(|t| t.name() == topic)?;
    if t.error().is_some() || t.partitions().is_empty() {
        return None;
    }
    Some(t.partitions().iter().map(|p| (p.id(), (p.leader(), p.isr().to_vec()))).collect())
}

/// Seconds with millisecond precision, for timing prints.
pub fn secs(since: Instant) -> String {
    format!("{:.2}s", since.elapsed().as_secs_f64())
}
