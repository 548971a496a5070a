//! Cluster metadata: what topics exist, their ids, partition counts, replica assignments and
//! topic-level configs.
//!
//! The broker reaches metadata only through [`MetadataStore`], injected into `Broker::open`:
//! [`local::LocalStore`] keeps it in the broker's data dir (the embedded default, a cluster of
//! one); [`etcd::EtcdStore`] keeps it in etcd for cluster mode (docs/cluster.md; key schema in
//! [`keys`]). The broker code path is the same for both.
//!
//! Invariant: a change is durable in the store before the broker acts on it (creates partition
//! directories, answers the client). At start-up the broker reconciles its directories with the
//! store, so a crash between the two steps is repaired. In cluster mode every broker applies
//! changes it did not make itself from the store's watch ([`MetadataStore::changes`]).

pub mod etcd;
pub mod keys;
pub mod local;
pub mod offset_log;
pub mod slots;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

pub use slots::{CoordinatorKind, SlotClaim, SlotCounts, SlotHolder};

#[cfg(test)]
mod tests;

/// One topic as the metadata store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    /// `assignments[p]` = the broker ids holding a replica of partition `p`, leader first.
    pub assignments: Vec<Vec<i32>>,
    /// Topic-level config overrides (Kafka names), only the ones set explicitly.
    pub configs: BTreeMap<String, String>,
}

impl TopicRecord {
    pub fn partition_count(&self) -> i32 {
        self.assignments.len() as i32
    }
}

/// Who leads one partition, at which leader epoch, and which replicas are in sync (Kafka's
/// PartitionRegistration). A partition whose state was never changed has no stored state:
/// its state is [`PartitionState::initial`], computed from the topic record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The topic this state belongs to (a state of a deleted topic is never taken for the
    /// state of a new topic of the same name).
    pub topic_id: Uuid,
    /// `-1`: no leader (every in-sync replica is gone).
    pub leader: i32,
    /// Grows with every leader change: the fencing token of leadership (KIP-101, KIP-320).
    pub leader_epoch: i32,
    /// In-sync replicas. Kept when the last one goes (leader -1), so that one is elected
    /// again when it returns.
    pub isr: Vec<i32>,
    /// Every replica, leader candidates first. During a reassignment (KIP-455): the target
    /// replicas, then the ones being removed.
    pub replicas: Vec<i32>,
    /// Replicas a reassignment adds (in `replicas`, not yet in sync).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    /// Replicas a reassignment removes once every added one is in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

/// Why an operator's election (ElectLeaders) does not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionRefused {
    /// The partition already has the leader asked for (ELECTION_NOT_NEEDED).
    NotNeeded,
    /// The preferred replica is not live or not in sync (PREFERRED_LEADER_NOT_AVAILABLE).
    PreferredNotAvailable,
    /// No live replica can lead (ELIGIBLE_LEADERS_NOT_AVAILABLE).
    NoEligibleLeader,
}

/// Why a reassignment (AlterPartitionReassignments) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReassignmentRefused {
    /// INVALID_REPLICA_ASSIGNMENT, with the message for the client.
    Invalid(String),
    /// A cancel with nothing to cancel (NO_REASSIGNMENT_IN_PROGRESS).
    NoneInProgress,
}

impl PartitionState {
    /// The state of a new partition: its first replica leads at epoch 0, all are in sync.
    pub fn initial(topic_id: Uuid, replicas: &[i32]) -> PartitionState {
        PartitionState {
            topic_id,
            leader: replicas.first().copied().unwrap_or(-1),
            leader_epoch: 0,
            isr: replicas.to_vec(),
            replicas: replicas.to_vec(),
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// Whether a reassignment is in progress.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas before the reassignment in progress (all of them when none is).
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding.contains(r))
            .collect()
    }

    /// The replicas the reassignment in progress moves to (all of them when none is).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }

