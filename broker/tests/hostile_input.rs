//! Hostile input on the wire: every malformed frame closes its own connection (or is answered
//! with Kafka's error code where the protocol has one), never aborts or hangs the broker, and
//! never disturbs another connection (ARCHITECTURE.md, "Bad input and limits").
//!
//! Each test starts a real broker, sends bytes on a raw `TcpStream`, checks the connection's fate
//! within a few seconds, then checks the process is still running and still serves.
//! The randomized test prints its seed; `SLUICE_TEST_SEED=<n>` replays it.

// A test fails by panicking: expect/unwrap/panic are its assertions.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{api_versions_v0, assert_serves, raw_roundtrip, read_frame, Broker};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, MetadataRequest, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// How long a connection may take to be closed or answered after bad input.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(5);

const API_VERSIONS: i16 = 18;
const UNSUPPORTED_VERSION: i16 = 35;

// ---------------------------------------------------------------------------------------------
// Helpers

fn connect(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(broker.bootstrap()).expect("connect");
    stream.set_read_timeout(Some(VERDICT_TIMEOUT)).expect("read timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// A request frame body: header v1 (key, version, correlation id, client id) or, when
/// `flexible`, header v2 (the same plus an empty tagged-fields byte), then `body`.
fn request(api_key: i16, version: i16, correlation_id: i32, flexible: bool, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&api_key.to_be_bytes());
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&correlation_id.to_be_bytes());
    let client_id = b"hostile";
    b.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    b.extend_from_slice(client_id);
    if flexible {
        b.push(0x00);
    }
    b.extend_from_slice(body);
    b
}

/// `body` with its i32 size prefix.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = i32::try_from(body.len()).expect("small frame").to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// What happened to a connection after bad input.
#[derive(Debug, PartialEq)]
enum Fate {
    /// EOF or reset: the broker closed it.
    Closed,
    /// A whole response frame arrived (its body, after the size).
    Answered(Vec<u8>),
    /// Neither within the socket's read timeout ([`VERDICT_TIMEOUT`] unless a test sets less).
    Hung,
}

/// Reads exactly one response frame, or learns that the connection closed or went quiet (each
/// read waits at most the socket's read timeout). Reads no further than that one frame, so the
/// next call sees the next response.
fn fate(stream: &mut TcpStream) -> Fate {
    let mut size = [0u8; 4];
    if let Err(f) = read_full(stream, &mut size) {
        return f;
    }
    let size = usize::try_from(i32::from_be_bytes(size)).expect("broker sent a negative frame size");
    let mut body = vec![0u8; size];
    match read_full(stream, &mut body) {
        Ok(()) => Fate::Answered(body),
        Err(f) => f,
    }
}

fn read_full(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), Fate> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(Fate::Closed),
            Ok(n) => filled += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Err(Fate::Hung),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(Fate::Closed),
        }
    }
    Ok(())
}

fn assert_closed(stream: &mut TcpStream, what: &str) {
    match fate(stream) {
        Fate::Closed => {}
        other => panic!("{what}: expected the broker to close the connection, got {other:?}"),
    }
}

/// Closed, or answered with the request's own correlation id: both are acceptable verdicts.
fn assert_closed_or_answered(stream: &mut TcpStream, correlation_id: i32, what: &str) {
    match fate(stream) {
        Fate::Closed => {}
        Fate::Answered(r) => {
            assert_eq!(r.get(..4), Some(&correlation_id.to_be_bytes()[..]), "{what}: answer to another request")
        }
        Fate::Hung => panic!("{what}: connection neither closed nor answered within {VERDICT_TIMEOUT:?}"),
    }
}

/// The process is still running and a fresh connection is served.
fn assert_alive(broker: &mut Broker, what: &str) {
    assert!(broker.is_running(), "{what}: broker process died; log:\n{}", broker.log_text());
    assert_serves(broker);
}

/// An ApiVersions v0 response body (after the size): correlation id, error code, api ranges.
struct ApiVersionsV0 {
    correlation_id: i32,
    error_code: i16,
    api_keys: Vec<(i16, i16, i16)>,
}

