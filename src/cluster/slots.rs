//! Coordinator slots: which broker coordinates a consumer group or a transactional id.
//!
//! As Kafka hashes group ids onto the partitions of `__consumer_offsets` (and transactional ids
//! onto `__transaction_state`), Strand hashes them onto slots: `offsets.topic.num.partitions`
//! group slots and `transaction.state.log.num.partitions` transaction slots, with Kafka's own
//! function (`abs(String.hashCode) % slots`). Each slot has at most one holder, a live broker
//! that claimed it in the metadata store ([`super::MetadataStore::claim_slot`]); the claim's
//! epoch (cluster mode: the etcd revision that created the claim key) fences every write of the
//! slot's state, so a broker that lost its claim cannot overwrite what the next holder wrote.
//!
//! Which live broker *should* hold a slot is a rendezvous hash of the slot over the live node
//! ids ([`preferred_owner`]): every broker computes the same answer from the same broker list,
//! a broker joining takes about `1/n` of the slots and a broker leaving gives up only its own.
//!
//! [`SlotTable`] is a coordinator's view of the slots it serves: a request for an id whose slot
//! is not served answers NOT_COORDINATOR, one whose slot is still loading answers
//! COORDINATOR_LOAD_IN_PROGRESS (both retriable: clients look the coordinator up again).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The two kinds of coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CoordinatorKind {
    Group,
    Txn,
}

impl CoordinatorKind {
    /// The name used in etcd keys and logs.
    pub fn name(self) -> &'static str {
        match self {
            CoordinatorKind::Group => "group",
            CoordinatorKind::Txn => "txn",
        }
    }

    pub fn parse(s: &str) -> Option<CoordinatorKind> {
        match s {
            "group" => Some(CoordinatorKind::Group),
            "txn" => Some(CoordinatorKind::Txn),
            _ => None,
        }
    }

    pub const ALL: [CoordinatorKind; 2] = [CoordinatorKind::Group, CoordinatorKind::Txn];
}

/// How many slots of each kind a cluster has (fixed for the cluster's life).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotCounts {
    pub group: u32,
    pub txn: u32,
}

impl SlotCounts {
    pub fn of(&self, kind: CoordinatorKind) -> u32 {
        match kind {
            CoordinatorKind::Group => self.group,
            CoordinatorKind::Txn => self.txn,
        }
    }
}

/// A slot this broker holds, with the epoch that fences writes of its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotClaim {
    pub kind: CoordinatorKind,
    pub slot: u32,
    pub epoch: i64,
}

/// Who holds a slot, as every broker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotHolder {
    pub node_id: i32,
    /// The claim's epoch.
    pub epoch: i64,
}

/// Java's `String.hashCode` (over UTF-16 code units, wrapping).
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The slot of a group or transactional id: Kafka's `Utils.abs(id.hashCode()) % slots`.
pub fn slot_of(id: &str, slots: u32) -> u32 {
    let h = java_hash(id);
    let abs = if h == i32::MIN { 0 } else { h.unsigned_abs() };
    abs % slots.max(1)
}

/// A fixed 64-bit mix (splitmix64's finalizer): the same on every build and host, so brokers
/// of different versions agree on the preferred owners.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The live broker that should hold `slot` (rendezvous hashing: the highest score wins, ties to
/// the lower node id); None without live brokers.
pub fn preferred_owner(kind: CoordinatorKind, slot: u32, live: &[i32]) -> Option<i32> {
    let k = match kind {
        CoordinatorKind::Group => 0u64,
        CoordinatorKind::Txn => 1u64,
    };
    live.iter().copied().max_by_key(|&node| {
        let score = mix(mix((k << 32) | u64::from(slot)) ^ (node as u32 as u64));
        (score, std::cmp::Reverse(node))
    })
}

/// Why a coordinator does not serve an id now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotServed {
    /// Another broker holds (or will hold) the slot: NOT_COORDINATOR.
    NotCoordinator,
    /// This broker holds the slot and is still loading its state: COORDINATOR_LOAD_IN_PROGRESS.
    Loading,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Loading(i64),
    Active(i64),
}

/// The slots one coordinator serves.
pub struct SlotTable {
    kind: CoordinatorKind,
    count: u32,
    slots: Mutex<HashMap<u32, Status>>,
}

