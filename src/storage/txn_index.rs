//! Aborted-transaction index of one segment: `<base offset, 20 digits>.txnindex` (Kafka's
//! `TransactionIndex` layout, so Kafka's tools read it).
//!
//! On disk, 34-byte entries back to back, no header, big-endian:
//!
//! | offset | size | field                                                          |
//! |-------:|-----:|----------------------------------------------------------------|
//! |      0 |    2 | version (i16) = 0                                              |
//! |      2 |    8 | producerId (i64)                                               |
//! |     10 |    8 | firstOffset (i64): first offset of the aborted transaction     |
//! |     18 |    8 | lastOffset (i64): offset of its ABORT marker                   |
//! |     26 |    8 | lastStableOffset (i64): the partition's LSO right after it     |
//!
//! One entry per ABORT marker appended to the segment, in marker (append) order, so
//! `lastOffset` is strictly increasing and lies in the segment; `firstOffset` may lie in an
//! earlier segment. `lastStableOffset` is Kafka's `ProducerStateManager.lastStableOffset`: the
//! smallest first offset of the transactions of *other* producers still open, else
//! `lastOffset + 1`.
//!
//! The file is created lazily with the first entry (a segment without aborted transactions has
//! none, as in Kafka) and deleted with its segment. Entries are mirrored in memory; queries
//! never touch the file. The file is fdatasync'ed with its segment (roll, close); its creation
//! makes the next sync fsync the directory too. If a write fails the in-memory entries stay
//! authoritative and the whole file is rewritten at the next sync.
//!
//! Validity (checked at open; an invalid index is rebuilt from the log by `PartitionLog::open`):
//! size a multiple of 34, version 0, producerId >= 0, `0 <= firstOffset <= lastOffset`,
//! `lastOffset` >= the segment base and strictly increasing, `0 <= lastStableOffset <=
//! lastOffset + 1`, and for a closed segment `lastOffset` below its end.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::files::fsync_dir;

/// Extension of aborted-transaction index files.
pub const TXN_INDEX_SUFFIX: &str = "txnindex";
/// Size of one entry.
pub const ENTRY_SIZE: usize = 34;
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// First offset of the transaction in this partition.
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
    /// The last stable offset right after the abort (ends an early-terminating search).
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&ENTRY_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }

    /// Decodes one 34-byte entry; `None` on another size or version.
    fn decode(b: &[u8]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        if b.len() != ENTRY_SIZE || i16::from_be_bytes([b[0], b[1]]) != ENTRY_VERSION {
            return None;
        }
        Some(AbortedTxn {
            producer_id: i64_at(2)?,
            first_offset: i64_at(10)?,
            last_offset: i64_at(18)?,
            last_stable_offset: i64_at(26)?,
        })
    }
}

/// The aborted-transaction index of one segment.
#[derive(Debug)]
pub struct TxnIndex {
    path: PathBuf,
    /// The file exists (no descriptor is kept: aborts are rare, each write opens it).
    exists: bool,
    entries: Vec<AbortedTxn>,
    /// The file held whole, version-0 entries when loaded (false: rebuild it).
    intact: bool,
    /// The file does not hold `entries` (a write failed): rewrite it at the next sync.
    dirty: bool,
    /// Entries were written to the file since its last fdatasync.
    unsynced: bool,
    /// The file was created or deleted since the last sync: fsync the directory.
    dir_sync_pending: bool,
}

impl TxnIndex {
    /// An empty index whose file does not exist yet. A leftover file of that name is deleted.
    pub fn create(path: &Path) -> io::Result<TxnIndex> {
        let existed = remove_if_exists(path)?;
        Ok(TxnIndex {
            path: path.to_path_buf(),
            exists: false,
            entries: Vec::new(),
            intact: true,
            dirty: false,
            unsynced: false,
            dir_sync_pending: existed,
        })
    }

