//! Behaviour tests of `PartitionLog`: what a producer, a consumer and a restarted broker see.

use std::path::Path;
use std::sync::Arc;

use super::batch::{split_and_validate, BatchHeader, Compression, CRC_OFFSET, MAGIC_OFFSET};
use super::testutil::{batch, BatchSpec, ALL_CODECS};
use super::*;

fn open(dir: &Path, config: LogConfig, clean: bool) -> PartitionLog {
    PartitionLog::open(dir, config, clean).expect("open log")
}

fn cfg() -> LogConfig {
    LogConfig {
        index_interval_bytes: 1,
        ..LogConfig::default()
    }
}

/// A batch of `n` records stamped `ts`, `ts + 1`, ...
fn b(n: usize, ts: i64) -> Vec<u8> {
    let stamps: Vec<i64> = (0..n as i64).map(|i| ts + i).collect();
    batch(&BatchSpec::new(&stamps))
}

/// (base offset, last offset) of each batch in `bytes`.
fn ranges(bytes: &[u8]) -> Vec<(i64, i64)> {
    if bytes.is_empty() {
        return Vec::new();
    }
    split_and_validate(bytes)
        .expect("read returns valid batches")
        .iter()
        .map(|(_, h)| (h.base_offset, h.last_offset()))
        .collect()
}

fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let r = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        let got = ranges(&r.records);
        match got.last() {
            Some(&(_, last)) => offset = last + 1,
            None => return out,
        }
        out.extend(got);
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn append_then_read_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let first = b(3, 100);
    let info = log.append(&first, 4, 1000).expect("append");
    assert_eq!(
        (info.base_offset, info.last_offset, info.log_append_time),
        (0, 2, -1)
    );
    let mut two = b(2, 200);
    two.extend_from_slice(&b(4, 300));
    let info = log.append(&two, 4, 1000).expect("append two batches");
    assert_eq!((info.base_offset, info.last_offset), (3, 8));
    assert_eq!(info.batches.len(), 2);
    assert_eq!(
        (info.batches[1].base_offset, info.batches[1].last_offset),
        (5, 8)
    );
    assert_eq!(info.batches[1].records_count, 4);
    assert_eq!(log.log_end_offset(), 9);

    let r = log.read(0, 1 << 20, i64::MAX, false).expect("read");
    assert_eq!(ranges(&r.records), vec![(0, 2), (3, 4), (5, 8)]);
    assert_eq!((r.log_start_offset, r.log_end_offset), (0, 9));
    // Stored bytes are the producer's bytes with only base offset and leader epoch rewritten.
    let stored = &r.records[..first.len()];
    assert_eq!(&stored[16..], &first[16..]);
    let h = BatchHeader::parse(stored).expect("header");
    assert_eq!((h.base_offset, h.partition_leader_epoch), (0, 4));

    // A read from the middle of a batch starts with the batch containing the offset.
    let r = log.read(6, 1 << 20, i64::MAX, false).expect("read");
    assert_eq!(ranges(&r.records), vec![(5, 8)]);
}

#[test]
fn reads_at_edges_and_out_of_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    log.append(&b(5, 10), 0, 0).expect("append");
    let at_end = log.read(5, 1000, i64::MAX, true).expect("read at end");
    assert!(at_end.records.is_empty());
    assert_eq!(at_end.log_end_offset, 5);
    assert!(matches!(
        log.read(6, 1000, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange {
            offset: 6,
            log_start_offset: 0,
            log_end_offset: 5
        })
    ));
    log.advance_log_start_offset(2).expect("advance");
    assert!(matches!(
        log.read(1, 1000, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        ranges(&log.read(2, 1000, i64::MAX, true).expect("read").records),
        vec![(0, 4)]
    );
    // Reads never pass the upper bound (high watermark).
    assert!(log.read(2, 1000, 2, true).expect("read").records.is_empty());
    assert_eq!(
        ranges(&log.read(2, 1000, 3, true).expect("read").records),
        vec![(0, 4)]
    );
}

#[test]
fn max_bytes_cuts_at_batch_boundaries_and_min_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    let one = b(2, 0);
    let size = one.len();
    for _ in 0..4 {
        log.append(&one, 0, 0).expect("append");
    }
    let r = log
        .read(0, size * 2 + size / 2, i64::MAX, false)
        .expect("read");
    assert_eq!(ranges(&r.records), vec![(0, 1), (2, 3)]);
    assert_eq!(r.records.len(), size * 2);
    // KIP-74: the first batch is returned whole even when larger than max_bytes...
    let r = log.read(0, 10, i64::MAX, true).expect("read");
    assert_eq!(ranges(&r.records), vec![(0, 1)]);
    // ...but only with min_one.
    assert!(log
        .read(0, 10, i64::MAX, false)
        .expect("read")
        .records
        .is_empty());
    // Upper bound: batches with base offset >= 4 are withheld.
    let r = log.read(0, 1 << 20, 4, false).expect("read");
    assert_eq!(ranges(&r.records), vec![(0, 1), (2, 3)]);
}

