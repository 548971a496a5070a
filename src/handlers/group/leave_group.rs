//! LeaveGroup: one member (v0–2) or a batch of members by id or instance id (v3+).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: LeaveGroupRequest,
) -> HandlerResult<LeaveGroupResponse> {
    let v = ctx.api_version;
    let members: Vec<(String, Option<String>)> = if v >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let mut resp = LeaveGroupResponse::default();
    match ctx.broker.groups.leave(&req.group_id.0, &members) {
        Err(e) => resp.error_code = e.code(),
        Ok(results) => {
            if v >= 3 {
                for (m, r) in req.members.iter().zip(results) {
                    let mut mr = MemberResponse::default();
                    mr.member_id = m.member_id.clone();
                    mr.group_instance_id = m.group_instance_id.clone();
                    mr.error_code = r.err().map_or(0, |e| e.code());
                    resp.members.push(mr);
                }
            } else if let Some(Err(e)) = results.into_iter().next() {
                resp.error_code = e.code();
            }
        }
    }
    Ok(Some(resp))
}
