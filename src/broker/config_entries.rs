//! What DescribeConfigs reports for a topic or for this broker: every config with its effective
//! value, where that value comes from (its *source*), its synonyms in precedence order, its
//! type and a line of documentation, as Kafka reports them.
//!
//! Topic configs: the topic's override (DYNAMIC_TOPIC_CONFIG), else the broker setting it
//! inherits (`retention.ms` ← `log.retention.ms` / `log.retention.minutes` /
//! `log.retention.hours`): set dynamically for this broker (DYNAMIC_BROKER_CONFIG) or for the
//! cluster (DYNAMIC_DEFAULT_BROKER_CONFIG), else STATIC_BROKER_CONFIG when that setting was given
//! (file, environment, flags), else the built-in default (DEFAULT_CONFIG). Broker configs:
//! every key of [`crate::config::KEYS`] and every dynamic broker config, with the same
//! precedence; only the dynamic ones are not read-only.
//!
//! Invariant: every topic config in [`topic_config::names`] has exactly one row in
//! [`TOPIC_DOCS`] (checked by a unit test), so DescribeConfigs never omits one.

use std::collections::BTreeMap;

use super::dynamic_config::{self, DynamicConfigs, Layer, DYNAMIC_KEYS};
use super::topic_config;
use crate::config::{Config, KEYS};

fn layer_source(layer: Layer) -> ConfigSource {
    match layer {
        Layer::Broker => ConfigSource::DynamicBroker,
        Layer::ClusterDefault => ConfigSource::DynamicDefaultBroker,
    }
}

/// Kafka's `ConfigSource` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

/// Kafka's `ConfigType` codes (DescribeConfigs v3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Synonym {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// One config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
    /// Highest precedence first; the first one is the entry itself.
    pub synonyms: Vec<Synonym>,
    pub config_type: ConfigType,
    pub documentation: Option<&'static str>,
}

const MAX: &str = "9223372036854775807";

/// `(topic config, type, Kafka's default, broker synonyms (highest precedence first), doc)`.
type TopicDoc = (
    &'static str,
    ConfigType,
    &'static str,
    &'static [&'static str],
    &'static str,
);

