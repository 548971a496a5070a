//! One consumer group under the classic protocol: members, generations and Kafka's state
//! machine (Empty → PreparingRebalance → CompletingRebalance → Stable, and back).
//!
//! Everything here is synchronous and runs under the group's lock; a request that must wait
//! (JoinGroup until the rebalance completes, SyncGroup until the leader's assignment arrives)
//! gets a oneshot receiver and awaits it outside the lock.
//!
//! Invariants:
//! - `generation` only grows. Members get join/sync answers only for the current generation.
//! - In PreparingRebalance the rebalance completes as soon as every known member has rejoined
//!   and no KIP-394 pending member is outstanding (never by waiting out a timeout), or at the
//!   rebalance deadline, when members that did not rejoin are removed. A group that becomes
//!   non-empty from Empty first waits `group.initial.rebalance.delay.ms` for more members.
//! - A member awaiting its JoinGroup answer is never expired by its session timeout (the
//!   rebalance deadline bounds it); every other member expires at its session deadline.
//! - `statics` maps each static member's `group.instance.id` to its current member id.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::error::GroupError;
use crate::cluster::GroupOffsets;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What JoinGroup answers.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: Option<GroupError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// KIP-814 (JoinGroup v9): a static leader that rejoined a stable group must not compute a
    /// new assignment; the current one stands.
    pub skip_assignment: bool,
}

impl JoinResult {
    fn error(e: GroupError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(e),
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

/// What SyncGroup answers on success.
#[derive(Debug, Clone)]
pub struct SyncResult {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

pub type SyncAnswer = Result<SyncResult, GroupError>;

/// A JoinGroup request as the state machine sees it.
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: an unknown member must first get its id (MEMBER_ID_REQUIRED, KIP-394).
    pub require_known_member: bool,
}

/// A SyncGroup request as the state machine sees it.
pub struct SyncRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    /// v5+: must match the group's, when given.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment: member id → assignment bytes.
    pub assignments: Vec<(String, Bytes)>,
}

pub enum Pending<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncAnswer>>,
    deadline: Instant,
    joined_seq: u64,
}

impl Member {
    /// This member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn answer_join(&mut self, r: JoinResult) {
        if let Some(w) = self.join_waiter.take() {
            let _ = w.send(r);
        }
    }

    fn answer_sync(&mut self, r: SyncAnswer) {
        if let Some(w) = self.sync_waiter.take() {
            let _ = w.send(r);
        }
    }
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: HashMap<String, Member>,
    /// KIP-394 member ids handed out and not yet used, with their expiry.
    pending: HashMap<String, Instant>,
    statics: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// While set and in the future, a rebalance from Empty waits for more members.
    initial_delay_until: Option<Instant>,
    initial_delay_cap: Option<Instant>,
    seq: u64,
    pub offsets: GroupOffsets,
    /// When the group last became empty (ms since the epoch), for offsets retention.
    pub empty_since_ms: Option<i64>,
}

