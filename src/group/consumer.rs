//! KIP-848 consumer groups: server-side assignment driven by ConsumerGroupHeartbeat.
//!
//! Epochs: the group epoch grows whenever membership, a subscription or the metadata of a
//! subscribed topic changes; the target assignment is recomputed at once and carries the
//! group epoch as its assignment epoch. Each member reconciles towards its target with
//! incremental steps, never owning a partition another member still owns:
//! - partitions it must give up are revoked first (state `UnrevokedPartitions`, epoch kept) and
//!   count as released only when the member's heartbeat no longer reports them;
//! - then it moves to the assignment epoch and gets every target partition that is free;
//!   partitions still held by others follow on a later heartbeat (`UnreleasedPartitions`).
//!
//! So there is no stop-the-world: members keep the partitions that stay theirs throughout.
//!
//! Assignors: `uniform` (the default: balanced and sticky) and `range` (per topic, contiguous
//! ranges by member id). Topics are tracked by name; responses carry their current topic ids.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use regex::Regex;
use tokio::time::Instant;
use uuid::Uuid;

use super::error::GroupError;

/// `topic name → partitions`.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// What the coordinator knows of the cluster's topics: `name → (id, partition count)`, with
/// the reverse index by id and a generation that changes whenever the topics do. The broker
/// keeps one view per generation, so heartbeats neither rebuild nor rescan it: a group
/// recomputes its subscribed metadata only when the generation moved.
#[derive(Debug)]
pub struct TopicsView {
    pub generation: u64,
    by_name: BTreeMap<String, (Uuid, i32)>,
    by_id: HashMap<Uuid, String>,
}

static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl TopicsView {
    /// A view with a generation no other view has.
    pub fn new(by_name: BTreeMap<String, (Uuid, i32)>) -> TopicsView {
        let by_id = by_name
            .iter()
            .map(|(n, (id, _))| (*id, n.clone()))
            .collect();
        TopicsView {
            generation: NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            by_name,
            by_id,
        }
    }

    /// The name of the topic with id `id`.
    pub fn name_of(&self, id: &Uuid) -> Option<&str> {
        self.by_id.get(id).map(String::as_str)
    }
}

impl std::ops::Deref for TopicsView {
    type Target = BTreeMap<String, (Uuid, i32)>;
    fn deref(&self) -> &Self::Target {
        &self.by_name
    }
}

impl<const N: usize> From<[(String, (Uuid, i32)); N]> for TopicsView {
    fn from(topics: [(String, (Uuid, i32)); N]) -> TopicsView {
        TopicsView::new(topics.into())
    }
}

/// `^(?:regex)$`, as a subscription regex must match whole topic names.
fn compile_subscription(regex: &str) -> Option<Regex> {
    #[cfg(test)]
    tests::COMPILES.with(|c| c.set(c.get() + 1));
    Regex::new(&format!("^(?:{regex})$")).ok()
}

pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// A joining member that gives no rebalance timeout gets Kafka's consumer default (5 minutes).
const DEFAULT_REBALANCE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    previous_epoch: i32,
    pub state: MemberState,
    pub subscribed: Vec<String>,
    pub regex: Option<String>,
    /// `regex`, compiled once when it is set.
    compiled_regex: Option<Regex>,
    assignor: Option<String>,
    rebalance_timeout: Duration,
    session_timeout: Duration,
    pub assigned: Assignment,
    pub revoking: Assignment,
    session_deadline: Instant,
    revocation_deadline: Option<Instant>,
    /// The assignment last sent to the member (to send only changes).
    sent: Option<Assignment>,
}

/// A ConsumerGroupHeartbeat as the group sees it (topic ids already resolved to names).
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// `None`: unchanged since the last heartbeat (the request says -1).
    pub rebalance_timeout: Option<Duration>,
    pub subscribed: Option<Vec<String>>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// Partitions the member reports owning (`None` = unchanged since its last heartbeat).
    pub owned: Option<Assignment>,
}

pub struct HeartbeatResult {
    pub member_id: String,
    pub member_epoch: i32,
    /// Sent when it changed since the last response, and in answer to every full request.
    pub assignment: Option<Assignment>,
}

pub struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    target: HashMap<String, Assignment>,
    /// Subscribed topics' metadata when the target was computed.
    metadata_seen: BTreeMap<String, (Uuid, i32)>,
    /// The [`TopicsView`] generation `metadata_seen` was last checked against.
    metadata_generation: u64,
    pub assignor: String,
}

