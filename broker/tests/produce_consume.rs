//! Produce then consume through librdkafka, once per compression codec: every record that the
//! broker acknowledges comes back byte for byte (key, value, headers, timestamp) at the offset
//! its delivery report gave, with no gap and no duplicate, while the log rolls several times.

// A test fails by panicking: expect/unwrap/panic are its assertions.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
mod rdkafka_util;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use common::{segment_batches, Broker};
use rdkafka_util::{
    assert_contiguous, await_deliveries, consume_all, create_topic, producer, secs, segment_files, Content,
};

const PARTITIONS: i32 = 8;
/// Small enough that every partition rolls several segments for every codec.
const SEGMENT_BYTES: &str = "65536";

/// The `i`th record: distinct key (every 10th is null) and value, headers on every 7th.
fn record_content(i: u64) -> Content {
    let key = (i % 10 != 3).then(|| format!("key-{i}").into_bytes());
    let mut value = format!("value-{i}-").into_bytes();
    // Some pseudo-random bytes, then compressible text, both of varying length.
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..8 + x % 32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        value.push(x as u8);
    }
    value.extend(b"abcdefghijklmnopqrstuvwxyz".iter().cycle().take(20 + (x % 130) as usize));
    let headers = if i.is_multiple_of(7) {
        vec![
            ("index".to_string(), Some(i.to_be_bytes().to_vec())),
            ("null-header".to_string(), None),
            ("empty".to_string(), Some(Vec::new())),
        ]
    } else {
        Vec::new()
    };
    Content { key, value: Some(value), headers }
}

fn owned_headers(content: &Content) -> Option<OwnedHeaders> {
    if content.headers.is_empty() {
        return None;
    }
    let mut headers = OwnedHeaders::new();
    for (key, value) in &content.headers {
        headers = headers.insert(Header { key, value: value.as_deref() });
    }
    Some(headers)
}

/// The RecordBatch attributes codec id librdkafka writes for `compression.type=codec`.
fn codec_id(codec: &str) -> i16 {
    ["none", "gzip", "snappy", "lz4", "zstd"].iter().position(|c| *c == codec).expect("known codec") as i16
}

/// Stored batches of all partitions' segment files, counted by compression codec id.
fn stored_codecs(broker: &Broker, topic: &str) -> BTreeMap<i16, usize> {
    let mut counts = BTreeMap::new();
    for p in 0..PARTITIONS {
        let dir = broker.data_dir.join(format!("{topic}-{p}"));
        for name in segment_files(&broker.data_dir, topic, p).keys() {
            let bytes = std::fs::read(dir.join(name)).expect("read segment");
            for batch in segment_batches(&bytes) {
                *counts.entry(batch.attributes & 0x7).or_default() += 1;
            }
        }
    }
    counts
}

/// One acknowledged record: its offset, index into the data set, and CreateTime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Acked {
    offset: i64,
    record: usize,
    timestamp_ms: i64,
}

/// Sends every record of `contents` and waits for all delivery reports; returns, per
/// partition in send order, what each record was acknowledged with. Every delivery must
/// succeed.
fn produce_all(bootstrap: &str, topic: &str, codec: &str, contents: &[Content]) -> Vec<Vec<Acked>> {
    let producer = producer(
        bootstrap,
        // batch.size well under segment.bytes, so segments hold a few batches each. No
        // retries: a healthy broker never needs one, and a retry could legitimately reorder.
        &[
            ("acks", "all"),
            ("linger.ms", "5"),
            ("compression.type", codec),
            ("batch.size", "32768"),
            ("message.send.max.retries", "0"),
        ],
    );
    let mut futures = Vec::with_capacity(contents.len());
    for content in contents {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic);
        if let Some(key) = &content.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &content.value {
            record = record.payload(value.as_slice());
        }
        if let Some(headers) = owned_headers(content) {
            record = record.headers(headers);
        }
        match producer.send_result(record) {
            Ok(future) => futures.push(future),
            Err((e, _)) => panic!("{codec}: enqueue failed: {e}"),
        }
    }
    let mut by_partition: Vec<Vec<Acked>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
    for (record, delivery) in await_deliveries(futures, Duration::from_secs(120)).into_iter().enumerate() {
        let delivery = delivery.unwrap_or_else(|e| panic!("{codec}: delivery of record {record} failed: {e}"));
        let timestamp_ms = delivery.timestamp.to_millis().unwrap_or(-1);
        by_partition[delivery.partition as usize].push(Acked { offset: delivery.offset, record, timestamp_ms });
    }
    by_partition
}

