//! Fault seam: makes chosen file operations of the store fail, so tests can exercise the error
//! paths (EIO on a write or an fdatasync) and crash at exact points without a broken disk.
//!
//! Role: [`inject`] arms a fault for every file under a directory; the store calls [`check`]
//! right before each segment write and each fdatasync, which then fails with the armed OS error
//! instead of touching the file. [`clear`] disarms. Faults are process-wide (tests that use
//! them run on their own temp dirs, so they never affect each other).
//!
//! Cost: when nothing is armed, [`check`] is one relaxed atomic load.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Which file operation a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// Appending batch bytes to a segment `.log`.
    Write,
    /// fdatasync of a segment (its `.log` and indexes).
    Sync,
}

struct Fault {
    under: PathBuf,
    op: FaultOp,
    errno: i32,
}

static ARMED: AtomicBool = AtomicBool::new(false);
static FAULTS: Mutex<Vec<Fault>> = Mutex::new(Vec::new());

fn faults() -> std::sync::MutexGuard<'static, Vec<Fault>> {
    FAULTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Arms a fault: every `op` on a file under `under` fails with OS error `errno` (e.g. `libc`'s
/// EIO = 5, ENOSPC = 28) until [`clear`] is called for that directory.
pub fn inject(under: &Path, op: FaultOp, errno: i32) {
    let mut f = faults();
    f.push(Fault {
        under: under.to_path_buf(),
        op,
        errno,
    });
    ARMED.store(true, Ordering::Release);
}

/// Disarms every fault armed for `under`.
pub fn clear(under: &Path) {
    let mut f = faults();
    f.retain(|x| x.under != under);
    ARMED.store(!f.is_empty(), Ordering::Release);
}

/// Fails with the armed error if a fault matches `op` on `path`.
pub(crate) fn check(path: &Path, op: FaultOp) -> io::Result<()> {
    if !ARMED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let f = faults();
    match f.iter().find(|x| x.op == op && path.starts_with(&x.under)) {
        Some(x) => Err(io::Error::from_raw_os_error(x.errno)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armed_faults_match_by_directory_and_operation() {
        let dir = PathBuf::from("/nonexistent/fault-test-a");
        let file = dir.join("t-0/00000000000000000000.log");
        assert!(check(&file, FaultOp::Sync).is_ok());
        inject(&dir, FaultOp::Sync, 5);
        let e = check(&file, FaultOp::Sync).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(5));
        assert!(check(&file, FaultOp::Write).is_ok());
        assert!(check(Path::new("/nonexistent/other/x.log"), FaultOp::Sync).is_ok());
        clear(&dir);
        assert!(check(&file, FaultOp::Sync).is_ok());
    }
}