#[test]
fn rolls_by_size_and_reads_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = b(3, 0);
    let config = LogConfig {
        segment_bytes: (one.len() * 2) as u64,
        ..cfg()
    };
    let log = open(dir.path(), config, false);
    for _ in 0..5 {
        log.append(&one, 0, 0).expect("append");
    }
    assert_eq!(log.segment_count(), 3);
    assert_eq!(log.segment_base_offsets(), vec![0, 6, 12]);
    assert_eq!(log.size_bytes(), (one.len() * 5) as u64);
    let has_all = |names: &[String], base: &str| {
        ["log", "index", "timeindex"]
            .iter()
            .all(|ext| names.contains(&format!("{base}.{ext}")))
    };
    let names = files(dir.path());
    for base in ["00000000000000000000", "00000000000000000006"] {
        assert!(
            has_all(&names, base),
            "{base} sealed with indexes: {names:?}"
        );
    }
    // The active segment's indexes are written when it is synced (no descriptor meanwhile).
    assert!(names.contains(&"00000000000000000012.log".to_string()));
    assert!(!names.contains(&"00000000000000000012.index".to_string()));
    log.flush().expect("flush");
    assert!(has_all(&files(dir.path()), "00000000000000000012"));
    assert_eq!(
        read_all(&log, 0),
        vec![(0, 2), (3, 5), (6, 8), (9, 11), (12, 14)]
    );
    // One segment per read.
    let r = log.read(3, 1 << 20, i64::MAX, false).expect("read");
    assert_eq!(ranges(&r.records), vec![(3, 5)]);
}

#[test]
fn rolls_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: 1000,
        ..cfg()
    };
    let log = open(dir.path(), config, false);
    log.append(&b(1, 10_000), 0, 10_000).expect("append");
    log.append(&b(1, 10_500), 0, 10_500).expect("append");
    assert_eq!(log.segment_count(), 1, "not due yet");
    log.append(&b(1, 11_001), 0, 11_001).expect("append");
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
    // enforce_retention also rolls when due.
    log.enforce_retention(12_500).expect("retention");
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 3]);
}

#[test]
fn retention_by_time_deletes_old_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = b(2, 0);
    let config = LogConfig {
        segment_bytes: one.len() as u64,
        retention_ms: 1000,
        ..cfg()
    };
    let log = open(dir.path(), config, false);
    for ts in [1000, 2000, 5000] {
        log.append(&b(2, ts), 0, ts).expect("append");
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 4]);
    assert_eq!(log.enforce_retention(3500).expect("retention"), 2);
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(log.segment_base_offsets(), vec![4]);
    assert!(!dir.path().join("00000000000000000000.log").exists());
    assert!(!dir.path().join("00000000000000000002.index").exists());
    assert!(matches!(
        log.read(0, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // Everything expired: the active segment is rolled and the log becomes empty.
    assert_eq!(log.enforce_retention(100_000).expect("retention"), 1);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (6, 6));
    assert_eq!(log.segment_base_offsets(), vec![6]);
    assert_eq!(log.size_bytes(), 0);
    let info = log
        .append(&b(1, 100_000), 0, 100_000)
        .expect("append after");
    assert_eq!(info.base_offset, 6);
}

#[test]
fn retention_by_bytes_deletes_oldest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = b(2, 0);
    let config = LogConfig {
        segment_bytes: one.len() as u64,
        retention_bytes: (one.len() * 2) as i64,
        ..cfg()
    };
    let log = open(dir.path(), config, false);
    for _ in 0..5 {
        log.append(&one, 0, 0).expect("append");
    }
    assert_eq!(log.enforce_retention(0).expect("retention"), 3);
    assert_eq!(log.segment_base_offsets(), vec![6, 8]);
    assert_eq!(log.log_start_offset(), 6);
    assert_eq!(log.size_bytes(), (one.len() * 2) as u64);
    assert_eq!(read_all(&log, 6), vec![(6, 7), (8, 9)]);
}

