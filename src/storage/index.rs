//! Sparse offset and time indexes of one segment (Kafka's `.index` / `.timeindex` layout).
//!
//! On disk, entries back to back with no header, big-endian:
//! - `.index`: 8-byte entries `relative offset u32 | file position u32`. The relative offset is
//!   the *last* offset of a batch minus the segment's base offset, the position that batch's
//!   first byte in the `.log` (Kafka 3.x `LogSegment.append`).
//! - `.timeindex`: 12-byte entries `timestamp i64 | relative offset u32`: the largest timestamp
//!   seen so far in the segment and the (last) offset of the batch holding it.
//!
//! One entry per `index.interval.bytes` of batches: a batch is indexed when more than that many
//! bytes were appended since the previous entry, so a segment's first batch is never indexed
//! (lookups below the first entry start at position 0). A time index entry is added only when
//! its timestamp is larger than the last one's; a final entry is added when the segment is
//! rolled or closed so that its last entry always holds the segment's largest timestamp.
//!
//! Invariants checked when an index is loaded (an index failing them is rebuilt from the log):
//! file size a multiple of the entry size; offset index: relative offsets and positions strictly
//! increasing, positions inside the log; time index: timestamps strictly increasing, offsets
//! non-decreasing. Entries are kept in memory (a `Vec`) and appended to the file as they are
//! made; files are fdatasync'ed with their segment at roll and close, not per append (the active
//! segment's indexes are rebuilt by recovery after an unclean stop).

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An index entry type: fixed size, big-endian encoding, ordered by `key`.
pub trait IndexEntry: Copy + std::fmt::Debug {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(b: &[u8]) -> Self;
}

/// `.index` entry: (relative last offset of a batch, file position of the batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// `.timeindex` entry: (max timestamp so far, relative offset of the batch holding it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32_at(b, 0),
            position: u32_at(b, 4),
        }
    }
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32_at(b, 8),
        }
    }
}

/// A sparse index file with its entries mirrored in memory.
#[derive(Debug)]
pub struct Index<E: IndexEntry> {
    path: PathBuf,
    file: File,
    entries: Vec<E>,
}

/// The offset index of a segment.
pub type OffsetIndex = Index<OffsetEntry>;
/// The time index of a segment.
pub type TimeIndex = Index<TimeEntry>;

impl<E: IndexEntry> Index<E> {
    /// Creates (or empties) the index file.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Index {
            path: path.to_path_buf(),
            file,
            entries: Vec::new(),
        })
    }

    /// Loads an existing index. `Ok(None)` if the file is missing or its size is not a multiple
    /// of the entry size (the caller rebuilds it); the entry-order checks are done by the caller
    /// through `OffsetIndex::is_valid` / `TimeIndex::is_valid`.
    pub fn load(path: &Path) -> io::Result<Option<Self>> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len % E::SIZE as u64 != 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| io::Error::other("index too large"))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, 0)?;
        let entries = buf.chunks_exact(E::SIZE).map(E::decode).collect();
        Ok(Some(Index {
            path: path.to_path_buf(),
            file,
            entries,
        }))
    }

    #[cfg(test)]
    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    pub fn last(&self) -> Option<E> {
        self.entries.last().copied()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn push(&mut self, e: E) -> io::Result<()> {
        let mut buf = Vec::with_capacity(E::SIZE);
        e.encode(&mut buf);
        let at = (self.entries.len() * E::SIZE) as u64;
        self.file.write_all_at(&buf, at)?;
        self.entries.push(e);
        Ok(())
    }

    /// Replaces the whole content (index rebuild).
    pub fn replace_all(&mut self, entries: Vec<E>) -> io::Result<()> {
        let mut buf = Vec::with_capacity(entries.len() * E::SIZE);
        for e in &entries {
            e.encode(&mut buf);
        }
        self.file.set_len(0)?;
        self.file.write_all_at(&buf, 0)?;
        self.entries = entries;
        Ok(())
    }

    /// fdatasync of the index file.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl Index<OffsetEntry> {
    /// Appends an entry; entries must be strictly increasing (ignored otherwise).
    pub fn append(&mut self, relative_offset: u32, position: u32) -> io::Result<()> {
        if let Some(last) = self.last() {
            if relative_offset <= last.relative_offset || position <= last.position {
                return Ok(());
            }
        }
        self.push(OffsetEntry {
            relative_offset,
            position,
        })
    }

    /// The largest entry whose relative offset is <= `relative_offset`, if any.
    pub fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let i = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// A file position from which on every batch has offsets >= `relative_offset` (the start
    /// of the indexed batch after the first indexed batch that reaches it); `None` when the
    /// index does not reach that far. Bounds reads that stop at an offset (the high watermark,
    /// the last stable offset) without scanning headers.
    pub fn position_past(&self, relative_offset: u32) -> Option<u32> {
        let i = self
            .entries
            .partition_point(|e| e.relative_offset < relative_offset);
        self.entries.get(i + 1).map(|e| e.position)
    }

    /// File position to start scanning from to find `relative_offset` (0 if below every entry).
    pub fn position_for(&self, relative_offset: u32) -> u32 {
        self.lookup(relative_offset).map_or(0, |e| e.position)
    }

    /// Strictly increasing offsets and positions, every position below `log_size`.
    pub fn is_valid(&self, log_size: u64) -> bool {
        self.entries
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position)
            && self
                .entries
                .iter()
                .all(|e| u64::from(e.position) < log_size)
    }
}