    /// The state that starts moving the partition to `target` (KIP-455), replacing a
    /// reassignment in progress: the replicas become the target followed by the original
    /// replicas not in it; those not in the original are `adding`, the original ones not in
    /// the target `removing`. The leader and epoch stay unless a replacing reassignment drops
    /// the leader (a replica an earlier one added, elected since): then the first live
    /// in-sync replica left leads at the next epoch. `live` checks brokers named in `target`.
    pub fn reassign(
        &self,
        target: &[i32],
        live: &dyn Fn(i32) -> bool,
    ) -> std::result::Result<PartitionState, ReassignmentRefused> {
        if target.is_empty() {
            return Err(ReassignmentRefused::Invalid(
                "The replica list is empty.".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = target.iter().find(|r| !seen.insert(**r)) {
            return Err(ReassignmentRefused::Invalid(format!(
                "Broker {dup} is named twice in the replica list."
            )));
        }
        if let Some(gone) = target.iter().find(|r| !live(**r)) {
            return Err(ReassignmentRefused::Invalid(format!(
                "Broker {gone} is not a live broker of the cluster."
            )));
        }
        let original = self.original_replicas();
        let mut next = self.clone();
        next.replicas = target.to_vec();
        next.replicas
            .extend(original.iter().copied().filter(|r| !target.contains(r)));
        next.adding = target
            .iter()
            .copied()
            .filter(|r| !original.contains(r))
            .collect();
        next.removing = original
            .iter()
            .copied()
            .filter(|r| !target.contains(r))
            .collect();
        next.isr.retain(|r| next.replicas.contains(r));
        if self.leader >= 0 && !next.replicas.contains(&self.leader) {
            let Some(leader) = next
                .replicas
                .iter()
                .copied()
                .find(|r| next.isr.contains(r) && live(*r))
            else {
                return Err(ReassignmentRefused::Invalid(
                    "The reassignment would leave no in-sync replica to lead.".into(),
                ));
            };
            next.leader = leader;
            next.leader_epoch = self.leader_epoch + 1;
        }
        if next.isr.is_empty() {
            return Err(ReassignmentRefused::Invalid(
                "The reassignment would leave no in-sync replica.".into(),
            ));
        }
        Ok(next)
    }

    /// The state that cancels the reassignment in progress: back to the original replicas
    /// (the added ones leave the ISR; if one of them leads, the first live in-sync original
    /// replica takes over at the next epoch).
    pub fn cancel_reassignment(
        &self,
        live: &dyn Fn(i32) -> bool,
    ) -> std::result::Result<PartitionState, ReassignmentRefused> {
        if !self.reassigning() {
            return Err(ReassignmentRefused::NoneInProgress);
        }
        let mut next = self.clone();
        next.replicas = self.original_replicas();
        next.adding.clear();
        next.removing.clear();
        next.isr.retain(|r| next.replicas.contains(r));
        if self.leader >= 0 && !next.replicas.contains(&self.leader) {
            let leader = next
                .replicas
                .iter()
                .copied()
                .find(|r| next.isr.contains(r) && live(*r));
            match leader {
                Some(l) => next.leader = l,
                None => {
                    return Err(ReassignmentRefused::Invalid(
                        "Cancelling would leave no in-sync replica to lead.".into(),
                    ))
                }
            }
            next.leader_epoch = self.leader_epoch + 1;
        }
        Ok(next)
    }

    /// The state that completes the reassignment in progress, once every added replica is in
    /// sync: the replicas become the target, the removed ones leave the ISR, and if the
    /// leader is removed the first live in-sync target replica leads at the next epoch.
    /// `None`: nothing in progress, or not ready yet.
    pub fn complete_reassignment(&self, live: &dyn Fn(i32) -> bool) -> Option<PartitionState> {
        if !self.reassigning() || !self.adding.iter().all(|r| self.isr.contains(r)) {
            return None;
        }
        let mut next = self.clone();
        next.replicas = self.target_replicas();
        next.adding.clear();
        next.removing.clear();
        next.isr.retain(|r| next.replicas.contains(r));
        if next.isr.is_empty() {
            return None;
        }
        if !next.replicas.contains(&self.leader) {
            next.leader = next
                .replicas
                .iter()
                .copied()
                .find(|r| next.isr.contains(r) && live(*r))?;
            next.leader_epoch = self.leader_epoch + 1;
        }
        Some(next)
    }

    /// The state that makes the preferred replica (the first) lead, at the next epoch
    /// (ElectLeaders PREFERRED, `auto.leader.rebalance.enable`): only if it is live and in
    /// sync, since only in-sync replicas hold every acknowledged record.
    pub fn elect_preferred(
        &self,
        live: &dyn Fn(i32) -> bool,
    ) -> std::result::Result<PartitionState, ElectionRefused> {
        let Some(&preferred) = self.replicas.first() else {
            return Err(ElectionRefused::PreferredNotAvailable);
        };
        if self.leader == preferred {
            return Err(ElectionRefused::NotNeeded);
        }
        if !live(preferred) || !self.isr.contains(&preferred) {
            return Err(ElectionRefused::PreferredNotAvailable);
        }
        let mut next = self.clone();
        next.leader = preferred;
        next.leader_epoch = self.leader_epoch + 1;
        Ok(next)
    }

    /// The state of an unclean election asked by an operator (ElectLeaders UNCLEAN): for a
    /// partition without a live leader, the first live in-sync replica, else the first live
    /// replica (which alone is then in sync: what it lacks is lost, as the operator chose).
    pub fn elect_unclean(
        &self,
        live: &dyn Fn(i32) -> bool,
    ) -> std::result::Result<PartitionState, ElectionRefused> {
        if self.leader >= 0 && live(self.leader) {
            return Err(ElectionRefused::NotNeeded);
        }
        match self.elect(live, true) {
            Some(next) if next.leader >= 0 => Ok(next),
            _ => Err(ElectionRefused::NoEligibleLeader),
        }
    }

    /// The state a controller wants given which brokers are `live`: a leader that is gone
    /// is replaced by the first live in-sync replica (`leader_epoch + 1`), or by none (-1,
    /// the ISR kept); a partition without a leader gets the first in-sync replica that is
    /// back. Out-of-sync replicas are elected only with `unclean` (Kafka's
    /// `unclean.leader.election.enable`), and then join the ISR alone. A live leader stays,
    /// and followers that are gone leave the ISR (as Kafka's controller drops a fenced broker
    /// from every ISR), the epoch unchanged. `None`: no change.
    pub fn elect(&self, live: &dyn Fn(i32) -> bool, unclean: bool) -> Option<PartitionState> {
        if self.leader >= 0 && live(self.leader) {
            if self.isr.iter().all(|r| live(*r)) {
                return None;
            }
            let mut next = self.clone();
            next.isr.retain(|r| *r == self.leader || live(*r));
            return Some(next);
        }
        let candidate = self
            .replicas
            .iter()
            .copied()
            .find(|r| self.isr.contains(r) && live(*r));
        let mut next = self.clone();
        match candidate {
            Some(leader) => {
                next.leader = leader;
                next.leader_epoch = self.leader_epoch + 1;
                // The old leader, gone, is no longer in sync; the ISR never empties.
                next.isr.retain(|r| *r == leader || live(*r));
            }
            None => match self.replicas.iter().copied().find(|r| unclean && live(*r)) {
                Some(leader) => {
                    next.leader = leader;
                    next.leader_epoch = self.leader_epoch + 1;
                    next.isr = vec![leader];
                }
                None if self.leader < 0 => return None,
                None => {
                    next.leader = -1;
                    next.leader_epoch = self.leader_epoch + 1;
                }
            },
        }
        Some(next)
    }
}

/// A partition's state with the store revision it was written at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredState {
    pub state: PartitionState,
    /// The store's revision of the write (etcd: the key's mod revision); a change compares it.
    pub revision: i64,
}

/// This broker's term as the controller: every controller write is fenced by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerClaim {
    /// Grows with every election (etcd: the create revision of the election key).
    pub epoch: i64,
    /// The store's key proving the term (etcd: the election key; embedded: empty).
    pub key: String,
}

/// A consumer group's committed position in one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    /// The leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    pub metadata: String,
    /// When the commit was made (ms since the epoch); drives offsets retention.
    pub commit_timestamp: i64,
}

