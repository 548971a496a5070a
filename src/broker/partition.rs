//! One partition that this broker leads: its log plus the replication-facing state Kafka keeps
//! per partition (leader epoch, high watermark).
//!
//! Invariants: `log_start_offset <= high_watermark <= log_end_offset`. In single-node mode the
//! high watermark follows the log end offset on every append (the leader is the whole ISR);
//! replication will advance it from follower fetches instead. Readers wait for new data by
//! watching the high watermark, so a long-polling Fetch wakes exactly when data becomes visible.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::watch;
use uuid::Uuid;

use crate::storage::{self, AppendInfo, LogConfig, PartitionLog};

/// File in each partition directory naming the topic id the directory belongs to.
pub const PARTITION_METADATA: &str = "partition.metadata";

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub dir: PathBuf,
    pub log: PartitionLog,
    leader_epoch: i32,
    high_watermark: watch::Sender<i64>,
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
        clean: bool,
    ) -> storage::Result<Partition> {
        if !dir.join(PARTITION_METADATA).exists() {
            fs::create_dir_all(&dir)?;
            write_partition_metadata(&dir, topic_id)?;
        }
        let log = PartitionLog::open(&dir, config, clean)?;
        let leader_epoch = log.latest_epoch().unwrap_or(0).max(0);
        let (high_watermark, _) = watch::channel(log.log_end_offset());
        Ok(Partition {
            topic: topic.to_string(),
            index,
            dir,
            log,
            leader_epoch,
            high_watermark,
            metrics: crate::metrics::TopicCounters::new(topic),
        })
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// The last stable offset: below the first offset of any open transaction, and never
    /// above the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.log
            .first_unstable_offset()
            .map_or(hw, |first| first.min(hw))
    }

    /// Watches the high watermark (long-polling fetches wait on it).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Appends validated batches and makes them visible to readers.
    pub fn append(&self, records: &[u8], now_ms: i64) -> storage::Result<AppendInfo> {
        let info = self.log.append(records, self.leader_epoch, now_ms)?;
        if info.duplicate {
            // A retried batch: nothing was written, the original offsets are answered.
            return Ok(info);
        }
        self.metrics.bytes_in.increment(records.len() as u64);
        self.advance_high_watermark(info.last_offset + 1);
        Ok(info)
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
        let info = self.log.append_control(
            producer_id,
            producer_epoch,
            commit,
            0,
            self.leader_epoch,
            now_ms,
        )?;
        self.advance_high_watermark(info.last_offset + 1);
        Ok(info)
    }

    /// Single node: everything appended is replicated, so the high watermark is the log end.
    fn advance_high_watermark(&self, end: i64) {
        self.high_watermark.send_if_modified(|hw| {
            if end > *hw {
                *hw = end;
                true
            } else {
                false
            }
        });
    }
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
