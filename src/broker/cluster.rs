//! The broker's side of cluster mode: how partitions look to clients when some are hosted by
//! other brokers ([`Broker::partition_view`], [`Broker::locate`]), where new replicas go
//! ([`place_replicas`], [`Broker::check_assignment_budget`]), and applying topic changes other
//! brokers made ([`Broker::reconcile`], run by [`reconcile_loop`] whenever the store's watch
//! ticks). Embedded, the same code sees one live broker (this one) hosting everything.
//!
//! Invariant: reconcile never deletes a partition because the store did not mention it by
//! accident: the store's topic read fails when its cluster id is gone (see `EtcdStore`).

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{info, warn};
use uuid::Uuid;

use super::{Broker, Partition, Topic, TopicError};
use crate::cluster::{BrokerRegistration, PartitionState, TopicRecord};

/// A partition as Metadata shows it (see [`Broker::partition_view`]).
pub struct PartitionView {
    /// `-1`: no leader now.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
    pub error: Option<kafka_protocol::ResponseError>,
}

/// Where a partition is served (see [`Broker::locate`]).
pub enum Located {
    Here(Arc<Partition>),
    /// Hosted by another broker: its leader if that one is live.
    Elsewhere {
        leader: Option<BrokerRegistration>,
        leader_epoch: i32,
    },
    Unknown,
}

impl Broker {
    /// This broker's epoch now (see [`BrokerRegistration::epoch`]): its live registration's,
    /// which grows when the broker registers again after losing its lease, or the one it
    /// started with while the store has none.
    pub fn epoch(&self) -> i64 {
        let me = self.node_id();
        self.store
            .live_brokers()
            .iter()
            .find(|b| b.node_id == me)
            .map_or(self.epoch, |b| b.epoch.max(self.epoch))
    }

    /// Whether this is one broker of a cluster sharing metadata in etcd.
    pub fn is_cluster(&self) -> bool {
        self.store.is_cluster()
    }

    /// Whether this broker may acknowledge writes and coordinate: its registration is
    /// certainly alive (always, embedded).
    pub fn is_live(&self) -> bool {
        self.store.is_live()
    }

    /// The controller to name to clients: the elected one while it is live, else this broker
    /// (every broker takes admin requests itself; Kafka in KRaft mode names a live broker
    /// too, since clients cannot reach its controllers).
    pub fn controller_id(&self) -> i32 {
        let me = self.node_id();
        self.store
            .controller()
            .filter(|c| *c == me || self.live_brokers().iter().any(|b| b.node_id == *c))
            .unwrap_or(me)
    }

    /// The live brokers, by node id (embedded: this one).
    pub fn live_brokers(&self) -> Vec<BrokerRegistration> {
        self.store.live_brokers()
    }

    /// The brokers to show clients: the live ones, and always this one (whose own
    /// registration the watch may not have delivered yet).
    pub fn brokers(&self) -> Vec<BrokerRegistration> {
        let mut all = self.live_brokers();
        if !all.iter().any(|b| b.node_id == self.node_id()) {
            all.push(BrokerRegistration {
                node_id: self.node_id(),
                host: self.config.advertised_host.clone(),
                port: self.config.advertised_port,
                rack: self.config.broker_rack.clone(),
                epoch: self.epoch(),
            });
            all.sort_by_key(|b| b.node_id);
        }
        all
    }

    /// The state of partition `index` of `topic` as this broker last heard, with its store
    /// revision (0: never changed, the initial state of the topic record).
    pub fn partition_state(&self, topic: &Topic, index: i32) -> (PartitionState, i64) {
        let stored = self
            .store
            .partition_state(&topic.record.name, index)
            .filter(|s| s.state.topic_id == topic.record.id);
        match stored {
            Some(s) => (s.state, s.revision),
            None => {
                let replicas = usize::try_from(index)
                    .ok()
                    .and_then(|i| topic.record.assignments.get(i))
                    .map_or(&[][..], Vec::as_slice);
                (PartitionState::initial(topic.record.id, replicas), 0)
            }
        }
    }

