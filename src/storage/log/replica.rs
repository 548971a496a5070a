//! What a follower replica does to its log (replication, docs/cluster.md): append batches the
//! leader already numbered ([`PartitionLog::append_replica`]), and cut the log back to where it
//! diverged from the leader's ([`PartitionLog::truncate_to`]), or empty it to start at the
//! leader's log start offset when it ends below it
//! ([`PartitionLog::truncate_fully_and_start_at`]).
//!
//! Invariants:
//! - A replica append keeps every byte of the leader's batches (offsets, leader epochs,
//!   timestamps, compression), so replicas are byte-identical; the batches must continue the
//!   log exactly (the first at the log end offset, each after the previous), else nothing is
//!   written. Producer state and the aborted-transaction index follow as if the batches were
//!   replayed at open; the epoch cache records each new leader epoch at its first offset.
//! - Truncation keeps a valid prefix of the log on disk at every step, so a crash anywhere in it
//!   leaves a log that opens (with `clean = false`) to some offset between the target and the
//!   old end, and the follower truncates again from there: newer segments are deleted newest
//!   first, each deletion made durable (directory fsync) before the next, so no crash can leave
//!   a gap; then the segment holding the target is cut (`set_len`, `fdatasync`). The in-memory
//!   state is then rebuilt by the open path itself (indexes, producer state from a snapshot at
//!   or below the new end, the transaction index, the epoch cache cut to the new end), so a
//!   truncated log is exactly what a restart would open.

use super::*;

impl PartitionLog {
    /// Appends batches a leader already validated and numbered (a follower's fetch), keeping
    /// every byte. `InvalidRecord` unless the first batch starts at the log end offset and
    /// each continues the previous; nothing is written then.
    pub fn append_replica(&self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.online()?;
        let r = self.append_replica_inner(records, now_ms);
        self.appended();
        self.guard("append", r)
    }

