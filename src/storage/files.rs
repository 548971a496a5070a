//! Small durable-file helpers: directory fsync and atomic replace (tmp + fsync + rename +
//! directory fsync). Temporary files end in `.tmp`; recovery deletes leftovers.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Suffix of temporary files (deleted at open).
pub const TMP_SUFFIX: &str = "tmp";

/// fsync of a directory, so that file creations, renames and deletions in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces `dir/name` with `contents`: write `name.tmp`, fsync, rename, fsync dir.
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.{TMP_SUFFIX}"));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}

/// Reads `dir/name` as UTF-8; `Ok(None)` if it does not exist.
pub fn read_optional(dir: &Path, name: &str) -> io::Result<Option<String>> {
    match std::fs::read(dir.join(name)) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
