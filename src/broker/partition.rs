//! One partition replica that this broker hosts: its log plus the replication-facing state
//! Kafka keeps per partition (leader epoch, leadership, high watermark, the followers' state).
//!
//! Invariants: `log_start_offset <= high_watermark <= durable offset <= log_end_offset`.
//! Consumers read only below the high watermark, and the high watermark never passes what a
//! crash could lose: on a leader it is bounded by the log's durable (fdatasync'ed) offset and,
//! with followers, by what every in-sync follower has made durable
//! ([`super::replication::Replication::high_watermark_bound`]), so a record a consumer saw
//! (or committed an offset past) survives a power failure and its offset is never reused.
//! acks=all produces fsync at once (group commit) and wait for the high watermark; every other
//! append schedules a background flush at most `log.flush.max.delay.ms` later, which then
//! advances it. A follower takes the leader's high watermark, bounded by its own durable end.
//! Readers wait for new data by watching the high watermark, so a long-polling Fetch wakes
//! exactly when data becomes visible.
//!
//! `log.visibility = page-cache` (opt-in) is Kafka's behaviour instead: the high watermark
//! follows the log end offset on every append and fsyncs happen only as `flush.messages` /
//! `flush.ms` ask, so the durable-offset bound above does not hold in that mode.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

use super::replication::{Fetched, Replication};
use crate::storage::{self, AppendInfo, LogConfig, LogDirHealth, OpenFiles, PartitionLog};

/// File in each partition directory naming the topic id the directory belongs to.
pub const PARTITION_METADATA: &str = "partition.metadata";

/// Unsynced bytes in a partition's active segment above which appends leave the async workers
/// ([`Partition::append_is_inline`]). In the durable default a background fdatasync follows
/// every append within `log.flush.max.delay.ms`, so this is reached only when the disk falls
/// behind the producers — exactly when the kernel starts throttling writers of dirty pages.
pub const INLINE_UNSYNCED_MAX: u64 = 4 << 20;

/// What every partition opened together shares.
#[derive(Clone)]
pub struct OpenContext {
    /// The broker stopped cleanly last time: indexes are trusted (see `PartitionLog::open`).
    pub clean: bool,
    /// `log.flush.max.delay.ms`.
    pub flush_delay: Duration,
    /// `log.visibility = page-cache`: records are visible once written (Kafka's behaviour).
    pub visible_unflushed: bool,
    /// The data dir's health.
    pub health: Arc<LogDirHealth>,
    /// The data dir's open segment files.
    pub files: Arc<OpenFiles>,
    /// This broker's node id.
    pub node_id: i32,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub dir: PathBuf,
    /// The log, or why it could not be opened at start (the partition is then offline:
    /// KAFKA_STORAGE_ERROR to every request for it, the others unaffected).
    log: Result<Arc<PartitionLog>, Arc<str>>,
    /// The leader epoch of the partition state this broker applied last (batches appended
    /// here are stamped with it).
    leader_epoch: AtomicI32,
    /// Whether that state names this broker the leader: only then does it take produce and
    /// serve fetches (see [`Partition::set_leadership`]).
    leading: AtomicBool,
    high_watermark: Arc<watch::Sender<i64>>,
    /// The followers as this broker sees them while it leads (the high watermark's bound).
    replication: Arc<Replication>,
    /// Ticks when the applied state changes (leadership, ISR): acks=all waits re-check.
    state_changes: watch::Sender<u64>,
    /// A background flush is scheduled (appends meanwhile need no other).
    flush_scheduled: Arc<AtomicBool>,
    /// `log.flush.max.delay.ms`.
    flush_delay: Duration,
    /// `log.visibility = page-cache`.
    visible_unflushed: bool,
    /// The topic's byte counters (`strand_topic_bytes_{in,out}_total`).
    pub metrics: crate::metrics::TopicCounters,
}

