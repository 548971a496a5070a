//! ElectLeaders (KIP-460): preferred or unclean leader election for the partitions named, or
//! for every partition (`topic_partitions` null). Any broker takes it (every broker names
//! itself the controller to clients it cannot reach the elected one for) and writes each
//! election as a compare-and-swap of the partition's state (`Broker::elect_leader`), answered
//! once written. Per partition: ELECTION_NOT_NEEDED when the asked-for leader leads already
//! (left out of the answer when every partition was asked for, as Kafka does),
//! PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE,
//! UNKNOWN_TOPIC_OR_PARTITION. An unknown election type is INVALID_REQUEST.

use std::collections::BTreeMap;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::ElectionType;
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: ElectLeadersRequest,
) -> HandlerResult<ElectLeadersResponse> {
    let mut resp = ElectLeadersResponse::default();
    let kind = match req.election_type {
        0 => ElectionType::Preferred,
        1 => ElectionType::Unclean,
        _ => {
            resp.error_code = ResponseError::InvalidRequest.code();
            return Ok(Some(resp));
        }
    };
    let all = req.topic_partitions.is_none();
    let asked: BTreeMap<String, Vec<i32>> = match req.topic_partitions {
        Some(topics) => {
            let mut m: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for t in topics {
                let parts = m.entry(t.topic.0.to_string()).or_default();
                for p in t.partitions {
                    if !parts.contains(&p) {
                        parts.push(p);
                    }
                }
            }
            m
        }
        None => ctx
            .broker
            .topics()
            .iter()
            .map(|t| {
                (
                    t.record.name.clone(),
                    (0..t.record.partition_count()).collect(),
                )
            })
            .collect(),
    };
    for (topic, partitions) in asked {
        let mut result = ReplicaElectionResult::default();
        result.topic = TopicName(StrBytes::from_string(topic.clone()));
        for index in partitions {
            let mut r = PartitionResult::default();
            r.partition_id = index;
            match ctx.broker.elect_leader(&topic, index, kind).await {
                Ok(()) => {}
                Err((ResponseError::ElectionNotNeeded, _)) if all => continue,
                Err((code, message)) => {
                    r.error_code = code.code();
                    r.error_message = Some(StrBytes::from_string(message));
                }
            }
            result.partition_result.push(r);
        }
        if !result.partition_result.is_empty() || !all {
            resp.replica_election_results.push(result);
        }
    }
    Ok(Some(resp))
}