#[test]
fn offset_for_timestamp_inside_batches_for_every_codec() {
    for codec in ALL_CODECS {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(dir.path(), cfg(), false);
        // Offsets 0..4: timestamps out of order inside one batch.
        log.append(
            &batch(&BatchSpec::new(&[100, 300, 200, 250]).codec(codec)),
            0,
            0,
        )
        .expect("append");
        // Offsets 4..7.
        log.append(&batch(&BatchSpec::new(&[400, 350, 500]).codec(codec)), 0, 0)
            .expect("append");
        let at = |ts| {
            log.offset_for_timestamp(ts)
                .expect("lookup")
                .map(|t| (t.offset, t.timestamp))
        };
        assert_eq!(at(0), Some((0, 100)), "{codec:?}");
        assert_eq!(at(100), Some((0, 100)), "{codec:?}");
        assert_eq!(
            at(150),
            Some((1, 300)),
            "{codec:?}: first record with ts >= 150"
        );
        assert_eq!(at(301), Some((4, 400)), "{codec:?}");
        assert_eq!(at(360), Some((4, 400)), "{codec:?}");
        assert_eq!(at(450), Some((6, 500)), "{codec:?}");
        assert_eq!(at(501), None, "{codec:?}");
        let max = log.max_timestamp().expect("max").expect("non-empty");
        assert_eq!((max.offset, max.timestamp), (6, 500), "{codec:?}");
    }
}

#[test]
fn timestamp_lookups_use_the_time_index_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = b(2, 0);
    let config = LogConfig {
        segment_bytes: (one.len() * 10) as u64,
        ..cfg()
    };
    let log = open(dir.path(), config, false);
    // 30 batches of 2 records, timestamps 1000 + 10 * offset.
    for i in 0..30i64 {
        log.append(
            &batch(&BatchSpec::new(&[1000 + 20 * i, 1010 + 20 * i])),
            0,
            0,
        )
        .expect("append");
    }
    assert_eq!(log.segment_count(), 3);
    for offset in 0..60i64 {
        let ts = 1000 + 10 * offset;
        let found = log
            .offset_for_timestamp(ts)
            .expect("lookup")
            .expect("found");
        assert_eq!((found.offset, found.timestamp), (offset, ts));
        let found = log
            .offset_for_timestamp(ts - 5)
            .expect("lookup")
            .expect("found");
        assert_eq!(found.offset, offset, "between timestamps");
    }
    let max = log.max_timestamp().expect("max").expect("some");
    assert_eq!((max.offset, max.timestamp), (59, 1590));
}

#[test]
fn max_timestamp_picks_first_record_on_ties() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    assert_eq!(log.max_timestamp().expect("max"), None);
    log.append(&batch(&BatchSpec::new(&[5, 90, 7])), 0, 0)
        .expect("append");
    log.append(&batch(&BatchSpec::new(&[90, 1])), 0, 0)
        .expect("append");
    let max = log.max_timestamp().expect("max").expect("some");
    assert_eq!((max.offset, max.timestamp), (1, 90));
}

#[test]
fn log_append_time_rewrites_timestamps_with_valid_crc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        log_append_time: true,
        ..cfg()
    };
    let log = open(dir.path(), config, false);
    let info = log.append(&b(3, 100), 0, 777_000).expect("append");
    assert_eq!(info.log_append_time, 777_000);
    assert_eq!(info.batches[0].max_timestamp, 777_000);
    let r = log.read(0, 1 << 20, i64::MAX, false).expect("read");
    let parts = split_and_validate(&r.records).expect("stored batch has a valid CRC");
    let h = parts[0].1;
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 777_000);
    let found = log
        .offset_for_timestamp(500)
        .expect("lookup")
        .expect("found");
    assert_eq!((found.offset, found.timestamp), (0, 777_000));
}

