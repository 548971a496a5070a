//! Operators move leadership and replicas: leader elections (ElectLeaders, preferred and
//! unclean, and the controller's `auto.leader.rebalance.enable` pass) and partition
//! reassignments (KIP-455: AlterPartitionReassignments, ListPartitionReassignments).
//!
//! Every change is one partition-state compare-and-swap: elections and reassignment starts
//! or cancels are written by the broker that took the request
//! (`MetadataStore::change_partition_state`, on the revision the change was computed from, the
//! new leader's registration compared present); completions and automatic rebalancing by the
//! controller, fenced by its claim. The rules themselves are `PartitionState`'s
//! (`elect_preferred`, `elect_unclean`, `reassign`, `cancel_reassignment`,
//! `complete_reassignment`): a leader always comes from the ISR (but for an unclean election an
//! operator asks for), so no change can lose an acknowledged record.
//!
//! A reassignment runs Kafka's way: the state's replicas become the target followed by the
//! replicas being removed, the added ones start as followers (the brokers open them when the
//! state names them: `Broker::reconcile`) and join the ISR once caught up (the leader's ISR
//! expansion); when every added replica is in sync the controller completes it, the removed
//! replicas leave the replicas and the ISR (and delete their copy), and a removed leader hands
//! over to the first live in-sync target replica at the next epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tracing::{info, warn};

use super::Broker;
use crate::cluster::{
    ControllerClaim, ElectionRefused, MetadataError, PartitionState, ReassignmentRefused,
};

/// What ElectLeaders asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// Make each partition's preferred (first) replica lead.
    Preferred,
    /// Give a partition without a live leader one, out of sync if need be.
    Unclean,
}

/// A refused per-partition operator request: the error code and message for the client.
pub type Refusal = (ResponseError, String);

/// How often a change computed from a stale view is tried again.
const ATTEMPTS: usize = 3;

impl Broker {
    fn live_set(&self) -> BTreeSet<i32> {
        self.live_brokers().iter().map(|b| b.node_id).collect()
    }

    /// Writes the operator change `change` computes from partition `index` of `topic`'s
    /// current state, retrying on a concurrent change.
    async fn change_state(
        &self,
        topic: &str,
        index: i32,
        change: impl Fn(&PartitionState, &BTreeSet<i32>) -> Result<PartitionState, Refusal>,
    ) -> Result<PartitionState, Refusal> {
        let unknown = || {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{index} does not exist."),
            )
        };
        for attempt in 0..ATTEMPTS {
            let t = self.topic(topic).ok_or_else(unknown)?;
            if index < 0 || index >= t.record.partition_count() {
                return Err(unknown());
            }
            let (state, revision) = self.partition_state(&t, index);
            let next = change(&state, &self.live_set())?;
            match self
                .store
                .change_partition_state(topic, index, revision, next.clone())
                .await
            {
                Ok(_) => return Ok(next),
                Err(MetadataError::Conflict(_)) if attempt + 1 < ATTEMPTS => {
                    // Our view was stale: the watch brings the newer state.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(MetadataError::UnknownTopic(_)) => return Err(unknown()),
                Err(e) => return Err((e.error_code(), e.to_string())),
            }
        }
        Err((
            ResponseError::RequestTimedOut,
            "The partition kept changing meanwhile.".into(),
        ))
    }

    /// ElectLeaders for one partition (see the module docs).
    pub async fn elect_leader(
        &self,
        topic: &str,
        index: i32,
        kind: ElectionType,
    ) -> Result<(), Refusal> {
        let next = self
            .change_state(topic, index, |state, live| {
                let live = |b| live.contains(&b);
                let r = match kind {
                    ElectionType::Preferred => state.elect_preferred(&live),
                    ElectionType::Unclean => state.elect_unclean(&live),
                };
                r.map_err(|e| match e {
                    ElectionRefused::NotNeeded => (
                        ResponseError::ElectionNotNeeded,
                        "Leader election not needed for topic partition.".into(),
                    ),
                    ElectionRefused::PreferredNotAvailable => (
                        ResponseError::PreferredLeaderNotAvailable,
                        "The preferred replica is not live or not in sync.".into(),
                    ),
                    ElectionRefused::NoEligibleLeader => (
                        ResponseError::EligibleLeadersNotAvailable,
                        "No live replica can lead the partition.".into(),
                    ),
                })
            })
            .await?;
        info!(
            topic,
            partition = index,
            leader = next.leader,
            leader_epoch = next.leader_epoch,
            ?kind,
            "leader elected by an operator"
        );
        Ok(())
    }