fn subtract(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(bs) => ps.difference(bs).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(t.clone(), rest);
        }
    }
    out
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        if let Some(bs) = b.get(t) {
            let both: BTreeSet<i32> = ps.intersection(bs).copied().collect();
            if !both.is_empty() {
                out.insert(t.clone(), both);
            }
        }
    }
    out
}

fn union(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = a.clone();
    for (t, ps) in b {
        out.entry(t.clone()).or_default().extend(ps.iter().copied());
    }
    out
}

fn is_empty(a: &Assignment) -> bool {
    a.values().all(|ps| ps.is_empty())
}

impl ConsumerGroup {
    pub fn new(id: &str) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: HashMap::new(),
            metadata_seen: BTreeMap::new(),
            metadata_generation: 0,
            assignor: ASSIGNORS[0].to_string(),
        }
    }

    /// Kafka's consumer group states, for ListGroups / ConsumerGroupDescribe.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub fn target_of(&self, member: &str) -> Assignment {
        self.target.get(member).cloned().unwrap_or_default()
    }

    /// Topics `m` subscribes to that exist.
    fn subscriptions(m: &ConsumerMember, topics: &TopicsView) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = m
            .subscribed
            .iter()
            .filter(|t| topics.contains_key(*t))
            .cloned()
            .collect();
        if let Some(re) = &m.compiled_regex {
            out.extend(topics.keys().filter(|t| re.is_match(t)).cloned());
        }
        out
    }

    fn subscribed_metadata(&self, topics: &TopicsView) -> BTreeMap<String, (Uuid, i32)> {
        #[cfg(test)]
        tests::SCANS.with(|c| c.set(c.get() + 1));
        let mut out = BTreeMap::new();
        for m in self.members.values() {
            for t in Self::subscriptions(m, topics) {
                if let Some(meta) = topics.get(&t) {
                    out.insert(t, *meta);
                }
            }
        }
        out
    }

    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        topics: &TopicsView,
        now: Instant,
        session_timeout: Duration,
    ) -> Result<HeartbeatResult, GroupError> {
        if let Some(a) = &hb.assignor {
            if !ASSIGNORS.contains(&a.as_str()) {
                return Err(GroupError::UnsupportedAssignor);
            }
        }
        // A regex is compiled only when it differs from the member's current one.
        let current = self
            .members
            .get(&hb.member_id)
            .and_then(|m| m.regex.as_ref());
        let new_regex = match &hb.regex {
            Some(r) if Some(r) != current || hb.member_epoch == 0 => {
                Some(compile_subscription(r).ok_or(GroupError::InvalidRegularExpression)?)
            }
            _ => None,
        };
        if hb.member_id.is_empty() {
            return Err(GroupError::InvalidRequest(
                "MemberId can't be empty.".into(),
            ));
        }
        match hb.member_epoch {
            -1 | -2 => {
                if self.members.remove(&hb.member_id).is_some() {
                    self.target.remove(&hb.member_id);
                    self.group_epoch += 1;
                    self.recompute(topics);
                }
                return Ok(HeartbeatResult {
                    member_id: hb.member_id,
                    member_epoch: hb.member_epoch,
                    assignment: None,
                });
            }
            0 => {
                if hb.subscribed.is_none() && hb.regex.is_none() {
                    return Err(GroupError::InvalidRequest(
                        "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
                            .into(),
                    ));
                }
                self.join(&hb, now, session_timeout);
            }
            e if e < 0 => {
                return Err(GroupError::InvalidRequest(format!(
                    "invalid member epoch {e}"
                )))
            }
            _ => {
                let Some(m) = self.members.get(&hb.member_id) else {
                    return Err(GroupError::UnknownMemberId);
                };
                let owned_ok = hb
                    .owned
                    .as_ref()
                    .is_none_or(|o| is_empty(&subtract(o, &m.assigned)));
                if hb.member_epoch != m.epoch && !(hb.member_epoch == m.previous_epoch && owned_ok)
                {
                    return Err(GroupError::FencedMemberEpoch);
                }
            }
        }

        // A full request (every non-optional field set: a client sends one when it joins or
        // after an error, e.g. a lost connection) gets the whole assignment back even if the
        // previous response carried it: that response may be the one the client never saw.
        let full_request = hb.member_epoch == 0
            || (hb.rebalance_timeout.is_some()
                && (hb.subscribed.is_some() || hb.regex.is_some())
                && hb.owned.is_some());
        // Update what the member told us. A join always starts a new group epoch.
        let mut changed = hb.member_epoch == 0;
        if let Some(m) = self.members.get_mut(&hb.member_id) {
            m.session_deadline = now + m.session_timeout;
            if let Some(subs) = hb.subscribed {
                let mut subs = subs;
                subs.sort();
                subs.dedup();
                if subs != m.subscribed {
                    m.subscribed = subs;
                    changed = true;
                }
            }
            if hb.regex.is_some() && hb.regex != m.regex {
                m.regex = hb.regex;
                m.compiled_regex = new_regex;
                changed = true;
            }
            if hb.assignor.is_some() && hb.assignor != m.assignor {
                m.assignor = hb.assignor;
                changed = true;
            }
            if hb.rack_id != m.rack_id {
                m.rack_id = hb.rack_id;
            }
            if let Some(t) = hb.rebalance_timeout {
                m.rebalance_timeout = t;
            }
            if let Some(owned) = &hb.owned {
                // Revocation is acknowledged when the member no longer reports the partitions.
                if m.state == MemberState::UnrevokedPartitions
                    && is_empty(&intersect(owned, &m.revoking))
                {
                    m.revoking.clear();
                    m.revocation_deadline = None;
                }
            }
        }
        // The subscribed topics' metadata can only have changed if the topics did.
        if changed {
            self.group_epoch += 1;
        } else if topics.generation != self.metadata_generation {
            self.metadata_generation = topics.generation;
            if self.subscribed_metadata(topics) != self.metadata_seen {
                self.group_epoch += 1;
            }
        }
        if self.group_epoch > self.assignment_epoch {
            self.recompute(topics);
        }
        self.reconcile(&hb.member_id, now);

        let m = self
            .members
            .get_mut(&hb.member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let assignment = if full_request || m.sent.as_ref() != Some(&m.assigned) {
            m.sent = Some(m.assigned.clone());
            Some(m.assigned.clone())
        } else {
            None
        };
        Ok(HeartbeatResult {
            member_id: m.id.clone(),
            member_epoch: m.epoch,
            assignment,
        })
    }

    fn join(&mut self, hb: &Heartbeat, now: Instant, session_timeout: Duration) {
        // A static member coming back under a new member id takes over its predecessor.
        let mut inherited: Option<ConsumerMember> = None;
        if let Some(inst) = &hb.instance_id {
            let old = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(inst) && m.id != hb.member_id)
                .map(|m| m.id.clone());
            if let Some(old) = old {
                inherited = self.members.remove(&old);
                if let Some(t) = self.target.remove(&old) {
                    self.target.insert(hb.member_id.clone(), t);
                }
            }
        }
        self.members.remove(&hb.member_id);
        let mut m = ConsumerMember {
            id: hb.member_id.clone(),
            instance_id: hb.instance_id.clone(),
            rack_id: hb.rack_id.clone(),
            client_id: hb.client_id.clone(),
            client_host: hb.client_host.clone(),
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            subscribed: vec![],
            regex: None,
            compiled_regex: None,
            assignor: None,
            rebalance_timeout: hb.rebalance_timeout.unwrap_or(DEFAULT_REBALANCE_TIMEOUT),
            session_timeout,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            session_deadline: now + session_timeout,
            revocation_deadline: None,
            sent: None,
        };
        if let Some(old) = inherited {
            m.epoch = old.epoch;
            m.assigned = old.assigned;
            m.subscribed = old.subscribed;
            m.regex = old.regex;
            m.compiled_regex = old.compiled_regex;
        } else {
            // A new member, or one rejoining after being fenced, owns nothing.
            self.target.remove(&hb.member_id);
        }
        self.members.insert(hb.member_id.clone(), m);
    }

    /// Recomputes the target assignment at the current group epoch.
    fn recompute(&mut self, topics: &TopicsView) {
        if let Some(a) = self.members.values().rev().find_map(|m| m.assignor.clone()) {
            self.assignor = a;
        }
        let subs: BTreeMap<String, BTreeSet<String>> = self
            .members
            .values()
            .map(|m| (m.id.clone(), Self::subscriptions(m, topics)))
            .collect();
        self.target = if self.assignor == "range" {
            assign_range(&subs, topics)
        } else {
            assign_uniform(&subs, topics, &self.target)
        };
        self.metadata_seen = self.subscribed_metadata(topics);
        self.metadata_generation = topics.generation;
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves one member a step towards its target (see the module docs).
    fn reconcile(&mut self, member_id: &str, now: Instant) {
        let Some(m) = self.members.get(member_id) else {
            return;
        };
        if m.epoch == self.assignment_epoch && m.state == MemberState::Stable {
            return;
        }
        if m.state == MemberState::UnrevokedPartitions && !is_empty(&m.revoking) {
            return; // still waiting for the member to give partitions up
        }
        let target = self.target_of(member_id);
        let keep = intersect(&m.assigned, &target);
        let revoke = subtract(&m.assigned, &target);
        // Partitions owned (or being given up) by someone else.
        let mut taken = Assignment::new();
        for (id, other) in &self.members {
            if id != member_id {
                taken = union(&taken, &union(&other.assigned, &other.revoking));
            }
        }
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if !is_empty(&revoke) {
            m.assigned = keep;
            m.revoking = revoke;
            m.state = MemberState::UnrevokedPartitions;
            m.revocation_deadline = Some(now + m.rebalance_timeout);
            return;
        }
        let pending = subtract(&target, &m.assigned);
        let free = subtract(&pending, &taken);
        m.assigned = union(&keep, &free);
        if m.epoch != assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
        m.state = if free == pending {
            MemberState::Stable
        } else {
            MemberState::UnreleasedPartitions
        };
    }

    /// Expires members whose session or revocation deadline passed. True if any left.
    pub fn tick(&mut self, now: Instant, topics: &TopicsView) -> bool {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline <= now || m.revocation_deadline.is_some_and(|d| d <= now)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            tracing::info!(group = %self.id, member = %id, "consumer group member expired");
            self.members.remove(id);
            self.target.remove(id);
        }
        if !gone.is_empty() {
            self.group_epoch += 1;
            self.recompute(topics);
        }
        !gone.is_empty()
    }

    /// OffsetCommit/OffsetFetch from a member: the epoch must be the member's current one.
    pub fn check_member_epoch(&self, member_id: &str, epoch: i32) -> Result<(), GroupError> {
        let m = self
            .members
            .get(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if epoch != m.epoch {
            return Err(GroupError::StaleMemberEpoch);
        }
        Ok(())
    }
}

