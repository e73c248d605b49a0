//! The controller-to-controller network.
//!
//! Three layers, so that a deterministic simulation can swap the bottom one out:
//!
//! - **Messages**: [`RpcRequest`] / [`RpcResponse`] carry the Raft RPCs and opaque application
//!   requests (forwarded admin operations, broker heartbeats...). [`dispatch`] answers one request
//!   against a local [`Raft`] and [`AppHandler`]; it knows nothing about sockets.
//! - **Raft glue**: [`PeerClient`] implements openraft's `RaftNetwork` over any [`Transport`]
//!   (something that delivers one `RpcRequest` to an address and returns its `RpcResponse`), and
//!   [`NetworkFactory`] hands Raft one `PeerClient` per peer. [`RpcClient`] is also a factory
//!   itself, for the common TCP case.
//! - **TCP transport**: [`RpcClient`] (client side, a small connection pool per peer address) and
//!   [`serve`] (server side). On the wire every message is one frame, `len: u32 big-endian |
//!   payload`, the payload being the message's JSON. A connection carries one request at a time
//!   and each request is answered by exactly one response, in order.
//!
//! Failures map onto openraft's error taxonomy: a refused connection or broken stream is
//! `RPCError::Unreachable` (openraft backs off before retrying), an expired deadline is
//! `RPCError::Timeout`, and a `RaftError` returned by the peer's Raft is `RPCError::RemoteError`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout as RaftTimeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::election::SplitVotes;
use super::{NodeId, Raft, TypeConfig};

/// The largest frame payload either side accepts or sends.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Idle connections kept per peer address.
const MAX_IDLE_PER_PEER: usize = 4;
/// A pooled connection idle longer than this is closed instead of reused. Well under
/// [`SERVER_IDLE_TIMEOUT`], so the client rarely picks a connection the server is about to close.
const POOL_IDLE_MAX: Duration = Duration::from_secs(30);
/// Connections a server holds open at once; further ones are accepted and closed at once.
const MAX_CONNECTIONS: usize = 256;
/// A server closes a connection on which no request arrives for this long.
const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A server gives up writing a response after this long.
const SERVER_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed `accept` (out of file descriptors...) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Payload buffers grow in steps as bytes arrive; a length prefix alone never reserves more.
const READ_STEP: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// What one controller asks another. Raft RPCs plus opaque application requests.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    App(serde_json::Value),
}

/// The answer. Raft results carry the peer's `RaftError` as its Raft returned it; `App` carries
/// the [`AppHandler`]'s value.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    App(serde_json::Value),
    /// The peer could not produce an answer (for instance it would not fit in a frame).
    Failed(String),
}

impl RpcResponse {
    fn kind(&self) -> &'static str {
        match self {
            Self::AppendEntries(_) => "AppendEntries",
            Self::Vote(_) => "Vote",
            Self::InstallSnapshot(_) => "InstallSnapshot",
            Self::App(_) => "App",
            Self::Failed(_) => "Failed",
        }
    }
}

/// Serves application requests (forwarded admin operations, broker heartbeats...).
pub trait AppHandler: Send + Sync + 'static {
    fn handle(&self, request: serde_json::Value) -> Pin<Box<dyn Future<Output = serde_json::Value> + Send + 'static>>;
}

/// Answers one request against the local Raft node and application handler. Transport-agnostic:
/// [`serve`] calls it for every frame, and an in-memory transport can call it directly.
pub async fn dispatch(raft: &Raft, app: &dyn AppHandler, request: RpcRequest) -> RpcResponse {
    match request {
        RpcRequest::AppendEntries(rpc) => RpcResponse::AppendEntries(raft.append_entries(rpc).await),
        RpcRequest::Vote(rpc) => RpcResponse::Vote(raft.vote(rpc).await),
        RpcRequest::InstallSnapshot(rpc) => RpcResponse::InstallSnapshot(raft.install_snapshot(rpc).await),
        RpcRequest::App(value) => RpcResponse::App(app.handle(value).await),
    }
}

