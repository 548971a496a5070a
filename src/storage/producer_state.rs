//! Idempotent-producer state of one partition (Kafka's `ProducerStateManager`, KIP-98/KIP-360).
//!
//! Role: for every producer id that wrote to the partition (batches with `producerId >= 0`),
//! remember its epoch, the metadata of its last [`MAX_CACHED_BATCHES`] data batches, the
//! timestamp of its last write and the first offset of its ongoing transaction. `append`
//! consults it, under the same lock as the write, to fence old epochs, reject sequence gaps and
//! recognise retried batches ([`ProducerStateManager::check_and_stage`]); the whole state is
//! snapshotted to disk at every segment roll and at close and rebuilt from the newest valid
//! snapshot plus the batch headers after it when the log is opened.
//!
//! Invariants:
//! - The in-memory state always reflects exactly the batches below the log end offset (staged
//!   updates of an append are committed only after the bytes were written).
//! - Per producer, cached batches belong to the current epoch, oldest first, at most
//!   [`MAX_CACHED_BATCHES`]; an epoch change clears them.
//! - Sequence numbers are per batch: `lastSeq = baseSequence + lastOffsetDelta`, wrapping from
//!   `i32::MAX` to 0 (Kafka's `DefaultRecordBatch.incrementSequence`).
//! - A producer id without state (never seen, expired, or all its batches deleted) accepts any
//!   epoch and sequence (KIP-360).
//! - A control batch (bit 5) ends the producer's ongoing transaction; a data batch with the
//!   transactional bit (bit 4) starts one if none is ongoing. Every control batch of a producer
//!   yields a [`CompletedTxn`] (Kafka's `CompletedTxn`: first offset = the transaction's, or the
//!   marker's own offset when none was open) with the last stable offset right after it; the
//!   log turns those of ABORT markers into `.txnindex` entries.
//! - Nothing here panics on any input: a bad snapshot is a [`StorageError::CorruptLog`].
//!
//! On-disk format of `<offset, 20 digits>.snapshot` (the state as of `offset`, i.e. of every
//! batch below it; all integers big-endian; also in docs/on-disk-format.md):
//!
//! | offset | size | field                                                   |
//! |-------:|-----:|---------------------------------------------------------|
//! |      0 |    2 | version (i16) = 1                                       |
//! |      2 |    4 | crc (u32): CRC32C of bytes 6..end                       |
//! |      6 |    8 | snapshot offset (i64), equal to the file name           |
//! |     14 |    4 | producer count (i32)                                    |
//! |     18 |    … | producer entries, by increasing producer id             |
//!
//! Producer entry: `producerId i64 | epoch i16 | lastTimestamp i64 | ongoingTxnFirstOffset i64
//! (-1 = none) | batchCount i8 (0..=5)` followed by `batchCount` batches (oldest first) of
//! `firstSeq i32 | lastSeq i32 | firstOffset i64 | lastOffset i64 | maxTimestamp i64`.
//! A file with another version, a bad CRC, trailing or missing bytes, or offsets at or above the
//! snapshot offset is invalid (ignored and deleted at open).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use super::batch::BatchHeader;
use super::error::{Result, StorageError};
use super::files::write_atomic;
use super::segment::parse_segment_file_name;

/// Extension of producer-state snapshot files.
pub const SNAPSHOT_SUFFIX: &str = "snapshot";
/// Batches remembered per producer for duplicate detection (Kafka's `NUM_BATCHES_TO_RETAIN`).
pub const MAX_CACHED_BATCHES: usize = 5;
/// Snapshot files kept (the newest ones).
pub const SNAPSHOTS_TO_KEEP: usize = 2;

const SNAPSHOT_VERSION: i16 = 1;
const HEADER_LEN: usize = 18;
const ENTRY_LEN: usize = 27;
const BATCH_LEN: usize = 28;
const NO_EPOCH: i16 = -1;
const NO_SEQUENCE: i32 = -1;

/// Metadata of one appended data batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// The state of one producer id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first, at most [`MAX_CACHED_BATCHES`], all of `epoch`.
    batches: VecDeque<BatchMetadata>,
    last_timestamp: i64,
    ongoing_txn_first_offset: Option<i64>,
}

/// A producer's state as shown to the broker (DescribeProducers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    /// Last sequence of the last data batch of the current epoch, -1 if none.
    pub last_sequence: i32,
    /// Max timestamp of the producer's last batch (data or control).
    pub last_timestamp: i64,
    /// First offset of the producer's ongoing transaction.
    pub ongoing_txn_first_offset: Option<i64>,
}

