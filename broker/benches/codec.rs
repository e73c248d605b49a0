//! Micro-benchmarks of the wire codec ([`sluice::protocol`]): splitting a frame off a read buffer
//! (`frame::take_frame`) and decoding its request header and body (`codec::decode_request` then
//! `codec::decode_body`), for three requests shaped like a real client's: a Produce v9 carrying
//! one partition with a 16 KiB record batch, a Fetch v12 for 8 partitions of one topic, and a
//! Metadata v12 naming 10 topics. The frames are encoded with kafka-protocol during setup;
//! throughput is the frame's size in bytes.
//!
//! `take_frame` splits without copying, so its figure stays flat whatever the frame size; the
//! decode figures include kafka-protocol's own work (the produce batch is kept as `Bytes`, not
//! copied, so a Produce decodes at a rate set by its header and partition list, not its batch).
//!
//! Run: `cargo bench -p sluice --bench codec` (add `-- --warm-up-time 1 --measurement-time 3`
//! for a quicker pass, or `-- --test` to run each function once).

// Setup that cannot build its input has nothing to measure: stopping there is the right answer.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, MetadataRequest, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use sluice::protocol::codec::{decode_body, decode_request};
use sluice::protocol::frame::take_frame;

/// `socket.request.max.bytes`'s default: the bound every frame is checked against.
const FRAME_MAX_BYTES: usize = 100 << 20;

/// One request under test: its name in the report, its frame with and without the size prefix.
struct Case {
    name: &'static str,
    /// Size prefix and frame, as they arrive on the socket.
    wire: Bytes,
    /// The frame alone, as `take_frame` hands it to the decoder.
    frame: Bytes,
    decode: fn(Bytes) -> usize,
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Encodes `request` behind a v-appropriate request header and a size prefix.
fn wire<R: Request + Encodable>(request: &R, version: i16, correlation_id: i32) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("bench-client")));
    let mut body = BytesMut::new();
    header.encode(&mut body, R::header_version(version)).expect("bench setup: header encodes");
    request.encode(&mut body, version).expect("bench setup: request encodes");
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_i32(i32::try_from(body.len()).expect("bench setup: frame fits i32"));
    out.extend_from_slice(&body);
    out.freeze()
}

/// One uncompressed v2 batch of 16 records of 1 KiB each (about 16 KiB with framing).
fn record_batch() -> Bytes {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    let records: Vec<Record> = (0..16)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            // Offset and sequence in step keep kafka-protocol from starting a new batch.
            sequence: i32::try_from(i).unwrap_or(0),
            timestamp: now_ms,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'v'; 1024])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("bench setup: batch encodes");
    buf.freeze()
}

fn produce_v9() -> Bytes {
    let partition = PartitionProduceData::default().with_index(0).with_records(Some(record_batch()));
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default().with_name(topic("bench-produce")).with_partition_data(vec![partition]),
    ]);
    wire(&request, 9, 1)
}

fn fetch_v12() -> Bytes {
    let partitions = (0..8)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_current_leader_epoch(0)
                .with_fetch_offset(1_000_000 + i64::from(p))
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_isolation_level(1)
        .with_topics(vec![FetchTopic::default().with_topic(topic("bench-fetch")).with_partitions(partitions)]);
    wire(&request, 12, 2)
}

fn metadata_v12() -> Bytes {
    let topics =
        (0..10).map(|i| MetadataRequestTopic::default().with_name(Some(topic(&format!("bench-topic-{i}"))))).collect();
    let request = MetadataRequest::default().with_topics(Some(topics)).with_allow_auto_topic_creation(false);
    wire(&request, 12, 3)
}

/// Header and body decode, as the connection does it; returns a count so nothing is elided.
fn decode<R: Decodable>(frame: Bytes, count: fn(&R) -> usize) -> usize {
    let raw = decode_request(frame, |_, _| true).expect("bench frame decodes");
    let body: R = decode_body(raw.body, raw.api_version).expect("bench body decodes");
    count(&body)
}

fn decode_produce(frame: Bytes) -> usize {
    decode::<ProduceRequest>(frame, |r| r.topic_data[0].partition_data.len())
}

fn decode_fetch(frame: Bytes) -> usize {
    decode::<FetchRequest>(frame, |r| r.topics[0].partitions.len())
}

fn decode_metadata(frame: Bytes) -> usize {
    decode::<MetadataRequest>(frame, |r| r.topics.as_ref().map_or(0, Vec::len))
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, wire, decode) in [
        ("produce_v9_16KiB", produce_v9(), decode_produce as fn(Bytes) -> usize),
        ("fetch_v12_8_partitions", fetch_v12(), decode_fetch),
        ("metadata_v12_10_topics", metadata_v12(), decode_metadata),
    ] {
        let frame = wire.slice(4..);
        // Decoded once here, so a bench never times a request that fails half-way.
        assert!(decode(frame.clone()) > 0, "{name}: decodes with its partitions or topics");
        cases.push(Case { name, wire, frame, decode });
    }
    cases
}

fn bench_take_frame(c: &mut Criterion, cases: &[Case]) {
    let mut group = c.benchmark_group("codec/take_frame");
    for case in cases {
        group.throughput(Throughput::Bytes(case.wire.len() as u64));
        group.bench_function(case.name, |b| {
            b.iter_batched(
                || BytesMut::from(&case.wire[..]),
                |mut buf| take_frame(&mut buf, FRAME_MAX_BYTES).expect("frame is valid"),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn bench_decode(c: &mut Criterion, cases: &[Case]) {
    let mut group = c.benchmark_group("codec/decode");
    for case in cases {
        group.throughput(Throughput::Bytes(case.frame.len() as u64));
        group.bench_function(case.name, |b| {
            b.iter(|| (case.decode)(black_box(case.frame.clone())));
        });
    }
    group.finish();
}

fn codec(c: &mut Criterion) {
    let cases = cases();
    bench_take_frame(c, &cases);
    bench_decode(c, &cases);
}

criterion_group!(benches, codec);
criterion_main!(benches);
