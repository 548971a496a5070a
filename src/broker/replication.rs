//! A partition leader's view of its followers (Kafka's `Partition` replica state): how far
//! each follower has fetched, when it last caught up, the ISR it may count, and so the bound
//! on the high watermark.
//!
//! Rules (docs/cluster.md, "Replication"):
//! - A follower fetches from its log end offset only after it made everything below it
//!   durable (fdatasync), so a fetch offset is the follower's *durable* end.
//! - High watermark = the minimum of the leader's own durable offset and the fetch offsets of
//!   every other member of the ISR, counting the members the leader has proposed to add
//!   (Kafka's "maximal ISR"): a record below it is fsynced on every in-sync replica. It does
//!   not advance while the stored ISR is smaller than `min.insync.replicas`, nor while an ISR
//!   member's position is not known yet (a new leader learns them from the first fetches).
//! - A follower is caught up when it fetches at or past the leader's log end offset (as it
//!   was at this fetch, or at its previous fetch: Kafka's `lastCaughtUpTime` rule). One that
//!   has not caught up for `replica.lag.time.max.ms` leaves the ISR; one out of it rejoins
//!   once it has fetched up to the high watermark and to the start of the leader's epoch.
//! - KIP-903: a follower's fetch (v15+) carries its broker epoch. One older than the
//!   follower's live registration comes from an earlier incarnation of it (a process that
//!   restarted, perhaps without its data) and is not counted; a replica joins the ISR only
//!   while it is registered and its last fetch came from that registration.
//! - ISR changes are only proposed here ([`Replication::shrink`], [`Replication::expand`]);
//!   they count once the store has them (a compare-and-swap carrying the state's revision:
//!   `MetadataStore::alter_isr`), and the broker applies the stored ISR with
//!   [`Replication::lead`]. A removal never counts before it is stored, so the bound is never
//!   computed over fewer replicas than the store names.
//!
//! This module holds no I/O: the broker feeds it fetches and states, and asks it for bounds.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy)]
struct Follower {
    /// The offset of its last fetch (its durable log end); `-1` until it fetches.
    fetch_offset: i64,
    /// The leader's log end offset when that fetch came.
    leader_end_at_fetch: i64,
    last_fetch_ms: i64,
    last_caught_up_ms: i64,
    /// The broker epoch its last counted fetch carried (Fetch v15+, KIP-903); `-1` for an
    /// older fetch or none yet.
    broker_epoch: i64,
}

#[derive(Debug, Default)]
struct State {
    leading: bool,
    leader_epoch: i32,
    /// The leader's log end offset when it took this epoch.
    epoch_start: i64,
    replicas: Vec<i32>,
    /// The ISR as stored.
    isr: Vec<i32>,
    /// An ISR change proposed and not yet stored (or refused).
    pending: Option<Vec<i32>>,
    min_insync: usize,
    followers: BTreeMap<i32, Follower>,
}

/// The replication state of one partition on this broker (see the module docs).
pub struct Replication {
    me: i32,
    state: Mutex<State>,
}

/// What [`Replication::follower_fetched`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Counted: the high watermark may move.
    Counted,
    /// Not a replica of this partition, or this broker does not lead it.
    NotReplica,
    /// From an earlier incarnation of the follower: its fetch carries a broker epoch older
    /// than its live registration's (KIP-903). Not counted; answered NOT_LEADER_OR_FOLLOWER.
    Stale,
}

