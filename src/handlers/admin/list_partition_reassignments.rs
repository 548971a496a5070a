//! ListPartitionReassignments (KIP-455): the reassignments in progress, of the partitions
//! named or of all (`topics` null), each with its full replica list (target, then the
//! replicas being removed) and the replicas being added and removed. Partitions without one
//! are left out, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: ListPartitionReassignmentsRequest,
) -> HandlerResult<ListPartitionReassignmentsResponse> {
    let only: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut resp = ListPartitionReassignmentsResponse::default();
    for (topic, parts) in ctx.broker.reassignments(only.as_ref()) {
        let mut t = OngoingTopicReassignment::default();
        t.name = TopicName(StrBytes::from_string(topic));
        for (index, state) in parts {
            let mut p = OngoingPartitionReassignment::default();
            p.partition_index = index;
            p.replicas = ids(&state.replicas);
            p.adding_replicas = ids(&state.adding);
            p.removing_replicas = ids(&state.removing);
            t.partitions.push(p);
        }
        resp.topics.push(t);
    }
    Ok(Some(resp))
}
