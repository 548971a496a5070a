//! One log segment: `<base offset, 20 digits>.log` + `.index` + `.timeindex`, plus
//! `.txnindex` when the segment holds ABORT markers.
//!
//! The `.log` holds RecordBatch v2 batches back to back, exactly as appended (see
//! [`super::batch`]); the offset and time indexes are described in [`super::index`], the
//! aborted-transaction index in [`super::txn_index`]. The base offset in the file
//! names is the offset of the segment's first batch (or the log end offset when it was created
//! empty).
//!
//! Invariants:
//! - `size` is the number of valid bytes; readers never look beyond the `size` they were given
//!   (snapshot taken under the log lock), and bytes below `size` never change, so reads need no
//!   lock: they `pread` on an `Arc<File>` that stays valid even after the file is deleted.
//! - Batches have increasing offsets, all >= the base offset, and `last offset - base offset`
//!   fits in the u32 relative offsets of the indexes (the log rolls before it would not).
//! - Only the active segment is written. `seal` (at roll and close) adds the final time index
//!   entry, fdatasyncs the `.log`, then writes and fdatasyncs the indexes (with the `.txnindex`,
//!   if any); index entries live in memory and reach their files only at such a sync.
//! - The `.log` handle comes from the data dir's bounded [`OpenFiles`] cache; while bytes
//!   written through it are not yet fdatasync'ed it is pinned (held here and in the cache), so
//!   the fsync that acknowledges them runs on the descriptor the writes went through.
//! - The `.txnindex` is derived from the log and the producer state, so the segment only loads,
//!   appends and stores it; `PartitionLog::open` decides whether to trust or rebuild it.
//! - Recovery (`recover`) re-validates every batch (length, magic, CRC32C, offsets), truncates the
//!   file at the first invalid one (set_len + fdatasync) and rebuilds both indexes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use super::batch::{compute_crc, BatchHeader, HEADER_LEN, MAGIC_V2, NO_TIMESTAMP};
use super::error::{Result, StorageError};
use super::files;
use super::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use super::log::TimestampOffset;
use super::open_files::{FileId, OpenFiles};
use super::records::BatchRecords;
use super::txn_index::{AbortedTxn, TxnIndex, TXN_INDEX_SUFFIX};

/// Extension of segment data files.
pub const LOG_SUFFIX: &str = "log";
/// Extension of offset index files.
pub const INDEX_SUFFIX: &str = "index";
/// Extension of time index files.
pub const TIME_INDEX_SUFFIX: &str = "timeindex";

/// `<dir>/<base offset, 20 digits>.<suffix>`.
pub fn segment_file(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// Parses a segment file name `<20 digits>.<suffix>` into (base offset, suffix).
pub fn parse_segment_file_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = stem.parse::<i64>().ok()?;
    Some((base, suffix))
}

/// Why a scan stopped early.
#[derive(Debug)]
pub struct ScanProblem {
    pub position: u64,
    pub reason: String,
}

/// Walks the batch headers of `file` from `from` to `size`, calling `f(position, header)` for
/// each well-formed batch. Stops at the first batch that is torn, has a bad length or magic,
/// non-increasing offsets, offsets outside the segment's u32 range, or (when `verify_crc`) a bad
/// CRC32C, and reports where. I/O errors are returned as errors.
pub fn scan_batches(
    file: &File,
    from: u64,
    size: u64,
    base_offset: i64,
    verify_crc: bool,
    mut f: impl FnMut(u64, &BatchHeader),
) -> io::Result<Option<ScanProblem>> {
    let mut pos = from;
    let mut next_expected = base_offset;
    let mut hdr = [0u8; HEADER_LEN];
    let mut buf = Vec::new();
    let problem = |position: u64, reason: String| Ok(Some(ScanProblem { position, reason }));
    while pos < size {
        if size - pos < HEADER_LEN as u64 {
            return problem(pos, format!("torn batch header ({} bytes)", size - pos));
        }
        file.read_exact_at(&mut hdr, pos)?;
        let Some(h) = BatchHeader::parse(&hdr) else {
            return problem(pos, "short header".into());
        };
        let Some(total) = h.total_size() else {
            return problem(pos, format!("invalid batch length {}", h.batch_length));
        };
        if total as u64 > size - pos {
            return problem(
                pos,
                format!("torn batch: {total} bytes, {} left", size - pos),
            );
        }
        if h.magic != MAGIC_V2 {
            return problem(pos, format!("magic {}", h.magic));
        }
        if h.last_offset_delta < 0 || h.base_offset < next_expected {
            return problem(pos, format!("offset {} out of order", h.base_offset));
        }
        if h.last_offset() - base_offset > i64::from(u32::MAX) {
            return problem(
                pos,
                format!("offset {} beyond the segment range", h.last_offset()),
            );
        }
        if verify_crc {
            buf.resize(total, 0);
            file.read_exact_at(&mut buf, pos)?;
            if compute_crc(&buf) != h.crc {
                return problem(pos, "crc mismatch".into());
            }
        }
        f(pos, &h);
        next_expected = h.next_offset();
        pos += total as u64;
    }
    Ok(None)
}

