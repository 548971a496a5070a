//! Behaviour tests of idempotent-producer state through `PartitionLog`: what an idempotent or
//! transactional producer sees, before and after a restart.

use std::path::Path;

use super::testutil::{batch, BatchSpec};
use super::*;

const PID: i64 = 1000;

fn cfg() -> LogConfig {
    LogConfig {
        index_interval_bytes: 1,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig, clean: bool) -> PartitionLog {
    PartitionLog::open(dir, config, clean).expect("open log")
}

/// A batch of `n` records from producer (`pid`, `epoch`) starting at sequence `seq`, stamped
/// `ts`, `ts + 1`, ...
fn pb(pid: i64, epoch: i16, seq: i32, n: usize, ts: i64) -> Vec<u8> {
    let stamps: Vec<i64> = (0..n as i64).map(|i| ts + i).collect();
    batch(&BatchSpec::new(&stamps).producer(pid, epoch, seq))
}

fn txn(pid: i64, epoch: i16, seq: i32, n: usize, ts: i64) -> Vec<u8> {
    let stamps: Vec<i64> = (0..n as i64).map(|i| ts + i).collect();
    batch(
        &BatchSpec::new(&stamps)
            .producer(pid, epoch, seq)
            .transactional(),
    )
}

/// A COMMIT marker of producer (`pid`, `epoch`) stamped `ts`.
fn marker(pid: i64, epoch: i16, ts: i64) -> Vec<u8> {
    super::control::end_txn_marker(pid, epoch, true, 0, ts)
}

fn offsets(info: &AppendInfo) -> (i64, i64, bool) {
    (info.base_offset, info.last_offset, info.duplicate)
}

fn snapshots(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snapshot"))
        .collect();
    v.sort();
    v
}

/// Appends 3 batches of producer PID epoch 0: seqs 0-2, 3-4, 5-8 at offsets 0-2, 3-4, 5-8.
fn three_batches(log: &PartitionLog) {
    assert_eq!(
        offsets(&log.append(&pb(PID, 0, 0, 3, 100), 0, 0).expect("a")),
        (0, 2, false)
    );
    assert_eq!(
        offsets(&log.append(&pb(PID, 0, 3, 2, 200), 0, 0).expect("b")),
        (3, 4, false)
    );
    assert_eq!(
        offsets(&log.append(&pb(PID, 0, 5, 4, 300), 0, 0).expect("c")),
        (5, 8, false)
    );
}

/// After `three_batches`: retries are duplicates, the next sequence is 9, gaps are rejected.
fn assert_three_batches_state(log: &PartitionLog) {
    assert_eq!(log.producer_state(PID), Some((0, 8, 303, None)));
    let leo = log.log_end_offset();
    let dup = log.append(&pb(PID, 0, 3, 2, 200), 0, 0).expect("retry");
    assert_eq!(offsets(&dup), (3, 4, true));
    assert_eq!(log.log_end_offset(), leo, "a duplicate writes nothing");
    assert!(matches!(
        log.append(&pb(PID, 0, 10, 1, 400), 0, 0),
        Err(StorageError::OutOfOrderSequence {
            expected: 9,
            got: 10,
            ..
        })
    ));
    let next = log.append(&pb(PID, 0, 9, 1, 400), 0, 0).expect("next");
    assert_eq!(offsets(&next), (leo, leo, false));
}

#[test]
fn in_order_sequences_retries_and_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    three_batches(&log);
    let size = log.size_bytes();
    // Retrying any of the last batches answers with the original offsets and writes nothing.
    let dup = log.append(&pb(PID, 0, 0, 3, 100), 0, 0).expect("retry");
    assert_eq!(offsets(&dup), (0, 2, true));
    assert_eq!(dup.batches.len(), 1);
    assert_eq!(
        (dup.batches[0].base_offset, dup.batches[0].last_offset),
        (0, 2)
    );
    assert_eq!(log.size_bytes(), size);
    assert_eq!(log.log_end_offset(), 9);
    // Same first sequence but another range is not a duplicate: out of order.
    assert!(matches!(
        log.append(&pb(PID, 0, 3, 1, 200), 0, 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    // A gap is rejected and writes nothing.
    let gap = log.append(&pb(PID, 0, 11, 1, 400), 0, 0);
    assert!(matches!(gap, Err(StorageError::OutOfOrderSequence { .. })));
    assert_eq!(gap.expect_err("gap").error_code().code(), 45);
    assert_eq!(log.size_bytes(), size);
    assert_three_batches_state(&log);
    // Batches without a producer id are not tracked.
    let plain = log
        .append(&batch(&BatchSpec::new(&[1, 2])), 0, 0)
        .expect("plain");
    assert!(!plain.duplicate);
    assert_eq!(log.active_producers().len(), 1);
}

#[test]
fn several_batches_in_one_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    // Two batches of one producer in one request chain their sequences.
    let mut two = pb(PID, 0, 0, 2, 10);
    two.extend_from_slice(&pb(PID, 0, 2, 2, 20));
    assert_eq!(
        offsets(&log.append(&two, 0, 0).expect("two")),
        (0, 3, false)
    );
    // Both again: a duplicate of both, the original offsets.
    let dup = log.append(&two, 0, 0).expect("retry both");
    assert_eq!(offsets(&dup), (0, 3, true));
    assert_eq!(dup.batches.len(), 2);
    // A duplicate among new batches is DUPLICATE_SEQUENCE_NUMBER and nothing is written.
    let mut mixed = pb(PID, 0, 2, 2, 20);
    mixed.extend_from_slice(&pb(PID, 0, 4, 1, 30));
    let err = log.append(&mixed, 0, 0).expect_err("mixed");
    assert!(matches!(err, StorageError::DuplicateSequence { .. }));
    assert_eq!(err.error_code().code(), 46);
    assert_eq!(log.log_end_offset(), 4);
    // A gap in the second batch rejects the whole request.
    let mut gap = pb(PID, 0, 4, 1, 30);
    gap.extend_from_slice(&pb(PID, 0, 9, 1, 40));
    assert!(matches!(
        log.append(&gap, 0, 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.producer_state(PID).map(|s| s.1), Some(3));
}

#[test]
fn epochs_fence_and_reset_sequences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    log.append(&pb(PID, 3, 0, 2, 10), 0, 0).expect("epoch 3");
    let old = log
        .append(&pb(PID, 2, 2, 1, 20), 0, 0)
        .expect_err("old epoch");
    assert!(matches!(
        old,
        StorageError::InvalidProducerEpoch {
            epoch: 2,
            current: 3,
            ..
        }
    ));
    assert_eq!(old.error_code().code(), 47);
    // A new epoch must start at sequence 0.
    assert!(matches!(
        log.append(&pb(PID, 4, 5, 1, 20), 0, 0),
        Err(StorageError::OutOfOrderSequence {
            expected: 0,
            got: 5,
            ..
        })
    ));
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(
        offsets(&log.append(&pb(PID, 4, 0, 1, 20), 0, 0).expect("epoch 4")),
        (2, 2, false)
    );
    assert_eq!(log.producer_state(PID), Some((4, 0, 20, None)));
    // The previous epoch is now fenced, even for a retry of its batch.
    assert!(matches!(
        log.append(&pb(PID, 3, 0, 2, 10), 0, 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    // The new epoch's batches continue in sequence.
    assert!(log.append(&pb(PID, 4, 1, 1, 30), 0, 0).is_ok());
}

#[test]
fn unknown_producer_accepts_any_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    assert_eq!(log.producer_state(PID), None);
    assert_eq!(
        offsets(&log.append(&pb(PID, 0, 42, 2, 10), 0, 0).expect("seq 42")),
        (0, 1, false)
    );
    assert_eq!(log.producer_state(PID), Some((0, 43, 11, None)));
    assert!(matches!(
        log.append(&pb(PID, 0, 0, 1, 20), 0, 0),
        Err(StorageError::OutOfOrderSequence { expected: 44, .. })
    ));
    assert!(log.append(&pb(PID, 0, 44, 1, 20), 0, 0).is_ok());
    // Another producer id is independent.
    assert!(log.append(&pb(PID + 1, 7, 1000, 1, 20), 0, 0).is_ok());
    assert_eq!(log.active_producers().len(), 2);
}

#[test]
fn sequence_numbers_wrap_around() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    // Sequences i32::MAX - 1, i32::MAX, 0: the last sequence wraps to 0.
    log.append(&pb(PID, 0, i32::MAX - 1, 3, 10), 0, 0)
        .expect("wrapping batch");
    assert_eq!(log.producer_state(PID).map(|s| s.1), Some(0));
    let dup = log
        .append(&pb(PID, 0, i32::MAX - 1, 3, 10), 0, 0)
        .expect("retry");
    assert!(dup.duplicate);
    log.append(&pb(PID, 0, 1, 1, 20), 0, 0).expect("after wrap");
    // Exactly at the edge: last sequence i32::MAX, next is 0.
    log.append(&pb(PID + 1, 0, i32::MAX - 1, 2, 10), 0, 0)
        .expect("ends at max");
    assert_eq!(log.producer_state(PID + 1).map(|s| s.1), Some(i32::MAX));
    assert!(matches!(
        log.append(&pb(PID + 1, 0, i32::MAX, 1, 20), 0, 0),
        Err(StorageError::OutOfOrderSequence { expected: 0, .. })
    ));
    log.append(&pb(PID + 1, 0, 0, 1, 20), 0, 0)
        .expect("wraps to 0");
}

#[test]
fn negative_sequence_with_producer_id_is_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    assert!(matches!(
        log.append(&pb(PID, 0, -1, 1, 10), 0, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn state_survives_clean_reopen_through_the_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path(), cfg(), false);
        three_batches(&log);
        log.close().expect("close");
    }
    assert_eq!(snapshots(dir.path()), vec!["00000000000000000009.snapshot"]);
    let log = open(dir.path(), cfg(), true);
    assert_three_batches_state(&log);
}

#[test]
fn state_is_rebuilt_from_the_log_after_an_unclean_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path(), cfg(), false);
        three_batches(&log);
        // Dropped without close: no snapshot.
    }
    assert!(snapshots(dir.path()).is_empty());
    let log = open(dir.path(), cfg(), false);
    assert_three_batches_state(&log);
    // A clean open without a snapshot also rebuilds from the log.
    drop(log);
    let log = open(dir.path(), cfg(), true);
    assert_eq!(log.producer_state(PID), Some((0, 9, 400, None)));
}

#[test]
fn snapshot_at_roll_plus_tail_after_an_unclean_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = pb(PID, 0, 0, 2, 10);
    let config = LogConfig {
        segment_bytes: (one.len() * 2) as u64,
        ..cfg()
    };
    {
        let log = open(dir.path(), config, false);
        // Batches of 2 records, 2 per segment: rolls at offsets 4, 8, 12, 16.
        for i in 0..9 {
            let info = log
                .append(&pb(PID, 0, 2 * i, 2, 100 + i64::from(i)), 0, 0)
                .expect("append");
            assert_eq!(info.base_offset, 2 * i64::from(i));
            if i == 2 {
                assert_eq!(
                    snapshots(dir.path()),
                    vec!["00000000000000000004.snapshot"],
                    "snapshot written at roll"
                );
            }
        }
        assert_eq!(log.segment_base_offsets(), vec![0, 4, 8, 12, 16]);
        // Only the 2 newest snapshots are kept.
        assert_eq!(
            snapshots(dir.path()),
            vec![
                "00000000000000000012.snapshot",
                "00000000000000000016.snapshot"
            ]
        );
    }
    // Reopen after a crash: snapshot 16 + the tail batch at 16..17.
    let log = open(dir.path(), config, false);
    assert_eq!(log.producer_state(PID), Some((0, 17, 109, None)));
    let dup = log.append(&pb(PID, 0, 16, 2, 108), 0, 0).expect("retry");
    assert_eq!(offsets(&dup), (16, 17, true));
    // Batches cached before the snapshot are still known (all 5 are snapshotted).
    let dup = log
        .append(&pb(PID, 0, 8, 2, 104), 0, 0)
        .expect("older retry");
    assert_eq!(offsets(&dup), (8, 9, true));
    assert!(log.append(&pb(PID, 0, 18, 1, 110), 0, 0).is_ok());
}