fn parse_api_versions_v0(r: &[u8]) -> ApiVersionsV0 {
    let i16_at = |at: usize| i16::from_be_bytes([r[at], r[at + 1]]);
    let i32_at = |at: usize| i32::from_be_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]);
    assert!(r.len() >= 10, "ApiVersions v0 response too short: {r:02x?}");
    let count = usize::try_from(i32_at(6)).expect("api_keys is not null");
    assert!(r.len() >= 10 + 6 * count, "api_keys array runs past the frame");
    let api_keys = (0..count).map(|i| 10 + 6 * i).map(|at| (i16_at(at), i16_at(at + 2), i16_at(at + 4))).collect();
    ApiVersionsV0 { correlation_id: i32_at(0), error_code: i16_at(4), api_keys }
}

/// The APIs the broker advertises, as (key, min, max).
fn advertised_apis(broker: &Broker) -> Vec<(i16, i16, i16)> {
    let mut stream = connect(broker);
    let r = raw_roundtrip(&mut stream, &api_versions_v0(1)).expect("ApiVersions answered");
    let parsed = parse_api_versions_v0(&r);
    assert_eq!(parsed.error_code, 0);
    parsed.api_keys
}

/// Whether `key` at `version` uses request header v2 (tagged fields).
fn is_flexible(key: i16, version: i16) -> bool {
    ApiKey::try_from(key).is_ok_and(|k| k.request_header_version(version) >= 2)
}

/// How [`send_and_judge`] saw a bad request handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Verdict {
    Closed,
    Answered,
    LongPoll,
}

