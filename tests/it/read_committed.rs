//! read_committed over the wire (KIP-98): Fetch stops at the last stable offset while a
//! transaction is open, and lists aborted transactions once their ABORT marker is written;
//! ListOffsets LATEST with isolation level 1 answers the LSO. Survives restarts.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, FetchResponse, InitProducerIdRequest,
    ListOffsetsRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::client::*;

const TOPIC: &str = "rc";
const TXN_ID: &str = "rc-txn";

fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: strand::broker::now_ms(),
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn txn_id() -> TransactionalId {
    TransactionalId(StrBytes::from_static_str(TXN_ID))
}

async fn init_producer(c: &mut Client) -> (i64, i16) {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = Some(txn_id());
    req.transaction_timeout_ms = 60_000;
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    let resp = c.call(&req, 4).await;
    assert_eq!(resp.error_code, 0, "InitProducerId");
    (resp.producer_id.0, resp.producer_epoch)
}

async fn add_partition(c: &mut Client, pid: i64, epoch: i16) {
    let mut t = AddPartitionsToTxnTopic::default();
    t.name = topic_name(TOPIC);
    t.partitions = vec![0];
    let mut req = AddPartitionsToTxnRequest::default();
    req.v3_and_below_transactional_id = txn_id();
    req.v3_and_below_producer_id = ProducerId(pid);
    req.v3_and_below_producer_epoch = epoch;
    req.v3_and_below_topics = vec![t];
    let resp = c.call(&req, 3).await;
    let code = resp.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
    assert_eq!(code, 0, "AddPartitionsToTxn");
}

async fn end_txn(c: &mut Client, pid: i64, epoch: i16, commit: bool) {
    let mut req = EndTxnRequest::default();
    req.transactional_id = txn_id();
    req.producer_id = ProducerId(pid);
    req.producer_epoch = epoch;
    req.committed = commit;
    let resp = c.call(&req, 3).await;
    assert_eq!(resp.error_code, 0, "EndTxn");
}

async fn produce(c: &mut Client, records: Bytes) -> i64 {
    let r = c.produce(TOPIC, 0, records, -1).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "produce");
    p.base_offset
}

async fn fetch(c: &mut Client, offset: i64, isolation: i8) -> FetchResponse {
    let mut req = fetch_request(TOPIC, 0, offset, 0, 0, 1 << 20);
    req.isolation_level = isolation;
    c.call(&req, 12).await
}

/// `(offsets of the data records, high watermark, last stable offset, aborted (pid, first))`.
type Seen = (Vec<i64>, i64, i64, Option<Vec<(i64, i64)>>);

async fn seen(c: &mut Client, offset: i64, isolation: i8) -> Seen {
    let resp = fetch(c, offset, isolation).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "fetch");
    let records = p.records.clone().unwrap_or_default();
    // Control batches decode as records too; data records are told apart by their values
    // ("v<offset>").
    let offsets = decode(&records)
        .into_iter()
        .filter(|(_, v)| v.starts_with('v'))
        .map(|(o, _)| o)
        .collect();
    let aborted = p.aborted_transactions.as_ref().map(|a| {
        a.iter()
            .map(|t| (t.producer_id.0, t.first_offset))
            .collect()
    });
    (offsets, p.high_watermark, p.last_stable_offset, aborted)
}

async fn latest(c: &mut Client, isolation: i8) -> i64 {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = -1;
    p.current_leader_epoch = -1;
    let mut t = ListOffsetsTopic::default();
    t.name = topic_name(TOPIC);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.isolation_level = isolation;
    req.topics = vec![t];
    let resp = c.call(&req, 7).await;
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "list offsets");
    p.offset
}