impl SlotTable {
    pub fn new(kind: CoordinatorKind, count: u32) -> SlotTable {
        SlotTable {
            kind,
            count: count.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Status>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn slot_of(&self, id: &str) -> u32 {
        slot_of(id, self.count)
    }

    /// The claim under which `id` is served now.
    pub fn check(&self, id: &str) -> Result<SlotClaim, NotServed> {
        self.check_slot(self.slot_of(id))
    }

    /// The claim under which `slot` is served now.
    pub fn check_slot(&self, slot: u32) -> Result<SlotClaim, NotServed> {
        match self.lock().get(&slot) {
            Some(Status::Active(epoch)) => Ok(SlotClaim {
                kind: self.kind,
                slot,
                epoch: *epoch,
            }),
            Some(Status::Loading(_)) => Err(NotServed::Loading),
            None => Err(NotServed::NotCoordinator),
        }
    }

    /// Whether `claim` is still the one being served (or loaded).
    pub fn is_current(&self, claim: &SlotClaim) -> bool {
        matches!(self.lock().get(&claim.slot),
            Some(Status::Active(e)) | Some(Status::Loading(e)) if *e == claim.epoch)
    }

    /// Marks the slot as loading under `claim` (replacing whatever was there).
    pub fn begin_load(&self, claim: &SlotClaim) {
        self.lock().insert(claim.slot, Status::Loading(claim.epoch));
    }

    /// Marks a loaded slot active; false if the slot was given up meanwhile.
    pub fn finish_load(&self, claim: &SlotClaim) -> bool {
        let mut slots = self.lock();
        match slots.get(&claim.slot) {
            Some(Status::Loading(e)) if *e == claim.epoch => {
                slots.insert(claim.slot, Status::Active(claim.epoch));
                true
            }
            _ => false,
        }
    }

    /// Stops serving `slot`; returns the epoch it was served under.
    pub fn remove(&self, slot: u32) -> Option<i64> {
        self.lock().remove(&slot).map(|s| match s {
            Status::Loading(e) | Status::Active(e) => e,
        })
    }

    /// Every slot served or loading, with its epoch.
    pub fn served(&self) -> Vec<(u32, i64)> {
        let mut v: Vec<(u32, i64)> = self
            .lock()
            .iter()
            .map(|(s, st)| {
                (
                    *s,
                    match st {
                        Status::Loading(e) | Status::Active(e) => *e,
                    },
                )
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_kafkas_partition_for() {
        // Java: "my-group".hashCode() = -1906497762 → 1906497762 % 50 = 12; "" → 0.
        assert_eq!(java_hash("my-group"), -1906497762);
        assert_eq!(slot_of("my-group", 50), 12);
        assert_eq!(slot_of("", 50), 0);
        // Negative hash codes use their absolute value.
        let h = java_hash("polygenelubricants");
        assert_eq!(h, i32::MIN);
        assert_eq!(slot_of("polygenelubricants", 50), 0);
        assert!(java_hash("zzzzzzzz") < 0);
        assert_eq!(
            slot_of("zzzzzzzz", 50),
            java_hash("zzzzzzzz").unsigned_abs() % 50
        );
    }

    #[test]
    fn rendezvous_moves_only_what_it_must() {
        let three = [1, 2, 3];
        let two = [1, 2];
        let mut owned = [0usize; 4];
        for slot in 0..50 {
            let a = preferred_owner(CoordinatorKind::Group, slot, &three).unwrap();
            owned[a as usize] += 1;
            let b = preferred_owner(CoordinatorKind::Group, slot, &two).unwrap();
            if a != 3 {
                assert_eq!(a, b, "slot {slot} moved between surviving brokers");
            }
        }
        // Every broker gets a share.
        assert!(owned[1..].iter().all(|&n| n >= 5), "{owned:?}");
        assert_eq!(preferred_owner(CoordinatorKind::Txn, 0, &[]), None);
    }

    #[test]
    fn table_answers_by_status() {
        let t = SlotTable::new(CoordinatorKind::Group, 50);
        let slot = t.slot_of("g");
        assert_eq!(t.check("g"), Err(NotServed::NotCoordinator));
        let claim = SlotClaim {
            kind: CoordinatorKind::Group,
            slot,
            epoch: 7,
        };
        t.begin_load(&claim);
        assert_eq!(t.check("g"), Err(NotServed::Loading));
        assert!(t.finish_load(&claim));
        assert_eq!(t.check("g"), Ok(claim));
        assert_eq!(t.remove(slot), Some(7));
        assert!(!t.finish_load(&claim), "a removed slot does not come back");
        assert_eq!(t.check("g"), Err(NotServed::NotCoordinator));
    }
}
