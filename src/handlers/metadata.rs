//! Metadata: brokers, controller, and topics with their partitions' leaders.
//!
//! Auto-creates requested topics that do not exist when the request allows it (always before
//! v4) and `auto.create.topics.enable` is on, with `num.partitions`, as Kafka does. Creation is
//! synchronous here, so a just-created topic is returned with its leader, without the
//! LEADER_NOT_AVAILABLE round trip Kafka makes clients take.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{HandlerResult, RequestContext};
use crate::broker::{Topic, TopicError};

/// Kafka's ACL operation codes (AclOperation) a principal may hold on a topic; with no
/// authorizer every one of them is allowed.
/// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub const TOPIC_OPERATIONS: &[i32] = &[3, 4, 5, 6, 7, 8, 10, 11];
/// CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
pub const CLUSTER_OPERATIONS: &[i32] = &[5, 7, 8, 9, 10, 11, 12];

pub fn bits(ops: &[i32]) -> i32 {
    ops.iter().fold(0, |acc, op| acc | (1 << op))
}

pub async fn handle(ctx: RequestContext, req: MetadataRequest) -> HandlerResult<MetadataResponse> {
    let v = ctx.api_version;
    let broker = &ctx.broker;

    let mut resp = MetadataResponse::default();
    resp.brokers = broker
        .brokers()
        .into_iter()
        .map(|r| {
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(r.node_id);
            b.host = StrBytes::from_string(r.host);
            b.port = i32::from(r.port);
            if v >= 1 {
                b.rack = r.rack.map(StrBytes::from_string);
            }
            b
        })
        .collect();
    if v >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(broker.cluster_id().to_string()));
    }
    if v >= 1 {
        // The answering broker, always in its own broker list: clients send admin requests to
        // Metadata's controller and every broker takes them, while a broker whose watch lags
        // may not list the elected controller yet (librdkafka then drops its connection to
        // it mid-request). DescribeCluster names the elected one.
        resp.controller_id = BrokerId(broker.node_id());
    }
    if (8..=10).contains(&v) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = bits(CLUSTER_OPERATIONS);
    }
    let include_ops = v >= 8 && req.include_topic_authorized_operations;
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested = match req.topics {
        None => None,
        Some(t) if t.is_empty() && v == 0 => None,
        Some(t) => Some(t),
    };
    let allow_auto_create =
        (v < 4 || req.allow_auto_topic_creation) && broker.config.auto_create_topics_enable;

    match requested {
        None => {
            for topic in broker.topics() {
                resp.topics.push(describe(&ctx, &topic, include_ops));
            }
        }
        Some(list) => {
            for t in list {
                let entry = match t.name {
                    Some(name) => {
                        let name = name.0.to_string();
                        match broker.topic(&name) {
                            Some(topic) => describe(&ctx, &topic, include_ops),
                            None if allow_auto_create => {
                                match broker.auto_create_topic(&name).await {
                                    Ok(topic) => describe(&ctx, &topic, include_ops),
                                    Err(e) => error_topic(Some(name), auto_create_error(&e)),
                                }
                            }
                            None => error_topic(Some(name), ResponseError::UnknownTopicOrPartition),
                        }
                    }
                    None => match broker.topic_by_id(t.topic_id) {
                        Some(topic) => describe(&ctx, &topic, include_ops),
                        None => {
                            let mut e = error_topic(None, ResponseError::UnknownTopicId);
                            e.topic_id = t.topic_id;
                            e
                        }
                    },
                };
                resp.topics.push(entry);
            }
        }
    }
    Ok(Some(resp))
}

fn auto_create_error(e: &TopicError) -> ResponseError {
    match e {
        TopicError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        other => other.error_code(),
    }
}

fn error_topic(name: Option<String>, error: ResponseError) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.error_code = error.code();
    t.name = name.map(|n| TopicName(StrBytes::from_string(n)));
    t
}

fn describe(ctx: &RequestContext, topic: &Topic, include_ops: bool) -> MetadataResponseTopic {
    let v = ctx.api_version;
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(topic.record.name.clone())));
    if v >= 10 {
        t.topic_id = topic.record.id;
    }
    if include_ops {
        t.topic_authorized_operations = bits(TOPIC_OPERATIONS);
    }
    for index in 0..topic.record.partition_count() {
        let view = ctx.broker.partition_view(topic, index);
        let mut mp = MetadataResponsePartition::default();
        mp.partition_index = index;
        mp.leader_id = BrokerId(view.leader);
        if v >= 7 {
            mp.leader_epoch = view.leader_epoch;
        }
        mp.replica_nodes = view.replicas.iter().map(|b| BrokerId(*b)).collect();
        mp.isr_nodes = view.isr.iter().map(|b| BrokerId(*b)).collect();
        if v >= 5 {
            mp.offline_replicas = view.offline.iter().map(|b| BrokerId(*b)).collect();
        }
        mp.error_code = view.error.map_or(0, |e| e.code());
        t.partitions.push(mp);
    }
    t
}
