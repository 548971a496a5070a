//! `PartitionLog`: the log of one partition, a sequence of segments in one directory.
//!
//! Layout of `<data_dir>/<topic>-<partition>/`:
//! - `<base offset, 20 digits>.log` / `.index` / `.timeindex` per segment, and `.txnindex` for
//!   segments holding ABORT markers (see [`super::segment`], [`super::txn_index`]);
//! - `leader-epoch-checkpoint` (see [`super::epoch`]);
//! - `log-start-offset`: `0\n<offset>\n`, written atomically by `advance_log_start_offset`;
//! - `<offset, 20 digits>.snapshot`: idempotent-producer state as of `offset` (see
//!   [`super::producer_state`]), written at every roll and at `close`, the 2 newest kept.
//!
//! Offsets: `log_start_offset <= log_end_offset`; the log end offset (LEO) is the last valid
//! batch's `baseOffset + lastOffsetDelta + 1` (the active segment's base offset when it is
//! empty). Segments are kept in a `BTreeMap` by base offset plus one active segment, the only
//! one ever written. There is always an active segment.
//!
//! Concurrency: state sits behind a `std::sync::Mutex` held only for short, non-async work
//! (appends write to the page cache; no await under it). Readers take a snapshot (an `Arc<File>`
//! and the valid size) under the lock and `pread` outside it; bytes below a snapshot's size never
//! change, and a deleted segment's file stays readable through the `Arc`.
//!
//! Durability:
//! - Rolling seals the old segment first: its final time index entry is written and its `.log`
//!   and both indexes are fdatasync'ed *before* the new segment takes writes, so only the active
//!   segment can ever have a torn tail. The directory is fsync'ed after files are created or
//!   deleted, and checkpoint files are replaced atomically (tmp, fsync, rename, dir fsync).
//! - `append` returns once the bytes are in the page cache (acks=1). `flush_until` is the group
//!   commit for acks=all: callers queue on one async flush lock; whoever holds it snapshots the
//!   active segment's file and the LEO under the log lock, releases it, runs one `fdatasync` in
//!   `spawn_blocking`, and publishes the new durable offset on a `watch` channel. Every caller
//!   whose offset is covered returns without another sync, so one fdatasync serves every batch
//!   appended meanwhile. The append lock is never held during that fsync.
//! - Rolling fsyncs under the append lock (once per segment, by design of the invariant above).
//!
//! Producer state (KIP-98/KIP-360): `append` checks every batch with a producer id against the
//! per-producer state (epoch fencing, sequence continuity, duplicate detection over the last 5
//! batches) under the append lock, before anything is written; a request whose batches are all
//! retries writes nothing and returns the original offsets (`AppendInfo::duplicate`). The
//! staged state updates are committed only after the write succeeded, so the state always
//! describes exactly the batches below the log end offset. At open the state is the newest
//! valid snapshot at or below the log end offset plus a replay of the batch headers after it
//! (the whole log without one); snapshots above the end or below the first segment, and
//! invalid ones, are deleted. Retention drops producers whose batches are all deleted and, by
//! `producer.id.expiration.ms`, idle producers without an ongoing transaction.
//!
//! Transactions (KIP-98): a control batch of a producer must be a COMMIT or ABORT marker
//! ([`super::control`]); it ends the producer's transaction, and an ABORT adds `(producer id,
//! first offset, marker offset, LSO after it)` to the active segment's `.txnindex` (entries in
//! memory, file written with the append and fdatasync'ed with the segment).
//! `aborted_transactions` answers read_committed fetches from those entries. At open the
//! producer-state replay also rebuilds the indexes: entries at or above the replay start are
//! replaced by the aborts the replay meets; entries below it are trusted (they were synced before
//! the snapshot the replay starts from was written); a segment with an invalid `.txnindex` forces
//! the replay to start at or below its base (an older snapshot, or the whole log).
//!
//! Recovery ([`PartitionLog::open`] with `clean = false`): leftover `*.tmp`, `*.cleaned`,
//! `*.deleted`, `*.swap` files and index files without a `.log` are deleted; the active segment
//! is fully re-validated (length, magic, CRC32C, offsets), truncated at the first invalid batch
//! (set_len + fdatasync) and its indexes rebuilt; other segments keep their indexes unless an
//! index is missing or invalid. With `clean = true` indexes are trusted and only the batch
//! headers after the active segment's last index entry are read (falling back to recovery if
//! they do not scan cleanly).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;

