//! DescribeGroups: state, protocol and members (with metadata and assignment) of each group;
//! an unknown group is described as Dead with no members, as Kafka does (v6+: GROUP_ID_NOT_FOUND).

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::handlers::{HandlerResult, RequestContext};

/// Kafka's AclOperation bits a principal holds on a group with no authorizer:
/// READ (3), DELETE (6), DESCRIBE (8).
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub async fn handle(
    ctx: RequestContext,
    req: DescribeGroupsRequest,
) -> HandlerResult<DescribeGroupsResponse> {
    let v = ctx.api_version;
    let mut resp = DescribeGroupsResponse::default();
    for id in &req.groups {
        let mut g = DescribedGroup::default();
        g.group_id = id.clone();
        if v >= 3 && req.include_authorized_operations {
            g.authorized_operations = GROUP_OPERATIONS;
        }
        if id.0.is_empty() {
            g.error_code = ResponseError::InvalidGroupId.code();
        } else if let Err(e) = ctx.broker.groups.check_coordinator(&id.0) {
            g.error_code = e.code();
        } else {
            match ctx.broker.groups.describe(&id.0) {
                None => {
                    g.group_state = StrBytes::from_static_str("Dead");
                    if v >= 6 {
                        g.error_code = ResponseError::GroupIdNotFound.code();
                        g.error_message = Some(StrBytes::from_string(format!(
                            "Group {} not found.",
                            id.0.as_str()
                        )));
                    }
                }
                Some(d) => {
                    g.group_state = StrBytes::from_static_str(d.state);
                    g.protocol_type = StrBytes::from_string(d.protocol_type);
                    g.protocol_data = StrBytes::from_string(d.protocol);
                    for (mid, inst, client, host, meta, assignment) in d.members {
                        let mut m = DescribedGroupMember::default();
                        m.member_id = StrBytes::from_string(mid);
                        if v >= 4 {
                            m.group_instance_id = inst.map(StrBytes::from_string);
                        }
                        m.client_id = StrBytes::from_string(client);
                        m.client_host = StrBytes::from_string(host);
                        m.member_metadata = meta;
                        m.member_assignment = assignment;
                        g.members.push(m);
                    }
                }
            }
        }
        resp.groups.push(g);
    }
    Ok(Some(resp))
}
