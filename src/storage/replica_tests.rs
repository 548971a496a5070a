//! A follower's log: replica appends keep the leader's bytes; truncation (and a crash in the
//! middle of one) leaves exactly what a log holding only the prefix would be.

use std::path::Path;

use super::batch::{split_and_validate, Compression};
use super::epoch::EpochEntry;
use super::testutil::{batch, BatchSpec};
use super::*;

fn open(dir: &Path, config: LogConfig, clean: bool) -> PartitionLog {
    PartitionLog::open(dir, config, clean).expect("open log")
}

/// Small segments, so a few batches span several of them.
fn cfg() -> LogConfig {
    LogConfig {
        index_interval_bytes: 1,
        segment_bytes: 400,
        ..LogConfig::default()
    }
}

/// Every byte of the log from `from`, batch by batch.
fn dump(log: &PartitionLog, from: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let r = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        if r.records.is_empty() {
            return out;
        }
        let batches = split_and_validate(&r.records).expect("valid batches");
        let last = batches
            .last()
            .map(|(_, h)| h.last_offset())
            .unwrap_or(offset);
        out.extend_from_slice(&r.records);
        offset = last + 1;
    }
}

/// The batches of `bytes`, each as its own byte vector.
fn batches_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    split_and_validate(bytes)
        .expect("valid batches")
        .iter()
        .map(|(pos, h)| bytes[*pos..*pos + h.total_size().unwrap()].to_vec())
        .collect()
}

/// What a replica must reproduce: bytes, epochs, producers, aborted transactions, end.
#[derive(Debug, PartialEq)]
struct State {
    bytes: Vec<u8>,
    end: i64,
    epochs: Vec<EpochEntry>,
    producers: Vec<(i64, i16, i32, Option<i64>)>,
    aborted: Vec<(i64, i64)>,
    unstable: Option<i64>,
}

fn state(log: &PartitionLog) -> State {
    let mut producers: Vec<_> = log
        .active_producers()
        .iter()
        .map(|p| {
            let (epoch, seq, _, txn) = log.producer_state(p.producer_id).unwrap();
            (p.producer_id, epoch, seq, txn)
        })
        .collect();
    producers.sort();
    State {
        bytes: dump(log, 0),
        end: log.log_end_offset(),
        epochs: log.leader_epoch_entries(),
        producers,
        aborted: log.aborted_transactions(0, i64::MAX),
        unstable: log.first_unstable_offset(),
    }
}

/// A leader's log with plain, compressed, idempotent and transactional batches over three
/// leader epochs and several segments; a transaction aborted, one still open at the end.
fn leader_log(dir: &Path) -> PartitionLog {
    let log = open(dir, cfg(), false);
    let now = 1_000;
    for i in 0..4 {
        log.append(&batch(&BatchSpec::new(&[now + i, now + i + 1])), 0, now)
            .unwrap();
    }
    log.append(
        &batch(&BatchSpec::new(&[now, now + 1, now + 2]).codec(Compression::Lz4)),
        0,
        now,
    )
    .unwrap();
    for seq in 0..3 {
        log.append(
            &batch(&BatchSpec::new(&[now, now]).producer(7, 0, seq * 2)),
            2,
            now,
        )
        .unwrap();
    }
    log.append(
        &batch(&BatchSpec::new(&[now]).producer(9, 1, 0).transactional()),
        2,
        now,
    )
    .unwrap();
    log.append_control(9, 1, false, 0, 3, now).unwrap();
    log.append(
        &batch(
            &BatchSpec::new(&[now, now])
                .producer(9, 1, 1)
                .transactional(),
        ),
        3,
        now,
    )
    .unwrap();
    log.append(&batch(&BatchSpec::new(&[now; 3])), 3, now)
        .unwrap();
    log
}

#[test]
fn a_replica_keeps_every_byte_and_the_same_state() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = leader_log(&tmp.path().join("leader"));
    let expected = state(&leader);
    assert!(
        leader.segment_count() > 2,
        "the test wants several segments"
    );
    assert_eq!(expected.epochs.len(), 3);
    assert_eq!(expected.aborted.len(), 1);
    assert!(expected.unstable.is_some());

    let dir = tmp.path().join("follower");
    let follower = open(&dir, cfg(), false);
    // Fetched in uneven chunks, as a follower's fetches would come.
    let all = batches_of(&expected.bytes);
    for chunk in all.chunks(3) {
        let bytes: Vec<u8> = chunk.concat();
        follower.append_replica(&bytes, 2_000).unwrap();
    }
    assert_eq!(state(&follower), expected);
    // A restart, clean or not, opens the same log.
    drop(follower);
    assert_eq!(state(&open(&dir, cfg(), false)), expected);
    let reopened = open(&dir, cfg(), true);
    assert_eq!(state(&reopened), expected);
}