/// Sends `frame_body`, then a well-formed ApiVersions v0 on the same connection, and checks the
/// first was either refused by closing or answered in order, so that a request that decodes by
/// chance and wants no answer (Produce acks=0) still gets a verdict. A Fetch that decodes by
/// chance may legally long-poll; `may_wait` tolerates that one.
fn send_and_judge(broker: &Broker, frame_body: &[u8], correlation_id: i32, may_wait: bool, what: &str) -> Verdict {
    let mut stream = connect(broker);
    let follow_up = correlation_id.wrapping_add(1);
    let mut bytes = framed(frame_body);
    bytes.extend_from_slice(&framed(&api_versions_v0(follow_up)));
    if stream.write_all(&bytes).is_err() {
        return Verdict::Closed;
    }
    loop {
        match fate(&mut stream) {
            Fate::Closed => return Verdict::Closed,
            Fate::Answered(r) => {
                let id = r.get(..4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if id == Some(follow_up) {
                    return Verdict::Answered; // the connection survived a request that decoded
                }
                assert_eq!(id, Some(correlation_id), "{what}: answer out of order");
            }
            Fate::Hung if may_wait => return Verdict::LongPoll,
            Fate::Hung => panic!("{what}: connection neither closed nor answered within {VERDICT_TIMEOUT:?}"),
        }
    }
}

/// Waits (briefly: the log is read by another thread) for the broker to log `needle`.
fn log_mentions(broker: &Broker, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if broker.log_text().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// splitmix64: a seeded, dependency-free generator for the randomized tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

fn seed() -> u64 {
    let seed = std::env::var("SLUICE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("hostile_input seed: SLUICE_TEST_SEED={seed}");
    seed
}

// ---------------------------------------------------------------------------------------------
// The kafka-protocol `Vec::with_capacity(count_from_wire)` hazard

/// The hazard tests below are only as exact as [`request`]: with a count that is not a lie, the
/// same headers and bodies are well-formed requests the broker answers.
#[test]
fn hand_built_requests_are_well_formed() {
    let mut broker = Broker::start(&[]);
    let cases: [(&str, Vec<u8>); 3] = [
        // topics: empty array; allow_auto_topic_creation.
        ("Metadata v4", request(3, 4, 41, false, &[0x00, 0x00, 0x00, 0x00, 0x01])),
        // topics: compact empty array; allow_auto_topic_creation; include_topic_authorized_operations; tags.
        ("Metadata v12", request(3, 12, 42, true, &[0x01, 0x01, 0x00, 0x00])),
        // null transactional id; acks -1; timeout 30000; topic_data: compact empty array; tags.
        ("Produce v9", request(0, 9, 43, true, &[0x00, 0xff, 0xff, 0x00, 0x00, 0x75, 0x30, 0x01, 0x00])),
    ];
    for (what, body) in cases {
        let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
        let mut stream = connect(&broker);
        let r =
            raw_roundtrip(&mut stream, &body).unwrap_or_else(|| panic!("{what}: a well-formed request is answered"));
        assert_eq!(r.get(..4), Some(&correlation_id.to_be_bytes()[..]), "{what}");
    }
    assert_alive(&mut broker, "after well-formed hand-built requests");
}

/// The exact regression: Metadata v4 whose body is `7f ff ff ff`, a topics count that makes the
/// decoder ask for ~150 GB. The broker must close (or answer), never abort.
#[test]
fn metadata_v4_with_huge_topic_count_does_not_abort() {
    let mut broker = Broker::start(&[]);
    let mut stream = connect(&broker);
    let body = request(3, 4, 401, false, &[0x7f, 0xff, 0xff, 0xff]);
    stream.write_all(&framed(&body)).expect("send");
    assert_closed_or_answered(&mut stream, 401, "Metadata v4 topics count 0x7fffffff");
    // The body decoder really ran (and asked for the 154,618,822,584 bytes that abort a process
    // with the system allocator): it is the decoder that refused the request.
    assert!(
        log_mentions(&broker, "malformed request body"),
        "the hazard did not reach the body decoder; log:\n{}",
        broker.log_text()
    );
    assert_alive(&mut broker, "after Metadata v4 huge count");
}

/// The same trick through a compact (flexible) array: Metadata v12, count varint 0xffffffff.
#[test]
fn metadata_v12_with_huge_compact_count_does_not_abort() {
    let mut broker = Broker::start(&[]);
    let mut stream = connect(&broker);
    let body = request(3, 12, 412, true, &[0xff, 0xff, 0xff, 0xff, 0x0f]);
    stream.write_all(&framed(&body)).expect("send");
    assert_closed_or_answered(&mut stream, 412, "Metadata v12 compact count 0xffffffff");
    assert_alive(&mut broker, "after Metadata v12 huge count");
}

/// Produce v9 (flexible): null transactional id, acks, timeout, then a huge compact topic_data
/// count; and the same with a record batch array count lying inside a valid-looking topic.
#[test]
fn produce_v9_with_huge_compact_topic_count_does_not_abort() {
    let mut broker = Broker::start(&[]);
    let bodies: [&[u8]; 2] = [
        &[0x00, 0xff, 0xff, 0x00, 0x00, 0x75, 0x30, 0xff, 0xff, 0xff, 0xff, 0x0f],
        // One topic "t", then a partition_data count of 0xfffffffe.
        &[0x00, 0xff, 0xff, 0x00, 0x00, 0x75, 0x30, 0x02, 0x02, b't', 0xff, 0xff, 0xff, 0xff, 0x0f],
    ];
    for (i, b) in bodies.iter().enumerate() {
        let correlation_id = 900 + i as i32;
        let mut stream = connect(&broker);
        stream.write_all(&framed(&request(0, 9, correlation_id, true, b))).expect("send");
        assert_closed_or_answered(&mut stream, correlation_id, "Produce v9 huge compact count");
        assert_alive(&mut broker, "after Produce v9 huge count");
    }
}

// ---------------------------------------------------------------------------------------------
// Framing

/// Sizes 0, -1 and i32::MIN close the connection.
#[test]
fn zero_and_negative_frame_sizes_close() {
    let mut broker = Broker::start(&[]);
    for size in [0i32, -1, i32::MIN] {
        let mut stream = connect(&broker);
        stream.write_all(&size.to_be_bytes()).expect("send size");
        assert_closed(&mut stream, &format!("frame size {size}"));
        assert_alive(&mut broker, &format!("after frame size {size}"));
    }
}

/// A size above `socket.request.max.bytes` closes the connection before any body arrives.
#[test]
fn frame_above_socket_request_max_bytes_closes() {
    let mut broker = Broker::start(&["--set", "socket.request.max.bytes=1048576"]);
    let mut stream = connect(&broker);
    stream.write_all(&(2i32 << 20).to_be_bytes()).expect("send size");
    assert_closed(&mut stream, "2 MiB frame with a 1 MiB limit");
    // Exactly the limit is still admitted: a 1 MiB frame that never completes is not refused.
    let mut at_limit = connect(&broker);
    at_limit.write_all(&(1i32 << 20).to_be_bytes()).expect("send size");
    at_limit.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    assert_eq!(fate(&mut at_limit), Fate::Hung, "a frame of exactly socket.request.max.bytes is accepted");
    assert_alive(&mut broker, "after oversized frame");
}

/// An HTTP request arrives as the size 1195725856 ("GET ") and is refused by its size.
#[test]
fn http_request_closes() {
    let mut broker = Broker::start(&[]);
    let mut stream = connect(&broker);
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    assert_closed(&mut stream, "HTTP GET");
    assert_alive(&mut broker, "after HTTP GET");
}

/// A TLS ClientHello on the plaintext port: record type 0x16, version 3.1, length, handshake.
#[test]
fn tls_client_hello_closes() {
    let mut broker = Broker::start(&[]);
    let mut stream = connect(&broker);
    let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
    hello.extend_from_slice(&[0xab; 32]); // client random
    stream.write_all(&hello).expect("send");
    assert_closed(&mut stream, "TLS ClientHello");
    assert_alive(&mut broker, "after TLS ClientHello");
}

/// A frame of 3 bytes cannot hold the fixed request header (8 bytes).
#[test]
fn frame_shorter_than_a_request_header_closes() {
    let mut broker = Broker::start(&[]);
    for len in [1usize, 3, 7] {
        let mut stream = connect(&broker);
        stream.write_all(&framed(&vec![0u8; len][..])).expect("send");
        assert_closed(&mut stream, &format!("frame of {len} bytes"));
    }
    // The fixed part is there but the client id length runs past the end.
    let mut stream = connect(&broker);
    let mut short = request(3, 1, 5, false, &[]);
    short.truncate(10);
    short[8..10].copy_from_slice(&100i16.to_be_bytes());
    stream.write_all(&framed(&short)).expect("send");
    assert_closed(&mut stream, "client id longer than the frame");
    assert_alive(&mut broker, "after short frames");
}

/// A frame that declares 100 MiB (the default limit, so admitted) and then the client vanishes
/// after 10 bytes. Repeated, so a leaked admission permit or buffer would show.
#[test]
fn client_vanishing_mid_frame_releases_everything() {
    let mut broker = Broker::start(&[]);
    for _ in 0..5 {
        let mut stream = connect(&broker);
        stream.write_all(&(100i32 << 20).to_be_bytes()).expect("send size");
        stream.write_all(&[0x42; 10]).expect("send 10 bytes");
        drop(stream);
        std::thread::sleep(Duration::from_millis(50));
    }
    // Five 100 MiB admissions would exceed the default queued.max.request.bytes if any leaked.
    assert_alive(&mut broker, "after clients vanished mid-frame");
    let mut stream = connect(&broker);
    let big = request(18, 0, 77, false, &vec![0u8; 4 << 20]);
    stream.write_all(&framed(&big)).expect("send a 4 MiB frame");
    assert_closed_or_answered(&mut stream, 77, "a large frame after vanished clients");
    assert_alive(&mut broker, "after a large frame");
}

// ---------------------------------------------------------------------------------------------
// API keys and versions

/// An api key Kafka does not define (999) closes the connection.
#[test]
fn unknown_api_key_closes() {
    let mut broker = Broker::start(&[]);
    for key in [999i16, -1, i16::MAX] {
        let mut stream = connect(&broker);
        stream.write_all(&framed(&request(key, 0, 3, false, &[]))).expect("send");
        assert_closed(&mut stream, &format!("api key {key}"));
    }
    assert_alive(&mut broker, "after unknown api keys");
}

/// A known api key at a version Sluice does not serve (Produce v99, Produce v-1) closes.
#[test]
fn unsupported_version_of_a_known_api_closes() {
    let mut broker = Broker::start(&[]);
    for version in [99i16, -1, i16::MIN] {
        let mut stream = connect(&broker);
        stream.write_all(&framed(&request(0, version, 3, false, &[0; 16]))).expect("send");
        assert_closed(&mut stream, &format!("Produce v{version}"));
    }
    assert_alive(&mut broker, "after unsupported versions");
}

/// ApiVersions v99 is answered at v0: response header v0, UNSUPPORTED_VERSION and our ranges,
/// and the client can then retry on the same connection.
#[test]
fn api_versions_newer_than_ours_is_answered_at_v0() {
    let mut broker = Broker::start(&[]);
    let mut stream = connect(&broker);
    // A flexible-looking header and body, as a newer client would send.
    let body = request(API_VERSIONS, 99, 4242, true, &[0x05, b'n', b'e', b'w', b'!', 0x02, b'1', 0x00]);
    let r = raw_roundtrip(&mut stream, &body).expect("ApiVersions v99 answered");
    let parsed = parse_api_versions_v0(&r);
    assert_eq!(parsed.correlation_id, 4242, "response header v0: the correlation id first");
    assert_eq!(parsed.error_code, UNSUPPORTED_VERSION);
    assert!(!parsed.api_keys.is_empty(), "the supported ranges come with the error");
    let api_versions = parsed.api_keys.iter().find(|(k, _, _)| *k == API_VERSIONS).expect("ApiVersions (18) listed");
    assert!(api_versions.2 >= 3, "ApiVersions max version {} < 3", api_versions.2);
    // The v0 body is complete: nothing follows the api_keys array.
    assert_eq!(r.len(), 10 + 6 * parsed.api_keys.len(), "a v0 body has no throttle time or tagged fields");
    // The client retries with a version from the range, on the same connection.
    let retry = raw_roundtrip(&mut stream, &api_versions_v0(4243)).expect("retry answered");
    let retried = parse_api_versions_v0(&retry);
    assert_eq!((retried.correlation_id, retried.error_code), (4243, 0));
    assert_alive(&mut broker, "after ApiVersions v99");
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// Seeded random bodies for every advertised API at every advertised version (and an empty
/// body), each on its own connection: closed or answered in order, never a crash or a hang.
#[test]
fn garbage_bodies_for_every_registered_api() {
    let mut broker = Broker::start(&[]);
    let mut rng = Rng(seed());
    let apis = advertised_apis(&broker);
    assert!(apis.len() >= 2, "registry too small: {apis:?}");
    let mut verdicts = std::collections::HashMap::<Verdict, usize>::new();
    for (key, min, max) in apis {
        for version in min..=max {
            for round in 0..4 {
                let len = match round {
                    0 => 0,
                    1 => 1 + rng.below(8),
                    2 => 8 + rng.below(64),
                    _ => 64 + rng.below(1024),
                };
                let correlation_id = i32::try_from(rng.below(1 << 30)).unwrap_or(1);
                let body = request(key, version, correlation_id, is_flexible(key, version), &rng.bytes(len));
                let what = format!("api {key} v{version}, {len} random bytes");
                let verdict = send_and_judge(&broker, &body, correlation_id, key == ApiKey::Fetch as i16, &what);
                *verdicts.entry(verdict).or_default() += 1;
            }
        }
        assert!(broker.is_running(), "broker died on garbage for api {key}; log:\n{}", broker.log_text());
    }
    eprintln!("garbage requests by verdict: {verdicts:?}");
    assert_alive(&mut broker, "after garbage bodies");
}

fn encode_request<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("hostile")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).expect("encode header");
    body.encode(&mut buf, version).expect("encode body");
    buf.to_vec()
}

/// A v2 record batch of one record, hand-built: 61-byte header + one 8-byte record. The CRC is
/// left zero because the batch is only ever sent truncated here.
fn record_batch_bytes() -> Bytes {
    let record = [0x0e, 0x00, 0x00, 0x00, 0x01, 0x02, b'v', 0x00]; // length 7, null key, value "v"
    let mut b = vec![0u8; 61];
    b[8..12].copy_from_slice(&(49i32 + record.len() as i32).to_be_bytes()); // batch length
    b[16] = 2; // magic
    b[57..61].copy_from_slice(&1i32.to_be_bytes()); // records count
    b.extend_from_slice(&record);
    Bytes::from(b)
}

/// Every prefix of well-formed Metadata v12 and Produce v9/v3 requests (cut anywhere in the
/// header or body): closed or answered, never a crash or a hang.
#[test]
fn truncated_bodies_close_or_answer() {
    let mut broker = Broker::start(&[]);
    let topic = TopicName(StrBytes::from_static_str("truncated"));
    // Auto-creation is left at its default (true): v1-3 cannot say false.
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic.clone()))]));
    let produce = |v: i16| {
        let partition = PartitionProduceData::default().with_index(0).with_records(Some(record_batch_bytes()));
        let request = ProduceRequest::default().with_acks(1).with_timeout_ms(1000).with_topic_data(vec![
            TopicProduceData::default().with_name(topic.clone()).with_partition_data(vec![partition]),
        ]);
        encode_request(ApiKey::Produce, v, 500 + i32::from(v), &request)
    };
    let cases = [
        ("Metadata v12", encode_request(ApiKey::Metadata, 12, 12, &metadata)),
        ("Metadata v1", encode_request(ApiKey::Metadata, 1, 1, &metadata)),
        ("Produce v9", produce(9)),
        ("Produce v3", produce(3)),
    ];
    for (what, full) in cases {
        let correlation_id = i32::from_be_bytes([full[4], full[5], full[6], full[7]]);
        for cut in 1..full.len() {
            send_and_judge(
                &broker,
                &full[..cut],
                correlation_id,
                false,
                &format!("{what} cut at {cut}/{}", full.len()),
            );
        }
        assert!(broker.is_running(), "broker died on truncated {what}; log:\n{}", broker.log_text());
    }
    assert_alive(&mut broker, "after truncated bodies");
}