use super::batch::{
    set_base_offset, set_log_append_time_split, set_partition_leader_epoch, split_and_validate,
    BatchHeader, BatchInfo, HEADER_LEN,
};
use super::config::LogConfig;
use super::control::{control_type, end_txn_marker, ControlType};
use super::epoch::{EpochEntry, LeaderEpochCache};
use super::error::{Result, StorageError};
use super::fault::{self, FaultOp};
use super::files::{fsync_dir, read_optional, write_atomic, TMP_SUFFIX};
use super::log_dir::LogDirHealth;
use super::open_files::OpenFiles;
use super::producer_state::{
    delete_snapshot, list_snapshots, prune_snapshots, ActiveProducer, PendingAppend,
    ProducerStateManager, Verdict,
};
use super::recompress::recompress;
use super::segment::{
    parse_segment_file_name, scan_batches, Segment, SegmentSnapshot, INDEX_SUFFIX, LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
};
use super::txn_index::{AbortedTxn, TXN_INDEX_SUFFIX};

mod recovery;
mod replica;

/// Name of the persisted log start offset file.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";

/// Result of an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The broker time stamped on the batches with LogAppendTime, else -1.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// One per appended batch, in order, with assigned offsets.
    pub batches: Vec<BatchInfo>,
    /// Every batch was a retry of an already appended idempotent batch: nothing was written and
    /// the offsets (in this struct and in `batches`) are those of the original append.
    pub duplicate: bool,
}

/// Result of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches, starting with the batch containing the requested offset.
    pub records: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// Whole batches lying in a segment file (see [`PartitionLog::read_region`]).
#[derive(Clone, Debug)]
pub struct Region {
    pub file: Arc<std::fs::File>,
    pub position: u64,
    pub len: u64,
    /// Last offset of the last batch in the region.
    pub last_offset: i64,
}

impl Region {
    /// Whether the region's bytes are all in the page cache (so `sendfile` will not wait for
    /// the disk). A page may still be evicted before it is sent; that send then waits.
    pub fn cached(&self) -> bool {
        super::files::cached(&self.file, self.position, self.len)
    }

    /// Brings the region into the page cache, waiting for the disk: on a blocking thread.
    pub fn prefetch(&self) -> io::Result<()> {
        super::files::prefetch(&self.file, self.position, self.len)
    }

    /// The region's bytes.
    pub fn read(&self) -> io::Result<Bytes> {
        let len = usize::try_from(self.len).map_err(|_| io::Error::other("region length"))?;
        let mut buf = vec![0u8; len];
        std::os::unix::fs::FileExt::read_exact_at(&*self.file, &mut buf, self.position)?;
        Ok(Bytes::from(buf))
    }
}

/// Result of [`PartitionLog::read_region`].
#[derive(Clone, Debug)]
pub struct RegionRead {
    /// `None`: nothing to return (at the end, or the first batch does not fit).
    pub region: Option<Region>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// A record's timestamp and offset (ListOffsets answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

struct Inner {
    config: LogConfig,
    /// Closed (sealed, fsynced) segments by base offset.
    closed: BTreeMap<i64, Segment>,
    active: Segment,
    log_start_offset: i64,
    log_end_offset: i64,
    epochs: LeaderEpochCache,
    /// Idempotent-producer state as of `log_end_offset`.
    producers: ProducerStateManager,
    /// `(base offset, size)` of the active segment as of its last fdatasync: bytes past it may
    /// be lost by a power failure (closed segments are wholly synced).
    synced: (i64, u64),
    /// The durable offset (shared with [`PartitionLog`], so a roll can publish what it synced).
    durable: Arc<watch::Sender<i64>>,
    /// Open `.log` handles of the data dir (shared by its logs).
    files: Arc<OpenFiles>,
}

/// The log of one partition. `Send + Sync`; share it in an `Arc`.
pub struct PartitionLog {
    dir: PathBuf,
    inner: Mutex<Inner>,
    flush_lock: tokio::sync::Mutex<()>,
    durable: Arc<watch::Sender<i64>>,
    /// Shared by every log of the data dir: the first I/O failure takes them all offline.
    health: Arc<LogDirHealth>,
    /// fdatasyncs run by `flush_until` (observability of group commit).
    group_commit_syncs: AtomicU64,
    /// Counts appends (of any kind), truncations and log start moves: replica fetches
    /// long-poll on it, so a follower learns of new records before the leader's own
    /// fdatasync ends.
    appends: watch::Sender<u64>,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Raises the durable offset to `offset` (never lowers it).
fn publish(durable: &watch::Sender<i64>, offset: i64) {
    durable.send_if_modified(|d| {
        if offset > *d {
            *d = offset;
            true
        } else {
            false
        }
    });
}

impl Inner {
    fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.closed.values().chain(std::iter::once(&self.active))
    }

    /// Every segment mutably, oldest first, each with whether it is the active one.
    fn segments_mut(&mut self) -> impl Iterator<Item = (&mut Segment, bool)> {
        self.closed
            .values_mut()
            .map(|s| (s, false))
            .chain(std::iter::once((&mut self.active, true)))
    }