/// Why a call to another controller failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcFailure {
    /// No connection, or it broke before the answer arrived. The request may or may not have
    /// been processed if the connection broke after it was sent.
    #[error("controller unreachable: {0}")]
    Unreachable(String),
    /// No answer before the deadline.
    #[error("controller call timed out")]
    Timeout,
    /// The peer answered that it could not serve the request.
    #[error("controller could not serve the request: {0}")]
    Remote(String),
    /// The request does not fit in a frame.
    #[error("request of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte frame bound")]
    TooLarge(usize),
    /// The peer sent something that is not a valid answer to the request.
    #[error("controller protocol violation: {0}")]
    Protocol(String),
}

// ---------------------------------------------------------------------------------------------
// Raft glue, over any transport
// ---------------------------------------------------------------------------------------------

/// Delivers one [`RpcRequest`] to the controller at an address and returns its answer. The TCP
/// implementation is [`RpcClient`]; a simulation substitutes an in-memory one that calls
/// [`dispatch`] on the target node.
pub trait Transport: Clone + Send + Sync + 'static {
    /// One request to `addr`, bounded by `timeout`.
    fn call(
        &self,
        addr: &str,
        request: RpcRequest,
        timeout: Duration,
    ) -> impl Future<Output = Result<RpcResponse, RpcFailure>> + Send;

    /// One application request to `addr`, bounded by `timeout`.
    fn call_app(
        &self,
        addr: &str,
        request: serde_json::Value,
        timeout: Duration,
    ) -> impl Future<Output = Result<serde_json::Value, RpcFailure>> + Send {
        async move {
            match self.call(addr, RpcRequest::App(request), timeout).await? {
                RpcResponse::App(value) => Ok(value),
                RpcResponse::Failed(reason) => Err(RpcFailure::Remote(reason)),
                other => Err(RpcFailure::Protocol(format!("an App request was answered with {}", other.kind()))),
            }
        }
    }
}

/// Builds Raft's per-peer clients over any [`Transport`].
#[derive(Clone)]
pub struct NetworkFactory<T> {
    transport: T,
    local_id: NodeId,
    split_votes: Option<SplitVotes>,
}

impl<T: Transport> NetworkFactory<T> {
    /// `local_id` is this node's id; it only labels timeout errors.
    pub fn new(transport: T, local_id: NodeId) -> Self {
        Self { transport, local_id, split_votes: None }
    }

    /// Reports split votes seen in vote answers to `split_votes` (see [`SplitVotes`]).
    pub fn with_split_votes(mut self, split_votes: SplitVotes) -> Self {
        self.split_votes = Some(split_votes);
        self
    }
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for NetworkFactory<T> {
    type Network = PeerClient<T>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            transport: self.transport.clone(),
            local_id: self.local_id,
            target,
            node: node.clone(),
            split_votes: self.split_votes.clone(),
        }
    }
}

/// Raft's client for one peer: sends its RPCs over the transport to the peer's address.
pub struct PeerClient<T> {
    transport: T,
    local_id: NodeId,
    target: NodeId,
    node: BasicNode,
    split_votes: Option<SplitVotes>,
}

type RaftRpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl<T: Transport> PeerClient<T> {
    /// Sends `request` within the option's soft TTL (so the answer, or our own timeout error,
    /// arrives before openraft's hard deadline drops the call).
    async fn send<E: std::error::Error>(
        &self,
        action: RPCTypes,
        request: RpcRequest,
        option: &RPCOption,
    ) -> Result<RpcResponse, RaftRpcError<E>> {
        let entries = match &request {
            RpcRequest::AppendEntries(rpc) => rpc.entries.len(),
            _ => 0,
        };
        let timeout = option.soft_ttl();
        self.transport.call(&self.node.addr, request, timeout).await.map_err(|failure| match failure {
            RpcFailure::Timeout => {
                RPCError::Timeout(RaftTimeout { action, id: self.local_id, target: self.target, timeout })
            }
            // Openraft resends a smaller batch on PayloadTooLarge; a single oversized entry can
            // never fit, so that case backs off like an unreachable peer instead of looping.
            RpcFailure::TooLarge(_) if entries > 1 => {
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2) as u64))
            }
            other => RPCError::Unreachable(Unreachable::new(&other)),
        })
    }

    fn remote<E: std::error::Error>(&self, error: RaftError<NodeId, E>) -> RaftRpcError<E> {
        RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), error))
    }

    fn unexpected<E: std::error::Error>(&self, action: RPCTypes, response: &RpcResponse) -> RaftRpcError<E> {
        let failure = match response {
            RpcResponse::Failed(reason) => RpcFailure::Remote(reason.clone()),
            other => RpcFailure::Protocol(format!("a {action} request was answered with {}", other.kind())),
        };
        RPCError::Unreachable(Unreachable::new(&failure))
    }
}

