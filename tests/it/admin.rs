//! Admin and config APIs in-process: CreatePartitions, DescribeConfigs (all versions, with
//! synonyms and documentation), Alter/IncrementalAlterConfigs taking effect on the logs,
//! DeleteRecords, DescribeCluster, DescribeLogDirs, ListConfigResources.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, DeleteRecordsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeConfigsResponse, DescribeLogDirsRequest, IncrementalAlterConfigsRequest,
    ListConfigResourcesRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use crate::client::{batch, topic_name, Client, TestBroker};

fn describe_request(resource_type: i8, name: &str, docs: bool) -> DescribeConfigsRequest {
    let mut r = DescribeConfigsResource::default();
    r.resource_type = resource_type;
    r.resource_name = StrBytes::from_string(name.to_string());
    r.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![r];
    req.include_synonyms = true;
    req.include_documentation = docs;
    req
}

async fn incremental(c: &mut Client, topic: &str, ops: &[(&str, i8, Option<&str>)]) -> i16 {
    incremental_on(c, 2, topic, ops).await
}

async fn incremental_on(
    c: &mut Client,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> i16 {
    let mut res = AlterConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = StrBytes::from_string(name.to_string());
    for (name, op, value) in ops {
        let mut a = AlterableConfig::default();
        a.name = StrBytes::from_string(name.to_string());
        a.config_operation = *op;
        a.value = value.map(|v| StrBytes::from_string(v.to_string()));
        res.configs.push(a);
    }
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    c.call(&req, 1).await.responses[0].error_code
}

fn config<'a>(
    resp: &'a DescribeConfigsResponse,
    name: &str,
) -> &'a kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult {
    resp.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[tokio::test]
async fn describe_configs_every_version_with_docs_and_synonyms() {
    let b = TestBroker::start_with(&[("log.retention.ms", "7200000")]).await;
    let mut c = b.client().await;
    c.create_topic("dc", 1, &[("segment.bytes", "1048576")])
        .await;
    for v in 1..=4 {
        let resp = c.call(&describe_request(2, "dc", v >= 3), v).await;
        assert_eq!(resp.results[0].error_code, 0);
        let seg = config(&resp, "segment.bytes");
        assert_eq!(seg.value.as_deref(), Some("1048576"));
        assert_eq!(seg.config_source, 1);
        assert_eq!(seg.synonyms[0].source, 1);
        assert_eq!(seg.synonyms[1].name.as_str(), "log.segment.bytes");
        let ret = config(&resp, "retention.ms");
        assert_eq!(ret.value.as_deref(), Some("7200000"));
        assert_eq!(
            ret.config_source, 4,
            "inherited from a static broker setting"
        );
        if v >= 3 {
            assert_eq!(ret.config_type, 5, "LONG");
            assert!(ret.documentation.as_deref().is_some_and(|d| !d.is_empty()));
        }
    }
    let resp = c.call(&describe_request(4, "0", false), 4).await;
    let ms = config(&resp, "log.retention.ms");
    assert_eq!(
        (ms.config_source, ms.read_only),
        (4, false),
        "static, and dynamic"
    );
    assert!(config(&resp, "num.partitions").read_only);
    assert!(config(&resp, "num.partitions").documentation.is_none());
    let resp = c.call(&describe_request(4, "7", false), 4).await;
    assert_eq!(resp.results[0].error_code, 42, "INVALID_REQUEST");
    let resp = c.call(&describe_request(2, "nope", false), 4).await;
    assert_eq!(resp.results[0].error_code, 3);
    b.stop().await;
}

#[tokio::test]
async fn create_partitions_then_produce_to_new_ones() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("cp", 1, &[]).await;
    let mut t = CreatePartitionsTopic::default();
    t.name = topic_name("cp");
    t.count = 3;
    t.assignments = None;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5000;
    let resp = c.call(&req, 3).await;
    assert_eq!(resp.results[0].error_code, 0);
    let p = c
        .produce("cp", 2, batch(&["a"], 1000, Compression::None), -1)
        .await;
    assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
    // Growing to the same count again is INVALID_PARTITIONS.
    assert_eq!(c.call(&req, 3).await.results[0].error_code, 37);
    b.restart().await;
    let mut c = b.client().await;
    let f = c.fetch("cp", 2, 0, 0, 1).await;
    assert_eq!(
        crate::client::decode(f.responses[0].partitions[0].records.as_ref().unwrap()).len(),
        1
    );
    b.stop().await;
}

#[tokio::test]
async fn retention_and_max_message_bytes_take_effect() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("ret", 1, &[("segment.bytes", "200")]).await;
    let old = strand::broker::now_ms() - 3 * 86_400_000;
    for i in 0..5 {
        let resp = c
            .produce(
                "ret",
                0,
                batch(
                    &["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
                    old + i,
                    Compression::None,
                ),
                1,
            )
            .await;
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    let p = b
        .running
        .as_ref()
        .unwrap()
        .broker
        .partition("ret", 0)
        .unwrap();
    assert!(p.log().unwrap().segment_count() > 1);
    assert_eq!(
        incremental(&mut c, "ret", &[("retention.ms", 0, Some("86400000"))]).await,
        0
    );
    assert_eq!(
        p.log().unwrap().log_start_offset(),
        5,
        "expired segments deleted at once"
    );

    assert_eq!(
        incremental(&mut c, "ret", &[("max.message.bytes", 0, Some("100"))]).await,
        0
    );
    let big = batch(
        &[&"y".repeat(500)],
        strand::broker::now_ms(),
        Compression::None,
    );
    let resp = c.produce("ret", 0, big, 1).await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 10,
        "MESSAGE_TOO_LARGE"
    );
    // APPEND on a non-list config is INVALID_CONFIG; duplicate keys are INVALID_REQUEST.
    assert_eq!(
        incremental(&mut c, "ret", &[("retention.ms", 2, Some("1"))]).await,
        40
    );
    assert_eq!(
        incremental(
            &mut c,
            "ret",
            &[("retention.ms", 0, Some("1")), ("retention.ms", 1, None)]
        )
        .await,
        42
    );
    b.stop().await;
}

