//! Topic-level configs: Kafka's names, validation and defaults.
//!
//! A topic stores only the overrides it was given (`TopicRecord::configs`); everything else
//! comes from the broker's `log.*` defaults, as in Kafka. Validation follows Kafka: an unknown
//! name or a value of the wrong type or range is `INVALID_CONFIG`. Configs that Strand accepts
//! but whose behaviour is not implemented yet are listed in docs/compatibility.md.

use std::collections::BTreeMap;

use crate::config::{Config, TimestampType};
use crate::storage::batch::Compression;
use crate::storage::recompress::TargetCodec;
use crate::storage::LogConfig;

/// How a topic config value is checked.
#[derive(Clone, Copy)]
enum Kind {
    /// An integer in `[min, max]`.
    Long(i64, i64),
    Bool,
    /// One of the listed words.
    OneOf(&'static [&'static str]),
    CleanupPolicy,
    Ratio,
    /// A throttled-replicas list: `*`, empty, or `partition:broker` pairs
    /// (`super::throttle`).
    ReplicaList,
}

const I32: i64 = i32::MAX as i64;
const I64: i64 = i64::MAX;

/// Every topic config Kafka 4 documents, with how its value is validated.
const TOPIC_CONFIGS: &[(&str, Kind)] = &[
    ("cleanup.policy", Kind::CleanupPolicy),
    // Batches in another codec are recompressed on append (storage::recompress).
    (
        "compression.type",
        Kind::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
    ),
    ("compression.gzip.level", Kind::Long(-1, 9)),
    // Strand's lz4 encoder has one level: Kafka's default (9) is accepted, others refused
    // rather than ignored.
    ("compression.lz4.level", Kind::Long(9, 9)),
    ("compression.zstd.level", Kind::Long(-131072, 22)),
    ("delete.retention.ms", Kind::Long(0, I64)),
    ("file.delete.delay.ms", Kind::Long(0, I64)),
    ("flush.messages", Kind::Long(1, I64)),
    ("flush.ms", Kind::Long(0, I64)),
    ("follower.replication.throttled.replicas", Kind::ReplicaList),
    ("index.interval.bytes", Kind::Long(0, I32)),
    ("leader.replication.throttled.replicas", Kind::ReplicaList),
    ("local.retention.bytes", Kind::Long(-2, I64)),
    ("local.retention.ms", Kind::Long(-2, I64)),
    ("max.compaction.lag.ms", Kind::Long(1, I64)),
    ("max.message.bytes", Kind::Long(0, I32)),
    ("message.downconversion.enable", Kind::Bool),
    ("message.timestamp.after.max.ms", Kind::Long(0, I64)),
    ("message.timestamp.before.max.ms", Kind::Long(0, I64)),
    ("message.timestamp.difference.max.ms", Kind::Long(0, I64)),
    (
        "message.timestamp.type",
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    ("min.cleanable.dirty.ratio", Kind::Ratio),
    ("min.compaction.lag.ms", Kind::Long(0, I64)),
    ("min.insync.replicas", Kind::Long(1, I32)),
    ("preallocate", Kind::Bool),
    ("remote.storage.enable", Kind::Bool),
    ("retention.bytes", Kind::Long(-1, I64)),
    ("retention.ms", Kind::Long(-1, I64)),
    ("segment.bytes", Kind::Long(14, I32)),
    ("segment.index.bytes", Kind::Long(4, I32)),
    ("segment.jitter.ms", Kind::Long(0, I64)),
    ("segment.ms", Kind::Long(1, I64)),
    ("unclean.leader.election.enable", Kind::Bool),
];

/// The names of every topic config, in Kafka's documentation order.
pub fn names() -> impl Iterator<Item = &'static str> {
    TOPIC_CONFIGS.iter().map(|(n, _)| *n)
}

/// Checks a `cleanup.policy` value (`delete`, `compact`, or both, comma separated).
pub fn validate_cleanup_policy(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if parts.is_empty() || parts.iter().any(|p| *p != "delete" && *p != "compact") {
        return Err("expected delete, compact or delete,compact".into());
    }
    Ok(())
}

/// Validates one topic config; the error text is what the client sees in `error_message`.
pub fn validate(name: &str, value: Option<&str>) -> Result<(), String> {
    let Some((_, kind)) = TOPIC_CONFIGS.iter().find(|(n, _)| *n == name) else {
        return Err(format!("Unknown topic config name: {name}"));
    };
    let Some(value) = value else {
        return Err(format!("Null value not supported for topic config {name}"));
    };
    let bad = || format!("Invalid value {value} for configuration {name}");
    match *kind {
        Kind::Long(min, max) => {
            let v: i64 = value.trim().parse().map_err(|_| bad())?;
            if v < min || v > max {
                return Err(format!(
                    "Invalid value {value} for configuration {name}: must be between {min} and {max}"
                ));
            }
        }
        Kind::Bool => {
            if !matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "false") {
                return Err(bad());
            }
        }
        Kind::OneOf(words) => {
            if !words.contains(&value.trim()) {
                return Err(format!(
                    "Invalid value {value} for configuration {name}: must be one of {words:?}"
                ));
            }
        }
        Kind::CleanupPolicy => validate_cleanup_policy(value).map_err(|_| bad())?,
        Kind::Ratio => {
            let v: f64 = value.trim().parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&v) {
                return Err(bad());
            }
        }
        Kind::ReplicaList => {
            if !super::throttle::valid_list(value) {
                return Err(format!(
                    "Invalid value {value} for configuration {name}: expected * or a list of partition:broker"
                ));
            }
        }
    }
    Ok(())
}