    /// The segment that would hold `offset` (the last one with base <= offset, else the first).
    fn floor_segment(&self, offset: i64) -> &Segment {
        if offset >= self.active.base_offset() {
            return &self.active;
        }
        self.closed
            .range(..=offset)
            .next_back()
            .or_else(|| self.closed.iter().next())
            .map_or(&self.active, |(_, s)| s)
    }

    fn segment_after(&self, base: i64) -> Option<&Segment> {
        if base >= self.active.base_offset() {
            return None;
        }
        Some(
            self.closed
                .range(base + 1..)
                .next()
                .map_or(&self.active, |(_, s)| s),
        )
    }

    fn out_of_range(&self, offset: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
        }
    }

    fn roll(&mut self, dir: &Path, now_ms: i64) -> Result<()> {
        if self.active.is_empty() {
            return Ok(());
        }
        self.active.seal()?;
        let new = Segment::create(
            dir,
            self.log_end_offset,
            now_ms,
            self.config.index_interval_bytes,
            &self.files,
        )?;
        fsync_dir(dir)?;
        let old = std::mem::replace(&mut self.active, new);
        // Everything below the new segment was just synced.
        self.synced = (self.log_end_offset, 0);
        publish(&self.durable, self.log_end_offset);
        tracing::debug!(dir = %dir.display(), base = self.log_end_offset, "rolled segment");
        self.closed.insert(old.base_offset(), old);
        // A snapshot only shortens the rebuild at open: failing to write one is not fatal.
        if let Err(e) = self.snapshot_producers(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "producer state snapshot failed");
        }
        Ok(())
    }

    /// Writes the producer state snapshot at the log end offset and prunes old snapshots.
    fn snapshot_producers(&self, dir: &Path) -> io::Result<()> {
        self.producers.write_snapshot(dir, self.log_end_offset)?;
        if prune_snapshots(dir, self.first_base_offset())? {
            fsync_dir(dir)?;
        }
        Ok(())
    }

    fn first_base_offset(&self) -> i64 {
        self.closed
            .keys()
            .next()
            .copied()
            .unwrap_or(self.active.base_offset())
    }

    /// Deletes the `n` oldest segments (rolling first if that includes the active one), then
    /// moves the log start offset to the first remaining segment.
    fn delete_oldest(&mut self, dir: &Path, n: usize, now_ms: i64) -> Result<usize> {
        if n == 0 {
            return Ok(0);
        }
        if n > self.closed.len() {
            self.roll(dir, now_ms)?;
        }
        let mut deleted = 0;
        while deleted < n {
            let Some((_, seg)) = self.closed.pop_first() else {
                break;
            };
            seg.delete_files()?;
            deleted += 1;
        }
        let first = self
            .closed
            .keys()
            .next()
            .copied()
            .unwrap_or(self.active.base_offset());
        self.log_start_offset = self.log_start_offset.max(first);
        prune_snapshots(dir, first)?;
        self.producers.truncate_head(self.log_start_offset);
        fsync_dir(dir)?;
        if self.epochs.truncate_from_start(self.log_start_offset) {
            self.epochs.persist(dir)?;
        }
        Ok(deleted)
    }

    /// Number of oldest closed segments lying wholly below the log start offset.
    fn segments_below_start(&self) -> usize {
        let bases: Vec<i64> = self.segments().map(|s| s.base_offset()).collect();
        bases
            .windows(2)
            .take_while(|w| w[1] <= self.log_start_offset)
            .count()
    }
}

