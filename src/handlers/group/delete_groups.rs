//! DeleteGroups: deletes empty groups and their committed offsets.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: DeleteGroupsRequest,
) -> HandlerResult<DeleteGroupsResponse> {
    let mut resp = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let mut r = DeletableGroupResult::default();
        if let Err(e) = ctx.broker.groups.delete_group(&id.0).await {
            r.error_code = e.code();
        }
        r.group_id = id;
        resp.results.push(r);
    }
    Ok(Some(resp))
}