    /// Loads the index at `path` (a missing file is an empty index). A file that is not whole
    /// version-0 entries loads as empty and not intact (see [`TxnIndex::is_valid`]).
    pub fn open(path: &Path) -> io::Result<TxnIndex> {
        let buf = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(TxnIndex {
                    path: path.to_path_buf(),
                    exists: false,
                    entries: Vec::new(),
                    intact: true,
                    dirty: false,
                    unsynced: false,
                    dir_sync_pending: false,
                })
            }
            Err(e) => return Err(e),
        };
        let mut entries = Vec::new();
        let mut intact = buf.len() % ENTRY_SIZE == 0;
        if intact {
            for chunk in buf.chunks_exact(ENTRY_SIZE) {
                match AbortedTxn::decode(chunk) {
                    Some(e) => entries.push(e),
                    None => {
                        intact = false;
                        break;
                    }
                }
            }
        }
        if !intact {
            entries.clear();
        }
        Ok(TxnIndex {
            path: path.to_path_buf(),
            exists: true,
            entries,
            intact,
            dirty: false,
            unsynced: false,
            dir_sync_pending: false,
        })
    }

    /// Whether the loaded entries can be trusted for a segment starting at `base_offset` whose
    /// entries must lie below `limit` (the segment's end for a closed segment; `i64::MAX` for
    /// the active one, whose entries at or beyond the recovered end are dropped by the rebuild).
    pub fn is_valid(&self, base_offset: i64, limit: i64) -> bool {
        self.intact
            && self.entries.iter().all(|e| {
                e.producer_id >= 0
                    && 0 <= e.first_offset
                    && e.first_offset <= e.last_offset
                    && e.last_offset >= base_offset
                    && e.last_offset < limit
                    && 0 <= e.last_stable_offset
                    && e.last_stable_offset <= e.last_offset.saturating_add(1)
            })
            && self
                .entries
                .windows(2)
                .all(|w| w[0].last_offset < w[1].last_offset)
    }

    #[cfg(test)]
    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_for_write(&mut self) -> io::Result<File> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        if !self.exists {
            self.dir_sync_pending = true;
            self.exists = true;
        }
        Ok(f)
    }

    /// Adds an entry (its `last_offset` must be above every entry's; an older one is ignored).
    /// The entry is in memory even if the file write fails (then the error is returned and the
    /// file is rewritten at the next sync).
    pub fn append(&mut self, e: AbortedTxn) -> io::Result<()> {
        if self
            .entries
            .last()
            .is_some_and(|l| l.last_offset >= e.last_offset)
        {
            return Ok(());
        }
        self.entries.push(e);
        if self.dirty {
            return Ok(());
        }
        let at = ((self.entries.len() - 1) * ENTRY_SIZE) as u64;
        let mut buf = Vec::with_capacity(ENTRY_SIZE);
        e.encode(&mut buf);
        let result = self.open_for_write().and_then(|f| f.write_all_at(&buf, at));
        match result {
            Ok(()) => self.unsynced = true,
            Err(_) => self.dirty = true,
        }
        result
    }

    /// Replaces the whole index with `entries` and fdatasyncs it (the file is deleted when
    /// `entries` is empty).
    pub fn replace_all(&mut self, entries: Vec<AbortedTxn>) -> io::Result<()> {
        self.entries = entries;
        self.intact = true;
        self.dirty = true;
        self.write_out()
    }

    fn write_out(&mut self) -> io::Result<()> {
        if self.entries.is_empty() {
            self.exists = false;
            if remove_if_exists(&self.path)? {
                self.dir_sync_pending = true;
            }
        } else {
            let mut buf = Vec::with_capacity(self.entries.len() * ENTRY_SIZE);
            for e in &self.entries {
                e.encode(&mut buf);
            }
            let f = self.open_for_write()?;
            f.set_len(0)?;
            f.write_all_at(&buf, 0)?;
            f.sync_data()?;
        }
        self.dirty = false;
        Ok(())
    }

    /// The entries after a rebuild from the log: trusted entries (those below `from`, only if
    /// the index is valid for `base_offset`/`limit`) followed by `rebuilt` (the aborts found by
    /// replaying the log from `from`). The file is rewritten only when that changes anything.
    pub fn rebuild(
        &mut self,
        base_offset: i64,
        limit: i64,
        from: i64,
        rebuilt: Vec<AbortedTxn>,
    ) -> io::Result<()> {
        let mut entries: Vec<AbortedTxn> = if self.is_valid(base_offset, limit) {
            self.entries
                .iter()
                .copied()
                .filter(|e| e.last_offset < from)
                .collect()
        } else {
            Vec::new()
        };
        entries.extend(rebuilt);
        let file_matches = self.intact && !self.dirty && (self.exists || entries.is_empty());
        if file_matches && entries == self.entries {
            return Ok(());
        }
        self.replace_all(entries)
    }

    /// fdatasync of the file (rewriting it first after a failed write), plus the directory when
    /// the file was created or deleted since the last sync.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty || self.unsynced {
            // Rewritten and fdatasync'ed through one descriptor: an fsync through another one
            // than the write's could miss its writeback error (the file is a few entries).
            self.write_out()?;
        }
        self.unsynced = false;
        if self.dir_sync_pending {
            if let Some(dir) = self.path.parent() {
                fsync_dir(dir)?;
            }
            self.dir_sync_pending = false;
        }
        Ok(())
    }

    /// Kafka's `TransactionIndex.collectAbortedTxns`: appends to `out` (as `(producer id, first
    /// offset)`) every entry whose `[first_offset, last_offset]` overlaps `[from, upper)`.
    /// Returns true when the search is complete (an entry's last stable offset reached `upper`,
    /// so no later entry, in this segment or a later one, can start below `upper`).
    pub fn collect(&self, from: i64, upper: i64, out: &mut Vec<(i64, i64)>) -> bool {
        for e in &self.entries {
            if e.last_offset >= from && e.first_offset < upper {
                out.push((e.producer_id, e.first_offset));
            }
            if e.last_stable_offset >= upper {
                return true;
            }
        }
        false
    }
}

