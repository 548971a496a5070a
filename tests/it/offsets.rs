//! ListOffsets and OffsetForLeaderEpoch.

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{ListOffsetsRequest, OffsetForLeaderEpochRequest};
use kafka_protocol::records::Compression;

use crate::client::*;

fn list_offsets(topic: &str, ts: i64) -> ListOffsetsRequest {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = ts;
    p.current_leader_epoch = -1;
    let mut t = ListOffsetsTopic::default();
    t.name = topic_name(topic);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.topics = vec![t];
    req
}

#[tokio::test]
async fn list_offsets_by_time() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("lo", 1, &[]).await;
    let base = strand::broker::now_ms() - 10_000;
    // Batch 1: offsets 0-2 at base+0..2; batch 2 (compressed): offsets 3-5 at base+100..102.
    c.produce(
        "lo",
        0,
        batch(&["a", "b", "c"], base, Compression::None),
        -1,
    )
    .await;
    c.produce(
        "lo",
        0,
        batch(&["d", "e", "f"], base + 100, Compression::Lz4),
        -1,
    )
    .await;

    let cases = [
        (-2, 0, -1),                // earliest
        (-1, 6, -1),                // latest
        (-3, 5, base + 102),        // max timestamp: the record holding it
        (base, 0, base),            // exact
        (base + 1, 1, base + 1),    // inside a batch
        (base + 50, 3, base + 100), // between batches: first record at or after
        (base + 101, 4, base + 101),
        (base + 1000, -1, -1), // after everything
    ];
    for (ts, want_offset, want_ts) in cases {
        let resp = c.call(&list_offsets("lo", ts), 7).await;
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(
            (p.offset, p.timestamp),
            (want_offset, want_ts),
            "timestamp {ts}"
        );
    }
    // v1 works too.
    let resp = c.call(&list_offsets("lo", -1), 1).await;
    assert_eq!(resp.topics[0].partitions[0].offset, 6);
    let resp = c.call(&list_offsets("nope", -1), 7).await;
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        kafka_protocol::ResponseError::UnknownTopicOrPartition.code()
    );
    b.stop().await;
}

async fn epoch_end(c: &mut Client, topic: &str) -> (i16, i32, i64) {
    let mut p = OffsetForLeaderPartition::default();
    p.partition = 0;
    p.current_leader_epoch = 0;
    p.leader_epoch = 0;
    let mut t = OffsetForLeaderTopic::default();
    t.topic = topic_name(topic);
    t.partitions = vec![p];
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.topics = vec![t];
    let resp = c.call(&req, 4).await;
    let e = &resp.topics[0].partitions[0];
    (e.error_code, e.leader_epoch, e.end_offset)
}

#[tokio::test]
async fn offset_for_leader_epoch_of_an_empty_partition_is_its_start() {
    // The leader's epoch starts at its log end when it is elected (as in Kafka): an empty
    // partition is (0, 0), not "no such epoch", which librdkafka takes for log truncation.
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("ep0", 1, &[]).await;
    assert_eq!(epoch_end(&mut c, "ep0").await, (0, 0, 0));
    b.stop().await;
}

#[tokio::test]
async fn offset_for_leader_epoch_returns_the_log_end() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("ep", 1, &[]).await;
    c.produce("ep", 0, batch(&["a", "b"], 1, Compression::None), 1)
        .await;
    assert_eq!(epoch_end(&mut c, "ep").await, (0, 0, 2));
    b.stop().await;
}
