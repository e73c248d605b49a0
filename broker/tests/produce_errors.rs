//! What a producer sees when a batch is refused: Kafka's error code for that partition, the
//! other partitions of the request unaffected, nothing stored for the refused batch. Also the
//! topic configs that decide refusals (`max.message.bytes`, timestamp bounds), idempotent
//! producer sequence checks, and retention moving the log start offset.

// A test fails by panicking: expect/unwrap/panic are its assertions.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{Broker, RawClient};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn create_topic(client: &mut RawClient, topic: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let request = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(configs)]);
    client.send(&request, 7).topics[0].error_code
}

struct Batch {
    values: Vec<Vec<u8>>,
    timestamp: i64,
    producer: Option<(i64, i16, i32)>,
}

impl Batch {
    fn plain(values: &[&[u8]]) -> Self {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Self { values: values.iter().map(|v| v.to_vec()).collect(), timestamp: now, producer: None }
    }

    fn encode(&self) -> Bytes {
        let (producer_id, producer_epoch, first_sequence) = self.producer.unwrap_or((-1, -1, 0));
        let records: Vec<Record> = self
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: first_sequence + i as i32,
                timestamp: self.timestamp,
                key: None,
                value: Some(Bytes::from(v.clone())),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions { version: 2, compression: Compression::None },
        )
        .expect("encode");
        buf.freeze()
    }
}

/// Produces one record set per partition; returns (error code, base offset) per partition.
fn produce(client: &mut RawClient, topic: &str, acks: i16, sets: Vec<(i32, Bytes)>) -> Vec<(i16, i64)> {
    let partitions =
        sets.into_iter().map(|(p, r)| PartitionProduceData::default().with_index(p).with_records(Some(r))).collect();
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default().with_name(name(topic)).with_partition_data(partitions)]);
    let response = client.send(&request, 9);
    response.responses[0].partition_responses.iter().map(|p| (p.error_code, p.base_offset)).collect()
}

fn list_offset(client: &mut RawClient, topic: &str, partition: i32, timestamp: i64) -> (i16, i64) {
    let request =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)
                .with_current_leader_epoch(-1)])]);
    let p = &client.send(&request, 7).topics[0].partitions[0];
    (p.error_code, p.offset)
}

fn fetch_error(client: &mut RawClient, topic: &str, partition: i32, offset: i64) -> i16 {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(name(topic)).with_partitions(vec![
            FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20),
        ])]);
    client.send(&request, 12).responses[0].partitions[0].error_code
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

#[test]
fn bad_batches_get_their_partitions_error_and_leave_the_rest_alone() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker);
    assert_eq!(create_topic(&mut client, "errs", 3, &[("max.message.bytes", "2000")]), 0);

    let good = Batch::plain(&[b"ok"]).encode();
    let mut corrupt = BytesMut::from(&Batch::plain(&[b"flipped"]).encode()[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let mut old_magic = BytesMut::from(&Batch::plain(&[b"magic"]).encode()[..]);
    old_magic[16] = 1;
    let too_large = Batch::plain(&[&[7u8; 3000]]).encode();

    let answers =
        produce(&mut client, "errs", -1, vec![(0, good.clone()), (1, corrupt.freeze()), (2, old_magic.freeze())]);
    assert_eq!(answers[0], (0, 0), "the good partition is written");
    assert_eq!(answers[1].0, code(ResponseError::CorruptMessage), "a CRC mismatch is CORRUPT_MESSAGE");
    assert_eq!(answers[2].0, code(ResponseError::UnsupportedForMessageFormat), "magic 1 is refused");
    assert_eq!(produce(&mut client, "errs", -1, vec![(1, too_large)])[0].0, code(ResponseError::MessageTooLarge));
    assert_eq!(produce(&mut client, "errs", 2, vec![(0, good.clone())])[0].0, code(ResponseError::InvalidRequiredAcks));
    assert_eq!(
        produce(&mut client, "nope", 1, vec![(0, good.clone())])[0].0,
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(produce(&mut client, "errs", 1, vec![(9, good)])[0].0, code(ResponseError::UnknownTopicOrPartition));
    // Nothing refused was stored: partitions 1 and 2 are still empty, partition 0 holds one record.
    assert_eq!(list_offset(&mut client, "errs", 0, -1), (0, 1));
    assert_eq!(list_offset(&mut client, "errs", 1, -1), (0, 0));
    assert_eq!(list_offset(&mut client, "errs", 2, -1), (0, 0));
}

#[test]
fn timestamps_outside_the_topic_bounds_are_invalid() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker);
    assert_eq!(create_topic(&mut client, "ts", 1, &[("message.timestamp.before.max.ms", "86400000")]), 0);
    let mut future = Batch::plain(&[b"from the future"]);
    future.timestamp += 2 * 3_600_000; // beyond the default message.timestamp.after.max.ms of 1 h
    let mut ancient = Batch::plain(&[b"from the past"]);
    ancient.timestamp -= 2 * 86_400_000;
    assert_eq!(produce(&mut client, "ts", 1, vec![(0, future.encode())])[0].0, code(ResponseError::InvalidTimestamp));
    assert_eq!(produce(&mut client, "ts", 1, vec![(0, ancient.encode())])[0].0, code(ResponseError::InvalidTimestamp));
    assert_eq!(produce(&mut client, "ts", 1, vec![(0, Batch::plain(&[b"now"]).encode())])[0], (0, 0));
}

