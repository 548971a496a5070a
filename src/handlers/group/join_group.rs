//! JoinGroup: join (or rejoin) a group and wait for the rebalance to complete.

use std::time::Duration;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::group::state::JoinRequest;
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: JoinGroupRequest,
) -> HandlerResult<JoinGroupResponse> {
    let v = ctx.api_version;
    let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    // v0 has no rebalance timeout: it is the session timeout.
    let rebalance = if v >= 1 {
        Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64)
    } else {
        session
    };
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout: session,
        rebalance_timeout: rebalance,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member: v >= 4,
    };
    let r = ctx.broker.groups.join(&req.group_id.0, join).await;
    let mut resp = JoinGroupResponse::default();
    resp.error_code = r.error.as_ref().map_or(0, |e| e.code());
    resp.generation_id = r.generation;
    if v >= 7 {
        resp.protocol_type = r.protocol_type.map(StrBytes::from_string);
    }
    resp.protocol_name = match r.protocol_name {
        Some(p) => Some(StrBytes::from_string(p)),
        // Before v7 the field is not nullable.
        None if v < 7 => Some(StrBytes::default()),
        None => None,
    };
    resp.leader = StrBytes::from_string(r.leader);
    if ctx.api_version >= 9 {
        resp.skip_assignment = r.skip_assignment;
    }
    resp.member_id = StrBytes::from_string(r.member_id);
    resp.members = r
        .members
        .into_iter()
        .map(|(id, inst, meta)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = StrBytes::from_string(id);
            if v >= 5 {
                m.group_instance_id = inst.map(StrBytes::from_string);
            }
            m.metadata = meta;
            m
        })
        .collect();
    Ok(Some(resp))
}
