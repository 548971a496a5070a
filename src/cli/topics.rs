//! `strand topics ...`: Metadata for listing and describing, CreateTopics, DeleteTopics,
//! CreatePartitions and IncrementalAlterConfigs for changes, DescribeConfigs for overrides.

use std::collections::BTreeMap;

use anyhow::bail;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use serde_json::json;

use super::client::{describe_error, Client};
use super::{table, Common};

const TOPIC: i8 = 2;
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// One error sentence: what failed, the broker's message if any, Kafka's error name.
fn failure(what: &str, code: i16, message: Option<&StrBytes>) -> anyhow::Error {
    match message.filter(|m| !m.is_empty()) {
        Some(m) => anyhow::anyhow!("{what}: {} [{}]", m.as_str(), describe_error(code)),
        None => anyhow::anyhow!("{what}: {}", describe_error(code)),
    }
}

/// Metadata for `names` (all topics when empty), never auto-creating.
async fn metadata(
    client: &mut Client,
    names: &[String],
) -> anyhow::Result<kafka_protocol::messages::MetadataResponse> {
    let mut req = MetadataRequest::default();
    req.allow_auto_topic_creation = false;
    req.topics = if names.is_empty() {
        None
    } else {
        Some(
            names
                .iter()
                .map(|n| {
                    let mut t = MetadataRequestTopic::default();
                    t.name = Some(name(n));
                    t
                })
                .collect(),
        )
    };
    Ok(client.call(&req).await?.0)
}

fn topic_name(t: &MetadataResponseTopic) -> String {
    t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default()
}

