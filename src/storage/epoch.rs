//! Leader epoch cache and its `leader-epoch-checkpoint` file (Kafka's `LeaderEpochFileCache`).
//!
//! File format (text, Kafka's checkpoint format):
//! ```text
//! 0                 <- version
//! 2                 <- number of entries
//! 0 0               <- "<epoch> <start offset>", epochs and offsets increasing
//! 3 1200
//! ```
//! Invariants: entries strictly increasing in epoch and non-decreasing in start offset; the file
//! is replaced atomically (tmp + fsync + rename + dir fsync) whenever the entries change: when an
//! append brings a new (larger) leader epoch, when recovery truncates the log end, and when the
//! log start offset moves.

use std::io;
use std::path::Path;

use super::files::{read_optional, write_atomic};

/// Name of the checkpoint file in the partition directory.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One `(epoch, start offset)` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// In-memory epoch entries mirrored by the checkpoint file.
#[derive(Clone, Debug, Default)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint of `dir`; a missing file is an empty cache, an unparseable one is
    /// logged and treated as empty (the cache only serves OffsetForLeaderEpoch).
    pub fn load(dir: &Path) -> io::Result<LeaderEpochCache> {
        let Some(text) = read_optional(dir, CHECKPOINT_FILE)? else {
            return Ok(LeaderEpochCache::default());
        };
        match parse(&text) {
            Some(entries) => Ok(LeaderEpochCache { entries }),
            None => {
                tracing::warn!(dir = %dir.display(), "unparseable leader-epoch-checkpoint ignored");
                Ok(LeaderEpochCache::default())
            }
        }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the latest epoch.
    /// Returns whether the cache changed (the caller then persists it).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|l| epoch <= l) {
            return false;
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops entries starting at or after `end_offset` (log truncated to `end_offset`).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// Drops entries wholly below `start_offset` and moves the first remaining one up to it.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let keep_from = self
            .entries
            .iter()
            .rposition(|e| e.start_offset <= start_offset)
            .unwrap_or(0);
        let mut changed = keep_from > 0;
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut() {
            if first.start_offset < start_offset {
                first.start_offset = start_offset;
                changed = true;
            }
        }
        changed
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: for the latest epoch, `(epoch,
    /// log_end_offset)`; otherwise the largest epoch <= `requested` with the start offset of the
    /// next epoch; a requested epoch below every known one gives `(requested, first start
    /// offset)`; unknown/empty gives `(-1, -1)`.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            None => (requested, higher.start_offset),
            Some(floor) => (floor.epoch, higher.start_offset),
        }
    }

    /// [`LeaderEpochCache::end_offset_for`] on a leader at `leader_epoch`: Kafka records a
    /// leader's epoch as starting at its log end offset the moment it is elected, so a new
    /// leader that has appended nothing yet still knows its own epoch (an empty partition
    /// answers `(epoch, 0)`, not `(-1, -1)`, which clients read as log truncation). Until
    /// the leader's first append in that epoch the log end offset is where the epoch starts.
    pub fn end_offset_for_leader(
        &self,
        requested: i32,
        log_end_offset: i64,
        leader_epoch: i32,
    ) -> (i32, i64) {
        if leader_epoch >= 0 && self.latest_epoch().is_none_or(|l| l < leader_epoch) {
            let mut with = self.clone();
            with.entries.push(EpochEntry {
                epoch: leader_epoch,
                start_offset: log_end_offset,
            });
            return with.end_offset_for(requested, log_end_offset);
        }
        self.end_offset_for(requested, log_end_offset)
    }

    /// Writes the checkpoint atomically.
    pub fn persist(&self, dir: &Path) -> io::Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        write_atomic(dir, CHECKPOINT_FILE, text.as_bytes())
    }
}

fn parse(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries: Vec<EpochEntry> = Vec::new();
    for _ in 0..count {
        let mut parts = lines.next()?.split_whitespace();
        let epoch: i32 = parts.next()?.parse().ok()?;
        let start_offset: i64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        if let Some(last) = entries.last() {
            if epoch <= last.epoch || start_offset < last.start_offset {
                return None;
            }
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pairs: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for (e, o) in pairs {
            assert!(c.assign(*e, *o));
        }
        c
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let c = cache(&[(2, 0), (4, 10), (7, 25)]);
        assert_eq!(
            c.end_offset_for(7, 40),
            (7, 40),
            "latest epoch ends at the LEO"
        );
        assert_eq!(c.end_offset_for(4, 40), (4, 25));
        assert_eq!(
            c.end_offset_for(5, 40),
            (4, 25),
            "unknown epoch between two known ones"
        );
        assert_eq!(c.end_offset_for(2, 40), (2, 10));
        assert_eq!(
            c.end_offset_for(1, 40),
            (1, 0),
            "below the first known epoch"
        );
        assert_eq!(c.end_offset_for(9, 40), (-1, -1), "above the latest epoch");
        assert_eq!(c.end_offset_for(-1, 40), (-1, -1));
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 5), (-1, -1));
    }

    #[test]
    fn checkpoint_round_trip_in_kafka_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = cache(&[(0, 0), (3, 1200)]);
        c.persist(dir.path()).expect("persist");
        let text = std::fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).expect("read");
        assert_eq!(text, "0\n2\n0 0\n3 1200\n");
        let loaded = LeaderEpochCache::load(dir.path()).expect("load");
        assert_eq!(loaded.entries(), c.entries());
        std::fs::write(dir.path().join(CHECKPOINT_FILE), "0\n5\n1 2\n").expect("write");
        assert!(LeaderEpochCache::load(dir.path())
            .expect("load")
            .entries()
            .is_empty());
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (2, 10), (3, 20)]);
        assert!(c.truncate_from_end(20));
        assert_eq!(c.latest_epoch(), Some(2));
        assert!(c.truncate_from_start(12));
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 12
            }]
        );
        assert!(!c.assign(1, 30), "older epochs are ignored");
    }

    #[test]
    fn a_new_leader_knows_its_epoch_before_its_first_append() {
        let empty = LeaderEpochCache::default();
        assert_eq!(
            empty.end_offset_for(0, 0),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
        assert_eq!(empty.end_offset_for_leader(0, 0, 0), (0, 0));
        // Epoch 1 wrote offsets 0..10; this broker now leads at epoch 3 with nothing new.
        let mut c = LeaderEpochCache::default();
        assert!(c.assign(1, 0));
        assert_eq!(c.end_offset_for_leader(3, 10, 3), (3, 10));
        assert_eq!(c.end_offset_for_leader(1, 10, 3), (1, 10));
        assert_eq!(c.end_offset_for_leader(2, 10, 3), (1, 10));
        // Once epoch 3 has appended, the cache itself answers.
        assert!(c.assign(3, 10));
        assert_eq!(c.end_offset_for_leader(3, 15, 3), (3, 15));
        assert_eq!(c.end_offset_for_leader(1, 15, 3), (1, 10));
    }
}
