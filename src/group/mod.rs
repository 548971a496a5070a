//! The group coordinator: consumer groups (classic protocol) and their committed offsets.
//!
//! A broker coordinates the groups whose coordinator slot it holds ([`crate::cluster::slots`]):
//! the broker's slot manager claims a slot in the metadata store and calls
//! [`GroupCoordinator::load_slot`], which reads the slot's offsets before serving it; it calls
//! [`GroupCoordinator::unload_slot`] before giving a slot up. A request for a group of another
//! slot answers NOT_COORDINATOR, one of a slot still loading COORDINATOR_LOAD_IN_PROGRESS, and
//! every write is fenced by the slot's claim, so a coordinator that lost its slot cannot
//! overwrite the next one's commits (single node: this broker holds every slot).
//! Each group is a [`state::Group`] behind its own mutex; requests that must wait for other
//! members (JoinGroup, SyncGroup) take a oneshot receiver under the lock and await it outside.
//! A timer task ([`GroupCoordinator::run_timers`]) expires sessions, completes rebalances at
//! their deadlines and applies offsets retention.
//!
//! Offsets: the coordinator's in-memory copy answers OffsetFetch; every commit is first made
//! durable through the [`MetadataStore`] (fsynced, group commit) and only then applied and
//! acknowledged. Commits of one group are serialized so the store's order is the memory order.
//! Group membership itself is not persisted: after a broker restart or a slot move members
//! rejoin (they get NOT_COORDINATOR or UNKNOWN_MEMBER_ID), and committed offsets are loaded
//! from the store. Transactional offsets (TxnOffsetCommit) are kept pending per producer,
//! durably, until the transaction coordinator's marker commits or drops them
//! ([`GroupCoordinator::complete_transaction`]).

pub mod consumer;
pub mod error;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use consumer::{ConsumerGroup, Heartbeat, HeartbeatResult, TopicsView};
pub use error::{GroupError, Result};
use state::{Group, GroupState, JoinRequest, JoinResult, Pending, SyncAnswer, SyncRequest};

use crate::broker::now_ms;
use crate::cluster::slots::{NotServed, SlotTable};
use crate::cluster::{
    CommittedOffset, CoordinatorKind, MetadataStore, PendingTxnOffsets, SlotClaim,
};

/// Group coordinator settings (Kafka's names in `config.rs`).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub offsets_retention_ms: i64,
    pub offset_metadata_max_bytes: usize,
    /// KIP-848 groups.
    pub consumer_session_timeout: Duration,
    pub consumer_heartbeat_interval: Duration,
}

/// A group as DescribeGroups shows it.
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// `(member id, instance id, client id, client host, metadata, assignment)`
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

type GroupRef = Arc<Mutex<Group>>;
type ConsumerGroupRef = Arc<Mutex<ConsumerGroup>>;

/// Committed offsets by topic: `(topic, [(partition, offset if committed)])`.
pub type TopicOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

pub struct GroupCoordinator {
    config: GroupConfig,
    store: Arc<dyn MetadataStore>,
    /// Classic groups, and the committed offsets of every group (a KIP-848 group's offsets
    /// live in an Empty classic entry of the same id).
    groups: Mutex<HashMap<String, GroupRef>>,
    /// KIP-848 consumer groups.
    consumer_groups: Mutex<HashMap<String, ConsumerGroupRef>>,
    /// Serializes commits and deletions of a group's offsets (store order = memory order).
    commit_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// When offsets retention last ran (it scans every offset, so it runs once a minute).
    last_retention: Mutex<Option<Instant>>,
    /// The group slots this broker serves.
    slots: SlotTable,
    /// Transactional offsets waiting for their transaction's marker, by `(group, producer id)`.
    pending: Mutex<BTreeMap<(String, i64), PendingTxnOffsets>>,
}

