//! The broker's state: the metadata store, the metadata cache of topics, and the partition logs
//! this broker leads. Handlers reach storage and metadata only through [`Broker`].
//!
//! Invariants:
//! - A topic is written to the metadata store before its partition directories are created, and
//!   removed from the store before its directories are renamed away. Start-up reconciles the
//!   data dir with the store: missing partition directories are created, directories of unknown
//!   topics (or of an older topic with the same name: `partition.metadata` holds the topic id)
//!   are set aside as `*-stray`, never deleted, and `*-delete` directories left by an
//!   interrupted deletion are finished.
//! - Lost metadata never deletes data: `meta.properties` ties the data dir to its cluster and
//!   node, and the broker refuses to start when the store is missing or another cluster's
//!   ([`data_dir`]).
//! - The clean-shutdown marker `<data_dir>/.strand_cleanshutdown` exists only while the broker is
//!   stopped after flushing every log. It is removed (and the removal fsynced) before the first
//!   write, so a crash at any later point makes the next start recover the logs.
//! - One broker per data dir: `<data_dir>/.lock` is held with an exclusive file lock.

mod admin;
mod cluster;
pub mod config_entries;
mod controller;
mod coordinators;
pub mod data_dir;
pub mod dynamic_config;
mod fetcher;
mod isr;
pub mod partition;
mod reassign;
pub mod replication;
pub mod throttle;
pub mod topic_config;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tracing::{info, warn};
use uuid::Uuid;

use crate::cluster::local::LocalStore;
use crate::cluster::{BrokerRegistration, MetadataError, MetadataStore, TopicRecord};
use crate::config::Config;
use crate::group::consumer::TopicsView;
use crate::group::{GroupConfig, GroupCoordinator};
use crate::storage::{LogDirHealth, OpenFiles, StorageError};
use cluster::{place_replicas, reconcile_loop};
pub use cluster::{Located, PartitionView};
use dynamic_config::DynamicConfigs;
pub use partition::{OpenContext, Partition};
pub use reassign::ElectionType;

const CLEAN_SHUTDOWN: &str = ".strand_cleanshutdown";
const LOCK_FILE: &str = ".lock";
const DELETE_SUFFIX: &str = "-delete";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Errors of topic administration (create, delete, auto-create).
#[derive(Debug, Error)]
pub enum TopicError {
    #[error("{0}")]
    InvalidTopic(String),
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("This server does not host this topic-partition.")]
    UnknownTopic,
    #[error("This broker does not lead the partition")]
    NotLeader,
    #[error("Topic deletion is disabled.")]
    DeletionDisabled,
    #[error("{0}")]
    PolicyViolation(String),
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    #[error("metadata error: {0}")]
    Metadata(MetadataError),
}

impl From<MetadataError> for TopicError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::TopicAlreadyExists(t) => TopicError::AlreadyExists(t),
            MetadataError::UnknownTopic(_) => TopicError::UnknownTopic,
            other => TopicError::Metadata(other),
        }
    }
}

impl TopicError {
    pub fn error_code(&self) -> kafka_protocol::ResponseError {
        use kafka_protocol::ResponseError as E;
        match self {
            TopicError::InvalidTopic(_) => E::InvalidTopicException,
            TopicError::AlreadyExists(_) => E::TopicAlreadyExists,
            TopicError::InvalidPartitions(_) => E::InvalidPartitions,
            TopicError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor,
            TopicError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment,
            TopicError::InvalidConfig(_) => E::InvalidConfig,
            TopicError::InvalidRequest(_) => E::InvalidRequest,
            TopicError::UnknownTopic => E::UnknownTopicOrPartition,
            TopicError::NotLeader => E::NotLeaderOrFollower,
            TopicError::DeletionDisabled => E::TopicDeletionDisabled,
            TopicError::PolicyViolation(_) => E::PolicyViolation,
            TopicError::Storage(e) => e.error_code(),
            TopicError::Metadata(e) => e.error_code(),
        }
    }

    /// The message a client may see: internal details (I/O errors) stay in the broker log.
    pub fn client_message(&self) -> String {
        match self {
            TopicError::Storage(_) | TopicError::Metadata(_) => self.error_code().to_string(),
            other => other.to_string(),
        }
    }
}