#[test]
fn torn_snapshot_is_ignored_and_state_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path(), cfg(), false);
        three_batches(&log);
        log.close().expect("close");
    }
    let path = dir.path().join("00000000000000000009.snapshot");
    let len = std::fs::metadata(&path).expect("snapshot").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open snapshot");
    f.set_len(len - 7).expect("tear");
    drop(f);
    for clean in [true, false] {
        let log = open(dir.path(), cfg(), clean);
        assert!(
            !snapshots(dir.path()).contains(&"00000000000000000009.snapshot".to_string()),
            "the torn snapshot is deleted"
        );
        assert_eq!(log.producer_state(PID), Some((0, 8, 303, None)));
        assert!(
            log.append(&pb(PID, 0, 5, 4, 300), 0, 0)
                .expect("retry")
                .duplicate
        );
    }
    // A snapshot full of garbage is ignored as well.
    std::fs::write(&path, b"not a snapshot at all").expect("garbage");
    let log = open(dir.path(), cfg(), true);
    assert_three_batches_state(&log);
}

#[test]
fn recovery_truncation_drops_newer_snapshots_and_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last = pb(PID, 0, 5, 4, 300);
    {
        let log = open(dir.path(), cfg(), false);
        three_batches(&log);
        log.close().expect("close");
    }
    // Tear the last batch of the log: recovery truncates to offset 5.
    let seg = dir.path().join("00000000000000000000.log");
    let size = std::fs::metadata(&seg).expect("log").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open log");
    f.set_len(size - 3).expect("tear");
    drop(f);
    let log = open(dir.path(), cfg(), false);
    assert_eq!(log.log_end_offset(), 5);
    assert!(
        snapshots(dir.path()).is_empty(),
        "snapshot 9 > LEO 5 is deleted"
    );
    assert_eq!(log.producer_state(PID), Some((0, 4, 201, None)));
    // The lost batch is appended anew (not a duplicate) at the new end.
    assert_eq!(
        offsets(&log.append(&last, 0, 0).expect("re-append")),
        (5, 8, false)
    );
}