#[test]
fn invalid_input_is_rejected_and_nothing_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    let good = b(2, 0);
    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let mut bad_magic = good.clone();
    bad_magic[MAGIC_OFFSET] = 1;
    let mut lying_len = good.clone();
    lying_len[8..12].copy_from_slice(&((good.len() as i32) + 50).to_be_bytes());
    let truncated = good[..good.len() - 3].to_vec();
    type IsExpected = fn(&StorageError) -> bool;
    let cases: Vec<(Vec<u8>, IsExpected)> = vec![
        (bad_crc, |e| matches!(e, StorageError::CorruptMessage(_))),
        (bad_magic, |e| matches!(e, StorageError::InvalidRecord(_))),
        (lying_len, |e| matches!(e, StorageError::CorruptMessage(_))),
        (truncated, |e| matches!(e, StorageError::CorruptMessage(_))),
        (Vec::new(), |e| matches!(e, StorageError::InvalidRecord(_))),
    ];
    for (bad, expected) in cases {
        // A good batch followed by a bad one: the whole call fails, nothing is written.
        let mut set = good.clone();
        set.extend_from_slice(&bad);
        let only_bad = log.append(&bad, 0, 0).expect_err("bad batch rejected");
        assert!(expected(&only_bad), "{only_bad:?}");
        if !bad.is_empty() {
            assert!(log.append(&set, 0, 0).is_err());
        }
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(log.size_bytes(), 0);
    }
    let small = LogConfig {
        max_message_bytes: (good.len() - 1) as i32,
        ..cfg()
    };
    log.update_config(small);
    let err = log.append(&good, 0, 0).expect_err("too large");
    assert_eq!(
        err.error_code(),
        kafka_protocol::ResponseError::MessageTooLarge
    );
    log.update_config(LogConfig {
        segment_bytes: (good.len() - 1) as u64,
        ..cfg()
    });
    let err = log.append(&good, 0, 0).expect_err("larger than a segment");
    assert_eq!(
        err.error_code(),
        kafka_protocol::ResponseError::RecordListTooLarge
    );
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(
        std::fs::metadata(dir.path().join("00000000000000000000.log"))
            .expect("meta")
            .len(),
        0
    );
}

#[test]
fn recovery_truncates_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = b(3, 0);
    {
        let log = open(dir.path(), cfg(), false);
        for _ in 0..3 {
            log.append(&one, 0, 0).expect("append");
        }
    }
    let path = dir.path().join("00000000000000000000.log");
    let full = (one.len() * 3) as u64;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_len(full - 10).expect("tear the last batch");
    drop(f);
    let log = open(dir.path(), cfg(), false);
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(
        std::fs::metadata(&path).expect("meta").len(),
        (one.len() * 2) as u64
    );
    assert_eq!(read_all(&log, 0), vec![(0, 2), (3, 5)]);
    let info = log.append(&one, 0, 0).expect("append after recovery");
    assert_eq!(info.base_offset, 6);
    assert_eq!(read_all(&log, 0), vec![(0, 2), (3, 5), (6, 8)]);
}

