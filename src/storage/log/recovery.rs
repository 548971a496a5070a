//! Opening a partition log: reconciling its directory, loading or recovering each segment, and
//! rebuilding the producer state and aborted-transaction indexes (see the parent module's
//! "Recovery" and "Producer state" sections for the rules).
//!
//! Invariant: an open that fails returns the error and leaves the directory as it was, except
//! for what recovery had to fix (leftover temporary files and orphan indexes deleted, a torn
//! tail truncated and fdatasync'ed), which is idempotent, so the next open retries safely.

use super::*;

fn is_leftover(name: &str) -> bool {
    [TMP_SUFFIX, "cleaned", "deleted", "swap"].iter().any(|s| {
        name.len() > s.len() + 1 && name.ends_with(s) && name[..name.len() - s.len()].ends_with('.')
    })
}

/// The control type of the control batch `h` at `pos` of a segment snapshot.
fn read_control_type(snap: &SegmentSnapshot, pos: u64, h: &BatchHeader) -> Result<ControlType> {
    let total = h
        .total_size()
        .ok_or_else(|| StorageError::CorruptLog(format!("batch length at {pos}")))?;
    let mut buf = vec![0u8; total];
    std::os::unix::fs::FileExt::read_exact_at(&*snap.file, &mut buf, pos)?;
    control_type(&buf)
}

fn parse_log_start_offset(text: &str) -> Option<i64> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    lines.next()?.trim().parse().ok().filter(|o: &i64| *o >= 0)
}

impl Inner {
    /// Loads the producer state at open: the newest valid snapshot at or below the log end
    /// offset (newer, invalid and below-the-first-segment snapshots are deleted), then the
    /// batch headers from its offset to the end (the whole log without a snapshot). The same
    /// replay rebuilds the aborted-transaction indexes: entries at or above the replay start
    /// are replaced by the ABORT markers the replay finds; entries below it are trusted, unless
    /// a segment's `.txnindex` is invalid, in which case the replay starts from a snapshot at
    /// or below that segment's base (or from the start of the log). Returns whether files
    /// were created or deleted.
    fn load_producer_state(&mut self, dir: &Path) -> Result<bool> {
        let leo = self.log_end_offset;
        let first_base = self.first_base_offset();
        let active_base = self.active.base_offset();
        let needed_from = self
            .segments()
            .filter(|s| !s.txn_index_valid(s.base_offset() == active_base))
            .map(Segment::base_offset)
            .min()
            .unwrap_or(leo);
        let mut changed = false;
        let mut loaded: Option<(i64, ProducerStateManager)> = None;
        for offset in list_snapshots(dir)?.into_iter().rev() {
            if offset > leo || offset < first_base {
                delete_snapshot(dir, offset)?;
                changed = true;
                continue;
            }
            if loaded.is_some() || offset > needed_from {
                continue;
            }
            match ProducerStateManager::read_snapshot(dir, offset) {
                Ok(state) => loaded = Some((offset, state)),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), offset, error = %e,
                        "deleting invalid producer state snapshot");
                    delete_snapshot(dir, offset)?;
                    changed = true;
                }
            }
        }
        let (from, mut state) = loaded.unwrap_or((first_base, ProducerStateManager::default()));
        let mut aborted: BTreeMap<i64, Vec<AbortedTxn>> = BTreeMap::new();
        for seg in self.segments().filter(|s| s.next_offset() > from) {
            let snap = seg.snapshot_for_offset(from)?;
            let found = aborted.entry(snap.base_offset).or_default();
            let problem = scan_batches(
                &snap.file,
                snap.start_position,
                snap.size,
                snap.base_offset,
                false,
                |pos, h| {
                    if h.base_offset < from {
                        return;
                    }
                    let Some(done) = state.replay(h) else { return };
                    match read_control_type(&snap, pos, h) {
                        Ok(ControlType::Abort) => found.push(AbortedTxn {
                            producer_id: done.producer_id,
                            first_offset: done.first_offset,
                            last_offset: done.last_offset,
                            last_stable_offset: done.last_stable_offset,
                        }),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(dir = %dir.display(), offset = h.base_offset,
                            error = %e, "unreadable control batch: not indexed as an abort"),
                    }
                },
            )?;
            if let Some(p) = problem {
                tracing::warn!(dir = %dir.display(), segment = snap.base_offset,
                    position = p.position, reason = %p.reason,
                    "producer state rebuild stopped at an unreadable batch");
            }
        }
        // Every segment: entries at or above `from` may describe batches the recovery cut off
        // even where nothing was replayed (a no-op when nothing changes).
        for (seg, active) in self.segments_mut() {
            let rebuilt = aborted.remove(&seg.base_offset()).unwrap_or_default();
            let existed = seg.txn_index().path().exists();
            seg.rebuild_txn_index(active, from, rebuilt)?;
            changed |= existed != seg.txn_index().path().exists();
        }
        state.truncate_head(self.log_start_offset);
        self.producers = state;
        changed |= prune_snapshots(dir, first_base)?;
        Ok(changed)
    }
}

impl PartitionLog {
    /// Opens (or creates, if `dir` does not exist) the log in `dir`. `clean` = the broker found
    /// its clean-shutdown marker: indexes are trusted. Otherwise the active segment is
    /// recovered (see the module docs).
    pub fn open(dir: &Path, config: LogConfig, clean: bool) -> Result<PartitionLog> {
        let health = Arc::new(LogDirHealth::new(dir.parent().unwrap_or(dir)));
        Self::open_in(dir, config, clean, health, Arc::new(OpenFiles::default()))
    }