    /// Makes this broker lead (or not) each partition of `topic` it hosts as the partitions'
    /// states say.
    pub(super) fn apply_leadership(&self, topic: &Topic) {
        let me = self.node_id();
        let min_insync = self
            .topic_config(&topic.record.configs, "min.insync.replicas")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1);
        for p in topic.hosted() {
            let (state, _) = self.partition_state(topic, p.index);
            let leading = state.leader == me;
            if state.leader_epoch < p.leader_epoch() {
                warn!(topic = %p.topic, partition = p.index, state_epoch = state.leader_epoch, log_epoch = p.leader_epoch(), "partition state is older than this replica's log: not applied");
                continue;
            }
            if leading {
                // Fetching stops before this broker leads (its log takes produce then).
                self.follow(p, None);
            }
            if p.set_leadership(leading, state.leader_epoch) {
                info!(topic = %p.topic, partition = p.index, leading, leader = state.leader, leader_epoch = state.leader_epoch, isr = ?state.isr, "partition leadership");
            }
            if leading {
                p.lead(state.leader_epoch, &state.replicas, &state.isr, min_insync);
            } else {
                p.resign();
                let follows = state.leader >= 0 && state.replicas.contains(&me);
                self.follow(p, follows.then_some((state.leader, state.leader_epoch)));
            }
        }
    }

    /// [`Broker::apply_leadership`] for every topic.
    pub(super) fn apply_all_leadership(&self) {
        let topics: Vec<Arc<Topic>> = self.read_topics().values().cloned().collect();
        for t in topics {
            self.apply_leadership(&t);
        }
    }

    /// How partition `index` of `topic` looks to clients (Metadata, DescribeTopicPartitions):
    /// its state's leader, epoch, replicas and ISR. A leader that is not live is reported as
    /// none (LEADER_NOT_AVAILABLE) until the controller moves leadership or it comes back;
    /// replicas on brokers that are gone are offline.
    pub fn partition_view(&self, topic: &Topic, index: i32) -> PartitionView {
        let (state, _) = self.partition_state(topic, index);
        let live: std::collections::BTreeSet<i32> =
            self.live_brokers().iter().map(|b| b.node_id).collect();
        let me = self.node_id();
        let hosted = usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get(i))
            .and_then(Option::as_ref);
        let up = |b: &i32| {
            if *b == me {
                hosted.is_some_and(|p| p.log().is_ok())
            } else {
                live.contains(b)
            }
        };
        let offline: Vec<i32> = state.replicas.iter().copied().filter(|b| !up(b)).collect();
        let leader = if state.leader == me {
            hosted.is_some_and(|p| p.is_leader()).then_some(me)
        } else {
            Some(state.leader).filter(|b| live.contains(b))
        };
        let error = match leader {
            None => Some(kafka_protocol::ResponseError::LeaderNotAvailable),
            Some(l) if l == me && hosted.is_some_and(|p| p.log().is_err()) => {
                Some(kafka_protocol::ResponseError::KafkaStorageError)
            }
            Some(_) => None,
        };
        PartitionView {
            leader: leader.unwrap_or(-1),
            leader_epoch: state.leader_epoch,
            replicas: state.replicas,
            isr: state.isr,
            offline,
            error,
        }
    }

    /// KIP-392: the replica a consumer in `rack` fetching `p` (led here) from `offset` should
    /// fetch from instead, with the rack-aware selector: none when this broker is in that rack
    /// (or no selector is set), else the live in-sync follower in the rack that has fetched
    /// furthest, if one has reached `offset`.
    pub fn preferred_read_replica(&self, p: &Partition, rack: &str, offset: i64) -> Option<i32> {
        if !self.config.replica_selector_rack_aware
            || rack.is_empty()
            || self.config.broker_rack.as_deref() == Some(rack)
        {
            return None;
        }
        let live = self.live_brokers();
        p.replication()
            .in_sync_followers_at(offset)
            .into_iter()
            .filter(|(id, _)| {
                live.iter()
                    .any(|b| b.node_id == *id && b.rack.as_deref() == Some(rack))
            })
            .max_by_key(|(_, at)| *at)
            .map(|(id, _)| id)
    }

    /// Whether the cluster has partition `index` of `topic` (hosted here or not).
    pub fn partition_exists(&self, topic: &str, index: i32) -> bool {
        self.topic(topic)
            .is_some_and(|t| index >= 0 && index < t.record.partition_count())
    }

    /// The error for a partition request this broker cannot serve because it does not host
    /// the partition: NOT_LEADER_OR_FOLLOWER if another broker does (the client refreshes its
    /// metadata and goes there), UNKNOWN_TOPIC_OR_PARTITION if it does not exist.
    pub fn not_hosted_error(&self, topic: &str, index: i32) -> kafka_protocol::ResponseError {
        if self.partition_exists(topic, index) {
            kafka_protocol::ResponseError::NotLeaderOrFollower
        } else {
            kafka_protocol::ResponseError::UnknownTopicOrPartition
        }
    }

    /// Where a request for partition `index` of `topic` must go: `Here` if this broker leads
    /// it, else `Elsewhere` with its leader (or none): NOT_LEADER_OR_FOLLOWER for the client.
    pub fn locate(&self, topic: &str, index: i32) -> Located {
        let Some(t) = self.topic(topic) else {
            return Located::Unknown;
        };
        match usize::try_from(index)
            .ok()
            .and_then(|i| t.partitions.get(i))
        {
            None => Located::Unknown,
            Some(Some(p)) if p.is_leader() => Located::Here(p.clone()),
            Some(_) => {
                let view = self.partition_view(&t, index);
                let leader = self
                    .live_brokers()
                    .into_iter()
                    .find(|b| b.node_id == view.leader && b.node_id != self.node_id());
                Located::Elsewhere {
                    leader,
                    leader_epoch: view.leader_epoch,
                }
            }
        }
    }

    /// Whether the replica lists `new` fit every broker they name under
    /// `max.broker.partitions`, counting what each already holds (in the cached records): a
    /// CreateTopics or CreatePartitions through one broker cannot overload another.
    pub fn check_assignment_budget(&self, new: &[Vec<i32>]) -> Result<(), TopicError> {
        let cap = self.config.max_broker_partitions.max(0) as usize;
        let mut adding: BTreeMap<i32, usize> = BTreeMap::new();
        for replicas in new {
            for b in replicas {
                *adding.entry(*b).or_default() += 1;
            }
        }
        if adding.is_empty() {
            return Ok(());
        }
        let mut held: BTreeMap<i32, usize> = BTreeMap::new();
        for t in self.read_topics().values() {
            for replicas in &t.record.assignments {
                for b in replicas {
                    if adding.contains_key(b) {
                        *held.entry(*b).or_default() += 1;
                    }
                }
            }
        }
        for (b, n) in adding {
            let now = held.get(&b).copied().unwrap_or(0);
            if now + n > cap {
                return Err(TopicError::PolicyViolation(format!(
                    "Adding {n} partitions to broker {b} would exceed max.broker.partitions: it holds {now} of at most {cap}."
                )));
            }
        }
        Ok(())
    }

    /// Cluster mode: makes the local topics what the store says, applying what other brokers
    /// changed: new topics and partitions (their partitions hosted here are opened), new
    /// configs, deleted topics (removed here). The store refuses to answer when its cluster id
    /// is gone, so a wiped etcd never reads as "every topic deleted".
    pub async fn reconcile(&self) -> Result<(), TopicError> {
        let _admin = self.admin.lock().await;
        let records = self.store.topics().await?;
        let gone: Vec<String> = self
            .read_topics()
            .iter()
            .filter(|(name, t)| records.get(*name).is_none_or(|r| r.id != t.record.id))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.remove_local_topic(&name).await;
        }
        let mut failed = None;
        for (name, record) in records {
            if let Err(e) = self.apply_topic(&name, record).await {
                warn!(topic = %name, "cannot apply the topic's change: {e}");
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Makes the local topic `name` what `record` says (see [`Broker::reconcile`]), and
    /// hosts the partitions whose replicas name this broker now: a reassignment's added
    /// replica is opened (it then follows its leader), a removed one, once the reassignment
    /// completed, is closed and its directory deleted.
    async fn apply_topic(&self, name: &str, record: TopicRecord) -> Result<(), TopicError> {
        let me = self.node_id();
        let replicas = super::current_replicas(self.store.as_ref(), &record);
        let current = self.topic(name);
        match current {
            Some(t) => {
                let moved = t
                    .partitions
                    .iter()
                    .enumerate()
                    .any(|(i, p)| p.is_some() != super::hosts(&replicas, i as i32, me));
                if t.record == record && !moved {
                    return Ok(());
                }
                let have = t.record.partition_count();
                let mut partitions = t.partitions.clone();
                let mut removed = Vec::new();
                for (i, slot) in partitions.iter_mut().enumerate() {
                    let index = i as i32;
                    match (slot.as_ref(), super::hosts(&replicas, index, me)) {
                        (Some(p), false) => {
                            removed.push(p.clone());
                            *slot = None;
                        }
                        (None, true) => {
                            *slot = self
                                .open_partitions(&record, index..index + 1)
                                .await?
                                .pop()
                                .flatten();
                            info!(topic = %name, partition = index, "replica added here");
                        }
                        _ => {}
                    }
                }
                if record.partition_count() > have {
                    partitions.extend(
                        self.open_partitions(&record, have..record.partition_count())
                            .await?,
                    );
                }
                if record.configs != t.record.configs {
                    let log_config = self.log_config_of(&record.configs);
                    for log in partitions.iter().flatten().filter_map(|p| p.opened_log()) {
                        log.update_config(log_config);
                    }
                    info!(topic = %name, "topic configs changed by another broker");
                }
                if record.partition_count() != have {
                    info!(topic = %name, partitions = record.partition_count(), "topic changed by another broker");
                }
                self.replace_topic(Topic { record, partitions });
                for p in removed {
                    self.follow(&p, None);
                    p.resign();
                    info!(topic = %name, partition = p.index, "replica removed from here");
                    self.delete_partition_dirs(t.record.id, vec![p]).await;
                }
            }
            None => {
                let count = record.partition_count();
                let partitions = self.open_partitions(&record, 0..count).await?;
                info!(topic = %name, partitions = count, hosted = partitions.iter().flatten().count(), "topic created by another broker");
                self.replace_topic(Topic { record, partitions });
            }
        }
        Ok(())
    }
}

/// Cluster mode: reconciles after every change the store's watch reports (retrying a failed
/// attempt every second until it succeeds or the next change comes).
pub(super) async fn reconcile_loop(broker: std::sync::Weak<Broker>) {
    let Some(mut changes) = broker.upgrade().map(|b| b.store.changes()) else {
        return;
    };
    // Changes between the broker's first read of the topics and this subscription would
    // otherwise wait for the next change: reconcile once first.
    changes.mark_changed();
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        loop {
            let Some(b) = broker.upgrade() else { return };
            // Partition states the controller changed (from the watch, no etcd read needed).
            b.apply_all_leadership();
            match b.reconcile().await {
                Ok(()) => break,
                Err(e) => {
                    warn!("applying metadata changes failed, retrying: {e}");
                    drop(b);
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        r = changes.changed() => if r.is_err() { return },
                    }
                }
            }
        }
    }
}

/// Replica lists for `partitions` new partitions over the live brokers: brokers ordered so
/// that racks alternate (Kafka's rack-aware order), partition `p`'s replicas the `rf`
/// brokers from position `start + p`, `start` random so topics do not all begin on the same
/// broker.
pub(super) fn place_replicas(
    live: &[BrokerRegistration],
    partitions: i32,
    rf: i16,
) -> Vec<Vec<i32>> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for b in live {
        by_rack
            .entry(b.rack.as_deref())
            .or_default()
            .push(b.node_id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut order = Vec::with_capacity(live.len());
    let mut round = 0;
    while order.len() < live.len() {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(round) {
                order.push(*id);
            }
        }
        round += 1;
    }
    let n = order.len().max(1);
    let start = (Uuid::new_v4().as_u128() % n as u128) as usize;
    (0..partitions as usize)
        .map(|p| {
            (0..rf as usize)
                .filter_map(|r| order.get((start + p + r) % n).copied())
                .collect()
        })
        .collect()
}
