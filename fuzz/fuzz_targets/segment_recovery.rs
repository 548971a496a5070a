//! Recovery from arbitrary file contents: the input becomes a partition directory (a segment
//! `.log`, its `.index` and `.timeindex`, a `leader-epoch-checkpoint`, a producer snapshot),
//! which is opened after an unclean stop and after a clean one; whatever opens must then answer
//! reads and take an append. Nothing may panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strand::storage::{LogConfig, PartitionLog};

/// Splits the input into `n` parts at the lengths given by its first bytes.
fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let (lens, mut rest) = data.split_at(data.len().min(n - 1));
    let mut out = Vec::with_capacity(n);
    for &l in lens {
        let l = (l as usize * 8).min(rest.len());
        let (a, b) = rest.split_at(l);
        out.push(a);
        rest = b;
    }
    out.push(rest);
    out.resize(n, &[]);
    out
}

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::Builder::new()
        .prefix("strand-fuzz")
        .tempdir_in(std::env::var_os("FUZZ_TMP").unwrap_or_else(|| "/dev/shm".into()))
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let dir = tmp.path().join("t-0");
    std::fs::create_dir(&dir).unwrap();
    let p = parts(data, 5);
    let files = [
        ("00000000000000000000.log", p[4]),
        ("00000000000000000000.index", p[0]),
        ("00000000000000000000.timeindex", p[1]),
        ("leader-epoch-checkpoint", p[2]),
        ("00000000000000000003.snapshot", p[3]),
    ];
    for (name, bytes) in files {
        if !bytes.is_empty() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for clean in [true, false] {
        let config = LogConfig {
            index_interval_bytes: 64,
            ..LogConfig::default()
        };
        if let Ok(log) = PartitionLog::open(&dir, config, clean) {
            let start = log.log_start_offset();
            let end = log.log_end_offset();
            let mut offset = start;
            while offset < end {
                match log.read(offset, 1 << 20, end, true) {
                    Ok(r) if !r.records.is_empty() => {
                        // The last batch read tells where to go on; stop if it does not move.
                        let next = last_next_offset(&r.records).unwrap_or(end);
                        if next <= offset {
                            break;
                        }
                        offset = next;
                    }
                    _ => break,
                }
            }
            let _ = log.offset_for_timestamp(0);
            let _ = log.max_timestamp();
            let _ = log.aborted_transactions(start, end);
            let _ = log.epoch_end_offset(0);
        }
    }
});

fn last_next_offset(records: &[u8]) -> Option<i64> {
    let mut pos = 0;
    let mut next = None;
    while let Some(h) = records
        .get(pos..)
        .and_then(strand::storage::batch::BatchHeader::parse)
    {
        let n = h.total_size()?;
        if n == 0 || pos + n > records.len() {
            break;
        }
        next = Some(h.next_offset());
        pos += n;
    }
    next
}