// ---------------------------------------------------------------------------------------------
// Isolation and limits

/// A bad connection does not disturb a good one: hold a served connection open, send several
/// kinds of garbage on others, then use the first connection again.
#[test]
fn bad_connection_does_not_disturb_another() {
    let mut broker = Broker::start(&[]);
    let mut good = connect(&broker);
    let first = raw_roundtrip(&mut good, &api_versions_v0(1)).expect("good connection served");
    assert_eq!(parse_api_versions_v0(&first).error_code, 0);

    let garbage: [Vec<u8>; 4] = [
        (-1i32).to_be_bytes().to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        framed(&request(3, 4, 9, false, &[0x7f, 0xff, 0xff, 0xff])),
        framed(&request(999, 0, 9, false, &[])),
    ];
    for bytes in &garbage {
        let mut bad = connect(&broker);
        bad.write_all(bytes).expect("send garbage");
        assert_closed_or_answered(&mut bad, 9, "garbage beside a good connection");
    }
    // Half a frame left dangling on another connection must not block anyone either.
    let mut dangling = connect(&broker);
    dangling.write_all(&framed(&api_versions_v0(3))[..7]).expect("send half a frame");

    for id in 2..5 {
        let r = raw_roundtrip(&mut good, &api_versions_v0(id)).expect("good connection still served");
        let parsed = parse_api_versions_v0(&r);
        assert_eq!((parsed.correlation_id, parsed.error_code), (id, 0));
    }
    drop(dangling);
    assert_alive(&mut broker, "after garbage beside a good connection");
}