/// What `append` must do with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it (new idempotent batch, or no producer id).
    Append,
    /// A retry of this already appended batch: write nothing, answer with its offsets.
    Duplicate(BatchMetadata),
}

/// A transaction ended by a control batch (Kafka's `CompletedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    /// First offset of the transaction; the marker's offset if the producer had none open.
    pub first_offset: i64,
    /// Offset of the marker.
    pub last_offset: i64,
    /// Kafka's `lastStableOffset(completedTxn)`: the smallest first offset of another
    /// producer's open transaction, else `last_offset + 1`.
    pub last_stable_offset: i64,
}

/// Producer state updates of one append, committed only once the batches are written.
#[derive(Debug, Default)]
pub struct PendingAppend {
    entries: BTreeMap<i64, ProducerEntry>,
    completed: Vec<CompletedTxn>,
}

/// Producer state of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: BTreeMap<i64, ProducerEntry>,
}

/// `base + delta` on the sequence ring `0..=i32::MAX` (Kafka's `incrementSequence`).
pub fn increment_sequence(base: i32, delta: i32) -> i32 {
    let ring = i64::from(i32::MAX) + 1;
    i32::try_from((i64::from(base) + i64::from(delta)).rem_euclid(ring)).unwrap_or(0)
}

/// Whether `next` directly follows `last` (wrapping from `i32::MAX` to 0).
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// The transaction that the control batch `h` ends, given the first offset of the producer's
/// open transaction and the smallest first offset of the other producers' open ones.
fn completed_txn(h: &BatchHeader, txn_first: Option<i64>, others: Option<i64>) -> CompletedTxn {
    CompletedTxn {
        producer_id: h.producer_id,
        first_offset: txn_first.unwrap_or(h.base_offset),
        last_offset: h.last_offset(),
        last_stable_offset: others.unwrap_or_else(|| h.next_offset()),
    }
}

fn last_sequence(h: &BatchHeader) -> i32 {
    increment_sequence(h.base_sequence, h.last_offset_delta)
}

impl ProducerEntry {
    fn new() -> ProducerEntry {
        ProducerEntry {
            epoch: NO_EPOCH,
            batches: VecDeque::new(),
            last_timestamp: -1,
            ongoing_txn_first_offset: None,
        }
    }

    fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    fn last_data_offset(&self) -> Option<i64> {
        self.batches.back().map(|b| b.last_offset)
    }

    /// Kafka's `checkProducerEpoch` + `checkSequence` + `findDuplicateBatch` for a batch of a
    /// producer whose state is `self` (`known` = the producer has state).
    fn check(&self, known: bool, h: &BatchHeader) -> Result<Option<BatchMetadata>> {
        let pid = h.producer_id;
        let epoch = h.producer_epoch;
        if known && epoch < self.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id: pid,
                epoch,
                current: self.epoch,
            });
        }
        if h.is_control() {
            return Ok(None);
        }
        if h.base_sequence < 0 {
            return Err(StorageError::InvalidRecord(format!(
                "invalid sequence number {} in a batch of producer {pid}",
                h.base_sequence
            )));
        }
        if !known {
            // KIP-360: no state (never seen, expired, deleted) accepts any sequence.
            return Ok(None);
        }
        if epoch != self.epoch {
            if h.base_sequence != 0 && self.epoch != NO_EPOCH {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id: pid,
                    epoch,
                    expected: 0,
                    got: h.base_sequence,
                });
            }
            return Ok(None);
        }
        let last = last_sequence(h);
        if let Some(dup) = self
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return Ok(Some(*dup));
        }
        let prev = self.last_seq().unwrap_or(NO_SEQUENCE);
        if !in_sequence(prev, h.base_sequence) {
            return Err(StorageError::OutOfOrderSequence {
                producer_id: pid,
                epoch,
                expected: increment_sequence(prev, 1),
                got: h.base_sequence,
            });
        }
        Ok(None)
    }

    /// Applies an accepted (or replayed) batch whose header carries its assigned offsets.
    fn apply(&mut self, h: &BatchHeader) {
        if h.producer_epoch != self.epoch {
            self.epoch = h.producer_epoch;
            self.batches.clear();
        }
        if h.is_control() {
            self.ongoing_txn_first_offset = None;
        } else {
            self.batches.push_back(BatchMetadata {
                first_seq: h.base_sequence,
                last_seq: last_sequence(h),
                first_offset: h.base_offset,
                last_offset: h.last_offset(),
                max_timestamp: h.max_timestamp,
            });
            while self.batches.len() > MAX_CACHED_BATCHES {
                self.batches.pop_front();
            }
            if h.is_transactional() && self.ongoing_txn_first_offset.is_none() {
                self.ongoing_txn_first_offset = Some(h.base_offset);
            }
        }
        self.last_timestamp = h.max_timestamp;
    }

    fn view(&self, producer_id: i64) -> ActiveProducer {
        ActiveProducer {
            producer_id,
            epoch: self.epoch,
            last_sequence: self.last_seq().unwrap_or(NO_SEQUENCE),
            last_timestamp: self.last_timestamp,
            ongoing_txn_first_offset: self.ongoing_txn_first_offset,
        }
    }
}

