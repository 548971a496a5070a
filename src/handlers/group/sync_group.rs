//! SyncGroup: the leader hands in the assignment; every member gets its own.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::group::state::SyncRequest;
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: SyncGroupRequest,
) -> HandlerResult<SyncGroupResponse> {
    let v = ctx.api_version;
    let sync = SyncRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        generation: req.generation_id,
        protocol_type: req.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: req.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let result = ctx.broker.groups.sync(&req.group_id.0, sync).await;
    let mut resp = SyncGroupResponse::default();
    match result {
        Ok(r) => {
            if v >= 5 {
                resp.protocol_type = r.protocol_type.map(StrBytes::from_string);
                resp.protocol_name = r.protocol_name.map(StrBytes::from_string);
            }
            resp.assignment = r.assignment;
        }
        Err(e) => resp.error_code = e.code(),
    }
    Ok(Some(resp))
}