/// Where a transaction is in its life (Kafka's TransactionState).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
}

/// The durable state of one transactional id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions written in the current transaction.
    pub partitions: std::collections::BTreeSet<(String, i32)>,
    /// Groups added with AddOffsetsToTxn (their coordinators get the transaction's marker).
    pub groups: std::collections::BTreeSet<String>,
    /// When the current transaction started (ms since the epoch), for its timeout.
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// A broker as it registers itself (cluster mode: under its etcd lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Grows with every registration of any broker (cluster mode: the etcd revision that
    /// created the registration); a request carrying an older epoch of this broker is stale.
    pub epoch: i64,
}

/// One group's committed offsets by `(topic, partition)`.
pub type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

/// Offsets a transactional producer committed for a group (TxnOffsetCommit), waiting for the
/// transaction's marker: committed on COMMIT, dropped on ABORT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingTxnOffsets {
    pub producer_epoch: i16,
    pub offsets: Vec<(String, i32, CommittedOffset)>,
}

/// What a group coordinator slot holds: committed offsets by group, and pending transactional
/// offsets by `(group, producer id)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlotOffsets {
    pub committed: BTreeMap<String, GroupOffsets>,
    pub pending: BTreeMap<(String, i64), PendingTxnOffsets>,
}

#[derive(Debug, Error)]
pub enum MetadataError {
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("metadata store I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata store is corrupt: {0}")]
    Corrupt(String),
    /// The store cannot be reached (etcd down or partitioned away): retriable.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// A compare-and-swap kept failing: another broker changed the same key meanwhile.
    #[error("concurrent change of {0}")]
    Conflict(String),
    /// The store refuses this broker (its node id is held by another live broker).
    #[error("{0}")]
    Refused(String),
    /// A controller write after this broker's term as the controller ended.
    #[error("this broker is no longer the controller")]
    NotController,
    /// A coordinator write under a slot claim this broker no longer holds.
    #[error("coordinator slot {0} is held by another broker now")]
    Fenced(String),
}