impl ProducerStateManager {
    /// Checks one batch of an append (its header already carries its assigned offsets) against
    /// the state plus the updates staged by earlier batches of the same append, and stages its
    /// update. Batches without a producer id always pass. Errors: `InvalidProducerEpoch`,
    /// `OutOfOrderSequence`, `InvalidRecord` (negative sequence with a producer id).
    pub fn check_and_stage(&self, pending: &mut PendingAppend, h: &BatchHeader) -> Result<Verdict> {
        let pid = h.producer_id;
        if pid < 0 {
            return Ok(Verdict::Append);
        }
        let current = pending
            .entries
            .get(&pid)
            .or_else(|| self.producers.get(&pid));
        let duplicate = match current {
            Some(e) => e.check(true, h)?,
            None => ProducerEntry::new().check(false, h)?,
        };
        if let Some(dup) = duplicate {
            return Ok(Verdict::Duplicate(dup));
        }
        let mut entry = current.cloned().unwrap_or_else(ProducerEntry::new);
        let txn_first = entry.ongoing_txn_first_offset;
        entry.apply(h);
        pending.entries.insert(pid, entry);
        if h.is_control() {
            let others = self
                .producers
                .iter()
                .filter(|(id, _)| !pending.entries.contains_key(id))
                .chain(pending.entries.iter())
                .filter(|(id, _)| **id != pid)
                .filter_map(|(_, e)| e.ongoing_txn_first_offset)
                .min();
            pending.completed.push(completed_txn(h, txn_first, others));
        }
        Ok(Verdict::Append)
    }

    /// Makes the staged updates of a written append part of the state. Returns the
    /// transactions its control batches ended, in order.
    pub fn commit(&mut self, pending: PendingAppend) -> Vec<CompletedTxn> {
        self.producers.extend(pending.entries);
        pending.completed
    }

    /// Applies a batch read back from the log (rebuild): no checks, the log is the truth.
    /// Returns the transaction a control batch ended.
    pub fn replay(&mut self, h: &BatchHeader) -> Option<CompletedTxn> {
        if h.producer_id < 0 {
            return None;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(ProducerEntry::new);
        let txn_first = entry.ongoing_txn_first_offset;
        entry.apply(h);
        // This producer's transaction is closed now: the minimum is over the others.
        h.is_control()
            .then(|| completed_txn(h, txn_first, self.first_unstable_offset()))
    }

    /// Drops producers with no ongoing transaction whose last write is at least `expiration_ms`
    /// old (`producer.id.expiration.ms`; negative = never). Returns how many were dropped.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        if expiration_ms < 0 {
            return 0;
        }
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.ongoing_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Drops producers all of whose cached batches lie below `log_start_offset` (their data is
    /// gone; Kafka's `truncateHead`). Producers without data batches (only markers) stay until
    /// they expire: they carry a fencing epoch.
    pub fn truncate_head(&mut self, log_start_offset: i64) {
        self.producers.retain(|_, e| {
            e.ongoing_txn_first_offset.is_some()
                || e.last_data_offset().is_none_or(|o| o >= log_start_offset)
        });
    }

    /// The smallest first offset of an ongoing transaction (bounds the last stable offset).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .values()
            .filter_map(|e| e.ongoing_txn_first_offset)
            .min()
    }

    /// One producer's state.
    pub fn get(&self, producer_id: i64) -> Option<ActiveProducer> {
        self.producers
            .get(&producer_id)
            .map(|e| e.view(producer_id))
    }