/// The effective value of a topic config: the override, else the broker default.
pub fn effective(
    config: &Config,
    overrides: &BTreeMap<String, String>,
    name: &str,
) -> Option<String> {
    if let Some(v) = overrides.get(name) {
        return Some(v.clone());
    }
    let v = match name {
        "cleanup.policy" => config.log_cleanup_policy.clone(),
        "max.message.bytes" => config.message_max_bytes.to_string(),
        "retention.ms" => config.log_retention_ms.to_string(),
        "retention.bytes" => config.log_retention_bytes.to_string(),
        "segment.bytes" => config.log_segment_bytes.to_string(),
        "segment.ms" => config.log_roll_ms.to_string(),
        "index.interval.bytes" => config.log_index_interval_bytes.to_string(),
        "flush.messages" => config.log_flush_interval_messages.to_string(),
        "flush.ms" => config.log_flush_interval_ms.to_string(),
        "min.insync.replicas" => config.min_insync_replicas.to_string(),
        "message.timestamp.type" => match config.log_message_timestamp_type {
            TimestampType::CreateTime => "CreateTime".into(),
            TimestampType::LogAppendTime => "LogAppendTime".into(),
        },
        _ => return None,
    };
    Some(v)
}

/// Builds the storage settings of a topic's partitions from its overrides and the broker defaults.
/// Overrides were validated on the way in, so a value that fails to parse here falls back to the
/// broker default.
pub fn log_config(config: &Config, overrides: &BTreeMap<String, String>) -> LogConfig {
    let num =
        |name: &str| -> Option<i64> { overrides.get(name).and_then(|v| v.trim().parse().ok()) };
    LogConfig {
        segment_bytes: num("segment.bytes")
            .map(|v| v as u64)
            .unwrap_or(config.log_segment_bytes),
        segment_ms: num("segment.ms").unwrap_or(config.log_roll_ms),
        retention_ms: num("retention.ms").unwrap_or(config.log_retention_ms),
        retention_bytes: num("retention.bytes").unwrap_or(config.log_retention_bytes),
        index_interval_bytes: num("index.interval.bytes")
            .map(|v| v as u32)
            .unwrap_or(config.log_index_interval_bytes),
        max_message_bytes: num("max.message.bytes")
            .map(|v| v as i32)
            .unwrap_or(config.message_max_bytes),
        log_append_time: match overrides.get("message.timestamp.type") {
            Some(v) => v == "LogAppendTime",
            None => config.log_message_timestamp_type == TimestampType::LogAppendTime,
        },
        producer_id_expiration_ms: config.producer_id_expiration_ms,
        flush_messages: num("flush.messages").unwrap_or(config.log_flush_interval_messages),
        flush_ms: num("flush.ms").unwrap_or(config.log_flush_interval_ms),
        compression: target_codec(overrides),
    }
}

/// `compression.type` (with its level config) as the codec batches are stored in; `None` for
/// `producer` (keep the producer's codec).
fn target_codec(overrides: &BTreeMap<String, String>) -> Option<TargetCodec> {
    let level = |name: &str, default: i32| {
        overrides
            .get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    };
    let (codec, level) = match overrides.get("compression.type").map(|v| v.trim()) {
        Some("uncompressed") => (Compression::None, 0),
        Some("gzip") => (Compression::Gzip, level("compression.gzip.level", -1)),
        Some("snappy") => (Compression::Snappy, 0),
        Some("lz4") => (Compression::Lz4, 0),
        Some("zstd") => (Compression::Zstd, level("compression.zstd.level", 3)),
        _ => return None,
    };
    Some(TargetCodec { codec, level })
}

/// Kafka's topic name rules: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_kafka() {
        assert!(validate("retention.ms", Some("1000")).is_ok());
        assert!(validate("retention.ms", Some("-1")).is_ok());
        assert!(validate("retention.ms", Some("abc")).is_err());
        assert!(validate("segment.bytes", Some("10")).is_err());
        assert!(validate("cleanup.policy", Some("compact,delete")).is_ok());
        assert!(validate("cleanup.policy", Some("shred")).is_err());
        assert!(validate("message.timestamp.type", Some("LogAppendTime")).is_ok());
        assert!(validate("no.such.config", Some("1")).is_err());
        assert!(validate("retention.ms", None).is_err());
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn overrides_win_over_broker_defaults() {
        let c = Config::default();
        let o: BTreeMap<String, String> = [
            ("retention.ms".to_string(), "5".to_string()),
            (
                "message.timestamp.type".to_string(),
                "LogAppendTime".to_string(),
            ),
        ]
        .into();
        let lc = log_config(&c, &o);
        assert_eq!(lc.retention_ms, 5);
        assert!(lc.log_append_time);
        assert_eq!(lc.max_message_bytes, c.message_max_bytes);
        assert_eq!(effective(&c, &o, "segment.bytes").unwrap(), "1073741824");
    }
}
