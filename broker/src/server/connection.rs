//! One client connection.
//!
//! The reader takes frames off the socket (size checked against `socket.request.max.bytes` and
//! admitted against `queued.max.request.bytes` before its buffer exists), decodes the header and
//! starts the handler; the writer sends responses strictly in request order. At most
//! `queued.max.requests` requests are in flight per connection. Anything malformed closes this
//! connection only.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::Broker;
use crate::handlers::api_versions::unsupported_version_response;
use crate::handlers::{is_supported, lookup, CallResult, OrderGate, RequestContext};
use crate::protocol::codec::decode_request;
use crate::protocol::frame::check_size;
use crate::protocol::ProtocolError;

/// A response frame with its share of the connection's response budget, or none (acks=0), or
/// why the connection must close.
type Pending = Result<Option<(Bytes, Option<OwnedSemaphorePermit>)>, ProtocolError>;

/// How long in-flight requests may take to finish once shutdown begins.
const SHUTDOWN_DRAIN_MS: u64 = 5_000;
/// How long a frame may go without a byte arriving once its size is read. The frame holds its
/// `queued.max.request.bytes` admission meanwhile, so a client that stalls mid-frame (slowloris)
/// must lose it rather than starve every other connection. 30 s is Kafka clients' default
/// `request.timeout.ms`: a real client has given up on the request by then.
const FRAME_STALL_MS: u64 = 30_000;

/// Serves one connection until the peer closes it, it misbehaves, or the broker shuts down.
pub async fn serve(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr, request_bytes: Arc<Semaphore>) {
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel::<JoinHandle<Pending>>(broker.config.queued_max_requests);
    let closing = CancellationToken::new();
    let writer_task = broker.tasks.spawn(write_responses(writer, rx, closing.clone()));
    let client_host = format!("/{}", peer.ip());
    let result = read_requests(&broker, &mut reader, &tx, &request_bytes, &closing, &client_host).await;
    if let Err(e) = &result {
        tracing::info!(%peer, error = %e, "closing connection");
    }
    drop(tx);
    let drain = tokio::time::timeout(std::time::Duration::from_millis(SHUTDOWN_DRAIN_MS), writer_task);
    if drain.await.is_err() {
        tracing::warn!(%peer, "in-flight requests did not finish in time; connection dropped");
    }
}

async fn read_requests(
    broker: &Arc<Broker>,
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    tx: &mpsc::Sender<JoinHandle<Pending>>,
    request_bytes: &Arc<Semaphore>,
    closing: &CancellationToken,
    client_host: &str,
) -> Result<(), ProtocolError> {
    let max = broker.config.socket_request_max_bytes;
    // The gate the next request waits on: requests run one after another per connection.
    let mut previous: Option<tokio::sync::oneshot::Receiver<()>> = None;
    // Response bytes built but not yet written: a client that stops reading stalls its own
    // requests instead of growing the broker's memory.
    let response_budget = broker.config.fetch_max_bytes.clamp(1 << 20, Semaphore::MAX_PERMITS);
    let responses = Arc::new(Semaphore::new(response_budget));
    let idle = std::time::Duration::from_millis(broker.config.connections_max_idle_ms.max(1));
    loop {
        let mut size = [0u8; 4];
        tokio::select! {
            () = broker.shutdown.cancelled() => return Ok(()),
            () = closing.cancelled() => return Ok(()),
            r = tokio::time::timeout(idle, reader.read_exact(&mut size)) => match r {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Ok(()),
                Err(_) => {
                    tracing::info!("connection idle for connections.max.idle.ms; closing");
                    return Ok(());
                }
            },
        }
        let size = check_size(size, max)?;
        // A frame larger than the whole admission budget still gets in, alone.
        let budget = broker.config.queued_max_request_bytes.clamp(1, Semaphore::MAX_PERMITS);
        let permits = u32::try_from(size.min(budget)).unwrap_or(u32::MAX);
        let Ok(permit) = Arc::clone(request_bytes).acquire_many_owned(permits).await else { return Ok(()) };
        let mut frame = BytesMut::zeroed(size);
        if !read_body(reader, &mut frame).await {
            return Ok(());
        }
        let (gate, next) = OrderGate::new();
        let held = gate.clone();
        let request = start_request(broker, frame.freeze(), gate, client_host)?;
        let after = previous.replace(next);
        let responses = Arc::clone(&responses);
        let handle = broker.tasks.spawn(async move {
            if let Some(after) = after {
                // An error only means the previous request's gate was dropped: it is done.
                let _ = after.await;
            }
            let result = request.await;
            drop(permit);
            let pending = match result {
                Ok(Some(frame)) => {
                    let wanted = u32::try_from(frame.len().clamp(1, response_budget)).unwrap_or(u32::MAX);
                    let budget = Arc::clone(&responses).acquire_many_owned(wanted).await.ok();
                    Ok(Some((frame, budget)))
                }
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            drop(held);
            pending
        });
        if tx.send(handle).await.is_err() {
            return Ok(());
        }
    }
}

/// Fills `frame`; false when the peer closes or sends nothing for [`FRAME_STALL_MS`].
async fn read_body(reader: &mut tokio::net::tcp::OwnedReadHalf, frame: &mut [u8]) -> bool {
    let stall = std::time::Duration::from_millis(FRAME_STALL_MS);
    let mut filled = 0;
    while filled < frame.len() {
        match tokio::time::timeout(stall, reader.read(&mut frame[filled..])).await {
            Ok(Ok(n)) if n > 0 => filled += n,
            Err(_) => {
                tracing::info!(received = filled, size = frame.len(), "frame stalled; closing connection");
                return false;
            }
            _ => return false,
        }
    }
    true
}

/// Decodes the header and starts the handler; the returned future yields the response frame.
fn start_request(
    broker: &Arc<Broker>,
    frame: Bytes,
    gate: OrderGate,
    client_host: &str,
) -> Result<std::pin::Pin<Box<dyn std::future::Future<Output = CallResult> + Send>>, ProtocolError> {
    let request = decode_request(frame, is_supported)?;
    let span = tracing::debug_span!(
        "request",
        api_key = ?request.api_key,
        api_version = request.api_version,
        correlation_id = request.correlation_id,
        client_id = request.client_id.as_deref().unwrap_or(""),
    );
    let entry = lookup(request.api_key);
    let supported = is_supported(request.api_key, request.api_version);
    match entry {
        Some(entry) if supported => {
            let ctx = RequestContext {
                api_version: request.api_version,
                correlation_id: request.correlation_id,
                client_id: request.client_id,
                client_host: client_host.to_string(),
                gate,
            };
            Ok(Box::pin((entry.call)(Arc::clone(broker), ctx, request.body).instrument(span)))
        }
        _ if request.api_key == ApiKey::ApiVersions => {
            let response = unsupported_version_response(request.correlation_id);
            Ok(Box::pin(async move { response.map(Some) }))
        }
        _ => Err(ProtocolError::UnsupportedVersion { api_key: request.api_key as i16, version: request.api_version }),
    }
}

async fn write_responses(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<JoinHandle<Pending>>,
    closing: CancellationToken,
) {
    while let Some(handle) = rx.recv().await {
        // The budget permit is held until the frame is written.
        let (frame, _budget) = match handle.await {
            Ok(Ok(Some(written))) => written,
            Ok(Ok(None)) => continue,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "request failed; closing connection");
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, "request handler panicked; closing connection");
                break;
            }
        };
        if writer.write_all(&frame).await.is_err() {
            break;
        }
    }
    closing.cancel();
    let _ = writer.shutdown().await;
}