/// A topic in the metadata cache with the partitions this broker hosts.
pub struct Topic {
    pub record: TopicRecord,
    /// Indexed by partition number: `Some` for the partitions this broker hosts (in cluster
    /// mode, those whose replicas include it; embedded, all), `None` for the others.
    pub partitions: Vec<Option<Arc<Partition>>>,
}

impl Topic {
    /// The partitions this broker hosts.
    pub fn hosted(&self) -> impl Iterator<Item = &Arc<Partition>> {
        self.partitions.iter().flatten()
    }
}

/// What a CreateTopics entry asks for, after defaults are applied by the caller.
pub struct NewTopic {
    pub name: String,
    /// `-1` = `num.partitions`.
    pub num_partitions: i32,
    /// `-1` = `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit assignment `(partition, broker ids)`; empty = let the broker choose.
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: Vec<(String, Option<String>)>,
}

pub struct Broker {
    pub config: Config,
    /// The group coordinator (every group: this broker is the only one).
    pub groups: Arc<GroupCoordinator>,
    /// Producer ids for idempotent producers.
    pub producer_ids: crate::txn::ProducerIdManager,
    /// The transaction coordinator (every transactional id).
    pub txns: crate::txn::coordinator::TxnCoordinator,
    store: Arc<dyn MetadataStore>,
    cluster_id: String,
    /// This broker's epoch (its registration's; grows with every start).
    epoch: i64,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Bumped by every change of `topics`; names the generation `topics_view` caches.
    topics_generation: AtomicU64,
    topics_view: std::sync::Mutex<Option<(u64, Arc<TopicsView>)>>,
    /// Turns true when the broker starts shutting down (long polls end early).
    shutting_down: tokio::sync::watch::Sender<bool>,
    /// Serializes topic creation and deletion.
    admin: tokio::sync::Mutex<()>,
    /// The data dir's health: offline after the first failed write or fsync.
    log_dir: Arc<LogDirHealth>,
    /// The data dir's open segment files (bounded; see `storage::OpenFiles`).
    files: Arc<OpenFiles>,
    /// Dynamic broker configs in effect (AlterConfigs on the BROKER resource).
    dynamic: RwLock<DynamicConfigs>,
    /// The replica fetchers of the partitions this broker follows.
    fetchers: std::sync::Mutex<HashMap<(String, i32), fetcher::Follow>>,
    /// Replication throttles: bytes this broker sends throttled followers as a leader, and
    /// fetches for throttled replicas as a follower.
    leader_quota: throttle::Quota,
    follower_quota: throttle::Quota,
    /// This broker, for the tasks it starts.
    weak: std::sync::OnceLock<std::sync::Weak<Broker>>,
    _lock: fs::File,
}

