//! CreateTopics: validates every topic as Kafka does (name, partitions, replication factor,
//! replica assignment, configs, duplicates), then creates it unless `validate_only`.
//! Results are per topic; the response (v5+) carries the partition count, replication factor and
//! effective configs of each topic created.

use std::collections::HashMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::{topic_config, NewTopic, TopicError};
use crate::handlers::{HandlerResult, RequestContext};

/// DescribeConfigs' config sources, as used in the CreateTopics response.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

pub async fn handle(
    ctx: RequestContext,
    req: CreateTopicsRequest,
) -> HandlerResult<CreateTopicsResponse> {
    let v = ctx.api_version;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut resp = CreateTopicsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        if counts.get(&name).copied().unwrap_or(0) > 1 {
            fail(&mut r, v, &TopicError::InvalidRequest(format!(
                "Create topics request from client `{}` contains multiple entries for the following topics: {name}",
                ctx.client_id.as_deref().unwrap_or("")
            )));
            resp.topics.push(r);
            continue;
        }
        let new = NewTopic {
            name: name.clone(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
            configs: t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
        };
        let result = if req.validate_only {
            ctx.broker.plan_topic(&new)
        } else {
            ctx.broker
                .create_topic(&new)
                .await
                .map(|t| t.record.clone())
        };
        match result {
            Ok(record) => {
                if v >= 7 && !req.validate_only {
                    r.topic_id = record.id;
                }
                if v >= 5 {
                    r.num_partitions = record.partition_count();
                    r.replication_factor = record.assignments.first().map_or(1, |a| a.len() as i16);
                    r.configs = Some(effective_configs(&ctx, &record.configs));
                }
            }
            Err(e) => fail(&mut r, v, &e),
        }
        resp.topics.push(r);
    }
    Ok(Some(resp))
}

fn fail(r: &mut CreatableTopicResult, v: i16, e: &TopicError) {
    r.error_code = e.error_code().code();
    if v >= 1 {
        r.error_message = Some(StrBytes::from_string(e.client_message()));
    }
    if v >= 5 {
        r.num_partitions = -1;
        r.replication_factor = -1;
    }
    if e.error_code() == ResponseError::TopicAlreadyExists {
        r.error_message = Some(StrBytes::from_string(e.to_string()));
    }
}

fn effective_configs(
    ctx: &RequestContext,
    overrides: &std::collections::BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    topic_config::names()
        .filter_map(|name| {
            let value = topic_config::effective(
                &ctx.broker.config,
                &ctx.broker.topic_configs(overrides),
                name,
            )?;
            let mut c = CreatableTopicConfigs::default();
            c.name = StrBytes::from_static_str(name);
            c.value = Some(StrBytes::from_string(value));
            c.config_source = if overrides.contains_key(name) {
                SOURCE_TOPIC
            } else {
                SOURCE_DEFAULT
            };
            Some(c)
        })
        .collect()
}
