//! OffsetCommit: durable committed offsets, per partition errors (unknown partitions, metadata
//! too large), and group errors (generation, member) applied to every partition, as Kafka does.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: OffsetCommitRequest,
) -> HandlerResult<OffsetCommitResponse> {
    let v = ctx.api_version;
    // Per partition: Some(error) decided here, or None = pass to the coordinator.
    let mut plan: Vec<(usize, usize, Option<ResponseError>)> = Vec::new();
    let mut offsets = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        for (pi, p) in t.partitions.iter().enumerate() {
            if !ctx.broker.partition_exists(&t.name.0, p.partition_index) {
                plan.push((ti, pi, Some(ResponseError::UnknownTopicOrPartition)));
            } else {
                plan.push((ti, pi, None));
                let epoch = if v >= 6 { p.committed_leader_epoch } else { -1 };
                offsets.push((
                    t.name.0.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    epoch,
                    p.committed_metadata.as_ref().map(|m| m.to_string()),
                ));
            }
        }
    }
    let outcome = ctx
        .broker
        .groups
        .commit_offsets(
            &req.group_id.0,
            req.generation_id_or_member_epoch,
            &req.member_id,
            if v >= 7 {
                req.group_instance_id.as_deref()
            } else {
                None
            },
            offsets,
        )
        .await;
    let mut resp = OffsetCommitResponse::default();
    for t in &req.topics {
        let mut rt = OffsetCommitResponseTopic::default();
        rt.name = t.name.clone();
        resp.topics.push(rt);
    }
    let mut per_partition = match &outcome {
        Ok(results) => results
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.error_code()))
            .collect::<Vec<_>>()
            .into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    for (ti, pi, early) in plan {
        let code = match (early, &outcome) {
            (Some(e), _) => Some(e),
            (None, Err(e)) => Some(e.error_code()),
            (None, Ok(_)) => per_partition.next().flatten(),
        };
        let mut rp = OffsetCommitResponsePartition::default();
        rp.partition_index = req.topics[ti].partitions[pi].partition_index;
        rp.error_code = code.map_or(0, |e| e.code());
        resp.topics[ti].partitions.push(rp);
    }
    Ok(Some(resp))
}