impl Group {
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: HashMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            initial_delay_cap: None,
            seq: 0,
            offsets: GroupOffsets::new(),
            empty_since_ms: None,
        }
    }

    /// Checks `instance_id` against the static member table.
    fn check_static(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        if let Some(inst) = instance_id {
            if let Some(current) = self.statics.get(inst) {
                if current != member_id {
                    return Err(GroupError::FencedInstanceId);
                }
            }
        }
        Ok(())
    }

    /// Validates a request from a current member of the current generation.
    pub fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.check_static(member_id, instance_id)?;
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // Some protocol of the joiner must be supported by every current member.
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    pub fn join(
        &mut self,
        req: JoinRequest,
        now: Instant,
        initial_delay: Duration,
    ) -> Pending<JoinResult> {
        if self.state == GroupState::Dead {
            return Pending::Now(JoinResult::error(
                GroupError::CoordinatorNotAvailable,
                &req.member_id,
            ));
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return Pending::Now(JoinResult::error(
                GroupError::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        if req.member_id.is_empty() {
            let new_id = format!(
                "{}-{}",
                if req.client_id.is_empty() {
                    "member"
                } else {
                    &req.client_id
                },
                uuid::Uuid::new_v4()
            );
            if let Some(inst) = req.instance_id.clone() {
                if let Some(old_id) = self.statics.get(&inst).cloned() {
                    return self.replace_static_member(old_id, new_id, req, now, initial_delay);
                }
                self.statics.insert(inst, new_id.clone());
                return self.add_member_and_rebalance(new_id, req, now, initial_delay);
            }
            if req.require_known_member {
                self.pending
                    .insert(new_id.clone(), now + req.session_timeout);
                return Pending::Now(JoinResult::error(GroupError::MemberIdRequired, &new_id));
            }
            return self.add_member_and_rebalance(new_id, req, now, initial_delay);
        }

        let member_id = req.member_id.clone();
        if let Err(e) = self.check_static(&member_id, req.instance_id.as_deref()) {
            return Pending::Now(JoinResult::error(e, &member_id));
        }
        if self.pending.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(member_id, req, now, initial_delay);
        }
        if !self.members.contains_key(&member_id) {
            return Pending::Now(JoinResult::error(GroupError::UnknownMemberId, &member_id));
        }
        match self.state {
            GroupState::PreparingRebalance => {
                let rx = self.update_member(&member_id, req, now);
                self.try_complete_join(now);
                Pending::Wait(rx)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let same = self
                    .members
                    .get(&member_id)
                    .is_some_and(|m| m.protocols == req.protocols);
                let is_leader = self.leader.as_deref() == Some(member_id.as_str());
                if same && !(self.state == GroupState::Stable && is_leader) {
                    // Nothing changed: answer with the current generation.
                    if let Some(m) = self.members.get_mut(&member_id) {
                        m.deadline = now + m.session_timeout;
                    }
                    Pending::Now(self.join_result_for(&member_id))
                } else {
                    let rx = self.update_member(&member_id, req, now);
                    self.prepare_rebalance(now, initial_delay);
                    self.try_complete_join(now);
                    Pending::Wait(rx)
                }
            }
            GroupState::Empty | GroupState::Dead => {
                Pending::Now(JoinResult::error(GroupError::UnknownMemberId, &member_id))
            }
        }
    }

    fn update_member(
        &mut self,
        member_id: &str,
        req: JoinRequest,
        now: Instant,
    ) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(member_id) {
            m.protocols = req.protocols;
            m.protocol_type = req.protocol_type;
            m.session_timeout = req.session_timeout;
            m.rebalance_timeout = req.rebalance_timeout;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            // A second JoinGroup from the same member replaces the first (whose answer would
            // otherwise never come): the old request gets the same answer as an unknown member.
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinResult::error(GroupError::UnknownMemberId, member_id));
            }
            m.deadline = now + m.session_timeout;
        }
        rx
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        now: Instant,
        initial_delay: Duration,
    ) -> Pending<JoinResult> {
        let (tx, rx) = oneshot::channel();
        self.seq += 1;
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id,
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocol_type: req.protocol_type,
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(tx),
                sync_waiter: None,
                deadline: now + req.session_timeout,
                joined_seq: self.seq,
            },
        );
        self.empty_since_ms = None;
        self.prepare_rebalance(now, initial_delay);
        self.try_complete_join(now);
        Pending::Wait(rx)
    }

    /// KIP-345: a restarted static member takes over its old member id's place. In a stable
    /// group whose selected protocol it does not change (its metadata, e.g. the partitions it
    /// owns, may differ: a restarted consumer owns none) it gets the current generation back
    /// without a rebalance and fetches its old assignment with SyncGroup; a leader is told to
    /// skip the assignment (KIP-814), as Kafka does.
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        req: JoinRequest,
        now: Instant,
        initial_delay: Duration,
    ) -> Pending<JoinResult> {
        let Some(mut old) = self.members.remove(&old_id) else {
            if let Some(inst) = &req.instance_id {
                self.statics.insert(inst.clone(), new_id.clone());
            }
            return self.add_member_and_rebalance(new_id, req, now, initial_delay);
        };
        old.answer_join(JoinResult::error(GroupError::FencedInstanceId, &old_id));
        old.answer_sync(Err(GroupError::FencedInstanceId));
        let same_type = old.protocol_type == req.protocol_type;
        if let Some(inst) = &req.instance_id {
            self.statics.insert(inst.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        let member = Member {
            id: new_id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: old.assignment,
            join_waiter: None,
            sync_waiter: None,
            deadline: now + req.session_timeout,
            joined_seq: old.joined_seq,
        };
        self.members.insert(new_id.clone(), member);
        let unchanged = same_type && self.select_protocol() == self.protocol;
        match self.state {
            GroupState::Stable if unchanged => {
                let mut result = self.join_result_for(&new_id);
                result.skip_assignment = self.leader.as_deref() == Some(new_id.as_str());
                Pending::Now(result)
            }
            GroupState::PreparingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.join_waiter = Some(tx);
                }
                self.try_complete_join(now);
                Pending::Wait(rx)
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.join_waiter = Some(tx);
                }
                self.prepare_rebalance(now, initial_delay);
                self.try_complete_join(now);
                Pending::Wait(rx)
            }
        }
    }

    /// The JoinGroup answer of the current generation for `member_id`.
    fn join_result_for(&self, member_id: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        let mut members = Vec::new();
        if is_leader {
            let mut all: Vec<&Member> = self.members.values().collect();
            all.sort_by_key(|m| m.joined_seq);
            members = all
                .into_iter()
                .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                .collect();
        }
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    /// Starts (or restarts) a rebalance.
    pub fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == GroupState::CompletingRebalance {
            // Assignments of the abandoned generation will never come: let the waiters rejoin.
            for m in self.members.values_mut() {
                m.answer_sync(Err(GroupError::RebalanceInProgress));
            }
        }
        let max_rebalance = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        if self.state == GroupState::Empty && !initial_delay.is_zero() {
            let cap = now + max_rebalance;
            self.initial_delay_until = Some((now + initial_delay).min(cap));
            self.initial_delay_cap = Some(cap);
        } else if let (Some(until), Some(cap)) = (self.initial_delay_until, self.initial_delay_cap)
        {
            // Another member arrived during the initial delay: wait a little longer for more.
            if now < until {
                self.initial_delay_until = Some((now + initial_delay).min(cap));
            }
        }
        if self.state != GroupState::PreparingRebalance {
            self.rebalance_deadline = Some(now + max_rebalance);
        }
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the rebalance if every member has rejoined (or the deadline passed).
    pub fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let deadline_passed = self.rebalance_deadline.is_some_and(|d| now >= d);
        let delaying = self.initial_delay_until.is_some_and(|u| now < u);
        let all_joined =
            self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some());
        if !(deadline_passed || (all_joined && !delaying)) {
            return;
        }
        // Members that did not rejoin in time leave the group.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        self.initial_delay_cap = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.joined_seq)
                .map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result_for(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment = Bytes::new();
                m.deadline = now + m.session_timeout;
                m.answer_join(result);
            }
        }
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.joined_seq);
        let first = members.first()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut best: Option<(&String, usize)> = None;
        for c in &candidates {
            let votes = members
                .iter()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(n, _)| n)
                        .find(|n| candidates.contains(n))
                        == Some(*c)
                })
                .count();
            if best.is_none_or(|(_, v)| votes > v) {
                best = Some((c, votes));
            }
        }
        best.map(|(n, _)| n.clone())
    }

    /// Removes a member, answering its outstanding requests.
    pub fn remove_member(&mut self, member_id: &str) -> bool {
        let Some(mut m) = self.members.remove(member_id) else {
            return false;
        };
        m.answer_join(JoinResult::error(GroupError::UnknownMemberId, member_id));
        m.answer_sync(Err(GroupError::UnknownMemberId));
        if let Some(inst) = &m.instance_id {
            if self.statics.get(inst).map(String::as_str) == Some(member_id) {
                self.statics.remove(inst);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        true
    }

    /// After members left: rebalance the rest, or become Empty.
    pub fn members_left(&mut self, now: Instant, now_ms: i64) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.become_empty(now_ms);
                } else {
                    self.prepare_rebalance(now, Duration::ZERO);
                    self.try_complete_join(now);
                }
            }
            GroupState::PreparingRebalance => {
                self.try_complete_join(now);
                if self.state == GroupState::Empty {
                    self.empty_since_ms = Some(now_ms);
                }
            }
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn become_empty(&mut self, now_ms: i64) {
        self.generation += 1;
        self.state = GroupState::Empty;
        self.protocol = None;
        self.leader = None;
        self.rebalance_deadline = None;
        self.empty_since_ms = Some(now_ms);
    }

    pub fn sync(&mut self, req: SyncRequest, now: Instant) -> Pending<SyncAnswer> {
        let member_id = req.member_id.as_str();
        if let Err(e) = self.check_member(member_id, req.instance_id.as_deref(), req.generation) {
            return Pending::Now(Err(e));
        }
        if req
            .protocol_type
            .as_deref()
            .is_some_and(|p| Some(p) != self.protocol_type.as_deref())
            || req
                .protocol_name
                .as_deref()
                .is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return Pending::Now(Err(GroupError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::PreparingRebalance => Pending::Now(Err(GroupError::RebalanceInProgress)),
            GroupState::Stable => {
                let m = &self.members[member_id];
                Pending::Now(Ok(self.sync_result(m.assignment.clone())))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.deadline = now + m.session_timeout;
                    m.sync_waiter = Some(tx);
                }
                if self.leader.as_deref() == Some(member_id) {
                    let given: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.get(&m.id).cloned().unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    let result = |a: Bytes| SyncResult {
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol.clone(),
                        assignment: a,
                    };
                    let answers: Vec<(String, SyncResult)> = self
                        .members
                        .values()
                        .map(|m| (m.id.clone(), result(m.assignment.clone())))
                        .collect();
                    for (id, r) in answers {
                        if let Some(m) = self.members.get_mut(&id) {
                            m.answer_sync(Ok(r));
                        }
                    }
                }
                Pending::Wait(rx)
            }
            GroupState::Empty | GroupState::Dead => Pending::Now(Err(GroupError::UnknownMemberId)),
        }
    }

    fn sync_result(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), GroupError> {
        self.check_member(member_id, instance_id, generation)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.deadline = now + m.session_timeout;
        }
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
        }
    }

    /// LeaveGroup for one member (by member id, instance id, or both).
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        let id = match instance_id {
            Some(inst) => {
                let current = self.statics.get(inst).cloned();
                match current {
                    Some(c) if member_id.is_empty() || c == member_id => c,
                    Some(_) => return Err(GroupError::FencedInstanceId),
                    None => return Err(GroupError::UnknownMemberId),
                }
            }
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            return Ok(());
        }
        if self.remove_member(&id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }

    /// Answers every parked JoinGroup/SyncGroup with `error` (the coordinator is going away).
    pub fn release_waiters(&mut self, error: GroupError) {
        for m in self.members.values_mut() {
            let id = m.id.clone();
            m.answer_join(JoinResult::error(error.clone(), &id));
            m.answer_sync(Err(error.clone()));
        }
    }

    /// Refreshes a member's session (offset commits count as liveness, as in Kafka).
    pub fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.deadline = now + m.session_timeout;
        }
    }

    /// Timer work: expire sessions and pending member ids, complete a rebalance at its deadline.
    pub fn tick(&mut self, now: Instant, now_ms: i64) {
        self.pending.retain(|_, expiry| *expiry > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %self.id, member = %id, "member session expired");
                self.remove_member(id);
            }
            self.members_left(now, now_ms);
        }
        if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now);
            if self.state == GroupState::Empty {
                self.empty_since_ms = Some(now_ms);
            }
        }
    }

    /// Topics the members subscribe to (consumer protocol), for OffsetDelete.
    pub fn subscribed_topics(&self) -> std::collections::HashSet<String> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        let mut topics = std::collections::HashSet::new();
        if self.protocol_type.as_deref() != Some("consumer") {
            return topics;
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        for m in self.members.values() {
            let mut meta = m.metadata(&protocol);
            if meta.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([meta[0], meta[1]]).clamp(0, 3);
            let _ = bytes::Buf::get_i16(&mut meta);
            let decoded = crate::server::connection::decode_guarded(|| {
                ConsumerProtocolSubscription::decode(&mut meta, version)
            });
            if let Some(sub) = decoded {
                topics.extend(sub.topics.into_iter().map(|t| t.to_string()));
            }
        }
        topics
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }
}
