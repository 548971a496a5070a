//! Behaviour tests of transactions through `PartitionLog` (KIP-98): markers, the
//! aborted-transaction index, the first unstable offset, before and after a restart.

use std::path::{Path, PathBuf};

use super::control::end_txn_marker;
use super::testutil::{batch, BatchSpec};
use super::*;

const PID: i64 = 2000;
const OTHER: i64 = 3000;
const TS: i64 = 1_000;

fn cfg() -> LogConfig {
    LogConfig {
        index_interval_bytes: 1,
        retention_ms: -1,
        producer_id_expiration_ms: -1,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig, clean: bool) -> PartitionLog {
    PartitionLog::open(dir, config, clean).expect("open log")
}

/// A transactional batch of `n` records of producer (`pid`, `epoch`) at sequence `seq`.
fn txn(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let stamps: Vec<i64> = (0..n as i64).map(|i| TS + i).collect();
    batch(
        &BatchSpec::new(&stamps)
            .producer(pid, epoch, seq)
            .transactional(),
    )
}

fn plain(n: usize) -> Vec<u8> {
    let stamps: Vec<i64> = (0..n as i64).map(|i| TS + i).collect();
    batch(&BatchSpec::new(&stamps))
}

fn append(log: &PartitionLog, records: &[u8]) -> (i64, i64) {
    let info = log.append(records, 0, TS).expect("append");
    (info.base_offset, info.last_offset)
}

/// Writes a marker; returns its offset.
fn end(log: &PartitionLog, pid: i64, epoch: i16, commit: bool) -> i64 {
    let info = log
        .append_control(pid, epoch, commit, 7, 0, TS + 100)
        .expect("marker");
    assert_eq!(info.base_offset, info.last_offset);
    assert!(info.batches[0].is_control && info.batches[0].is_transactional);
    info.base_offset
}

fn txn_index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.txnindex"))
}

/// The entries of a `.txnindex` file: (version, producer id, first, last, last stable).
fn txn_index_file(path: &Path) -> Vec<(i16, i64, i64, i64, i64)> {
    let bytes = std::fs::read(path).expect("txnindex file");
    assert_eq!(bytes.len() % 34, 0, "whole 34-byte entries");
    bytes
        .chunks_exact(34)
        .map(|c| {
            let i64_at = |at: usize| i64::from_be_bytes(c[at..at + 8].try_into().expect("8"));
            (
                i16::from_be_bytes([c[0], c[1]]),
                i64_at(2),
                i64_at(10),
                i64_at(18),
                i64_at(26),
            )
        })
        .collect()
}

/// One plain batch (offsets 0-1), then producer PID's transaction: 3 batches at offsets 2-3,
/// 4, 5-7. Returns nothing; the transaction is open.
fn open_transaction(log: &PartitionLog) {
    assert_eq!(append(log, &plain(2)), (0, 1));
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(append(log, &txn(PID, 0, 0, 2)), (2, 3));
    assert_eq!(log.first_unstable_offset(), Some(2));
    assert_eq!(append(log, &txn(PID, 0, 2, 1)), (4, 4));
    assert_eq!(append(log, &txn(PID, 0, 3, 3)), (5, 7));
    assert_eq!(log.first_unstable_offset(), Some(2));
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
}

#[test]
fn abort_marker_is_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    open_transaction(&log);
    assert!(!txn_index_path(dir.path(), 0).exists());
    assert_eq!(end(&log, PID, 0, false), 8);
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(log.producer_state(PID).map(|s| s.3), Some(None));
    assert_eq!(log.aborted_transactions(0, 9), vec![(PID, 2)]);
    assert_eq!(log.aborted_transactions(5, 6), vec![(PID, 2)]);
    assert_eq!(log.aborted_transactions(8, 9), vec![(PID, 2)]);
    assert!(log.aborted_transactions(0, 2).is_empty(), "ends before it");
    assert!(
        log.aborted_transactions(9, 20).is_empty(),
        "starts after it"
    );
    assert!(log.aborted_transactions(5, 5).is_empty(), "empty range");
    log.flush().expect("flush");
    assert_eq!(
        txn_index_file(&txn_index_path(dir.path(), 0)),
        vec![(0, PID, 2, 8, 9)]
    );
    // The marker is an ordinary control batch in the log, readable by consumers.
    let r = log.read(8, 1 << 20, i64::MAX, true).expect("read");
    let h = batch::validate_batch(&r.records).expect("one valid batch");
    assert!(h.is_control() && h.is_transactional());
    assert_eq!(
        control::control_type(&r.records).expect("type"),
        control::ControlType::Abort
    );
    // The next transaction of the producer starts a new range.
    assert_eq!(append(&log, &txn(PID, 0, 6, 1)), (9, 9));
    assert_eq!(log.first_unstable_offset(), Some(9));
}