#[test]
fn producers_expire_after_producer_id_expiration_ms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: -1,
        producer_id_expiration_ms: 1000,
        ..cfg()
    };
    let log = open(dir.path(), config, false);
    log.append(&pb(PID, 0, 0, 1, 10_000), 0, 10_000)
        .expect("old producer");
    log.append(&pb(PID + 1, 0, 0, 1, 10_800), 0, 10_800)
        .expect("recent producer");
    log.enforce_retention(10_900).expect("retention");
    assert_eq!(log.active_producers().len(), 2);
    log.enforce_retention(11_000).expect("retention");
    assert_eq!(log.producer_state(PID), None);
    assert!(log.producer_state(PID + 1).is_some());
    assert_eq!(log.segment_count(), 1, "no segment deleted");
    // An expired producer is unknown again: any sequence is accepted.
    assert!(log.append(&pb(PID, 0, 77, 1, 11_000), 0, 11_000).is_ok());
}

#[test]
fn retention_drops_producers_and_snapshots_of_deleted_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = pb(PID, 0, 0, 2, 10);
    let config = LogConfig {
        segment_bytes: one.len() as u64,
        retention_bytes: (one.len() * 2) as i64,
        producer_id_expiration_ms: -1,
        ..cfg()
    };
    let log = open(dir.path(), config, false);
    log.append(&pb(PID, 0, 0, 2, 10), 0, 0).expect("p1");
    log.append(&pb(PID + 1, 0, 0, 2, 10), 0, 0).expect("p2");
    log.append(&pb(PID + 2, 0, 0, 2, 10), 0, 0).expect("p3");
    log.append(&pb(PID + 2, 0, 2, 2, 10), 0, 0)
        .expect("p3 again");
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 4, 6]);
    assert_eq!(log.enforce_retention(20).expect("retention"), 2);
    assert_eq!(log.log_start_offset(), 4);
    // Producers whose batches are all gone have no state any more.
    assert_eq!(log.producer_state(PID), None);
    assert_eq!(log.producer_state(PID + 1), None);
    assert_eq!(log.producer_state(PID + 2).map(|s| s.1), Some(3));
    assert!(snapshots(dir.path())
        .iter()
        .all(|s| s.as_str() >= "00000000000000000004.snapshot"));
    // DeleteRecords past a producer's last batch forgets it too.
    log.advance_log_start_offset(8).expect("advance");
    assert_eq!(log.producer_state(PID + 2), None);
}