#[test]
fn recovery_drops_everything_from_a_corrupt_batch_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = b(2, 0);
    let config = LogConfig {
        segment_bytes: (one.len() * 4) as u64,
        ..cfg()
    };
    {
        let log = open(dir.path(), config, false);
        for _ in 0..7 {
            log.append(&one, 0, 0).expect("append");
        }
        assert_eq!(log.segment_base_offsets(), vec![0, 8]);
    }
    // Corrupt the CRC of the second batch of the last segment (offsets 10-11).
    let path = dir.path().join("00000000000000000008.log");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[one.len() + CRC_OFFSET] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write");
    let log = open(dir.path(), config, false);
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(
        read_all(&log, 0),
        vec![(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    );
    assert_eq!(log.append(&one, 0, 0).expect("append").base_offset, 10);
}

#[test]
fn missing_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = b(2, 0);
    let config = LogConfig {
        segment_bytes: (one.len() * 10) as u64,
        ..cfg()
    };
    let mut originals = Vec::new();
    {
        let log = open(dir.path(), config, false);
        for i in 0..15i64 {
            log.append(&batch(&BatchSpec::new(&[100 * i, 100 * i + 50])), 0, 0)
                .expect("append");
        }
        log.close().expect("close");
        for name in [
            "00000000000000000000.index",
            "00000000000000000000.timeindex",
        ] {
            let bytes = std::fs::read(dir.path().join(name)).expect("read index");
            assert!(!bytes.is_empty(), "{name} has entries");
            originals.push((name, bytes));
        }
    }
    for (name, _) in &originals {
        std::fs::remove_file(dir.path().join(name)).expect("remove");
    }
    // An orphan index and a leftover temp file are removed.
    std::fs::write(dir.path().join("00000000000000000099.index"), [0u8; 8]).expect("orphan");
    std::fs::write(dir.path().join("leader-epoch-checkpoint.tmp"), b"x").expect("tmp");
    let log = open(dir.path(), config, true);
    for (name, bytes) in &originals {
        assert_eq!(
            &std::fs::read(dir.path().join(name)).expect("rebuilt"),
            bytes,
            "{name}"
        );
    }
    let names = files(dir.path());
    assert!(!names
        .iter()
        .any(|n| n.starts_with("00000000000000000099") || n.ends_with(".tmp")));
    for offset in 0..30i64 {
        let ts = 100 * (offset / 2) + 50 * (offset % 2);
        let found = log
            .offset_for_timestamp(ts)
            .expect("lookup")
            .expect("found");
        assert_eq!(found.offset, offset);
        let r = log.read(offset, 1, i64::MAX, true).expect("read");
        assert_eq!(
            ranges(&r.records),
            vec![(offset - offset % 2, offset - offset % 2 + 1)]
        );
    }
    // A torn (odd-sized) time index is rebuilt too.
    std::fs::write(dir.path().join("00000000000000000000.timeindex"), [1u8; 7]).expect("tear");
    drop(log);
    let log = open(dir.path(), config, true);
    assert_eq!(
        std::fs::read(dir.path().join("00000000000000000000.timeindex")).expect("rebuilt"),
        originals[1].1
    );
    assert_eq!(
        log.offset_for_timestamp(450)
            .expect("lookup")
            .map(|t| t.offset),
        Some(9)
    );
}

#[test]
fn clean_reopen_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = b(2, 0);
    let config = LogConfig {
        segment_bytes: (one.len() * 3) as u64,
        ..cfg()
    };
    let before;
    {
        let log = open(dir.path(), config, false);
        for i in 0..8i64 {
            log.append(&b(2, 1000 + i), i as i32 / 3, 0)
                .expect("append");
        }
        before = read_all(&log, 0);
        log.close().expect("close");
    }
    let log = open(dir.path(), config, true);
    assert_eq!(log.log_end_offset(), 16);
    assert_eq!(log.segment_count(), 3);
    assert_eq!(read_all(&log, 0), before);
    assert_eq!(log.latest_epoch(), Some(2));
    let max = log.max_timestamp().expect("max").expect("some");
    assert_eq!((max.offset, max.timestamp), (15, 1008));
    assert_eq!(log.append(&one, 2, 0).expect("append").base_offset, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_until_with_many_concurrent_callers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(dir.path(), cfg(), false));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let info = log.append(&b(1, i), 0, 0).expect("append");
            log.flush_until(info.last_offset + 1).await.expect("flush");
            assert!(log.durable_offset() > info.last_offset);
            info.last_offset
        }));
    }
    let mut offsets = Vec::new();
    for t in tasks {
        offsets.push(t.await.expect("task"));
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..64).collect::<Vec<i64>>());
    assert_eq!(log.durable_offset(), 64);
    let syncs = log.group_commit_syncs();
    eprintln!("64 concurrent flush_until callers shared {syncs} fdatasyncs");
    assert!(
        (1..64).contains(&syncs),
        "group commit shares fdatasyncs, got {syncs}"
    );
    // Nothing to wait for: resolves at once, also for offsets beyond the end.
    log.flush_until(1000).await.expect("flush");
}