impl Broker {
    /// Opens the data dir: takes its lock, opens the metadata store, reconciles and opens every
    /// partition log (recovering them if the last stop was not clean).
    pub async fn open(config: Config) -> anyhow::Result<Arc<Broker>> {
        let data_dir = config.data_dir.clone();
        if !data_dir.exists() {
            fs::create_dir_all(&data_dir)?;
            if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::File::open(parent)?.sync_all()?;
            }
        }
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join(LOCK_FILE))?;
        // flock is held by an open file description, which a child process forked by another
        // thread shares until it execs: a lock just released can look taken for a moment, so
        // a taken lock is retried for up to 2 s before the start is refused.
        let mut attempts = 0;
        while lock.try_lock().is_err() {
            attempts += 1;
            if attempts >= 200 {
                anyhow::bail!(
                    "data dir {} is in use by another strand process",
                    data_dir.display()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let (store, identity): (Arc<dyn MetadataStore>, _) = if config.etcd_endpoints.is_empty() {
            let store_file = LocalStore::file_path(&data_dir);
            let identity =
                data_dir::check_before_open(&data_dir, store_file.exists(), &store_file)?;
            (
                Arc::new(LocalStore::open(&data_dir)?.with_slot_counts(config.slot_counts())),
                identity,
            )
        } else {
            let lease = crate::cluster::etcd::LeaseSettings {
                session_timeout: std::time::Duration::from_millis(config.broker_session_timeout_ms),
                heartbeat_interval: std::time::Duration::from_millis(
                    config.broker_heartbeat_interval_ms,
                ),
            };
            let store = crate::cluster::etcd::EtcdStore::open(
                &config.etcd_endpoints,
                &config.etcd_prefix,
                lease,
                config.slot_counts(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            if config.etcd_compaction_interval_ms > 0 {
                store.start_compaction(std::time::Duration::from_millis(
                    config.etcd_compaction_interval_ms,
                ));
            }
            let described = PathBuf::from(format!(
                "etcd key {}/cluster/id at {}",
                config.etcd_prefix,
                config.etcd_endpoints.join(",")
            ));
            let identity = data_dir::check_before_open(&data_dir, store.existed(), &described)?;
            (Arc::new(store), identity)
        };
        data_dir::check_identity(&data_dir, identity, &store.cluster_id(), config.node_id)?;
        let epoch = store
            .register_broker(BrokerRegistration {
                node_id: config.node_id,
                host: config.advertised_host.clone(),
                port: config.advertised_port,
                rack: config.broker_rack.clone(),
                epoch: 0,
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot register the broker: {e}"))?;
        let marker = data_dir.join(CLEAN_SHUTDOWN);
        let clean = marker.exists();
        let records: BTreeMap<String, (TopicRecord, Vec<Vec<i32>>)> = store
            .topics()
            .await?
            .into_iter()
            .map(|(name, record)| {
                let replicas = current_replicas(store.as_ref(), &record);
                (name, (record, replicas))
            })
            .collect();
        let mut stored = store.broker_configs().await?;
        let dynamic = DynamicConfigs {
            broker: stored
                .remove(&config.node_id.to_string())
                .unwrap_or_default(),
            cluster_default: stored.remove("").unwrap_or_default(),
        };
        if dynamic != DynamicConfigs::default() {
            info!(?dynamic, "dynamic broker configs");
        }
        let opened_with = dynamic.clone();

        let cfg = config.clone();
        let dir = data_dir.clone();
        let log_dir = Arc::new(LogDirHealth::new(&data_dir));
        let files = Arc::new(match config.log_segment_files_open_max {
            0 => OpenFiles::default(),
            n => OpenFiles::new(n),
        });
        info!(
            capacity = files.capacity(),
            "segment files kept open at most (half the open-files limit)"
        );
        let ctx = open_context(&config, clean, &log_dir, &files);
        let topics =
            tokio::task::spawn_blocking(move || open_all(&cfg, &dir, records, &opened_with, &ctx))
                .await??;
        if clean {
            fs::remove_file(&marker)?;
            fs::File::open(&data_dir)?.sync_all()?;
        }
        info!(
            topics = topics.len(),
            clean_start = clean,
            "opened data dir {}",
            data_dir.display()
        );
        let groups = Arc::new(GroupCoordinator::new(
            GroupConfig {
                initial_rebalance_delay: std::time::Duration::from_millis(
                    config.group_initial_rebalance_delay_ms,
                ),
                min_session_timeout: std::time::Duration::from_millis(
                    config.group_min_session_timeout_ms,
                ),
                max_session_timeout: std::time::Duration::from_millis(
                    config.group_max_session_timeout_ms,
                ),
                offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
                offset_metadata_max_bytes: config.offset_metadata_max_bytes,
                consumer_session_timeout: std::time::Duration::from_millis(
                    config.group_consumer_session_timeout_ms,
                ),
                consumer_heartbeat_interval: std::time::Duration::from_millis(
                    config.group_consumer_heartbeat_interval_ms,
                ),
            },
            store.clone(),
        ));
        let txns = crate::txn::coordinator::TxnCoordinator::new(
            store.coordinator_slots(),
            store.is_cluster(),
        );
        let broker = Arc::new(Broker {
            epoch,
            txns,
            producer_ids: crate::txn::ProducerIdManager::new(store.clone()),
            groups,
            cluster_id: store.cluster_id(),
            config,
            store,
            topics: RwLock::new(topics),
            topics_generation: AtomicU64::new(0),
            topics_view: std::sync::Mutex::new(None),
            admin: tokio::sync::Mutex::new(()),
            shutting_down: tokio::sync::watch::channel(false).0,
            log_dir,
            files,
            dynamic: RwLock::new(dynamic),
            fetchers: std::sync::Mutex::new(HashMap::new()),
            leader_quota: throttle::Quota::default(),
            follower_quota: throttle::Quota::default(),
            weak: std::sync::OnceLock::new(),
            _lock: lock,
        });
        let _ = broker.weak.set(Arc::downgrade(&broker));
        broker.apply_all_leadership();
        // Coordinator slots are claimed and loaded before any client is served (embedded:
        // every slot, at once).
        broker.balance_slots().await;
        tokio::spawn(controller::controller_loop(
            Arc::downgrade(&broker),
            broker.shutting_down.subscribe(),
        ));
        tokio::spawn(coordinators::slot_loop(Arc::downgrade(&broker)));
        tokio::spawn(isr::isr_loop(Arc::downgrade(&broker)));
        if broker.store.is_cluster() {
            tokio::spawn(reconcile_loop(Arc::downgrade(&broker)));
        }
        Ok(broker)
    }

    /// Starts the shutdown: parked group requests are answered and long polls end, so that
    /// connections drain promptly.
    pub fn begin_shutdown(&self) {
        self.shutting_down.send_replace(true);
        self.groups.shutdown();
        self.stop_following(None);
    }

    /// Resolves when the broker begins to shut down.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutting_down.subscribe()
    }

    /// The metadata store (the transaction coordinator persists through it).
    /// A weak reference to this broker (for the tasks it starts).
    fn self_ref(&self) -> Option<std::sync::Weak<Broker>> {
        self.weak.get().cloned()
    }

    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// The health of the data dir (offline after a failed write or fsync).
    pub fn log_dir(&self) -> &Arc<LogDirHealth> {
        &self.log_dir
    }

    /// The dynamic broker configs in effect.
    /// The replication throttle rate `key` in effect (bytes/s): dynamic (this broker's own,
    /// else the cluster default), else the static setting.
    pub fn replication_rate(&self, key: &str) -> u64 {
        let dynamic = self
            .dynamic
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .broker_value(key)
            .and_then(|v| v.trim().parse::<u64>().ok());
        dynamic.unwrap_or(if key == throttle::LEADER_RATE {
            self.config.leader_replication_throttled_rate
        } else {
            self.config.follower_replication_throttled_rate
        })
    }

    /// Whether this broker, leading partition `index` of `topic`, throttles what it sends
    /// `follower` (listed in the topic's `leader.replication.throttled.replicas` and out of
    /// the ISR) and the leader rate is used up now; `Some(rate)` to count the bytes sent when
    /// the replica is throttled but the rate is not used up.
    pub fn leader_throttle(&self, p: &Partition, follower: i32) -> Option<(bool, u64)> {
        let t = self.topic(&p.topic)?;
        if !throttle::throttled(
            &t.record.configs,
            throttle::LEADER_REPLICAS,
            p.index,
            self.node_id(),
        ) || p.replication().in_isr(follower)
        {
            return None;
        }
        let rate = self.replication_rate(throttle::LEADER_RATE);
        (rate < throttle::UNLIMITED).then(|| (self.leader_quota.exceeded(rate), rate))
    }

    /// Whether this broker, following partition `p`, throttles its fetches of it (listed in
    /// the topic's `follower.replication.throttled.replicas`, out of the ISR): the rate then.
    fn follower_throttle(&self, p: &Partition) -> Option<u64> {
        let t = self.topic(&p.topic)?;
        let me = self.node_id();
        if !throttle::throttled(&t.record.configs, throttle::FOLLOWER_REPLICAS, p.index, me)
            || self.partition_state(&t, p.index).0.isr.contains(&me)
        {
            return None;
        }
        let rate = self.replication_rate(throttle::FOLLOWER_RATE);
        (rate < throttle::UNLIMITED).then_some(rate)
    }

    /// Counts `bytes` sent to a throttled follower.
    pub fn leader_throttled_bytes(&self, rate: u64, bytes: u64) {
        self.leader_quota.record(rate, bytes);
    }

    pub fn dynamic_configs(&self) -> DynamicConfigs {
        self.dynamic
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A topic's effective configs: its overrides, completed by the dynamic broker configs
    /// (static settings and built-in defaults come from `topic_config::effective`).
    pub fn topic_configs(&self, overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        self.dynamic
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .with_topic_overrides(&self.config.explicit.0, overrides)
    }

    /// One effective topic config of a topic with `overrides` (override, dynamic broker
    /// config, static setting, built-in default), without building the whole map.
    pub fn topic_config(&self, overrides: &BTreeMap<String, String>, name: &str) -> Option<String> {
        if let Some(v) = overrides.get(name) {
            return Some(v.clone());
        }
        let dynamic = self
            .dynamic
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .topic_value(&self.config.explicit.0, name);
        dynamic.or_else(|| topic_config::effective(&self.config, &BTreeMap::new(), name))
    }

    /// The storage settings of a topic with `overrides`.
    pub fn log_config_of(&self, overrides: &BTreeMap<String, String>) -> crate::storage::LogConfig {
        topic_config::log_config(&self.config, &self.topic_configs(overrides))
    }

    /// The data dir's cache of open segment files.
    pub fn open_files(&self) -> &Arc<OpenFiles> {
        &self.files
    }

    /// How partitions opened now (new topics and partitions) are opened.
    fn open_context(&self) -> OpenContext {
        open_context(&self.config, true, &self.log_dir, &self.files)
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.read_topics().get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.read_topics()
            .values()
            .find(|t| t.record.id == id)
            .cloned()
    }

    /// Partition `index` of `topic` if this broker leads it now (the state it applied last
    /// names it); produce, fetch and every other partition request go only to the leader.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.hosted_partition(topic, index)
            .filter(|p| p.is_leader())
    }

    /// Partition `index` of `topic` if this broker hosts a replica of it, leading or not.
    pub fn hosted_partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let t = self.topic(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .cloned()
            .flatten()
    }

    /// `name → (topic id, partition count)` of every topic (for KIP-848 assignment). Built
    /// once per change of the topics and shared: heartbeats and timers only clone the `Arc`.
    pub fn topics_view(&self) -> Arc<TopicsView> {
        let generation = self.topics_generation.load(Ordering::Acquire);
        let mut cached = self.topics_view.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, view)) = cached.as_ref() {
            if *g == generation {
                return view.clone();
            }
        }
        let view = Arc::new(TopicsView::new(
            self.read_topics()
                .values()
                .map(|t| {
                    (
                        t.record.name.clone(),
                        (t.record.id, t.partitions.len() as i32),
                    )
                })
                .collect(),
        ));
        *cached = Some((generation, view.clone()));
        view
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.read_topics().values().cloned().collect();
        v.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        v
    }

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The topics for a change; the cached [`TopicsView`] is invalidated.
    fn write_topics(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Topic>>> {
        let guard = self.topics.write().unwrap_or_else(|p| p.into_inner());
        self.topics_generation.fetch_add(1, Ordering::AcqRel);
        guard
    }

    /// Partitions hosted now, over every topic.
    pub fn partition_count(&self) -> usize {
        self.read_topics()
            .values()
            .map(|t| t.hosted().count())
            .sum()
    }

    /// Whether `added` more partitions fit under `max.broker.partitions` (checked before
    /// anything is allocated or persisted; callers hold the admin lock).
    pub fn check_partition_budget(&self, added: i32) -> Result<(), TopicError> {
        let cap = self.config.max_broker_partitions;
        if added > cap {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions {added} exceeds max.broker.partitions ({cap})."
            )));
        }
        let now = self.partition_count();
        if now + added.max(0) as usize > cap as usize {
            return Err(TopicError::PolicyViolation(format!(
                "Adding {added} partitions would exceed max.broker.partitions: the broker hosts {now} of at most {cap}."
            )));
        }
        Ok(())
    }

    /// Validates a topic request and returns the record it would create.
    pub fn plan_topic(&self, req: &NewTopic) -> Result<TopicRecord, TopicError> {
        topic_config::validate_topic_name(&req.name).map_err(TopicError::InvalidTopic)?;
        let node = self.node_id();
        let live: Vec<BrokerRegistration> = self.live_brokers();
        let assignments: Vec<Vec<i32>> = if !req.assignments.is_empty() {
            let mine = req
                .assignments
                .iter()
                .filter(|(_, b)| b.contains(&node))
                .count();
            self.check_partition_budget(i32::try_from(mine).unwrap_or(i32::MAX))?;
            if req.num_partitions != -1 || req.replication_factor != -1 {
                return Err(TopicError::InvalidRequest(
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
                ));
            }
            let mut sorted = req.assignments.clone();
            sorted.sort_by_key(|(p, _)| *p);
            let mut out = Vec::with_capacity(sorted.len());
            for (i, (p, brokers)) in sorted.into_iter().enumerate() {
                if p != i as i32 {
                    return Err(TopicError::InvalidReplicaAssignment(
                        "Partitions should be a consecutive 0-based integer sequence".into(),
                    ));
                }
                if brokers.is_empty() {
                    return Err(TopicError::InvalidReplicaAssignment(format!(
                        "Partition {p} has no replicas"
                    )));
                }
                let mut seen = brokers.clone();
                seen.sort_unstable();
                seen.dedup();
                if seen.len() != brokers.len() {
                    return Err(TopicError::InvalidReplicaAssignment(format!(
                        "Duplicate brokers not allowed in replica assignment: {brokers:?} for partition id {p}."
                    )));
                }
                if let Some(b) = brokers
                    .iter()
                    .find(|b| !live.iter().any(|l| l.node_id == **b))
                {
                    return Err(TopicError::InvalidReplicaAssignment(format!(
                        "Unknown broker id {b} in replica assignment for partition {p}"
                    )));
                }
                if out
                    .first()
                    .is_some_and(|first: &Vec<i32>| first.len() != brokers.len())
                {
                    return Err(TopicError::InvalidReplicaAssignment(
                        "All partitions should have the same number of replicas".into(),
                    ));
                }
                out.push(brokers);
            }
            self.check_assignment_budget(&out)?;
            out
        } else {
            let partitions = match req.num_partitions {
                -1 => self.config.num_partitions,
                n if n <= 0 => {
                    return Err(TopicError::InvalidPartitions(
                        "Number of partitions was set to an invalid non-positive value.".into(),
                    ))
                }
                n => n,
            };
            let rf =
                match req.replication_factor {
                    -1 => self.config.default_replication_factor,
                    n if n <= 0 => return Err(TopicError::InvalidReplicationFactor(
                        "Replication factor must be larger than 0, or -1 to use the default value."
                            .into(),
                    )),
                    n => n,
                };
            if rf as usize > live.len() {
                return Err(TopicError::InvalidReplicationFactor(format!(
                    "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.",
                    live.len()
                )));
            }
            // Checked before anything is allocated: a spread gives no broker more than this.
            let each = (partitions.max(0) as u64).div_ceil(live.len().max(1) as u64);
            self.check_partition_budget(i32::try_from(each).unwrap_or(i32::MAX))?;
            let placed = place_replicas(&live, partitions, rf);
            let mine = placed.iter().filter(|r| r.contains(&node)).count();
            self.check_partition_budget(i32::try_from(mine).unwrap_or(i32::MAX))?;
            self.check_assignment_budget(&placed)?;
            placed
        };
        let mut configs = BTreeMap::new();
        for (name, value) in &req.configs {
            topic_config::validate(name, value.as_deref()).map_err(TopicError::InvalidConfig)?;
            configs.insert(name.clone(), value.clone().unwrap_or_default());
        }
        if self.topic(&req.name).is_some() {
            return Err(TopicError::AlreadyExists(req.name.clone()));
        }
        if let Some(other) = self
            .read_topics()
            .keys()
            .find(|t| *t != &req.name && t.replace('.', "_") == req.name.replace('.', "_"))
        {
            return Err(TopicError::InvalidTopic(format!(
                "Topic '{}' collides with existing topic: {other}",
                req.name
            )));
        }
        Ok(TopicRecord {
            name: req.name.clone(),
            id: Uuid::new_v4(),
            assignments,
            configs,
        })
    }

    /// Creates a topic: metadata store first, then the partition logs.
    pub async fn create_topic(&self, req: &NewTopic) -> Result<Arc<Topic>, TopicError> {
        let _admin = self.admin.lock().await;
        let record = self.plan_topic(req)?;
        self.store.create_topic(record.clone()).await?;
        let config = self.config.clone();
        let data_dir = config.data_dir.clone();
        let ctx = self.open_context();
        let dynamic = self.dynamic_configs();
        let replicas = record.assignments.clone();
        let topic = tokio::task::spawn_blocking(move || {
            open_topic(&config, &data_dir, record, &replicas, &dynamic, &ctx, false)
        })
        .await
        .map_err(|e| TopicError::Storage(StorageError::Io(std::io::Error::other(e))))??;
        let topic = Arc::new(topic);
        self.apply_leadership(&topic);
        self.write_topics()
            .insert(topic.record.name.clone(), topic.clone());
        info!(topic = %topic.record.name, partitions = topic.partitions.len(), "created topic");
        Ok(topic)
    }

    /// Creates `name` with the broker defaults if auto-creation is on.
    pub async fn auto_create_topic(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        let req = NewTopic {
            name: name.to_string(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![],
            configs: vec![],
        };
        match self.create_topic(&req).await {
            Err(TopicError::AlreadyExists(_)) => self.topic(name).ok_or(TopicError::UnknownTopic),
            other => other,
        }
    }

    /// Deletes a topic: metadata store first, then its directories are renamed to
    /// `<dir>.<topic id>-delete` (atomic, fsynced) and removed in the background.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicRecord, TopicError> {
        if !self.config.delete_topic_enable {
            return Err(TopicError::DeletionDisabled);
        }
        let _admin = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(TopicError::UnknownTopic);
        };
        let record = self.store.delete_topic(name, topic.record.id).await?;
        self.remove_local_topic(name).await;
        Ok(record)
    }

    /// Forgets a deleted topic here: its partitions' directories are renamed to
    /// `<dir>.<topic id>-delete` (atomic, fsynced) and removed, its group offsets dropped.
    async fn remove_local_topic(&self, name: &str) {
        self.stop_following(Some(name));
        let removed = self.write_topics().remove(name);
        if let Some(topic) = removed {
            self.delete_partition_dirs(topic.record.id, topic.hosted().cloned().collect())
                .await;
        }
        self.groups.topic_deleted(name).await;
        info!(topic = %name, "deleted topic");
    }

    /// Deletes the directories of partitions this broker no longer hosts (of topic `id`): each
    /// is first renamed to `<dir>.<topic id>-delete` (fsynced; a start finishes deleting
    /// such directories), then removed. Runs on the blocking pool.
    async fn delete_partition_dirs(&self, id: Uuid, partitions: Vec<Arc<Partition>>) {
        let data_dir = self.config.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            for p in partitions {
                let target = data_dir.join(format!(
                    "{}.{}{DELETE_SUFFIX}",
                    p.dir.file_name().and_then(|n| n.to_str()).unwrap_or("x"),
                    id.simple()
                ));
                if let Err(e) = fs::rename(&p.dir, &target) {
                    warn!("cannot rename {} for deletion: {e}", p.dir.display());
                    continue;
                }
                let _ = fs::File::open(&data_dir).and_then(|d| d.sync_all());
                if let Err(e) = fs::remove_dir_all(&target) {
                    warn!("cannot remove {}: {e}", target.display());
                }
            }
        })
        .await
        .ok();
    }

    /// Applies retention and time-based rolling to every partition. Runs on a blocking thread.
    pub fn enforce_retention(&self) {
        let now = now_ms();
        for topic in self.topics() {
            for p in topic.hosted() {
                let Ok(log) = p.log() else { continue };
                if let Err(e) = log.enforce_retention(now) {
                    warn!(topic = %p.topic, partition = p.index, "retention failed: {e}");
                }
            }
        }
    }

    /// Flushes and closes every log, then writes the clean-shutdown marker.
    pub fn close(&self) -> std::io::Result<()> {
        let mut ok = true;
        for topic in self.topics() {
            for p in topic.hosted() {
                if let Err(e) = p.log().and_then(|log| log.close()) {
                    warn!(topic = %p.topic, partition = p.index, "close failed: {e}");
                    ok = false;
                }
            }
        }
        if ok {
            let dir = &self.config.data_dir;
            fs::File::create(dir.join(CLEAN_SHUTDOWN))?.sync_all()?;
            fs::File::open(dir)?.sync_all()?;
            info!("logs flushed, clean shutdown marker written");
        }
        Ok(())
    }
}