pub type Result<T> = std::result::Result<T, MetadataError>;

impl MetadataError {
    /// The Kafka error code a client sees for this failure.
    pub fn error_code(&self) -> kafka_protocol::ResponseError {
        use kafka_protocol::ResponseError as E;
        match self {
            MetadataError::TopicAlreadyExists(_) => E::TopicAlreadyExists,
            MetadataError::UnknownTopic(_) => E::UnknownTopicOrPartition,
            MetadataError::Io(_) => E::KafkaStorageError,
            MetadataError::Corrupt(_) => E::KafkaStorageError,
            MetadataError::Unavailable(_) => E::RequestTimedOut,
            MetadataError::Conflict(_) => E::RequestTimedOut,
            MetadataError::Refused(_) => E::InvalidRequest,
            MetadataError::Fenced(_) => E::NotCoordinator,
            MetadataError::NotController => E::NotController,
        }
    }
}

/// Where the cluster's metadata lives.
#[async_trait]
pub trait MetadataStore: Send + Sync {
    /// The cluster id, fixed when the store was first created.
    fn cluster_id(&self) -> String;
    /// Whether this is a store shared by several brokers (cluster mode).
    fn is_cluster(&self) -> bool;

    /// Registers this broker and keeps the registration alive until the store is dropped;
    /// returns the epoch. Cluster mode: refused (`Refused`) while another live broker holds
    /// the node id.
    async fn register_broker(&self, registration: BrokerRegistration) -> Result<i64>;
    /// Ends this broker's registration at once (a graceful stop): it is no longer live, and
    /// what it held under the registration (cluster mode: coordinator slots, its controller
    /// candidacy) is gone, so the controller moves its partitions' leadership without waiting
    /// for a lease to expire. It never registers again. Embedded: nothing to hand over.
    async fn deregister(&self) -> Result<()>;
    /// Ends broker `node_id`'s registration at once if it is still the one at `epoch` (a peer
    /// found its listener refusing connections: its process is gone), so the controller moves
    /// its partitions without waiting for its lease to expire. Safety never rests on this
    /// (leadership is fenced by epochs and the registration compares); it only makes the
    /// lease end sooner, and a broker that was alive after all registers again with a new
    /// epoch. Returns whether a registration was ended. Embedded: nothing to end.
    async fn expire_registration(&self, node_id: i32, epoch: i64) -> Result<bool>;
    /// Brokers registered and alive now, by node id.
    fn live_brokers(&self) -> Vec<BrokerRegistration>;
    /// Whether this broker's registration is certainly alive: false from a safety margin
    /// before its lease could have expired (etcd unreachable) until it is renewed or
    /// re-registered. A broker that is not live acknowledges no write and coordinates nothing.
    fn is_live(&self) -> bool;
    /// Ticks whenever topics, brokers, partition states or the controller change in the store (the embedded store: never, since
    /// only this broker changes it).
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Every topic, by name.
    async fn topics(&self) -> Result<BTreeMap<String, TopicRecord>>;
    /// Adds a topic; `TopicAlreadyExists` if the name is taken.
    async fn create_topic(&self, topic: TopicRecord) -> Result<()>;
    /// Replaces an existing topic's record (configs, added partitions) if it still is
    /// `expected` (the record the change was computed from); `Conflict` if another broker
    /// changed it meanwhile.
    async fn update_topic(&self, expected: &TopicRecord, topic: TopicRecord) -> Result<()>;
    /// Removes topic `name` if it is still the one with `id`, and returns what it was.
    async fn delete_topic(&self, name: &str, id: Uuid) -> Result<TopicRecord>;