    /// Every producer with state, by producer id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        self.producers.iter().map(|(id, e)| e.view(*id)).collect()
    }

    /// Serialises the state as of `offset` (format in the module docs).
    pub fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(HEADER_LEN + self.producers.len() * (ENTRY_LEN + BATCH_LEN));
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&offset.to_be_bytes());
        let count = i32::try_from(self.producers.len()).unwrap_or(i32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (pid, e) in self.producers.iter().take(count as usize) {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp.to_be_bytes());
            out.extend_from_slice(&e.ongoing_txn_first_offset.unwrap_or(-1).to_be_bytes());
            // At most MAX_CACHED_BATCHES (5) by invariant.
            out.push(e.batches.len().min(MAX_CACHED_BATCHES) as u8);
            for b in e.batches.iter().take(MAX_CACHED_BATCHES) {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out[6..]);
        out[2..6].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses a snapshot that must describe the state as of `offset`.
    pub fn decode_snapshot(bytes: &[u8], offset: i64) -> Result<ProducerStateManager> {
        let bad =
            |what: &str| StorageError::CorruptLog(format!("producer snapshot {offset}: {what}"));
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.i16().ok_or_else(|| bad("truncated header"))?;
        if version != SNAPSHOT_VERSION {
            return Err(bad(&format!("unknown version {version}")));
        }
        let crc = r.i32().ok_or_else(|| bad("truncated header"))? as u32;
        if crc32c::crc32c(bytes.get(6..).unwrap_or_default()) != crc {
            return Err(bad("crc mismatch"));
        }
        let stored = r.i64().ok_or_else(|| bad("truncated header"))?;
        if stored != offset {
            return Err(bad(&format!("holds offset {stored}")));
        }
        let count = r.i32().ok_or_else(|| bad("truncated header"))?;
        let count = usize::try_from(count).map_err(|_| bad("negative producer count"))?;
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let mut entry = || -> Option<(i64, ProducerEntry)> {
                let pid = r.i64()?;
                let epoch = r.i16()?;
                let last_timestamp = r.i64()?;
                let txn = r.i64()?;
                let n = r.u8()?;
                if pid < 0 || usize::from(n) > MAX_CACHED_BATCHES || txn >= offset {
                    return None;
                }
                let mut batches = VecDeque::with_capacity(usize::from(n));
                for _ in 0..n {
                    let b = BatchMetadata {
                        first_seq: r.i32()?,
                        last_seq: r.i32()?,
                        first_offset: r.i64()?,
                        last_offset: r.i64()?,
                        max_timestamp: r.i64()?,
                    };
                    if b.first_offset > b.last_offset || b.last_offset >= offset {
                        return None;
                    }
                    batches.push_back(b);
                }
                let entry = ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp,
                    ongoing_txn_first_offset: (txn >= 0).then_some(txn),
                };
                Some((pid, entry))
            };
            let (pid, e) = entry().ok_or_else(|| bad("invalid producer entry"))?;
            if producers.insert(pid, e).is_some() {
                return Err(bad("producer id repeated"));
            }
        }
        if r.pos != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(ProducerStateManager { producers })
    }

    /// Writes `<offset>.snapshot` atomically (tmp, fsync, rename, directory fsync).
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> io::Result<()> {
        write_atomic(dir, &snapshot_name(offset), &self.encode_snapshot(offset))
    }

    /// Reads and validates `<offset>.snapshot`.
    pub fn read_snapshot(dir: &Path, offset: i64) -> Result<ProducerStateManager> {
        let bytes = std::fs::read(snapshot_path(dir, offset))?;
        Self::decode_snapshot(&bytes, offset)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(N)?)?;
        self.pos += N;
        s.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

fn snapshot_name(offset: i64) -> String {
    format!("{offset:020}.{SNAPSHOT_SUFFIX}")
}

/// `<dir>/<offset, 20 digits>.snapshot`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(snapshot_name(offset))
}

