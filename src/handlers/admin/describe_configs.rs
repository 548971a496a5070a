//! DescribeConfigs: the configs of topics and of this broker, with their sources, and with
//! synonyms (`include_synonyms`) and documentation (`include_documentation`, v3+) when asked.
//! What is reported is built in `broker::config_entries`; this file only maps it to the wire.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::configs::{resolve, Resource};
use crate::broker::config_entries::{
    broker_entries, cluster_default_entries, topic_entries, ConfigEntry,
};
use crate::handlers::{HandlerResult, RequestContext};

pub async fn handle(
    ctx: RequestContext,
    req: DescribeConfigsRequest,
) -> HandlerResult<DescribeConfigsResponse> {
    let v = ctx.api_version;
    let mut resp = DescribeConfigsResponse::default();
    for res in &req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .as_ref()
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        let entries = match resolve(&ctx, res.resource_type, &res.resource_name) {
            Ok(Resource::Topic(t)) => Ok(topic_entries(
                &ctx.broker.config,
                &ctx.broker.dynamic_configs(),
                &t.record.configs,
                keys.as_deref(),
            )),
            Ok(Resource::Broker) => Ok(broker_entries(
                &ctx.broker.config,
                &ctx.broker.dynamic_configs(),
                keys.as_deref(),
            )),
            Ok(Resource::BrokerDefault) => Ok(cluster_default_entries(
                &ctx.broker.dynamic_configs(),
                keys.as_deref(),
            )),
            Err(e) => Err(e),
        };
        match entries {
            Ok(entries) => {
                out.configs = entries
                    .iter()
                    .map(|e| to_wire(e, v, req.include_synonyms, req.include_documentation))
                    .collect();
            }
            Err((code, message)) => {
                out.error_code = code.code();
                out.error_message = Some(StrBytes::from_string(message));
            }
        }
        resp.results.push(out);
    }
    Ok(Some(resp))
}

fn to_wire(
    e: &ConfigEntry,
    v: i16,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default();
    r.name = StrBytes::from_string(e.name.clone());
    r.value = e.value.clone().map(StrBytes::from_string);
    r.read_only = e.read_only;
    r.config_source = e.source as i8;
    r.is_sensitive = e.sensitive;
    if include_synonyms {
        r.synonyms = e
            .synonyms
            .iter()
            .map(|s| {
                let mut w = DescribeConfigsSynonym::default();
                w.name = StrBytes::from_string(s.name.clone());
                w.value = s.value.clone().map(StrBytes::from_string);
                w.source = s.source as i8;
                w
            })
            .collect();
    }
    if v >= 3 {
        r.config_type = e.config_type as i8;
        // Null unless asked for (the field's default is an empty string).
        r.documentation = if include_documentation {
            e.documentation.map(StrBytes::from_static_str)
        } else {
            None
        };
    }
    r
}
