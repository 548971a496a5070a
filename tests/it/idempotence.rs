//! Idempotent producers over the wire: InitProducerId, retries deduplicated, gaps and stale
//! epochs refused.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::InitProducerIdRequest;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError as E;

use crate::client::*;

fn idempotent_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: 1,
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

#[tokio::test]
async fn retries_are_deduplicated_and_gaps_refused() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("idem", 1, &[]).await;
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.transaction_timeout_ms = 60_000;
    req.producer_id = kafka_protocol::messages::ProducerId(-1);
    req.producer_epoch = -1;
    let init = c.call(&req, 4).await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert!(pid >= 0);
    let second = c.call(&req, 4).await;
    assert_ne!(second.producer_id.0, pid, "every producer gets its own id");

    let code_and_offset = |r: kafka_protocol::messages::ProduceResponse| {
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    };
    let r = c
        .produce("idem", 0, idempotent_batch(pid, 0, 0, &["a", "b"]), -1)
        .await;
    assert_eq!(code_and_offset(r), (0, 0));
    let r = c
        .produce("idem", 0, idempotent_batch(pid, 0, 2, &["c"]), -1)
        .await;
    assert_eq!(code_and_offset(r), (0, 2));
    // The retry of the first batch (a lost ack): its original offset, nothing written.
    let r = c
        .produce("idem", 0, idempotent_batch(pid, 0, 0, &["a", "b"]), -1)
        .await;
    assert_eq!(code_and_offset(r), (0, 0));
    // A gap in the sequence.
    let r = c
        .produce("idem", 0, idempotent_batch(pid, 0, 9, &["x"]), -1)
        .await;
    assert_eq!(code_and_offset(r).0, E::OutOfOrderSequenceNumber.code());
    // The deduplication survives a crash.
    drop(c);
    b.crash_and_restart().await;
    let mut c = b.client().await;
    let r = c
        .produce("idem", 0, idempotent_batch(pid, 0, 2, &["c"]), -1)
        .await;
    assert_eq!(code_and_offset(r), (0, 2));
    let r = c
        .produce("idem", 0, idempotent_batch(pid, 0, 3, &["d"]), -1)
        .await;
    assert_eq!(code_and_offset(r), (0, 3));
    // A newer epoch fences the old one.
    let r = c
        .produce("idem", 0, idempotent_batch(pid, 1, 0, &["e"]), -1)
        .await;
    assert_eq!(code_and_offset(r), (0, 4));
    let r = c
        .produce("idem", 0, idempotent_batch(pid, 0, 4, &["zombie"]), -1)
        .await;
    assert_eq!(code_and_offset(r).0, E::InvalidProducerEpoch.code());

    let resp = c.fetch("idem", 0, 0, 0, 0).await;
    let values: Vec<String> = decode(resp.responses[0].partitions[0].records.as_ref().unwrap())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, vec!["a", "b", "c", "d", "e"]);
    b.stop().await;
}