impl PartitionLog {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written batch visible (sizes move
        // only after a successful write), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `Err(LogDirOffline)` once the data dir is offline.
    fn online(&self) -> Result<()> {
        if self.health.is_offline() {
            Err(StorageError::LogDirOffline)
        } else {
            Ok(())
        }
    }

    /// Passes `r` through; an I/O error in it takes the data dir offline (`what` failed).
    fn guard<T>(&self, what: &str, r: Result<T>) -> Result<T> {
        if let Err(StorageError::Io(e)) = &r {
            self.health.fail(what, &self.dir, e);
        }
        r
    }

    /// The health of the data dir this log belongs to.
    pub fn health(&self) -> &Arc<LogDirHealth> {
        &self.health
    }

    /// Validates every batch of `records`, then appends them (see docs/storage-api.md).
    /// Nothing is written if any batch is invalid.
    pub fn append(&self, records: &[u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        self.online()?;
        let r = self.append_inner(records, leader_epoch, now_ms);
        self.appended();
        self.guard("append", r)
    }

    /// Wakes whoever waits on [`PartitionLog::subscribe_appends`].
    pub(crate) fn appended(&self) {
        self.appends.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every later append or truncation (the log end offset may have
    /// moved; it carries no offset). Subscribe before reading the log end offset, so an append
    /// between the two still wakes the receiver.
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appends.subscribe()
    }

    fn append_inner(&self, records: &[u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        let config = self.config();
        let mut batches = split_and_validate(records)?;
        // compression.type: recompress what is not in the topic's codec (nothing is decoded or
        // copied when every batch matches, or with `producer`).
        let recompressed = match config.compression {
            Some(target) => recompress(records, &batches, target)?,
            None => None,
        };
        if let Some(bytes) = &recompressed {
            batches = split_and_validate(bytes)?;
        }
        let records: &[u8] = recompressed.as_deref().unwrap_or(records);
        for (_, h) in &batches {
            let size = h.total_size().unwrap_or(usize::MAX);
            if size as u64 > config.max_message_bytes.max(0) as u64 {
                return Err(StorageError::MessageTooLarge {
                    size,
                    max: i64::from(config.max_message_bytes),
                });
            }
        }
        let segment_bytes = config.effective_segment_bytes();
        if records.len() as u64 > segment_bytes {
            return Err(StorageError::RecordListTooLarge {
                size: records.len(),
                max: segment_bytes,
            });
        }
        // Patched copies of the batch headers; the record bytes are written from `records`.
        let mut patched: Vec<[u8; HEADER_LEN]> = Vec::with_capacity(batches.len());
        let mut inner = self.lock();
        let config = inner.config;
        let base_offset = inner.log_end_offset;
        let mut next = base_offset;
        let mut headers: Vec<(usize, BatchHeader)> = Vec::with_capacity(batches.len());
        let mut infos = Vec::with_capacity(batches.len());
        let mut max_timestamp = i64::MIN;
        // Producer checks happen here, under the append lock and before anything is written;
        // their updates are committed only after the write.
        let mut pending = PendingAppend::default();
        let mut duplicates: Vec<BatchInfo> = Vec::new();
        // Offsets of the ABORT markers of this append (they get `.txnindex` entries).
        let mut aborts: Vec<i64> = Vec::new();
        for (pos, h) in &batches {
            let size = h.total_size().unwrap_or(0);
            let Some(batch) = records
                .get(*pos..*pos + size)
                .filter(|b| b.len() >= HEADER_LEN)
            else {
                return Err(StorageError::CorruptMessage("batch bounds".into()));
            };
            let mut header = [0u8; HEADER_LEN];
            header.copy_from_slice(&batch[..HEADER_LEN]);
            set_base_offset(&mut header, next);
            set_partition_leader_epoch(&mut header, leader_epoch);
            if config.log_append_time {
                set_log_append_time_split(&mut header, &batch[HEADER_LEN..], now_ms);
            }
            let h = BatchHeader::parse(&header)
                .ok_or_else(|| StorageError::CorruptMessage("batch header".into()))?;
            patched.push(header);
            if h.is_control() && h.producer_id >= 0 {
                // A transaction marker: Kafka's EndTransactionMarker, COMMIT or ABORT only.
                match control_type(batch)? {
                    ControlType::Abort => aborts.push(h.base_offset),
                    ControlType::Commit => {}
                    ControlType::Other(t) => {
                        return Err(StorageError::InvalidRecord(format!(
                            "control batch of producer {} has type {t}, not COMMIT or ABORT",
                            h.producer_id
                        )))
                    }
                }
            }
            if let Verdict::Duplicate(original) =
                inner.producers.check_and_stage(&mut pending, &h)?
            {
                duplicates.push(BatchInfo {
                    base_offset: original.first_offset,
                    last_offset: original.last_offset,
                    max_timestamp: original.max_timestamp,
                    ..BatchInfo::from_header(&h, size)
                });
                continue;
            }
            max_timestamp = max_timestamp.max(h.max_timestamp);
            infos.push(BatchInfo::from_header(&h, size));
            headers.push((*pos, h));
            next = h.next_offset();
        }
        if let Some(first) = duplicates.first() {
            if !infos.is_empty() {
                return Err(StorageError::DuplicateSequence {
                    producer_id: first.producer_id,
                    first_seq: first.base_sequence,
                });
            }
            // A retry of batches already appended: nothing is written (Kafka answers with the
            // original offsets and no error).
            let last = duplicates.last().unwrap_or(first);
            return Ok(AppendInfo {
                base_offset: first.base_offset,
                last_offset: last.last_offset,
                log_append_time: if config.log_append_time {
                    first.max_timestamp
                } else {
                    -1
                },
                log_start_offset: inner.log_start_offset,
                batches: duplicates,
                duplicate: true,
            });
        }
        let last_offset = next - 1;
        let active = &inner.active;
        let should_roll = !active.is_empty()
            && (active.size() + records.len() as u64 > segment_bytes
                || active.time_waited_for_roll(now_ms, max_timestamp) > config.segment_ms
                || !active.can_hold_offset(last_offset));
        if should_roll {
            inner.roll(&self.dir, now_ms)?;
        }
        if leader_epoch >= 0 && inner.epochs.latest_epoch().is_none_or(|l| leader_epoch > l) {
            let mut epochs = inner.epochs.clone();
            epochs.assign(leader_epoch, base_offset);
            epochs.persist(&self.dir)?;
            inner.epochs = epochs;
        }
        // Every batch goes to disk (duplicates never reach here: a request of only retries
        // returned above, a mix is refused), each as its patched header + the producer's body.
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * batches.len());
        for ((pos, h), header) in batches.iter().zip(&patched) {
            let size = h.total_size().unwrap_or(0);
            parts.push(header);
            parts.push(&records[*pos + HEADER_LEN..*pos + size]);
        }
        inner.active.append(&parts, &headers)?;
        inner.log_end_offset = next;
        let completed = inner.producers.commit(pending);
        for txn in completed.iter().filter(|t| aborts.contains(&t.last_offset)) {
            let entry = AbortedTxn {
                producer_id: txn.producer_id,
                first_offset: txn.first_offset,
                last_offset: txn.last_offset,
                last_stable_offset: txn.last_stable_offset,
            };
            if let Err(e) = inner.active.append_aborted_txn(entry) {
                // The entry is in memory (queries are right); the file is rewritten at the
                // next sync, and rebuilt from the log after a crash.
                tracing::warn!(dir = %self.dir.display(), error = %e,
                    "transaction index write failed");
            }
        }
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time: if config.log_append_time { now_ms } else { -1 },
            log_start_offset: inner.log_start_offset,
            batches: infos,
            duplicate: false,
        })
    }

    /// Whether an append of `len` bytes is a plain write into the page cache through an open
    /// file, with at most `max_unsynced` bytes then unsynced in the active segment: no roll
    /// (which fsyncs), no `open`. A hint (the append decides).
    pub fn append_is_plain(&self, len: usize, now_ms: i64, max_unsynced: u64) -> bool {
        let inner = self.lock();
        let active = &inner.active;
        let rolls = !active.is_empty()
            && (active.size() + len as u64 > inner.config.effective_segment_bytes()
                || active.time_waited_for_roll(now_ms, now_ms) > inner.config.segment_ms);
        let unsynced = if inner.synced.0 == active.base_offset() {
            active.size().saturating_sub(inner.synced.1)
        } else {
            active.size()
        };
        !rolls && active.is_open() && unsynced + len as u64 <= max_unsynced
    }

    /// Group commit: resolves once everything below `offset` (an exclusive end offset, i.e.
    /// `last_offset + 1`; capped at the current log end offset) is fdatasync'ed. Concurrent
    /// callers share fdatasyncs (see the module docs).
    pub async fn flush_until(&self, offset: i64) -> Result<()> {
        let target = offset.min(self.log_end_offset());
        if *self.durable.borrow() >= target {
            return Ok(());
        }
        let _flusher = self.flush_lock.lock().await;
        if *self.durable.borrow() >= target {
            return Ok(());
        }
        // Checked under the flush lock: once one fsync failed, no later one may acknowledge.
        self.online()?;
        let (file, path, leo, base, size) = {
            let inner = self.lock();
            let file = self.guard(
                "opening the active segment",
                inner.active.log_file().map_err(StorageError::Io),
            )?;
            (
                file,
                inner.active.log_path().to_path_buf(),
                inner.log_end_offset,
                inner.active.base_offset(),
                inner.active.size(),
            )
        };
        let started = std::time::Instant::now();
        let sync_path = path.clone();
        let synced = tokio::task::spawn_blocking(move || {
            fault::check(&sync_path, FaultOp::Sync)?;
            file.sync_data()
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        if let Err(e) = synced {
            self.health.fail("fdatasync", &path, &e);
            return Err(StorageError::Io(e));
        }
        crate::metrics::fsync(started.elapsed());
        self.group_commit_syncs.fetch_add(1, Ordering::Relaxed);
        {
            let mut inner = self.lock();
            if inner.synced.0 == base && inner.synced.1 < size {
                inner.synced.1 = size;
                inner.active.mark_synced(size);
            }
        }
        self.publish_durable(leo);
        Ok(())
    }

    fn publish_durable(&self, offset: i64) {
        publish(&self.durable, offset);
    }

    /// Drops what no fdatasync has covered yet from the active segment, as a power failure
    /// would (the page cache is lost). For crash tests only: call it on a log no one writes to
    /// any more, then reopen the directory with `clean = false`.
    #[doc(hidden)]
    pub fn simulate_power_loss(&self) -> Result<()> {
        let inner = self.lock();
        if inner.synced.0 == inner.active.base_offset() && inner.synced.1 < inner.active.size() {
            inner.active.log_file()?.set_len(inner.synced.1)?;
        }
        Ok(())
    }

    /// Number of fdatasyncs `flush_until` has run (one covers many callers).
    pub fn group_commit_syncs(&self) -> u64 {
        self.group_commit_syncs.load(Ordering::Relaxed)
    }

    /// The offset below which everything is fdatasync'ed.
    pub fn durable_offset(&self) -> i64 {
        *self.durable.borrow()
    }

    /// Watch the durable offset (for callers that want to wait without flushing themselves).
    pub fn subscribe_durable(&self) -> watch::Receiver<i64> {
        self.durable.subscribe()
    }

    /// Synchronous fdatasync of the active segment and its indexes (closed segments are synced
    /// when rolled).
    pub fn flush(&self) -> Result<()> {
        self.online()?;
        let r = (|| {
            let mut inner = self.lock();
            inner.active.sync_all()?;
            inner.synced = (inner.active.base_offset(), inner.active.size());
            Ok(inner.log_end_offset)
        })();
        let leo = self.guard("fdatasync", r)?;
        self.publish_durable(leo);
        Ok(())
    }

    /// Reads whole batches from `offset` (see docs/storage-api.md): the batches
    /// [`PartitionLog::read_region`] selects, read into memory.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<ReadResult> {
        let r = self.read_region(offset, max_bytes, upper_bound, min_one)?;
        let records = match &r.region {
            Some(region) => region.read()?,
            None => Bytes::new(),
        };
        Ok(ReadResult {
            records,
            log_start_offset: r.log_start_offset,
            log_end_offset: r.log_end_offset,
        })
    }

    /// [`PartitionLog::read`] without reading the data: where the batches a read would return
    /// lie in a segment file, for sending them with `sendfile`. The handle stays readable for
    /// as long as it is held (even if retention deletes the segment), and bytes below the
    /// returned end never change.
    pub fn read_region(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<RegionRead> {
        self.read_region_with(offset, max_bytes, upper_bound, min_one, false)
    }

    /// [`PartitionLog::read_region`] for async callers: it never waits for the disk. It reads
    /// batch headers only from the page cache (`preadv2(RWF_NOWAIT)`) and only through open
    /// segment files; anything else is [`StorageError::WouldBlock`], and the caller repeats the
    /// read with `read_region` on a blocking thread. The region's data itself may still be on
    /// disk: see [`Region::cached`].
    pub fn read_region_nowait(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<RegionRead> {
        self.read_region_with(offset, max_bytes, upper_bound, min_one, true)
    }

    fn read_region_with(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
        nowait: bool,
    ) -> Result<RegionRead> {
        self.online()?;
        let snapshot = |seg: &Segment| -> Result<SegmentSnapshot> {
            if nowait {
                seg.snapshot_for_read_nowait(offset, upper_bound)
                    .ok_or(StorageError::WouldBlock)
            } else {
                Ok(seg.snapshot_for_read(offset, upper_bound)?)
            }
        };
        let (lso, leo, mut snap) = {
            let inner = self.lock();
            if offset < inner.log_start_offset || offset > inner.log_end_offset {
                return Err(inner.out_of_range(offset));
            }
            let lso = inner.log_start_offset;
            let leo = inner.log_end_offset;
            if offset >= upper_bound.min(leo) {
                return Ok(RegionRead {
                    region: None,
                    log_start_offset: lso,
                    log_end_offset: leo,
                });
            }
            let snap = snapshot(inner.floor_segment(offset))?;
            (lso, leo, snap)
        };
        let region = loop {
            if let Some((pos, h)) = snap.find_batch(offset)? {
                break snap
                    .region_batches(pos, &h, max_bytes, upper_bound, min_one)?
                    .map(|(len, last_offset)| Region {
                        file: snap.file.clone(),
                        position: pos,
                        len,
                        last_offset,
                    });
            }
            let inner = self.lock();
            match inner.segment_after(snap.base_offset) {
                Some(seg) => snap = snapshot(seg)?,
                None => break None,
            }
        };
        Ok(RegionRead {
            region,
            log_start_offset: lso,
            log_end_offset: leo,
        })
    }

    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.lock().log_end_offset
    }

    /// Sum of the segment sizes in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments().map(Segment::size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.lock().closed.len() + 1
    }

    /// Base offsets of all segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.lock().segments().map(Segment::base_offset).collect()
    }

    /// ListOffsets by timestamp: the first record at or after the log start offset whose
    /// timestamp >= `ts` (record level: compressed batches are decompressed).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<TimestampOffset>> {
        let pick = |inner: &Inner, after: Option<i64>| -> io::Result<Option<SegmentSnapshot>> {
            inner
                .segments()
                .filter(|s| after.is_none_or(|a| s.base_offset() > a))
                .find(|s| s.max_timestamp() >= ts)
                .map(|s| s.snapshot_for_timestamp(ts))
                .transpose()
        };
        let (lso, mut snap) = {
            let inner = self.lock();
            (inner.log_start_offset, pick(&inner, None)?)
        };
        while let Some(s) = snap {
            if let Some(found) = s.find_timestamp(ts, lso)? {
                return Ok(Some(found));
            }
            snap = pick(&self.lock(), Some(s.base_offset))?;
        }
        Ok(None)
    }

