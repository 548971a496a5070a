//! AlterConfigs (the legacy, non-incremental form): replaces *all* of a resource's dynamic
//! configs with the ones given, so a topic config left out returns to its default, as in Kafka.
//! Topic configs are validated, stored in the metadata store and applied to the partition logs.
//! Broker resources (this broker's id, or `""` for the cluster-wide default) take the dynamic
//! broker configs of `broker::dynamic_config`, stored and applied at once; other Strand
//! settings are static (INVALID_REQUEST), unknown names INVALID_CONFIG.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::configs::{duplicates, error_of, resolve, Resource};
use crate::broker::dynamic_config::Layer;
use crate::broker::TopicError;
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: AlterConfigsRequest,
) -> HandlerResult<AlterConfigsResponse> {
    let dup = duplicates(
        req.resources
            .iter()
            .map(|r| (r.resource_type, &r.resource_name)),
    );
    let mut resp = AlterConfigsResponse::default();
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
    res: &kafka_protocol::messages::alter_configs_request::AlterConfigsResource,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    let mut configs = BTreeMap::new();
    for c in &res.configs {
        let Some(value) = &c.value else {
            return Err(error_of(&TopicError::InvalidRequest(format!(
                "Null value not supported for : {}",
                c.name.as_str()
            ))));
        };
        configs.insert(c.name.to_string(), value.to_string());
    }
    let r = resolve(ctx, res.resource_type, &res.resource_name)?;
    match r {
        Resource::Topic(t) => ctx
            .broker
            .alter_topic_configs(&t.record.name, validate_only, |_| Ok(configs))
            .await
            .map_err(|e| error_of(&e)),
        Resource::Broker | Resource::BrokerDefault => {
            let layer = if matches!(r, Resource::Broker) {
                Layer::Broker
            } else {
                Layer::ClusterDefault
            };
            ctx.broker
                .alter_broker_configs(layer, validate_only, |_| Ok(configs))
                .await
                .map_err(|e| error_of(&e))
        }
    }
}
