//! ListOffsets as librdkafka users meet it: `offsets_for_times` finds the first record at or
//! after a timestamp (across batches and inside one batch), a time past the last record gives
//! `Offset::End`, watermarks count what was written; and a `LogAppendTime` topic stamps records
//! with the broker's clock, whatever the producer put in them.

// A test fails by panicking: expect/unwrap/panic are its assertions.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
mod rdkafka_util;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use common::Broker;
use rdkafka_util::{await_deliveries, consume_all, consumer, create_topic, producer, watermarks, REQUEST_TIMEOUT};

/// Records per timestamp group.
const GROUP: i64 = 10;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Produces group `g` (timestamps `base + j`, j in 0..GROUP) to `partition`, waits for acks.
fn produce_group(producer: &rdkafka::producer::FutureProducer, topic: &str, partition: i32, g: usize, base: i64) {
    let futures: Vec<_> = (0..GROUP)
        .map(|j| {
            let value = format!("group-{g}-record-{j}");
            let record = FutureRecord::<(), str>::to(topic).partition(partition).payload(&value).timestamp(base + j);
            producer.send_result(record).unwrap_or_else(|(e, _)| panic!("enqueue: {e}"))
        })
        .collect();
    for d in await_deliveries(futures, Duration::from_secs(30)) {
        d.unwrap_or_else(|e| panic!("delivery to {topic}-{partition}: {e}"));
    }
}

/// `offsets_for_times` for one partition and one timestamp.
fn offset_for_time(consumer: &rdkafka::consumer::BaseConsumer, topic: &str, partition: i32, timestamp: i64) -> Offset {
    let mut query = TopicPartitionList::new();
    query.add_partition_offset(topic, partition, Offset::Offset(timestamp)).expect("query");
    let answer = consumer.offsets_for_times(query, REQUEST_TIMEOUT).expect("offsets_for_times");
    let element = answer.find_partition(topic, partition).expect("partition in answer");
    assert!(element.error().is_ok(), "{topic}-{partition} at {timestamp}: {:?}", element.error());
    element.offset()
}

#[test]
fn offsets_for_times_and_watermarks() {
    let started = Instant::now();
    let broker = Broker::start(&[]);
    let topic = "by-time";
    create_topic(&broker.bootstrap(), topic, 2, &[]);
    let t1 = now_ms() - 30 * 60 * 1000;
    let times = [t1, t1 + 10 * 60 * 1000, t1 + 20 * 60 * 1000];

    // Partition 0: one flush per group, so groups sit in different batches.
    let separate = producer(&broker.bootstrap(), &[("acks", "all"), ("linger.ms", "0")]);
    for (g, &t) in times.iter().enumerate() {
        produce_group(&separate, topic, 0, g, t);
    }
    // Partition 1: all three groups enqueued together, so they likely share one batch and
    // the lookup must look inside it.
    let together = producer(&broker.bootstrap(), &[("acks", "all"), ("linger.ms", "500")]);
    let futures: Vec<_> = times
        .iter()
        .enumerate()
        .flat_map(|(g, &t)| (0..GROUP).map(move |j| (g, t + j, format!("group-{g}-record-{j}"))))
        .map(|(_, ts, value)| {
            let record = FutureRecord::<(), str>::to(topic).partition(1).payload(&value).timestamp(ts);
            together.send_result(record).unwrap_or_else(|(e, _)| panic!("enqueue: {e}"))
        })
        .collect();
    for d in await_deliveries(futures, Duration::from_secs(30)) {
        d.unwrap_or_else(|e| panic!("delivery to {topic}-1: {e}"));
    }
    together.flush(REQUEST_TIMEOUT).expect("flush");

    let consumer = consumer(&broker.bootstrap());
    let marks = watermarks(&consumer, topic, 2);
    println!("watermarks {marks:?}");
    assert_eq!(marks, vec![(0, 3 * GROUP), (0, 3 * GROUP)], "low/high watermarks count what was written");

    for p in 0..2 {
        let cases = [
            (times[0] - 60_000, Offset::Offset(0), "before everything: the first offset"),
            (times[0], Offset::Offset(0), "T1: first record of group 1"),
            (times[1] - 1, Offset::Offset(GROUP), "just before T2: first record of group 2"),
            (times[1], Offset::Offset(GROUP), "T2: first record of group 2"),
            (times[1] + 3, Offset::Offset(GROUP + 3), "inside group 2: the record with that time"),
            (times[2] + GROUP - 1, Offset::Offset(3 * GROUP - 1), "the last record's time: the last offset"),
            (times[2] + GROUP, Offset::End, "after T3's last record: end"),
            (now_ms() + 3_600_000, Offset::End, "an hour from now: end"),
        ];
        for (timestamp, expected, what) in cases {
            let found = offset_for_time(&consumer, topic, p, timestamp);
            println!("{topic}-{p}: offsets_for_times({timestamp}) = {found:?} ({what})");
            assert_eq!(found, expected, "{topic}-{p}: {what}");
        }
    }
    println!("took {:.2}s", started.elapsed().as_secs_f64());
}