fn all_partitions(
    subs: &BTreeMap<String, BTreeSet<String>>,
    topics: &TopicsView,
) -> Vec<(String, i32)> {
    let mut wanted: BTreeSet<&String> = BTreeSet::new();
    for s in subs.values() {
        wanted.extend(s.iter());
    }
    let mut out = Vec::new();
    for t in wanted {
        if let Some((_, n)) = topics.get(t) {
            for p in 0..*n {
                out.push((t.clone(), p));
            }
        }
    }
    out
}

/// Balanced and sticky: members keep what they had (up to their fair share), the rest goes to
/// the least-loaded subscribed member.
fn assign_uniform(
    subs: &BTreeMap<String, BTreeSet<String>>,
    topics: &TopicsView,
    previous: &HashMap<String, Assignment>,
) -> HashMap<String, Assignment> {
    let partitions = all_partitions(subs, topics);
    let active: Vec<&String> = subs
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(m, _)| m)
        .collect();
    let mut out: HashMap<String, Assignment> = subs
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    if active.is_empty() {
        return out;
    }
    let quota = partitions.len().div_ceil(active.len());
    let mut count: HashMap<&String, usize> = active.iter().map(|m| (*m, 0)).collect();
    let mut unassigned = Vec::new();
    for (t, p) in &partitions {
        let owner = previous.iter().find(|(m, a)| {
            a.get(t).is_some_and(|ps| ps.contains(p)) && subs.get(*m).is_some_and(|s| s.contains(t))
        });
        match owner {
            Some((m, _)) if count.get(m).is_some_and(|c| *c < quota) => {
                if let Some(c) = count.get_mut(m) {
                    *c += 1;
                }
                out.entry(m.clone())
                    .or_default()
                    .entry(t.clone())
                    .or_default()
                    .insert(*p);
            }
            _ => unassigned.push((t.clone(), *p)),
        }
    }
    for (t, p) in unassigned {
        let best = active
            .iter()
            .filter(|m| subs[**m].contains(&t))
            .min_by_key(|m| (count[**m], (**m).clone()));
        if let Some(m) = best {
            if let Some(c) = count.get_mut(*m) {
                *c += 1;
            }
            out.entry((*m).clone())
                .or_default()
                .entry(t)
                .or_default()
                .insert(p);
        }
    }
    out
}