#[test]
fn commit_marker_aborts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    open_transaction(&log);
    assert_eq!(end(&log, PID, 0, true), 8);
    assert_eq!(log.first_unstable_offset(), None);
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    log.close().expect("close");
    assert!(
        !txn_index_path(dir.path(), 0).exists(),
        "no aborts, no file"
    );
}

#[test]
fn interleaved_producers_one_commits_one_aborts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    assert_eq!(append(&log, &txn(PID, 0, 0, 1)), (0, 0));
    assert_eq!(append(&log, &txn(OTHER, 0, 0, 2)), (1, 2));
    assert_eq!(append(&log, &txn(PID, 0, 1, 1)), (3, 3));
    assert_eq!(append(&log, &txn(OTHER, 0, 2, 1)), (4, 4));
    assert_eq!(log.first_unstable_offset(), Some(0));
    // PID aborts while OTHER's transaction is open: the LSO after it is OTHER's first offset.
    assert_eq!(end(&log, PID, 0, false), 5);
    assert_eq!(log.first_unstable_offset(), Some(1));
    assert_eq!(append(&log, &txn(OTHER, 0, 3, 1)), (6, 6));
    assert_eq!(end(&log, OTHER, 0, true), 7);
    assert_eq!(log.first_unstable_offset(), None);
    // A second transaction of each; this time OTHER aborts and PID commits.
    assert_eq!(append(&log, &txn(OTHER, 0, 4, 1)), (8, 8));
    assert_eq!(append(&log, &txn(PID, 0, 2, 1)), (9, 9));
    assert_eq!(end(&log, PID, 0, true), 10);
    assert_eq!(log.first_unstable_offset(), Some(8));
    assert_eq!(end(&log, OTHER, 0, false), 11);
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(log.aborted_transactions(0, 12), vec![(PID, 0), (OTHER, 8)]);
    assert_eq!(log.aborted_transactions(6, 9), vec![(OTHER, 8)]);
    assert_eq!(log.aborted_transactions(0, 1), vec![(PID, 0)]);
    log.flush().expect("flush");
    assert_eq!(
        txn_index_file(&txn_index_path(dir.path(), 0)),
        vec![(0, PID, 0, 5, 1), (0, OTHER, 8, 11, 12)]
    );
}

#[test]
fn markers_are_fenced_by_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    append(&log, &txn(PID, 3, 0, 2));
    let leo = log.log_end_offset();
    let err = log
        .append_control(PID, 2, false, 0, 0, TS)
        .expect_err("old epoch");
    assert!(matches!(
        err,
        StorageError::InvalidProducerEpoch {
            epoch: 2,
            current: 3,
            ..
        }
    ));
    assert_eq!(err.error_code().code(), 47);
    assert_eq!(log.log_end_offset(), leo, "nothing written");
    assert_eq!(log.first_unstable_offset(), Some(0));
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    // A newer epoch (the coordinator bumped it to abort a timed-out transaction) is accepted
    // and fences the old one.
    assert_eq!(end(&log, PID, 4, false), 2);
    assert_eq!(log.aborted_transactions(0, 3), vec![(PID, 0)]);
    assert!(matches!(
        log.append(&txn(PID, 3, 2, 1), 0, TS),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    // A marker of a producer without an open transaction here is written anyway (Kafka).
    assert_eq!(end(&log, OTHER, 0, true), 3);
    assert_eq!(end(&log, OTHER + 1, 0, false), 4);
    assert_eq!(log.aborted_transactions(3, 5), vec![(OTHER + 1, 4)]);
    assert_eq!(log.first_unstable_offset(), None);
}

#[test]
fn control_batches_must_be_commit_or_abort() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), cfg(), false);
    append(&log, &txn(PID, 0, 0, 1));
    // The record key "key-0" is not a COMMIT/ABORT control key.
    let odd = batch(
        &BatchSpec::new(&[TS])
            .producer(PID, 0, -1)
            .transactional()
            .control(),
    );
    assert!(matches!(
        log.append(&odd, 0, TS),
        Err(StorageError::InvalidRecord(_))
    ));
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(log.first_unstable_offset(), Some(0));
    // A marker built elsewhere (the same bytes as append_control's) goes through append too.
    assert_eq!(
        log.append(&end_txn_marker(PID, 0, false, 1, TS), 0, TS)
            .expect("abort")
            .base_offset,
        1
    );
    assert_eq!(log.aborted_transactions(0, 2), vec![(PID, 0)]);
}