/// Whether broker `node` holds a replica of partition `index` of `record`.
/// The replicas of every partition of `record` now: its stored state's (a reassignment
/// changes them, adding replicas included), else the record's assignment.
fn current_replicas(store: &dyn MetadataStore, record: &TopicRecord) -> Vec<Vec<i32>> {
    record
        .assignments
        .iter()
        .enumerate()
        .map(|(i, assigned)| {
            store
                .partition_state(&record.name, i as i32)
                .filter(|s| s.state.topic_id == record.id)
                .map_or_else(|| assigned.clone(), |s| s.state.replicas)
        })
        .collect()
}

/// Whether `node` holds a replica of partition `index`, given every partition's replicas.
fn hosts(replicas: &[Vec<i32>], index: i32, node: i32) -> bool {
    usize::try_from(index)
        .ok()
        .and_then(|i| replicas.get(i))
        .is_some_and(|r| r.contains(&node))
}

/// How many replicas partition `index` has, given every partition's replicas.
fn replica_count(replicas: &[Vec<i32>], index: i32) -> usize {
    usize::try_from(index)
        .ok()
        .and_then(|i| replicas.get(i))
        .map_or(0, Vec::len)
}

fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

fn open_context(
    config: &Config,
    clean: bool,
    health: &Arc<LogDirHealth>,
    files: &Arc<OpenFiles>,
) -> OpenContext {
    OpenContext {
        clean,
        flush_delay: std::time::Duration::from_millis(config.log_flush_max_delay_ms),
        visible_unflushed: config.log_visible_unflushed,
        health: health.clone(),
        files: files.clone(),
        node_id: config.node_id,
    }
}