/// Per topic, contiguous ranges of partitions to the subscribed members in member id order.
fn assign_range(
    subs: &BTreeMap<String, BTreeSet<String>>,
    topics: &TopicsView,
) -> HashMap<String, Assignment> {
    let mut out: HashMap<String, Assignment> = subs
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let mut by_topic: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
    for (m, ts) in subs {
        for t in ts {
            by_topic.entry(t).or_default().push(m);
        }
    }
    for (t, members) in by_topic {
        let Some((_, n)) = topics.get(t) else {
            continue;
        };
        let n = *n as usize;
        let k = members.len();
        let (base, extra) = (n / k, n % k);
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let len = base + usize::from(i < extra);
            let ps: BTreeSet<i32> = (next..next + len).map(|p| p as i32).collect();
            next += len;
            if !ps.is_empty() {
                out.entry((*m).clone()).or_default().insert(t.clone(), ps);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Subscription regexes compiled / subscribed-metadata scans on this thread.
        pub static COMPILES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        pub static SCANS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Steady heartbeats neither recompile a member's regex nor rescan the topics; a change
    /// of the topics (a new view generation) is still seen at the next heartbeat.
    #[test]
    fn steady_heartbeats_do_no_per_topic_work() {
        let names: BTreeMap<String, (Uuid, i32)> = (0..1000)
            .map(|i| (format!("t{i}"), (Uuid::new_v4(), 1)))
            .collect();
        let t = TopicsView::new(names.clone());
        let now = Instant::now();
        let s = Duration::from_secs(45);
        let mut g = ConsumerGroup::new("g");
        let mut join = hb("m1", 0, Some(Assignment::new()));
        join.subscribed = None;
        join.regex = Some("t1.*".into());
        let r = g.heartbeat(join, &t, now, s).unwrap();
        let epoch = r.member_epoch;
        let (compiles, scans) = (COMPILES.with(|c| c.get()), SCANS.with(|c| c.get()));
        for _ in 0..100 {
            let mut beat = hb("m1", epoch, None);
            beat.regex = Some("t1.*".into());
            g.heartbeat(beat, &t, now, s).unwrap();
        }
        assert_eq!(COMPILES.with(|c| c.get()), compiles, "regex recompiled");
        assert_eq!(SCANS.with(|c| c.get()), scans, "topics rescanned");
        assert_eq!(g.group_epoch, epoch);
        // A new topic that matches: a new view, a new group epoch.
        let mut more = names;
        more.insert("t1new".into(), (Uuid::new_v4(), 2));
        let t2 = TopicsView::new(more);
        g.heartbeat(hb("m1", epoch, None), &t2, now, s).unwrap();
        assert!(g.group_epoch > epoch);
        assert!(g.target_of("m1").contains_key("t1new"));
    }

    fn topics() -> TopicsView {
        [("a".to_string(), (Uuid::new_v4(), 4))].into()
    }

    fn hb(member: &str, epoch: i32, owned: Option<Assignment>) -> Heartbeat {
        Heartbeat {
            member_id: member.into(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            rebalance_timeout: Some(Duration::from_secs(30)),
            subscribed: if epoch == 0 {
                Some(vec!["a".into()])
            } else {
                None
            },
            regex: None,
            assignor: None,
            owned,
        }
    }

    fn count(a: &Option<Assignment>) -> usize {
        a.as_ref().map_or(0, |a| a.values().map(|p| p.len()).sum())
    }

    #[test]
    fn a_full_request_gets_the_assignment_again() {
        // The response that carried the assignment was lost (say the connection dropped):
        // the client's next heartbeat is a full one and must learn the assignment anew.
        let t = topics();
        let now = Instant::now();
        let s = Duration::from_secs(45);
        let mut g = ConsumerGroup::new("g");
        let r = g
            .heartbeat(hb("m1", 0, Some(Assignment::new())), &t, now, s)
            .unwrap();
        assert_eq!(count(&r.assignment), 4);
        let r = g.heartbeat(hb("m1", 1, None), &t, now, s).unwrap();
        assert!(
            r.assignment.is_none(),
            "an incremental heartbeat: nothing new"
        );
        let mut full = hb("m1", 1, Some(Assignment::new()));
        full.subscribed = Some(vec!["a".into()]);
        let r = g.heartbeat(full, &t, now, s).unwrap();
        assert_eq!(r.member_epoch, 1);
        assert_eq!(count(&r.assignment), 4);
    }

    #[test]
    fn second_member_gets_partitions_only_after_revocation() {
        let t = topics();
        let now = Instant::now();
        let s = Duration::from_secs(45);
        let mut g = ConsumerGroup::new("g");
        let r1 = g
            .heartbeat(hb("m1", 0, Some(Assignment::new())), &t, now, s)
            .unwrap();
        assert_eq!(r1.member_epoch, 1);
        assert_eq!(count(&r1.assignment), 4);
        let owned1 = r1.assignment.clone().unwrap();

        // m2 joins: its target is 2 partitions, but m1 still owns them.
        let r2 = g
            .heartbeat(hb("m2", 0, Some(Assignment::new())), &t, now, s)
            .unwrap();
        assert_eq!(r2.member_epoch, 2);
        assert_eq!(count(&r2.assignment), 0);
        assert_eq!(g.state_name(), "Reconciling");

        // m1 is told to keep 2 (revoke 2); its epoch stays until it acknowledges.
        let r1 = g.heartbeat(hb("m1", 1, Some(owned1)), &t, now, s).unwrap();
        assert_eq!(r1.member_epoch, 1);
        let kept = r1.assignment.clone().unwrap();
        assert_eq!(count(&r1.assignment), 2);
        // m1 acknowledges by reporting only what it kept: it moves to epoch 2.
        let r1 = g
            .heartbeat(hb("m1", 1, Some(kept.clone())), &t, now, s)
            .unwrap();
        assert_eq!(r1.member_epoch, 2);
        assert!(r1.assignment.is_none(), "nothing new for m1");
        // m2 now gets the released partitions, disjoint from m1's.
        let r2 = g
            .heartbeat(hb("m2", 2, Some(Assignment::new())), &t, now, s)
            .unwrap();
        let got = r2.assignment.unwrap();
        assert_eq!(got.values().map(|p| p.len()).sum::<usize>(), 2);
        assert!(is_empty(&intersect(&got, &kept)));
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn fencing_and_leaving() {
        let t = topics();
        let now = Instant::now();
        let s = Duration::from_secs(45);
        let mut g = ConsumerGroup::new("g");
        g.heartbeat(hb("m1", 0, Some(Assignment::new())), &t, now, s)
            .unwrap();
        assert!(matches!(
            g.heartbeat(hb("m1", 7, None), &t, now, s),
            Err(GroupError::FencedMemberEpoch)
        ));
        assert!(matches!(
            g.heartbeat(hb("ghost", 3, None), &t, now, s),
            Err(GroupError::UnknownMemberId)
        ));
        let r = g.heartbeat(hb("m1", -1, None), &t, now, s).unwrap();
        assert_eq!(r.member_epoch, -1);
        assert_eq!(g.state_name(), "Empty");
    }

    #[test]
    fn sessions_expire() {
        let t = topics();
        let now = Instant::now();
        let mut g = ConsumerGroup::new("g");
        g.heartbeat(
            hb("m1", 0, Some(Assignment::new())),
            &t,
            now,
            Duration::from_millis(10),
        )
        .unwrap();
        assert!(g.tick(now + Duration::from_millis(20), &t));
        assert!(g.members.is_empty());
    }

    #[test]
    fn range_assignor_splits_contiguously() {
        let subs: BTreeMap<String, BTreeSet<String>> = [
            ("a".to_string(), ["t".to_string()].into()),
            ("b".to_string(), ["t".to_string()].into()),
        ]
        .into();
        let topics: TopicsView = [("t".to_string(), (Uuid::nil(), 5))].into();
        let out = assign_range(&subs, &topics);
        assert_eq!(out["a"]["t"], [0, 1, 2].into());
        assert_eq!(out["b"]["t"], [3, 4].into());
    }
}
