//! Produce and fetch round trips through the real network path.

use std::time::{Duration, Instant};

use kafka_protocol::records::Compression;

use crate::client::*;

#[tokio::test]
async fn produce_then_fetch_round_trips_every_codec() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    assert_eq!(c.create_topic("t", 1, &[]).await.topics[0].error_code, 0);
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut expected = Vec::new();
    let mut next = 0i64;
    for (i, codec) in codecs.into_iter().enumerate() {
        let values: Vec<String> = (0..3).map(|j| format!("v{i}-{j}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let resp = c.produce("t", 0, batch(&refs, 1000, codec), -1).await;
        let pr = &resp.responses[0].partition_responses[0];
        assert_eq!(pr.error_code, 0, "codec {codec:?}");
        assert_eq!(pr.base_offset, next);
        for v in values {
            expected.push((next, v));
            next += 1;
        }
    }
    let resp = c.fetch("t", 0, 0, 0, 0).await;
    let pd = &resp.responses[0].partitions[0];
    assert_eq!(pd.error_code, 0);
    assert_eq!(pd.high_watermark, next);
    assert_eq!(decode(pd.records.as_ref().unwrap()), expected);
    b.stop().await;
}

#[tokio::test]
async fn acks_all_is_acknowledged_and_readable() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("durable", 1, &[]).await;
    let resp = c
        .produce("durable", 0, batch(&["a", "b"], 1, Compression::None), -1)
        .await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    let resp = c.fetch("durable", 0, 0, 0, 0).await;
    assert_eq!(
        decode(resp.responses[0].partitions[0].records.as_ref().unwrap()).len(),
        2
    );
    b.stop().await;
}

#[tokio::test]
async fn pipelined_produces_append_and_answer_in_order() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("p", 1, &[]).await;
    // Send 50 produce requests (mixing acks=all and acks=1) before reading any response.
    let mut ids = Vec::new();
    for i in 0..50 {
        let acks = if i % 2 == 0 { -1 } else { 1 };
        let v = format!("m{i}");
        let (id, frame) = c.encode(
            &produce_request("p", 0, batch(&[&v], 1, Compression::None), acks),
            9,
        );
        c.send_raw(&frame).await;
        ids.push(id);
    }
    for (i, id) in ids.into_iter().enumerate() {
        let resp = c
            .recv::<kafka_protocol::messages::ProduceRequest>(id, 9)
            .await;
        let pr = &resp.responses[0].partition_responses[0];
        assert_eq!(pr.error_code, 0);
        assert_eq!(pr.base_offset, i as i64, "appended out of request order");
    }
    b.stop().await;
}

#[tokio::test]
async fn acks_zero_gets_no_response_but_is_written() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("z", 1, &[]).await;
    let (_, frame) = c.encode(
        &produce_request("z", 0, batch(&["x"], 1, Compression::None), 0),
        9,
    );
    c.send_raw(&frame).await;
    // The next response on the connection belongs to the fetch, not the produce.
    let resp = c.fetch("z", 0, 0, 2000, 1).await;
    assert_eq!(
        decode(resp.responses[0].partitions[0].records.as_ref().unwrap()),
        vec![(0, "x".to_string())]
    );
    b.stop().await;
}

