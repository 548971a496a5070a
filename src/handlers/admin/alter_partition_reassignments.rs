//! AlterPartitionReassignments (KIP-455, v1 KIP-860): starts moving partitions to new replica
//! lists, or cancels a reassignment in progress (a null list). Answered once each change is
//! written (`Broker::reassign_partition`); the data moves afterwards (the added replicas catch
//! up, then the controller completes the reassignment). ListPartitionReassignments shows the
//! progress. Per partition: INVALID_REPLICA_ASSIGNMENT (empty, duplicated or non-live
//! brokers), NO_REASSIGNMENT_IN_PROGRESS (cancel), INVALID_REPLICATION_FACTOR (v1 with
//! `allow_replication_factor_change` false), UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: AlterPartitionReassignmentsRequest,
) -> HandlerResult<AlterPartitionReassignmentsResponse> {
    let mut resp = AlterPartitionReassignmentsResponse::default();
    // v0 has no such field: the replication factor may change, as the default says.
    let allow_rf_change = ctx.api_version < 1 || req.allow_replication_factor_change;
    resp.allow_replication_factor_change = allow_rf_change;
    for t in req.topics {
        let mut out = ReassignableTopicResponse::default();
        out.name = t.name.clone();
        for p in t.partitions {
            let mut r = ReassignablePartitionResponse::default();
            r.partition_index = p.partition_index;
            let target = p.replicas.map(|rs| rs.into_iter().map(|b| b.0).collect());
            if let Err((code, message)) = ctx
                .broker
                .reassign_partition(&t.name.0, p.partition_index, target, allow_rf_change)
                .await
            {
                r.error_code = code.code();
                r.error_message = Some(StrBytes::from_string(message));
            }
            out.partitions.push(r);
        }
        resp.responses.push(out);
    }
    Ok(Some(resp))
}
