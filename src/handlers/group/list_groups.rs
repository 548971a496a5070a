//! ListGroups: every group, optionally filtered by state (v4+) and type (v5+: `classic` or
//! `consumer` for KIP-848 groups).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: ListGroupsRequest,
) -> HandlerResult<ListGroupsResponse> {
    let v = ctx.api_version;
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_string()).collect();
    let type_ok = |t: &str| {
        req.types_filter.is_empty() || req.types_filter.iter().any(|f| f.eq_ignore_ascii_case(t))
    };
    let mut resp = ListGroupsResponse::default();
    for (id, ptype, state, gtype) in ctx.broker.groups.list(&states) {
        if !type_ok(gtype) {
            continue;
        }
        let mut g = ListedGroup::default();
        g.group_id = GroupId(StrBytes::from_string(id));
        g.protocol_type = StrBytes::from_string(ptype);
        if v >= 4 {
            g.group_state = StrBytes::from_static_str(state);
        }
        if v >= 5 {
            g.group_type = StrBytes::from_static_str(gtype);
        }
        resp.groups.push(g);
    }
    Ok(Some(resp))
}
