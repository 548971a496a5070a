//! Committed offsets in etcd, [`BUCKET`] partitions of one topic per key.
//!
//! Key `<p>/offsets/<slot>/<group>/<topic>/b<n>` holds the offsets of partitions
//! `n*BUCKET .. (n+1)*BUCKET` of `topic` committed by `group`, as a JSON object from partition
//! to [`CommittedOffset`]. A consumer commits its partitions of a topic together, so one
//! OffsetCommit of 10 partitions is one etcd put instead of 10: etcd's work per commit (a
//! revision, an index entry and a B-tree write per key) is what bounded commits per second.
//! A bucket's value stays small (at most [`BUCKET`] entries) whatever the topic's size, so a
//! commit of one partition of a large topic does not rewrite the others.
//!
//! Invariants:
//! - A bucket is written whole, from this broker's copy of it ([`OffsetCache`]) with the
//!   request's offsets applied. Writes of one group are serialized by the group's lock here,
//!   and every write is fenced by the slot claim, so the copy is what etcd holds for as long
//!   as the claim lasts: only the claim's holder writes the slot's keys.
//! - A copy belongs to one claim: it is filled by `load_offsets` (the whole slot) or, for a
//!   group met with a newer claim, by reading the group's keys; it is updated only after
//!   etcd acknowledged the write, so after a failed or ambiguous write the next write of that
//!   bucket puts back what was last acknowledged plus its own offsets.

use super::*;

/// Partitions of one topic per offsets key.
pub(super) const BUCKET: i32 = 16;

/// One bucket: partition -> offset.
pub(super) type Bucket = BTreeMap<i32, CommittedOffset>;

/// What one group has committed in one slot, as of the claim `claim` (its epoch).
pub(super) struct GroupCopy {
    claim: i64,
    buckets: HashMap<(String, i32), Bucket>,
}

/// One group's copy, locked while the group's offsets are written.
type Cell = Arc<tokio::sync::Mutex<Option<GroupCopy>>>;

/// This broker's copy of the offsets of the group slots it holds, per `(slot, group)`.
#[derive(Default)]
pub(super) struct OffsetCache {
    groups: Mutex<HashMap<(u32, String), Cell>>,
}

/// The bucket of `partition`.
pub(super) fn bucket_of(partition: i32) -> i32 {
    partition.div_euclid(BUCKET)
}

impl OffsetCache {
    fn cell(&self, slot: u32, group: &str) -> Cell {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((slot, group.to_string()))
            .or_default()
            .clone()
    }

    /// Forgets every group of `slot` (released, or about to be loaded again).
    pub(super) fn forget_slot(&self, slot: u32) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(s, _), _| *s != slot);
    }

    fn forget_group(&self, slot: u32, group: &str) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(slot, group.to_string()));
    }
}

impl EtcdStore {
    /// Reads the committed offsets of the slot of `claim` and makes them this broker's copy.
    pub(super) async fn read_slot_offsets(
        &self,
        claim: &SlotClaim,
    ) -> Result<BTreeMap<String, super::super::GroupOffsets>> {
        let slot = claim.slot;
        let mut copies: HashMap<String, GroupCopy> = HashMap::new();
        for (key, value) in self.get_prefix(self.keys().offsets(slot)).await? {
            let Some((group, topic, bucket)) = self.keys().parse_offset_bucket(slot, &key) else {
                warn!("ignoring malformed offset key {key}");
                continue;
            };
            let b: Bucket = decode(&key, &value)?;
            copies
                .entry(group)
                .or_insert_with(|| GroupCopy {
                    claim: claim.epoch,
                    buckets: HashMap::new(),
                })
                .buckets
                .insert((topic, bucket), b);
        }
        let mut out = BTreeMap::new();
        self.offset_cache.forget_slot(slot);
        for (group, copy) in copies {
            let offsets: &mut super::super::GroupOffsets = out.entry(group.clone()).or_default();
            for ((topic, _), b) in &copy.buckets {
                for (p, o) in b {
                    offsets.insert((topic.clone(), *p), o.clone());
                }
            }
            *self.offset_cache.cell(slot, &group).lock().await = Some(copy);
        }
        Ok(out)
    }