/// Offsets of the snapshot files in `dir`, ascending.
pub fn list_snapshots(dir: &Path) -> io::Result<Vec<i64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some((offset, SNAPSHOT_SUFFIX)) = parse_segment_file_name(&name.to_string_lossy()) {
            out.push(offset);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Deletes `<offset>.snapshot` (a missing file is fine). The caller fsyncs the directory.
pub fn delete_snapshot(dir: &Path, offset: i64) -> io::Result<()> {
    match std::fs::remove_file(snapshot_path(dir, offset)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes snapshots below `min_offset` (of deleted segments) and all but the
/// [`SNAPSHOTS_TO_KEEP`] newest. Returns whether a file was deleted (fsync the directory).
pub fn prune_snapshots(dir: &Path, min_offset: i64) -> io::Result<bool> {
    let offsets = list_snapshots(dir)?;
    let keep_from = offsets.len().saturating_sub(SNAPSHOTS_TO_KEEP);
    let mut deleted = false;
    for (i, &o) in offsets.iter().enumerate() {
        if i < keep_from || o < min_offset {
            delete_snapshot(dir, o)?;
            deleted = true;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::super::batch::split_and_validate;
    use super::super::testutil::{batch, BatchSpec};
    use super::*;

    /// Header of a batch of `n` records from producer (`pid`, `epoch`) at sequence `seq`,
    /// assigned offset `offset`.
    fn hdr(pid: i64, epoch: i16, seq: i32, n: usize, offset: i64) -> BatchHeader {
        let stamps: Vec<i64> = (0..n as i64).map(|i| 1000 + i).collect();
        let mut spec = BatchSpec::new(&stamps).producer(pid, epoch, seq);
        spec.base_offset = offset;
        let bytes = batch(&spec);
        split_and_validate(&bytes).expect("valid")[0].1
    }

    fn stage(m: &mut ProducerStateManager, h: &BatchHeader) -> Result<Verdict> {
        let mut p = PendingAppend::default();
        let v = m.check_and_stage(&mut p, h)?;
        m.commit(p);
        Ok(v)
    }

    #[test]
    fn sequence_wraps() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 2), 7);
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(i32::MAX, i32::MIN));
    }

    #[test]
    fn staged_batches_of_one_append_chain() {
        let m = ProducerStateManager::default();
        let mut p = PendingAppend::default();
        assert_eq!(
            m.check_and_stage(&mut p, &hdr(1, 0, 0, 2, 0))
                .expect("first"),
            Verdict::Append
        );
        assert_eq!(
            m.check_and_stage(&mut p, &hdr(1, 0, 2, 2, 2))
                .expect("second"),
            Verdict::Append
        );
        assert!(matches!(
            m.check_and_stage(&mut p, &hdr(1, 0, 9, 1, 4)),
            Err(StorageError::OutOfOrderSequence {
                expected: 4,
                got: 9,
                ..
            })
        ));
        // Nothing committed yet.
        assert!(m.get(1).is_none());
    }

    #[test]
    fn only_five_batches_are_cached() {
        let mut m = ProducerStateManager::default();
        for i in 0..7 {
            stage(&mut m, &hdr(3, 0, i, 1, i64::from(i))).expect("append");
        }
        // Batches 2..=6 are remembered; 0 and 1 no longer (out of order now).
        assert!(matches!(
            stage(&mut m, &hdr(3, 0, 2, 1, 7)),
            Ok(Verdict::Duplicate(BatchMetadata {
                first_offset: 2,
                ..
            }))
        ));
        assert!(matches!(
            stage(&mut m, &hdr(3, 0, 1, 1, 7)),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn snapshot_round_trip_and_rejects_damage() {
        let mut m = ProducerStateManager::default();
        for i in 0..7 {
            m.replay(&hdr(10 + i64::from(i % 3), 1, i, 2, i64::from(i) * 2));
        }
        let bytes = m.encode_snapshot(14);
        assert_eq!(
            ProducerStateManager::decode_snapshot(&bytes, 14).expect("decode"),
            m
        );
        assert!(ProducerStateManager::decode_snapshot(&bytes, 15).is_err());
        for cut in 0..bytes.len() {
            assert!(ProducerStateManager::decode_snapshot(&bytes[..cut], 14).is_err());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(ProducerStateManager::decode_snapshot(&b, 14).is_err());
        }
        // Garbage never panics.
        for n in 0..100usize {
            let junk: Vec<u8> = (0..n).map(|i| (i * 53 + 7) as u8).collect();
            let _ = ProducerStateManager::decode_snapshot(&junk, 0);
        }
    }

    #[test]
    fn expiry_keeps_open_transactions() {
        let mut m = ProducerStateManager::default();
        m.replay(&hdr(1, 0, 0, 1, 0));
        let mut spec = BatchSpec::new(&[1000]).producer(2, 0, 0).transactional();
        spec.base_offset = 1;
        let h = split_and_validate(&batch(&spec)).expect("valid")[0].1;
        m.replay(&h);
        assert_eq!(m.first_unstable_offset(), Some(1));
        assert_eq!(m.remove_expired(1000 + 50, 100), 0);
        assert_eq!(m.remove_expired(1000 + 100, 100), 1);
        assert!(m.get(1).is_none());
        assert!(m.get(2).is_some());
    }
}