impl Partition {
    /// Opens (creating when new) the partition directory `dir` for topic `topic_id`.
    pub fn open(
        topic: &str,
        index: i32,
        topic_id: Uuid,
        dir: PathBuf,
        config: LogConfig,
        ctx: &OpenContext,
    ) -> storage::Result<Partition> {
        if !dir.join(PARTITION_METADATA).exists() {
            fs::create_dir_all(&dir)?;
            write_partition_metadata(&dir, topic_id)?;
        }
        let log = PartitionLog::open_in(
            &dir,
            config,
            ctx.clean,
            ctx.health.clone(),
            ctx.files.clone(),
        )?;
        let leader_epoch = log.latest_epoch().unwrap_or(0).max(0);
        let (high_watermark, _) = watch::channel(log.durable_offset());
        Ok(Partition {
            topic: topic.to_string(),
            index,
            dir,
            log: Ok(Arc::new(log)),
            leader_epoch: AtomicI32::new(leader_epoch),
            leading: AtomicBool::new(false),
            high_watermark: Arc::new(high_watermark),
            replication: Arc::new(Replication::new(ctx.node_id)),
            state_changes: watch::channel(0).0,
            flush_scheduled: Arc::new(AtomicBool::new(false)),
            flush_delay: ctx.flush_delay,
            visible_unflushed: ctx.visible_unflushed,
            metrics: crate::metrics::TopicCounters::new(topic),
        })
    }

    /// A partition whose log could not be opened at start (`reason`): it stays offline until
    /// a restart opens it.
    pub fn offline(
        topic: &str,
        index: i32,
        dir: PathBuf,
        reason: String,
        ctx: &OpenContext,
    ) -> Partition {
        let (high_watermark, _) = watch::channel(0);
        Partition {
            topic: topic.to_string(),
            index,
            dir,
            log: Err(reason.into()),
            leader_epoch: AtomicI32::new(0),
            leading: AtomicBool::new(false),
            high_watermark: Arc::new(high_watermark),
            replication: Arc::new(Replication::new(ctx.node_id)),
            state_changes: watch::channel(0).0,
            flush_scheduled: Arc::new(AtomicBool::new(false)),
            flush_delay: ctx.flush_delay,
            visible_unflushed: ctx.visible_unflushed,
            metrics: crate::metrics::TopicCounters::new(topic),
        }
    }

    /// The log; `Err(LogDirOffline)` (KAFKA_STORAGE_ERROR) when it could not be opened or its
    /// data dir went offline.
    pub fn log(&self) -> storage::Result<&Arc<PartitionLog>> {
        match &self.log {
            Ok(log) if !log.health().is_offline() => Ok(log),
            _ => Err(storage::StorageError::LogDirOffline),
        }
    }

    /// The log if it was opened (even when its data dir is offline since).
    pub fn opened_log(&self) -> Option<&Arc<PartitionLog>> {
        self.log.as_ref().ok()
    }