fn lock<T>(g: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupCoordinator {
    /// Creates the coordinator; it serves no group until a slot is loaded.
    pub fn new(config: GroupConfig, store: Arc<dyn MetadataStore>) -> GroupCoordinator {
        let slots = SlotTable::new(
            CoordinatorKind::Group,
            store.coordinator_slots().of(CoordinatorKind::Group),
        );
        GroupCoordinator {
            config,
            store,
            groups: Mutex::new(HashMap::new()),
            consumer_groups: Mutex::new(HashMap::new()),
            commit_locks: Mutex::new(HashMap::new()),
            last_retention: Mutex::new(None),
            slots,
            pending: Mutex::new(BTreeMap::new()),
        }
    }

    /// The slots served (or loading) and their epochs.
    pub fn served_slots(&self) -> Vec<(u32, i64)> {
        self.slots.served()
    }

    /// The slot of a group id.
    pub fn slot_of(&self, group_id: &str) -> u32 {
        self.slots.slot_of(group_id)
    }

    /// The claim under which this broker coordinates `group_id` now, or why it does not.
    pub fn check_coordinator(&self, group_id: &str) -> Result<SlotClaim> {
        // A broker that is not live may be losing its registration: another broker may be
        // taking the slot over.
        self.check_slot(self.slots.slot_of(group_id))
    }

    /// Starts serving a claimed slot: loads its committed and pending offsets, then answers its
    /// groups' requests (COORDINATOR_LOAD_IN_PROGRESS meanwhile).
    pub async fn load_slot(&self, claim: SlotClaim) -> Result<()> {
        self.slots.begin_load(&claim);
        let loaded = match self.store.load_offsets(claim).await {
            Ok(l) => l,
            Err(e) => {
                self.slots.remove(claim.slot);
                return Err(e.into());
            }
        };
        let now = now_ms();
        {
            let mut groups = lock(&self.groups);
            for (id, offs) in loaded.committed {
                let mut g = Group::new(&id);
                g.offsets = offs;
                g.empty_since_ms = Some(now);
                groups.insert(id, Arc::new(Mutex::new(g)));
            }
            lock(&self.pending).extend(loaded.pending);
        }
        if !self.slots.finish_load(&claim) {
            // Given up while loading: forget what was loaded.
            self.forget_slot(claim.slot);
        }
        Ok(())
    }

    /// Stops serving a slot (before it is released or after it was lost): parked requests of
    /// its groups answer NOT_COORDINATOR and their state is dropped from memory.
    pub fn unload_slot(&self, slot: u32) {
        if self.slots.remove(slot).is_some() {
            self.forget_slot(slot);
        }
    }

    fn forget_slot(&self, slot: u32) {
        let in_slot = |id: &str| self.slots.slot_of(id) == slot;
        let dropped: Vec<GroupRef> = {
            let mut groups = lock(&self.groups);
            let ids: Vec<String> = groups.keys().filter(|id| in_slot(id)).cloned().collect();
            ids.iter().filter_map(|id| groups.remove(id)).collect()
        };
        for g in dropped {
            lock(&g).release_waiters(GroupError::NotCoordinator);
        }
        lock(&self.consumer_groups).retain(|id, _| !in_slot(id));
        lock(&self.pending).retain(|(id, _), _| !in_slot(id));
        lock(&self.commit_locks).retain(|id, l| !in_slot(id) || Arc::strong_count(l) > 1);
    }

    fn get(&self, id: &str) -> Option<GroupRef> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn get_or_create(&self, id: &str) -> GroupRef {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(Group::new(id))))
            .clone()
    }

    fn consumer_group(&self, id: &str) -> Option<ConsumerGroupRef> {
        lock(&self.consumer_groups).get(id).cloned()
    }

    /// A KIP-848 group with members under this id, if any.
    fn active_consumer_group(&self, id: &str) -> Option<ConsumerGroupRef> {
        self.consumer_group(id)
            .filter(|g| !lock(g).members.is_empty())
    }

    pub fn consumer_heartbeat_interval(&self) -> Duration {
        self.config.consumer_heartbeat_interval
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub fn consumer_heartbeat(
        &self,
        group_id: &str,
        hb: Heartbeat,
        topics: &TopicsView,
    ) -> Result<HeartbeatResult> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidRequest("GroupId can't be empty.".into()));
        }
        self.check_coordinator(group_id)?;
        if let Some(classic) = self.get(group_id) {
            if !lock(&classic).is_empty() {
                return Err(GroupError::GroupIdNotFound);
            }
        }
        let group = lock(&self.consumer_groups)
            .entry(group_id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(ConsumerGroup::new(group_id))))
            .clone();
        let mut g = lock(&group);
        g.heartbeat(
            hb,
            topics,
            Instant::now(),
            self.config.consumer_session_timeout,
        )
    }

    /// Runs `f` on a KIP-848 group (ConsumerGroupDescribe).
    pub fn with_consumer_group<T>(
        &self,
        group_id: &str,
        f: impl FnOnce(&ConsumerGroup) -> T,
    ) -> Option<T> {
        self.consumer_group(group_id).map(|g| f(&lock(&g)))
    }

    /// Whether a commit or deletion of this group's offsets is being written right now.
    fn commit_in_flight(&self, id: &str) -> bool {
        lock(&self.commit_locks)
            .get(id)
            .is_some_and(|l| l.try_lock().is_err())
    }

    fn commit_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.commit_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinResult {
        let fail = |e: GroupError| JoinResult {
            error: Some(e),
            generation: -1,
            member_id: req.member_id.clone(),
            ..Default::default()
        };
        if group_id.is_empty() {
            return fail(GroupError::InvalidGroupId);
        }
        if let Err(e) = self.check_coordinator(group_id) {
            return fail(e);
        }
        if req.session_timeout < self.config.min_session_timeout
            || req.session_timeout > self.config.max_session_timeout
        {
            return fail(GroupError::InvalidSessionTimeout);
        }
        if self.active_consumer_group(group_id).is_some() {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        let group = if req.member_id.is_empty() {
            self.get_or_create(group_id)
        } else {
            match self.get(group_id) {
                Some(g) => g,
                None => return fail(GroupError::UnknownMemberId),
            }
        };
        let pending = lock(&group).join(req, Instant::now(), self.config.initial_rebalance_delay);
        match pending {
            Pending::Now(r) => r,
            Pending::Wait(rx) => rx.await.unwrap_or_else(|_| JoinResult {
                error: Some(GroupError::RebalanceInProgress),
                generation: -1,
                ..Default::default()
            }),
        }
    }

    pub async fn sync(&self, group_id: &str, req: SyncRequest) -> SyncAnswer {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_coordinator(group_id)?;
        let group = self.get(group_id).ok_or(GroupError::UnknownMemberId)?;
        let pending = lock(&group).sync(req, Instant::now());
        match pending {
            Pending::Now(r) => r,
            Pending::Wait(rx) => rx.await.unwrap_or(Err(GroupError::RebalanceInProgress)),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<()> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_coordinator(group_id)?;
        let group = self.get(group_id).ok_or(GroupError::UnknownMemberId)?;
        let mut g = lock(&group);
        g.heartbeat(member_id, instance_id, generation, Instant::now())
    }

    /// LeaveGroup: one result per member; Err for the whole request if the group is unknown.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<()>>> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_coordinator(group_id)?;
        let group = self.get(group_id).ok_or(GroupError::UnknownMemberId)?;
        let mut g = lock(&group);
        let results: Vec<Result<()>> = members
            .iter()
            .map(|(m, inst)| g.leave(m, inst.as_deref()))
            .collect();
        if results.iter().any(|r| r.is_ok()) {
            g.members_left(Instant::now(), now_ms());
        }
        Ok(results)
    }

    /// Validates the committer (Kafka's rules for simple and group-managed commits).
    fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(GroupRef, SlotClaim)> {
        // An empty group id is accepted here (not in JoinGroup), as Kafka does for old clients
        // that commit offsets without a group.
        let claim = self.check_coordinator(group_id)?;
        if let Some(cg) = self.active_consumer_group(group_id) {
            // KIP-848 group: the committer must be a member at its current epoch.
            lock(&cg).check_member_epoch(member_id, generation)?;
            return Ok((self.get_or_create(group_id), claim));
        }
        let group = match self.get(group_id) {
            Some(g) => g,
            None if generation < 0 => self.get_or_create(group_id),
            None => return Err(GroupError::IllegalGeneration),
        };
        {
            let mut g = lock(&group);
            if g.state == GroupState::Dead {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            if !(generation < 0 && g.state == GroupState::Empty) {
                g.check_member(member_id, instance_id, generation)?;
                if g.state == GroupState::CompletingRebalance {
                    return Err(GroupError::RebalanceInProgress);
                }
                g.touch(member_id, Instant::now());
            }
        }
        Ok((group, claim))
    }

    /// OffsetCommit: validates, persists, then applies. Per-partition problems (metadata too
    /// large) are returned per partition; the caller has already filtered unknown partitions.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<(String, i32, i64, i32, Option<String>)>,
    ) -> Result<Vec<Result<()>>> {
        let (group, claim) = self.check_commit(group_id, generation, member_id, instance_id)?;
        let now = now_ms();
        let mut results = Vec::with_capacity(offsets.len());
        let mut to_store = Vec::new();
        for (topic, partition, offset, epoch, metadata) in offsets {
            let metadata = metadata.unwrap_or_default();
            if metadata.len() > self.config.offset_metadata_max_bytes {
                results.push(Err(GroupError::OffsetMetadataTooLarge));
                continue;
            }
            results.push(Ok(()));
            to_store.push((
                topic,
                partition,
                CommittedOffset {
                    offset,
                    leader_epoch: epoch,
                    metadata,
                    commit_timestamp: now,
                },
            ));
        }
        if to_store.is_empty() {
            return Ok(results);
        }
        let commit_lock = self.commit_lock(group_id);
        let _serial = commit_lock.lock().await;
        self.store
            .commit_offsets(claim, group_id, to_store.clone())
            .await?;
        drop(group);
        self.apply_offsets(&claim, group_id, to_store);
        Ok(results)
    }

    /// Applies durable offsets to the group in the map, creating it again if the timer dropped
    /// it (an empty group without offsets) while the commit was being written; not if the slot
    /// was given up meanwhile (the next holder loads them from the store).
    fn apply_offsets(
        &self,
        claim: &SlotClaim,
        group_id: &str,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) {
        if !self.slots.is_current(claim) {
            return;
        }
        let group = self.get_or_create(group_id);
        let mut g = lock(&group);
        for (t, p, o) in offsets {
            g.offsets.insert((t, p), o);
        }
    }

    /// OffsetFetch v9 from a KIP-848 member: its epoch must be current.
    pub fn check_fetch_member(&self, group_id: &str, member_id: &str, epoch: i32) -> Result<()> {
        self.check_coordinator(group_id)?;
        match self.consumer_group(group_id) {
            Some(g) => lock(&g).check_member_epoch(member_id, epoch),
            None => Err(GroupError::UnknownMemberId),
        }
    }

    /// TxnOffsetCommit v3+: the committer must be a current member of the group.
    pub fn check_txn_member(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<()> {
        self.check_coordinator(group_id)?;
        if let Some(cg) = self.active_consumer_group(group_id) {
            return lock(&cg).check_member_epoch(member_id, generation);
        }
        match self.get(group_id) {
            Some(g) => lock(&g).check_member(member_id, instance_id, generation),
            None => Err(GroupError::IllegalGeneration),
        }
    }

    /// TxnOffsetCommit: the offsets stay pending (durably) until the producer's transaction
    /// ends; a producer's later commits for the same partitions replace earlier ones.
    pub async fn commit_transactional(
        &self,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<()> {
        let claim = self.check_coordinator(group_id)?;
        for (_, _, o) in &offsets {
            if o.metadata.len() > self.config.offset_metadata_max_bytes {
                return Err(GroupError::OffsetMetadataTooLarge);
            }
        }
        let commit_lock = self.commit_lock(group_id);
        let _serial = commit_lock.lock().await;
        let key = (group_id.to_string(), producer_id);
        let mut pending = lock(&self.pending)
            .get(&key)
            .cloned()
            .unwrap_or(PendingTxnOffsets {
                producer_epoch,
                offsets: vec![],
            });
        pending.producer_epoch = pending.producer_epoch.max(producer_epoch);
        for (t, p, o) in offsets {
            pending
                .offsets
                .retain(|(t2, p2, _)| !(*t2 == t && *p2 == p));
            pending.offsets.push((t, p, o));
        }
        self.store
            .put_pending_offsets(claim, group_id, producer_id, pending.clone())
            .await?;
        if self.slots.is_current(&claim) {
            lock(&self.pending).insert(key, pending);
        }
        Ok(())
    }

    /// The transaction marker for group slot `slot` (Kafka: a marker written to a
    /// `__consumer_offsets` partition): a producer's pending offsets in every group of the slot
    /// become committed (`commit`) or are dropped.
    pub async fn complete_transaction(
        &self,
        slot: u32,
        producer_id: i64,
        commit: bool,
    ) -> Result<()> {
        let groups: Vec<String> = lock(&self.pending)
            .keys()
            .filter(|(g, pid)| *pid == producer_id && self.slots.slot_of(g) == slot)
            .map(|(g, _)| g.clone())
            .collect();
        if groups.is_empty() {
            // Nothing pending here, but the caller must learn whether this broker is the
            // slot's coordinator (or the marker would be lost on the way to another one).
            return self.check_slot(slot).map(|_| ());
        }
        for group_id in groups {
            let claim = self.check_coordinator(&group_id)?;
            let commit_lock = self.commit_lock(&group_id);
            let _serial = commit_lock.lock().await;
            let key = (group_id.clone(), producer_id);
            let Some(pending) = lock(&self.pending).get(&key).cloned() else {
                continue;
            };
            let offsets = commit.then(|| pending.offsets.clone());
            self.store
                .resolve_pending_offsets(claim, &group_id, producer_id, offsets.clone())
                .await?;
            lock(&self.pending).remove(&key);
            if let Some(offsets) = offsets {
                self.apply_offsets(&claim, &group_id, offsets);
            }
        }
        Ok(())
    }

    /// The claim under which slot `slot` is served.
    fn check_slot(&self, slot: u32) -> Result<SlotClaim> {
        if !self.store.is_live() {
            return Err(GroupError::NotCoordinator);
        }
        self.slots.check_slot(slot).map_err(|e| match e {
            NotServed::NotCoordinator => GroupError::NotCoordinator,
            NotServed::Loading => GroupError::CoordinatorLoadInProgress,
        })
    }

    /// Whether a transaction has offsets pending for this group partition (OffsetFetch with
    /// require_stable answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_pending_offsets(&self, group: &str, topic: &str, partition: i32) -> bool {
        lock(&self.pending).iter().any(|((g, _), p)| {
            g == group
                && p.offsets
                    .iter()
                    .any(|(t, p, _)| t == topic && *p == partition)
        })
    }

    /// Committed offsets of a group (all, or the requested partitions; -1 where none).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<TopicOffsets> {
        self.check_coordinator(group_id)?;
        let offsets = self
            .get(group_id)
            .map(|g| lock(&g).offsets.clone())
            .unwrap_or_default();
        Ok(match partitions {
            Some(req) => req
                .into_iter()
                .map(|(t, ps)| {
                    let found = ps
                        .into_iter()
                        .map(|p| (p, offsets.get(&(t.clone(), p)).cloned()))
                        .collect();
                    (t, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                    BTreeMap::new();
                for ((t, p), o) in offsets {
                    by_topic.entry(t).or_default().push((p, Some(o)));
                }
                by_topic.into_iter().collect()
            }
        })
    }

    /// `(group id, protocol type, state, group type)` of every group, optionally filtered by
    /// state names. A KIP-848 group is listed as type `consumer`, a classic one as `classic`.
    pub fn list(&self, states: &[String]) -> Vec<(String, String, &'static str, &'static str)> {
        let groups: Vec<GroupRef> = lock(&self.groups).values().cloned().collect();
        let consumer: Vec<ConsumerGroupRef> =
            lock(&self.consumer_groups).values().cloned().collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for g in &consumer {
            let g = lock(g);
            seen.insert(g.id.clone());
            out.push((
                g.id.clone(),
                "consumer".to_string(),
                g.state_name(),
                "consumer",
            ));
        }
        for g in &groups {
            let g = lock(g);
            if seen.contains(&g.id) {
                continue;
            }
            out.push((
                g.id.clone(),
                g.protocol_type.clone().unwrap_or_default(),
                g.state.name(),
                "classic",
            ));
        }
        out.retain(|(_, _, s, _)| {
            states.is_empty() || states.iter().any(|f| f.eq_ignore_ascii_case(s))
        });
        out.sort();
        out
    }

    /// None if the group does not exist (DescribeGroups then answers state Dead).
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        if self.active_consumer_group(group_id).is_some() {
            // Not a classic group: ConsumerGroupDescribe describes it (as in Kafka).
            return None;
        }
        let group = self.get(group_id)?;
        let g = lock(&group);
        let protocol = g.protocol.clone().unwrap_or_default();
        let mut members: Vec<&state::Member> = g.members.values().collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let show_members = matches!(
            g.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::PreparingRebalance
        );
        Some(GroupDescription {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: if show_members {
                members
                    .into_iter()
                    .map(|m| {
                        let assignment = if g.state == GroupState::Stable {
                            m.assignment.clone()
                        } else {
                            Bytes::new()
                        };
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.client_id.clone(),
                            m.client_host.clone(),
                            m.metadata(&protocol),
                            assignment,
                        )
                    })
                    .collect()
            } else {
                vec![]
            },
        })
    }

    /// DeleteGroups for one group: only an empty group can be deleted.
    pub async fn delete_group(&self, group_id: &str) -> Result<()> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let claim = self.check_coordinator(group_id)?;
        if let Some(cg) = self.consumer_group(group_id) {
            if !lock(&cg).members.is_empty() {
                return Err(GroupError::NonEmptyGroup);
            }
            lock(&self.consumer_groups).remove(group_id);
            if self.get(group_id).is_none() {
                return Ok(());
            }
        }
        let group = self.get(group_id).ok_or(GroupError::GroupIdNotFound)?;
        {
            let g = lock(&group);
            if g.state == GroupState::Dead {
                return Err(GroupError::GroupIdNotFound);
            }
            if !g.is_empty() {
                return Err(GroupError::NonEmptyGroup);
            }
        }
        let commit_lock = self.commit_lock(group_id);
        let _serial = commit_lock.lock().await;
        self.store.delete_offsets(claim, group_id, None).await?;
        let mut g = lock(&group);
        g.offsets.clear();
        g.state = GroupState::Dead;
        drop(g);
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(group_id);
        Ok(())
    }

    /// OffsetDelete: per-partition results; the group must exist, and partitions of topics the
    /// group is subscribed to cannot be deleted while it has members.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<Result<()>>> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_coordinator(group_id)?;
        let group = match self.get(group_id) {
            Some(g) => g,
            None if self.active_consumer_group(group_id).is_some() => self.get_or_create(group_id),
            None => return Err(GroupError::GroupIdNotFound),
        };
        let subscribed = {
            let g = lock(&group);
            if g.state == GroupState::Dead {
                return Err(GroupError::GroupIdNotFound);
            }
            if g.is_empty() {
                Default::default()
            } else {
                g.subscribed_topics()
            }
        };
        // A KIP-848 group's members name their topics in their heartbeats.
        let mut subscribed = subscribed;
        if let Some(cg) = self.active_consumer_group(group_id) {
            for m in lock(&cg).members.values() {
                subscribed.extend(m.subscribed.iter().cloned());
            }
        }
        let results: Vec<Result<()>> = partitions
            .iter()
            .map(|(t, _)| {
                if subscribed.contains(t) {
                    Err(GroupError::GroupSubscribedToTopic)
                } else {
                    Ok(())
                }
            })
            .collect();
        let doomed: Vec<(String, i32)> = partitions
            .into_iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(p, _)| p)
            .collect();
        if !doomed.is_empty() {
            self.forget_offsets(&group, group_id, doomed).await?;
        }
        Ok(results)
    }

    /// Durably deletes `doomed` offsets of a group, then forgets them in memory (serialized with
    /// the group's commits, so the store and memory agree on the order).
    async fn forget_offsets(
        &self,
        group: &GroupRef,
        id: &str,
        doomed: Vec<(String, i32)>,
    ) -> Result<()> {
        let claim = self.check_coordinator(id)?;
        let commit_lock = self.commit_lock(id);
        let _serial = commit_lock.lock().await;
        self.store
            .delete_offsets(claim, id, Some(doomed.clone()))
            .await?;
        let mut g = lock(group);
        for k in doomed {
            g.offsets.remove(&k);
        }
        Ok(())
    }

    /// Every group, classic entries (which hold all committed offsets).
    fn all_groups(&self) -> Vec<GroupRef> {
        lock(&self.groups).values().cloned().collect()
    }

    /// At shutdown: answers every parked JoinGroup/SyncGroup with NOT_COORDINATOR so that
    /// connections can drain at once (clients look for the coordinator again).
    pub fn shutdown(&self) {
        for g in self.all_groups() {
            lock(&g).release_waiters(GroupError::NotCoordinator);
        }
    }

    /// Forgets every group's offsets of a deleted topic.
    pub async fn topic_deleted(&self, topic: &str) {
        let groups = self.all_groups();
        for group in groups {
            let (id, doomed): (String, Vec<(String, i32)>) = {
                let g = lock(&group);
                (
                    g.id.clone(),
                    g.offsets
                        .keys()
                        .filter(|(t, _)| t == topic)
                        .cloned()
                        .collect(),
                )
            };
            if doomed.is_empty() {
                continue;
            }
            if let Err(e) = self.forget_offsets(&group, &id, doomed).await {
                tracing::warn!(group = %id, "cannot delete offsets of deleted topic {topic}: {e}");
            }
        }
    }

    /// One round of timer work: sessions, rebalance deadlines, and (once a minute) offsets
    /// retention for empty groups (`offsets.retention.minutes` after the group became empty,
    /// or after the commit for groups that never had members).
    pub async fn tick(&self, topics: &TopicsView) {
        let now = Instant::now();
        let consumer: Vec<ConsumerGroupRef> =
            lock(&self.consumer_groups).values().cloned().collect();
        for g in &consumer {
            lock(g).tick(now, topics);
        }
        let now_ms = now_ms();
        let groups = self.all_groups();
        let retention_due = {
            let mut last = self
                .last_retention
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|l| now.duration_since(l) >= Duration::from_secs(60));
            if due {
                *last = Some(now);
            }
            due
        };
        let mut expired_offsets = Vec::new();
        for group in &groups {
            let mut g = lock(group);
            g.tick(now, now_ms);
            if retention_due
                && g.state == GroupState::Empty
                && self.active_consumer_group(&g.id).is_none()
            {
                let since = g.empty_since_ms.unwrap_or(0);
                let retention = self.config.offsets_retention_ms;
                let doomed: Vec<(String, i32)> = g
                    .offsets
                    .iter()
                    .filter(|(_, o)| {
                        o.commit_timestamp.max(since).saturating_add(retention) < now_ms
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                if !doomed.is_empty() {
                    expired_offsets.push((group.clone(), g.id.clone(), doomed));
                }
            }
        }
        for (group, id, doomed) in expired_offsets {
            let Ok(claim) = self.check_coordinator(&id) else {
                continue;
            };
            let commit_lock = self.commit_lock(&id);
            let _serial = commit_lock.lock().await;
            if self
                .store
                .delete_offsets(claim, &id, Some(doomed.clone()))
                .await
                .is_ok()
            {
                let mut g = lock(&group);
                for k in doomed {
                    g.offsets.remove(&k);
                }
                tracing::info!(group = %id, "expired committed offsets (offsets.retention.minutes)");
            }
        }
        // Forget groups that have neither members nor offsets.
        lock(&self.consumer_groups).retain(|_, g| !lock(g).members.is_empty());
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, g| {
                let g = lock(g);
                let idle = g.state == GroupState::Empty && g.is_empty() && g.offsets.is_empty();
                !idle || self.commit_in_flight(id)
            });
    }

    /// Runs [`tick`](Self::tick) every 100 ms until `shutdown` turns true; `topics` gives the
    /// current topic metadata (KIP-848 assignments follow it).
    pub async fn run_timers(
        self: Arc<Self>,
        topics: impl Fn() -> Arc<TopicsView> + Send + 'static,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => self.tick(&topics()).await,
                _ = shutdown.changed() => return,
            }
        }
    }
}