    /// [`PartitionLog::open`] for a log of the data dir whose health is `health` and whose
    /// open `.log` handles are `files` (both shared by all its logs). A failure while opening
    /// is this log's alone: it is returned (the caller keeps the partition offline) and does
    /// not take the directory offline.
    pub fn open_in(
        dir: &Path,
        config: LogConfig,
        clean: bool,
        health: Arc<LogDirHealth>,
        files: Arc<OpenFiles>,
    ) -> Result<PartitionLog> {
        if health.is_offline() {
            return Err(StorageError::LogDirOffline);
        }
        Self::open_inner(dir, config, clean, health, files)
    }

    pub(super) fn open_inner(
        dir: &Path,
        config: LogConfig,
        clean: bool,
        health: Arc<LogDirHealth>,
        files: Arc<OpenFiles>,
    ) -> Result<PartitionLog> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                fsync_dir(parent)?;
            }
        }
        let mut dir_changed = false;
        let mut logs: Vec<i64> = Vec::new();
        let mut indexes: Vec<(i64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_leftover(&name) {
                std::fs::remove_file(entry.path())?;
                dir_changed = true;
                continue;
            }
            match parse_segment_file_name(&name) {
                Some((base, LOG_SUFFIX)) => logs.push(base),
                Some((base, INDEX_SUFFIX | TIME_INDEX_SUFFIX | TXN_INDEX_SUFFIX)) => {
                    indexes.push((base, entry.path()))
                }
                _ => {}
            }
        }
        logs.sort_unstable();
        for (base, path) in indexes {
            if logs.binary_search(&base).is_err() {
                tracing::info!(file = %path.display(), "deleting orphan index file");
                std::fs::remove_file(path)?;
                dir_changed = true;
            }
        }
        let persisted_start = read_optional(dir, LOG_START_OFFSET_FILE)?
            .as_deref()
            .and_then(parse_log_start_offset);

        let interval = config.index_interval_bytes;
        let mut closed = BTreeMap::new();
        let active = match logs.split_last() {
            None => {
                dir_changed = true;
                Segment::create(
                    dir,
                    persisted_start.unwrap_or(0),
                    wall_clock_ms(),
                    interval,
                    &files,
                )?
            }
            Some((&last, older)) => {
                for &base in older {
                    let (mut seg, recovered) = Segment::open(dir, base, interval, &files)?;
                    if let Some(truncated) = recovered {
                        if truncated > 0 {
                            tracing::warn!(dir = %dir.display(), base, truncated,
                                "closed segment had an invalid tail");
                        }
                        // Rebuilt indexes of a closed segment get their final entry and a sync.
                        seg.seal()?;
                    }
                    closed.insert(base, seg);
                }
                let (mut seg, recovered) = Segment::open(dir, last, interval, &files)?;
                if !clean && recovered.is_none() {
                    let truncated = seg.recover()?;
                    if truncated > 0 {
                        tracing::warn!(dir = %dir.display(), base = last, truncated,
                            "truncated torn tail of the active segment");
                    }
                }
                seg
            }
        };
        let log_end_offset = active.next_offset();
        let first_base = closed
            .keys()
            .next()
            .copied()
            .unwrap_or(active.base_offset());
        let mut inner = Inner {
            config,
            closed,
            active,
            log_start_offset: first_base.max(persisted_start.unwrap_or(0)),
            log_end_offset,
            epochs: LeaderEpochCache::load(dir)?,
            producers: ProducerStateManager::default(),
            synced: (0, 0),
            durable: Arc::new(watch::channel(0).0),
            files,
        };
        if inner.log_start_offset > inner.log_end_offset {
            // Everything below the persisted start offset is gone: start over there.
            let start = inner.log_start_offset;
            tracing::warn!(dir = %dir.display(), start, "log start offset beyond log end; emptying log");
            let fresh = Segment::create(dir, start, wall_clock_ms(), interval, &inner.files)?;
            let old_active = std::mem::replace(&mut inner.active, fresh);
            for seg in std::mem::take(&mut inner.closed)
                .into_values()
                .chain(std::iter::once(old_active))
            {
                if seg.base_offset() != start {
                    seg.delete_files()?;
                }
            }
            inner.log_end_offset = start;
            dir_changed = true;
        }
        let below = inner.segments_below_start();
        for _ in 0..below {
            if let Some((_, seg)) = inner.closed.pop_first() {
                seg.delete_files()?;
                dir_changed = true;
            }
        }
        let leo = inner.log_end_offset;
        let lso = inner.log_start_offset;
        let end_changed = inner.epochs.truncate_from_end(leo);
        let start_changed = inner.epochs.truncate_from_start(lso);
        if end_changed || start_changed {
            inner.epochs.persist(dir)?;
        }
        dir_changed |= inner.load_producer_state(dir)?;
        if !clean {
            inner.active.sync_all()?;
        }
        if dir_changed {
            fsync_dir(dir)?;
        }
        // Recovery synced the active segment; after a clean stop it was synced at close.
        inner.synced = (inner.active.base_offset(), inner.active.size());
        publish(&inner.durable, leo);
        let durable = inner.durable.clone();
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
            flush_lock: tokio::sync::Mutex::new(()),
            durable,
            health,
            group_commit_syncs: AtomicU64::new(0),
            appends: watch::channel(0).0,
        })
    }
}