/// Removes `path`; `Ok(false)` if it did not exist.
fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn lazy_file_round_trip_and_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut idx = TxnIndex::create(&path).expect("create");
        assert!(!path.exists(), "created lazily");
        idx.append(t(7, 2, 5, 6)).expect("append");
        idx.append(t(8, 3, 9, 10)).expect("append");
        idx.append(t(9, 0, 9, 10)).expect("older marker ignored");
        idx.sync().expect("sync");
        let bytes = std::fs::read(&path).expect("file");
        assert_eq!(bytes.len(), 2 * ENTRY_SIZE);
        assert_eq!(&bytes[0..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &7i64.to_be_bytes());
        assert_eq!(&bytes[10..18], &2i64.to_be_bytes());
        assert_eq!(&bytes[18..26], &5i64.to_be_bytes());
        assert_eq!(&bytes[26..34], &6i64.to_be_bytes());
        let loaded = TxnIndex::open(&path).expect("open");
        assert_eq!(loaded.entries(), idx.entries());
        assert!(loaded.is_valid(0, 10));
        assert!(
            !loaded.is_valid(0, 9),
            "entry at or beyond a closed segment's end"
        );
        assert!(
            !loaded.is_valid(6, i64::MAX),
            "entry below the segment base"
        );
    }

    #[test]
    fn damaged_files_are_not_valid_and_never_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.txnindex");
        let mut idx = TxnIndex::create(&path).expect("create");
        idx.append(t(1, 0, 1, 2)).expect("append");
        idx.sync().expect("sync");
        let good = std::fs::read(&path).expect("read");
        for cut in 0..good.len() {
            std::fs::write(&path, &good[..cut]).expect("write");
            let l = TxnIndex::open(&path).expect("open");
            assert_eq!(l.is_valid(0, i64::MAX), cut == 0, "cut {cut}");
        }
        let mut bad_version = good.clone();
        bad_version[1] = 1;
        std::fs::write(&path, &bad_version).expect("write");
        assert!(!TxnIndex::open(&path).expect("open").is_valid(0, i64::MAX));
        for n in 0..100usize {
            let junk: Vec<u8> = (0..n).map(|i| (i * 31 + 5) as u8).collect();
            std::fs::write(&path, &junk).expect("write");
            let _ = TxnIndex::open(&path).expect("open").is_valid(0, i64::MAX);
        }
    }

    #[test]
    fn collect_overlaps_and_stops_at_the_upper_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut idx = TxnIndex::create(&dir.path().join("y.txnindex")).expect("create");
        idx.append(t(1, 0, 4, 0)).expect("a");
        idx.append(t(2, 3, 8, 9)).expect("b");
        idx.append(t(3, 10, 12, 13)).expect("c");
        let mut out = Vec::new();
        assert!(idx.collect(5, 9, &mut out));
        assert_eq!(out, vec![(2, 3)]);
        out.clear();
        assert!(!idx.collect(0, 100, &mut out));
        assert_eq!(out, vec![(1, 0), (2, 3), (3, 10)]);
        out.clear();
        assert!(idx.collect(0, 3, &mut out));
        assert_eq!(out, vec![(1, 0)]);
    }

    #[test]
    fn rebuild_keeps_trusted_entries_below_the_replay_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("z.txnindex");
        let mut idx = TxnIndex::create(&path).expect("create");
        idx.append(t(1, 0, 4, 5)).expect("a");
        idx.append(t(2, 5, 8, 9)).expect("b");
        idx.rebuild(0, i64::MAX, 6, vec![t(3, 6, 7, 8)])
            .expect("rebuild");
        assert_eq!(idx.entries(), &[t(1, 0, 4, 5), t(3, 6, 7, 8)]);
        assert_eq!(
            TxnIndex::open(&path).expect("open").entries(),
            idx.entries()
        );
        idx.rebuild(0, i64::MAX, 0, Vec::new()).expect("empty");
        idx.sync().expect("sync");
        assert!(!path.exists(), "an empty index has no file");
    }
}
