//! Small file helpers: directory fsync and atomic replace (tmp + fsync + rename + directory
//! fsync; temporary files end in `.tmp`, recovery deletes leftovers), vectored writes, and the
//! page-cache probes that let async code read without blocking: [`read_exact_at_nowait`]
//! (`preadv2` with `RWF_NOWAIT`: the bytes only if they are in the page cache), [`cached`]
//! (`cachestat(2)`: whether a range is in the page cache) and [`prefetch`] (blocking: brings a
//! range into it).

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

/// Reads exactly `buf.len()` bytes at `pos` only if they are all in the page cache
/// (`preadv2(RWF_NOWAIT)`): `Ok(true)` when read, `Ok(false)` when the read would wait for the
/// disk (or the kernel cannot tell, or the range passes the end of the file), so the caller
/// retries where blocking is allowed and a plain read reports what is wrong.
pub fn read_exact_at_nowait(file: &File, buf: &mut [u8], pos: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut done = 0usize;
    while done < buf.len() {
        let rest = &mut buf[done..];
        let iov = libc::iovec {
            iov_base: rest.as_mut_ptr().cast(),
            iov_len: rest.len(),
        };
        let off = libc::off_t::try_from(pos + done as u64).map_err(io::Error::other)?;
        // SAFETY: one iovec over `rest`, valid for writes of its length for the whole call.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Not cached, or NOWAIT unsupported here: the blocking path decides.
                Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => {
                    return Ok(false)
                }
                _ => return Err(e),
            }
        }
        if n == 0 {
            // The end of the file: a blocking read reports it.
            return Ok(false);
        }
        done += n as usize;
    }
    Ok(true)
}

/// Whether every page of `len` bytes at `pos` is in the page cache (`cachestat(2)`, Linux
/// 6.5+). `false` when the kernel cannot tell: callers then [`prefetch`] on a blocking thread.
pub fn cached(file: &File, pos: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    /// The same number on every architecture (the unified syscall table).
    const SYS_CACHESTAT: libc::c_long = 451;
    if len == 0 {
        return true;
    }
    // SAFETY: sysconf only reads a constant.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    };
    let first = pos / page;
    let pages = (pos + len).div_ceil(page) - first;
    let range = Range {
        off: first * page,
        len: pages * page,
    };
    let mut stat = Stat::default();
    // SAFETY: `range` and `stat` are live and laid out as the kernel's structs for the call.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    r == 0 && stat.nr_cache >= pages
}

/// Brings `len` bytes at `pos` into the page cache and returns once they are there: starts the
/// disk reads for the whole range (`readahead(2)`, which does not wait for them), then reads it
/// through a small scratch buffer, which does. Blocking: call it off the async workers, and
/// only for data that is not cached (see [`cached`]), where the disk read costs far more than
/// the copy.
pub fn prefetch(file: &File, pos: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 256 * 1024;
    let off = libc::off64_t::try_from(pos).map_err(io::Error::other)?;
    let count = usize::try_from(len).map_err(io::Error::other)?;
    // SAFETY: plain syscall on a valid descriptor; it only starts reads into the page cache.
    unsafe { libc::readahead(file.as_raw_fd(), off, count) };
    let mut scratch = vec![0u8; CHUNK.min(len) as usize];
    let mut at = 0u64;
    while at < len {
        let n = CHUNK.min(len - at) as usize;
        file.read_exact_at(&mut scratch[..n], pos + at)?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
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

    #[test]
    fn nowait_reads_and_cachestat_see_the_page_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("open");
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        f.write_all_at(&data, 0).expect("write");
        f.sync_all().expect("sync");
        let mut buf = [0u8; 100];
        assert!(read_exact_at_nowait(&f, &mut buf, 5000).expect("hot read"));
        assert_eq!(&buf[..], &data[5000..5100]);
        assert!(cached(&f, 0, data.len() as u64), "just written, so cached");
        // Past the end: not read here, and the blocking read reports the error.
        assert!(!read_exact_at_nowait(&f, &mut buf, data.len() as u64 - 10).expect("eof"));
        // Drop the (clean) pages: the no-wait read refuses, cachestat says not cached,
        // prefetch brings the range back.
        // Under load (other tests writing meanwhile) the kernel may keep or bring back some
        // pages: dropped again, up to a few times.
        let dropped = (0..20).any(|_| {
            // SAFETY: plain syscall on a valid descriptor.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            let gone = !cached(&f, 0, data.len() as u64)
                && !read_exact_at_nowait(&f, &mut buf, 700_000).expect("cold read");
            if !gone {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            gone
        });
        assert!(
            dropped,
            "DONTNEED dropped the clean pages and the no-wait read refused"
        );
        prefetch(&f, 600_000, 200_000).expect("prefetch");
        assert!(cached(&f, 600_000, 200_000));
        assert!(read_exact_at_nowait(&f, &mut buf, 700_000).expect("prefetched read"));
        assert_eq!(&buf[..], &data[700_000..700_100]);
    }
}