/// Builds a log with: an aborted transaction of PID (entry (PID, 2, 8, 9)), a committed one of
/// OTHER, and an open one of PID starting at offset 11. Returns the log end offset.
fn aborted_then_open(log: &PartitionLog) -> i64 {
    open_transaction(log);
    assert_eq!(end(log, PID, 0, false), 8);
    assert_eq!(append(log, &txn(OTHER, 0, 0, 1)), (9, 9));
    assert_eq!(end(log, OTHER, 0, true), 10);
    assert_eq!(append(log, &txn(PID, 0, 6, 2)), (11, 12));
    assert_eq!(log.first_unstable_offset(), Some(11));
    log.log_end_offset()
}

fn assert_aborted_then_open(log: &PartitionLog, dir: &Path) {
    assert_eq!(log.log_end_offset(), 13);
    assert_eq!(log.first_unstable_offset(), Some(11));
    assert_eq!(log.producer_state(PID).map(|s| s.3), Some(Some(11)));
    assert_eq!(log.aborted_transactions(0, 13), vec![(PID, 2)]);
    assert!(log.aborted_transactions(9, 13).is_empty());
    assert_eq!(
        txn_index_file(&txn_index_path(dir, 0)),
        vec![(0, PID, 2, 8, 9)]
    );
    // Closing the open transaction with an abort adds to the same index.
    assert_eq!(end(log, PID, 0, false), 13);
    assert_eq!(log.aborted_transactions(9, 14), vec![(PID, 11)]);
}

#[test]
fn clean_reopen_keeps_index_and_open_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path(), cfg(), false);
        aborted_then_open(&log);
        log.close().expect("close");
    }
    let log = open(dir.path(), cfg(), true);
    assert_aborted_then_open(&log, dir.path());
}

#[test]
fn unclean_reopen_rebuilds_index_and_open_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path(), cfg(), false);
        aborted_then_open(&log);
        // Dropped without close: no snapshot, nothing synced.
    }
    // The index file is lost as well: rebuilt from the log.
    std::fs::remove_file(txn_index_path(dir.path(), 0)).expect("remove txnindex");
    let log = open(dir.path(), cfg(), false);
    assert_aborted_then_open(&log, dir.path());
}

#[test]
fn damaged_index_is_rebuilt_even_after_a_clean_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path(), cfg(), false);
        aborted_then_open(&log);
        log.close().expect("close");
    }
    let path = txn_index_path(dir.path(), 0);
    // A torn entry: the snapshot at the log end cannot be used (it postdates the entries), so
    // the state and the index are rebuilt from the start of the log.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open txnindex");
    f.set_len(20).expect("tear");
    drop(f);
    let log = open(dir.path(), cfg(), true);
    assert_aborted_then_open(&log, dir.path());
    drop(log);
    // A well-formed but wrong entry (marker beyond the segment's end after the next abort is
    // truncated away) is dropped by recovery.
    let seg = dir.path().join("00000000000000000000.log");
    let size = std::fs::metadata(&seg).expect("log").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open log");
    f.set_len(size - 5).expect("tear the marker at 13");
    drop(f);
    let log = open(dir.path(), cfg(), false);
    assert_eq!(log.log_end_offset(), 13);
    assert_eq!(log.first_unstable_offset(), Some(11), "open again");
    assert_eq!(log.aborted_transactions(0, i64::MAX), vec![(PID, 2)]);
    assert_eq!(
        txn_index_file(&txn_index_path(dir.path(), 0)),
        vec![(0, PID, 2, 8, 9)]
    );
}

