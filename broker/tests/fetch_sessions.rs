//! Fetch semantics a client relies on, checked with exact requests: incremental fetch sessions
//! (KIP-227), long polling that waits for data or the deadline and no longer, and a fetch offset
//! inside a batch returning the whole batch.

// A test fails by panicking: expect/unwrap/panic are its assertions.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{record_batch, Broker, RawClient};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

const FETCH_VERSION: i16 = 12;
const TOPIC: &str = "sessions";

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

fn produce(client: &mut RawClient, partition: i32, values: &[&[u8]]) -> i64 {
    let request =
        ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default(
        )
        .with_name(topic_name())
        .with_partition_data(vec![PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(record_batch(values)))])]);
    let response = client.send(&request, 9);
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "produce to partition {partition}");
    p.base_offset
}

fn fetch_partition(partition: i32, offset: i64) -> FetchPartition {
    FetchPartition::default().with_partition(partition).with_fetch_offset(offset).with_partition_max_bytes(1 << 20)
}

fn fetch(
    session_id: i32,
    epoch: i32,
    partitions: Vec<FetchPartition>,
    forget: Vec<i32>,
    max_wait_ms: i32,
) -> FetchRequest {
    let topics = if partitions.is_empty() {
        vec![]
    } else {
        vec![FetchTopic::default().with_topic(topic_name()).with_partitions(partitions)]
    };
    let forgotten = if forget.is_empty() {
        vec![]
    } else {
        vec![ForgottenTopic::default().with_topic(topic_name()).with_partitions(forget)]
    };
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 24)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}

/// (partition, high watermark, record bytes) for every partition in a response.
fn partitions_in(response: &FetchResponse) -> Vec<(i32, i64, usize)> {
    response
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.high_watermark, p.records.as_ref().map_or(0, |r| r.len())))
        })
        .collect()
}

fn setup() -> (Broker, RawClient) {
    let broker = Broker::start(&["--set", "num.partitions=2"]);
    let mut client = RawClient::connect(&broker);
    // Metadata auto-creates the topic with two partitions.
    let topic =
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name()));
    let metadata =
        client.send(&MetadataRequest::default().with_topics(Some(vec![topic])).with_allow_auto_topic_creation(true), 9);
    assert_eq!(metadata.topics[0].partitions.len(), 2);
    (broker, client)
}

#[test]
fn incremental_sessions_send_only_what_changed() {
    let (_broker, mut client) = setup();
    produce(&mut client, 0, &[b"a", b"b", b"c"]);

    // A full fetch at epoch 0 opens a session and returns both partitions.
    let full = client.send(&fetch(0, 0, vec![fetch_partition(0, 0), fetch_partition(1, 0)], vec![], 0), FETCH_VERSION);
    assert_eq!(full.error_code, 0);
    let session = full.session_id;
    assert!(session > 0, "the broker opened a fetch session");
    let seen = partitions_in(&full);
    assert_eq!(seen.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1]);
    assert!(seen[0].2 > 0 && seen[0].1 == 3, "partition 0 has its three records: {seen:?}");

    // Epoch 1: the client moved partition 0's offset to 3; nothing new anywhere: an empty answer.
    let quiet = client.send(&fetch(session, 1, vec![fetch_partition(0, 3)], vec![], 50), FETCH_VERSION);
    assert_eq!((quiet.error_code, quiet.session_id), (0, session));
    assert_eq!(partitions_in(&quiet), vec![], "an incremental fetch leaves out partitions without news");

    // New data on partition 1 only: epoch 2 lists nothing, the answer carries partition 1 alone.
    produce(&mut client, 1, &[b"x"]);
    let news = client.send(&fetch(session, 2, vec![], vec![], 1000), FETCH_VERSION);
    let seen = partitions_in(&news);
    assert_eq!(seen.len(), 1, "only partition 1 changed: {seen:?}");
    assert_eq!((seen[0].0, seen[0].1), (1, 1));
    assert!(seen[0].2 > 0, "and it carries the new record");

    // A stale epoch and an unknown session are refused with Kafka's codes.
    let stale = client.send(&fetch(session, 2, vec![], vec![], 0), FETCH_VERSION);
    assert_eq!(stale.error_code, ResponseError::InvalidFetchSessionEpoch.code());
    let unknown = client.send(&fetch(session + 1000, 1, vec![], vec![], 0), FETCH_VERSION);
    assert_eq!(unknown.error_code, ResponseError::FetchSessionIdNotFound.code());

    // Forget partition 1 (the client moved on past its record first); new data there is no
    // longer reported, while partition 0 still is.
    let _ = client.send(&fetch(session, 3, vec![fetch_partition(1, 1)], vec![], 0), FETCH_VERSION);
    let _ = client.send(&fetch(session, 4, vec![], vec![1], 0), FETCH_VERSION);
    produce(&mut client, 1, &[b"y"]);
    produce(&mut client, 0, &[b"d"]);
    let after = client.send(&fetch(session, 5, vec![], vec![], 1000), FETCH_VERSION);
    let seen = partitions_in(&after);
    assert_eq!(seen.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0], "partition 1 was forgotten: {seen:?}");

    // Epoch -1 closes the session; its id is then unknown.
    let closing = client.send(&fetch(session, -1, vec![fetch_partition(0, 0)], vec![], 0), FETCH_VERSION);
    assert_eq!(closing.session_id, 0);
    let gone = client.send(&fetch(session, 6, vec![], vec![], 0), FETCH_VERSION);
    assert_eq!(gone.error_code, ResponseError::FetchSessionIdNotFound.code());
}

#[test]
fn long_poll_waits_for_data_or_the_deadline() {
    let (broker, mut client) = setup();
    // Nothing to read: the answer comes at max_wait_ms, not before.
    let started = Instant::now();
    let empty = client.send(&fetch(0, -1, vec![fetch_partition(0, 0)], vec![], 400), FETCH_VERSION);
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "answered after {:?}, before max_wait_ms",
        started.elapsed()
    );
    assert_eq!(partitions_in(&empty)[0].2, 0);

    // A waiting fetch is woken by an append and returns the record before its deadline.
    let bootstrap = broker.bootstrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let stream_broker = common::RawClient::connect_to(&bootstrap);
        let mut c = stream_broker;
        produce(&mut c, 0, &[b"wake"]);
    });
    let started = Instant::now();
    let woken = client.send(&fetch(0, -1, vec![fetch_partition(0, 0)], vec![], 20_000), FETCH_VERSION);
    writer.join().expect("writer thread");
    assert!(partitions_in(&woken)[0].2 > 0, "the fetch returned the appended record");
    assert!(started.elapsed() < Duration::from_secs(15), "woken by the append, not by the 20 s deadline");
}

#[test]
fn fetch_offset_inside_a_batch_returns_the_whole_batch() {
    let (_broker, mut client) = setup();
    produce(&mut client, 0, &[b"r0", b"r1", b"r2", b"r3"]);
    let response = client.send(&fetch(0, -1, vec![fetch_partition(0, 2)], vec![], 0), FETCH_VERSION);
    let records = response.responses[0].partitions[0].records.clone().expect("records");
    let mut buf = records;
    let batches = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf).expect("decode");
    let offsets: Vec<i64> = batches.iter().flat_map(|b| b.records.iter().map(|r| r.offset)).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3], "the batch holding offset 2 comes back whole");
}
