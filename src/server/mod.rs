//! The Kafka listener: accepts connections up to `max.connections`, runs one [`connection`] task
//! per client, and shuts down gracefully: on the shutdown signal it stops accepting, lets every
//! connection finish the requests it already read (bounded by `shutdown.timeout.ms`), then
//! flushes every log and writes the clean-shutdown marker.

pub mod connection;
pub mod sequencer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::broker::Broker;

/// A bound listener, ready to serve.
pub struct Server {
    listener: TcpListener,
    broker: Arc<Broker>,
}

impl Server {
    /// Serves `broker` on an already bound listener.
    pub fn new(listener: TcpListener, broker: Arc<Broker>) -> Server {
        Server { listener, broker }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` turns true, then drains connections and closes the logs.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
        let broker = self.broker;
        let limit = Arc::new(Semaphore::new(broker.config.max_connections));
        // `queued.max.request.bytes`: shared by every connection.
        let budget = broker
            .config
            .queued_max_request_bytes
            .map(|b| Arc::new(Semaphore::new(b.min(Semaphore::MAX_PERMITS))));
        let mut conns = JoinSet::new();
        let retention = AbortOnDrop(spawn_retention(broker.clone(), shutdown.clone()));
        let txn_timers = AbortOnDrop(tokio::spawn(
            crate::txn::coordinator::TxnCoordinator::run_timers(broker.clone(), shutdown.clone()),
        ));
        let view_of = broker.clone();
        let group_timers = AbortOnDrop(tokio::spawn(
            broker
                .groups
                .clone()
                .run_timers(move || view_of.topics_view(), shutdown.clone()),
        ));
        info!("listening on {}", self.listener.local_addr()?);
        loop {
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.changed() => break,
            };
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = shutdown.changed() => break,
            };
            match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let broker = broker.clone();
                    let stop = shutdown.clone();
                    let budget = budget.clone();
                    conns.spawn(async move {
                        connection::serve(broker, socket, peer, stop, budget).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            while conns.try_join_next().is_some() {}
        }
        drop(self.listener);
        broker.begin_shutdown();
        // Cluster mode: other replicas take over this broker's partitions before it stops.
        broker
            .hand_over(Duration::from_millis(broker.config.shutdown_timeout_ms))
            .await;
        info!("shutting down: draining {} connection(s)", conns.len());
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(
            Duration::from_millis(broker.config.shutdown_timeout_ms),
            drain,
        )
        .await
        .is_err()
        {
            warn!("connections still open after shutdown.timeout.ms; closing them");
            conns.shutdown().await;
        }
        broker.release_slots().await;
        drop(retention);
        drop(group_timers);
        drop(txn_timers);
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.close())
            .await
            .map_err(std::io::Error::other)??;
        Ok(())
    }
}

/// Aborts a background task when the server future is dropped (or aborted) or finishes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn spawn_retention(
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let period = Duration::from_millis(broker.config.log_retention_check_interval_ms);
        // Like Kafka's log.initial.task.delay.ms, the first check waits one period.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let b = broker.clone();
            let _ = tokio::task::spawn_blocking(move || b.enforce_retention()).await;
        }
    })
}
