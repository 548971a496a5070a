//! What the config APIs (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs) share: Kafka's
//! resource types, finding the resource a request names, and applying one resource's changes.
//!
//! Resources: TOPIC (2) by name; BROKER (4) by this broker's id, or `""` for the cluster-wide
//! default. Any other type, or another broker's id, is INVALID_REQUEST, as Kafka answers a
//! resource it does not serve.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::{topic_config, Topic, TopicError};
use crate::handlers::RequestContext;

pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;

/// IncrementalAlterConfigs operations.
pub const OP_SET: i8 = 0;
pub const OP_DELETE: i8 = 1;
pub const OP_APPEND: i8 = 2;
pub const OP_SUBTRACT: i8 = 3;

pub enum Resource {
    Topic(Arc<Topic>),
    Broker,
    BrokerDefault,
}

/// Finds the resource `(type, name)`, or the error code and message the client gets.
pub fn resolve(
    ctx: &RequestContext,
    resource_type: i8,
    name: &StrBytes,
) -> Result<Resource, (ResponseError, String)> {
    match resource_type {
        TOPIC => {
            if let Err(m) = topic_config::validate_topic_name(name) {
                return Err((ResponseError::InvalidTopicException, m));
            }
            ctx.broker.topic(name).map(Resource::Topic).ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition,
                    format!("The topic '{}' does not exist.", name.as_str()),
                )
            })
        }
        BROKER if name.is_empty() => Ok(Resource::BrokerDefault),
        BROKER if name.parse::<i32>().ok() == Some(ctx.broker.node_id()) => Ok(Resource::Broker),
        BROKER => Err((
            ResponseError::InvalidRequest,
            format!(
                "Unexpected broker id, expected {} or empty string, but received {}",
                ctx.broker.node_id(),
                name.as_str()
            ),
        )),
        other => Err((
            ResponseError::InvalidRequest,
            format!("Resource type {other} is not supported by this broker"),
        )),
    }
}

/// Marks the resources that appear more than once in a request (Kafka fails them all).
pub fn duplicates<'a>(
    resources: impl Iterator<Item = (i8, &'a StrBytes)>,
) -> HashSet<(i8, String)> {
    let mut seen = HashSet::new();
    let mut dup = HashSet::new();
    for (t, n) in resources {
        let key = (t, n.to_string());
        if !seen.insert(key.clone()) {
            dup.insert(key);
        }
    }
    dup
}

/// Whether a topic config holds a comma-separated list (APPEND and SUBTRACT apply to these).
fn is_list_config(name: &str) -> bool {
    matches!(
        name,
        "cleanup.policy"
            | "follower.replication.throttled.replicas"
            | "leader.replication.throttled.replicas"
    )
}

/// One IncrementalAlterConfigs entry.
pub struct Op {
    pub name: String,
    pub op: i8,
    pub value: Option<String>,
}

/// Checks a resource's operations before anything is applied: duplicate names, unknown
/// operations, null values for SET/APPEND/SUBTRACT.
pub fn check_ops(ops: &[Op]) -> Result<(), TopicError> {
    let mut names = HashSet::new();
    for o in ops {
        if !names.insert(o.name.as_str()) {
            return Err(TopicError::InvalidRequest(format!(
                "Error due to duplicate config keys: {}",
                o.name
            )));
        }
        if !(OP_SET..=OP_SUBTRACT).contains(&o.op) {
            return Err(TopicError::InvalidRequest(format!(
                "Unknown alter config operation type {} for {}",
                o.op, o.name
            )));
        }
        if o.op != OP_DELETE && o.value.is_none() {
            return Err(TopicError::InvalidRequest(format!(
                "Null value not supported for : {}",
                o.name
            )));
        }
    }
    Ok(())
}

/// Applies incremental operations to a copy of `current`. `default_of` gives the value a list
/// config has without an override (APPEND and SUBTRACT start from it, as in Kafka);
/// `is_list` says which configs are lists (`None` = any, for broker configs).
pub fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[Op],
    topic: bool,
    default_of: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, TopicError> {
    let mut next = current.clone();
    for o in ops {
        if topic && !topic_config::names().any(|n| n == o.name) {
            return Err(TopicError::InvalidConfig(format!(
                "Unknown topic config name: {}",
                o.name
            )));
        }
        let value = o.value.clone().unwrap_or_default();
        match o.op {
            OP_SET => {
                next.insert(o.name.clone(), value);
            }
            OP_DELETE => {
                next.remove(&o.name);
            }
            _ => {
                if topic && !is_list_config(&o.name) {
                    let verb = if o.op == OP_APPEND {
                        "append"
                    } else {
                        "subtract"
                    };
                    return Err(TopicError::InvalidConfig(format!(
                        "Config value {verb} is not allowed for config key: {}",
                        o.name
                    )));
                }
                let base = next
                    .get(&o.name)
                    .cloned()
                    .or_else(|| default_of(&o.name))
                    .unwrap_or_default();
                let mut items: Vec<String> = split_list(&base);
                let given = split_list(&value);
                if o.op == OP_APPEND {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                next.insert(o.name.clone(), items.join(","));
            }
        }
    }
    Ok(next)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// The error code and message of a failed change.
pub fn error_of(e: &TopicError) -> (ResponseError, String) {
    (e.error_code(), e.client_message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, op: i8, value: Option<&str>) -> Op {
        Op {
            name: name.into(),
            op,
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn incremental_ops_follow_kafka() {
        let cur: BTreeMap<String, String> = [("retention.ms".into(), "1".into())].into();
        let dflt = |n: &str| (n == "cleanup.policy").then(|| "delete".to_string());
        let next = apply_ops(
            &cur,
            &[
                op("retention.ms", OP_DELETE, None),
                op("cleanup.policy", OP_APPEND, Some("compact")),
                op("segment.bytes", OP_SET, Some("2000")),
            ],
            true,
            dflt,
        )
        .unwrap();
        assert_eq!(next.get("cleanup.policy").unwrap(), "delete,compact");
        assert!(!next.contains_key("retention.ms"));
        let next = apply_ops(
            &next,
            &[op("cleanup.policy", OP_SUBTRACT, Some("delete"))],
            true,
            dflt,
        )
        .unwrap();
        assert_eq!(next.get("cleanup.policy").unwrap(), "compact");
        assert!(apply_ops(
            &cur,
            &[op("retention.ms", OP_APPEND, Some("5"))],
            true,
            dflt
        )
        .is_err());
        assert!(apply_ops(&cur, &[op("nope", OP_SET, Some("5"))], true, dflt).is_err());
        assert!(check_ops(&[op("a", OP_SET, Some("1")), op("a", OP_DELETE, None)]).is_err());
        assert!(check_ops(&[op("a", 9, Some("1"))]).is_err());
        assert!(check_ops(&[op("a", OP_SET, None)]).is_err());
    }
}