#[tokio::test]
async fn read_committed_stops_at_lso_and_lists_aborted_transactions() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic(TOPIC, 1, &[]).await;
    // Offsets 0-1: plain records.
    assert_eq!(
        produce(
            &mut c,
            batch(&["v0", "v1"], strand::broker::now_ms(), Compression::None)
        )
        .await,
        0
    );
    let (pid, epoch) = init_producer(&mut c).await;
    add_partition(&mut c, pid, epoch).await;
    // Offsets 2-3 and 4: an open transaction.
    assert_eq!(
        produce(&mut c, txn_batch(pid, epoch, 0, &["v2", "v3"])).await,
        2
    );
    assert_eq!(produce(&mut c, txn_batch(pid, epoch, 2, &["v4"])).await, 4);

    // read_committed stops at the LSO (the transaction's first offset).
    assert_eq!(seen(&mut c, 0, 1).await, (vec![0, 1], 5, 2, Some(vec![])));
    assert_eq!(seen(&mut c, 2, 1).await, (vec![], 5, 2, Some(vec![])));
    // read_uncommitted sees everything and gets no aborted list.
    assert_eq!(seen(&mut c, 0, 0).await, (vec![0, 1, 2, 3, 4], 5, 2, None));
    assert_eq!(latest(&mut c, 1).await, 2);
    assert_eq!(latest(&mut c, 0).await, 5);

    // Abort: the marker goes to offset 5; the transaction is listed for any fetch overlapping
    // offsets 2..=5.
    end_txn(&mut c, pid, epoch, false).await;
    let expected_aborted = Some(vec![(pid, 2)]);
    assert_eq!(
        seen(&mut c, 0, 1).await,
        (vec![0, 1, 2, 3, 4], 6, 6, expected_aborted.clone())
    );
    assert_eq!(
        seen(&mut c, 4, 1).await,
        (vec![4], 6, 6, expected_aborted.clone())
    );
    assert_eq!(latest(&mut c, 1).await, 6);

    // A committed transaction after it (offset 6, marker 7) is not listed.
    add_partition(&mut c, pid, epoch).await;
    assert_eq!(produce(&mut c, txn_batch(pid, epoch, 3, &["v6"])).await, 6);
    assert_eq!(seen(&mut c, 6, 1).await, (vec![], 7, 6, Some(vec![])));
    end_txn(&mut c, pid, epoch, true).await;
    assert_eq!(seen(&mut c, 6, 1).await, (vec![6], 8, 8, Some(vec![])));
    assert_eq!(
        seen(&mut c, 0, 1).await,
        (vec![0, 1, 2, 3, 4, 6], 8, 8, expected_aborted.clone())
    );

    // An open transaction and the aborted one survive a graceful restart and a crash.
    add_partition(&mut c, pid, epoch).await;
    assert_eq!(produce(&mut c, txn_batch(pid, epoch, 4, &["v8"])).await, 8);
    for crash in [false, true] {
        drop(c);
        if crash {
            b.crash_and_restart().await;
        } else {
            b.restart().await;
        }
        c = b.client().await;
        assert_eq!(
            seen(&mut c, 0, 1).await,
            (vec![0, 1, 2, 3, 4, 6], 9, 8, expected_aborted.clone()),
            "after restart (crash: {crash})"
        );
        assert_eq!(latest(&mut c, 1).await, 8);
    }
    b.stop().await;
}

/// Markers written straight through the partition API (what the coordinator calls), with the
/// epoch fencing of the storage layer.
#[tokio::test]
async fn markers_through_the_partition_api() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic(TOPIC, 1, &[]).await;
    let (pid, epoch) = init_producer(&mut c).await;
    add_partition(&mut c, pid, epoch).await;
    assert_eq!(produce(&mut c, txn_batch(pid, epoch, 0, &["v0"])).await, 0);
    let broker = b.running.as_ref().unwrap().broker.clone();
    let partition = broker.partition(TOPIC, 0).unwrap();
    assert_eq!(partition.last_stable_offset(), 0);
    // A marker of an older epoch is fenced (the storage call, as the coordinator's goes).
    let fenced = partition.log().unwrap().append_control(
        pid,
        epoch - 1,
        false,
        0,
        0,
        strand::broker::now_ms(),
    );
    assert!(matches!(
        fenced,
        Err(strand::storage::StorageError::InvalidProducerEpoch { .. })
    ));
    let info = partition
        .append_control(pid, epoch, false, strand::broker::now_ms())
        .unwrap();
    assert_eq!(info.base_offset, 1);
    // Visible once durable, as the coordinator waits for it.
    partition.flush_until(info.last_offset + 1).await.unwrap();
    assert_eq!(
        partition.log().unwrap().aborted_transactions(0, 2),
        vec![(pid, 0)]
    );
    assert_eq!(partition.last_stable_offset(), 2);
    assert_eq!(
        seen(&mut c, 0, 1).await,
        (vec![0], 2, 2, Some(vec![(pid, 0)]))
    );
    drop(partition);
    drop(broker);
    b.stop().await;
}

