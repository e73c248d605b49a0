//! Writes the seed corpus for the `request` target: for every API in Sluice's registry and every
//! version it serves, a request frame (header + body, no size prefix) with an empty body and one
//! naming a topic and partition, plus the known hazards (array counts that ask for ~150 GB).
//!
//! Run from `fuzz/`: `cargo run --bin gen_seeds -- seeds/request` (see README.md).

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestHeader,
    TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

type Seed = (String, Vec<u8>);

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("seed-topic"))
}

const TOPIC_ID: [u8; 16] = [7; 16];

fn record_batch() -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"hello sluice")),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    match RecordBatchEncoder::encode(&mut buf, [&record], &options) {
        Ok(()) => buf.freeze(),
        Err(_) => Bytes::new(),
    }
}

/// Header (at the version the api key and version imply) followed by the encoded body.
fn frame<R: Encodable>(key: ApiKey, version: i16, body: &R) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("sluice-seed")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).ok()?;
    body.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

fn populated(key: ApiKey, v: i16) -> Option<Vec<u8>> {
    let uuid = uuid_of(TOPIC_ID);
    match key {
        ApiKey::ApiVersions => frame(
            key,
            v,
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("seed"))
                .with_client_software_version(StrBytes::from_static_str("1.0")),
        )
        .or_else(|| frame(key, v, &ApiVersionsRequest::default())),
        ApiKey::Metadata => {
            let named = MetadataRequestTopic::default().with_name(Some(topic()));
            let request = MetadataRequest::default().with_topics(Some(vec![named])).with_allow_auto_topic_creation(true);
            frame(key, v, &request).or_else(|| frame(key, v, &request.clone().with_allow_auto_topic_creation(false)))
        }
        ApiKey::Produce => {
            let partition = PartitionProduceData::default().with_index(0).with_records(Some(record_batch()));
            let mut topic_data = TopicProduceData::default().with_partition_data(vec![partition]);
            if v >= 13 {
                topic_data = topic_data.with_topic_id(uuid);
            } else {
                topic_data = topic_data.with_name(topic());
            }
            frame(key, v, &ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![topic_data]))
        }
        ApiKey::Fetch => {
            let partition = FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20);
            let mut t = FetchTopic::default().with_partitions(vec![partition]);
            t = if v >= 13 { t.with_topic_id(uuid) } else { t.with_topic(topic()) };
            let request = FetchRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(50 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![t]);
            frame(key, v, &request)
        }
        ApiKey::ListOffsets => {
            let partition = ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1);
            let t = ListOffsetsTopic::default().with_name(topic()).with_partitions(vec![partition]);
            let request = ListOffsetsRequest::default().with_replica_id(kafka_protocol::messages::BrokerId(-1)).with_topics(vec![t]);
            frame(key, v, &request)
        }
        _ => None,
    }
}

fn uuid_of(bytes: [u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(bytes)
}

/// A header for `key`/`version` followed by raw body bytes.
fn with_body(key: ApiKey, version: i16, body: &[u8]) -> Option<Vec<u8>> {
    let mut f = frame(key, version, &Empty)?;
    f.extend_from_slice(body);
    Some(f)
}

/// Encodes nothing: lets [`frame`] write a header alone.
struct Empty;
impl Encodable for Empty {
    fn encode<B: kafka_protocol::protocol::buf::ByteBufMut>(&self, _: &mut B, _: i16) -> anyhow::Result<()> {
        Ok(())
    }
    fn compute_size(&self, _: i16) -> anyhow::Result<usize> {
        Ok(0)
    }
}

fn hazards() -> Vec<Seed> {
    let cases: [(&str, ApiKey, i16, &[u8]); 4] = [
        // The regression: a non-flexible array count of i32::MAX (~150 GB of topics).
        ("hazard-metadata-v4-count-7fffffff", ApiKey::Metadata, 4, &[0x7f, 0xff, 0xff, 0xff]),
        // The same for a compact (flexible) array: varint 0xffffffff.
        ("hazard-metadata-v12-compact-count", ApiKey::Metadata, 12, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        // Produce v9: null transactional id, acks, timeout, then a huge compact topic_data count.
        ("hazard-produce-v9-compact-count", ApiKey::Produce, 9, &[0x00, 0xff, 0xff, 0x00, 0x00, 0x75, 0x30, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        // Fetch v4: replica, max wait, min bytes, max bytes, isolation, then topics count i32::MAX.
        ("hazard-fetch-v4-count-7fffffff", ApiKey::Fetch, 4, &[0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0xf4, 0, 0, 0, 1, 0, 0x10, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]),
    ];
    cases.iter().filter_map(|(name, key, v, body)| Some(((*name).to_string(), with_body(*key, *v, body)?))).collect()
}

fn api_name(key: ApiKey) -> String {
    format!("{key:?}").to_lowercase()
}

fn seeds() -> Vec<Seed> {
    let mut out = hazards();
    for entry in sluice::handlers::REGISTRY {
        for v in entry.min_version..=entry.max_version {
            let name = api_name(entry.key);
            if let Some(f) = with_body(entry.key, v, &[]) {
                out.push((format!("{name}-v{v}-empty"), f));
            }
            if let Some(f) = populated(entry.key, v) {
                out.push((format!("{name}-v{v}-one-partition"), f));
            }
        }
    }
    out
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).map_or_else(|| PathBuf::from("seeds/request"), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let seeds = seeds();
    for (name, bytes) in &seeds {
        std::fs::write(Path::new(&dir).join(name), bytes)?;
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
    Ok(())
}
