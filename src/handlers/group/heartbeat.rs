//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: HeartbeatRequest,
) -> HandlerResult<HeartbeatResponse> {
    let mut resp = HeartbeatResponse::default();
    if let Err(e) = ctx.broker.groups.heartbeat(
        &req.group_id.0,
        &req.member_id,
        req.group_instance_id.as_deref(),
        req.generation_id,
    ) {
        resp.error_code = e.code();
    }
    Ok(Some(resp))
}