    /// The stored state of a partition (None: never changed, so
    /// [`PartitionState::initial`] of its topic record), as this broker last heard (cluster
    /// mode: from the watch, which ticks [`MetadataStore::changes`] on every change).
    fn partition_state(&self, topic: &str, partition: i32) -> Option<StoredState>;
    /// The controller's node id, as this broker last heard.
    fn controller(&self) -> Option<i32>;
    /// Waits until this broker is elected the controller (registered first), and returns its
    /// term. Being elected proves nothing by itself: every write the controller makes is
    /// fenced by the claim.
    async fn campaign_controller(&self) -> Result<ControllerClaim>;
    /// Whether `claim` may still be this broker's term (as last heard; the writes are what
    /// is fenced).
    fn holds_controller(&self, claim: &ControllerClaim) -> bool;
    /// Writes a partition's state, fenced by the controller claim (`NotController`), if the
    /// stored state is still at `expected` (0: never written, and the topic must still be
    /// `state.topic_id`), the new leader (if any) is registered and the `replaced` leader is
    /// not: `Conflict` otherwise (the controller's view was stale). Returns the new revision.
    async fn put_partition_state(
        &self,
        claim: &ControllerClaim,
        topic: &str,
        partition: i32,
        expected: i64,
        replaced: Option<i32>,
        state: PartitionState,
    ) -> Result<i64>;