/// A read-only view of a segment taken under the log lock, used outside it.
#[derive(Clone, Debug)]
pub struct SegmentSnapshot {
    pub base_offset: i64,
    pub file: Arc<File>,
    /// Valid bytes at snapshot time.
    pub size: u64,
    /// Where to start scanning (from an index lookup).
    pub start_position: u64,
    /// Read only what is in the page cache; anything else is [`StorageError::WouldBlock`].
    pub nowait: bool,
}

impl SegmentSnapshot {
    fn header_at(&self, pos: u64) -> Result<Option<(BatchHeader, u64)>> {
        if pos >= self.size {
            return Ok(None);
        }
        if self.size - pos < HEADER_LEN as u64 {
            return Err(corrupt(self.base_offset, pos, "torn batch header"));
        }
        let mut hdr = [0u8; HEADER_LEN];
        if self.nowait {
            if !files::read_exact_at_nowait(&self.file, &mut hdr, pos)? {
                return Err(StorageError::WouldBlock);
            }
        } else {
            self.file.read_exact_at(&mut hdr, pos)?;
        }
        let h = BatchHeader::parse(&hdr).ok_or_else(|| corrupt(self.base_offset, pos, "header"))?;
        let total = h
            .total_size()
            .filter(|t| *t as u64 <= self.size - pos)
            .ok_or_else(|| corrupt(self.base_offset, pos, "batch length"))?;
        Ok(Some((h, total as u64)))
    }