#[test]
fn idempotent_sequences_are_checked_and_duplicates_keep_their_offsets() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker);
    assert_eq!(create_topic(&mut client, "idem", 1, &[]), 0);
    let init = client.send(
        &kafka_protocol::messages::InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60000)
            .with_producer_id(kafka_protocol::messages::ProducerId(-1))
            .with_producer_epoch(-1),
        4,
    );
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let batch = |seq: i32, epoch: i16, values: &[&[u8]]| {
        Batch { producer: Some((pid, epoch, seq)), ..Batch::plain(values) }.encode()
    };

    assert_eq!(produce(&mut client, "idem", -1, vec![(0, batch(0, epoch, &[b"a", b"b"]))])[0], (0, 0));
    assert_eq!(produce(&mut client, "idem", -1, vec![(0, batch(2, epoch, &[b"c"]))])[0], (0, 2));
    // The same batch again (a retry after a lost response): its original offset, nothing written.
    assert_eq!(produce(&mut client, "idem", -1, vec![(0, batch(0, epoch, &[b"a", b"b"]))])[0], (0, 0));
    assert_eq!(list_offset(&mut client, "idem", 0, -1), (0, 3));
    // A gap in the sequence.
    assert_eq!(
        produce(&mut client, "idem", -1, vec![(0, batch(5, epoch, &[b"x"]))])[0].0,
        code(ResponseError::OutOfOrderSequenceNumber)
    );
    // A newer epoch starts again at sequence 0; the older epoch is then fenced.
    assert_eq!(produce(&mut client, "idem", -1, vec![(0, batch(0, epoch + 1, &[b"d"]))])[0], (0, 3));
    assert_eq!(
        produce(&mut client, "idem", -1, vec![(0, batch(3, epoch, &[b"e"]))])[0].0,
        code(ResponseError::InvalidProducerEpoch)
    );

    // Producer state survives a restart: the duplicate is still recognised.
    assert!(drop_and_restart(broker, |b| {
        let mut client = RawClient::connect(b);
        produce(&mut client, "idem", -1, vec![(0, batch(0, epoch + 1, &[b"d"]))])[0] == (0, 3)
            && list_offset(&mut client, "idem", 0, -1) == (0, 4)
    }));
}

fn drop_and_restart(mut broker: Broker, check: impl Fn(&Broker) -> bool) -> bool {
    broker.kill9();
    broker.restart();
    check(&broker)
}

#[test]
fn retention_moves_the_log_start_and_compact_topics_keep_their_data() {
    let broker = Broker::start(&["--set", "log.retention.check.interval.ms=200"]);
    let mut client = RawClient::connect(&broker);
    let old =
        |values: &[&[u8]]| Batch { timestamp: Batch::plain(&[]).timestamp - 60_000, ..Batch::plain(values) }.encode();
    let configs = [("retention.ms", "10000"), ("segment.bytes", "200")];
    assert_eq!(create_topic(&mut client, "expiring", 1, &configs), 0);
    assert_eq!(create_topic(&mut client, "compacted", 1, &[configs[0], configs[1], ("cleanup.policy", "compact")]), 0);
    for i in 0..5u8 {
        for topic in ["expiring", "compacted"] {
            let values: Vec<Vec<u8>> = (0..4u8).map(|j| vec![i * 4 + j; 40]).collect();
            let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            assert_eq!(produce(&mut client, topic, -1, vec![(0, old(&refs))])[0].0, 0);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while list_offset(&mut client, "expiring", 0, -2).1 == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (err, log_start) = list_offset(&mut client, "expiring", 0, -2);
    assert_eq!(err, 0);
    assert!(log_start > 0, "retention deleted old segments: earliest offset is now {log_start}");
    assert_eq!(
        fetch_error(&mut client, "expiring", 0, 0),
        code(ResponseError::OffsetOutOfRange),
        "a fetch below the log start"
    );
    assert_eq!(fetch_error(&mut client, "expiring", 0, log_start), 0);
    assert_eq!(list_offset(&mut client, "compacted", 0, -2), (0, 0), "cleanup.policy=compact is never deleted by time");
}
