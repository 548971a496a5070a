//! A bounded set of open segment `.log` handles, shared by every log of a data dir.
//!
//! Role: a broker with tens of thousands of partitions must not need a file descriptor per
//! segment file. Indexes hold no descriptor at all (their entries live in memory and are
//! written when the segment is synced, see [`super::index`]); `.log` files are opened through
//! this cache, which keeps at most `capacity` of them open, evicting the least recently used.
//! A reader holds an `Arc<File>`, so evicting a handle (or deleting its file) never disturbs a
//! read in flight: the descriptor closes when the last reader drops it.
//!
//! Invariant (why eviction is safe for writes): a handle with bytes written through it that no
//! fdatasync has covered yet is *pinned* — held outside the LRU and never evicted — until the
//! fsync that covers them succeeded through that same handle. Linux reports a writeback error
//! to the descriptors open when it happened, so closing a dirty descriptor and syncing a fresh
//! one could hide a lost write; closing a clean one cannot. Pinned handles count against the
//! capacity (unpinned ones are evicted to make room) but are never evicted themselves: there is
//! at most one per partition, its active segment, and only while unsynced data is in flight —
//! milliseconds with the default durable visibility. With `log.visibility = page-cache` a
//! partition keeps its handle pinned until its next fsync (`flush.ms`, `flush.messages`, a roll
//! or close), as Kafka keeps every segment file open.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

/// Identifies one segment file in an [`OpenFiles`] (allocated by [`OpenFiles::next_id`]).
pub type FileId = u64;

struct State {
    lru: LruCache<FileId, Arc<File>>,
    pinned: HashMap<FileId, Arc<File>>,
    opened: u64,
}

/// Bounded cache of open segment files (see the module docs).
pub struct OpenFiles {
    state: Mutex<State>,
    next_id: AtomicU64,
    capacity: usize,
}

impl std::fmt::Debug for OpenFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("OpenFiles")
            .field("capacity", &self.capacity)
            .field("open", &s.lru.len())
            .field("pinned", &s.pinned.len())
            .finish()
    }
}

impl Default for OpenFiles {
    fn default() -> Self {
        OpenFiles::new(default_capacity())
    }
}

/// Half of the process's soft `RLIMIT_NOFILE` (the rest is left to sockets and other files),
/// at least 16.
pub fn default_capacity() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; it has no other effect.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    (soft / 2).clamp(16, 1 << 20)
}

impl OpenFiles {
    /// A cache keeping at most `capacity` handles open (at least 1), more only while pinned
    /// ones alone exceed it.
    pub fn new(capacity: usize) -> OpenFiles {
        let capacity = capacity.max(1);
        OpenFiles {
            state: Mutex::new(State {
                lru: LruCache::unbounded(),
                pinned: HashMap::new(),
                opened: 0,
            }),
            next_id: AtomicU64::new(1),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new id for a segment file.
    pub fn next_id(&self) -> FileId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Capacity for unpinned handles.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Handles open now (cached plus pinned).
    pub fn open_count(&self) -> usize {
        let s = self.lock();
        s.lru.len() + s.pinned.len()
    }

    /// Files opened so far (misses).
    pub fn opened(&self) -> u64 {
        self.lock().opened
    }

    fn lookup(s: &mut State, id: FileId) -> Option<Arc<File>> {
        if let Some(f) = s.pinned.get(&id) {
            return Some(Arc::clone(f));
        }
        s.lru.get(&id).cloned()
    }

    fn evict(&self, s: &mut State) {
        while !s.lru.is_empty() && s.lru.len() + s.pinned.len() > self.capacity {
            s.lru.pop_lru();
        }
    }

    /// The handle of file `id` if it is open (nothing is opened).
    pub fn cached(&self, id: FileId) -> Option<Arc<File>> {
        Self::lookup(&mut self.lock(), id)
    }

    /// The handle of file `id` at `path` (read + write), opening it if it is not open.
    pub fn get(&self, id: FileId, path: &Path) -> io::Result<Arc<File>> {
        if let Some(f) = Self::lookup(&mut self.lock(), id) {
            return Ok(f);
        }
        let file = Arc::new(OpenOptions::new().read(true).write(true).open(path)?);
        Ok(self.insert(id, file))
    }

    /// Registers a handle the caller opened (or created); returns the cached one if another
    /// caller registered `id` meanwhile.
    pub fn insert(&self, id: FileId, file: Arc<File>) -> Arc<File> {
        let mut s = self.lock();
        if let Some(f) = Self::lookup(&mut s, id) {
            return f;
        }
        s.opened += 1;
        s.lru.put(id, Arc::clone(&file));
        self.evict(&mut s);
        file
    }

    /// Pins `file` as the handle of `id`: bytes were written through it that no fsync covered.
    pub fn pin(&self, id: FileId, file: &Arc<File>) {
        let mut s = self.lock();
        if s.pinned.contains_key(&id) {
            return;
        }
        s.lru.pop(&id);
        s.pinned.insert(id, Arc::clone(file));
        self.evict(&mut s);
    }

    /// Unpins `id` (an fsync through its handle covered every write): it may be evicted again.
    pub fn unpin(&self, id: FileId) {
        let mut s = self.lock();
        if let Some(f) = s.pinned.remove(&id) {
            s.lru.put(id, f);
            self.evict(&mut s);
        }
    }

    /// Forgets `id` (its file is deleted); readers holding the handle keep it.
    pub fn remove(&self, id: FileId) {
        let mut s = self.lock();
        s.lru.pop(&id);
        s.pinned.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn evicts_least_recently_used_but_never_pinned_or_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = OpenFiles::new(2);
        let paths: Vec<_> = (0..4)
            .map(|i| {
                let p = dir.path().join(format!("{i}.log"));
                std::fs::write(&p, [i as u8]).expect("write");
                p
            })
            .collect();
        let ids: Vec<FileId> = (0..4).map(|_| files.next_id()).collect();
        let held = files.get(ids[0], &paths[0]).expect("open 0");
        let dirty = files.get(ids[1], &paths[1]).expect("open 1");
        files.pin(ids[1], &dirty);
        files.get(ids[2], &paths[2]).expect("open 2");
        files.get(ids[3], &paths[3]).expect("open 3");
        assert_eq!(files.open_count(), 2, "1 cached + 1 pinned");
        // 0 was evicted from the cache, yet the handle a reader holds still reads.
        let mut b = [0u8; 1];
        held.read_exact_at(&mut b, 0).expect("read evicted");
        assert_eq!(b, [0]);
        // The pinned handle survived every eviction and is the one handed out.
        let again = files.get(ids[1], &paths[1]).expect("pinned");
        assert!(Arc::ptr_eq(&again, &dirty));
        assert_eq!(files.opened(), 4);
        files.unpin(ids[1]);
        assert_eq!(files.open_count(), 2);
        // Reopening an evicted file is a miss.
        files.get(ids[0], &paths[0]).expect("reopen");
        assert_eq!(files.opened(), 5);
        files.remove(ids[0]);
        assert_eq!(files.open_count(), 1);
    }
}