#[tokio::test]
async fn delete_records_cluster_and_log_dirs() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("dr", 1, &[]).await;
    c.produce(
        "dr",
        0,
        batch(&["a", "b", "c", "d"], 1000, Compression::None),
        -1,
    )
    .await;
    let mut p = DeleteRecordsPartition::default();
    p.partition_index = 0;
    p.offset = 2;
    let mut t = DeleteRecordsTopic::default();
    t.name = topic_name("dr");
    t.partitions = vec![p.clone()];
    let mut req = DeleteRecordsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5000;
    let resp = c.call(&req, 2).await;
    let r = &resp.topics[0].partitions[0];
    assert_eq!((r.error_code, r.low_watermark), (0, 2));
    req.topics[0].partitions[0].offset = 99;
    assert_eq!(c.call(&req, 2).await.topics[0].partitions[0].error_code, 1);

    let d = c.call(&DescribeClusterRequest::default(), 0).await;
    assert_eq!(d.brokers.len(), 1);
    assert_eq!(d.cluster_id.len(), 22);
    let mut dreq = DescribeClusterRequest::default();
    dreq.endpoint_type = 2;
    assert_eq!(
        c.call(&dreq, 1).await.error_code,
        115,
        "UNSUPPORTED_ENDPOINT_TYPE"
    );

    let mut all = DescribeLogDirsRequest::default();
    all.topics = None;
    let dirs = c.call(&all, 4).await;
    let t = dirs.results[0]
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == "dr")
        .unwrap();
    assert!(t.partitions[0].partition_size > 0);

    let mut lreq = ListConfigResourcesRequest::default();
    lreq.resource_types = vec![2];
    let l = c.call(&lreq, 1).await;
    assert_eq!(l.config_resources.len(), 1);
    assert_eq!(l.config_resources[0].resource_name.as_str(), "dr");
    b.stop().await;
}

/// A dynamic broker config (`log.retention.ms` on this broker) applies at once to topics
/// without an override — expired segments go — and is still in effect after a restart.
#[tokio::test]
async fn dynamic_broker_retention_takes_effect_at_once_and_after_restart() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("dyn", 1, &[("segment.bytes", "200")]).await;
    c.create_topic(
        "kept",
        1,
        &[("segment.bytes", "200"), ("retention.ms", "-1")],
    )
    .await;
    let old = strand::broker::now_ms() - 3 * 86_400_000;
    for topic in ["dyn", "kept"] {
        for i in 0..5 {
            let resp = c
                .produce(
                    topic,
                    0,
                    batch(
                        &["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
                        old + i,
                        Compression::None,
                    ),
                    1,
                )
                .await;
            assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
        }
    }
    let broker = b.running.as_ref().unwrap().broker.clone();
    let start = |t: &str| {
        broker
            .partition(t, 0)
            .unwrap()
            .log()
            .unwrap()
            .log_start_offset()
    };
    assert_eq!(start("dyn"), 0);
    // A static setting cannot change; a name Strand does not enforce is not stored.
    assert_eq!(
        incremental_on(&mut c, 4, "0", &[("num.partitions", 0, Some("3"))]).await,
        42
    );
    assert_eq!(
        incremental_on(&mut c, 4, "0", &[("log.cleaner.threads", 0, Some("3"))]).await,
        40
    );
    assert_eq!(
        incremental_on(&mut c, 4, "0", &[("log.retention.ms", 0, Some("86400000"))]).await,
        0
    );
    assert_eq!(start("dyn"), 5, "expired segments deleted at once");
    assert_eq!(start("kept"), 0, "a topic override wins");
    drop(broker);
    drop(c);
    b.restart().await;
    let mut c = b.client().await;
    let d = c.call(&describe_request(2, "dyn", false), 4).await;
    let ret = config(&d, "retention.ms");
    assert_eq!(ret.value.as_deref(), Some("86400000"));
    assert_eq!(ret.config_source, 2, "DYNAMIC_BROKER_CONFIG");
    // New old data expires by the persisted dynamic setting (at the next retention check).
    for i in 0..5 {
        c.produce(
            "dyn",
            0,
            batch(
                &["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
                old + i,
                Compression::None,
            ),
            1,
        )
        .await;
    }
    let broker = b.running.as_ref().unwrap().broker.clone();
    broker.enforce_retention();
    let log_start = broker
        .partition("dyn", 0)
        .unwrap()
        .log()
        .unwrap()
        .log_start_offset();
    assert!(log_start >= 9, "log start {log_start}");
    drop(broker);
    b.stop().await;
}
