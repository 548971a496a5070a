//! Dynamic broker configs: the broker settings AlterConfigs / IncrementalAlterConfigs may change
//! at runtime, as in Kafka, persisted in the metadata store and applied without a restart.
//!
//! Which: the replication throttles' rates (`leader.replication.throttled.rate`,
//! `follower.replication.throttled.rate`), and the topic-config defaults (`log.retention.ms` for `retention.ms`, `message.max.bytes`
//! for `max.message.bytes`, ...; Kafka's `DynamicLogConfig`). Each takes effect on every topic
//! that has no override of its own, at once (partition logs get their new settings, retention
//! runs) and after a restart. Two layers, as in Kafka: a broker's own (resource name = its node
//! id, source DYNAMIC_BROKER_CONFIG) over the cluster-wide default (resource name `""`, source
//! DYNAMIC_DEFAULT_BROKER_CONFIG), both over the static settings (config.toml, STRAND_<KEY>,
//! flags: STATIC_BROKER_CONFIG) and the built-in defaults — key by key, as Kafka merges them:
//! the more precise synonym wins first (`log.retention.ms` over `.minutes` over `.hours`,
//! whatever layer each is set in), then the layer.
//!
//! Every other broker setting is static: changing it is INVALID_REQUEST (Kafka's answer for a
//! non-dynamic config); a name Strand does not know or does not enforce is INVALID_CONFIG, never
//! stored (see [`check`]).

use std::collections::BTreeMap;

use super::topic_config;

/// `(broker config, topic config it is the default of, milliseconds per unit (1 when the value
/// is taken as is))`, highest precedence first among the synonyms of one topic config.
pub const DYNAMIC_KEYS: &[(&str, &str, i64)] = &[
    ("log.cleanup.policy", "cleanup.policy", 1),
    ("log.flush.interval.messages", "flush.messages", 1),
    ("log.flush.interval.ms", "flush.ms", 1),
    ("log.index.interval.bytes", "index.interval.bytes", 1),
    ("message.max.bytes", "max.message.bytes", 1),
    (
        "log.message.timestamp.after.max.ms",
        "message.timestamp.after.max.ms",
        1,
    ),
    (
        "log.message.timestamp.before.max.ms",
        "message.timestamp.before.max.ms",
        1,
    ),
    (
        "log.message.timestamp.difference.max.ms",
        "message.timestamp.difference.max.ms",
        1,
    ),
    ("log.message.timestamp.type", "message.timestamp.type", 1),
    ("log.retention.bytes", "retention.bytes", 1),
    ("log.retention.ms", "retention.ms", 1),
    ("log.retention.minutes", "retention.ms", 60_000),
    ("log.retention.hours", "retention.ms", 3_600_000),
    ("log.segment.bytes", "segment.bytes", 1),
    ("log.roll.ms", "segment.ms", 1),
    ("log.roll.hours", "segment.ms", 3_600_000),
    ("compression.type", "compression.type", 1),
];

/// Dynamic broker configs that are no topic config's default: the replication throttles'
/// rates (bytes/s, `super::throttle`).
pub const BROKER_DYNAMIC_KEYS: &[&str] = &[
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
];

/// Whether `key` may be changed at runtime.
pub fn is_dynamic(key: &str) -> bool {
    DYNAMIC_KEYS.iter().any(|(k, ..)| *k == key) || BROKER_DYNAMIC_KEYS.contains(&key)
}

/// The topic config a dynamic broker config is the default of.
pub fn topic_key(key: &str) -> Option<&'static str> {
    DYNAMIC_KEYS
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|(_, t, _)| *t)
}

/// A dynamic broker value as the value of its topic config (`log.retention.hours=1` is
/// `retention.ms=3600000`); `None` for a dynamic key whose value does not convert.
fn as_topic_value(key: &str, value: &str) -> Option<(&'static str, String)> {
    let &(_, topic, unit) = DYNAMIC_KEYS.iter().find(|(k, ..)| *k == key)?;
    if unit == 1 {
        return Some((topic, value.trim().to_string()));
    }
    let v: i64 = value.trim().parse().ok()?;
    // -1 (keep forever) stays -1 whatever the unit.
    let ms = if v < 0 { v } else { v.checked_mul(unit)? };
    Some((topic, ms.to_string()))
}

/// Why a wanted set of dynamic configs is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Strand settings that are static (INVALID_REQUEST).
    Static(Vec<String>),
    /// Names Strand does not enforce, or bad values (INVALID_CONFIG).
    Invalid(String),
}

/// Checks a resource's wanted dynamic configs: every key dynamic, every value valid for the
/// topic config it stands for. `static_keys` are Strand's own settings.
pub fn check<'a>(
    wanted: &BTreeMap<String, String>,
    static_keys: impl Iterator<Item = &'a str> + Clone,
) -> Result<(), Refused> {
    let fixed: Vec<String> = wanted
        .keys()
        .filter(|k| !is_dynamic(k) && static_keys.clone().any(|s| s == k.as_str()))
        .cloned()
        .collect();
    if !fixed.is_empty() {
        return Err(Refused::Static(fixed));
    }
    let unknown: Vec<&str> = wanted
        .keys()
        .filter(|k| !is_dynamic(k))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(Refused::Invalid(format!(
            "Strand does not implement {}: refused rather than stored without effect.",
            unknown.join(", ")
        )));
    }
    for (k, v) in wanted {
        if BROKER_DYNAMIC_KEYS.contains(&k.as_str()) {
            if !v.trim().parse::<i64>().is_ok_and(|r| r >= 0) {
                return Err(Refused::Invalid(format!(
                    "Invalid value {v} for configuration {k}: expected bytes per second (0 or more)"
                )));
            }
            continue;
        }
        let (topic, value) = as_topic_value(k, v)
            .ok_or_else(|| Refused::Invalid(format!("Invalid value {v} for configuration {k}")))?;
        topic_config::validate(topic, Some(&value)).map_err(|e| {
            Refused::Invalid(format!("Invalid value {v} for configuration {k}: {e}"))
        })?;
    }
    Ok(())
}