    fn append_replica_inner(&self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        let batches = split_and_validate(records)?;
        let mut inner = self.lock();
        let base_offset = inner.log_end_offset;
        let mut next = base_offset;
        let mut max_timestamp = i64::MIN;
        let mut infos = Vec::with_capacity(batches.len());
        for (pos, h) in &batches {
            if h.base_offset != next {
                return Err(StorageError::InvalidRecord(format!(
                    "replica batch at offset {} does not continue the log at {next}",
                    h.base_offset
                )));
            }
            if h.is_control() && h.producer_id >= 0 {
                let size = h.total_size().unwrap_or(0);
                if let ControlType::Other(t) = control_type(&records[*pos..*pos + size])? {
                    return Err(StorageError::InvalidRecord(format!(
                        "control batch of producer {} has type {t}, not COMMIT or ABORT",
                        h.producer_id
                    )));
                }
            }
            max_timestamp = max_timestamp.max(h.max_timestamp);
            infos.push(BatchInfo::from_header(h, h.total_size().unwrap_or(0)));
            next = h.next_offset();
        }
        let last_offset = next - 1;
        let segment_bytes = inner.config.effective_segment_bytes();
        let segment_ms = inner.config.segment_ms;
        let active = &inner.active;
        let should_roll = !active.is_empty()
            && (active.size() + records.len() as u64 > segment_bytes
                || active.time_waited_for_roll(now_ms, max_timestamp) > segment_ms
                || !active.can_hold_offset(last_offset));
        if should_roll {
            inner.roll(&self.dir, now_ms)?;
        }
        let mut epochs = inner.epochs.clone();
        let mut epochs_changed = false;
        for (_, h) in &batches {
            epochs_changed |= epochs.assign(h.partition_leader_epoch, h.base_offset);
        }
        if epochs_changed {
            epochs.persist(&self.dir)?;
            inner.epochs = epochs;
        }
        inner.active.append(&[records], &batches)?;
        inner.log_end_offset = next;
        for (pos, h) in &batches {
            let Some(done) = inner.producers.replay(h) else {
                continue;
            };
            let size = h.total_size().unwrap_or(0);
            if control_type(&records[*pos..*pos + size])? != ControlType::Abort {
                continue;
            }
            let entry = AbortedTxn {
                producer_id: done.producer_id,
                first_offset: done.first_offset,
                last_offset: done.last_offset,
                last_stable_offset: done.last_stable_offset,
            };
            if let Err(e) = inner.active.append_aborted_txn(entry) {
                // As in `append`: in memory now, rewritten at the next sync, rebuilt at open.
                tracing::warn!(dir = %self.dir.display(), error = %e,
                    "transaction index write failed");
            }
        }
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time: -1,
            log_start_offset: inner.log_start_offset,
            batches: infos,
            duplicate: false,
        })
    }

    /// Removes the batch holding `offset` and everything after it; returns the new log end
    /// offset (that batch's base offset: at most `offset`). A no-op at or past the end.
    /// `OffsetOutOfRange` below the log start offset. Blocking (file I/O and fsyncs): call it
    /// off the async workers. The caller never truncates below what consumers may have read
    /// (the high watermark): that data is committed and identical on every in-sync replica.
    pub fn truncate_to(&self, offset: i64) -> Result<i64> {
        self.online()?;
        // No group commit runs meanwhile (it would publish an end that no longer exists).
        let _flush = self.flush_lock.blocking_lock();
        let r = self.truncate_inner(offset);
        self.guard("truncate", r)
    }

    fn truncate_inner(&self, offset: i64) -> Result<i64> {
        let mut inner = self.lock();
        if offset >= inner.log_end_offset {
            return Ok(inner.log_end_offset);
        }
        if offset < inner.log_start_offset {
            return Err(inner.out_of_range(offset));
        }
        let holder = inner.floor_segment(offset).base_offset();
        // Newer segments go, newest first, each deletion durable before the next.
        if inner.active.base_offset() > holder {
            inner.active.delete_files()?;
            fsync_dir(&self.dir)?;
        }
        let newer: Vec<i64> = inner.closed.range(holder + 1..).map(|(b, _)| *b).collect();
        for base in newer.into_iter().rev() {
            if let Some(seg) = inner.closed.get(&base) {
                seg.delete_files()?;
                fsync_dir(&self.dir)?;
            }
        }
        // The holder is cut where the batch holding `offset` starts.
        let seg = if inner.active.base_offset() == holder {
            &inner.active
        } else {
            inner
                .closed
                .get(&holder)
                .ok_or_else(|| StorageError::CorruptLog(format!("segment {holder} vanished")))?
        };
        let snap = seg.snapshot_for_offset(offset)?;
        if let Some((pos, _)) = snap.find_batch(offset)? {
            let file = seg.log_file()?;
            file.set_len(pos)?;
            fault::check(seg.log_path(), FaultOp::Sync)?;
            file.sync_data()?;
        }
        let end = self.reopen_in_place(&mut inner)?;
        drop(inner);
        self.durable.send_if_modified(|d| {
            let lowered = (*d).min(end);
            std::mem::replace(d, lowered) != lowered
        });
        self.appended();
        tracing::info!(dir = %self.dir.display(), offset, log_end_offset = end, "log truncated");
        Ok(end)
    }

    /// Rebuilds the in-memory state exactly as a restart would open the directory; returns
    /// the log end offset.
    fn reopen_in_place(&self, inner: &mut Inner) -> Result<i64> {
        let config = inner.config;
        let files = inner.files.clone();
        let fresh = Self::open_inner(&self.dir, config, false, self.health.clone(), files)?;
        let mut rebuilt = fresh.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        rebuilt.durable = self.durable.clone();
        let end = rebuilt.log_end_offset;
        *inner = rebuilt;
        Ok(end)
    }

    /// Empties the log and starts it at `offset` (Kafka's `truncateFullyAndStartAt`): for a
    /// follower whose log ends below its leader's log start offset, since what it lacks is
    /// gone at the leader too. The new start is written first (`log-start-offset`, atomically
    /// and durably); then the log is reopened, and an open with a start offset beyond every
    /// segment deletes them and starts empty there. So a crash before that write leaves the old
    /// log (the follower asks again), after it an empty log at `offset`. A no-op unless
    /// `offset` is past the log end offset, or the log is empty (it may then start earlier:
    /// the leader's log start can fall inside a batch, which the replica keeps whole).
    /// Blocking: call it off the async workers.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<i64> {
        self.online()?;
        let _flush = self.flush_lock.blocking_lock();
        let r = self.start_at_inner(offset);
        self.appended();
        self.guard("truncate", r)
    }

    fn start_at_inner(&self, offset: i64) -> Result<i64> {
        let mut inner = self.lock();
        let empty = inner.log_start_offset == inner.log_end_offset;
        if offset == inner.log_end_offset || (offset < inner.log_end_offset && !empty) {
            return Ok(inner.log_end_offset);
        }
        let from = inner.log_end_offset;
        if offset < from {
            // An empty log moving its start back (to the first offset of the leader's batch
            // holding the leader's log start): an open takes the start from the first
            // segment, so the (empty) segments go first; a crash meanwhile leaves an empty
            // log at the old start.
            inner.active.delete_files()?;
            for seg in inner.closed.values().rev() {
                seg.delete_files()?;
            }
            fsync_dir(&self.dir)?;
        }
        write_atomic(
            &self.dir,
            LOG_START_OFFSET_FILE,
            format!("0\n{offset}\n").as_bytes(),
        )?;
        let end = self.reopen_in_place(&mut inner)?;
        drop(inner);
        // Nothing below the new start exists: all of it is as durable as it will be.
        self.durable
            .send_if_modified(|d| std::mem::replace(d, end) != end);
        tracing::warn!(dir = %self.dir.display(), from, log_start_offset = end, "log emptied to start at the leader's log start");
        Ok(end)
    }
}