    /// Reads one group's committed offsets (its copy was made under another claim, or never).
    async fn read_group(&self, claim: &SlotClaim, group: &str) -> Result<GroupCopy> {
        let mut buckets = HashMap::new();
        for (key, value) in self
            .get_prefix(self.keys().group_offsets(claim.slot, group))
            .await?
        {
            match self.keys().parse_offset_bucket(claim.slot, &key) {
                Some((g, topic, bucket)) if g == group => {
                    buckets.insert((topic, bucket), decode(&key, &value)?);
                }
                _ => warn!("ignoring malformed offset key {key}"),
            }
        }
        Ok(GroupCopy {
            claim: claim.epoch,
            buckets,
        })
    }

    /// Changes the offsets of `group` in etcd: `set` puts offsets (the last of duplicates
    /// wins), `delete` removes partitions' offsets. `write` runs the resulting operations
    /// (with `extra` after them) fenced by the claim; the copy is updated once it succeeded.
    pub(super) async fn change_offsets<W, F>(
        &self,
        claim: &SlotClaim,
        group: &str,
        set: &[(String, i32, CommittedOffset)],
        delete: &[(String, i32)],
        extra: Vec<TxnOp>,
        write: W,
    ) -> Result<()>
    where
        W: FnOnce(Vec<TxnOp>) -> F,
        F: std::future::Future<Output = Result<()>>,
    {
        let slot = claim.slot;
        let cell = self.offset_cache.cell(slot, group);
        let mut copy = cell.lock().await;
        if copy.as_ref().is_none_or(|c| c.claim != claim.epoch) {
            *copy = Some(self.read_group(claim, group).await?);
        }
        let current = copy.as_mut().expect("filled above");
        let mut changed: BTreeMap<(String, i32), Bucket> = BTreeMap::new();
        fn bucket<'a>(
            changed: &'a mut BTreeMap<(String, i32), Bucket>,
            current: &GroupCopy,
            topic: &str,
            partition: i32,
        ) -> &'a mut Bucket {
            let k = (topic.to_string(), bucket_of(partition));
            let now = current.buckets.get(&k);
            changed
                .entry(k)
                .or_insert_with(|| now.cloned().unwrap_or_default())
        }
        for (topic, partition) in delete {
            bucket(&mut changed, current, topic, *partition).remove(partition);
        }
        for (topic, partition, o) in set {
            bucket(&mut changed, current, topic, *partition).insert(*partition, o.clone());
        }
        let mut ops = Vec::with_capacity(changed.len() + extra.len());
        for ((topic, n), b) in &changed {
            let key = self.keys().offset_bucket(slot, group, topic, *n);
            if b.is_empty() {
                ops.push(TxnOp::delete(key, None));
            } else {
                ops.push(TxnOp::put(key, encode(b)?, None));
            }
        }
        ops.extend(extra);
        write(ops).await?;
        for (k, b) in changed {
            if b.is_empty() {
                current.buckets.remove(&k);
            } else {
                current.buckets.insert(k, b);
            }
        }
        Ok(())
    }

    /// Deletes every offset of `group` (one fenced delete of its prefix).
    pub(super) async fn drop_group_offsets(&self, claim: &SlotClaim, group: &str) -> Result<()> {
        let cell = self.offset_cache.cell(claim.slot, group);
        let copy = cell.lock().await;
        let op = TxnOp::delete(
            self.keys().group_offsets(claim.slot, group),
            Some(DeleteOptions::new().with_prefix()),
        );
        self.fenced_write(claim, vec![op]).await?;
        drop(copy);
        self.offset_cache.forget_group(claim.slot, group);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_of_partitions() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(BUCKET - 1), 0);
        assert_eq!(bucket_of(BUCKET), 1);
        assert_eq!(bucket_of(1000), 1000 / BUCKET);
    }
}
