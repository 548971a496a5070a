//! Strand: a Kafka-wire-compatible streaming broker.
//!
//! Layers, outermost first: [`server`] (listener, connections, framing, pipelining) →
//! [`handlers`] (one file per Kafka API, a registry that drives dispatch and ApiVersions) →
//! [`broker`] (topics, partitions, the metadata cache) → [`storage`] (the segment store) and
//! [`cluster`] (the metadata store). [`config`] holds the validated settings.

mod alloc;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod fuzzing;
pub mod group;
pub mod handlers;
pub mod metrics;
pub mod server;
pub mod storage;
pub mod txn;
#[cfg(feature = "verify")]
pub mod verify;

use std::sync::Arc;

/// See [`alloc`]: huge blocks are reserved, not committed, so a request claiming billions of
/// elements cannot abort the broker.
#[global_allocator]
static GLOBAL: alloc::Allocator = alloc::Allocator;

/// A broker bound to its listener, for tests and `main`.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub broker: Arc<broker::Broker>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The `/metrics` endpoint and its sampler, when `metrics.listen` is set (stops on drop).
    _metrics: Option<metrics::Exporter>,
    /// Why the broker stopped itself (see [`Running::start`]), if it did.
    halted: Arc<std::sync::OnceLock<String>>,
}

impl Running {
    /// Opens the data dir, binds the listener and starts serving in the background.
    pub async fn start(mut config: config::Config) -> anyhow::Result<Running> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        if config.advertised_port == 0 {
            // Listening on port 0 (tests): advertise the port the OS picked.
            config.advertised_port = addr.port();
        }
        // The recorder must exist before partitions are opened (they create their counters).
        let mut exporter = match config.metrics_listen {
            Some(addr) => Some(metrics::install(addr).await?),
            None => None,
        };
        let broker = broker::Broker::open(config).await?;
        if let Some(e) = &mut exporter {
            e.sample(broker.clone());
        }
        let server = server::Server::new(listener, broker.clone());
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(server.run(rx));
        let halted = Arc::new(std::sync::OnceLock::new());
        if broker.is_cluster() {
            // A clustered broker whose data dir went offline leaves the cluster, as Kafka's
            // broker halts when its last log dir fails: staying registered would keep it the
            // leader of partitions it can no longer serve. Its lease goes with it, so the
            // controller moves leadership to in-sync replicas; the operator frees the disk and
            // restarts it, and the logs are recovered from what is on disk.
            let (broker, shutdown, halted) = (broker.clone(), shutdown.clone(), halted.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    if *shutdown.borrow() {
                        return;
                    }
                    if broker.log_dir().is_offline() {
                        let why = format!(
                            "the data dir is offline ({}): leaving the cluster",
                            broker.log_dir().reason().unwrap_or_default()
                        );
                        tracing::error!("{why}");
                        let _ = halted.set(why);
                        let _ = shutdown.send(true);
                        return;
                    }
                }
            });
        }
        Ok(Running {
            addr,
            broker,
            shutdown,
            task,
            _metrics: exporter,
            halted,
        })
    }

    /// Graceful stop: stop accepting, drain connections, flush, mark the logs clean. Returns
    /// once the broker is released (its data dir lock with it), so the same data dir can be
    /// opened again at once: aborted timer tasks drop their handle on the broker only when the
    /// runtime next polls them, so this waits (up to 30 s) for the last one.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Running {
            broker,
            shutdown,
            task,
            _metrics,
            ..
        } = self;
        let _ = shutdown.send(true);
        task.await??;
        // The metrics sampler holds the broker too.
        drop(_metrics);
        // Usually within milliseconds; a loaded machine can take longer to run the aborted
        // tasks' drops, so wait up to 30 s, then say so.
        for _ in 0..3000 {
            if Arc::strong_count(&broker) == 1 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tracing::warn!(
            references = Arc::strong_count(&broker),
            "broker still referenced 30 s after stop: its data dir stays locked until released"
        );
        Ok(())
    }

    /// Stops abruptly, as a crash would: no draining, no flush, no clean-shutdown marker.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Waits until the server stops by itself (it only does on error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await??;
        if let Some(why) = self.halted.get() {
            anyhow::bail!("broker stopped: {why}");
        }
        Ok(())
    }

    pub fn shutdown_sender(&self) -> tokio::sync::watch::Sender<bool> {
        self.shutdown.clone()
    }
}
