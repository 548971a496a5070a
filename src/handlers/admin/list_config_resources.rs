//! ListConfigResources (KIP-1142; v0 was ListClientMetricsResources): the resources that have
//! configs. v0 lists client-metrics resources only, of which Strand has none; v1 lists topics
//! (type 2) and this broker (type 4), filtered by the requested types (empty = every type).

use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};
use kafka_protocol::protocol::StrBytes;

use super::configs::{BROKER, TOPIC};
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: ListConfigResourcesRequest,
) -> HandlerResult<ListConfigResourcesResponse> {
    let mut resp = ListConfigResourcesResponse::default();
    if ctx.api_version < 1 {
        return Ok(Some(resp));
    }
    let wants = |t: i8| req.resource_types.is_empty() || req.resource_types.contains(&t);
    if wants(TOPIC) {
        for t in ctx.broker.topics() {
            let mut r = ConfigResource::default();
            r.resource_name = StrBytes::from_string(t.record.name.clone());
            r.resource_type = TOPIC;
            resp.config_resources.push(r);
        }
    }
    if wants(BROKER) {
        let mut r = ConfigResource::default();
        r.resource_name = StrBytes::from_string(ctx.broker.node_id().to_string());
        r.resource_type = BROKER;
        resp.config_resources.push(r);
    }
    Ok(Some(resp))
}
