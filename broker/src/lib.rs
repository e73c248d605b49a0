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
pub mod lifecycle;
pub mod metadata;
pub mod protocol;
pub mod replica;
pub mod server;
pub mod storage;
pub mod tools;

/// Every binary that links Sluice (the broker, its tests, the fuzz targets) gets the allocator
/// that turns a decoder's absurd capacity request into a harmless reservation. See [`alloc`].
#[global_allocator]
static GLOBAL: alloc::LazyHugeAlloc = alloc::LazyHugeAlloc;

use tokio_util::sync::CancellationToken;

/// Runs a node until `shutdown` is cancelled: its controller (a voter of the metadata quorum, or a
/// follower of it) and, when it is a broker, the Kafka listener. On shutdown a broker stops
/// accepting, moves its leaderships away (controlled shutdown), lets in-flight requests finish
/// (bounded), and closes every log cleanly; then the controller stops.
///
/// # Errors
/// When a listener cannot bind or the data directory cannot be opened.
pub async fn run(config: config::BrokerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    broker::check_metadata_layout(&config.data_dir)?;
    let controller_listener = match (&config.controller_listener, config.roles.controller) {
        (Some(endpoint), true) => Some(tokio::net::TcpListener::bind(endpoint.socket_addr()?).await?),
        _ => None,
    };
    let listener = match config.roles.broker {
        true => Some(tokio::net::TcpListener::bind(config.listener.socket_addr()?).await?),
        false => None,
    };
    let proposed_cluster_id = broker::load_or_create_cluster_id(&config.data_dir, config.node_id)?;
    let controller_shutdown = CancellationToken::new();
    let controller_config = broker::controller_config(&config, proposed_cluster_id);
    let controller_addr = controller_listener.as_ref().and_then(|l| l.local_addr().ok());
    let controller =
        sluice_controller::Controller::start(controller_config, controller_listener, controller_shutdown).await?;
    let Some(listener) = listener else {
        tracing::info!(
            node_id = config.node_id,
            controller_listener = ?controller_addr,
            data_dir = %config.data_dir.display(),
            "sluice ready (controller only)"
        );
        shutdown.cancelled().await;
        controller.stop().await;
        tracing::info!("sluice stopped");
        return Ok(());
    };
    let bound = listener.local_addr()?;
    let advertised = config.advertised(bound.port());
    let Some(broker) =
        broker::start(config, advertised.clone(), std::sync::Arc::clone(&controller), shutdown.clone()).await?
    else {
        controller.stop().await;
        return Ok(());
    };
    broker::spawn_background(&broker);
    tracing::info!(
        listeners = %format!("PLAINTEXT://{bound}"),
        controller_listener = ?controller_addr,
        advertised = %format!("{}:{}", advertised.host, advertised.port),
        node_id = broker.node_id(),
        cluster_id = %broker.cluster_id,
        data_dir = %broker.config.data_dir.display(),
        "sluice ready"
    );
    server::listener::run(std::sync::Arc::clone(&broker), listener).await;
    broker.lifecycle.shut_down(std::time::Duration::from_secs(5)).await;
    broker.tasks.close();
    let drained = tokio::time::timeout(std::time::Duration::from_secs(10), broker.tasks.wait()).await;
    if drained.is_err() {
        tracing::warn!("some tasks did not finish within 10s of shutdown");
    }
    broker.replicas.close_all().await;
    controller.stop().await;
    tracing::info!("sluice stopped");
    Ok(())
}
