//! Test harness shared by the integration tests: runs the real `sluice` binary on a free
//! loopback port with a fresh data directory, waits for its ready line, and can stop it
//! cleanly, kill it with SIGKILL, and start it again on the same port and data.

#![allow(dead_code)]

pub mod cluster;
pub mod rng;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a broker may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running (or stopped) broker process.
pub struct Broker {
    pub port: u16,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    /// The `--listeners` value (the client listener, plus a controller listener in a cluster).
    listeners: String,
    extra_args: Vec<String>,
    log: Arc<Mutex<String>>,
}

/// The program the harness starts: `$SLUICE_TEST_BIN` when set (any program that takes sluice's
/// flags and prints `sluice ready`, e.g. a wrapper running Apache Kafka, to check that a test
/// holds against the reference broker), else this package's `sluice` binary.
pub fn broker_binary() -> std::ffi::OsString {
    std::env::var_os("SLUICE_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_sluice").into())
}

/// A free TCP port on 127.0.0.1 (bound and released; the broker binds it next).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

impl Broker {
    /// Starts a broker with a fresh data directory and `extra_args` (e.g. `--set k=v`).
    pub fn start(extra_args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let port = free_port();
        let mut broker = Self::unstarted(data_dir, port, format!("PLAINTEXT://127.0.0.1:{port}"), extra_args);
        broker._tmp = Some(tmp);
        broker.spawn();
        broker
    }