/// Every topic config, in [`topic_config::names`] order.
pub const TOPIC_DOCS: &[TopicDoc] = &[
    ("cleanup.policy", ConfigType::List, "delete", &["log.cleanup.policy"],
     "delete: remove old segments by retention.ms/retention.bytes; compact: keep the latest record per key (accepted, compaction not implemented yet)."),
    ("compression.type", ConfigType::String, "producer", &["compression.type"],
     "Final compression of the topic's batches: uncompressed, gzip, snappy, lz4 or zstd recompress batches produced in another codec; producer keeps the producer's codec."),
    ("compression.gzip.level", ConfigType::Int, "-1", &["compression.gzip.level"],
     "gzip level used when compression.type is gzip."),
    ("compression.lz4.level", ConfigType::Int, "9", &["compression.lz4.level"],
     "lz4 level used when compression.type is lz4 (Strand's encoder has one level: only 9 is accepted)."),
    ("compression.zstd.level", ConfigType::Int, "3", &["compression.zstd.level"],
     "zstd level used when compression.type is zstd."),
    ("delete.retention.ms", ConfigType::Long, "86400000", &["log.cleaner.delete.retention.ms"],
     "How long tombstones are kept on compacted topics."),
    ("file.delete.delay.ms", ConfigType::Long, "60000", &["log.segment.delete.delay.ms"],
     "Delay before a deleted segment's files are removed."),
    ("flush.messages", ConfigType::Long, MAX, &["log.flush.interval.messages"],
     "Force an fsync after this many messages."),
    ("flush.ms", ConfigType::Long, MAX, &["log.flush.interval.ms"],
     "Force an fsync after this many milliseconds."),
    ("follower.replication.throttled.replicas", ConfigType::List, "", &[],
     "Replicas whose follower replication is throttled."),
    ("index.interval.bytes", ConfigType::Int, "4096", &["log.index.interval.bytes"],
     "Bytes of log between two offset index entries."),
    ("leader.replication.throttled.replicas", ConfigType::List, "", &[],
     "Replicas whose leader replication is throttled."),
    ("local.retention.bytes", ConfigType::Long, "-2", &["log.local.retention.bytes"],
     "Local retention with tiered storage (-2 = retention.bytes)."),
    ("local.retention.ms", ConfigType::Long, "-2", &["log.local.retention.ms"],
     "Local retention with tiered storage (-2 = retention.ms)."),
    ("max.compaction.lag.ms", ConfigType::Long, MAX, &["log.cleaner.max.compaction.lag.ms"],
     "Longest time a record stays uncompacted."),
    ("max.message.bytes", ConfigType::Int, "1048588", &["message.max.bytes"],
     "Largest record batch the topic accepts (larger ones fail with MESSAGE_TOO_LARGE)."),
    ("message.downconversion.enable", ConfigType::Boolean, "true", &["log.message.downconversion.enable"],
     "Down-convert batches for old consumers (Strand stores only message format v2)."),
    ("message.timestamp.after.max.ms", ConfigType::Long, MAX, &["log.message.timestamp.after.max.ms"],
     "How far in the future a CreateTime timestamp may be."),
    ("message.timestamp.before.max.ms", ConfigType::Long, MAX, &["log.message.timestamp.before.max.ms"],
     "How far in the past a CreateTime timestamp may be."),
    ("message.timestamp.difference.max.ms", ConfigType::Long, MAX, &["log.message.timestamp.difference.max.ms"],
     "Deprecated: largest difference between a CreateTime timestamp and the broker's clock."),
    ("message.timestamp.type", ConfigType::String, "CreateTime", &["log.message.timestamp.type"],
     "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock."),
    ("min.cleanable.dirty.ratio", ConfigType::Double, "0.5", &["log.cleaner.min.cleanable.ratio"],
     "Dirty ratio above which a compacted log is cleaned."),
    ("min.compaction.lag.ms", ConfigType::Long, "0", &["log.cleaner.min.compaction.lag.ms"],
     "Shortest time a record stays uncompacted."),
    ("min.insync.replicas", ConfigType::Int, "1", &["min.insync.replicas"],
     "Replicas that must have an acks=all write."),
    ("preallocate", ConfigType::Boolean, "false", &["log.preallocate"],
     "Preallocate segment files."),
    ("remote.storage.enable", ConfigType::Boolean, "false", &[],
     "Tiered storage for the topic (not supported by Strand)."),
    ("retention.bytes", ConfigType::Long, "-1", &["log.retention.bytes"],
     "Delete the oldest segments while a partition is larger than this; -1 = no limit."),
    ("retention.ms", ConfigType::Long, "604800000", &["log.retention.ms", "log.retention.minutes", "log.retention.hours"],
     "Delete segments whose newest record is older than this; -1 = keep forever."),
    ("segment.bytes", ConfigType::Int, "1073741824", &["log.segment.bytes"],
     "Roll a new segment when the active one would exceed this size."),
    ("segment.index.bytes", ConfigType::Int, "10485760", &["log.index.size.max.bytes"],
     "Size of a segment's offset index."),
    ("segment.jitter.ms", ConfigType::Long, "0", &["log.roll.jitter.ms", "log.roll.jitter.hours"],
     "Random jitter subtracted from segment.ms."),
    ("segment.ms", ConfigType::Long, "604800000", &["log.roll.ms", "log.roll.hours"],
     "Roll a segment this old (by its first batch's timestamp)."),
    ("unclean.leader.election.enable", ConfigType::Boolean, "false", &["unclean.leader.election.enable"],
     "Allow an out-of-sync replica to become leader."),
];

/// The broker's value of a setting: as given, or its built-in default (`None` when unset).
fn broker_value(config: &Config, key: &str) -> Option<(String, ConfigSource)> {
    if let Some(v) = config.explicit.0.get(key) {
        return Some((v.clone(), ConfigSource::StaticBroker));
    }
    KEYS.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, d)| *d)
        .filter(|d| !d.is_empty())
        .map(|d| (d.to_string(), ConfigSource::Default))
}