fn open_topic(
    config: &Config,
    data_dir: &Path,
    record: TopicRecord,
    replicas: &[Vec<i32>],
    dynamic: &DynamicConfigs,
    ctx: &OpenContext,
    at_start: bool,
) -> Result<Topic, StorageError> {
    let log_config = topic_config::log_config(
        config,
        &dynamic.with_topic_overrides(&config.explicit.0, &record.configs),
    );
    let mut partitions = Vec::with_capacity(record.assignments.len());
    for index in 0..record.partition_count() {
        if !hosts(replicas, index, config.node_id) {
            partitions.push(None);
            continue;
        }
        let dir = partition_dir(data_dir, &record.name, index);
        let partition =
            match Partition::open(&record.name, index, record.id, dir.clone(), log_config, ctx) {
                Ok(p) => {
                    if replica_count(replicas, index) > 1 {
                        p.start_as_replica();
                    }
                    p
                }
                // A new topic (CreateTopics, auto-creation): the request fails instead.
                Err(e) if !at_start => return Err(e),
                Err(e) => {
                    // One partition's files cannot be opened: it stays offline (KAFKA_STORAGE_ERROR
                    // for it), the others are served. Nothing in its directory is touched.
                    tracing::error!(
                        topic = %record.name,
                        partition = index,
                        dir = %dir.display(),
                        "PARTITION OFFLINE: cannot open its log: {e}"
                    );
                    Partition::offline(&record.name, index, dir, e.to_string(), ctx)
                }
            };
        partitions.push(Some(Arc::new(partition)));
    }
    Ok(Topic { record, partitions })
}