    /// Why the partition is offline, if it is.
    pub fn offline_reason(&self) -> Option<String> {
        match &self.log {
            Err(reason) => Some(reason.to_string()),
            Ok(log) => log.health().reason(),
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Whether this broker leads the partition now.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Applies the partition's state: this broker leads it (or not) at `leader_epoch`. An
    /// epoch older than the one applied is ignored (a stale state never rolls leadership
    /// back). Returns whether anything changed.
    pub fn set_leadership(&self, leading: bool, leader_epoch: i32) -> bool {
        let current = self.leader_epoch();
        if leader_epoch < current {
            return false;
        }
        let was = self.leading.load(Ordering::Acquire);
        // The epoch first: a reader that sees `leading` sees its epoch.
        self.leader_epoch.store(leader_epoch, Ordering::Release);
        self.leading.store(leading, Ordering::Release);
        was != leading || current != leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// The last stable offset: below the first offset of any open transaction, and never
    /// above the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.opened_log()
            .and_then(|log| log.first_unstable_offset())
            .map_or(hw, |first| first.min(hw))
    }

    /// Watches the high watermark (long-polling fetches wait on it).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Appends validated batches. They become visible to readers once fdatasync'ed: at once
    /// for a caller that awaits [`Partition::flush_until`], else by the background flush this
    /// schedules.
    pub fn append(&self, records: &[u8], now_ms: i64) -> storage::Result<AppendInfo> {
        let info = self.log()?.append(records, self.leader_epoch(), now_ms)?;
        if info.duplicate {
            // A retried batch: nothing was written, the original offsets are answered.
            return Ok(info);
        }
        self.metrics.bytes_in.increment(records.len() as u64);
        self.appended();
        Ok(info)
    }

    /// Whether an append of `len` bytes may run on an async worker: a plain write into the page
    /// cache that will not wait. Not when it would roll (and fsync) the active segment or open
    /// its file, not in page-cache mode (unflushed data piles up, and the kernel throttles
    /// writers of dirty pages), and not when more than [`INLINE_UNSYNCED_MAX`] bytes would be
    /// unsynced (the disk is behind; the same throttling).
    pub fn append_is_inline(&self, len: usize, now_ms: i64) -> bool {
        !self.visible_unflushed
            && self
                .opened_log()
                .is_some_and(|log| log.append_is_plain(len, now_ms, INLINE_UNSYNCED_MAX))
    }

    /// Resolves once everything below `end` is fdatasync'ed and visible (acks=all, and
    /// transaction markers before the coordinator records the transaction complete).
    pub async fn flush_until(&self, end: i64) -> storage::Result<()> {
        let log = self.log()?;
        let r = log.flush_until(end).await;
        if !self.visible_unflushed {
            self.refresh_high_watermark();
        }
        r
    }

    /// What this replica may count as its own end for the high watermark: the durable offset,
    /// or (page-cache mode) the log end offset.
    fn own_end(&self, log: &PartitionLog) -> i64 {
        if self.visible_unflushed {
            log.log_end_offset()
        } else {
            log.durable_offset()
        }
    }

    /// Advances the high watermark as far as this leader may (see the module docs).
    pub fn refresh_high_watermark(&self) {
        if let Some(log) = self.opened_log() {
            publish(&self.high_watermark, &self.replication, self.own_end(log));
        }
    }

    /// Applies the stored state while this broker leads at `leader_epoch` (after
    /// [`Partition::set_leadership`]): the replicas and ISR the high watermark counts.
    pub fn lead(&self, leader_epoch: i32, replicas: &[i32], isr: &[i32], min_insync: usize) {
        let end = self.opened_log().map_or(0, |l| l.log_end_offset());
        self.replication.lead(
            leader_epoch,
            replicas,
            isr,
            end,
            min_insync,
            super::now_ms(),
        );
        self.refresh_high_watermark();
        self.state_changes.send_modify(|v| *v += 1);
    }

    /// Applies a state in which this broker does not lead.
    pub fn resign(&self) {
        self.replication.resign();
        self.state_changes.send_modify(|v| *v += 1);
    }

    /// The followers' replication state (ISR proposals, lag).
    pub fn replication(&self) -> &Replication {
        &self.replication
    }

    /// Whether acks=all writes may be taken: the ISR has `min.insync.replicas` members.
    pub fn enough_in_sync(&self) -> bool {
        self.replication.enough_in_sync()
    }

    /// A follower `replica` fetched from `fetch_offset` (its durable end): counted towards
    /// the high watermark, which advances if it can. `NotReplica` if it is not one of this
    /// partition's followers (or this broker does not lead).
    /// `broker_epoch` is the one the fetch carried (`-1` before Fetch v15), `registered` the
    /// epoch of the follower's live registration.
    pub fn follower_fetched(
        &self,
        replica: i32,
        broker_epoch: i64,
        registered: Option<i64>,
        fetch_offset: i64,
    ) -> Fetched {
        let Some(log) = self.opened_log() else {
            return Fetched::NotReplica;
        };
        let end = log.log_end_offset();
        let r = self.replication.follower_fetched(
            replica,
            broker_epoch,
            registered,
            fetch_offset,
            end,
            super::now_ms(),
        );
        if r == Fetched::Counted {
            self.refresh_high_watermark();
        }
        r
    }

    /// Resolves once the high watermark reaches `end` (acks=all): every in-sync replica has
    /// the records durably. NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR falls below
    /// `min.insync.replicas` meanwhile, NOT_LEADER_OR_FOLLOWER if leadership moves.
    pub async fn wait_committed(&self, end: i64) -> Result<(), ResponseError> {
        if self.high_watermark() >= end {
            return Ok(()); // one replica: flush_until already moved it
        }
        let mut hw = self.high_watermark.subscribe();
        let mut changes = self.state_changes.subscribe();
        loop {
            if *hw.borrow_and_update() >= end {
                return Ok(());
            }
            if !self.is_leader() {
                return Err(ResponseError::NotLeaderOrFollower);
            }
            if !self.enough_in_sync() {
                return Err(ResponseError::NotEnoughReplicasAfterAppend);
            }
            tokio::select! {
                r = hw.changed() => if r.is_err() {
                    return Err(ResponseError::NotLeaderOrFollower);
                },
                r = changes.changed() => if r.is_err() {
                    return Err(ResponseError::NotLeaderOrFollower);
                },
            }
        }
    }

    /// Whether appends are made durable before they count (the default; not in page-cache
    /// mode): a follower then fsyncs what it fetched before fetching on.
    pub fn durable_visibility(&self) -> bool {
        !self.visible_unflushed
    }

    /// A follower appends batches its leader numbered (see `PartitionLog::append_replica`).
    pub fn append_replica(&self, records: &[u8], now_ms: i64) -> storage::Result<AppendInfo> {
        let info = self.log()?.append_replica(records, now_ms)?;
        self.metrics
            .replication_bytes_in
            .increment(records.len() as u64);
        Ok(info)
    }

    /// A follower takes its leader's high watermark, bounded by its own durable end.
    pub fn follow_high_watermark(&self, leader_high_watermark: i64) {
        if let Some(log) = self.opened_log() {
            advance_high_watermark(
                &self.high_watermark,
                leader_high_watermark.min(self.own_end(log)),
            );
        }
    }

    /// At open, for a partition with more than one replica: the durable end of this log says
    /// nothing of what the other replicas hold, so the high watermark starts at the log start
    /// offset; a follower takes its leader's, a leader computes it from its followers' fetches
    /// (or its own durable end while it is the only in-sync replica).
    pub fn start_as_replica(&self) {
        let start = self.opened_log().map_or(0, |l| l.log_start_offset());
        self.high_watermark.send_replace(start);
    }

    /// After a truncation to `end`: the high watermark is never above the log end.
    pub fn truncated(&self, end: i64) {
        self.high_watermark.send_if_modified(|v| {
            if *v > end {
                *v = end;
                true
            } else {
                false
            }
        });
    }

    /// Whether `flush.messages` unflushed messages have piled up: the append that reached it
    /// is answered only after [`Partition::flush_until`] (Kafka flushes in the append path).
    pub fn flush_required(&self) -> bool {
        let Some(log) = self.opened_log() else {
            return false;
        };
        let unflushed = log.log_end_offset() - log.durable_offset();
        unflushed > 0 && unflushed >= log.config().flush_messages
    }

    /// After an append: publishes what is visible now (durable mode: what is already durable,
    /// e.g. a roll synced the old segment; page-cache mode: everything written) and schedules
    /// the background flush of the rest: within `log.flush.max.delay.ms` (or `flush.ms` if
    /// shorter) in durable mode, after `flush.ms` in page-cache mode.
    fn appended(&self) {
        let Some(log) = self.opened_log() else { return };
        let flush_ms = log.config().flush_ms;
        let by_flush_ms = (flush_ms < i64::MAX)
            .then(|| Duration::from_millis(flush_ms.clamp(0, i64::from(u32::MAX)) as u64));
        publish(&self.high_watermark, &self.replication, self.own_end(log));
        let delay = if self.visible_unflushed {
            by_flush_ms
        } else {
            Some(by_flush_ms.map_or(self.flush_delay, |d| d.min(self.flush_delay)))
        };
        if let Some(delay) = delay {
            self.schedule_flush(log, delay);
        }
    }

    /// Runs a background `flush_until(log end)` after `delay`, unless one is pending.
    fn schedule_flush(&self, log: &Arc<PartitionLog>, delay: Duration) {
        if self.flush_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let sync_log = log.clone();
        let log = log.clone();
        let hw = self.high_watermark.clone();
        let replication = self.replication.clone();
        let scheduled = self.flush_scheduled.clone();
        let visible_unflushed = self.visible_unflushed;
        let flush = async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            // Cleared before reading the end offset: an append after this point schedules the
            // next flush, one before it is covered by this one.
            scheduled.store(false, Ordering::Release);
            let end = log.log_end_offset();
            if let Err(e) = log.flush_until(end).await {
                tracing::error!(dir = %log.dir().display(), "background flush failed: {e}");
            }
            if !visible_unflushed {
                publish(&hw, &replication, log.durable_offset());
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(flush);
            }
            // No runtime (a synchronous caller): flush now.
            Err(_) => {
                self.flush_scheduled.store(false, Ordering::Release);
                if let Err(e) = sync_log.flush() {
                    tracing::error!(dir = %self.dir.display(), "flush failed: {e}");
                }
                if !self.visible_unflushed {
                    publish(
                        &self.high_watermark,
                        &self.replication,
                        sync_log.durable_offset(),
                    );
                }
            }
        }
    }

    /// Appends a transaction marker (COMMIT or ABORT control batch) for `producer_id` at
    /// `producer_epoch`, as the transaction coordinator does when a transaction completes.
    pub fn append_control(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> storage::Result<AppendInfo> {
        // One coordinator, so its epoch is always 0.
        let info = self.log()?.append_control(
            producer_id,
            producer_epoch,
            commit,
            0,
            self.leader_epoch(),
            now_ms,
        )?;
        self.appended();
        Ok(info)
    }
}

/// A leader's high watermark moves to what its followers allow given `own` end (never back).
fn publish(hw: &watch::Sender<i64>, replication: &Replication, own: i64) {
    if let Some(bound) = replication.high_watermark_bound(own) {
        advance_high_watermark(hw, bound);
    }
}

/// Moves the high watermark up to `to` (never back).
fn advance_high_watermark(hw: &watch::Sender<i64>, to: i64) {
    hw.send_if_modified(|v| {
        if to > *v {
            *v = to;
            true
        } else {
            false
        }
    });
}

/// Reads the topic id recorded in a partition directory.
pub fn read_partition_topic_id(dir: &Path) -> Option<Uuid> {
    let text = fs::read_to_string(dir.join(PARTITION_METADATA)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id: "))
        .and_then(|id| Uuid::parse_str(id.trim()).ok())
}

/// Writes `partition.metadata` atomically (temp file, fsync, rename, fsync dir).
fn write_partition_metadata(dir: &Path, topic_id: Uuid) -> std::io::Result<()> {
    let tmp = dir.join(format!("{PARTITION_METADATA}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        writeln!(f, "version: 0")?;
        writeln!(f, "topic_id: {topic_id}")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(PARTITION_METADATA))?;
    fs::File::open(dir)?.sync_all()?;
    if let Some(parent) = dir.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testutil::{batch, BatchSpec};

    fn open(dir: &Path, visible_unflushed: bool, segment_bytes: u64) -> Partition {
        let ctx = OpenContext {
            clean: false,
            flush_delay: Duration::from_secs(3600),
            visible_unflushed,
            health: Arc::new(LogDirHealth::new(dir)),
            files: Arc::new(OpenFiles::new(16)),
            node_id: 1,
        };
        let config = LogConfig {
            segment_bytes,
            ..LogConfig::default()
        };
        Partition::open("t", 0, Uuid::nil(), dir.join("t-0"), config, &ctx).expect("open")
    }

    #[tokio::test]
    async fn appends_that_could_wait_leave_the_async_workers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = batch(&BatchSpec::new(&[0; 16384])); // ~0.5 MiB
        let p = open(dir.path(), false, 64 << 20);
        assert!(
            p.append_is_inline(big.len(), 0),
            "durable, nothing unsynced"
        );
        let mut appended = 0u64;
        while p.append_is_inline(big.len(), 0) {
            p.append(&big, 0).expect("append");
            appended += big.len() as u64;
            assert!(
                appended <= INLINE_UNSYNCED_MAX,
                "still inline past the bound"
            );
        }
        assert!(appended + big.len() as u64 > INLINE_UNSYNCED_MAX);
        // The background flush is an hour away: 4 MiB unsynced, the disk is "behind".
        assert!(!p.append_is_inline(big.len(), 0));
        p.flush_until(p.log().expect("log").log_end_offset())
            .await
            .expect("flush");
        assert!(p.append_is_inline(big.len(), 0), "synced again");
        // An append that rolls the segment (which fsyncs) does not run inline.
        let small = open(&dir.path().join("small"), false, (big.len() + 100) as u64);
        small.append(&big, 0).expect("append");
        small
            .flush_until(small.log().expect("log").log_end_offset())
            .await
            .expect("flush");
        assert!(!small.append_is_inline(big.len(), 0));
        // Page-cache mode: never inline.
        let pc = open(&dir.path().join("pc"), true, 64 << 20);
        assert!(!pc.append_is_inline(10, 0));
    }
}