/// With `max.connections=20`, 40 connections at once: 20 are served, the rest wait (they are
/// not accepted), the broker keeps running, and once they close it serves again.
#[test]
fn connection_flood_is_bounded() {
    let mut broker = Broker::start(&["--set", "max.connections=20"]);
    let mut streams: Vec<TcpStream> = (0..40).map(|_| connect(&broker)).collect();
    for (i, s) in streams.iter_mut().enumerate() {
        s.write_all(&framed(&api_versions_v0(i as i32))).expect("send");
    }
    let mut served = 0;
    for (i, s) in streams.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_millis(if i < 20 { 5_000 } else { 300 }))).expect("timeout");
        if let Some(r) = read_frame(s) {
            assert_eq!(parse_api_versions_v0(&r).correlation_id, i as i32);
            served += 1;
        }
    }
    assert_eq!(served, 20, "exactly max.connections connections are served at once");
    assert!(broker.is_running(), "broker died under a connection flood");
    drop(streams);
    // Freed slots are reused: the waiting (now closed) connections drain and a new one is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect(&broker);
        s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        if raw_roundtrip(&mut s, &api_versions_v0(99)).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "broker did not serve again after the flood closed");
    }
    assert_alive(&mut broker, "after the connection flood");
}

/// Mirrors `FRAME_STALL_MS` in `server/connection.rs`: how long a frame may go without a byte.
const FRAME_STALL: Duration = Duration::from_secs(30);

