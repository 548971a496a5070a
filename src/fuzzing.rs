//! The fuzzing seams: the code paths that read bytes a client or a disk controls, each as one
//! function over arbitrary input. The cargo-fuzz targets (`fuzz/fuzz_targets/`, run by
//! `scripts/fuzz.sh`) call these, and so does `cargo test`'s fuzz smoke test
//! (`tests/it/fuzz_smoke.rs`), which feeds them seeded mutations of valid frames, batches and
//! partition directories on every run. Invariant: for any input, each function returns;
//! nothing panics, hangs or allocates beyond the input's own claims (see `alloc`).

use std::path::Path;

use bytes::{Bytes, BytesMut};

use crate::server::connection::{next_frame, parse_request, Parsed};
use crate::storage::batch::{split_and_validate, BatchHeader};
use crate::storage::records::BatchRecords;
use crate::storage::{LogConfig, PartitionLog};

/// Socket bytes: split into frames as a connection does (`next_frame`, with a 1 MiB frame
/// limit), each frame's header parsed and checked against the registry (`parse_request`), and
/// its body decoded at its version by the registered API's decoder. The input is also tried as
/// one frame without a length prefix (most inputs are not stream-shaped).
pub fn request(data: &[u8]) {
    decode_frame(Bytes::copy_from_slice(data));
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = next_frame(&mut buf, 1 << 20) {
        decode_frame(frame);
    }
}

fn decode_frame(frame: Bytes) {
    if let Ok(Parsed::Request {
        api, version, body, ..
    }) = parse_request(frame)
    {
        let _ = (api.decode)(body, version);
    }
}

/// A client's record set as the produce path sees it: batch splitting and validation (length,
/// magic, CRC32C, offsets, counts), then every record of every valid batch decoded
/// (decompressing any codec), as compaction and timestamp lookups do. Decoding without
/// validation (a stored batch read back) must be just as safe, so the input is decoded raw too.
pub fn produce_batches(data: &[u8]) {
    if let Ok(batches) = split_and_validate(data) {
        for (pos, h) in batches {
            let Some(size) = h.total_size() else { continue };
            let Some(batch) = data.get(pos..pos + size) else {
                continue;
            };
            if let Ok(records) = BatchRecords::decode(batch) {
                for r in records.iter().take(100_000) {
                    if r.is_err() {
                        break;
                    }
                }
            }
        }
    }
    let _ = BatchRecords::decode(data).map(|r| r.iter().take(100_000).count());
}

/// The files of a partition directory made from one input: its first 4 bytes give the lengths
/// (×8) of the `.index`, `.timeindex`, `leader-epoch-checkpoint` and producer snapshot parts;
/// the rest is the segment's `.log`.
pub const PARTITION_FILES: [&str; 5] = [
    "00000000000000000000.index",
    "00000000000000000000.timeindex",
    "leader-epoch-checkpoint",
    "00000000000000000003.snapshot",
    "00000000000000000000.log",
];

/// Splits `data` into the [`PARTITION_FILES`] parts (see there).
pub fn partition_parts(data: &[u8]) -> Vec<&[u8]> {
    let n = PARTITION_FILES.len();
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

/// Recovery from arbitrary file contents: `data` becomes the partition directory `dir/t-0`
/// (which must not exist yet; see [`partition_parts`]), opened after an unclean stop and after a
/// clean one. Whatever opens must then answer reads end to end, timestamp searches, aborted
/// transaction and epoch lookups. Errors creating the files are returned; nothing else is.
pub fn segment_recovery(dir: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = dir.join("t-0");
    std::fs::create_dir(&dir)?;
    for (name, bytes) in PARTITION_FILES.iter().zip(partition_parts(data)) {
        if !bytes.is_empty() {
            std::fs::write(dir.join(name), bytes)?;
        }
    }
    for clean in [true, false] {
        let config = LogConfig {
            index_interval_bytes: 64,
            ..LogConfig::default()
        };
        let Ok(log) = PartitionLog::open(&dir, config, clean) else {
            continue;
        };
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
    Ok(())
}

fn last_next_offset(records: &[u8]) -> Option<i64> {
    let mut pos = 0;
    let mut next = None;
    while let Some(h) = records.get(pos..).and_then(BatchHeader::parse) {
        let n = h.total_size()?;
        if n == 0 || pos + n > records.len() {
            break;
        }
        next = Some(h.next_offset());
        pos += n;
    }
    next
}