impl<T: Transport> RaftNetwork<TypeConfig> for PeerClient<T> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftRpcError> {
        match self.send(RPCTypes::AppendEntries, RpcRequest::AppendEntries(rpc), &option).await? {
            RpcResponse::AppendEntries(Ok(response)) => Ok(response),
            RpcResponse::AppendEntries(Err(error)) => Err(self.remote(error)),
            other => Err(self.unexpected(RPCTypes::AppendEntries, &other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftRpcError<InstallSnapshotError>> {
        match self.send(RPCTypes::InstallSnapshot, RpcRequest::InstallSnapshot(rpc), &option).await? {
            RpcResponse::InstallSnapshot(Ok(response)) => Ok(response),
            RpcResponse::InstallSnapshot(Err(error)) => Err(self.remote(error)),
            other => Err(self.unexpected(RPCTypes::InstallSnapshot, &other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RaftRpcError> {
        let sent = rpc.clone();
        match self.send(RPCTypes::Vote, RpcRequest::Vote(rpc), &option).await? {
            RpcResponse::Vote(Ok(response)) => {
                if let Some(split_votes) = &self.split_votes {
                    split_votes.observe(self.target, &sent, &response);
                }
                Ok(response)
            }
            RpcResponse::Vote(Err(error)) => Err(self.remote(error)),
            other => Err(self.unexpected(RPCTypes::Vote, &other)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

/// Encodes `message` as one frame (length prefix included), refusing payloads over
/// [`MAX_FRAME_BYTES`].
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, RpcFailure> {
    let mut frame = vec![0u8; 4];
    serde_json::to_writer(&mut frame, message).map_err(|e| RpcFailure::Protocol(format!("cannot encode: {e}")))?;
    let len = frame.len() - 4;
    if len > MAX_FRAME_BYTES {
        return Err(RpcFailure::TooLarge(len));
    }
    let prefix = u32::try_from(len).map_err(|_| RpcFailure::TooLarge(len))?.to_be_bytes();
    frame[..4].copy_from_slice(&prefix);
    Ok(frame)
}

/// Reads one frame's payload. `Ok(None)` is a clean end of stream between frames. A length
/// prefix over `max` is an `InvalidData` error before any payload byte is read or reserved, and
/// the payload buffer grows only as bytes actually arrive.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        let n = reader.read(&mut prefix[filled..]).await?;
        if n == 0 {
            return if filled == 0 { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        filled += n;
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {max}-byte bound"),
        ));
    }
    let mut payload = Vec::with_capacity(len.min(READ_STEP));
    let read = (&mut *reader).take(len as u64).read_to_end(&mut payload).await?;
    if read < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(payload))
}

// ---------------------------------------------------------------------------------------------
// TCP client
// ---------------------------------------------------------------------------------------------

type Conn = BufReader<TcpStream>;

struct IdleConn {
    conn: Conn,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<String, Vec<IdleConn>>>,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<IdleConn>>> {
        // The map holds no invariant a panicking holder could break.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The most recently used idle connection to `addr` that still looks open.
    fn take(&self, addr: &str) -> Option<Conn> {
        let mut idle = self.lock();
        let list = idle.get_mut(addr)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < POOL_IDLE_MAX && looks_open(&entry.conn) {
                return Some(entry.conn);
            }
        }
        None
    }

    fn put(&self, addr: &str, conn: Conn) {
        if !conn.buffer().is_empty() {
            return; // bytes nobody asked for: the stream is out of step
        }
        let mut idle = self.lock();
        let list = idle.entry(addr.to_owned()).or_default();
        list.retain(|entry| entry.since.elapsed() < POOL_IDLE_MAX);
        if list.len() < MAX_IDLE_PER_PEER {
            list.push(IdleConn { conn, since: Instant::now() });
        }
    }

    #[cfg(test)]
    fn idle_count(&self, addr: &str) -> usize {
        self.lock().get(addr).map_or(0, Vec::len)
    }
}

/// Whether an idle connection has neither been closed by the peer nor received unsolicited bytes
/// (as far as the runtime has noticed).
fn looks_open(conn: &Conn) -> bool {
    let mut probe = [0u8; 1];
    matches!(conn.get_ref().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// The TCP client side of the controller network. Cheap to clone; clones share one connection
/// pool (at most [`MAX_IDLE_PER_PEER`] idle connections per peer address). Implements
/// `RaftNetworkFactory` directly.
#[derive(Clone, Default)]
pub struct RpcClient {
    pool: Arc<Pool>,
    local_id: NodeId,
    split_votes: Option<SplitVotes>,
}

impl RpcClient {
    pub fn new() -> Self {
        Self::default()
    }

    /// Labels this node's Raft timeout errors with `id` (diagnostics only; defaults to 0).
    pub fn with_local_id(mut self, id: NodeId) -> Self {
        self.local_id = id;
        self
    }

    /// Reports split votes seen in vote answers to `split_votes` (see [`SplitVotes`]).
    pub fn with_split_votes(mut self, split_votes: SplitVotes) -> Self {
        self.split_votes = Some(split_votes);
        self
    }

    /// One application request to the controller at `addr` ("host:port"), bounded by `timeout`.
    pub async fn call_app(
        &self,
        addr: &str,
        request: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, RpcFailure> {
        Transport::call_app(self, addr, request, timeout).await
    }

    async fn exchange(&self, addr: &str, frame: &[u8], idempotent: bool) -> Result<RpcResponse, RpcFailure> {
        if let Some(mut conn) = self.pool.take(addr) {
            match round_trip(&mut conn, frame).await {
                Ok(response) => {
                    self.pool.put(addr, conn);
                    return Ok(response);
                }
                // A pooled connection may have died unnoticed (peer restarted); Raft RPCs are
                // safe to repeat, so they get one more try on a fresh connection.
                Err(RpcFailure::Unreachable(reason)) if idempotent => {
                    tracing::debug!(addr, %reason, "pooled controller connection failed; reconnecting");
                }
                Err(failure) => return Err(failure),
            }
        }
        let mut conn = connect(addr).await?;
        let response = round_trip(&mut conn, frame).await?;
        self.pool.put(addr, conn);
        Ok(response)
    }
}

impl Transport for RpcClient {
    async fn call(&self, addr: &str, request: RpcRequest, timeout: Duration) -> Result<RpcResponse, RpcFailure> {
        let frame = encode_frame(&request)?;
        let idempotent = !matches!(request, RpcRequest::App(_));
        drop(request);
        // Dropping the exchange on timeout drops its connection: it is never pooled mid-call.
        tokio::time::timeout(timeout, self.exchange(addr, &frame, idempotent)).await.unwrap_or(Err(RpcFailure::Timeout))
    }
}

impl RaftNetworkFactory<TypeConfig> for RpcClient {
    type Network = PeerClient<RpcClient>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            transport: self.clone(),
            local_id: self.local_id,
            target,
            node: node.clone(),
            split_votes: self.split_votes.clone(),
        }
    }
}

async fn connect(addr: &str) -> Result<Conn, RpcFailure> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| RpcFailure::Unreachable(format!("cannot connect to {addr}: {e}")))?;
    stream.set_nodelay(true).map_err(|e| RpcFailure::Unreachable(format!("cannot set TCP_NODELAY: {e}")))?;
    Ok(BufReader::new(stream))
}

async fn round_trip(conn: &mut Conn, frame: &[u8]) -> Result<RpcResponse, RpcFailure> {
    conn.get_mut().write_all(frame).await.map_err(|e| RpcFailure::Unreachable(format!("cannot send: {e}")))?;
    let payload = match read_frame(conn, MAX_FRAME_BYTES).await {
        Ok(Some(payload)) => payload,
        Ok(None) => return Err(RpcFailure::Unreachable("connection closed before the answer".to_owned())),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(RpcFailure::Protocol(e.to_string())),
        Err(e) => return Err(RpcFailure::Unreachable(format!("cannot receive: {e}"))),
    };
    serde_json::from_slice(&payload).map_err(|e| RpcFailure::Protocol(format!("undecodable answer: {e}")))
}

// ---------------------------------------------------------------------------------------------
// TCP server
// ---------------------------------------------------------------------------------------------

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type Handler = Arc<dyn Fn(RpcRequest) -> BoxFuture<RpcResponse> + Send + Sync>;

/// Accepts controller connections on `listener` until `shutdown` is cancelled; each frame is one
/// [`RpcRequest`] answered with one [`RpcResponse`], in order per connection. Returns once the
/// listener is closed and every connection has been dropped.
pub async fn serve(listener: TcpListener, raft: Raft, app: Arc<dyn AppHandler>, shutdown: CancellationToken) {
    let handler: Handler = Arc::new(move |request| {
        let raft = raft.clone();
        let app = app.clone();
        Box::pin(async move { dispatch(&raft, app.as_ref(), request).await })
    });
    serve_with(listener, handler, shutdown).await;
}

async fn serve_with(listener: TcpListener, handler: Handler, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "controller listener: accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "controller listener: {MAX_CONNECTIONS} connections open; refusing one");
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        connections.spawn(serve_connection(stream, peer, handler.clone(), shutdown.clone(), permit));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Handler,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    loop {
        let read = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            read = tokio::time::timeout(SERVER_IDLE_TIMEOUT, read_frame(&mut reader, MAX_FRAME_BYTES)) => read,
        };
        let payload = match read {
            Ok(Ok(Some(payload))) => payload,
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                tracing::warn!(%peer, %error, "controller connection: bad frame; closing");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "controller connection idle; closing");
                return;
            }
        };
        let request: RpcRequest = match serde_json::from_slice(&payload) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(%peer, %error, "controller connection: undecodable request; closing");
                return;
            }
        };
        drop(payload);
        let response = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            response = handler(request) => response,
        };
        let frame = match encode_frame(&response) {
            Ok(frame) => frame,
            Err(failure) => {
                tracing::warn!(%peer, %failure, "controller connection: cannot encode answer");
                match encode_frame(&RpcResponse::Failed(failure.to_string())) {
                    Ok(frame) => frame,
                    Err(_) => return,
                }
            }
        };
        drop(response);
        let written = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            written = tokio::time::timeout(SERVER_WRITE_TIMEOUT, writer.write_all(&frame)) => written,
        };
        if !matches!(written, Ok(Ok(()))) {
            tracing::debug!(%peer, "controller connection: cannot write answer; closing");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{Config, ServerState};
    use serde_json::json;

    use super::*;
    use crate::raft::{Command, CommandResult};

    struct Echo;

    impl AppHandler for Echo {
        fn handle(&self, request: serde_json::Value) -> Pin<Box<dyn Future<Output = serde_json::Value> + Send>> {
            Box::pin(async move { json!({ "echo": request }) })
        }
    }

    fn echo_handler() -> Handler {
        Arc::new(|request| {
            Box::pin(async move {
                match request {
                    RpcRequest::App(value) => RpcResponse::App(json!({ "echo": value })),
                    other => RpcResponse::Failed(format!("not served here: {other:?}")),
                }
            })
        })
    }

    async fn start_with(handler: Handler) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_with(listener, handler, shutdown.clone()));
        (addr, shutdown, task)
    }