#[test]
fn log_append_time_topic_stamps_records_with_broker_time() {
    let started = Instant::now();
    let broker = Broker::start(&[]);
    let topic = "append-time";
    create_topic(&broker.bootstrap(), topic, 1, &[("message.timestamp.type", "LogAppendTime")]);
    let producer = producer(&broker.bootstrap(), &[("acks", "all"), ("linger.ms", "5")]);
    let an_hour_ago = now_ms() - 3_600_000;

    let before = now_ms();
    let futures: Vec<_> = (0..20)
        .map(|i| {
            let value = format!("append-time-{i}");
            let mut record = FutureRecord::<(), str>::to(topic).partition(0).payload(&value);
            if i % 2 == 0 {
                record = record.timestamp(an_hour_ago + i);
            }
            producer.send_result(record).unwrap_or_else(|(e, _)| panic!("enqueue: {e}"))
        })
        .collect();
    let deliveries = await_deliveries(futures, Duration::from_secs(30));
    let after = now_ms();
    // Loopback, same host: the broker's clock is ours; allow a second of slack either side.
    let window = (before - 1_000)..=(after + 1_000);

    for d in &deliveries {
        d.as_ref().unwrap_or_else(|e| panic!("delivery: {e}"));
    }
    println!("window {window:?}; first delivery report {:?}", deliveries.first());
    let consumed = consume_all(&broker.bootstrap(), topic, 1, Duration::from_secs(30));
    assert_eq!(consumed[0].len(), 20, "all 20 records consumed");
    for m in &consumed[0] {
        match m.timestamp() {
            Timestamp::LogAppendTime(t) => assert!(
                window.contains(&t),
                "offset {}: LogAppendTime {t} not within {window:?} (producer time for even records was {an_hour_ago})",
                m.offset()
            ),
            other => panic!("offset {}: expected Timestamp::LogAppendTime, got {other:?}", m.offset()),
        }
    }
    println!(
        "consumed timestamps: first {:?}, last {:?}",
        consumed[0].first().map(Message::timestamp),
        consumed[0].last().map(Message::timestamp)
    );
    // Kafka returns the append time in the produce response; librdkafka hands it to the
    // delivery report, so a producer sees the time its records were stamped with.
    for d in deliveries.iter().flatten() {
        match d.timestamp {
            Timestamp::LogAppendTime(t) => {
                assert!(window.contains(&t), "delivery report LogAppendTime {t} not within {window:?}")
            }
            other => panic!("delivery report of offset {}: expected LogAppendTime, got {other:?}", d.offset),
        }
    }
    // Lookups by time use the append time too.
    let consumer = consumer(&broker.bootstrap());
    assert_eq!(offset_for_time(&consumer, topic, 0, an_hour_ago), Offset::Offset(0), "an hour ago: first offset");
    assert_eq!(offset_for_time(&consumer, topic, 0, after + 60_000), Offset::End, "a minute from now: end");
    println!("took {:.2}s", started.elapsed().as_secs_f64());
}