/// The COMMIT marker is fdatasync'ed before the coordinator records the transaction complete:
/// after a power failure right after EndTxn, the partition still has it, so the last stable
/// offset moves past the transaction (no background flush runs in this test).
#[tokio::test]
async fn commit_marker_survives_a_power_failure_after_end_txn() {
    let mut b = TestBroker::start_with(&[("log.flush.max.delay.ms", "600000")]).await;
    let mut c = b.client().await;
    c.create_topic(TOPIC, 1, &[]).await;
    let (pid, epoch) = init_producer(&mut c).await;
    add_partition(&mut c, pid, epoch).await;
    assert_eq!(
        produce(&mut c, txn_batch(pid, epoch, 0, &["v0", "v1"])).await,
        0
    );
    end_txn(&mut c, pid, epoch, true).await;
    drop(c);
    b.power_loss_and_restart().await;
    let mut c = b.client().await;
    assert_eq!(seen(&mut c, 0, 1).await, (vec![0, 1], 3, 3, Some(vec![])));
    b.stop().await;
}

/// A marker whose fdatasync fails: EndTxn fails, the data dir goes offline, and after a power
/// failure and restart the prepared transaction is finished: committed, wholly.
#[tokio::test]
async fn a_marker_that_cannot_be_synced_is_finished_after_restart() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic(TOPIC, 1, &[]).await;
    let (pid, epoch) = init_producer(&mut c).await;
    add_partition(&mut c, pid, epoch).await;
    assert_eq!(
        produce(&mut c, txn_batch(pid, epoch, 0, &["v0", "v1"])).await,
        0
    );
    strand::storage::fault::inject(b.dir.path(), strand::storage::fault::FaultOp::Sync, 5);
    let mut req = EndTxnRequest::default();
    req.transactional_id = txn_id();
    req.producer_id = ProducerId(pid);
    req.producer_epoch = epoch;
    req.committed = true;
    let resp = c.call(&req, 3).await;
    assert_ne!(
        resp.error_code, 0,
        "EndTxn succeeded without a durable marker"
    );
    strand::storage::fault::clear(b.dir.path());
    drop(c);
    b.power_loss_and_restart().await;
    let mut c = b.client().await;
    // The coordinator's timer (1 s) finishes prepared transactions after a start.
    let mut result = seen(&mut c, 0, 1).await;
    for _ in 0..100 {
        if result.2 >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        result = seen(&mut c, 0, 1).await;
    }
    let (offsets, hw, lso, aborted) = result;
    assert_eq!(offsets, vec![0, 1]);
    assert_eq!(lso, hw);
    assert!(hw >= 3);
    assert_eq!(aborted, Some(vec![]));
    b.stop().await;
}

/// `transactional.id.expiration.ms`: an id without an open transaction is forgotten once idle
/// that long (durably: still gone after a restart); one with an open transaction is kept.
#[tokio::test]
async fn idle_transactional_ids_expire() {
    use kafka_protocol::messages::DescribeTransactionsRequest;
    let mut b = TestBroker::start_with(&[
        ("transactional.id.expiration.ms", "300"),
        (
            "transaction.remove.expired.transaction.cleanup.interval.ms",
            "100",
        ),
    ])
    .await;
    let mut c = b.client().await;
    c.create_topic(TOPIC, 1, &[]).await;
    // "rc-txn": a transaction stays open (timeout 60 s), so it must not expire.
    let (pid, epoch) = init_producer(&mut c).await;
    add_partition(&mut c, pid, epoch).await;
    // "idle-txn": initialised, never used.
    let mut init = InitProducerIdRequest::default();
    init.transactional_id = Some(TransactionalId(StrBytes::from_static_str("idle-txn")));
    init.transaction_timeout_ms = 60_000;
    init.producer_id = ProducerId(-1);
    init.producer_epoch = -1;
    assert_eq!(c.call(&init, 4).await.error_code, 0);

    let describe = |id: &'static str| {
        let mut req = DescribeTransactionsRequest::default();
        req.transactional_ids = vec![TransactionalId(StrBytes::from_static_str(id))];
        req
    };
    let mut expired = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let r = c.call(&describe("idle-txn"), 0).await;
        if r.transaction_states[0].error_code == 105 {
            expired = true;
            break;
        }
    }
    assert!(
        expired,
        "idle-txn did not expire (TRANSACTIONAL_ID_NOT_FOUND)"
    );
    let r = c.call(&describe(TXN_ID), 0).await;
    assert_eq!(
        r.transaction_states[0].error_code, 0,
        "open transaction expired"
    );
    drop(c);
    b.restart().await;
    let mut c = b.client().await;
    let r = c.call(&describe("idle-txn"), 0).await;
    assert_eq!(
        r.transaction_states[0].error_code, 105,
        "expiry was not durable"
    );
    b.stop().await;
}
