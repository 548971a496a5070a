//! CreateTopics, DeleteTopics, Metadata and auto-creation.

use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{DeleteTopicsRequest, MetadataRequest};
use kafka_protocol::ResponseError as E;

use crate::client::*;

fn metadata(topics: Option<&[&str]>, auto_create: bool) -> MetadataRequest {
    let mut req = MetadataRequest::default();
    req.allow_auto_topic_creation = auto_create;
    req.topics = topics.map(|ts| {
        ts.iter()
            .map(|t| {
                let mut m = MetadataRequestTopic::default();
                m.name = Some(topic_name(t));
                m
            })
            .collect()
    });
    req
}

#[tokio::test]
async fn create_validate_and_errors() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let resp = c
        .create_topic("orders", 3, &[("retention.ms", "60000")])
        .await;
    let t = &resp.topics[0];
    assert_eq!(t.error_code, 0);
    assert_eq!(t.num_partitions, 3);
    assert!(!t.topic_id.is_nil());
    let cfg = t.configs.as_ref().unwrap();
    let retention = cfg
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_deref(), Some("60000"));

    let cases: &[(TopicSpec, E)] = &[
        (("orders", 1, &[]), E::TopicAlreadyExists),
        (("bad name!", 1, &[]), E::InvalidTopicException),
        (("neg", -5, &[]), E::InvalidPartitions),
        (("zero", 0, &[]), E::InvalidPartitions),
        (("cfg", 1, &[("retention.ms", "soon")]), E::InvalidConfig),
        (("cfg2", 1, &[("no.such.config", "1")]), E::InvalidConfig),
    ];
    for ((name, parts, configs), want) in cases {
        let resp = c.create_topic(name, *parts, configs).await;
        assert_eq!(resp.topics[0].error_code, want.code(), "topic {name}");
        assert!(resp.topics[0].error_message.is_some());
    }

    // validate_only checks but creates nothing.
    let resp = c
        .call(&create_topics_request(&[("dry", 2, &[])], true), 7)
        .await;
    assert_eq!(resp.topics[0].error_code, 0);
    let md = c.call(&metadata(Some(&["dry"]), false), 12).await;
    assert_eq!(md.topics[0].error_code, E::UnknownTopicOrPartition.code());

    // Replication factor above the broker count.
    let mut req = create_topics_request(&[("rf", 1, &[])], false);
    req.topics[0].replication_factor = 3;
    let resp = c.call(&req, 7).await;
    assert_eq!(
        resp.topics[0].error_code,
        E::InvalidReplicationFactor.code()
    );

    // The same name twice in one request.
    let resp = c
        .call(
            &create_topics_request(&[("dup", 1, &[]), ("dup", 1, &[])], false),
            7,
        )
        .await;
    assert!(resp
        .topics
        .iter()
        .all(|t| t.error_code == E::InvalidRequest.code()));
    b.stop().await;
}

#[tokio::test]
async fn metadata_lists_and_auto_creates() {
    let b = TestBroker::start_with(&[("num.partitions", "2")]).await;
    let mut c = b.client().await;
    let md = c.call(&metadata(Some(&["auto"]), true), 12).await;
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(md.brokers[0].port as u16, b.addr().port());
    assert_eq!(md.controller_id.0, 0);
    let t = &md.topics[0];
    assert_eq!(t.error_code, 0);
    assert_eq!(t.partitions.len(), 2);
    assert_eq!(t.partitions[0].leader_id.0, 0);

    // Not allowed by the request: unknown.
    let md = c.call(&metadata(Some(&["manual"]), false), 12).await;
    assert_eq!(md.topics[0].error_code, E::UnknownTopicOrPartition.code());
    // Invalid name.
    let md = c.call(&metadata(Some(&["no/slash"]), true), 12).await;
    assert_eq!(md.topics[0].error_code, E::InvalidTopicException.code());
    // All topics (v1+: null list), and v0 (empty list = all).
    let md = c.call(&metadata(None, false), 12).await;
    assert_eq!(md.topics.len(), 1);
    let md = c.call(&metadata(Some(&[]), true), 0).await;
    assert_eq!(md.topics.len(), 1);
    b.stop().await;
}

#[tokio::test]
async fn auto_create_can_be_disabled() {
    let b = TestBroker::start_with(&[("auto.create.topics.enable", "false")]).await;
    let mut c = b.client().await;
    let md = c.call(&metadata(Some(&["nope"]), true), 12).await;
    assert_eq!(md.topics[0].error_code, E::UnknownTopicOrPartition.code());
    let resp = c
        .produce(
            "nope",
            0,
            batch(&["x"], 1, kafka_protocol::records::Compression::None),
            1,
        )
        .await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        E::UnknownTopicOrPartition.code()
    );
    b.stop().await;
}

#[tokio::test]
async fn delete_topics_by_name_and_id() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("a", 2, &[]).await;
    let id = c.create_topic("b", 1, &[]).await.topics[0].topic_id;
    c.produce(
        "a",
        1,
        batch(&["x"], 1, kafka_protocol::records::Compression::None),
        1,
    )
    .await;

    let mut req = DeleteTopicsRequest::default();
    req.topic_names = vec![topic_name("a"), topic_name("missing")];
    let resp = c.call(&req, 5).await;
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(
        resp.responses[1].error_code,
        E::UnknownTopicOrPartition.code()
    );
    assert!(!b.dir.path().join("a-0").exists());
    assert!(!b.dir.path().join("a-1").exists());

    let mut req = DeleteTopicsRequest::default();
    let mut st = DeleteTopicState::default();
    st.topic_id = id;
    req.topics = vec![st];
    let resp = c.call(&req, 6).await;
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(resp.responses[0].name.as_ref().unwrap().0.as_str(), "b");

    let md = c.call(&metadata(None, false), 12).await;
    assert!(md.topics.is_empty());
    // A topic can be created again under a deleted name, and starts empty.
    c.create_topic("a", 1, &[]).await;
    let resp = c.fetch("a", 0, 0, 0, 0).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 0);
    b.stop().await;
}