#[test]
fn a_replica_append_must_continue_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = leader_log(&tmp.path().join("leader"));
    let all = batches_of(&dump(&leader, 0));
    let follower = open(&tmp.path().join("follower"), cfg(), false);
    // Not at the log end (a gap), nor a batch repeated: refused, nothing written.
    for wrong in [all[1].clone(), [all[0].clone(), all[2].clone()].concat()] {
        let r = follower.append_replica(&wrong, 0);
        assert!(matches!(r, Err(StorageError::InvalidRecord(_))), "{r:?}");
        assert_eq!(follower.log_end_offset(), 0);
    }
    follower.append_replica(&all[0], 0).unwrap();
    let r = follower.append_replica(&all[0], 0);
    assert!(matches!(r, Err(StorageError::InvalidRecord(_))), "{r:?}");
    assert_eq!(dump(&follower, 0), all[0]);
}

/// A log holding only the batches of `bytes` (the reference a truncation must equal).
fn replica_of(dir: &Path, bytes: &[u8]) -> PartitionLog {
    let log = open(dir, cfg(), false);
    if !bytes.is_empty() {
        // Batch by batch, so the small segments roll as the leader's did.
        for b in batches_of(bytes) {
            log.append_replica(&b, 2_000).unwrap();
        }
    }
    log
}

#[test]
fn truncation_leaves_what_a_log_of_the_prefix_is() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = leader_log(&tmp.path().join("leader"));
    let all = batches_of(&dump(&leader, 0));
    let ranges: Vec<(i64, i64)> = all
        .iter()
        .map(|b| {
            let (_, h) = &split_and_validate(b).unwrap()[0];
            (h.base_offset, h.last_offset())
        })
        .collect();
    // Every batch boundary, and offsets inside batches (cut where the batch holding them
    // starts).
    for (i, (base, _)) in ranges.iter().enumerate() {
        for target in [*base, base + 1] {
            let keep = ranges.iter().filter(|(_, last)| *last < target).count();
            let prefix: Vec<u8> = all[..keep].concat();
            let dir = tmp.path().join(format!("t{i}-{target}"));
            let log = replica_of(&dir, &all.concat());
            let end = log.truncate_to(target).unwrap();
            let reference = replica_of(&tmp.path().join(format!("r{i}-{target}")), &prefix);
            let want = state(&reference);
            assert_eq!(end, want.end, "truncate_to({target})");
            assert_eq!(state(&log), want, "truncate_to({target})");
            // It goes on from there, and a restart opens the same log.
            if keep < all.len() {
                log.append_replica(&all[keep], 3_000).unwrap();
                reference.append_replica(&all[keep], 3_000).unwrap();
                assert_eq!(state(&log), state(&reference));
            }
            let want = state(&reference);
            drop(log);
            assert_eq!(state(&open(&dir, cfg(), false)), want);
        }
    }
}

#[test]
fn truncation_past_the_end_is_a_no_op_and_below_the_start_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = leader_log(&tmp.path().join("leader"));
    let before = state(&leader);
    assert_eq!(leader.truncate_to(before.end).unwrap(), before.end);
    assert_eq!(leader.truncate_to(before.end + 10).unwrap(), before.end);
    assert_eq!(state(&leader), before);
    leader.advance_log_start_offset(4).unwrap();
    let r = leader.truncate_to(2);
    assert!(
        matches!(r, Err(StorageError::OffsetOutOfRange { .. })),
        "{r:?}"
    );
}

/// A crash after some of the newer segments were deleted, before the holder was cut: the log
/// opens at a segment boundary (no gap), and truncating again ends where one truncation would.
#[test]
fn a_crash_in_the_middle_of_a_truncation_leaves_a_valid_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = leader_log(&tmp.path().join("leader"));
    let all = dump(&leader, 0);
    let dir = tmp.path().join("crashed");
    let log = replica_of(&dir, &all);
    let segments = log.segment_base_offsets();
    assert!(segments.len() > 2);
    drop(log);
    // As truncate_to(1) would have left it after deleting the newest segment only.
    let newest = *segments.last().unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(&format!("{newest:020}.")) {
            std::fs::remove_file(path).unwrap();
        }
    }
    let log = open(&dir, cfg(), false);
    assert_eq!(log.log_end_offset(), newest);
    let prefix: Vec<u8> = batches_of(&all)
        .into_iter()
        .filter(|b| split_and_validate(b).unwrap()[0].1.base_offset < newest)
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(dump(&log, 0), prefix);
    log.truncate_to(1).unwrap();
    let straight = replica_of(&tmp.path().join("straight"), &all);
    straight.truncate_to(1).unwrap();
    assert_eq!(state(&log), state(&straight));
    // Offset 1 is inside the first batch (offsets 0-1): everything goes.
    assert_eq!(log.log_end_offset(), 0);
}

