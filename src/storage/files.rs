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

/// Writes `parts` back to back at `pos` with `pwritev` (no copy into one buffer), retrying
/// short writes and EINTR until everything is written.
pub fn write_all_vectored_at(file: &File, parts: &[&[u8]], pos: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const IOV_MAX: usize = 1024;
    let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let mut at = 0usize;
    let mut pos = pos;
    while at < parts.len() {
        let iov: Vec<libc::iovec> = parts[at..]
            .iter()
            .take(IOV_MAX)
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let offset = libc::off_t::try_from(pos).map_err(|_| io::Error::other("file offset"))?;
        let count = libc::c_int::try_from(iov.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: every iovec points into a live slice of `parts` for the whole call, and
        // pwritev only reads from them.
        let n = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), count, offset) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        let mut written = n as usize;
        pos += written as u64;
        while written > 0 {
            let first = parts[at];
            if written >= first.len() {
                written -= first.len();
                at += 1;
            } else {
                parts[at] = &first[written..];
                written = 0;
            }
        }
    }
    Ok(())
}

/// Reads `dir/name` as UTF-8; `Ok(None)` if it does not exist.
pub fn read_optional(dir: &Path, name: &str) -> io::Result<Option<String>> {
    match std::fs::read(dir.join(name)) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn vectored_write_of_many_parts_lands_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("v"))
            .expect("open");
        // More parts than one pwritev takes (IOV_MAX), with empty ones in between.
        let owned: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| {
                if i % 7 == 0 {
                    vec![]
                } else {
                    i.to_be_bytes().to_vec()
                }
            })
            .collect();
        let parts: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        f.write_all_at(b"head", 0).expect("head");
        write_all_vectored_at(&f, &parts, 4).expect("pwritev");
        let got = std::fs::read(dir.path().join("v")).expect("read");
        let want: Vec<u8> = b"head".iter().copied().chain(owned.concat()).collect();
        assert_eq!(got, want);
    }
}
