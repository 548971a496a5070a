//! The cluster-mode metadata store: etcd (key schema in [`super::keys`], design in
//! docs/cluster.md).
//!
//! Role: everything [`MetadataStore`] promises, shared by every broker of the cluster, plus
//! broker registration under a lease and a watch that tells each broker about changes made by
//! the others.
//!
//! Invariants:
//! - Every write that depends on what it read is one etcd transaction comparing the key's
//!   revision (or its absence) with what was read: creation is create-if-absent, producer-id
//!   blocks are a compare-and-swap on `producer-ids`, a topic update compares the topic key's
//!   `mod_revision`. A failed compare is retried from a fresh read or reported, never
//!   overwritten blindly, so a retried request after an ambiguous failure (etcd leader change)
//!   cannot apply twice.
//! - Registration: `brokers/<node id>` is created only if absent, attached to this broker's
//!   lease; while another live broker holds it for longer than one lease TTL (a crashed
//!   predecessor's lease runs out by then, a live twin's does not), start-up is refused. The broker epoch is the
//!   revision of that creation, so it grows with every registration.
//! - Liveness: the broker counts as live only until `sent + TTL - margin`, where `sent` is when
//!   the last keep-alive that etcd acknowledged was sent (the lease cannot have expired before
//!   `sent + TTL` at etcd) and the margin ([`SAFETY_MARGIN_FRACTION`] of the TTL) covers clock
//!   drift between this host and etcd's. After a lost lease it registers again with a new
//!   lease and a new epoch.
//! - Each watch (brokers, topics, coordinator claims, partition states, controller candidates)
//!   resumes from the last seen revision + 1; when etcd has compacted that revision away it
//!   re-lists. Readers of topics always range-read etcd (linearizable); the watches keep the
//!   broker list, slot holders, partition states and controller candidates, and tell the
//!   broker to reconcile. Partition states and the election: `partitions` (submodule).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;
use tracing::{info, warn};

use super::keys::{Keys, MAX_TXN_OPS};
use super::{
    BrokerRegistration, CommittedOffset, CoordinatorKind, MetadataError, MetadataStore,
    PendingTxnOffsets, Result, SlotClaim, SlotCounts, SlotHolder, SlotOffsets, StoredState,
    TopicRecord, TxnRecord,
};

mod commits;
mod follow;
mod offsets;
mod partitions;
mod registration;

use commits::{commit_writer, CommitJob};
use follow::{list_brokers, list_claims, watch_loop};
use registration::{keep_registered, register_once, ttl_secs};

/// Part of the lease TTL by which a broker stops counting itself live before its lease could
/// have expired at etcd (clock drift between hosts, scheduling delays).
pub const SAFETY_MARGIN_FRACTION: f64 = 0.25;

/// How long a starting broker waits for etcd to answer before it gives up.
const START_WAIT: Duration = Duration::from_secs(30);

/// How long one etcd request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn unavailable(e: etcd_client::Error) -> MetadataError {
    MetadataError::Unavailable(e.to_string())
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Corrupt(format!("{key}: {e}"))
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| corrupt(key, e))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| MetadataError::Corrupt(e.to_string()))
}

/// How this broker keeps its registration.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// `broker.session.timeout.ms` (rounded up to whole seconds: etcd TTLs are seconds).
    pub session_timeout: Duration,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
}