#[tokio::test]
async fn long_poll_waits_for_data_and_wakes_on_produce() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("lp", 1, &[]).await;

    // Nothing to read: the fetch waits about max_wait_ms and returns empty.
    let start = Instant::now();
    let resp = c.fetch("lp", 0, 0, 300, 1).await;
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert!(resp.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());

    // A produce from another connection wakes a waiting fetch well before its max wait.
    let addr = b.addr();
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut p = Client::connect(addr).await;
        p.produce("lp", 0, batch(&["wake"], 1, Compression::None), 1)
            .await;
    });
    let start = Instant::now();
    let resp = c.fetch("lp", 0, 0, 20_000, 1).await;
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(
        decode(resp.responses[0].partitions[0].records.as_ref().unwrap()),
        vec![(0, "wake".to_string())]
    );
    producer.await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn fetch_limits_return_whole_batches_and_at_least_one() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("lim", 1, &[]).await;
    let big = "x".repeat(10_000);
    for _ in 0..3 {
        c.produce("lim", 0, batch(&[&big], 1, Compression::None), -1)
            .await;
    }
    // max_bytes smaller than one batch: still exactly one whole batch (KIP-74).
    let resp = c.call(&fetch_request("lim", 0, 0, 0, 0, 100), 12).await;
    let recs = decode(resp.responses[0].partitions[0].records.as_ref().unwrap());
    assert_eq!(recs.len(), 1);
    // Room for two batches: two.
    let resp = c.call(&fetch_request("lim", 0, 0, 0, 0, 21_000), 12).await;
    let recs = decode(resp.responses[0].partitions[0].records.as_ref().unwrap());
    assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 1]);
    b.stop().await;
}

#[tokio::test]
async fn message_too_large_is_rejected_per_topic_config() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("small", 1, &[("max.message.bytes", "1000")])
        .await;
    let big = "y".repeat(2000);
    let resp = c
        .produce("small", 0, batch(&[&big], 1, Compression::None), 1)
        .await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        kafka_protocol::ResponseError::MessageTooLarge.code()
    );
    let resp = c.fetch("small", 0, 0, 0, 0).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 0);
    b.stop().await;
}

#[tokio::test]
async fn compacted_topics_refuse_records_without_a_key() {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("compacted", 1, &[("cleanup.policy", "compact")])
        .await;
    let keyless = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1,
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
    };
    for codec in [Compression::None, Compression::Lz4] {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            std::slice::from_ref(&keyless),
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        let resp = c.produce("compacted", 0, buf.freeze(), 1).await;
        assert_eq!(
            resp.responses[0].partition_responses[0].error_code,
            kafka_protocol::ResponseError::InvalidRecord.code(),
            "{codec:?}"
        );
    }
    // Keyed records are fine.
    let resp = c
        .produce("compacted", 0, batch(&["a"], 1, Compression::None), 1)
        .await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    b.stop().await;
}

/// `message.timestamp.before.max.ms` / `after.max.ms` (and the deprecated
/// `difference.max.ms` for both): records out of range get INVALID_TIMESTAMP naming them;
/// LogAppendTime topics are not checked (the broker stamps them).
#[tokio::test]
async fn timestamp_bounds_reject_records_out_of_range() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let bounds: &[(&str, &str)] = &[
        ("message.timestamp.before.max.ms", "60000"),
        ("message.timestamp.after.max.ms", "60000"),
    ];
    assert_eq!(
        c.create_topic("tsb", 1, bounds).await.topics[0].error_code,
        0
    );
    let diff: &[(&str, &str)] = &[("message.timestamp.difference.max.ms", "60000")];
    assert_eq!(c.create_topic("tsd", 1, diff).await.topics[0].error_code, 0);
    let append: &[(&str, &str)] = &[
        ("message.timestamp.before.max.ms", "1"),
        ("message.timestamp.type", "LogAppendTime"),
    ];
    assert_eq!(
        c.create_topic("tsa", 1, append).await.topics[0].error_code,
        0
    );
    let now = strand::broker::now_ms();
    for topic in ["tsb", "tsd"] {
        for (ts, code) in [(now - 120_000, 32), (now + 120_000, 32), (now, 0)] {
            let r = c
                .produce(topic, 0, batch(&["a", "b"], ts, Compression::Lz4), -1)
                .await;
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, code, "{topic} at {ts}");
            if code != 0 {
                assert_eq!(p.record_errors.len(), 2, "{topic}");
            }
        }
    }
    let r = c
        .produce("tsa", 0, batch(&["a"], 1, Compression::None), -1)
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    b.stop().await;
}
