//! Sluice: a message broker that speaks the Apache Kafka wire protocol.
//!
//! This crate is the data plane and the `sluice` binary: the network edge ([`server`]), the wire
//! codec ([`protocol`]), one handler per Kafka API ([`handlers`]), the hosted partitions
//! ([`replica`]) over durable segment logs ([`storage`]), and the broker's view of metadata
//! ([`metadata`]) published by the controller crate. Arrows point one way: handlers → replica →
//! storage; storage never sees a protocol type.

pub mod alloc;
pub mod broker;
pub mod clock;
pub mod config;
pub mod coordinator;
pub mod groups;
pub mod handlers;
pub mod metadata;
pub mod protocol;
pub mod replica;
pub mod server;
pub mod storage;

/// Every binary that links Sluice (the broker, its tests, the fuzz targets) gets the allocator
/// that turns a decoder's absurd capacity request into a harmless reservation. See [`alloc`].
#[global_allocator]
static GLOBAL: alloc::LazyHugeAlloc = alloc::LazyHugeAlloc;

use tokio_util::sync::CancellationToken;

/// Runs a broker until `shutdown` is cancelled, then stops accepting, lets in-flight requests
/// finish (bounded), and closes every log cleanly.
///
/// # Errors
/// When the listener cannot bind or the data directory cannot be opened.
pub async fn run(config: config::BrokerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listener.socket_addr()?).await?;
    let bound = listener.local_addr()?;
    let advertised = config.advertised(bound.port());
    let broker = broker::start(config, advertised.clone(), shutdown.clone()).await?;
    broker::spawn_background(&broker);
    tracing::info!(
        listeners = %format!("PLAINTEXT://{bound}"),
        advertised = %format!("{}:{}", advertised.host, advertised.port),
        node_id = broker.node_id(),
        cluster_id = %broker.cluster_id,
        data_dir = %broker.config.data_dir.display(),
        "sluice ready"
    );
    server::listener::run(std::sync::Arc::clone(&broker), listener).await;
    broker.tasks.close();
    let drained = tokio::time::timeout(std::time::Duration::from_secs(10), broker.tasks.wait()).await;
    if drained.is_err() {
        tracing::warn!("some tasks did not finish within 10s of shutdown");
    }
    broker.replicas.close_all().await;
    tracing::info!("sluice stopped");
    Ok(())
}