impl Replication {
    pub fn new(me: i32) -> Replication {
        Replication {
            me,
            state: Mutex::new(State {
                min_insync: 1,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a stored state in which this broker leads at `leader_epoch`: a new epoch
    /// starts afresh (every follower's position unknown, each given a full lag time from
    /// `now_ms` before it can be dropped); the same epoch takes the stored replicas and ISR,
    /// which end a proposal they match or replace.
    pub fn lead(
        &self,
        leader_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        log_end: i64,
        min_insync: usize,
        now_ms: i64,
    ) {
        let mut s = self.lock();
        if !s.leading || s.leader_epoch != leader_epoch {
            s.leading = true;
            s.leader_epoch = leader_epoch;
            s.epoch_start = log_end;
            s.pending = None;
            s.followers.clear();
        }
        s.replicas = replicas.to_vec();
        if s.isr != isr {
            s.isr = isr.to_vec();
            s.pending = None;
        }
        s.min_insync = min_insync.max(1);
        let me = self.me;
        let keep: Vec<i32> = replicas.iter().copied().filter(|r| *r != me).collect();
        s.followers.retain(|r, _| keep.contains(r));
        for r in keep {
            s.followers.entry(r).or_insert(Follower {
                fetch_offset: -1,
                leader_end_at_fetch: -1,
                last_fetch_ms: now_ms,
                last_caught_up_ms: now_ms,
                broker_epoch: -1,
            });
        }
    }

    /// This broker no longer leads (it follows, or the partition has no leader).
    pub fn resign(&self) {
        let mut s = self.lock();
        s.leading = false;
        s.pending = None;
        s.followers.clear();
    }

    pub fn is_leading(&self) -> bool {
        self.lock().leading
    }

    /// A follower fetched from `fetch_offset` while the leader's log ended at `log_end`. The
    /// fetch carried `broker_epoch` (`-1` before Fetch v15); `registered` is the epoch of the
    /// follower's live registration, if it has one.
    pub fn follower_fetched(
        &self,
        replica: i32,
        broker_epoch: i64,
        registered: Option<i64>,
        fetch_offset: i64,
        log_end: i64,
        now_ms: i64,
    ) -> Fetched {
        let mut s = self.lock();
        if !s.leading {
            return Fetched::NotReplica;
        }
        let Some(f) = s.followers.get_mut(&replica) else {
            return Fetched::NotReplica;
        };
        if broker_epoch >= 0 && registered.is_some_and(|r| r > broker_epoch) {
            return Fetched::Stale;
        }
        f.broker_epoch = broker_epoch;
        if fetch_offset >= log_end {
            f.last_caught_up_ms = now_ms;
        } else if f.fetch_offset >= 0 && fetch_offset >= f.leader_end_at_fetch {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.fetch_offset = fetch_offset.min(log_end);
        f.leader_end_at_fetch = log_end;
        f.last_fetch_ms = now_ms;
        Fetched::Counted
    }

    /// The highest high watermark allowed now, given the leader's own durable offset; `None`
    /// while it may not advance (see the module docs).
    pub fn high_watermark_bound(&self, own_durable: i64) -> Option<i64> {
        let s = self.lock();
        if !s.leading || s.isr.len() < s.min_insync {
            return None;
        }
        let mut bound = own_durable;
        let maximal = s.isr.iter().chain(s.pending.iter().flatten());
        for r in maximal.filter(|r| **r != self.me) {
            let f = s.followers.get(r)?;
            if f.fetch_offset < 0 {
                return None;
            }
            bound = bound.min(f.fetch_offset);
        }
        Some(bound)
    }

    /// Whether an acks=all write may be taken: the stored ISR has `min.insync.replicas`.
    pub fn enough_in_sync(&self) -> bool {
        let s = self.lock();
        s.leading && s.isr.len() >= s.min_insync
    }

    /// The ISR without the followers that have not caught up for `lag_ms`, if that differs
    /// from the stored one and no change is pending. The leader always stays.
    pub fn shrink(&self, now_ms: i64, lag_ms: i64) -> Option<Vec<i32>> {
        let s = self.lock();
        if !s.leading || s.pending.is_some() {
            return None;
        }
        let next: Vec<i32> = s
            .isr
            .iter()
            .copied()
            .filter(|r| {
                *r == self.me
                    || s.followers
                        .get(r)
                        .is_some_and(|f| now_ms - f.last_caught_up_ms <= lag_ms)
            })
            .collect();
        (next.len() != s.isr.len()).then_some(next)
    }

    /// The ISR with every replica out of it that has fetched up to `high_watermark` and to the
    /// start of the leader's epoch, if there is one and no change is pending. Only a replica
    /// with a live registration (`registered` gives its epoch) is eligible, and only if its
    /// last fetch came from that registration (KIP-903; a fetch without an epoch, before
    /// Fetch v15, is taken as it is).
    pub fn expand(
        &self,
        high_watermark: i64,
        registered: impl Fn(i32) -> Option<i64>,
    ) -> Option<Vec<i32>> {
        let s = self.lock();
        if !s.leading || s.pending.is_some() {
            return None;
        }
        let mut next = s.isr.clone();
        for r in &s.replicas {
            let caught_up = s.followers.get(r).is_some_and(|f| {
                f.fetch_offset >= 0
                    && f.fetch_offset >= high_watermark
                    && f.fetch_offset >= s.epoch_start
                    && registered(*r).is_some_and(|e| f.broker_epoch < 0 || f.broker_epoch == e)
            });
            if caught_up && !next.contains(r) {
                next.push(*r);
            }
        }
        (next.len() != s.isr.len()).then_some(next)
    }

    /// Whether `replica` is in the stored ISR.
    pub fn in_isr(&self, replica: i32) -> bool {
        self.lock().isr.contains(&replica)
    }

    /// The in-sync followers that have fetched at least to `offset`, with their fetch
    /// offsets (KIP-392's candidates to serve a consumer fetching from `offset`).
    pub fn in_sync_followers_at(&self, offset: i64) -> Vec<(i32, i64)> {
        let s = self.lock();
        if !s.leading {
            return Vec::new();
        }
        s.isr
            .iter()
            .filter(|r| **r != self.me)
            .filter_map(|r| s.followers.get(r).map(|f| (*r, f.fetch_offset)))
            .filter(|(_, at)| *at >= offset && *at >= 0)
            .collect()
    }

    /// Marks `isr` proposed (it counts for the bound only where it adds members).
    pub fn propose(&self, isr: Vec<i32>) {
        self.lock().pending = Some(isr);
    }

    /// The proposal failed (refused or unknown): the stored ISR alone counts.
    pub fn proposal_failed(&self) {
        self.lock().pending = None;
    }

    /// The followers' lag behind `log_end`: (replica, messages behind, ms since it caught up).
    pub fn lag(&self, log_end: i64, now_ms: i64) -> Vec<(i32, i64, i64)> {
        let s = self.lock();
        s.followers
            .iter()
            .map(|(r, f)| {
                let behind = if f.fetch_offset < 0 {
                    log_end
                } else {
                    log_end - f.fetch_offset
                };
                (*r, behind.max(0), (now_ms - f.last_caught_up_ms).max(0))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(isr: &[i32], min_insync: usize) -> Replication {
        let r = Replication::new(1);
        r.lead(3, &[1, 2, 3], isr, 100, min_insync, 0);
        r
    }

    #[test]
    fn the_high_watermark_is_the_least_durable_end_over_the_isr() {
        let r = leader(&[1, 2, 3], 2);
        // Nobody fetched yet: the bound is unknown.
        assert_eq!(r.high_watermark_bound(120), None);
        r.follower_fetched(2, -1, None, 110, 120, 1);
        assert_eq!(r.high_watermark_bound(120), None, "3 not heard from");
        r.follower_fetched(3, -1, None, 105, 120, 1);
        assert_eq!(r.high_watermark_bound(120), Some(105));
        // The leader's own durable offset bounds it too.
        assert_eq!(r.high_watermark_bound(101), Some(101));
        // A follower out of the ISR does not hold it back.
        r.lead(3, &[1, 2, 3], &[1, 2], 120, 2, 2);
        assert_eq!(r.high_watermark_bound(120), Some(110));
    }

    #[test]
    fn the_high_watermark_is_frozen_below_min_insync_replicas() {
        let r = leader(&[1], 2);
        assert_eq!(r.high_watermark_bound(120), None);
        assert!(!r.enough_in_sync());
        let r = leader(&[1], 1);
        assert_eq!(r.high_watermark_bound(120), Some(120));
        assert!(r.enough_in_sync());
    }

    #[test]
    fn a_proposed_addition_counts_but_a_proposed_removal_does_not() {
        let r = leader(&[1, 2, 3], 1);
        r.follower_fetched(2, -1, None, 110, 120, 1);
        r.follower_fetched(3, -1, None, 90, 120, 1);
        r.propose(vec![1, 2]);
        assert_eq!(
            r.high_watermark_bound(120),
            Some(90),
            "3 still stored in sync"
        );
        let r = leader(&[1, 2], 1);
        r.follower_fetched(2, -1, None, 110, 120, 1);
        r.follower_fetched(3, -1, None, 95, 120, 1);
        r.propose(vec![1, 2, 3]);
        assert_eq!(r.high_watermark_bound(120), Some(95), "3 proposed to join");
        r.proposal_failed();
        assert_eq!(r.high_watermark_bound(120), Some(110));
    }

    #[test]
    fn a_follower_that_does_not_catch_up_leaves_the_isr() {
        let r = leader(&[1, 2, 3], 1);
        // 2 keeps up; 3 fetches but stays behind the log end.
        for t in [1000, 2000, 3000] {
            r.follower_fetched(2, -1, None, 120, 120, t);
            r.follower_fetched(3, -1, None, 50 + t / 100, 120, t);
        }
        assert_eq!(r.shrink(3000, 30_000), None, "within the lag time");
        r.follower_fetched(2, -1, None, 120, 120, 31_000);
        r.follower_fetched(3, -1, None, 90, 120, 31_000);
        assert_eq!(r.shrink(31_000, 30_000), Some(vec![1, 2]));
        // Nothing is proposed twice.
        r.propose(vec![1, 2]);
        assert_eq!(r.shrink(31_000, 30_000), None);
    }

    #[test]
    fn fetching_past_the_previous_log_end_counts_as_caught_up_then() {
        let r = leader(&[1, 2], 1);
        // Produce keeps the leader ahead at every fetch, but each fetch reaches where the log
        // ended at the previous one: the follower is keeping up.
        r.follower_fetched(2, -1, None, 100, 110, 1000);
        r.follower_fetched(2, -1, None, 110, 120, 20_000);
        r.follower_fetched(2, -1, None, 120, 130, 40_000);
        assert_eq!(r.shrink(40_000, 30_000), None);
        // It falls behind: no longer reaches the previous end.
        r.follower_fetched(2, -1, None, 121, 140, 60_000);
        r.follower_fetched(2, -1, None, 122, 150, 80_000);
        assert_eq!(r.shrink(80_000, 30_000), Some(vec![1]));
    }

    #[test]
    fn a_replica_rejoins_once_at_the_high_watermark_and_the_epoch_start() {
        let r = Replication::new(1);
        r.lead(4, &[1, 2, 3], &[1, 2], 200, 1, 0);
        r.follower_fetched(3, -1, None, 150, 260, 1);
        assert_eq!(r.expand(180, |_| Some(1)), None, "below the high watermark");
        r.follower_fetched(3, -1, None, 190, 260, 2);
        assert_eq!(
            r.expand(180, |_| Some(1)),
            None,
            "below the epoch's start (200)"
        );
        r.follower_fetched(3, -1, None, 230, 260, 3);
        assert_eq!(r.expand(180, |_| Some(1)), Some(vec![1, 2, 3]));
    }

    #[test]
    fn a_new_epoch_forgets_the_followers_and_a_non_leader_counts_nothing() {
        let r = leader(&[1, 2], 1);
        r.follower_fetched(2, -1, None, 120, 120, 1);
        assert_eq!(r.high_watermark_bound(120), Some(120));
        r.lead(4, &[1, 2], &[1, 2], 120, 1, 2);
        assert_eq!(r.high_watermark_bound(120), None);
        r.resign();
        assert_eq!(
            r.follower_fetched(2, -1, None, 120, 120, 3),
            Fetched::NotReplica
        );
        assert_eq!(r.high_watermark_bound(120), None);
        assert!(!r.enough_in_sync());
        let r = leader(&[1, 2], 1);
        assert_eq!(
            r.follower_fetched(9, -1, None, 1, 1, 1),
            Fetched::NotReplica
        );
    }

    #[test]
    fn a_fetch_from_an_earlier_incarnation_neither_counts_nor_joins_the_isr() {
        let r = Replication::new(1);
        r.lead(4, &[1, 2, 3], &[1, 2], 100, 1, 0);
        r.follower_fetched(2, 50, Some(50), 120, 120, 1);
        // Broker 3 restarted (registration 70): a fetch its old process (epoch 60) sent is
        // refused and does not move anything.
        assert_eq!(
            r.follower_fetched(3, 60, Some(70), 120, 120, 2),
            Fetched::Stale
        );
        assert_eq!(r.expand(100, |b| Some(if b == 3 { 70 } else { 50 })), None);
        // Its new process's fetch counts, and it may join.
        assert_eq!(
            r.follower_fetched(3, 70, Some(70), 120, 120, 3),
            Fetched::Counted
        );
        assert_eq!(
            r.expand(100, |b| Some(if b == 3 { 70 } else { 50 })),
            Some(vec![1, 2, 3])
        );
        // Caught up, but its registration changed since that fetch (it restarted again), or
        // it has none: not eligible.
        assert_eq!(r.expand(100, |b| Some(if b == 3 { 80 } else { 50 })), None);
        assert_eq!(r.expand(100, |b| (b != 3).then_some(50)), None);
        // A fetch without an epoch (before Fetch v15) counts and is eligible while registered.
        r.follower_fetched(3, -1, Some(80), 120, 120, 4);
        assert_eq!(
            r.expand(100, |b| Some(if b == 3 { 80 } else { 50 })),
            Some(vec![1, 2, 3])
        );
    }
}