/// Pairs of records sent one after the other to a partition where the later one got the lower
/// offset: `(partition, earlier, later)`.
fn send_order_inversions(by_partition: &[Vec<Acked>]) -> Vec<(usize, Acked, Acked)> {
    let mut inversions = Vec::new();
    for (p, acked) in by_partition.iter().enumerate() {
        for pair in acked.windows(2) {
            if pair[1].offset < pair[0].offset {
                inversions.push((p, pair[0], pair[1]));
            }
        }
    }
    inversions
}

/// Consumes every partition and compares it, offset by offset, with what was acknowledged
/// there (`by_offset`, sorted by offset and already checked to be `0..n`).
fn check_consumed(bootstrap: &str, topic: &str, codec: &str, contents: &[Content], by_offset: &[Vec<Acked>]) {
    let consumed = consume_all(bootstrap, topic, PARTITIONS, Duration::from_secs(120));
    for (p, messages) in consumed.iter().enumerate() {
        let acked = &by_offset[p];
        assert_contiguous(topic, p, messages, acked.len() as i64);
        for (message, a) in messages.iter().zip(acked) {
            let (offset, i) = (a.offset, a.record);
            assert_eq!(Content::of(message), contents[i], "{codec}: {topic}-{p} offset {offset} (record {i})");
            assert_eq!(
                message.timestamp().to_millis(),
                Some(a.timestamp_ms),
                "{codec}: {topic}-{p} offset {offset}: CreateTime as in the delivery report"
            );
        }
    }
}

fn round_trip(codec: &str, records: u64) {
    let started = Instant::now();
    let broker = Broker::start(&[]);
    let topic = format!("round-trip-{codec}");
    create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[("segment.bytes", SEGMENT_BYTES)]);
    let contents: Vec<Content> = (0..records).map(record_content).collect();
    let mut by_partition = produce_all(&broker.bootstrap(), &topic, codec, &contents);
    let produced_in = secs(started);
    // One producer, one partition: offsets must rise in send order (Kafka's ordering promise
    // for pipelined requests on one connection). Asserted last, after the data itself.
    let inversions = send_order_inversions(&by_partition);
    for (p, acked) in by_partition.iter_mut().enumerate() {
        acked.sort_unstable();
        let offsets: Vec<i64> = acked.iter().map(|a| a.offset).collect();
        let expected: Vec<i64> = (0..acked.len() as i64).collect();
        assert_eq!(offsets, expected, "{codec}: delivery reports of {topic}-{p} must give offsets 0..n, each once");
    }
    check_consumed(&broker.bootstrap(), &topic, codec, &contents, &by_partition);

    let segments: Vec<usize> = (0..PARTITIONS).map(|p| segment_files(&broker.data_dir, &topic, p).len()).collect();
    let codecs = stored_codecs(&broker, &topic);
    let bytes: u64 = (0..PARTITIONS).flat_map(|p| segment_files(&broker.data_dir, &topic, p).into_values()).sum();
    println!(
        "{codec}: {records} records, per partition {:?}, produced in {produced_in}, all checked in {}, \
         segments per partition {segments:?}, {bytes} log bytes, stored batches by codec id {codecs:?}",
        by_partition.iter().map(Vec::len).collect::<Vec<_>>(),
        secs(started)
    );
    // Premise checks: the codec was really used on the wire, and the logs really rolled.
    let with_codec = codecs.get(&codec_id(codec)).copied().unwrap_or(0);
    let batches: usize = codecs.values().sum();
    // librdkafka only compresses with lz4 if the broker's ApiVersions lists FindCoordinator
    // (its stand-in for "Kafka >= 0.8.2"); otherwise it silently sends lz4 data uncompressed.
    assert!(
        with_codec * 10 >= batches * 9,
        "{codec}: only {with_codec} of {batches} stored batches use the codec (by codec id: {codecs:?})"
    );
    assert!(
        segments.iter().all(|&s| s >= 3),
        "{codec}: each partition should have rolled at least twice (segments {segments:?})"
    );
    assert!(
        inversions.is_empty(),
        "{codec}: {} times a record was acknowledged at a lower offset than the record sent before it \
         to the same partition; first (partition, earlier, later): {:?}",
        inversions.len(),
        inversions.first()
    );
}

#[test]
fn round_trip_uncompressed() {
    round_trip("none", 100_000);
}

#[test]
fn round_trip_gzip() {
    round_trip("gzip", 100_000);
}

#[test]
fn round_trip_snappy() {
    round_trip("snappy", 100_000);
}

#[test]
fn round_trip_lz4() {
    round_trip("lz4", 100_000);
}

#[test]
fn round_trip_zstd() {
    round_trip("zstd", 100_000);
}
