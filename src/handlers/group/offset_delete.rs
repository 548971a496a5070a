//! OffsetDelete: deletes some committed offsets of a group, refusing topics the group's
//! members are subscribed to (GROUP_SUBSCRIBED_TO_TOPIC).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: OffsetDeleteRequest,
) -> HandlerResult<OffsetDeleteResponse> {
    let mut resp = OffsetDeleteResponse::default();
    let mut wanted = Vec::new();
    let mut unknown = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let known = ctx.broker.partition_exists(&t.name.0, p.partition_index);
            unknown.push(!known);
            if known {
                wanted.push((t.name.0.to_string(), p.partition_index));
            }
        }
    }
    let outcome = ctx
        .broker
        .groups
        .delete_offsets(&req.group_id.0, wanted)
        .await;
    let mut results = match outcome {
        Err(e) => {
            resp.error_code = e.code();
            return Ok(Some(resp));
        }
        Ok(r) => r.into_iter(),
    };
    let mut flags = unknown.into_iter();
    for t in req.topics {
        let mut rt = OffsetDeleteResponseTopic::default();
        rt.name = t.name;
        for p in t.partitions {
            let mut rp = OffsetDeleteResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = if flags.next().unwrap_or(true) {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                results.next().and_then(|r| r.err()).map_or(0, |e| e.code())
            };
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    Ok(Some(resp))
}
