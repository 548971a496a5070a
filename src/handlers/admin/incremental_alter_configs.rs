//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on individual configs of a
//! resource, leaving the others as they are. APPEND and SUBTRACT apply to list configs only
//! (`cleanup.policy`, the throttled-replica lists) and start from the default when the topic has
//! no override, as in Kafka. The whole resource is validated before anything is applied.

use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::configs::{apply_ops, check_ops, duplicates, error_of, resolve, Op, Resource};
use crate::broker::dynamic_config::Layer;
use crate::broker::topic_config;
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> HandlerResult<IncrementalAlterConfigsResponse> {
    let dup = duplicates(
        req.resources
            .iter()
            .map(|r| (r.resource_type, &r.resource_name)),
    );
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in &req.resources {
        let mut out = AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let result = if dup.contains(&(res.resource_type, res.resource_name.to_string())) {
            Err((
                ResponseError::InvalidRequest,
                "Duplicate resource in request".to_string(),
            ))
        } else {
            alter(&ctx, res, req.validate_only).await
        };
        if let Err((code, message)) = result {
            out.error_code = code.code();
            out.error_message = Some(StrBytes::from_string(message));
        }
        resp.responses.push(out);
    }
    Ok(Some(resp))
}

async fn alter(
    ctx: &RequestContext,
    res: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    let ops: Vec<Op> = res
        .configs
        .iter()
        .map(|c| Op {
            name: c.name.to_string(),
            op: c.config_operation,
            value: c.value.as_ref().map(|v| v.to_string()),
        })
        .collect();
    check_ops(&ops).map_err(|e| error_of(&e))?;
    match resolve(ctx, res.resource_type, &res.resource_name)? {
        Resource::Topic(t) => {
            let config = ctx.broker.config.clone();
            let inherited = ctx.broker.topic_configs(&Default::default());
            ctx.broker
                .alter_topic_configs(&t.record.name, validate_only, |current| {
                    apply_ops(current, &ops, true, |name| {
                        topic_config::effective(&config, &inherited, name)
                            .or_else(|| Some(String::new()))
                    })
                })
                .await
                .map_err(|e| error_of(&e))
        }
        r @ (Resource::Broker | Resource::BrokerDefault) => {
            let layer = if matches!(r, Resource::Broker) {
                Layer::Broker
            } else {
                Layer::ClusterDefault
            };
            ctx.broker
                .alter_broker_configs(layer, validate_only, |current| {
                    apply_ops(current, &ops, false, |_| None)
                })
                .await
                .map_err(|e| error_of(&e))
        }
    }
}
