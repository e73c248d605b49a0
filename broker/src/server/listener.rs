//! Accepts connections, at most `max.connections` at once (a semaphore, as mini-redis does).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::connection;
use crate::broker::Broker;

/// Accepts until shutdown. Every connection task is tracked by the broker's task tracker.
pub async fn run(broker: Arc<Broker>, listener: TcpListener) {
    let connections = Arc::new(Semaphore::new(broker.config.max_connections));
    let request_bytes = Arc::new(Semaphore::new(broker.config.queued_max_request_bytes.min(Semaphore::MAX_PERMITS)));
    loop {
        let permit = tokio::select! {
            () = broker.shutdown.cancelled() => break,
            p = Arc::clone(&connections).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let accepted = tokio::select! {
            () = broker.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let broker2 = Arc::clone(&broker);
                let request_bytes = Arc::clone(&request_bytes);
                broker.tasks.spawn(async move {
                    connection::serve(broker2, stream, peer, request_bytes).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Running out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
