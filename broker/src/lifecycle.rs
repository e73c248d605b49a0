//! A broker's life in the cluster, as KRaft has it: register (fenced) and start heartbeating at
//! once, asking to stay fenced (WantFence) while the logs load, so a long log recovery cannot
//! expire the session; then ask to be unfenced, which the controller grants once the broker's
//! metadata has caught up with its registration; keep heartbeating; and on shutdown ask to be
//! fenced so that its leaderships move before it goes (controlled shutdown).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_controller::ops::cluster::{BrokerHeartbeat, BrokerRegistration};
use sluice_controller::Controller;
use tokio_util::sync::CancellationToken;

/// One broker incarnation's registration and heartbeats.
pub struct Lifecycle {
    controller: Arc<Controller>,
    registration: BrokerRegistration,
    interval: Duration,
    /// Set once the logs are loaded: heartbeats stop asking to stay fenced.
    ready: AtomicBool,
}

impl Lifecycle {
    pub fn new(controller: Arc<Controller>, registration: BrokerRegistration, interval: Duration) -> Self {
        Self { controller, registration, interval, ready: AtomicBool::new(false) }
    }

    fn heartbeat(&self, want_shutdown: bool) -> BrokerHeartbeat {
        BrokerHeartbeat {
            node_id: self.registration.node_id,
            incarnation_id: self.registration.incarnation_id,
            applied_count: self.controller.image().applied_count,
            want_fence: !self.ready.load(Ordering::Acquire),
            want_shutdown,
        }
    }

    async fn register(&self, shutdown: &CancellationToken) -> bool {
        loop {
            match self.controller.register_broker(self.registration.clone()).await {
                Ok(()) => return true,
                Err(e) => tracing::info!(error = %e, "waiting for the controller quorum to register this broker"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Registers this incarnation (it starts fenced). False when shutdown came first.
    pub async fn start(&self, shutdown: &CancellationToken) -> bool {
        self.register(shutdown).await
    }

    /// Waits until this node's metadata has reached this broker's registration (it has caught up).
    /// False when shutdown came first.
    pub async fn catch_up(&self, shutdown: &CancellationToken) -> bool {
        let mut images = self.controller.subscribe();
        loop {
            let caught_up = {
                let image = images.borrow_and_update();
                image.brokers.get(&self.registration.node_id).is_some_and(|b| {
                    b.incarnation_id == self.registration.incarnation_id && image.applied_count >= b.epoch
                })
            };
            if caught_up {
                return true;
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                _ = images.changed() => {}
            }
        }
    }

    /// The logs are loaded: asks to be unfenced and waits until the controller has. False when
    /// shutdown came first.
    pub async fn unfence(&self, shutdown: &CancellationToken) -> bool {
        self.ready.store(true, Ordering::Release);
        let mut images = self.controller.subscribe();
        loop {
            match self.controller.broker_heartbeat(self.heartbeat(false)).await {
                Ok(reply) if !reply.registered => {
                    if !self.register(shutdown).await {
                        return false;
                    }
                    continue;
                }
                Ok(reply) if !reply.fenced => return true,
                Ok(_) => {}
                Err(e) => tracing::info!(error = %e, "waiting for the controller to unfence this broker"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                _ = images.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Heartbeats every interval until `shutdown`; registers again when the controller no longer
    /// knows this incarnation (it was fenced and the metadata moved on).
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let beat = self.controller.broker_heartbeat(self.heartbeat(false));
            let reply = tokio::select! {
                () = shutdown.cancelled() => return,
                r = beat => r,
            };
            match reply {
                Ok(r) if !r.registered => {
                    tracing::warn!("the controller no longer knows this broker; registering again");
                    let _ = self.register(&shutdown).await;
                }
                Ok(r) if r.fenced => tracing::debug!("fenced; waiting to catch up"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "broker heartbeat failed"),
            }
        }
    }

    /// Controlled shutdown: asks to be fenced (moving leaderships to other in-sync replicas) and
    /// waits for it, up to `limit`.
    pub async fn shut_down(&self, limit: Duration) {
        let attempt = async {
            loop {
                match self.controller.broker_heartbeat(self.heartbeat(true)).await {
                    Ok(r) if r.fenced => return true,
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "controlled shutdown heartbeat failed"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(_) => tracing::info!("controlled shutdown: leaderships moved away"),
            Err(_) => tracing::warn!("controlled shutdown did not complete in time; stopping anyway"),
        }
    }
}