struct Shared {
    keys: Keys,
    /// Live brokers by node id, from the watch.
    brokers: Mutex<BTreeMap<i32, BrokerRegistration>>,
    /// Claimed coordinator slots, from the watch (and this broker's own claims at once).
    holders: Mutex<BTreeMap<(CoordinatorKind, u32), SlotHolder>>,
    /// Partition states by topic and partition, from the watch (and this broker's own writes
    /// at once).
    partitions: Mutex<HashMap<String, BTreeMap<i32, StoredState>>>,
    /// Controller candidates' election keys: (node id, create revision); the lowest revision
    /// is the controller.
    candidates: Mutex<BTreeMap<String, (i32, i64)>>,
    /// This broker's current lease (0 before registration); claims are made under it.
    lease_id: AtomicI64,
    /// This broker's node id once registered.
    node_id: AtomicI64,
    changes: watch::Sender<u64>,
    /// Milliseconds since `origin` until which this broker counts as live (0: not live).
    live_until_ms: AtomicU64,
    origin: Instant,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn tick(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, BTreeMap<(CoordinatorKind, u32), SlotHolder>> {
        self.holders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a claim key's put (epoch = its create revision) or delete (at `revision`: only
    /// a claim created before the deletion goes, so a late event never drops a newer claim).
    fn apply_claim(&self, slot: (CoordinatorKind, u32), put: Option<SlotHolder>, revision: i64) {
        let mut holders = self.holders();
        match put {
            Some(h) => {
                if holders.get(&slot).is_none_or(|old| old.epoch <= h.epoch) {
                    holders.insert(slot, h);
                }
            }
            None => {
                if holders.get(&slot).is_some_and(|old| old.epoch < revision) {
                    holders.remove(&slot);
                }
            }
        }
    }
}

/// The compare that fences a coordinator write: the claim key still exists with the create
/// revision the claim was made at.
fn fence(keys: &Keys, claim: &SlotClaim) -> Compare {
    Compare::create_revision(
        keys.coordinator(claim.kind, claim.slot),
        CompareOp::Equal,
        claim.epoch,
    )
}

fn fenced(claim: &SlotClaim) -> MetadataError {
    MetadataError::Fenced(format!("{} {}", claim.kind.name(), claim.slot))
}

pub struct EtcdStore {
    client: Client,
    /// For the controller election only: a campaign waits as long as another broker is the
    /// controller, so this client has no request timeout (etcd resigns a campaign whose
    /// request is cancelled, which would lose this broker's place in the queue).
    election: Client,
    shared: Arc<Shared>,
    cluster_id: String,
    /// Whether the cluster id existed before this broker opened the store.
    existed: bool,
    slots: SlotCounts,
    lease: LeaseSettings,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The task renewing this broker's lease (ended by [`MetadataStore::deregister`]).
    keeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Offset commits waiting for [`commit_writer`].
    commits: tokio::sync::mpsc::UnboundedSender<CommitJob>,
    /// This broker's copy of the committed offsets of the group slots it holds.
    offset_cache: offsets::OffsetCache,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        if let Some(k) = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take() {
            k.abort();
        }
    }
}

impl EtcdStore {
    /// Connects to etcd and reads (or, for a new cluster, creates) the cluster id and its
    /// coordinator slot counts under `prefix` (refused if the cluster has other counts than
    /// `slots`). Starts the watch.
    ///
    /// etcd may still be starting (brokers and etcd started together, as by docker compose):
    /// while it does not answer, this retries for [`START_WAIT`] rather than refusing to start.
    pub async fn open(
        endpoints: &[String],
        prefix: &str,
        lease: LeaseSettings,
        slots: SlotCounts,
    ) -> Result<Self> {
        let deadline = Instant::now() + START_WAIT;
        loop {
            match Self::open_once(endpoints, prefix, lease, slots).await {
                Err(MetadataError::Unavailable(e)) if Instant::now() < deadline => {
                    info!("waiting for etcd {endpoints:?}: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    async fn open_once(
        endpoints: &[String],
        prefix: &str,
        lease: LeaseSettings,
        slots: SlotCounts,
    ) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            .with_timeout(REQUEST_TIMEOUT);
        // The election connection carries only a campaign that waits: HTTP/2 pings more often
        // than etcd's `--grpc-keepalive-min-time` (5 s) on a connection without data make etcd
        // close it ("too many pings"), which cancels the campaign and resigns it.
        let waiting = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let keys = Keys::new(prefix);
        let key = keys.cluster_id();
        let fresh = super::local::new_cluster_id();
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), fresh.clone(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let mut client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| {
                MetadataError::Unavailable(format!("cannot connect to etcd {endpoints:?}: {e}"))
            })?;
        let election = Client::connect(endpoints, Some(waiting))
            .await
            .map_err(|e| {
                MetadataError::Unavailable(format!("cannot connect to etcd {endpoints:?}: {e}"))
            })?;
        let resp = client.txn(txn).await.map_err(unavailable)?;
        let (cluster_id, existed) = if resp.succeeded() {
            info!(cluster_id = %fresh, prefix, "new cluster in etcd");
            (fresh, false)
        } else {
            let got = client.get(key.clone(), None).await.map_err(unavailable)?;
            let kv = got.kvs().first().ok_or_else(|| corrupt(&key, "vanished"))?;
            let id = kv.value_str().map_err(|e| corrupt(&key, e))?.to_string();
            (id, true)
        };
        // The slot counts are the cluster's for its whole life: a broker configured otherwise
        // would hash ids onto other slots than its peers.
        let slots_key = keys.slot_counts();
        let txn = Txn::new()
            .when([Compare::version(slots_key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(slots_key.clone(), encode(&slots)?, None)])
            .or_else([TxnOp::get(slots_key.clone(), None)]);
        let resp = client.txn(txn).await.map_err(unavailable)?;
        if !resp.succeeded() {
            let got = client
                .get(slots_key.clone(), None)
                .await
                .map_err(unavailable)?;
            let kv = got
                .kvs()
                .first()
                .ok_or_else(|| corrupt(&slots_key, "vanished"))?;
            let stored: SlotCounts = decode(&slots_key, kv.value())?;
            if stored != slots {
                return Err(MetadataError::Refused(format!(
                    "this cluster has {} group and {} transaction coordinator slots ({slots_key}); \
                     offsets.topic.num.partitions={} and transaction.state.log.num.partitions={} \
                     here differ: set them to the cluster's values",
                    stored.group, stored.txn, slots.group, slots.txn
                )));
            }
        }
        let shared = Arc::new(Shared {
            keys,
            holders: Mutex::new(BTreeMap::new()),
            partitions: Mutex::new(HashMap::new()),
            candidates: Mutex::new(BTreeMap::new()),
            lease_id: AtomicI64::new(0),
            node_id: AtomicI64::new(-1),
            brokers: Mutex::new(BTreeMap::new()),
            changes: watch::channel(0).0,
            live_until_ms: AtomicU64::new(0),
            origin: Instant::now(),
        });
        let (commits, queue) = tokio::sync::mpsc::unbounded_channel();
        let writer = tokio::spawn(commit_writer(client.clone(), queue));
        let store = EtcdStore {
            client,
            election,
            shared,
            cluster_id,
            existed,
            slots,
            lease,
            tasks: Mutex::new(vec![writer]),
            keeper: Mutex::new(None),
            commits,
            offset_cache: offsets::OffsetCache::default(),
        };
        // Both watches start after this read, so nothing between it and them is missed; the
        // broker reads the topics itself after opening (and reconciles at once).
        // Each watch starts right after the read of what it follows, so nothing between the
        // read and the watch is missed.
        let brokers_rev = store.list_brokers().await?;
        let claims_rev = list_claims(&mut store.client(), &store.shared).await?;
        let states_rev = partitions::list_states(&mut store.client(), &store.shared).await?;
        let candidates_rev =
            partitions::list_candidates(&mut store.client(), &store.shared).await?;
        for (prefix, from) in [
            (store.keys().brokers(), brokers_rev + 1),
            (store.keys().topics(), brokers_rev + 1),
            (store.keys().coordinators(), claims_rev + 1),
            (store.keys().partitions(), states_rev + 1),
            (store.keys().controller_candidates(), candidates_rev + 1),
        ] {
            let watcher = tokio::spawn(watch_loop(
                store.client.clone(),
                store.shared.clone(),
                prefix,
                from,
            ));
            store.spawned(watcher);
        }
        Ok(store)
    }

    /// Compacts etcd's history every `interval`, up to the revision of the previous round, so
    /// history never holds more than two intervals of writes and etcd's quota (2 GiB by
    /// default) cannot fill with old revisions. Every broker does it; compacting to a
    /// revision already compacted is a no-op. A watcher that falls behind a compaction
    /// re-lists (see [`watch_loop`]).
    pub fn start_compaction(&self, interval: Duration) {
        let mut client = self.client();
        let key = self.keys().cluster_id();
        let task = tokio::spawn(async move {
            let mut previous: Option<i64> = None;
            loop {
                tokio::time::sleep(interval).await;
                let now = match client.get(key.clone(), None).await {
                    Ok(r) => r.header().map_or(0, |h| h.revision()),
                    Err(e) => {
                        warn!("etcd compaction: cannot read the revision: {e}");
                        continue;
                    }
                };
                if let Some(rev) = previous.filter(|r| *r > 0) {
                    match client.compact(rev, None).await {
                        Ok(_) => info!(revision = rev, "etcd history compacted"),
                        // Another broker (or etcd itself) compacted past it already.
                        Err(e) if e.to_string().contains("compacted") => {}
                        Err(e) => warn!("etcd compaction to revision {rev} failed: {e}"),
                    }
                }
                previous = Some(now);
            }
        });
        self.spawned(task);
    }

    /// Whether the cluster existed in etcd before (its id was there).
    pub fn existed(&self) -> bool {
        self.existed
    }

    fn keys(&self) -> &Keys {
        &self.shared.keys
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    fn spawned(&self, task: tokio::task::JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    /// Reads every registration; returns the revision of the read.
    async fn list_brokers(&self) -> Result<i64> {
        list_brokers(&mut self.client(), &self.shared).await
    }

    async fn get_prefix(&self, prefix: String) -> Result<Vec<(String, Vec<u8>)>> {
        let resp = self
            .client()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(unavailable)?;
        resp.kvs()
            .iter()
            .map(|kv| {
                let key = kv
                    .key_str()
                    .map_err(|e| MetadataError::Corrupt(e.to_string()))?;
                Ok((key.to_string(), kv.value().to_vec()))
            })
            .collect()
    }

    /// Topic `name` with its key's `mod_revision`, if it is still the topic with `id`
    /// (`UnknownTopic` if absent, or deleted and re-created meanwhile).
    async fn read_topic(&self, name: &str, id: uuid::Uuid) -> Result<(TopicRecord, i64)> {
        let key = self.keys().topic(name);
        let got = self
            .client()
            .get(key.clone(), None)
            .await
            .map_err(unavailable)?;
        let kv = got
            .kvs()
            .first()
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        let record: TopicRecord = decode(&key, kv.value())?;
        if record.id != id {
            return Err(MetadataError::UnknownTopic(name.to_string()));
        }
        Ok((record, kv.mod_revision()))
    }

    /// Runs `ops` if the topic key still has `revision` (`Conflict` otherwise).
    async fn swap_topic(&self, key: String, revision: i64, ops: Vec<TxnOp>) -> Result<()> {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then(ops);
        if !self
            .client()
            .txn(txn)
            .await
            .map_err(unavailable)?
            .succeeded()
        {
            return Err(MetadataError::Conflict(key));
        }
        Ok(())
    }

    /// Runs `ops` fenced by `claim`, in transactions of at most [`MAX_TXN_OPS`] operations
    /// (`Fenced` as soon as one finds the claim gone).
    async fn fenced_write(&self, claim: &SlotClaim, ops: Vec<TxnOp>) -> Result<()> {
        let mut client = self.client();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let chunk: Vec<TxnOp> = ops.by_ref().take(MAX_TXN_OPS).collect();
            let txn = Txn::new().when([fence(self.keys(), claim)]).and_then(chunk);
            if !client.txn(txn).await.map_err(unavailable)?.succeeded() {
                return Err(fenced(claim));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl MetadataStore for EtcdStore {
    fn cluster_id(&self) -> String {
        self.cluster_id.clone()
    }

    fn is_cluster(&self) -> bool {
        true
    }

    async fn register_broker(&self, registration: BrokerRegistration) -> Result<i64> {
        let ttl = ttl_secs(&self.lease);
        let mut client = self.client();
        // A registration held by this node id is either a live twin (it keeps renewing) or
        // this broker's previous life, killed before its lease ran out: waiting one TTL (and
        // a second) tells them apart, so a restart right after a crash is not refused.
        let deadline = Instant::now() + Duration::from_secs(ttl as u64 + 1);
        let unreachable_until = Instant::now() + START_WAIT;
        let (lease_id, epoch, granted) = loop {
            match register_once(&mut client, &self.shared, &registration, ttl).await {
                Err(MetadataError::Refused(why)) if Instant::now() < deadline => {
                    info!("{why}; waiting for that registration's lease to expire");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(MetadataError::Unavailable(e)) if Instant::now() < unreachable_until => {
                    info!("waiting for etcd to register: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => break other?,
            }
        };
        self.shared.lease_id.store(lease_id, Ordering::Release);
        self.shared
            .node_id
            .store(i64::from(registration.node_id), Ordering::Release);
        let margin_ms = (ttl as f64 * 1000.0 * SAFETY_MARGIN_FRACTION) as u64;
        self.shared
            .live_until_ms
            .store(granted + ttl as u64 * 1000 - margin_ms, Ordering::Release);
        info!(
            node_id = registration.node_id,
            epoch,
            ttl_s = ttl,
            "broker registered in etcd"
        );
        let keeper = tokio::spawn(keep_registered(
            client,
            self.shared.clone(),
            registration,
            self.lease,
            lease_id,
            granted,
        ));
        *self.keeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(keeper);
        Ok(epoch)
    }

    async fn deregister(&self) -> Result<()> {
        if let Some(k) = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take() {
            k.abort();
        }
        self.shared.live_until_ms.store(0, Ordering::Release);
        let lease = self.shared.lease_id.swap(0, Ordering::AcqRel);
        if lease != 0 {
            match self.client().lease_revoke(lease).await {
                Ok(_) => info!("broker registration ended (its lease revoked)"),
                // A peer ended it already (it found the listener closed).
                Err(e) if lease_not_found(&e) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }

    async fn expire_registration(&self, node_id: i32, epoch: i64) -> Result<bool> {
        let key = self.keys().broker(node_id);
        let got = self.client().get(key, None).await.map_err(unavailable)?;
        let Some(kv) = got.kvs().first() else {
            return Ok(false);
        };
        // Only the registration seen refusing: a restarted broker's new one is not touched.
        if kv.create_revision() != epoch || kv.lease() == 0 {
            return Ok(false);
        }
        match self.client().lease_revoke(kv.lease()).await {
            Ok(_) => Ok(true),
            // Expired or revoked meanwhile.
            Err(e) if lease_not_found(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn live_brokers(&self) -> Vec<BrokerRegistration> {
        self.shared
            .brokers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn is_live(&self) -> bool {
        self.shared.now_ms() < self.shared.live_until_ms.load(Ordering::Acquire)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    async fn topics(&self) -> Result<BTreeMap<String, TopicRecord>> {
        // The cluster id is read in the same transaction: topics of a wiped (or another)
        // cluster are never taken for "every topic was deleted".
        let id_key = self.keys().cluster_id();
        let txn = Txn::new().and_then([
            TxnOp::get(id_key.clone(), None),
            TxnOp::get(self.keys().topics(), Some(GetOptions::new().with_prefix())),
        ]);
        let resp = self.client().txn(txn).await.map_err(unavailable)?;
        let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        let (Some(id), Some(topics)) = (gets.next(), gets.next()) else {
            return Err(corrupt(&id_key, "unexpected transaction response"));
        };
        let found = id.kvs().first().map(|kv| kv.value().to_vec());
        if found.as_deref() != Some(self.cluster_id.as_bytes()) {
            return Err(MetadataError::Corrupt(format!(
                "{id_key} no longer holds this cluster's id {}: refusing to read topics (etcd wiped or shared?)",
                self.cluster_id
            )));
        }
        let mut out = BTreeMap::new();
        for kv in topics.kvs() {
            let key = kv.key_str().unwrap_or_default();
            let t: TopicRecord = decode(key, kv.value())?;
            out.insert(t.name.clone(), t);
        }
        Ok(out)
    }

    async fn create_topic(&self, topic: TopicRecord) -> Result<()> {
        let key = self.keys().topic(&topic.name);
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, encode(&topic)?, None)]);
        let resp = self.client().txn(txn).await.map_err(unavailable)?;
        if !resp.succeeded() {
            return Err(MetadataError::TopicAlreadyExists(topic.name));
        }
        Ok(())
    }

    async fn update_topic(&self, expected: &TopicRecord, topic: TopicRecord) -> Result<()> {
        // Only what the change was computed from may be replaced: another broker may have
        // changed the topic (or deleted and re-created the name) since this one read it.
        let (current, revision) = self.read_topic(&topic.name, topic.id).await?;
        let key = self.keys().topic(&topic.name);
        if current != *expected {
            return Err(MetadataError::Conflict(key));
        }
        let put = TxnOp::put(key.clone(), encode(&topic)?, None);
        self.swap_topic(key, revision, vec![put]).await
    }

    async fn delete_topic(&self, name: &str, id: uuid::Uuid) -> Result<TopicRecord> {
        let (record, revision) = self.read_topic(name, id).await?;
        let key = self.keys().topic(name);
        // The partition states go with the topic, in the same transaction.
        let states = TxnOp::delete(
            self.keys().topic_partitions(name),
            Some(DeleteOptions::new().with_prefix()),
        );
        self.swap_topic(
            key.clone(),
            revision,
            vec![TxnOp::delete(key, None), states],
        )
        .await?;
        Ok(record)
    }

    fn partition_state(&self, topic: &str, partition: i32) -> Option<StoredState> {
        self.shared.state(topic, partition)
    }

    fn controller(&self) -> Option<i32> {
        self.shared.controller().map(|(_, node, _)| node)
    }

    async fn campaign_controller(&self) -> Result<super::ControllerClaim> {
        partitions::campaign(&self.election, &self.shared).await
    }

    fn holds_controller(&self, claim: &super::ControllerClaim) -> bool {
        self.is_live()
            && self
                .shared
                .controller()
                .is_some_and(|(key, _, rev)| key == claim.key && rev == claim.epoch)
    }

    async fn put_partition_state(
        &self,
        claim: &super::ControllerClaim,
        topic: &str,
        partition: i32,
        expected: i64,
        replaced: Option<i32>,
        state: super::PartitionState,
    ) -> Result<i64> {
        partitions::put_state(
            &mut self.client(),
            &self.shared,
            Some(claim),
            (topic, partition),
            expected,
            replaced,
            state,
        )
        .await
    }

    async fn alter_isr(
        &self,
        topic: &str,
        partition: i32,
        expected: i64,
        state: super::PartitionState,
    ) -> Result<i64> {
        partitions::put_state(
            &mut self.client(),
            &self.shared,
            None,
            (topic, partition),
            expected,
            None,
            state,
        )
        .await
    }

    async fn change_partition_state(
        &self,
        topic: &str,
        partition: i32,
        expected: i64,
        state: super::PartitionState,
    ) -> Result<i64> {
        // The same write as the leader's: compared on the state's revision and the new
        // leader's registration.
        self.alter_isr(topic, partition, expected, state).await
    }

    fn coordinator_slots(&self) -> SlotCounts {
        self.slots
    }

    async fn claim_slot(&self, kind: CoordinatorKind, slot: u32) -> Result<Option<SlotClaim>> {
        let lease = self.shared.lease_id.load(Ordering::Acquire);
        let node_id = self.shared.node_id.load(Ordering::Acquire) as i32;
        if lease == 0 || !self.is_live() {
            return Err(MetadataError::Unavailable(
                "not registered: cannot claim coordinator slots".into(),
            ));
        }
        let key = self.keys().coordinator(kind, slot);
        // The value's epoch is 0: the key's create revision is the epoch (known only after).
        let value = encode(&SlotHolder { node_id, epoch: 0 })?;
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let resp = self.client().txn(txn).await.map_err(unavailable)?;
        if !resp.succeeded() {
            return Ok(None);
        }
        let epoch = resp.header().map_or(0, |h| h.revision());
        self.shared
            .apply_claim((kind, slot), Some(SlotHolder { node_id, epoch }), epoch);
        Ok(Some(SlotClaim { kind, slot, epoch }))
    }

    async fn release_slot(&self, claim: SlotClaim) -> Result<()> {
        let key = self.keys().coordinator(claim.kind, claim.slot);
        let txn = Txn::new()
            .when([fence(self.keys(), &claim)])
            .and_then([TxnOp::delete(key, None)]);
        let resp = self.client().txn(txn).await.map_err(unavailable)?;
        if resp.succeeded() {
            let revision = resp.header().map_or(0, |h| h.revision());
            self.shared
                .apply_claim((claim.kind, claim.slot), None, revision);
        }
        if claim.kind == CoordinatorKind::Group {
            self.offset_cache.forget_slot(claim.slot);
        }
        Ok(())
    }

    fn slot_holders(&self, kind: CoordinatorKind) -> BTreeMap<u32, SlotHolder> {
        self.shared
            .holders()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, slot), h)| (*slot, *h))
            .collect()
    }

    async fn load_transactions(&self, claim: SlotClaim) -> Result<BTreeMap<String, TxnRecord>> {
        let mut out = BTreeMap::new();
        for (key, value) in self.get_prefix(self.keys().txns(claim.slot)).await? {
            let t: TxnRecord = decode(&key, &value)?;
            out.insert(t.transactional_id.clone(), t);
        }
        Ok(out)
    }

    async fn put_transaction(&self, claim: SlotClaim, record: TxnRecord) -> Result<()> {
        let key = self.keys().txn(claim.slot, &record.transactional_id);
        let put = TxnOp::put(key, encode(&record)?, None);
        self.fenced_write(&claim, vec![put]).await
    }

    async fn delete_transaction(&self, claim: SlotClaim, transactional_id: &str) -> Result<()> {
        let key = self.keys().txn(claim.slot, transactional_id);
        self.fenced_write(&claim, vec![TxnOp::delete(key, None)])
            .await
    }

    async fn broker_configs(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut out = BTreeMap::new();
        for (key, value) in self.get_prefix(self.keys().broker_configs()).await? {
            let Some(resource) = self.keys().parse_broker_config(&key) else {
                continue;
            };
            out.insert(resource, decode(&key, &value)?);
        }
        Ok(out)
    }

    async fn set_broker_configs(
        &self,
        resource: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<()> {
        let key = self.keys().broker_config(resource);
        let mut client = self.client();
        if configs.is_empty() {
            client.delete(key, None).await.map_err(unavailable)?;
        } else {
            client
                .put(key, encode(&configs)?, None)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn allocate_producer_ids(&self, count: i64) -> Result<i64> {
        let key = self.keys().producer_ids();
        let mut client = self.client();
        for _ in 0..100 {
            let got = client.get(key.clone(), None).await.map_err(unavailable)?;
            let (first, compare) = match got.kvs().first() {
                Some(kv) => {
                    let n: i64 = kv
                        .value_str()
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .ok_or_else(|| corrupt(&key, "not a number"))?;
                    (
                        n,
                        Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision()),
                    )
                }
                None => (0, Compare::version(key.clone(), CompareOp::Equal, 0)),
            };
            let next = first
                .checked_add(count)
                .ok_or_else(|| corrupt(&key, "producer ids exhausted"))?;
            let txn = Txn::new().when([compare]).and_then([TxnOp::put(
                key.clone(),
                next.to_string(),
                None,
            )]);
            if client.txn(txn).await.map_err(unavailable)?.succeeded() {
                return Ok(first);
            }
        }
        Err(MetadataError::Conflict(key))
    }

    async fn load_offsets(&self, claim: SlotClaim) -> Result<SlotOffsets> {
        let mut out = SlotOffsets {
            committed: self.read_slot_offsets(&claim).await?,
            ..SlotOffsets::default()
        };
        let slot = claim.slot;
        for (key, value) in self
            .get_prefix(self.keys().pending_offsets_of_slot(slot))
            .await?
        {
            let Some(id) = self.keys().parse_pending_offsets(slot, &key) else {
                warn!("ignoring malformed pending offsets key {key}");
                continue;
            };
            out.pending.insert(id, decode(&key, &value)?);
        }
        Ok(out)
    }

    async fn commit_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<()> {
        self.change_offsets(&claim, group, &offsets, &[], vec![], |ops| async {
            if ops.len() > MAX_TXN_OPS {
                // Too big to share a transaction: on its own, in several.
                return self.fenced_write(&claim, ops).await;
            }
            let (done, wait) = tokio::sync::oneshot::channel();
            self.commits
                .send(CommitJob {
                    fence: fence(self.keys(), &claim),
                    claim,
                    ops,
                    done,
                })
                .map_err(|_| MetadataError::Unavailable("the offset writer stopped".into()))?;
            wait.await
                .map_err(|_| MetadataError::Unavailable("the offset writer stopped".into()))?
        })
        .await
    }

    async fn delete_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<()> {
        match partitions {
            None => self.drop_group_offsets(&claim, group).await,
            Some(parts) => {
                self.change_offsets(&claim, group, &[], &parts, vec![], |ops| {
                    self.fenced_write(&claim, ops)
                })
                .await
            }
        }
    }

    async fn put_pending_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        producer_id: i64,
        pending: PendingTxnOffsets,
    ) -> Result<()> {
        let key = self.keys().pending_offsets(claim.slot, group, producer_id);
        self.fenced_write(&claim, vec![TxnOp::put(key, encode(&pending)?, None)])
            .await
    }

    async fn resolve_pending_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        producer_id: i64,
        commit: Option<Vec<(String, i32, CommittedOffset)>>,
    ) -> Result<()> {
        // The pending key's delete goes last: if a big commit is split over transactions and
        // interrupted, the pending offsets are still there and the marker's retry applies
        // them again.
        let done = TxnOp::delete(
            self.keys().pending_offsets(claim.slot, group, producer_id),
            None,
        );
        let offsets = commit.unwrap_or_default();
        self.change_offsets(&claim, group, &offsets, &[], vec![done], |ops| {
            self.fenced_write(&claim, ops)
        })
        .await
    }
}

/// Whether etcd answered that a lease does not exist (expired or revoked already).
fn lease_not_found(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("lease not found"))
}
