//! The health of a log directory (Kafka's `LogDirFailureChannel`).
//!
//! Role: every [`PartitionLog`](super::PartitionLog) of one data dir shares one [`LogDirHealth`].
//! The first failed write, truncate, rename or fdatasync of any of them takes the whole
//! directory offline: from then on no log in it appends, flushes or reads (each answers
//! [`StorageError::LogDirOffline`](super::StorageError::LogDirOffline), which clients see as
//! KAFKA_STORAGE_ERROR), so nothing is acknowledged after a write the disk may have lost.
//!
//! Invariant: offline is final for the life of the process. An fsync that failed is never
//! retried and then acknowledged (after a failed fsync the kernel may have dropped the dirty
//! pages, so a later "successful" fsync proves nothing). The broker does not mark the logs
//! clean at shutdown, so the next start recovers every log from what is really on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Shared by all logs of one data dir.
#[derive(Debug, Default)]
pub struct LogDirHealth {
    dir: PathBuf,
    offline: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl LogDirHealth {
    pub fn new(dir: &Path) -> LogDirHealth {
        LogDirHealth {
            dir: dir.to_path_buf(),
            ..LogDirHealth::default()
        }
    }

    /// The data dir this describes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// Why the directory went offline (the first failure), if it did.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes the directory offline because `what` failed with `error` (logged once, loudly).
    /// Running out of file descriptors (EMFILE, ENFILE) is a process limit, not a disk
    /// failure: the operation fails, the directory stays online.
    pub fn fail(&self, what: &str, path: &Path, error: &std::io::Error) {
        if matches!(error.raw_os_error(), Some(23 | 24)) {
            tracing::error!(path = %path.display(), "{what} failed: {error} (raise `ulimit -n`)");
            return;
        }
        let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if reason.is_none() {
            let text = format!("{what} of {} failed: {error}", path.display());
            tracing::error!(
                log_dir = %self.dir.display(),
                "LOG DIRECTORY OFFLINE: {text}. No partition in it accepts writes or serves reads \
                 until the broker is restarted (the logs are recovered at the next start)."
            );
            *reason = Some(text);
        }
        self.offline.store(true, Ordering::Release);
    }
}