pub async fn list(c: &Common) -> anyhow::Result<()> {
    let mut client = c.connect().await?;
    let md = metadata(&mut client, &[]).await?;
    let mut topics: Vec<_> = md.topics.iter().filter(|t| t.error_code == 0).collect();
    topics.sort_by_key(|t| topic_name(t));
    if c.json {
        let v: Vec<_> = topics
            .iter()
            .map(|t| {
                json!({
                    "name": topic_name(t),
                    "partitions": t.partitions.len(),
                    "replication_factor": t.partitions.first().map_or(0, |p| p.replica_nodes.len()),
                    "internal": t.is_internal,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let rows: Vec<Vec<String>> = topics
            .iter()
            .map(|t| {
                vec![
                    topic_name(t),
                    t.partitions.len().to_string(),
                    t.partitions
                        .first()
                        .map_or(0, |p| p.replica_nodes.len())
                        .to_string(),
                ]
            })
            .collect();
        table::print(&["TOPIC", "PARTITIONS", "REPLICATION"], &rows);
    }
    Ok(())
}

pub async fn create(
    c: &Common,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
    if_not_exists: bool,
) -> anyhow::Result<()> {
    let mut client = c.connect().await?;
    let mut t = CreatableTopic::default();
    t.name = name(topic);
    t.num_partitions = partitions;
    t.replication_factor = replication_factor;
    for (k, v) in configs {
        let mut cfg = CreatableTopicConfig::default();
        cfg.name = StrBytes::from_string(k.clone());
        cfg.value = Some(StrBytes::from_string(v.clone()));
        t.configs.push(cfg);
    }
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = (c.timeout * 1000).min(i32::MAX as u64) as i32;
    let (resp, _) = client.call(&req).await?;
    let Some(r) = resp.topics.first() else {
        bail!("the broker sent no result for topic '{topic}'");
    };
    if r.error_code == ResponseError::TopicAlreadyExists.code() && if_not_exists {
        report(c, "exists", topic);
        return Ok(());
    }
    if r.error_code != 0 {
        return Err(failure(
            &format!("cannot create topic '{topic}'"),
            r.error_code,
            r.error_message.as_ref(),
        ));
    }
    report(c, "created", topic);
    Ok(())
}

fn report(c: &Common, status: &str, topic: &str) {
    if c.json {
        outln!("{}", json!({ "topic": topic, "status": status }));
    } else {
        outln!("Topic '{topic}' {status}.");
    }
}

/// The topic configs set on each topic (DYNAMIC_TOPIC_CONFIG), by topic.
async fn overrides(
    client: &mut Client,
    topics: &[String],
) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut req = DescribeConfigsRequest::default();
    req.resources = topics
        .iter()
        .map(|t| {
            let mut r = DescribeConfigsResource::default();
            r.resource_type = TOPIC;
            r.resource_name = StrBytes::from_string(t.clone());
            r.configuration_keys = None;
            r
        })
        .collect();
    let mut out = BTreeMap::new();
    if topics.is_empty() {
        return Ok(out);
    }
    let (resp, _) = client.call(&req).await?;
    for r in resp.results {
        if r.error_code != 0 {
            continue;
        }
        let set = r
            .configs
            .iter()
            .filter(|e| e.config_source == DYNAMIC_TOPIC_CONFIG)
            .map(|e| {
                let v = if e.is_sensitive {
                    "(sensitive)".to_string()
                } else {
                    e.value.as_ref().map(|v| v.to_string()).unwrap_or_default()
                };
                (e.name.to_string(), v)
            })
            .collect();
        out.insert(r.resource_name.to_string(), set);
    }
    Ok(out)
}

pub async fn describe(c: &Common, names: &[String]) -> anyhow::Result<()> {
    let mut client = c.connect().await?;
    let md = metadata(&mut client, names).await?;
    let mut topics = Vec::new();
    for t in &md.topics {
        let n = topic_name(t);
        if t.error_code != 0 {
            return Err(failure(
                &format!("cannot describe topic '{n}'"),
                t.error_code,
                None,
            ));
        }
        topics.push(t);
    }
    topics.sort_by_key(|t| topic_name(t));
    let names: Vec<String> = topics.iter().map(|t| topic_name(t)).collect();
    let configs = if client.supports::<DescribeConfigsRequest>() {
        overrides(&mut client, &names).await?
    } else {
        BTreeMap::new()
    };
    let empty = BTreeMap::new();
    if c.json {
        let v: Vec<_> = topics
            .iter()
            .map(|t| {
                let n = topic_name(t);
                let mut parts: Vec<_> = t.partitions.iter().collect();
                parts.sort_by_key(|p| p.partition_index);
                json!({
                    "name": n,
                    "id": t.topic_id.to_string(),
                    "internal": t.is_internal,
                    "partitions": parts.iter().map(|p| json!({
                        "partition": p.partition_index,
                        "leader": p.leader_id.0,
                        "leader_epoch": p.leader_epoch,
                        "replicas": p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                        "isr": p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                        "error": (p.error_code != 0).then(|| describe_error(p.error_code)),
                    })).collect::<Vec<_>>(),
                    "configs": configs.get(&n).unwrap_or(&empty),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (i, t) in topics.iter().enumerate() {
        let n = topic_name(t);
        if i > 0 {
            outln!();
        }
        let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
        let cfg: Vec<String> = configs
            .get(&n)
            .unwrap_or(&empty)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        outln!(
            "Topic: {n}  TopicId: {}  PartitionCount: {}  ReplicationFactor: {rf}  Configs: {}",
            t.topic_id,
            t.partitions.len(),
            cfg.join(",")
        );
        let mut parts: Vec<_> = t.partitions.iter().collect();
        parts.sort_by_key(|p| p.partition_index);
        let ids = |v: &[kafka_protocol::messages::BrokerId]| {
            v.iter()
                .map(|b| b.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let rows: Vec<Vec<String>> = parts
            .iter()
            .map(|p| {
                vec![
                    p.partition_index.to_string(),
                    p.leader_id.0.to_string(),
                    ids(&p.replica_nodes),
                    ids(&p.isr_nodes),
                ]
            })
            .collect();
        table::print(&["PARTITION", "LEADER", "REPLICAS", "ISR"], &rows);
    }
    Ok(())
}

pub async fn alter(
    c: &Common,
    topic: &str,
    partitions: Option<i32>,
    set: &[(String, String)],
    delete: &[String],
) -> anyhow::Result<()> {
    let mut client = c.connect().await?;
    if let Some(count) = partitions {
        let mut t = CreatePartitionsTopic::default();
        t.name = name(topic);
        t.count = count;
        t.assignments = None;
        let mut req = CreatePartitionsRequest::default();
        req.topics = vec![t];
        req.timeout_ms = (c.timeout * 1000).min(i32::MAX as u64) as i32;
        let (resp, _) = client.call(&req).await?;
        if let Some(r) = resp.results.first().filter(|r| r.error_code != 0) {
            return Err(failure(
                &format!("cannot change the partition count of '{topic}' to {count}"),
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
    }
    if !set.is_empty() || !delete.is_empty() {
        let mut res = AlterConfigsResource::default();
        res.resource_type = TOPIC;
        res.resource_name = StrBytes::from_string(topic.to_string());
        for (k, v) in set {
            let mut a = AlterableConfig::default();
            a.name = StrBytes::from_string(k.clone());
            a.config_operation = OP_SET;
            a.value = Some(StrBytes::from_string(v.clone()));
            res.configs.push(a);
        }
        for k in delete {
            let mut a = AlterableConfig::default();
            a.name = StrBytes::from_string(k.clone());
            a.config_operation = OP_DELETE;
            a.value = None;
            res.configs.push(a);
        }
        let mut req = IncrementalAlterConfigsRequest::default();
        req.resources = vec![res];
        let (resp, _) = client.call(&req).await?;
        if let Some(r) = resp.responses.first().filter(|r| r.error_code != 0) {
            return Err(failure(
                &format!("cannot change the configs of '{topic}'"),
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
    }
    report(c, "altered", topic);
    Ok(())
}

pub async fn delete(c: &Common, names: &[String], if_exists: bool) -> anyhow::Result<()> {
    let mut client = c.connect().await?;
    let mut req = DeleteTopicsRequest::default();
    req.timeout_ms = (c.timeout * 1000).min(i32::MAX as u64) as i32;
    // v6+ names topics in `topics`, older versions in `topic_names`: fill the one the
    // negotiated version has (encoding a field absent in that version fails).
    if client.version::<DeleteTopicsRequest>()? >= 6 {
        req.topics = names
            .iter()
            .map(|n| {
                let mut t = DeleteTopicState::default();
                t.name = Some(name(n));
                t
            })
            .collect();
    } else {
        req.topic_names = names.iter().map(|n| name(n)).collect();
    }
    let (resp, _) = client.call(&req).await?;
    let mut failed = None;
    for r in &resp.responses {
        let n = r.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        if r.error_code == ResponseError::UnknownTopicOrPartition.code() && if_exists {
            continue;
        }
        if r.error_code != 0 {
            failed.get_or_insert(failure(
                &format!("cannot delete topic '{n}'"),
                r.error_code,
                r.error_message.as_ref(),
            ));
            continue;
        }
        report(c, "deleted", &n);
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
