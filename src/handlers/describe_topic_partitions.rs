//! DescribeTopicPartitions (KIP-966, v0): topics and their partitions, paginated, as Kafka 3.8+
//! clients ask instead of Metadata for admin describes.
//!
//! The topics asked for (every topic when the list is empty) are answered sorted by name;
//! unknown names get UNKNOWN_TOPIC_OR_PARTITION. At most `response_partition_limit` partitions
//! are returned (capped at Kafka's `max.request.partition.size.limit`, 2000); when more remain,
//! `next_cursor` names the topic and partition to continue from, and a request with that cursor
//! starts there (a cursor naming a topic outside the request is INVALID_REQUEST). One replica
//! per partition for now: the leader is this broker, the ISR is the replica set, and no
//! eligible-leader-replica sets (KIP-966) exist yet.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::metadata::{bits, TOPIC_OPERATIONS};
use super::{HandlerResult, RequestContext};

/// Kafka's `max.request.partition.size.limit` default.
const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

pub async fn handle(
    ctx: RequestContext,
    req: DescribeTopicPartitionsRequest,
) -> HandlerResult<DescribeTopicPartitionsResponse> {
    let mut resp = DescribeTopicPartitionsResponse::default();
    let mut names: Vec<String> = if req.topics.is_empty() {
        ctx.broker
            .topics()
            .iter()
            .map(|t| t.record.name.clone())
            .collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (start_topic, mut start_partition) = match &req.cursor {
        Some(c) => {
            let name = c.topic_name.0.to_string();
            if !names.contains(&name) || c.partition_index < 0 {
                // Kafka answers the whole request with the error on every topic.
                for n in names {
                    let mut t = DescribeTopicPartitionsResponseTopic::default();
                    t.error_code = ResponseError::InvalidRequest.code();
                    t.name = Some(TopicName(n.into()));
                    resp.topics.push(t);
                }
                return Ok(Some(resp));
            }
            (Some(name), c.partition_index)
        }
        None => (None, 0),
    };
    let mut budget = req
        .response_partition_limit
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    for name in names
        .into_iter()
        .skip_while(|n| start_topic.as_ref().is_some_and(|s| n < s))
    {
        let mut t = DescribeTopicPartitionsResponseTopic::default();
        t.name = Some(TopicName(name.clone().into()));
        let Some(topic) = ctx.broker.topic(&name) else {
            t.error_code = ResponseError::UnknownTopicOrPartition.code();
            resp.topics.push(t);
            continue;
        };
        t.topic_id = topic.record.id;
        t.topic_authorized_operations = bits(TOPIC_OPERATIONS);
        let first = std::mem::take(&mut start_partition).max(0);
        for index in (first..topic.record.partition_count()).map(|i| i as usize) {
            let view = ctx.broker.partition_view(&topic, index as i32);
            if budget == 0 {
                let mut c = Cursor::default();
                c.topic_name = TopicName(name.clone().into());
                c.partition_index = index as i32;
                resp.next_cursor = Some(c);
                resp.topics.push(t);
                return Ok(Some(resp));
            }
            budget -= 1;
            let mut dp = DescribeTopicPartitionsResponsePartition::default();
            dp.partition_index = index as i32;
            dp.leader_id = BrokerId(view.leader);
            dp.leader_epoch = view.leader_epoch;
            dp.replica_nodes = view.replicas.iter().map(|b| BrokerId(*b)).collect();
            dp.isr_nodes = view.isr.iter().map(|b| BrokerId(*b)).collect();
            dp.eligible_leader_replicas = Some(vec![]);
            dp.last_known_elr = Some(vec![]);
            dp.offline_replicas = view.offline.iter().map(|b| BrokerId(*b)).collect();
            dp.error_code = view.error.map_or(0, |e| e.code());
            t.partitions.push(dp);
        }
        resp.topics.push(t);
    }
    Ok(Some(resp))
}
