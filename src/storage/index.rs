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
//! non-decreasing. Entries are kept in memory (a `Vec`), which is authoritative; the file is
//! written only when the segment is synced (roll, close, explicit flush): the new entries are
//! appended (or the whole file rewritten after a rebuild) and fdatasync'ed, and no descriptor is
//! held in between, so an index costs no open file. After an unclean stop the active segment's
//! file may lack its newest entries (or not exist): recovery rebuilds it from the log.

use std::fs::OpenOptions;
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

/// A sparse index: entries in memory, mirrored to a file that is written only by
/// [`Index::sync`] (no descriptor is held between syncs).
#[derive(Debug)]
pub struct Index<E: IndexEntry> {
    path: PathBuf,
    entries: Vec<E>,
    /// How many leading entries the file holds; `None`: the file must be rewritten whole
    /// (created, replaced, or a write failed).
    on_disk: Option<usize>,
}

/// The offset index of a segment.
pub type OffsetIndex = Index<OffsetEntry>;
/// The time index of a segment.
pub type TimeIndex = Index<TimeEntry>;

impl<E: IndexEntry> Index<E> {
    /// An empty index; a leftover file of that name is deleted (the file is written at the
    /// first sync).
    pub fn create(path: &Path) -> io::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Index {
            path: path.to_path_buf(),
            entries: Vec::new(),
            on_disk: None,
        })
    }

    /// Loads an existing index. `Ok(None)` if the file is missing or its size is not a multiple
    /// of the entry size (the caller rebuilds it); the entry-order checks are done by the caller
    /// through `OffsetIndex::is_valid` / `TimeIndex::is_valid`.
    pub fn load(path: &Path) -> io::Result<Option<Self>> {
        let buf = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if buf.len() % E::SIZE != 0 {
            return Ok(None);
        }
        let entries: Vec<E> = buf.chunks_exact(E::SIZE).map(E::decode).collect();
        Ok(Some(Index {
            path: path.to_path_buf(),
            on_disk: Some(entries.len()),
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

    fn push(&mut self, e: E) {
        self.entries.push(e);
    }

    /// Replaces every entry (index rebuild); the file is rewritten at the next sync.
    pub fn replace_all(&mut self, entries: Vec<E>) {
        self.entries = entries;
        self.on_disk = None;
    }

    /// Writes what the file lacks (the new entries, or everything after a replace) and
    /// fdatasyncs it; nothing when the file is current. Returns whether the file was created
    /// (the caller fsyncs the directory).
    pub fn sync(&mut self) -> io::Result<bool> {
        let (from, created) = match self.on_disk {
            Some(n) if n == self.entries.len() => return Ok(false),
            Some(n) => (n, false),
            None => (0, true),
        };
        let mut buf = Vec::with_capacity((self.entries.len() - from) * E::SIZE);
        for e in &self.entries[from..] {
            e.encode(&mut buf);
        }
        let r = (|| {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(created)
                .open(&self.path)?;
            file.write_all_at(&buf, (from * E::SIZE) as u64)?;
            file.sync_data()
        })();
        match r {
            Ok(()) => {
                self.on_disk = Some(self.entries.len());
                Ok(created)
            }
            Err(e) => {
                self.on_disk = None;
                Err(e)
            }
        }
    }
}

impl Index<OffsetEntry> {
    /// Appends an entry; entries must be strictly increasing (ignored otherwise).
    pub fn append(&mut self, relative_offset: u32, position: u32) {
        if let Some(last) = self.last() {
            if relative_offset <= last.relative_offset || position <= last.position {
                return;
            }
        }
        self.push(OffsetEntry {
            relative_offset,
            position,
        });
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
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) {
        if let Some(last) = self.last() {
            if timestamp <= last.timestamp || relative_offset < last.relative_offset {
                return;
            }
        } else if timestamp < 0 {
            return;
        }
        self.push(TimeEntry {
            timestamp,
            relative_offset,
        });
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
        idx.append(10, 1000);
        idx.append(20, 2000);
        assert!(idx.sync().expect("sync"), "first sync creates the file");
        assert!(!idx.sync().expect("sync"), "nothing new: no write");
        idx.append(30, 3000);
        idx.append(25, 4000); // non-increasing: ignored
        assert_eq!(idx.entries().len(), 3);
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            16,
            "written at sync only"
        );
        assert!(!idx.sync().expect("sync"), "appends to the existing file");
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
        idx.maybe_append(100, 1);
        idx.maybe_append(100, 2); // equal timestamp skipped
        idx.maybe_append(200, 5);
        idx.maybe_append(150, 6); // smaller timestamp skipped
        idx.sync().expect("sync");
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
        let mut idx = OffsetIndex::load(&path).expect("load").expect("present");
        assert!(!idx.is_valid(1000));
        // A rebuild rewrites the whole file at the next sync; create() removes a leftover.
        idx.replace_all(vec![OffsetEntry {
            relative_offset: 1,
            position: 10,
        }]);
        assert!(idx.sync().expect("sync"));
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 8);
        OffsetIndex::create(&path).expect("create");
        assert!(!path.exists());
    }
}
