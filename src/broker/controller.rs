//! The controller: one broker of the cluster at a time moves partition leadership.
//!
//! Every broker campaigns ([`MetadataStore::campaign_controller`], etcd's election API in
//! cluster mode; the one embedded broker is always elected). The elected one runs passes, at
//! once, on every change the store reports (brokers come and go) and every second: for each
//! partition whose leader is gone it writes the state [`PartitionState::elect`] chooses
//! (the first live in-sync replica at `leader_epoch + 1`, or no leader with the ISR kept, and
//! a returning in-sync replica elected again), and drops followers that are gone from the ISR
//! (so acks=all writes wait for no dead broker; the leader adds them back once they catch up).
//! It completes reassignments whose added replicas are all in sync, and every
//! `leader.imbalance.check.interval.seconds` (with `auto.leader.rebalance.enable`) gives
//! leadership back to preferred replicas (`super::reassign`). The replicas of new partitions are chosen by
//! the broker that takes CreateTopics / CreatePartitions (`place_replicas`), so no request
//! waits for the controller.
//!
//! Safety never depends on being elected: every state write compares the controller's
//! election key and the state's revision (`put_partition_state`), so a deposed controller's
//! write fails, and brokers lead only as the written states say.
//!
//! [`MetadataStore::campaign_controller`]: crate::cluster::MetadataStore::campaign_controller
//! [`PartitionState::elect`]: crate::cluster::PartitionState::elect

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::{info, warn};

use super::Broker;
use crate::cluster::{ControllerClaim, MetadataError};

impl Broker {
    /// One controller pass (see the module docs). `Err(NotController)` when the term ended.
    async fn elect_leaders(&self, claim: &ControllerClaim) -> Result<(), MetadataError> {
        let live: BTreeSet<i32> = self.live_brokers().iter().map(|b| b.node_id).collect();
        let topics: Vec<_> = self.read_topics().values().cloned().collect();
        for topic in topics {
            let unclean = topic
                .record
                .configs
                .get("unclean.leader.election.enable")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            for index in 0..topic.record.partition_count() {
                let (state, revision) = self.partition_state(&topic, index);
                let is_live = |b| live.contains(&b);
                let (next, replaced, what) = match state.elect(&is_live, unclean) {
                    // Only a leader being replaced must be gone.
                    Some(next) => {
                        let replaced = Some(state.leader).filter(|l| *l >= 0 && *l != next.leader);
                        (next, replaced, "partition leader changed")
                    }
                    None => match state.complete_reassignment(&is_live) {
                        Some(next) => (next, None, "partition reassignment completed"),
                        None => continue,
                    },
                };
                let name = &topic.record.name;
                match self
                    .store
                    .put_partition_state(claim, name, index, revision, replaced, next.clone())
                    .await
                {
                    Ok(_) => info!(
                        topic = %name,
                        partition = index,
                        leader = next.leader,
                        leader_epoch = next.leader_epoch,
                        isr = ?next.isr,
                        replicas = ?next.replicas,
                        "{what}"
                    ),
                    Err(MetadataError::NotController) => return Err(MetadataError::NotController),
                    // Changed or deleted meanwhile: the next pass sees the new state.
                    Err(MetadataError::Conflict(_) | MetadataError::UnknownTopic(_)) => {}
                    Err(e) => {
                        warn!(topic = %name, partition = index, "cannot change the partition's leader: {e}");
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Broker {
    /// A graceful stop in cluster mode (Kafka's controlled shutdown): coordinator slots are
    /// released, the registration ends at once (`MetadataStore::deregister`), so the
    /// controller elects other in-sync replicas to lead this broker's partitions without
    /// waiting for a lease to expire; meanwhile produce here is answered NOT_LEADER_OR_FOLLOWER
    /// (not live), which clients retry at the new leader. Returns once no partition this
    /// broker led with another live in-sync replica names it leader, or after `timeout`.
    pub async fn hand_over(&self, timeout: Duration) {
        if !self.is_cluster() {
            return;
        }
        let me = self.node_id();
        self.release_slots().await;
        let live: BTreeSet<i32> = self.live_brokers().iter().map(|b| b.node_id).collect();
        let mut led = Vec::new();
        for topic in self.read_topics().values() {
            for p in topic.hosted().filter(|p| p.is_leader()) {
                let (state, _) = self.partition_state(topic, p.index);
                if state.isr.iter().any(|r| *r != me && live.contains(r)) {
                    led.push((topic.clone(), p.index));
                }
            }
        }
        if let Err(e) = self.store.deregister().await {
            warn!("cannot end the registration at shutdown (the lease will expire): {e}");
            return;
        }
        if led.is_empty() {
            return;
        }
        info!(partitions = led.len(), "handing partition leadership over");
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.store.changes();
        loop {
            let left = led
                .iter()
                .filter(|(t, i)| self.partition_state(t, *i).0.leader == me)
                .count();
            if left == 0 {
                info!("partition leadership handed over");
                return;
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(left, "partition leadership not handed over in time");
                    return;
                }
            }
        }
    }
}

/// Campaigns, and while elected runs controller passes; campaigns again when the term ends.
/// Stops at shutdown (or when the broker is gone).
pub(super) async fn controller_loop(
    broker: Weak<Broker>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Some(store) = broker.upgrade().map(|b| b.store.clone()) else {
            return;
        };
        let claim = tokio::select! {
            r = store.campaign_controller() => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let claim = match claim {
            Ok(c) => c,
            Err(e) => {
                warn!("controller campaign failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut changes = store.changes();
        drop(store);
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_rebalance = tokio::time::Instant::now();
        loop {
            let Some(b) = broker.upgrade() else { return };
            if *shutdown.borrow() {
                return;
            }
            if !b.store.holds_controller(&claim) {
                info!(
                    epoch = claim.epoch,
                    "this broker is no longer the controller"
                );
                break;
            }
            // Other failures (etcd unreachable) are retried by the next pass.
            if let Err(MetadataError::NotController) = b.elect_leaders(&claim).await {
                info!(
                    epoch = claim.epoch,
                    "this broker is no longer the controller"
                );
                break;
            }
            let rebalance_every =
                Duration::from_secs(b.config.leader_imbalance_check_interval_seconds);
            if b.config.auto_leader_rebalance_enable && last_rebalance.elapsed() >= rebalance_every
            {
                last_rebalance = tokio::time::Instant::now();
                if let Err(MetadataError::NotController) = b.rebalance_leaders(&claim).await {
                    break;
                }
            }
            drop::<Arc<Broker>>(b);
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = every.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}