/// A transaction spanning segments: started in segment 0, aborted in a later one; the
/// rebuild after a crash starts at a roll snapshot that carries the open transaction.
#[test]
fn transactions_across_segments_and_snapshot_based_rebuild() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = txn(PID, 0, 0, 2);
    let config = LogConfig {
        segment_bytes: (one.len() * 2) as u64,
        ..cfg()
    };
    {
        let log = open(dir.path(), config, false);
        // PID: 2-record batches at 0, 2, 4, 6 (rolls every 2 batches: segments 0, 4, ...).
        for i in 0..4 {
            assert_eq!(append(&log, &txn(PID, 0, 2 * i, 2)).0, 2 * i64::from(i));
        }
        assert_eq!(log.segment_base_offsets(), vec![0, 4]);
        assert_eq!(end(&log, PID, 0, false), 8);
        assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
        // OTHER's transaction starts in segment 8, is aborted in a later one.
        assert_eq!(append(&log, &txn(OTHER, 0, 0, 2)).0, 9);
        assert_eq!(append(&log, &txn(OTHER, 0, 2, 2)).0, 11);
        assert_eq!(log.segment_base_offsets(), vec![0, 4, 8, 11]);
        assert_eq!(end(&log, OTHER, 0, false), 13);
        assert_eq!(log.first_unstable_offset(), None);
        assert_eq!(log.aborted_transactions(1, 2), vec![(PID, 0)]);
        assert_eq!(log.aborted_transactions(0, 20), vec![(PID, 0), (OTHER, 9)]);
        assert_eq!(log.aborted_transactions(10, 11), vec![(OTHER, 9)]);
        assert!(!txn_index_path(dir.path(), 0).exists());
        assert!(!txn_index_path(dir.path(), 4).exists());
        assert!(txn_index_path(dir.path(), 8).exists());
        assert!(txn_index_path(dir.path(), 11).exists());
        // Crash: the active segment's index is lost; the snapshot at 11 (the roll) knows that
        // OTHER's transaction started at 9.
        log.flush().expect("flush");
    }
    std::fs::remove_file(txn_index_path(dir.path(), 11)).expect("lose the active index");
    let log = open(dir.path(), config, false);
    assert_eq!(log.aborted_transactions(0, 20), vec![(PID, 0), (OTHER, 9)]);
    assert_eq!(
        txn_index_file(&txn_index_path(dir.path(), 11)),
        vec![(0, OTHER, 9, 13, 14)]
    );
    assert_eq!(
        txn_index_file(&txn_index_path(dir.path(), 8)),
        vec![(0, PID, 0, 8, 9)]
    );
}

#[test]
fn retention_deletes_the_index_with_its_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = txn(PID, 0, 0, 2);
    let marker = end_txn_marker(PID, 0, false, 0, TS);
    let config = LogConfig {
        segment_bytes: (one.len() + marker.len()) as u64,
        ..cfg()
    };
    let log = open(dir.path(), config, false);
    append(&log, &txn(PID, 0, 0, 2));
    assert_eq!(end(&log, PID, 0, false), 2);
    append(&log, &txn(PID, 0, 2, 2));
    assert_eq!(log.segment_base_offsets(), vec![0, 3]);
    assert!(txn_index_path(dir.path(), 0).exists());
    log.advance_log_start_offset(3).expect("delete records");
    assert_eq!(log.segment_base_offsets(), vec![3]);
    assert!(
        !txn_index_path(dir.path(), 0).exists(),
        "deleted with segment 0"
    );
    assert!(log.aborted_transactions(3, 10).is_empty());
    assert_eq!(log.first_unstable_offset(), Some(3));
    // Retention by time does the same.
    assert_eq!(end(&log, PID, 0, false), 5);
    append(&log, &plain(1));
    assert!(txn_index_path(dir.path(), 3).exists());
    let retained = LogConfig {
        retention_ms: 10,
        ..config
    };
    log.update_config(retained);
    log.enforce_retention(TS + 1_000_000).expect("retention");
    assert!(!txn_index_path(dir.path(), 3).exists());
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
}

#[test]
fn orphan_txn_index_is_deleted_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path(), cfg(), false);
        append(&log, &plain(1));
        log.close().expect("close");
    }
    let orphan = txn_index_path(dir.path(), 500);
    std::fs::write(&orphan, [0u8; 34]).expect("orphan");
    let garbage = txn_index_path(dir.path(), 0);
    std::fs::write(&garbage, b"garbage").expect("garbage");
    let log = open(dir.path(), cfg(), true);
    assert!(!orphan.exists());
    assert!(
        !garbage.exists(),
        "an invalid index with nothing to hold is removed"
    );
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
}