    /// ListOffsets -3 (KIP-734): the record with the largest timestamp (the first such on
    /// ties). `None` if the log is empty.
    pub fn max_timestamp(&self) -> Result<Option<TimestampOffset>> {
        let (lso, max_ts, offset_of_max, snap) = {
            let inner = self.lock();
            if inner.log_start_offset >= inner.log_end_offset {
                return Ok(None);
            }
            let mut best: Option<&Segment> = None;
            for s in inner.segments().filter(|s| !s.is_empty()) {
                if best.is_none_or(|b| s.max_timestamp() > b.max_timestamp()) {
                    best = Some(s);
                }
            }
            let Some(best) = best else { return Ok(None) };
            (
                inner.log_start_offset,
                best.max_timestamp(),
                best.offset_of_max_timestamp(),
                best.snapshot_for_offset(best.offset_of_max_timestamp())?,
            )
        };
        Ok(Some(snap.find_exact_timestamp(max_ts, lso)?.unwrap_or(
            TimestampOffset {
                timestamp: max_ts,
                offset: offset_of_max,
            },
        )))
    }

    /// Deletes whole segments beyond `retention.ms` (by each segment's largest timestamp) and
    /// `retention.bytes` (oldest first), and segments below the log start offset; moves the log
    /// start offset. Rolls the active segment when it is due by `segment.ms`, or when it must
    /// go too. Returns the number of segments deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        self.online()?;
        let r = self.enforce_retention_inner(now_ms);
        self.guard("retention", r)
    }

    fn enforce_retention_inner(&self, now_ms: i64) -> Result<usize> {
        let mut inner = self.lock();
        let config = inner.config;
        if !inner.active.is_empty()
            && inner.active.time_waited_for_roll(now_ms, now_ms) > config.segment_ms
        {
            inner.roll(&self.dir, now_ms)?;
        }
        let mut deleted = 0;
        if config.retention_ms >= 0 {
            let n = inner
                .segments()
                .take_while(|s| {
                    !s.is_empty()
                        && now_ms.saturating_sub(s.largest_timestamp()) > config.retention_ms
                })
                .count();
            deleted += inner.delete_oldest(&self.dir, n, now_ms)?;
        }
        if config.retention_bytes >= 0 {
            let total: u64 = inner.segments().map(Segment::size).sum();
            let mut diff = i128::from(total) - i128::from(config.retention_bytes);
            let mut n = 0;
            for s in inner.segments() {
                if s.is_empty() || diff - i128::from(s.size()) < 0 {
                    break;
                }
                diff -= i128::from(s.size());
                n += 1;
            }
            deleted += inner.delete_oldest(&self.dir, n, now_ms)?;
        }
        let below = inner.segments_below_start();
        deleted += inner.delete_oldest(&self.dir, below, now_ms)?;
        let expired = inner
            .producers
            .remove_expired(now_ms, config.producer_id_expiration_ms);
        if expired > 0 {
            tracing::debug!(dir = %self.dir.display(), expired, "expired producer ids");
        }
        Ok(deleted)
    }

    /// Moves the log start offset forward to `offset` (DeleteRecords): persisted atomically in
    /// `log-start-offset`, then segments wholly below it are deleted. A smaller offset is a
    /// no-op; one beyond the log end offset is `OffsetOutOfRange`.
    pub fn advance_log_start_offset(&self, offset: i64) -> Result<()> {
        self.online()?;
        let r = self.advance_log_start_offset_inner(offset);
        // Followers long-polling here learn of the new log start at once.
        self.appended();
        self.guard("moving the log start offset", r)
    }

    fn advance_log_start_offset_inner(&self, offset: i64) -> Result<()> {
        let mut inner = self.lock();
        if offset <= inner.log_start_offset {
            return Ok(());
        }
        if offset > inner.log_end_offset {
            return Err(inner.out_of_range(offset));
        }
        write_atomic(
            &self.dir,
            LOG_START_OFFSET_FILE,
            format!("0\n{offset}\n").as_bytes(),
        )?;
        inner.log_start_offset = offset;
        if offset == inner.log_end_offset && !inner.active.is_empty() {
            inner.roll(&self.dir, wall_clock_ms())?;
        }
        let below = inner.segments_below_start();
        inner.delete_oldest(&self.dir, below, wall_clock_ms())?;
        inner.producers.truncate_head(offset);
        if inner.epochs.truncate_from_start(offset) {
            inner.epochs.persist(&self.dir)?;
        }
        Ok(())
    }

    /// OffsetForLeaderEpoch (Kafka's `LeaderEpochFileCache.endOffsetFor`): the largest epoch
    /// <= `epoch` and the start offset of the next epoch, or the log end offset for the latest
    /// epoch; `(-1, -1)` when unknown.
    pub fn epoch_end_offset(&self, epoch: i32) -> (i32, i64) {
        let inner = self.lock();
        inner.epochs.end_offset_for(epoch, inner.log_end_offset)
    }

    /// [`Log::epoch_end_offset`] as the leader at `leader_epoch` answers it
    /// ([`LeaderEpochCache::end_offset_for_leader`]).
    pub fn leader_epoch_end_offset(&self, epoch: i32, leader_epoch: i32) -> (i32, i64) {
        let inner = self.lock();
        inner
            .epochs
            .end_offset_for_leader(epoch, inner.log_end_offset, leader_epoch)
    }

    /// The leader epoch cache entries, oldest first (for replication and diagnostics).
    pub fn leader_epoch_entries(&self) -> Vec<EpochEntry> {
        self.lock().epochs.entries().to_vec()
    }

    /// The latest leader epoch appended, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock().epochs.latest_epoch()
    }

    pub fn update_config(&self, config: LogConfig) {
        self.lock().config = config;
    }

    pub fn config(&self) -> LogConfig {
        self.lock().config
    }

    /// The state of an idempotent producer: (epoch, last sequence (-1 if none), last
    /// timestamp, first offset of its ongoing transaction). `None` if the partition has no state
    /// for it (never seen, expired, or its batches deleted).
    pub fn producer_state(&self, producer_id: i64) -> Option<(i16, i32, i64, Option<i64>)> {
        self.lock().producers.get(producer_id).map(|p| {
            (
                p.epoch,
                p.last_sequence,
                p.last_timestamp,
                p.ongoing_txn_first_offset,
            )
        })
    }

    /// Every producer with state, by producer id (DescribeProducers).
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        self.lock().producers.active()
    }

    /// The smallest first offset of an ongoing transaction, if any (the last stable offset is
    /// at most this).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.lock().producers.first_unstable_offset()
    }

    /// Writes a transaction marker (KIP-98): a COMMIT (`commit = true`) or ABORT control batch
    /// of producer (`producer_id`, `producer_epoch`) carrying `coordinator_epoch`, stamped
    /// `now_ms`, appended through [`PartitionLog::append`] with `leader_epoch`. So the producer
    /// state sees it: an epoch older than the producer's current one is
    /// `InvalidProducerEpoch` (nothing written), a newer one becomes the current epoch, and the
    /// producer's ongoing transaction ends. An ABORT records the aborted transaction in the
    /// active segment's `.txnindex`. A marker for a producer without an ongoing transaction
    /// here is still written (as in Kafka); its index entry, for an ABORT, covers only the
    /// marker itself.
    pub fn append_control(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let marker = end_txn_marker(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            now_ms,
        );
        self.append(&marker, leader_epoch, now_ms)
    }

    /// Kafka's `collectAbortedTxns`: `(producer id, first offset)` of every aborted transaction
    /// whose offsets `[first, marker]` overlap `[from_offset, upper_offset)`, in marker order,
    /// from the `.txnindex` (in memory) of the segment holding `from_offset` and the following
    /// ones, until an entry's last stable offset reaches `upper_offset`. A read_committed
    /// Fetch passes its fetch offset and the last offset it returns + 1.
    pub fn aborted_transactions(&self, from_offset: i64, upper_offset: i64) -> Vec<(i64, i64)> {
        let inner = self.lock();
        let mut out = Vec::new();
        if upper_offset <= from_offset {
            return out;
        }
        let start = inner.floor_segment(from_offset).base_offset();
        for seg in inner.segments().filter(|s| s.base_offset() >= start) {
            if seg.txn_index().collect(from_offset, upper_offset, &mut out) {
                break;
            }
        }
        out
    }

    /// Seals the active segment (final time index entry), fdatasyncs it with its indexes and
    /// writes the producer state snapshot at the log end offset; used at clean shutdown. The
    /// log stays usable.
    pub fn close(&self) -> Result<()> {
        self.online()?;
        let r = (|| {
            let mut inner = self.lock();
            inner.active.seal()?;
            inner.synced = (inner.active.base_offset(), inner.active.size());
            inner.snapshot_producers(&self.dir)?;
            Ok(inner.log_end_offset)
        })();
        let leo = self.guard("closing the log", r)?;
        self.publish_durable(leo);
        Ok(())
    }
}