/// Clients that declare big frames and then stall (slowloris) hold the `queued.max.request.bytes`
/// admission budget: three unfinished 100 MiB frames exceed the 256 MiB default, and requests from
/// everyone else queue behind them. The broker must drop the stalled frames (after `FRAME_STALL`
/// without a byte) and serve again; before that bound existed, it never did.
#[test]
fn stalled_big_frames_are_dropped_and_others_served_again() {
    let mut broker = Broker::start(&[]);
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = connect(&broker);
            s.write_all(&(100i32 << 20).to_be_bytes()).expect("send size");
            s.write_all(&[0x42; 10]).expect("send 10 bytes");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(broker.is_running(), "broker died holding stalled frames");
    // A client arriving now waits behind the stalled frames, but not for ever.
    let mut patient = connect(&broker);
    patient.set_read_timeout(Some(FRAME_STALL + Duration::from_secs(15))).expect("timeout");
    let r = raw_roundtrip(&mut patient, &api_versions_v0(31)).expect("served once the stalled frames are dropped");
    assert_eq!(parse_api_versions_v0(&r).correlation_id, 31);
    assert!(started.elapsed() < FRAME_STALL + Duration::from_secs(15), "took {:?}", started.elapsed());
    // The two admitted stalled frames were closed by the broker (the third is admitted next and
    // stalls in its turn).
    let mut closed = 0;
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        closed += usize::from(fate(s) == Fate::Closed);
    }
    assert!(closed >= 2, "only {closed} of the stalled connections were closed");
    drop(stalled);
    assert_alive(&mut broker, "after stalled big frames");
}

