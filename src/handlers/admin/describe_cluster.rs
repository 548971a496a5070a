//! DescribeCluster: cluster id, controller and brokers (this one), for AdminClient's
//! `describe_cluster`. Only the broker endpoints are served (endpoint type 1); asking for the
//! controllers' endpoints (KIP-919, type 2) is UNSUPPORTED_ENDPOINT_TYPE, as on a Kafka broker.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::handlers::{HandlerResult, RequestContext};

const BROKERS: i8 = 1;

pub async fn handle(
    ctx: RequestContext,
    req: DescribeClusterRequest,
) -> HandlerResult<DescribeClusterResponse> {
    let v = ctx.api_version;
    let broker = &ctx.broker;
    let mut resp = DescribeClusterResponse::default();
    if v >= 1 {
        resp.endpoint_type = req.endpoint_type;
        if req.endpoint_type != BROKERS {
            resp.error_code = ResponseError::UnsupportedEndpointType.code();
            resp.error_message = Some(StrBytes::from_static_str(
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER",
            ));
            return Ok(Some(resp));
        }
    }
    resp.cluster_id = StrBytes::from_string(broker.cluster_id().to_string());
    resp.controller_id = BrokerId(broker.controller_id());
    for r in broker.brokers() {
        let mut b = DescribeClusterBroker::default();
        b.broker_id = BrokerId(r.node_id);
        b.host = StrBytes::from_string(r.host);
        b.port = i32::from(r.port);
        b.rack = r.rack.map(StrBytes::from_string);
        resp.brokers.push(b);
    }
    if req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = crate::handlers::metadata::CLUSTER_OPERATIONS
            .iter()
            .fold(0, |a, op| a | (1 << op));
    }
    Ok(Some(resp))
}