    /// A node not started yet (see [`Self::launch`]), with its own listeners and data directory.
    pub fn unstarted(data_dir: PathBuf, port: u16, listeners: String, extra_args: &[&str]) -> Self {
        Self {
            port,
            data_dir,
            _tmp: None,
            child: None,
            listeners,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            log: Arc::new(Mutex::new(String::new())),
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let ready = self.launch();
        self.wait_ready(&ready);
    }

    /// Waits for the ready line of a [`Self::launch`]ed process.
    pub fn wait_ready(&self, ready: &std::sync::mpsc::Receiver<()>) {
        if ready.recv_timeout(READY_TIMEOUT).is_err() {
            panic!("sluice did not become ready in {READY_TIMEOUT:?}; log:\n{}", self.log_text());
        }
    }

    /// Starts the process without waiting; the receiver gets a message when it is ready.
    pub fn launch(&mut self) -> std::sync::mpsc::Receiver<()> {
        let mut child = Command::new(broker_binary())
            // The broker reads SLUICE_* variables as configs; this one is only for the harness.
            .env_remove("SLUICE_TEST_BIN")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listeners")
            .arg(&self.listeners)
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            let mut ready_sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
                if !ready_sent && line.contains("sluice ready") {
                    ready_sent = true;
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        rx
    }

    /// Everything the broker has logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, no chance to flush or write a clean-shutdown marker.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status success.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        // SAFETY: sending a signal to our own child process by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same port and data directory.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// SIGSTOP (`pause = true`) or SIGCONT the process.
    pub fn pause(&self, pause: bool) {
        if let Some(child) = &self.child {
            // SAFETY: sending a signal to our own child process by pid.
            unsafe { libc::kill(child.id() as i32, if pause { libc::SIGSTOP } else { libc::SIGCONT }) };
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends one raw frame (size prefix added here) and returns the raw response frame body, or
/// `None` if the broker closed the connection.
pub fn raw_roundtrip(stream: &mut TcpStream, body: &[u8]) -> Option<Vec<u8>> {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).ok()?;
    read_frame(stream)
}

/// Reads one size-prefixed frame, or `None` on EOF/error.
pub fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let size = i32::from_be_bytes(size);
    let mut body = vec![0u8; usize::try_from(size).ok()?];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

/// A raw ApiVersions v0 request (header v1: key, version, correlation id, client id).
pub fn api_versions_v0(correlation_id: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&18i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&correlation_id.to_be_bytes());
    b.extend_from_slice(&4i16.to_be_bytes());
    b.extend_from_slice(b"test");
    b
}

/// Asserts the broker answers a well-formed ApiVersions request on a new connection.
pub fn assert_serves(broker: &Broker) {
    let mut stream = TcpStream::connect(broker.bootstrap()).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let response = raw_roundtrip(&mut stream, &api_versions_v0(7)).expect("broker answers ApiVersions");
    assert_eq!(&response[..4], &7i32.to_be_bytes(), "correlation id echoed");
    assert_eq!(&response[4..6], &0i16.to_be_bytes(), "no error");
}

/// A TCP proxy that forwards bytes both ways between clients and `upstream`, and on a seeded
/// schedule severs every live connection (both sockets shut down), so responses to requests
/// the broker has already handled are lost and clients must retry.
pub struct FaultProxy {
    pub port: u16,
    cuts: Arc<std::sync::atomic::AtomicU64>,
    cutting: Arc<std::sync::atomic::AtomicBool>,
    accepted: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    listener: Option<TcpListener>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// One proxied connection: both sockets, and whether its forwarding has ended by itself.
struct ProxiedConnection {
    client: TcpStream,
    upstream: TcpStream,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl FaultProxy {
    /// Binds a loopback port now, so it can be advertised before the broker starts; forwards
    /// nothing until [`FaultProxy::start`].
    pub fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy port");
        Self {
            port: listener.local_addr().expect("proxy addr").port(),
            cuts: Arc::default(),
            cutting: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            accepted: Arc::default(),
            stop: Arc::default(),
            listener: Some(listener),
            threads: Vec::new(),
        }
    }

    /// Starts forwarding to `upstream` and cutting all live connections every
    /// `cut_every_ms.0..=cut_every_ms.1` milliseconds (chosen by an xorshift seeded with `seed`).
    pub fn start(&mut self, upstream: String, cut_every_ms: (u64, u64), seed: u64) {
        use std::sync::atomic::Ordering;
        let listener = self.listener.take().expect("FaultProxy::start called twice");
        let live: Arc<Mutex<Vec<ProxiedConnection>>> = Arc::default();
        let (stop, accepted, live_accept) = (Arc::clone(&self.stop), Arc::clone(&self.accepted), Arc::clone(&live));
        self.threads.push(std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(upstream) = TcpStream::connect(&upstream) else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
                pump(&client, &upstream, &done);
                pump(&upstream, &client, &done);
                if let Ok(mut l) = live_accept.lock() {
                    l.retain(|c| !c.done.load(Ordering::SeqCst));
                    l.push(ProxiedConnection { client, upstream, done });
                }
            }
        }));
        let (stop, cuts, cutting) = (Arc::clone(&self.stop), Arc::clone(&self.cuts), Arc::clone(&self.cutting));
        let (low, high) = cut_every_ms;
        self.threads.push(std::thread::spawn(move || {
            let mut x = seed | 1;
            // The sleep is the fault schedule itself, not a wait for some condition.
            while !stop.load(Ordering::SeqCst) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                std::thread::sleep(Duration::from_millis(low + x % (high - low + 1)));
                if !cutting.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(mut l) = live.lock() else { return };
                for c in l.drain(..) {
                    if !c.done.load(Ordering::SeqCst) {
                        cuts.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = c.client.shutdown(std::net::Shutdown::Both);
                    let _ = c.upstream.shutdown(std::net::Shutdown::Both);
                }
            }
        }));
    }

    /// From now on only forwards; connections are no longer cut.
    pub fn stop_cutting(&self) {
        self.cutting.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Live connections severed so far.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Client connections accepted (and connected upstream) so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect(self.address());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Copies `from` → `to` on a new thread until either side fails, then shuts both down.
fn pump(from: &TcpStream, to: &TcpStream, done: &Arc<std::sync::atomic::AtomicBool>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else { return };
    let done = Arc::clone(done);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = to.shutdown(std::net::Shutdown::Both);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}

/// One record batch found in a segment file by [`segment_batches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpan {
    /// Byte position of the batch in the file.
    pub position: u64,
    /// Whole batch size: `batchLength + 12`.
    pub size: u64,
    pub base_offset: i64,
    pub last_offset_delta: i32,
    /// RecordBatch attributes; the low 3 bits are the compression codec.
    pub attributes: i16,
}

/// Walks the RecordBatch v2 headers of a segment file's bytes (baseOffset i64, batchLength
/// i32, partitionLeaderEpoch i32, magic i8, crc u32, attributes i16, lastOffsetDelta i32, ...)
/// from the start, stopping where the bytes end or stop looking like a whole batch.
pub fn segment_batches(bytes: &[u8]) -> Vec<BatchSpan> {
    const HEADER_LEN: usize = 61;
    let be = |at: usize, n: usize| bytes[at..at + n].iter().fold(0i64, |acc, b| (acc << 8) | i64::from(*b));
    let mut spans = Vec::new();
    let mut pos = 0usize;
    while pos + HEADER_LEN <= bytes.len() {
        let batch_length = be(pos + 8, 4) as i32;
        let size = i64::from(batch_length) + 12;
        if size < HEADER_LEN as i64 || pos as i64 + size > bytes.len() as i64 {
            break;
        }
        spans.push(BatchSpan {
            position: pos as u64,
            size: size as u64,
            base_offset: be(pos, 8),
            last_offset_delta: be(pos + 23, 4) as i32,
            attributes: be(pos + 21, 2) as i16,
        });
        pos += size as usize;
    }
    spans
}

/// A minimal Kafka client over one TCP connection, encoding requests with kafka-protocol:
/// for tests that need exact control over what is sent (fetch sessions, error paths).
pub struct RawClient {
    stream: TcpStream,
    correlation_id: i32,
}

impl RawClient {
    pub fn connect(broker: &Broker) -> Self {
        let stream = TcpStream::connect(broker.bootstrap()).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
        Self { stream, correlation_id: 0 }
    }

    /// Sends `request` at `version` and decodes the response.
    pub fn send<R>(&mut self, request: &R, version: i16) -> R::Response
    where
        R: kafka_protocol::protocol::Request,
    {
        use bytes::BytesMut;
        use kafka_protocol::messages::RequestHeader;
        use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, R::header_version(version)).expect("encode header");
        request.encode(&mut buf, version).expect("encode request");
        let body = raw_roundtrip(&mut self.stream, &buf).expect("broker answered");
        let mut body = bytes::Bytes::from(body);
        let header_version = <R::Response as kafka_protocol::protocol::HeaderVersion>::header_version(version);
        let response_header =
            kafka_protocol::messages::ResponseHeader::decode(&mut body, header_version).expect("response header");
        assert_eq!(response_header.correlation_id, self.correlation_id, "responses come back in order");
        R::Response::decode(&mut body, version).expect("decode response")
    }
}

/// Encodes `values` as one uncompressed v2 record batch (keys are the values' indexes).
pub fn record_batch(values: &[&[u8]]) -> bytes::Bytes {
    idempotent_batch(-1, -1, 0, values)
}

/// Encodes `values` as one uncompressed v2 record batch of producer `producer_id` in
/// `producer_epoch` whose first record has sequence `base_sequence` (producer id -1: a batch
/// without a producer, whose sequences the broker ignores). Keys are the values' indexes.
pub fn idempotent_batch(producer_id: i64, producer_epoch: i16, base_sequence: i32, values: &[&[u8]]) -> bytes::Bytes {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = values
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
            // kafka-protocol starts a new batch whenever offset - sequence changes; keeping them
            // in step makes all values one batch, its base sequence the first record's.
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(bytes::Bytes::from(i.to_string())),
            value: Some(bytes::Bytes::copy_from_slice(v)),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode batch");
    buf.freeze()
}

impl RawClient {
    /// Connects to `bootstrap` ("host:port").
    pub fn connect_to(bootstrap: &str) -> Self {
        let stream = TcpStream::connect(bootstrap).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
        Self { stream, correlation_id: 0 }
    }
}

impl Broker {
    /// Resident memory of the broker process in KiB (VmRSS), if it is running.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}