/// An fdatasync failing in a truncation takes the data dir offline (nothing more is
/// acknowledged from it); reopened, the log is a valid prefix and the truncation completes.
#[test]
fn a_failed_sync_in_a_truncation_takes_the_log_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = leader_log(&tmp.path().join("leader"));
    let all = dump(&leader, 0);
    let dir = tmp.path().join("faulty");
    let log = replica_of(&dir, &all);
    let target = log.log_end_offset() - 3;
    fault::inject(&dir, fault::FaultOp::Sync, 5);
    let r = log.truncate_to(target);
    fault::clear(&dir);
    assert!(matches!(r, Err(StorageError::Io(_))), "{r:?}");
    assert!(log.health().is_offline());
    let r = log.append_replica(&batches_of(&all)[0], 0);
    assert!(matches!(r, Err(StorageError::LogDirOffline)), "{r:?}");
    drop(log);
    let reopened = open(&dir, cfg(), false);
    let straight = replica_of(&tmp.path().join("straight"), &all);
    straight.truncate_to(target).unwrap();
    let end = reopened.log_end_offset();
    assert!(end >= straight.log_end_offset(), "{end}");
    reopened.truncate_to(target).unwrap();
    assert_eq!(state(&reopened), state(&straight));
}

/// A follower whose log ends below the leader's log start starts over there: empty, at that
/// offset, and so after a restart; then it takes the leader's batches from there.
#[test]
fn a_follower_below_the_leaders_log_start_starts_over_there() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = leader_log(&tmp.path().join("leader"));
    let all = batches_of(&dump(&leader, 0));
    let dir = tmp.path().join("behind");
    let log = replica_of(&dir, &all[..2].concat());
    let behind = log.log_end_offset();
    let start = split_and_validate(&all[4]).unwrap()[0].1.base_offset;
    assert!(start > behind);
    // Not past the end: nothing happens.
    assert_eq!(log.truncate_fully_and_start_at(behind).unwrap(), behind);
    assert_eq!(log.truncate_fully_and_start_at(start).unwrap(), start);
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (start, start)
    );
    assert_eq!(log.durable_offset(), start);
    assert!(dump(&log, start).is_empty());
    for b in &all[4..] {
        log.append_replica(b, 3_000).unwrap();
    }
    let want = dump(&log, start);
    assert_eq!(want, all[4..].concat());
    drop(log);
    let reopened = open(&dir, cfg(), false);
    assert_eq!(reopened.log_start_offset(), start);
    assert_eq!(dump(&reopened, start), want);
}

/// A crash right after the new start offset was written (before the reopen deleted the old
/// segments): the next open deletes them and starts empty at the new start.
#[test]
fn a_crash_while_starting_over_leaves_the_old_log_or_the_empty_one() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = leader_log(&tmp.path().join("leader"));
    let all = batches_of(&dump(&leader, 0));
    let dir = tmp.path().join("crashed");
    let log = replica_of(&dir, &all[..3].concat());
    let old = state(&log);
    drop(log);
    // Before the write: the old log, unchanged.
    assert_eq!(state(&open(&dir, cfg(), false)), old);
    // After it (as a crash between the write and the reopen leaves the directory).
    let start = old.end + 100;
    super::files::write_atomic(
        &dir,
        super::log::LOG_START_OFFSET_FILE,
        format!("0\n{start}\n").as_bytes(),
    )
    .unwrap();
    let log = open(&dir, cfg(), false);
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (start, start)
    );
    assert_eq!(log.segment_base_offsets(), vec![start]);
}

/// The leader's log start may fall inside a batch: an empty replica may move its start back
/// to the batch's first offset (a non-empty one may not), and keeps that batch whole.
#[test]
fn an_empty_replica_may_start_at_the_batch_holding_the_leaders_log_start() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = leader_log(&tmp.path().join("leader"));
    let all = batches_of(&dump(&leader, 0));
    let (base, last) = {
        let (_, h) = &split_and_validate(&all[4]).unwrap()[0];
        (h.base_offset, h.last_offset())
    };
    assert!(last > base, "a batch of several records");
    let dir = tmp.path().join("inside");
    let log = open(&dir, cfg(), false);
    log.truncate_fully_and_start_at(base + 1).unwrap();
    assert_eq!(log.truncate_fully_and_start_at(base).unwrap(), base);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (base, base));
    for b in &all[4..] {
        log.append_replica(b, 3_000).unwrap();
    }
    log.advance_log_start_offset(base + 1).unwrap();
    // Not empty now: no moving back.
    assert_eq!(
        log.truncate_fully_and_start_at(base).unwrap(),
        log.log_end_offset()
    );
    assert_eq!(log.log_start_offset(), base + 1);
    drop(log);
    let reopened = open(&dir, cfg(), false);
    assert_eq!(reopened.log_start_offset(), base + 1);
    assert_eq!(dump(&reopened, base + 1), all[4..].concat());
}