#[test]
fn advance_log_start_offset_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = b(2, 0);
    let config = LogConfig {
        segment_bytes: one.len() as u64,
        ..cfg()
    };
    {
        let log = open(dir.path(), config, false);
        for _ in 0..4 {
            log.append(&one, 0, 0).expect("append");
        }
        assert!(matches!(
            log.advance_log_start_offset(9),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.advance_log_start_offset(5).expect("advance");
        assert_eq!(log.log_start_offset(), 5);
        assert_eq!(
            log.segment_base_offsets(),
            vec![4, 6],
            "segments wholly below 5 deleted"
        );
        log.advance_log_start_offset(3)
            .expect("moving back is a no-op");
        assert_eq!(log.log_start_offset(), 5);
    }
    let log = open(dir.path(), config, false);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 8));
    assert!(matches!(
        log.read(4, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log, 5), vec![(4, 5), (6, 7)]);
    // Advancing to the end empties the log; an empty dir reopens at the persisted offset.
    log.advance_log_start_offset(8).expect("advance to end");
    assert_eq!(log.segment_base_offsets(), vec![8]);
    drop(log);
    for f in files(dir.path()) {
        if f.ends_with(".log") || f.ends_with("index") {
            std::fs::remove_file(dir.path().join(f)).expect("rm");
        }
    }
    let log = open(dir.path(), config, false);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (8, 8));
    assert_eq!(log.segment_base_offsets(), vec![8]);
}

#[test]
fn leader_epochs_are_checkpointed() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path(), cfg(), false);
        assert_eq!(log.latest_epoch(), None);
        assert_eq!(log.epoch_end_offset(0), (-1, -1));
        log.append(&b(2, 0), 0, 0).expect("append"); // 0-1 epoch 0
        log.append(&b(2, 0), 0, 0).expect("append"); // 2-3 epoch 0
        log.append(&b(3, 0), 2, 0).expect("append"); // 4-6 epoch 2
        log.append(&b(1, 0), 5, 0).expect("append"); // 7 epoch 5
        assert_eq!(log.latest_epoch(), Some(5));
        assert_eq!(log.epoch_end_offset(0), (0, 4));
        assert_eq!(log.epoch_end_offset(1), (0, 4));
        assert_eq!(log.epoch_end_offset(2), (2, 7));
        assert_eq!(log.epoch_end_offset(5), (5, 8));
        assert_eq!(log.epoch_end_offset(6), (-1, -1));
    }
    let text = std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).expect("file");
    assert_eq!(text, "0\n3\n0 0\n2 4\n5 7\n");
    let log = open(dir.path(), cfg(), true);
    assert_eq!(log.epoch_end_offset(2), (2, 7));
    let r = log.read(7, 1000, i64::MAX, true).expect("read");
    let h = BatchHeader::parse(&r.records).expect("header");
    assert_eq!(h.partition_leader_epoch, 5);
}

#[test]
fn garbage_segment_files_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path(), cfg(), false);
        log.append(
            &batch(&BatchSpec::new(&[1, 2]).codec(Compression::Gzip)),
            0,
            0,
        )
        .expect("append");
    }
    let path = dir.path().join("00000000000000000000.log");
    let good = std::fs::read(&path).expect("read");
    for seed in 0..40u8 {
        let mut junk = good.clone();
        for (i, byte) in junk.iter_mut().enumerate() {
            if (i as u8).wrapping_mul(31).wrapping_add(seed) % 7 == 0 {
                *byte = byte.wrapping_add(seed);
            }
        }
        junk.extend((0..seed).map(|i| i.wrapping_mul(seed)));
        std::fs::write(&path, &junk).expect("write");
        for clean in [true, false] {
            if let Ok(log) = PartitionLog::open(dir.path(), cfg(), clean) {
                let leo = log.log_end_offset();
                let _ = log.read(0, 1 << 16, i64::MAX, true);
                let _ = log.offset_for_timestamp(0);
                let _ = log.max_timestamp();
                if !clean {
                    assert!(leo <= 2, "recovered log holds at most the valid batch");
                }
            }
        }
    }
}

#[test]
fn partition_log_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<PartitionLog>();
}