/// Which dynamic layer a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// This broker's own (resource name = node id).
    Broker,
    /// The cluster-wide default (resource name `""`).
    ClusterDefault,
}

/// The dynamic broker configs in effect on this broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicConfigs {
    /// Resource `"<node id>"`.
    pub broker: BTreeMap<String, String>,
    /// Resource `""`.
    pub cluster_default: BTreeMap<String, String>,
}

impl DynamicConfigs {
    /// The value of a broker-only dynamic config (this broker's own, else the cluster
    /// default), if set.
    pub fn broker_value(&self, key: &str) -> Option<&str> {
        self.broker
            .get(key)
            .or_else(|| self.cluster_default.get(key))
            .map(String::as_str)
    }

    /// The configs of one layer.
    pub fn layer(&self, layer: Layer) -> &BTreeMap<String, String> {
        match layer {
            Layer::Broker => &self.broker,
            Layer::ClusterDefault => &self.cluster_default,
        }
    }

    pub fn layer_mut(&mut self, layer: Layer) -> &mut BTreeMap<String, String> {
        match layer {
            Layer::Broker => &mut self.broker,
            Layer::ClusterDefault => &mut self.cluster_default,
        }
    }

    /// `overrides` (a topic's own configs) completed with the topic-config values the dynamic
    /// broker configs give, where no static setting of a more precise synonym (`statics`: the
    /// settings given in config.toml, environment or flags) takes precedence: what the topic's
    /// settings are built from.
    pub fn with_topic_overrides(
        &self,
        statics: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut merged = overrides.clone();
        if self.broker.is_empty() && self.cluster_default.is_empty() {
            return merged;
        }
        for &(_, topic, _) in DYNAMIC_KEYS {
            if merged.contains_key(topic) {
                continue;
            }
            if let Some(v) = self.topic_value(statics, topic) {
                merged.insert(topic.to_string(), v);
            }
        }
        merged
    }

    /// The value the dynamic broker configs give the topic config `topic` (for a topic without
    /// its own override), unless a static setting of a more precise synonym wins.
    pub fn topic_value(&self, statics: &BTreeMap<String, String>, topic: &str) -> Option<String> {
        if self.broker.is_empty() && self.cluster_default.is_empty() {
            return None;
        }
        for &(key, _, _) in DYNAMIC_KEYS.iter().filter(|(_, t, _)| *t == topic) {
            let dynamic = self
                .broker
                .get(key)
                .or_else(|| self.cluster_default.get(key));
            if let Some(value) = dynamic {
                return as_topic_value(key, value).map(|(_, v)| v);
            }
            if statics.contains_key(key) {
                return None; // the static setting of this synonym wins over less precise ones
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_and_synonyms_resolve_like_kafka() {
        let d = DynamicConfigs {
            broker: map(&[("log.retention.hours", "2")]),
            cluster_default: map(&[("log.retention.ms", "5000"), ("log.segment.bytes", "4096")]),
        };
        let none = BTreeMap::new();
        let merged = d.with_topic_overrides(&none, &map(&[("segment.bytes", "1000")]));
        // Kafka merges key by key: the more precise synonym wins whatever its layer.
        assert_eq!(merged["retention.ms"], "5000");
        // The topic's override wins over everything.
        assert_eq!(merged["segment.bytes"], "1000");
        let d = DynamicConfigs {
            broker: map(&[("log.retention.hours", "2"), ("log.retention.minutes", "3")]),
            cluster_default: map(&[("log.retention.minutes", "4")]),
        };
        // Same synonym in both layers: the broker's own wins.
        assert_eq!(
            d.with_topic_overrides(&none, &none)["retention.ms"],
            "180000"
        );
        // A static log.retention.ms beats dynamic minutes/hours; a static .hours does not.
        let statics = map(&[("log.retention.ms", "1")]);
        assert!(!d
            .with_topic_overrides(&statics, &none)
            .contains_key("retention.ms"));
        let statics = map(&[("log.retention.hours", "1")]);
        assert_eq!(
            d.with_topic_overrides(&statics, &none)["retention.ms"],
            "180000"
        );
    }

    #[test]
    fn only_dynamic_and_valid_values_are_accepted() {
        let statics = ["num.partitions", "log.dirs"];
        assert!(check(
            &map(&[("log.retention.ms", "1000")]),
            statics.iter().copied()
        )
        .is_ok());
        assert_eq!(
            check(&map(&[("num.partitions", "3")]), statics.iter().copied()),
            Err(Refused::Static(vec!["num.partitions".into()]))
        );
        assert!(matches!(
            check(
                &map(&[("log.cleaner.threads", "3")]),
                statics.iter().copied()
            ),
            Err(Refused::Invalid(_))
        ));
        assert!(matches!(
            check(&map(&[("log.segment.bytes", "1")]), statics.iter().copied()),
            Err(Refused::Invalid(_))
        ));
        assert!(matches!(
            check(
                &map(&[("log.retention.hours", "x")]),
                statics.iter().copied()
            ),
            Err(Refused::Invalid(_))
        ));
    }
}