    /// AlterPartitionReassignments for one partition: starts moving it to `target`, or
    /// cancels the reassignment in progress (`None`). With `allow_rf_change` false, a target
    /// of another size than the current replicas is refused (KIP-860).
    pub async fn reassign_partition(
        &self,
        topic: &str,
        index: i32,
        target: Option<Vec<i32>>,
        allow_rf_change: bool,
    ) -> Result<(), Refusal> {
        let next = self
            .change_state(topic, index, |state, live| {
                let live = |b| live.contains(&b);
                let r = match &target {
                    Some(t) => {
                        if !allow_rf_change && t.len() != state.original_replicas().len() {
                            return Err((
                                ResponseError::InvalidReplicationFactor,
                                format!(
                                    "The replication factor would change from {} to {}.",
                                    state.original_replicas().len(),
                                    t.len()
                                ),
                            ));
                        }
                        state.reassign(t, &live)
                    }
                    None => state.cancel_reassignment(&live),
                };
                r.map_err(|e| match e {
                    ReassignmentRefused::Invalid(m) => (ResponseError::InvalidReplicaAssignment, m),
                    ReassignmentRefused::NoneInProgress => (
                        ResponseError::NoReassignmentInProgress,
                        "No reassignment is in progress for the partition.".into(),
                    ),
                })
            })
            .await?;
        info!(topic, partition = index, replicas = ?next.replicas, adding = ?next.adding, removing = ?next.removing, "partition reassignment {}", if target.is_some() { "started" } else { "cancelled" });
        Ok(())
    }

    /// The reassignments in progress, by topic then partition, of the partitions `only`
    /// names (all when `None`).
    pub fn reassignments(
        &self,
        only: Option<&BTreeMap<String, Vec<i32>>>,
    ) -> BTreeMap<String, BTreeMap<i32, PartitionState>> {
        let mut out: BTreeMap<String, BTreeMap<i32, PartitionState>> = BTreeMap::new();
        for t in self.topics() {
            let wanted = only.map(|o| o.get(&t.record.name));
            if wanted.is_some_and(|w| w.is_none()) {
                continue;
            }
            for index in 0..t.record.partition_count() {
                if wanted
                    .flatten()
                    .is_some_and(|parts| !parts.contains(&index))
                {
                    continue;
                }
                let (state, _) = self.partition_state(&t, index);
                if state.reassigning() {
                    out.entry(t.record.name.clone())
                        .or_default()
                        .insert(index, state);
                }
            }
        }
        out
    }

    /// The controller's preferred-leader pass (`auto.leader.rebalance.enable`, every
    /// `leader.imbalance.check.interval.seconds`): for each broker whose share of the
    /// partitions it prefers but does not lead exceeds `leader.imbalance.per.broker.percentage`,
    /// those partitions are given back to it where it is live and in sync (never during a
    /// reassignment).
    pub(super) async fn rebalance_leaders(
        &self,
        claim: &ControllerClaim,
    ) -> Result<(), MetadataError> {
        let live = self.live_set();
        let pct = self.config.leader_imbalance_per_broker_percentage as usize;
        let mut preferred: BTreeMap<i32, usize> = BTreeMap::new();
        let mut elsewhere: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for t in self.topics() {
            for index in 0..t.record.partition_count() {
                let (state, _) = self.partition_state(&t, index);
                let Some(&first) = state.replicas.first() else {
                    continue;
                };
                *preferred.entry(first).or_default() += 1;
                if state.leader != first && !state.reassigning() {
                    elsewhere
                        .entry(first)
                        .or_default()
                        .push((t.record.name.clone(), index));
                }
            }
        }
        for (broker, moved) in elsewhere {
            let total = preferred.get(&broker).copied().unwrap_or(0).max(1);
            if moved.len() * 100 <= pct * total || !live.contains(&broker) {
                continue;
            }
            for (name, index) in moved {
                let Some(t) = self.topic(&name) else { continue };
                let (state, revision) = self.partition_state(&t, index);
                let Ok(next) = state.elect_preferred(&|b| live.contains(&b)) else {
                    continue;
                };
                match self
                    .store
                    .put_partition_state(claim, &name, index, revision, None, next.clone())
                    .await
                {
                    Ok(_) => {
                        info!(topic = %name, partition = index, leader = next.leader, leader_epoch = next.leader_epoch, "preferred leader restored")
                    }
                    Err(MetadataError::NotController) => return Err(MetadataError::NotController),
                    Err(MetadataError::Conflict(_) | MetadataError::UnknownTopic(_)) => {}
                    Err(e) => {
                        warn!(topic = %name, partition = index, "cannot restore the preferred leader: {e}");
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}