impl Index<TimeEntry> {
    /// Appends an entry if its timestamp is larger than the last entry's.
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) -> io::Result<()> {
        if let Some(last) = self.last() {
            if timestamp <= last.timestamp || relative_offset < last.relative_offset {
                return Ok(());
            }
        } else if timestamp < 0 {
            return Ok(());
        }
        self.push(TimeEntry {
            timestamp,
            relative_offset,
        })
    }

    /// The largest entry whose timestamp is strictly below `timestamp`: every record at or
    /// before its offset has a smaller timestamp, so a search for `timestamp` can start there.
    pub fn lookup_before(&self, timestamp: i64) -> Option<TimeEntry> {
        let i = self.entries.partition_point(|e| e.timestamp < timestamp);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// Strictly increasing timestamps and non-decreasing offsets.
    pub fn is_valid(&self) -> bool {
        self.entries.windows(2).all(|w| {
            w[0].timestamp < w[1].timestamp && w[0].relative_offset <= w[1].relative_offset
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_is_largest_entry_at_or_below() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000000000000000000.index");
        let mut idx = OffsetIndex::create(&path).expect("create");
        assert_eq!(idx.position_for(5), 0);
        idx.append(10, 1000).expect("append");
        idx.append(20, 2000).expect("append");
        idx.append(30, 3000).expect("append");
        idx.append(25, 4000)
            .expect("non-increasing entry is ignored");
        assert_eq!(idx.entries().len(), 3);
        assert_eq!(idx.position_for(9), 0);
        assert_eq!(idx.position_for(10), 1000);
        assert_eq!(idx.position_for(19), 1000);
        assert_eq!(idx.position_for(20), 2000);
        assert_eq!(idx.position_for(u32::MAX), 3000);

        let loaded = OffsetIndex::load(&path).expect("load").expect("present");
        assert_eq!(loaded.entries(), idx.entries());
        assert!(loaded.is_valid(3001));
        assert!(!loaded.is_valid(3000), "position beyond the log is invalid");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 24);
    }

    #[test]
    fn time_index_lookup_is_strictly_below() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000000000000000000.timeindex");
        let mut idx = TimeIndex::create(&path).expect("create");
        idx.maybe_append(100, 1).expect("append");
        idx.maybe_append(100, 2).expect("equal timestamp skipped");
        idx.maybe_append(200, 5).expect("append");
        idx.maybe_append(150, 6).expect("smaller timestamp skipped");
        assert_eq!(idx.entries().len(), 2);
        assert_eq!(idx.lookup_before(100), None);
        assert_eq!(idx.lookup_before(101).map(|e| e.relative_offset), Some(1));
        assert_eq!(idx.lookup_before(200).map(|e| e.relative_offset), Some(1));
        assert_eq!(idx.lookup_before(201).map(|e| e.relative_offset), Some(5));
        let loaded = TimeIndex::load(&path).expect("load").expect("present");
        assert_eq!(loaded.entries(), idx.entries());
        assert!(loaded.is_valid());
    }

    #[test]
    fn load_rejects_torn_files_and_reports_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.index");
        assert!(OffsetIndex::load(&path).expect("load").is_none());
        std::fs::write(&path, [0u8; 13]).expect("write");
        assert!(OffsetIndex::load(&path).expect("load").is_none());
        // Decreasing entries load but are not valid.
        let mut bytes = Vec::new();
        for (o, p) in [(5u32, 50u32), (3, 60)] {
            bytes.extend_from_slice(&o.to_be_bytes());
            bytes.extend_from_slice(&p.to_be_bytes());
        }
        std::fs::write(&path, &bytes).expect("write");
        let idx = OffsetIndex::load(&path).expect("load").expect("present");
        assert!(!idx.is_valid(1000));
    }
}