    /// Changes a partition's ISR, as its leader does (Kafka's AlterPartition): `state` keeps
    /// the stored leader (this broker) and leader epoch. Written only if the stored state is
    /// still at `expected` (0: never written, and the topic must still be `state.topic_id`)
    /// and the leader is registered; `Conflict` otherwise (the controller or an earlier
    /// change came first: a deposed leader's change fails). Returns the new revision.
    async fn alter_isr(
        &self,
        topic: &str,
        partition: i32,
        expected: i64,
        state: PartitionState,
    ) -> Result<i64>;

    /// An operator's change of a partition's state, written by whichever broker took the
    /// request (ElectLeaders, AlterPartitionReassignments): only if the stored state is still
    /// at `expected` (0: never written, and the topic must still be `state.topic_id`) and the
    /// new leader, if any, is registered; `Conflict` otherwise. The change itself must be
    /// safe from the state it was computed from (a new leader comes from its ISR), which the
    /// compare-and-swap makes the state it applies to. Returns the new revision.
    async fn change_partition_state(
        &self,
        topic: &str,
        partition: i32,
        expected: i64,
        state: PartitionState,
    ) -> Result<i64>;

    /// How many coordinator slots of each kind the cluster has (fixed when it was created).
    fn coordinator_slots(&self) -> SlotCounts;
    /// Claims `slot` for this broker (registered first); None while another broker holds it.
    /// The claim ends with this broker's registration (its lease) or [`release_slot`].
    ///
    /// [`release_slot`]: MetadataStore::release_slot
    async fn claim_slot(&self, kind: CoordinatorKind, slot: u32) -> Result<Option<SlotClaim>>;
    /// Gives a claimed slot up (only if it is still that claim).
    async fn release_slot(&self, claim: SlotClaim) -> Result<()>;
    /// Every claimed slot of `kind` and its holder, as this broker last heard.
    fn slot_holders(&self, kind: CoordinatorKind) -> BTreeMap<u32, SlotHolder>;

    /// The durable state of the transactional ids of a claimed transaction slot.
    async fn load_transactions(&self, claim: SlotClaim) -> Result<BTreeMap<String, TxnRecord>>;
    /// Durably records a transactional id's state (`Fenced` if the claim is gone).
    async fn put_transaction(&self, claim: SlotClaim, record: TxnRecord) -> Result<()>;
    /// Durably forgets a transactional id (`transactional.id.expiration.ms`).
    async fn delete_transaction(&self, claim: SlotClaim, transactional_id: &str) -> Result<()>;

    /// Dynamic broker configs (AlterConfigs on a BROKER resource) by resource name: `""` holds
    /// the cluster-wide defaults, `"<node id>"` one broker's.
    async fn broker_configs(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>>;
    /// Durably replaces the dynamic configs of one broker resource (empty: removes them).
    async fn set_broker_configs(
        &self,
        resource: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<()>;

    /// Reserves `count` producer ids and returns the first: blocks never overlap, even across
    /// restarts (the reservation is durable before it is returned).
    async fn allocate_producer_ids(&self, count: i64) -> Result<i64>;

    /// The committed and pending offsets of the groups of a claimed group slot.
    async fn load_offsets(&self, claim: SlotClaim) -> Result<SlotOffsets>;
    /// Durably records committed offsets of one group (`Fenced` if the claim is gone).
    async fn commit_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<()>;
    /// Durably deletes some partitions' offsets of a group, or all of them (`None`).
    async fn delete_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<()>;
    /// Durably records a producer's pending transactional offsets for a group (replacing
    /// what it had pending there).
    async fn put_pending_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        producer_id: i64,
        pending: PendingTxnOffsets,
    ) -> Result<()>;
    /// Ends a producer's pending offsets for a group in one durable step: with `commit`
    /// they become committed offsets, without they are dropped.
    async fn resolve_pending_offsets(
        &self,
        claim: SlotClaim,
        group: &str,
        producer_id: i64,
        commit: Option<Vec<(String, i32, CommittedOffset)>>,
    ) -> Result<()>;
}