/// The fuzz target's seed corpus (real client requests and the hazard inputs, one frame body per
/// file) replayed against a live broker: each is answered in order or its connection is closed,
/// and the broker keeps serving. Keeps the seeds and the server path in step in every test run.
#[test]
fn fuzz_seeds_replay_against_a_live_broker() {
    let mut broker = Broker::start(&[]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/request");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir).expect("fuzz seeds present").flatten().map(|e| e.path()).collect();
    seeds.sort();
    assert!(seeds.len() > 100, "expected the seed corpus, found {} files", seeds.len());
    let mut verdicts = std::collections::BTreeMap::new();
    for (i, path) in seeds.iter().enumerate() {
        let body = std::fs::read(path).expect("read seed");
        let what = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let correlation_id = body.get(4..8).map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let may_wait = what.starts_with("fetch");
        let verdict = send_and_judge(&broker, &body, correlation_id, may_wait, &what);
        *verdicts.entry(format!("{verdict:?}")).or_insert(0) += 1;
        if i % 40 == 0 {
            assert_alive(&mut broker, &what);
        }
    }
    println!("seed verdicts: {verdicts:?}");
    assert_alive(&mut broker, "after every seed");
}

/// A client that pipelines many large fetches and never reads the answers stalls only itself:
/// unwritten responses are bounded per connection, so the broker's memory stays flat and other
/// clients are served.
#[test]
fn a_client_that_never_reads_cannot_grow_broker_memory() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest};
    let mut broker = Broker::start(&["--set", "fetch.max.bytes=4194304"]);
    let mut client = common::RawClient::connect(&broker);
    let topic = MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("big"))));
    let _ =
        client.send(&MetadataRequest::default().with_topics(Some(vec![topic])).with_allow_auto_topic_creation(true), 9);
    // 4 MiB of data in one partition.
    let value = vec![0x5au8; 64 * 1024];
    for _ in 0..64 {
        let batch = common::record_batch(&[value.as_slice()]);
        let request = ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("big")))
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))]),
        ]);
        assert_eq!(client.send(&request, 9).responses[0].partition_responses[0].error_code, 0);
    }
    let before = broker.rss_kib().unwrap_or(0);
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(4 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("big")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(4 << 20)])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(12)
        .with_correlation_id(1);
    let mut body = BytesMut::new();
    header.encode(&mut body, 2).expect("header");
    fetch.encode(&mut body, 12).expect("fetch");
    let frame = framed(&body);
    // 200 pipelined fetches of 4 MiB each: 800 MiB of answers if the broker buffered them all.
    let mut greedy = connect(&broker);
    greedy.set_write_timeout(Some(Duration::from_secs(5))).expect("write timeout");
    for _ in 0..200 {
        if greedy.write_all(&frame).is_err() {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = broker.rss_kib().unwrap_or(u64::MAX);
    println!("broker RSS before {before} KiB, with the unread fetches {after} KiB");
    assert!(after < before + 200 * 1024, "unread responses grew the broker by {} KiB", after - before);
    assert_alive(&mut broker, "while a client refuses to read");
    drop(greedy);
}

/// Connections that send nothing are closed after `connections.max.idle.ms`, freeing their
/// `max.connections` slot.
#[test]
fn idle_connections_are_closed() {
    let mut broker = Broker::start(&["--set", "connections.max.idle.ms=300", "--set", "max.connections=2"]);
    let mut idle_a = connect(&broker);
    let mut idle_b = connect(&broker);
    idle_a.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    idle_b.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    assert_eq!(fate(&mut idle_a), Fate::Closed, "the idle connection was closed");
    assert_eq!(fate(&mut idle_b), Fate::Closed);
    assert_alive(&mut broker, "both slots free again");
}