/// Every topic config of a topic with `overrides`, or only the `names` asked for.
pub fn topic_entries(
    config: &Config,
    dynamic: &DynamicConfigs,
    overrides: &BTreeMap<String, String>,
    names: Option<&[String]>,
) -> Vec<ConfigEntry> {
    let inherited = dynamic.with_topic_overrides(&config.explicit.0, overrides);
    TOPIC_DOCS
        .iter()
        .filter(|(name, ..)| names.is_none_or(|n| n.iter().any(|x| x == name)))
        .map(|&(name, config_type, default, broker_keys, doc)| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(name) {
                synonyms.push(Synonym {
                    name: name.to_string(),
                    value: Some(v.clone()),
                    source: ConfigSource::DynamicTopic,
                });
            }
            // Broker settings the topic inherits, synonym by synonym (Kafka's precedence):
            // set dynamically for this broker, for the cluster, or given statically; then the
            // built-in defaults; for settings Strand does not have, Kafka's default.
            let mut defaults = Vec::new();
            for key in broker_keys {
                for layer in [Layer::Broker, Layer::ClusterDefault] {
                    if let Some(v) = dynamic.layer(layer).get(*key) {
                        synonyms.push(Synonym {
                            name: key.to_string(),
                            value: Some(v.clone()),
                            source: layer_source(layer),
                        });
                    }
                }
                match broker_value(config, key) {
                    Some((v, ConfigSource::StaticBroker)) => synonyms.push(Synonym {
                        name: key.to_string(),
                        value: Some(v),
                        source: ConfigSource::StaticBroker,
                    }),
                    Some((v, _)) => defaults.push(Synonym {
                        name: key.to_string(),
                        value: Some(v),
                        source: ConfigSource::Default,
                    }),
                    None if !KEYS.iter().any(|(k, _)| k == key) && broker_keys.len() == 1 => {
                        defaults.push(Synonym {
                            name: key.to_string(),
                            value: Some(default.to_string()),
                            source: ConfigSource::Default,
                        })
                    }
                    None => {}
                }
            }
            synonyms.extend(defaults);
            let value = topic_config::effective(config, &inherited, name)
                .unwrap_or_else(|| default.to_string());
            let source = synonyms.first().map_or(ConfigSource::Default, |s| s.source);
            ConfigEntry {
                name: name.to_string(),
                value: Some(value),
                source,
                read_only: false,
                sensitive: false,
                synonyms,
                config_type,
                documentation: Some(doc),
            }
        })
        .collect()
}

/// The built-in default of a broker setting: Strand's, else (a dynamic config Strand has no
/// static setting for) Kafka's default of the topic config it stands for.
fn broker_default(key: &str) -> Option<String> {
    if let Some((_, d)) = KEYS.iter().find(|(k, _)| *k == key) {
        return (!d.is_empty()).then(|| d.to_string());
    }
    let topic = dynamic_config::topic_key(key)?;
    TOPIC_DOCS
        .iter()
        .find(|d| d.0 == topic)
        .map(|d| d.2.to_string())
}

/// Every broker setting (Strand's static ones, then the dynamic ones Strand has no static
/// setting for), or only the `names` asked for. The dynamic ones are not read-only.
pub fn broker_entries(
    config: &Config,
    dynamic: &DynamicConfigs,
    names: Option<&[String]>,
) -> Vec<ConfigEntry> {
    let wanted = |name: &str| names.is_none_or(|n| n.iter().any(|x| x == name));
    let keys = KEYS.iter().map(|(k, _)| *k).chain(
        DYNAMIC_KEYS
            .iter()
            .map(|(k, ..)| *k)
            .filter(|k| !KEYS.iter().any(|(s, _)| s == k)),
    );
    keys.filter(|k| wanted(k))
        .map(|key| {
            let mut synonyms = Vec::new();
            for layer in [Layer::Broker, Layer::ClusterDefault] {
                if let Some(v) = dynamic.layer(layer).get(key) {
                    synonyms.push(Synonym {
                        name: key.to_string(),
                        value: Some(v.clone()),
                        source: layer_source(layer),
                    });
                }
            }
            if let Some(v) = config.explicit.0.get(key) {
                synonyms.push(Synonym {
                    name: key.to_string(),
                    value: Some(v.clone()),
                    source: ConfigSource::StaticBroker,
                });
            }
            if let Some(d) = broker_default(key) {
                synonyms.push(Synonym {
                    name: key.to_string(),
                    value: Some(d),
                    source: ConfigSource::Default,
                });
            }
            let (value, source) = synonyms
                .first()
                .map_or((None, ConfigSource::Default), |s| (s.value.clone(), s.source));
            let is_dynamic = dynamic_config::is_dynamic(key);
            ConfigEntry {
                name: key.to_string(),
                value,
                source,
                read_only: !is_dynamic,
                sensitive: false,
                synonyms,
                config_type: broker_type(key),
                documentation: Some(if is_dynamic {
                    "Dynamic: AlterConfigs on this broker or the cluster default changes it at once; else set in config.toml, STRAND_<KEY> or flags."
                } else {
                    "Set in config.toml, STRAND_<KEY> or flags; see config.toml."
                }),
            }
        })
        .collect()
}