#[test]
fn transactions_track_first_unstable_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path(), cfg(), false);
        assert_eq!(log.first_unstable_offset(), None);
        log.append(&txn(PID, 0, 0, 2, 10), 0, 0).expect("txn 1");
        log.append(&pb(PID + 5, 0, 0, 1, 10), 0, 0)
            .expect("non-transactional");
        log.append(&txn(PID + 1, 0, 0, 1, 10), 0, 0).expect("txn 2");
        log.append(&txn(PID, 0, 2, 1, 10), 0, 0)
            .expect("txn 1 again");
        assert_eq!(log.first_unstable_offset(), Some(0));
        assert_eq!(log.producer_state(PID), Some((0, 2, 10, Some(0))));
        assert_eq!(log.producer_state(PID + 5).map(|s| s.3), Some(None));
    }
    // Rebuilt from the log after a crash: the same.
    let log = open(dir.path(), cfg(), false);
    assert_eq!(log.first_unstable_offset(), Some(0));
    // A marker of an older epoch is fenced.
    assert!(matches!(
        log.append(&marker(PID + 1, -1, 20), 0, 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    // The commit marker of producer 1 ends its transaction: producer 2's is the first open one.
    log.append(&marker(PID, 0, 20), 0, 0).expect("marker 1");
    assert_eq!(log.producer_state(PID), Some((0, 2, 20, None)));
    assert_eq!(log.first_unstable_offset(), Some(3));
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), cfg(), true);
    assert_eq!(log.first_unstable_offset(), Some(3));
    // A marker with a bumped epoch (coordinator abort) ends it and fences the old epoch.
    log.append(&marker(PID + 1, 1, 30), 0, 0).expect("marker 2");
    assert_eq!(log.first_unstable_offset(), None);
    assert!(matches!(
        log.append(&txn(PID + 1, 0, 1, 1, 40), 0, 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    assert!(matches!(
        log.append(&txn(PID + 1, 1, 1, 1, 40), 0, 0),
        Err(StorageError::OutOfOrderSequence { expected: 0, .. })
    ));
    log.append(&txn(PID + 1, 1, 0, 1, 40), 0, 0)
        .expect("new transaction");
    assert_eq!(log.first_unstable_offset(), Some(log.log_end_offset() - 1));
}