/// Reconciles the data dir with the metadata store and opens every partition.
fn open_all(
    config: &Config,
    data_dir: &Path,
    records: BTreeMap<String, (TopicRecord, Vec<Vec<i32>>)>,
    dynamic: &DynamicConfigs,
    ctx: &OpenContext,
) -> anyhow::Result<HashMap<String, Arc<Topic>>> {
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let path = entry.path();
        if name.ends_with(DELETE_SUFFIX) {
            info!("finishing deletion of {}", path.display());
            fs::remove_dir_all(&path)?;
            continue;
        }
        let Some((topic, index)) = data_dir::parse_partition_dir(&name) else {
            continue;
        };
        let live = records.get(topic).is_some_and(|(r, replicas)| {
            hosts(replicas, index, config.node_id)
                && partition::read_partition_topic_id(&path).is_none_or(|id| id == r.id)
        });
        if !live {
            // Never deleted: a directory no topic owns may be the only copy of its data.
            let target = data_dir::set_aside(data_dir, &path)?;
            warn!(
                "{} is not a partition of any current topic: set aside as {}",
                path.display(),
                target.display()
            );
        }
    }
    fs::File::open(data_dir)?.sync_all()?;
    let mut topics = HashMap::new();
    for (name, (record, replicas)) in records {
        let topic = open_topic(config, data_dir, record, &replicas, dynamic, ctx, true)?;
        topics.insert(name, Arc::new(topic));
    }
    Ok(topics)
}