    /// Scans headers from `start_position` to the first batch whose last offset >= `offset`.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let mut pos = self.start_position;
        while let Some((h, total)) = self.header_at(pos)? {
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += total;
        }
        Ok(None)
    }

    /// The whole batches from `pos` (where `first` starts) a read returns — at most
    /// `max_bytes`, none whose base offset >= `upper_bound`; with `min_one`, the first batch
    /// even when larger (KIP-74) — as their length and last offset, found from their headers
    /// alone (the data is read or sent with `sendfile` by the caller).
    pub fn region_batches(
        &self,
        pos: u64,
        first: &BatchHeader,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<Option<(u64, i64)>> {
        if first.base_offset >= upper_bound {
            return Ok(None);
        }
        let max = max_bytes as u64;
        let (mut len, mut last) = (0u64, None);
        let mut at = pos;
        while let Some((h, total)) = self.header_at(at)? {
            if h.base_offset >= upper_bound {
                break;
            }
            if len + total > max {
                if len == 0 && min_one {
                    len = total;
                    last = Some(h.last_offset());
                }
                break;
            }
            len += total;
            last = Some(h.last_offset());
            at += total;
        }
        Ok(last.map(|l| (len, l)))
    }

    fn read_batch(&self, pos: u64, total: u64) -> Result<Vec<u8>> {
        let len = usize::try_from(total).map_err(|_| corrupt(self.base_offset, pos, "size"))?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    /// The first record at or after `min_offset` with timestamp >= `ts`, scanning from
    /// `start_position` (decompresses only batches whose max timestamp qualifies).
    pub fn find_timestamp(&self, ts: i64, min_offset: i64) -> Result<Option<TimestampOffset>> {
        self.find_record(min_offset, |h| h.max_timestamp >= ts, |t| t >= ts)
    }

    /// The first record at or after `min_offset` whose timestamp is exactly `ts`.
    pub fn find_exact_timestamp(
        &self,
        ts: i64,
        min_offset: i64,
    ) -> Result<Option<TimestampOffset>> {
        self.find_record(min_offset, |h| h.max_timestamp == ts, |t| t == ts)
    }

    fn find_record(
        &self,
        min_offset: i64,
        batch_matches: impl Fn(&BatchHeader) -> bool,
        record_matches: impl Fn(i64) -> bool,
    ) -> Result<Option<TimestampOffset>> {
        let mut pos = self.start_position;
        while let Some((h, total)) = self.header_at(pos)? {
            if h.last_offset() >= min_offset && batch_matches(&h) {
                let bytes = self.read_batch(pos, total)?;
                match BatchRecords::decode(&bytes).and_then(|b| {
                    for r in b.iter() {
                        let r = r?;
                        if r.offset >= min_offset && record_matches(r.timestamp) {
                            return Ok(Some(TimestampOffset {
                                timestamp: r.timestamp,
                                offset: r.offset,
                            }));
                        }
                    }
                    Ok(None)
                }) {
                    Ok(Some(found)) => return Ok(Some(found)),
                    Ok(None) => {}
                    Err(e) => {
                        // The batch passed its CRC on append but its records do not decode:
                        // answer at batch granularity rather than failing every lookup.
                        tracing::warn!(segment = self.base_offset, pos, error = %e,
                            "undecodable batch in timestamp lookup");
                        return Ok(Some(TimestampOffset {
                            timestamp: h.max_timestamp,
                            offset: h.base_offset.max(min_offset),
                        }));
                    }
                }
            }
            pos += total;
        }
        Ok(None)
    }
}

fn corrupt(base: i64, pos: u64, what: &str) -> StorageError {
    StorageError::CorruptLog(format!("segment {base:020}: bad {what} at position {pos}"))
}

/// Index bookkeeping shared by append and rebuild.
#[derive(Clone, Copy, Debug)]
struct IndexState {
    bytes_since_last_entry: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    first_batch_timestamp: Option<i64>,
}

/// One segment of a partition log.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    /// The `.log` handle is opened through this bounded cache (see [`super::open_files`]).
    files: Arc<OpenFiles>,
    log_id: FileId,
    /// The handle written through since the last fdatasync (pinned in `files`), if any.
    dirty: Option<Arc<File>>,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    txn_index: TxnIndex,
    size: u64,
    next_offset: i64,
    created_ms: i64,
    index_interval_bytes: u32,
    state: IndexState,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Segment {
    fn fresh_state(base_offset: i64) -> IndexState {
        IndexState {
            bytes_since_last_entry: 0,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
        }
    }

    /// Creates an empty segment (truncating leftover files of the same name).
    pub fn create(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        index_interval_bytes: u32,
        files: &Arc<OpenFiles>,
    ) -> io::Result<Segment> {
        let log_path = segment_file(dir, base_offset, LOG_SUFFIX);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)?;
        let offset_index = OffsetIndex::create(&segment_file(dir, base_offset, INDEX_SUFFIX))?;
        let time_index = TimeIndex::create(&segment_file(dir, base_offset, TIME_INDEX_SUFFIX))?;
        let txn_index = TxnIndex::create(&segment_file(dir, base_offset, TXN_INDEX_SUFFIX))?;
        let log_id = files.next_id();
        files.insert(log_id, Arc::new(log));
        Ok(Segment {
            base_offset,
            log_path,
            files: Arc::clone(files),
            log_id,
            dirty: None,
            offset_index,
            time_index,
            txn_index,
            size: 0,
            next_offset: base_offset,
            created_ms: now_ms,
            index_interval_bytes,
            state: Self::fresh_state(base_offset),
        })
    }

    /// Opens an existing segment and loads its indexes. If an index is missing or invalid, or
    /// the tail after the last index entry does not scan cleanly, the segment is recovered
    /// (full validation, truncation, index rebuild). Returns the segment and, if it was
    /// recovered, the number of bytes truncated.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
        files: &Arc<OpenFiles>,
    ) -> Result<(Segment, Option<u64>)> {
        let log_path = segment_file(dir, base_offset, LOG_SUFFIX);
        let log = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let size = log.metadata()?.len();
        let index_path = segment_file(dir, base_offset, INDEX_SUFFIX);
        let time_path = segment_file(dir, base_offset, TIME_INDEX_SUFFIX);
        let offset_index = OffsetIndex::load(&index_path)?.filter(|i| i.is_valid(size));
        let time_index = TimeIndex::load(&time_path)?.filter(|i| i.is_valid());
        let indexes_ok = offset_index.is_some() && time_index.is_some();
        let offset_index = match offset_index {
            Some(i) => i,
            None => OffsetIndex::create(&index_path)?,
        };
        let time_index = match time_index {
            Some(i) => i,
            None => TimeIndex::create(&time_path)?,
        };
        let txn_index = TxnIndex::open(&segment_file(dir, base_offset, TXN_INDEX_SUFFIX))?;
        // Registered only once nothing can fail before the segment exists (its Drop forgets it).
        let log_id = files.next_id();
        files.insert(log_id, Arc::new(log));
        let mut seg = Segment {
            base_offset,
            log_path,
            files: Arc::clone(files),
            log_id,
            dirty: None,
            offset_index,
            time_index,
            txn_index,
            size,
            next_offset: base_offset,
            created_ms: now_ms(),
            index_interval_bytes,
            state: Self::fresh_state(base_offset),
        };
        if indexes_ok && seg.load_tail()? {
            return Ok((seg, None));
        }
        tracing::info!(segment = %seg.log_path.display(), "rebuilding segment indexes");
        let truncated = seg.recover()?;
        Ok((seg, Some(truncated)))
    }

    /// Trusts the indexes: scans only the batch headers after the last offset index entry to
    /// find the next offset and the largest timestamp. `false` if that tail is inconsistent.
    fn load_tail(&mut self) -> Result<bool> {
        let start = self
            .offset_index
            .last()
            .map_or(0, |e| u64::from(e.position));
        let mut st = Self::fresh_state(self.base_offset);
        if let Some(e) = self.time_index.last() {
            st.max_timestamp = e.timestamp;
            st.offset_of_max_timestamp = self.base_offset + i64::from(e.relative_offset);
        }
        let log = self.handle()?;
        if self.size >= HEADER_LEN as u64 {
            let mut hdr = [0u8; HEADER_LEN];
            log.read_exact_at(&mut hdr, 0)?;
            st.first_batch_timestamp = BatchHeader::parse(&hdr).map(|h| h.max_timestamp);
        }
        let from_offset = self.offset_index.last().map_or(self.base_offset, |e| {
            self.base_offset + i64::from(e.relative_offset)
        });
        let mut next = self.base_offset;
        let mut from_ok = true;
        let problem = scan_batches(&log, start, self.size, self.base_offset, false, |_, h| {
            if next == self.base_offset && start > 0 && h.last_offset() != from_offset {
                from_ok = false;
            }
            next = h.next_offset();
            if h.max_timestamp > st.max_timestamp {
                st.max_timestamp = h.max_timestamp;
                st.offset_of_max_timestamp = h.last_offset();
            }
        })?;
        if problem.is_some() || !from_ok {
            return Ok(false);
        }
        st.bytes_since_last_entry = self.size - start;
        self.state = st;
        self.next_offset = next;
        Ok(true)
    }

    /// Full validation scan: truncates at the first invalid batch (set_len + fdatasync) and
    /// rebuilds both indexes. Returns the number of bytes truncated.
    pub fn recover(&mut self) -> Result<u64> {
        let mut st = Self::fresh_state(self.base_offset);
        let mut offsets: Vec<OffsetEntry> = Vec::new();
        let mut times: Vec<TimeEntry> = Vec::new();
        let mut next = self.base_offset;
        let base = self.base_offset;
        let interval = u64::from(self.index_interval_bytes);
        let log = self.handle()?;
        let problem = scan_batches(&log, 0, self.size, base, true, |pos, h| {
            if let Some((o, t)) = Self::plan_entries(&mut st, interval, base, pos, h) {
                if offsets
                    .last()
                    .is_none_or(|l| o.relative_offset > l.relative_offset)
                {
                    offsets.push(o);
                }
                if t.timestamp >= 0 && times.last().is_none_or(|l| t.timestamp > l.timestamp) {
                    times.push(t);
                }
            }
            next = h.next_offset();
        })?;
        let mut truncated = 0;
        if let Some(p) = problem {
            tracing::warn!(segment = %self.log_path.display(), position = p.position,
                reason = %p.reason, "truncating log segment at invalid batch");
            truncated = self.size - p.position;
            log.set_len(p.position)?;
            log.sync_data()?;
            self.size = p.position;
        }
        self.offset_index.replace_all(offsets);
        self.time_index.replace_all(times);
        self.state = st;
        self.next_offset = next;
        Ok(truncated)
    }

    /// Updates `st` for a batch at `pos`; returns the index entries to add, if any (Kafka's
    /// rule: when more than `index.interval.bytes` were appended since the last entry).
    fn plan_entries(
        st: &mut IndexState,
        interval: u64,
        base: i64,
        pos: u64,
        h: &BatchHeader,
    ) -> Option<(OffsetEntry, TimeEntry)> {
        let size = h.total_size().unwrap_or(0) as u64;
        if st.first_batch_timestamp.is_none() {
            st.first_batch_timestamp = Some(h.max_timestamp);
        }
        if h.max_timestamp > st.max_timestamp {
            st.max_timestamp = h.max_timestamp;
            st.offset_of_max_timestamp = h.last_offset();
        }
        let mut out = None;
        if st.bytes_since_last_entry > interval {
            let rel = |o: i64| u32::try_from(o - base).unwrap_or(u32::MAX);
            out = Some((
                OffsetEntry {
                    relative_offset: rel(h.last_offset()),
                    position: u32::try_from(pos).unwrap_or(u32::MAX),
                },
                TimeEntry {
                    timestamp: st.max_timestamp,
                    relative_offset: rel(st.offset_of_max_timestamp),
                },
            ));
            st.bytes_since_last_entry = 0;
        }
        st.bytes_since_last_entry += size;
        out
    }

    /// Appends already-validated, already-rewritten batches: `parts` are written back to back
    /// (one `pwritev`: patched header copies and the producer's record bytes, never joined into
    /// one buffer); `batches` = start position (relative to the first part) and header of
    /// each batch.
    pub fn append(&mut self, parts: &[&[u8]], batches: &[(usize, BatchHeader)]) -> io::Result<()> {
        let start = self.size;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let log = self.handle()?;
        if self.dirty.is_none() {
            // Pinned before the write: this handle must be the one the covering fsync uses.
            self.files.pin(self.log_id, &log);
            self.dirty = Some(Arc::clone(&log));
        }
        if let Err(e) = super::fault::check(&self.log_path, super::fault::FaultOp::Write)
            .and_then(|()| super::files::write_all_vectored_at(&log, parts, start))
        {
            // Leave no partial bytes beyond `size` behind (best effort).
            let _ = log.set_len(start);
            return Err(e);
        }
        let interval = u64::from(self.index_interval_bytes);
        for (rel_pos, h) in batches {
            let pos = start + *rel_pos as u64;
            if let Some((o, t)) =
                Self::plan_entries(&mut self.state, interval, self.base_offset, pos, h)
            {
                self.offset_index.append(o.relative_offset, o.position);
                self.time_index.maybe_append(t.timestamp, t.relative_offset);
            }
            self.next_offset = h.next_offset();
        }
        self.size += len as u64;
        Ok(())
    }

    /// Adds the final time index entry and fdatasyncs the log and both indexes (at roll and
    /// close).
    pub fn seal(&mut self) -> io::Result<()> {
        let rel = u32::try_from(self.state.offset_of_max_timestamp - self.base_offset)
            .unwrap_or(u32::MAX);
        self.time_index.maybe_append(self.state.max_timestamp, rel);
        self.sync_all()
    }

    /// fdatasync of the `.log`, then the indexes are written and fdatasync'ed (the `.txnindex`
    /// too when it exists), then the directory when an index file was created.
    pub fn sync_all(&mut self) -> io::Result<()> {
        super::fault::check(&self.log_path, super::fault::FaultOp::Sync)?;
        self.handle()?.sync_data()?;
        self.mark_synced(self.size);
        let created_offsets = self.offset_index.sync()?;
        let created_times = self.time_index.sync()?;
        if created_offsets || created_times {
            if let Some(dir) = self.log_path.parent() {
                super::files::fsync_dir(dir)?;
            }
        }
        self.txn_index.sync()
    }

    /// An fdatasync through [`Segment::log_file`] covered the first `size` bytes: if that is
    /// everything written, the handle is unpinned (it may be closed by the cache again).
    pub fn mark_synced(&mut self, size: u64) {
        if size >= self.size && self.dirty.take().is_some() {
            self.files.unpin(self.log_id);
        }
    }

    /// The `.log` handle: the pinned one while writes are unsynced, else from the cache.
    fn handle(&self) -> io::Result<Arc<File>> {
        match &self.dirty {
            Some(f) => Ok(Arc::clone(f)),
            None => self.files.get(self.log_id, &self.log_path),
        }
    }

    /// Records an aborted transaction whose ABORT marker was just appended to this segment.
    /// The entry is queryable even if the file write fails (the error is returned for logging;
    /// the file is rewritten at the next sync).
    pub fn append_aborted_txn(&mut self, txn: AbortedTxn) -> io::Result<()> {
        self.txn_index.append(txn)
    }

    /// The aborted-transaction index.
    pub fn txn_index(&self) -> &TxnIndex {
        &self.txn_index
    }

    /// Whether the loaded `.txnindex` can be trusted (`active`: entries at or beyond the end
    /// are tolerated, a rebuild drops them).
    pub fn txn_index_valid(&self, active: bool) -> bool {
        let limit = if active { i64::MAX } else { self.next_offset };
        self.txn_index.is_valid(self.base_offset, limit)
    }

    /// Replaces the `.txnindex` entries at or above `from` (every entry if the index is not
    /// valid) with `rebuilt`, found by replaying the log from `from`; rewrites the file only if
    /// that changes it.
    pub fn rebuild_txn_index(
        &mut self,
        active: bool,
        from: i64,
        rebuilt: Vec<AbortedTxn>,
    ) -> io::Result<()> {
        let limit = if active { i64::MAX } else { self.next_offset };
        self.txn_index
            .rebuild(self.base_offset, limit, from, rebuilt)
    }

    /// A snapshot to scan for `offset` outside the lock.
    pub fn snapshot_for_offset(&self, offset: i64) -> io::Result<SegmentSnapshot> {
        let rel = u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX);
        self.snapshot_at(u64::from(self.offset_index.position_for(rel)))
    }

    /// A snapshot for reading from `offset` up to (not including) `upper_bound`: as
    /// [`Segment::snapshot_for_offset`], with the size cut where the index shows that every
    /// later batch lies at or above `upper_bound`, so a read never loads much more than it
    /// returns (at most one index interval and one batch beyond the bound).
    pub fn snapshot_for_read(&self, offset: i64, upper_bound: i64) -> io::Result<SegmentSnapshot> {
        Ok(self.snapshot_for_read_with(self.handle()?, offset, upper_bound))
    }

    fn snapshot_for_read_with(
        &self,
        file: Arc<File>,
        offset: i64,
        upper_bound: i64,
    ) -> SegmentSnapshot {
        let rel = u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX);
        let start = u64::from(self.offset_index.position_for(rel));
        let mut snap = SegmentSnapshot {
            base_offset: self.base_offset,
            file,
            size: self.size,
            start_position: start.min(self.size),
            nowait: false,
        };
        if upper_bound > self.base_offset {
            let rel = u32::try_from(upper_bound - self.base_offset).unwrap_or(u32::MAX);
            if let Some(p) = self.offset_index.position_past(rel) {
                snap.size = snap.size.min(u64::from(p)).max(snap.start_position);
            }
        }
        snap
    }

    /// A snapshot to scan for the first record with timestamp >= `ts` outside the lock.
    pub fn snapshot_for_timestamp(&self, ts: i64) -> io::Result<SegmentSnapshot> {
        match self.time_index.lookup_before(ts) {
            Some(e) => {
                self.snapshot_at(u64::from(self.offset_index.position_for(e.relative_offset)))
            }
            None => self.snapshot_at(0),
        }
    }

    fn snapshot_at(&self, start_position: u64) -> io::Result<SegmentSnapshot> {
        Ok(SegmentSnapshot {
            base_offset: self.base_offset,
            file: self.handle()?,
            size: self.size,
            start_position: start_position.min(self.size),
            nowait: false,
        })
    }

    /// Whether the `.log` file is open (writing or reading it needs no `open`).
    pub fn is_open(&self) -> bool {
        self.dirty.is_some() || self.files.cached(self.log_id).is_some()
    }

    /// [`Segment::snapshot_for_read`] without blocking: `None` if the `.log` file is not open
    /// (opening it is file-system work); the snapshot reads only from the page cache.
    pub fn snapshot_for_read_nowait(
        &self,
        offset: i64,
        upper_bound: i64,
    ) -> Option<SegmentSnapshot> {
        let file = match &self.dirty {
            Some(f) => Arc::clone(f),
            None => self.files.cached(self.log_id)?,
        };
        let mut snap = self.snapshot_for_read_with(file, offset, upper_bound);
        snap.nowait = true;
        Some(snap)
    }

    /// Path of the `.log` file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The `.log` handle (for the flusher: while writes are unsynced, the one they went
    /// through).
    pub fn log_file(&self) -> io::Result<Arc<File>> {
        self.handle()
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    /// Offset after the last batch (the base offset when empty).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    /// Largest batch max timestamp in the segment (-1 if none).
    pub fn max_timestamp(&self) -> i64 {
        self.state.max_timestamp
    }
    /// Last offset of the first batch holding [`Self::max_timestamp`].
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.state.offset_of_max_timestamp
    }

    /// Kafka's `largestTimestamp` for retention: the max timestamp, or the file's mtime when
    /// no batch carries a timestamp.
    pub fn largest_timestamp(&self) -> i64 {
        if self.state.max_timestamp >= 0 {
            return self.state.max_timestamp;
        }
        std::fs::metadata(&self.log_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(self.created_ms, |d| {
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
            })
    }

    /// Kafka's `timeWaitedForRoll`: against the first batch's max timestamp when it has one,
    /// else against the segment's creation time.
    pub fn time_waited_for_roll(&self, now_ms: i64, message_timestamp: i64) -> i64 {
        match self.state.first_batch_timestamp {
            Some(ts) if ts >= 0 => message_timestamp.saturating_sub(ts),
            _ => now_ms.saturating_sub(self.created_ms),
        }
    }

    /// Whether `last_offset` still fits the u32 relative offsets of this segment.
    pub fn can_hold_offset(&self, last_offset: i64) -> bool {
        last_offset - self.base_offset <= i64::from(u32::MAX)
    }

    /// Deletes the segment's files (readers holding the `Arc<File>` keep reading).
    pub fn delete_files(&self) -> io::Result<()> {
        self.files.remove(self.log_id);
        for path in [
            self.log_path.clone(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
            self.txn_index.path().to_path_buf(),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // The cache must not keep (or pin) the handle of a segment nobody owns any more.
        self.files.remove(self.log_id);
    }
}