#[test]
fn segment_files_are_a_bounded_cache_and_indexes_survive_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = b(2, 0);
    let config = LogConfig {
        segment_bytes: (one.len() * 2) as u64,
        ..cfg()
    };
    let files = Arc::new(OpenFiles::new(2));
    let health = Arc::new(LogDirHealth::new(dir.path()));
    let logs: Vec<PartitionLog> = (0..4)
        .map(|i| {
            PartitionLog::open_in(
                &dir.path().join(format!("t-{i}")),
                config,
                false,
                health.clone(),
                files.clone(),
            )
            .expect("open")
        })
        .collect();
    for log in &logs {
        for i in 0..6i64 {
            log.append(&b(2, 100 * i), 0, 0).expect("append");
        }
    }
    // Four active segments with unsynced writes are pinned; at most 2 others stay open.
    assert!((4..=2 + 4).contains(&files.open_count()));
    for log in &logs {
        log.flush().expect("flush");
    }
    assert_eq!(files.open_count(), 2, "synced handles may be closed");
    // Every segment of every log reads (reopened on demand), timestamps included.
    for log in &logs {
        assert_eq!(read_all(log, 0).len(), 6);
        let found = log
            .offset_for_timestamp(301)
            .expect("lookup")
            .expect("found");
        assert_eq!(found.offset, 7);
        assert!(files.open_count() <= 2 + 1);
    }
    let expected = read_all(&logs[0], 0);
    // Crash: the active segment's newest index entries were never written.
    let log = logs.into_iter().next().expect("log");
    log.append(&b(2, 700), 0, 0).expect("append");
    drop(log);
    let log = open(&dir.path().join("t-0"), config, false);
    let mut all = expected.clone();
    all.push((12, 13));
    assert_eq!(read_all(&log, 0), all);
    for (offset, ts) in [(0, 0), (7, 301), (12, 700), (13, 701)] {
        let r = log.read(offset, 1, i64::MAX, true).expect("read");
        assert_eq!(ranges(&r.records)[0].0, offset - offset % 2);
        let found = log
            .offset_for_timestamp(ts)
            .expect("lookup")
            .expect("found");
        assert_eq!(found.offset, offset, "timestamp {ts}");
    }
}

#[test]
fn nowait_reads_only_what_is_cached_and_open() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().expect("tempdir");
    let one = b(2, 0);
    let config = LogConfig {
        segment_bytes: (one.len() * 3) as u64,
        ..cfg()
    };
    let files = Arc::new(OpenFiles::new(1));
    let health = Arc::new(LogDirHealth::new(dir.path()));
    let log =
        PartitionLog::open_in(&dir.path().join("t-0"), config, false, health, files).expect("open");
    for i in 0..9i64 {
        log.append(&b(2, 100 * i), 0, 0).expect("append");
    }
    log.flush().expect("flush");
    assert!(log.segment_count() >= 3);
    // Recent data: cached and open, so the no-wait read answers what the blocking one does.
    let hot = log.read_region(16, 1 << 20, i64::MAX, true).expect("read");
    let r = log
        .read_region_nowait(16, 1 << 20, i64::MAX, true)
        .expect("nowait");
    let (a, b) = (hot.region.expect("region"), r.region.expect("region"));
    assert_eq!(
        (a.position, a.len, a.last_offset),
        (b.position, b.len, b.last_offset)
    );
    assert!(b.cached());
    // The oldest segment's file is closed (one handle cached): no-wait refuses to open it.
    assert!(matches!(
        log.read_region_nowait(0, 1 << 20, i64::MAX, true),
        Err(StorageError::WouldBlock)
    ));
    // Open but evicted from the page cache: no-wait refuses to wait for the disk.
    let cold = log.read_region(0, 1 << 20, i64::MAX, true).expect("read");
    let region = cold.region.expect("region");
    // The kernel may bring pages back between the eviction and the read (readahead for the
    // other tests' files running meanwhile): evicted again, up to a few times.
    let refused = (0..20).any(|_| {
        // SAFETY: plain syscall on a valid descriptor (drops clean pages).
        unsafe { libc::posix_fadvise(region.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        !region.cached()
            && matches!(
                log.read_region_nowait(0, 1 << 20, i64::MAX, true),
                Err(StorageError::WouldBlock)
            )
    });
    assert!(refused, "a no-wait read of evicted data must refuse");
    // Prefetched: the no-wait read works and the data is cached.
    region.prefetch().expect("prefetch");
    assert!(region.cached());
    let again = log
        .read_region_nowait(0, 1 << 20, i64::MAX, true)
        .expect("nowait");
    let g = again.region.expect("region");
    assert_eq!((g.position, g.len), (region.position, region.len));
    assert_eq!(g.read().expect("read"), region.read().expect("read"));
}
