//! A leader keeps its partitions' ISR true (Kafka's `Partition.maybeShrinkIsr` /
//! `maybeExpandIsr` and AlterPartition): every half second, for each partition this broker
//! leads, a follower that has not caught up for `replica.lag.time.max.ms` is proposed out of
//! the ISR, and one out of it that has caught up (to the high watermark and the start of the
//! leader's epoch) is proposed back in (see [`super::replication`] for the rules).
//!
//! A proposal is written with `MetadataStore::alter_isr`: a compare-and-swap on the state's
//! revision, so it applies only to the state it was computed from, and only while this broker
//! leads at that epoch (a controller's change or a new leader makes it fail, and the next
//! pass proposes again from the new state). Until it is stored a removal does not count and
//! an addition already does, so the high watermark never counts fewer replicas than the
//! store names.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::{debug, info};

use super::{now_ms, Broker, Partition, Topic};

const PASS: Duration = Duration::from_millis(500);

impl Broker {
    /// One pass over the partitions this broker leads (see the module docs).
    async fn maintain_isr(&self) {
        let lag = self.config.replica_lag_time_max_ms;
        let topics: Vec<Arc<Topic>> = self.topics();
        let live = self.live_brokers();
        let registered = |id: i32| live.iter().find(|b| b.node_id == id).map(|b| b.epoch);
        for topic in topics {
            for p in topic.hosted().filter(|p| p.is_leader()) {
                let r = p.replication();
                let change = r
                    .shrink(now_ms(), lag)
                    .map(|isr| (isr, "shrink"))
                    .or_else(|| {
                        r.expand(p.high_watermark(), registered)
                            .map(|isr| (isr, "expand"))
                    });
                if let Some((isr, kind)) = change {
                    self.propose_isr(&topic, p, isr, kind).await;
                }
            }
        }
    }

    async fn propose_isr(&self, topic: &Topic, p: &Arc<Partition>, isr: Vec<i32>, kind: &str) {
        let (state, revision) = self.partition_state(topic, p.index);
        if state.leader != self.node_id() || state.leader_epoch != p.leader_epoch() {
            return;
        }
        let mut next = state.clone();
        next.isr = isr.clone();
        p.replication().propose(isr.clone());
        match self
            .store
            .alter_isr(&topic.record.name, p.index, revision, next)
            .await
        {
            Ok(_) => {
                info!(topic = %p.topic, partition = p.index, from = ?state.isr, isr = ?isr, "ISR {kind}");
                metrics::counter!("strand_isr_changes_total", "change" => kind.to_string())
                    .increment(1);
                self.apply_leadership(topic);
            }
            Err(e) => {
                p.replication().proposal_failed();
                debug!(topic = %p.topic, partition = p.index, "ISR {kind} not written: {e}");
            }
        }
    }
}

/// Runs [`Broker::maintain_isr`] every half second until the broker is gone or stops.
pub(super) async fn isr_loop(broker: Weak<Broker>) {
    let mut every = tokio::time::interval(PASS);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(b) = broker.upgrade() else { return };
        if *b.shutdown_signal().borrow() {
            return;
        }
        b.maintain_isr().await;
    }
}