    async fn dead_addr() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        addr
    }

    #[tokio::test]
    async fn frame_round_trip() {
        let request = RpcRequest::App(json!({ "op": "create_topic", "name": "t", "partitions": 3 }));
        let frame = encode_frame(&request).unwrap();
        assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, frame.len() - 4);

        // Two frames back to back, then a clean end of stream.
        let mut stream = frame.clone();
        stream.extend_from_slice(&encode_frame(&RpcResponse::App(json!([1, 2, 3]))).unwrap());
        let mut reader = stream.as_slice();
        let first: RpcRequest =
            serde_json::from_slice(&read_frame(&mut reader, MAX_FRAME_BYTES).await.unwrap().unwrap()).unwrap();
        assert!(matches!(first, RpcRequest::App(v) if v["partitions"] == 3));
        let second: RpcResponse =
            serde_json::from_slice(&read_frame(&mut reader, MAX_FRAME_BYTES).await.unwrap().unwrap()).unwrap();
        assert!(matches!(second, RpcResponse::App(v) if v == json!([1, 2, 3])));
        assert!(read_frame(&mut reader, MAX_FRAME_BYTES).await.unwrap().is_none());

        // A Raft message survives the trip too.
        let vote = RpcRequest::Vote(VoteRequest::new(openraft::Vote::new(3, 1), None));
        let frame = encode_frame(&vote).unwrap();
        let decoded: RpcRequest =
            serde_json::from_slice(&read_frame(&mut &frame[..], MAX_FRAME_BYTES).await.unwrap().unwrap()).unwrap();
        assert!(matches!(decoded, RpcRequest::Vote(v) if v.vote == openraft::Vote::new(3, 1)));

        // Cut short: in the prefix, and in the payload.
        let err = read_frame(&mut &frame[..2], MAX_FRAME_BYTES).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = read_frame(&mut &frame[..frame.len() - 1], MAX_FRAME_BYTES).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn oversized_prefix_is_rejected_from_the_prefix_alone() {
        // The writer stays open and sends nothing after the prefix: a reader that tried to read
        // (or reserve) the announced payload would hang here instead of failing at once.
        let (mut writer, mut reader) = tokio::io::duplex(64);
        writer.write_all(&((MAX_FRAME_BYTES as u32) + 1).to_be_bytes()).await.unwrap();
        let err = tokio::time::timeout(Duration::from_secs(1), read_frame(&mut reader, MAX_FRAME_BYTES))
            .await
            .expect("rejected without waiting for the payload")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        // A length within the bound reserves only a first step, not the announced size.
        writer.write_all(&(MAX_FRAME_BYTES as u32).to_be_bytes()).await.unwrap();
        writer.write_all(b"{}").await.unwrap();
        drop(writer);
        let err = read_frame(&mut reader, MAX_FRAME_BYTES).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn server_closes_a_connection_on_a_bad_frame_and_keeps_serving() {
        let (addr, shutdown, task) = start_with(echo_handler()).await;
        let client = RpcClient::new();

        for garbage in [u32::MAX.to_be_bytes().to_vec(), [&5u32.to_be_bytes()[..], b"nope!"].concat()] {
            let mut raw = TcpStream::connect(&addr).await.unwrap();
            raw.write_all(&garbage).await.unwrap();
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf)).await.unwrap().unwrap_or(0);
            assert_eq!(n, 0, "the server closes the connection without answering");
            let answer = client.call_app(&addr, json!("still there?"), Duration::from_secs(5)).await.unwrap();
            assert_eq!(answer, json!({ "echo": "still there?" }));
        }

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn call_app_reuses_pooled_connections() {
        let (addr, shutdown, task) = start_with(echo_handler()).await;
        let client = RpcClient::new();

        for i in 0..5 {
            let answer = client.call_app(&addr, json!({ "n": i }), Duration::from_secs(5)).await.unwrap();
            assert_eq!(answer, json!({ "echo": { "n": i } }));
            assert_eq!(client.pool.idle_count(&addr), 1, "one connection, reused");
        }

        // Concurrent calls open more connections; at most four stay pooled.
        let calls = (0..16).map(|i| {
            let client = client.clone();
            let addr = addr.clone();
            tokio::spawn(async move { client.call_app(&addr, json!(i), Duration::from_secs(5)).await })
        });
        for (i, call) in calls.enumerate() {
            assert_eq!(call.await.unwrap().unwrap(), json!({ "echo": i }));
        }
        assert!((1..=MAX_IDLE_PER_PEER).contains(&client.pool.idle_count(&addr)));

        // After the server goes away, pooled connections are not mistaken for live ones.
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        let failure = client.call_app(&addr, json!(0), Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(failure, RpcFailure::Unreachable(_)), "{failure:?}");
    }

    #[tokio::test]
    async fn dead_address_is_unreachable_quickly() {
        let addr = dead_addr().await;
        let client = RpcClient::new();
        let started = Instant::now();
        let failure = client.call_app(&addr, json!({}), Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(failure, RpcFailure::Unreachable(_)), "{failure:?}");
        assert!(started.elapsed() < Duration::from_secs(2));

        // Through the Raft glue it is openraft's Unreachable, so replication backs off.
        let mut factory = client.clone().with_local_id(1);
        let mut peer = factory.new_client(2, &BasicNode::new(addr)).await;
        let rpc = VoteRequest::new(openraft::Vote::new(1, 1), None);
        let err = peer.vote(rpc, RPCOption::new(Duration::from_secs(1))).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn silent_peer_times_out_and_its_connection_is_not_pooled() {
        let handler: Handler = Arc::new(|_| Box::pin(std::future::pending()));
        let (addr, shutdown, task) = start_with(handler).await;
        let client = RpcClient::new().with_local_id(1);

        let failure = client.call_app(&addr, json!(1), Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(failure, RpcFailure::Timeout);
        assert_eq!(client.pool.idle_count(&addr), 0);

        let mut factory = client.clone();
        let mut peer = factory.new_client(2, &BasicNode::new(addr)).await;
        let rpc = VoteRequest::new(openraft::Vote::new(1, 1), None);
        let err = peer.vote(rpc, RPCOption::new(Duration::from_millis(200))).await.unwrap_err();
        assert!(matches!(err, RPCError::Timeout(RaftTimeout { id: 1, target: 2, .. })), "{err:?}");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn call_app_through_serve() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let raft = mem::new_raft(1, test_config()).await;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, raft.clone(), Arc::new(Echo), shutdown.clone()));

        let client = RpcClient::new();
        let answer = client.call_app(&addr, json!({ "heartbeat": 7 }), Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer, json!({ "echo": { "heartbeat": 7 } }));

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        let failure = client.call_app(&addr, json!(0), Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(failure, RpcFailure::Unreachable(_)), "{failure:?}");
        raft.shutdown().await.unwrap();
    }

    fn test_config() -> Arc<Config> {
        let config = Config {
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            ..Default::default()
        };
        Arc::new(config.validate().unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn three_nodes_elect_a_leader_and_commit_a_write() {
        let mut listeners = Vec::new();
        let mut members = BTreeMap::new();
        for id in 1..=3u64 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            members.insert(id, BasicNode::new(listener.local_addr().unwrap().to_string()));
            listeners.push((id, listener));
        }
        let shutdown = CancellationToken::new();
        let mut rafts = BTreeMap::new();
        let mut servers = Vec::new();
        for (id, listener) in listeners {
            let raft = mem::new_raft_with(id, test_config(), RpcClient::new().with_local_id(id)).await;
            servers.push(tokio::spawn(serve(listener, raft.clone(), Arc::new(Echo), shutdown.clone())));
            rafts.insert(id, raft);
        }

        rafts[&1].initialize(members).await.unwrap();
        let metrics = rafts[&1]
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader.is_some(), "a leader is elected")
            .await
            .unwrap();
        let leader = metrics.current_leader.unwrap();
        rafts[&leader].wait(Some(Duration::from_secs(10))).state(ServerState::Leader, "leader").await.unwrap();

        let written = rafts[&leader].client_write(Command { expected_count: None, records: vec![] }).await.unwrap();
        assert_eq!(written.data, CommandResult::Applied { applied_count: 0 });
        for raft in rafts.values() {
            raft.wait(Some(Duration::from_secs(10)))
                .applied_index_at_least(Some(written.log_id.index), "every node applies the write")
                .await
                .unwrap();
        }

        for raft in rafts.values() {
            raft.shutdown().await.unwrap();
        }
        shutdown.cancel();
        for server in servers {
            tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
        }
    }

    /// A minimal in-memory Raft log and state machine, enough to run nodes over the real network
    /// (the state machine only counts applied records).
    mod mem {
        use std::collections::BTreeMap;
        use std::fmt::Debug;
        use std::io::Cursor;
        use std::ops::RangeBounds;
        use std::sync::{Arc, Mutex, MutexGuard};

        use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
        use openraft::{
            BasicNode, Config, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader, RaftNetworkFactory,
            RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StoredMembership, Vote,
        };

        use crate::raft::{CommandResult, NodeId, Raft, TypeConfig};

        pub async fn new_raft(id: NodeId, config: Arc<Config>) -> Raft {
            new_raft_with(id, config, super::RpcClient::new().with_local_id(id)).await
        }

        pub async fn new_raft_with<N: RaftNetworkFactory<TypeConfig>>(
            id: NodeId,
            config: Arc<Config>,
            network: N,
        ) -> Raft {
            Raft::new(id, config, network, MemLog::default(), MemStateMachine::default()).await.unwrap()
        }

        #[derive(Default)]
        struct LogInner {
            vote: Option<Vote<NodeId>>,
            committed: Option<LogId<NodeId>>,
            purged: Option<LogId<NodeId>>,
            entries: BTreeMap<u64, Entry<TypeConfig>>,
        }

        #[derive(Clone, Default)]
        pub struct MemLog(Arc<Mutex<LogInner>>);

        impl MemLog {
            fn inner(&self) -> MutexGuard<'_, LogInner> {
                self.0.lock().unwrap()
            }
        }

        impl RaftLogReader<TypeConfig> for MemLog {
            async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
                &mut self,
                range: RB,
            ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
                Ok(self.inner().entries.range(range).map(|(_, entry)| entry.clone()).collect())
            }
        }

        impl RaftLogStorage<TypeConfig> for MemLog {
            type LogReader = MemLog;

            async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
                let inner = self.inner();
                let last = inner.entries.values().next_back().map(|entry| entry.log_id).or(inner.purged);
                Ok(LogState { last_purged_log_id: inner.purged, last_log_id: last })
            }

            async fn get_log_reader(&mut self) -> Self::LogReader {
                self.clone()
            }

            async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
                self.inner().vote = Some(*vote);
                Ok(())
            }

            async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
                Ok(self.inner().vote)
            }

            async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
                self.inner().committed = committed;
                Ok(())
            }

            async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
                Ok(self.inner().committed)
            }

            async fn append<I>(
                &mut self,
                entries: I,
                callback: LogFlushed<TypeConfig>,
            ) -> Result<(), StorageError<NodeId>>
            where
                I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
                I::IntoIter: OptionalSend,
            {
                {
                    let mut inner = self.inner();
                    for entry in entries {
                        inner.entries.insert(entry.log_id.index, entry);
                    }
                }
                callback.log_io_completed(Ok(()));
                Ok(())
            }

            async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
                self.inner().entries.split_off(&log_id.index);
                Ok(())
            }

            async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
                let mut inner = self.inner();
                inner.entries = inner.entries.split_off(&(log_id.index + 1));
                inner.purged = Some(log_id);
                Ok(())
            }
        }

        #[derive(Default)]
        struct SmInner {
            last_applied: Option<LogId<NodeId>>,
            membership: StoredMembership<NodeId, BasicNode>,
            applied_count: u64,
            snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
        }

        #[derive(Clone, Default)]
        pub struct MemStateMachine(Arc<Mutex<SmInner>>);

        impl MemStateMachine {
            fn inner(&self) -> MutexGuard<'_, SmInner> {
                self.0.lock().unwrap()
            }
        }

        impl RaftSnapshotBuilder<TypeConfig> for MemStateMachine {
            async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
                let mut inner = self.inner();
                let data = inner.applied_count.to_be_bytes().to_vec();
                let meta = SnapshotMeta {
                    last_log_id: inner.last_applied,
                    last_membership: inner.membership.clone(),
                    snapshot_id: format!("{:?}", inner.last_applied),
                };
                inner.snapshot = Some((meta.clone(), data.clone()));
                Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
            }
        }

        impl RaftStateMachine<TypeConfig> for MemStateMachine {
            type SnapshotBuilder = MemStateMachine;

            async fn applied_state(
                &mut self,
            ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
            {
                let inner = self.inner();
                Ok((inner.last_applied, inner.membership.clone()))
            }

            async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<NodeId>>
            where
                I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
                I::IntoIter: OptionalSend,
            {
                let mut inner = self.inner();
                let mut results = Vec::new();
                for entry in entries {
                    inner.last_applied = Some(entry.log_id);
                    match entry.payload {
                        EntryPayload::Blank => {}
                        EntryPayload::Normal(command) => inner.applied_count += command.records.len() as u64,
                        EntryPayload::Membership(membership) => {
                            inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                        }
                    }
                    results.push(CommandResult::Applied { applied_count: inner.applied_count });
                }
                Ok(results)
            }

            async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
                self.clone()
            }

            async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
                Ok(Box::new(Cursor::new(Vec::new())))
            }

            async fn install_snapshot(
                &mut self,
                meta: &SnapshotMeta<NodeId, BasicNode>,
                snapshot: Box<Cursor<Vec<u8>>>,
            ) -> Result<(), StorageError<NodeId>> {
                let data = snapshot.into_inner();
                let mut inner = self.inner();
                inner.applied_count = data.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
                inner.last_applied = meta.last_log_id;
                inner.membership = meta.last_membership.clone();
                inner.snapshot = Some((meta.clone(), data));
                Ok(())
            }

            async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
                Ok(self
                    .inner()
                    .snapshot
                    .clone()
                    .map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
            }
        }
    }
}