/// The cluster-wide default resource (`""`): only the dynamic defaults that are set, as Kafka.
pub fn cluster_default_entries(
    dynamic: &DynamicConfigs,
    names: Option<&[String]>,
) -> Vec<ConfigEntry> {
    dynamic
        .cluster_default
        .iter()
        .filter(|(k, _)| names.is_none_or(|n| n.iter().any(|x| x == *k)))
        .map(|(k, v)| ConfigEntry {
            name: k.clone(),
            value: Some(v.clone()),
            source: ConfigSource::DynamicDefaultBroker,
            read_only: false,
            sensitive: false,
            synonyms: vec![Synonym {
                name: k.clone(),
                value: Some(v.clone()),
                source: ConfigSource::DynamicDefaultBroker,
            }],
            config_type: broker_type(k),
            documentation: None,
        })
        .collect()
}

fn broker_type(key: &str) -> ConfigType {
    match key {
        "auto.create.topics.enable" | "delete.topic.enable" => ConfigType::Boolean,
        "listeners" | "advertised.listeners" | "log.dirs" | "log.cleanup.policy" => {
            ConfigType::List
        }
        "log.message.timestamp.type" | "metrics.listen" => ConfigType::String,
        "log.segment.bytes"
        | "num.partitions"
        | "node.id"
        | "message.max.bytes"
        | "min.insync.replicas"
        | "log.index.interval.bytes"
        | "socket.request.max.bytes"
        | "max.connections"
        | "queued.max.requests"
        | "log.retention.hours"
        | "log.retention.minutes"
        | "log.roll.hours"
        | "default.replication.factor" => ConfigType::Int,
        _ => ConfigType::Long,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_config_is_documented_in_order() {
        let docs: Vec<&str> = TOPIC_DOCS.iter().map(|d| d.0).collect();
        let names: Vec<&str> = topic_config::names().collect();
        assert_eq!(docs, names);
        for (name, _, default, ..) in TOPIC_DOCS {
            if !default.is_empty() {
                assert!(
                    topic_config::validate(name, Some(default)).is_ok(),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn sources_and_synonyms_follow_kafka() {
        let mut m = BTreeMap::new();
        m.insert("log.retention.ms".to_string(), "5000".to_string());
        let config = Config::from_overrides(&m).unwrap();
        let overrides: BTreeMap<String, String> =
            [("segment.bytes".to_string(), "1000".to_string())].into();
        let entries = topic_entries(&config, &DynamicConfigs::default(), &overrides, None);
        let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap().clone();

        let seg = get("segment.bytes");
        assert_eq!(seg.value.as_deref(), Some("1000"));
        assert_eq!(seg.source, ConfigSource::DynamicTopic);
        assert_eq!(seg.synonyms[1].name, "log.segment.bytes");
        assert_eq!(seg.synonyms[1].source, ConfigSource::Default);

        let ret = get("retention.ms");
        assert_eq!(ret.value.as_deref(), Some("5000"));
        assert_eq!(ret.source, ConfigSource::StaticBroker);
        assert_eq!(ret.synonyms[0].name, "log.retention.ms");
        assert_eq!(ret.synonyms.last().unwrap().name, "log.retention.hours");

        let del = get("delete.retention.ms");
        assert_eq!(del.value.as_deref(), Some("86400000"));
        assert_eq!(del.source, ConfigSource::Default);

        let b = broker_entries(
            &config,
            &DynamicConfigs::default(),
            Some(&["log.retention.ms".into(), "num.partitions".into()]),
        );
        assert_eq!(b.len(), 2);
        let by = |n: &str| b.iter().find(|e| e.name == n).unwrap();
        assert_eq!(by("log.retention.ms").source, ConfigSource::StaticBroker);
        assert!(
            !by("log.retention.ms").read_only,
            "log.retention.ms is dynamic"
        );
        assert!(by("num.partitions").read_only);

        // Dynamic layers come first: this broker's, then the cluster default.
        let dynamic = DynamicConfigs {
            broker: [("log.retention.ms".to_string(), "7".to_string())].into(),
            cluster_default: [("log.retention.hours".to_string(), "1".to_string())].into(),
        };
        let entries = topic_entries(
            &config,
            &dynamic,
            &BTreeMap::new(),
            Some(&["retention.ms".into()]),
        );
        assert_eq!(entries[0].value.as_deref(), Some("7"));
        assert_eq!(entries[0].source, ConfigSource::DynamicBroker);
        let sources: Vec<_> = entries[0].synonyms.iter().map(|s| s.source).collect();
        assert_eq!(
            &sources[..3],
            &[
                ConfigSource::DynamicBroker,
                ConfigSource::StaticBroker,
                ConfigSource::DynamicDefaultBroker
            ],
            "synonym by synonym, then layer"
        );
        let b = broker_entries(&config, &dynamic, Some(&["log.retention.ms".into()]));
        assert_eq!(b[0].value.as_deref(), Some("7"));
        assert_eq!(b[0].source, ConfigSource::DynamicBroker);
    }
}
