//! Broker configuration.
//!
//! Settings use Kafka's names (`num.partitions`, `log.retention.ms`, …). They come from four
//! layers, later ones winning: built-in defaults (Kafka's), `config.toml`, environment variables
//! `STRAND_<KEY>` (the key upper-cased with `.` replaced by `_`, e.g. `STRAND_NUM_PARTITIONS`),
//! and command-line flags (`--listen`, `--data-dir`, `--set key=value`, …).
//!
//! In `config.toml` a key may be written quoted (`"num.partitions" = 3`) or as TOML dotted keys
//! (`num.partitions = 3`, which TOML reads as nested tables); both are flattened back to the
//! dotted name. Every layer is reduced to `key → string` and parsed by one function, so a value
//! is validated the same way wherever it came from. Unknown keys and invalid values are errors
//! naming the key: the broker refuses to start rather than run with a setting it ignored.
//!
//! Invariant: a `Config` that exists has passed validation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: String, message: String },
    #[error("unknown config key `{0}`")]
    UnknownKey(String),
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Validated broker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `node.id`
    pub node_id: i32,
    /// `listeners`: the address the Kafka listener binds.
    pub listen: SocketAddr,
    /// `advertised.listeners`: host and port given to clients in Metadata.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// `log.dirs`: the data directory (one directory for now).
    pub data_dir: PathBuf,
    /// `num.partitions`
    pub num_partitions: i32,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable`
    pub delete_topic_enable: bool,
    /// `socket.request.max.bytes`
    pub socket_request_max_bytes: usize,
    /// `max.connections`
    pub max_connections: usize,
    /// `queued.max.requests`: pipelined requests in flight per connection.
    pub queued_max_requests: usize,
    /// `queued.max.request.bytes`: broker-wide budget of request bytes being read or served;
    /// `None` (-1) = unbounded.
    pub queued_max_request_bytes: Option<usize>,
    /// `message.max.bytes`: default of the topic config `max.message.bytes`.
    pub message_max_bytes: i32,
    /// `log.segment.bytes`
    pub log_segment_bytes: u64,
    /// `log.roll.ms` (or `log.roll.hours`)
    pub log_roll_ms: i64,
    /// `log.retention.ms` (or `log.retention.minutes` / `log.retention.hours`)
    pub log_retention_ms: i64,
    /// `log.retention.bytes`
    pub log_retention_bytes: i64,
    /// `log.retention.check.interval.ms`
    pub log_retention_check_interval_ms: u64,
    /// `log.index.interval.bytes`
    pub log_index_interval_bytes: u32,
    /// `max.broker.partitions` (KIP-578): partitions this broker may host in total.
    pub max_broker_partitions: i32,
    /// `fetch.max.bytes`: the most record bytes one consumer Fetch response carries.
    pub fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: the same for a replica's (follower's) Fetch.
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.fetch.max.bytes`: the most bytes a follower asks of one partition per fetch.
    pub replica_fetch_max_bytes: i32,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this long leaves the
    /// ISR.
    pub replica_lag_time_max_ms: i64,
    /// `auto.leader.rebalance.enable`: the controller gives leadership back to preferred
    /// replicas.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`: how often it checks.
    pub leader_imbalance_check_interval_seconds: u64,
    /// `leader.imbalance.per.broker.percentage`: the share of a broker's preferred partitions
    /// led elsewhere above which they are given back.
    pub leader_imbalance_per_broker_percentage: u32,
    /// `replica.selector.class` = `org.apache.kafka.common.replica.RackAwareReplicaSelector`
    /// (KIP-392): a leader sends consumers whose `client.rack` is another rack than its own to
    /// an in-sync replica in their rack. Empty (Kafka's default): consumers fetch from leaders.
    pub replica_selector_rack_aware: bool,
    /// `leader.replication.throttled.rate` (bytes/s; dynamic too): a leader's bytes to
    /// throttled followers (`broker::throttle`).
    pub leader_replication_throttled_rate: u64,
    /// `follower.replication.throttled.rate` (bytes/s; dynamic too): a throttled follower's
    /// bytes from its leaders.
    pub follower_replication_throttled_rate: u64,
    /// `log.flush.max.delay.ms` (Strand's): how long an acks=0/1 write may wait for the
    /// background fdatasync that makes it visible to consumers.
    pub log_flush_max_delay_ms: u64,
    /// `log.segment.files.open.max` (Strand's): segment `.log` files kept open at most (0:
    /// half the open-files limit); the rest are reopened when read.
    pub log_segment_files_open_max: usize,
    /// `log.visibility = page-cache` (Strand's): records are visible once written, as in
    /// Kafka, and fsynced only by `flush.messages` / `flush.ms` (default `durable`).
    pub log_visible_unflushed: bool,
    /// `log.flush.interval.messages`: default of the topic config `flush.messages`.
    pub log_flush_interval_messages: i64,
    /// `log.flush.interval.ms`: default of the topic config `flush.ms`.
    pub log_flush_interval_ms: i64,
    /// `log.message.timestamp.type`
    pub log_message_timestamp_type: TimestampType,
    /// `min.insync.replicas`
    pub min_insync_replicas: i32,
    /// `log.cleanup.policy`
    pub log_cleanup_policy: String,
    /// `controlled.shutdown.timeout.ms`-like bound on draining connections at shutdown.
    pub shutdown_timeout_ms: u64,
    /// `group.initial.rebalance.delay.ms`
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`
    pub group_min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms`
    pub group_max_session_timeout_ms: u64,
    /// `offsets.retention.minutes`
    pub offsets_retention_minutes: i64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups)
    pub group_consumer_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups)
    pub group_consumer_heartbeat_interval_ms: u64,
    /// `producer.id.expiration.ms`: idempotence state of a silent producer is dropped after this.
    pub producer_id_expiration_ms: i64,
    /// `transactional.id.expiration.ms`: a transactional id without an open transaction and no
    /// update for this long is forgotten, with its state.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`: how often that is checked.
    pub transaction_cleanup_interval_ms: u64,
    /// `metrics.listen`: where `GET /metrics` (Prometheus text format) is served; `None` = off.
    pub metrics_listen: Option<SocketAddr>,
    /// `etcd.endpoints` (Strand's, `STRAND_ETCD_ENDPOINTS`, `--etcd-endpoints`): cluster mode
    /// when non-empty (see docs/cluster.md); empty = the embedded single-node store.
    pub etcd_endpoints: Vec<String>,
    /// `etcd.prefix`: every key of this cluster lives under it, so clusters can share an etcd.
    pub etcd_prefix: String,
    /// `broker.rack`: this broker's rack (Metadata, rack-aware replica placement).
    pub broker_rack: Option<String>,
    /// `broker.session.timeout.ms`: the TTL of this broker's etcd lease; a broker that cannot
    /// renew it stops leading before it could have expired.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often the lease is renewed.
    pub broker_heartbeat_interval_ms: u64,
    /// `etcd.compaction.interval.ms`: how often brokers compact etcd's history (keeping one
    /// interval of it); 0 = never (etcd compacts itself, `--auto-compaction-retention`).
    pub etcd_compaction_interval_ms: u64,
    /// `offsets.topic.num.partitions`: group coordinator slots (Kafka: partitions of
    /// `__consumer_offsets`); fixed for a cluster's life.
    pub offsets_topic_num_partitions: u32,
    /// `transaction.state.log.num.partitions`: transaction coordinator slots.
    pub transaction_state_log_num_partitions: u32,
    /// The keys set explicitly (file, environment, flags), as given: DescribeConfigs reports
    /// them as STATIC_BROKER_CONFIG and every other key as DEFAULT_CONFIG.
    pub explicit: ExplicitKeys,
}

/// The `key → value` settings a [`Config`] was built from (defaults excluded).
///
/// Its `Debug` prints nothing of them, so two configs with the same effective values but set
/// differently (file vs built-in defaults) still compare equal by their `Debug` text.
#[derive(Clone, Default)]
pub struct ExplicitKeys(pub BTreeMap<String, String>);

impl std::fmt::Debug for ExplicitKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExplicitKeys(..)")
    }
}

/// The `replica.selector.class` of KIP-392's rack-aware selector.
pub const RACK_AWARE_SELECTOR: &str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// Every key the broker understands, with its default as Kafka writes it.
/// The order is the order `config.toml` documents them in.
pub const KEYS: &[(&str, &str)] = &[
    ("node.id", "0"),
    ("listeners", "127.0.0.1:9092"),
    ("advertised.listeners", ""),
    ("log.dirs", "./data"),
    ("num.partitions", "1"),
    ("default.replication.factor", "1"),
    ("auto.create.topics.enable", "true"),
    ("delete.topic.enable", "true"),
    ("socket.request.max.bytes", "104857600"),
    ("max.connections", "65536"),
    ("queued.max.requests", "500"),
    ("queued.max.request.bytes", "268435456"),
    ("message.max.bytes", "1048588"),
    ("log.segment.bytes", "1073741824"),
    ("log.roll.ms", ""),
    ("log.roll.hours", "168"),
    ("log.retention.ms", ""),
    ("log.retention.minutes", ""),
    ("log.retention.hours", "168"),
    ("log.retention.bytes", "-1"),
    ("log.retention.check.interval.ms", "300000"),
    ("log.index.interval.bytes", "4096"),
    ("log.flush.max.delay.ms", "1"),
    ("log.segment.files.open.max", "0"),
    ("log.visibility", "durable"),
    ("log.flush.interval.messages", "9223372036854775807"),
    ("log.flush.interval.ms", "9223372036854775807"),
    ("max.broker.partitions", "10000"),
    ("fetch.max.bytes", "57671680"),
    ("replica.fetch.response.max.bytes", "10485760"),
    ("replica.fetch.max.bytes", "1048576"),
    ("replica.lag.time.max.ms", "30000"),
    ("auto.leader.rebalance.enable", "true"),
    ("leader.imbalance.check.interval.seconds", "300"),
    ("leader.imbalance.per.broker.percentage", "10"),
    ("replica.selector.class", ""),
    ("leader.replication.throttled.rate", "9223372036854775807"),
    ("follower.replication.throttled.rate", "9223372036854775807"),
    ("log.message.timestamp.type", "CreateTime"),
    ("min.insync.replicas", "1"),
    ("log.cleanup.policy", "delete"),
    ("group.initial.rebalance.delay.ms", "3000"),
    ("group.min.session.timeout.ms", "6000"),
    ("group.max.session.timeout.ms", "1800000"),
    ("offsets.retention.minutes", "10080"),
    ("offset.metadata.max.bytes", "4096"),
    ("group.consumer.session.timeout.ms", "45000"),
    ("group.consumer.heartbeat.interval.ms", "5000"),
    ("producer.id.expiration.ms", "86400000"),
    ("transactional.id.expiration.ms", "604800000"),
    (
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        "3600000",
    ),
    ("shutdown.timeout.ms", "30000"),
    ("metrics.listen", ""),
    ("etcd.endpoints", ""),
    ("etcd.prefix", "/strand"),
    ("broker.rack", ""),
    ("broker.session.timeout.ms", "2000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("etcd.compaction.interval.ms", "300000"),
    ("offsets.topic.num.partitions", "50"),
    ("transaction.state.log.num.partitions", "50"),
];

impl Default for Config {
    fn default() -> Self {
        Config::from_overrides(&BTreeMap::new()).expect("built-in defaults are valid")
    }
}

impl Config {
    /// The coordinator slot counts this config asks for.
    pub fn slot_counts(&self) -> crate::cluster::SlotCounts {
        crate::cluster::SlotCounts {
            group: self.offsets_topic_num_partitions,
            txn: self.transaction_state_log_num_partitions,
        }
    }

    /// Builds a config from `key → value` overrides on top of the defaults.
    pub fn from_overrides(overrides: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        for key in overrides.keys() {
            if !KEYS.iter().any(|(k, _)| k == key) {
                return Err(ConfigError::UnknownKey(key.clone()));
            }
        }
        let get = |key: &str| -> Option<&str> {
            match overrides.get(key) {
                Some(v) => Some(v.as_str()),
                None => KEYS
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, d)| *d)
                    .filter(|d| !d.is_empty()),
            }
        };
        let req = |key: &str| get(key).unwrap_or_default().to_string();

        let listen_str = strip_scheme(&req("listeners"));
        let listen: SocketAddr = listen_str
            .parse()
            .map_err(|e| invalid("listeners", &listen_str, e))?;
        let advertised = get("advertised.listeners")
            .filter(|s| !s.is_empty())
            .map(strip_scheme);
        let (advertised_host, advertised_port) = match advertised {
            Some(a) => split_host_port(&a).ok_or_else(|| {
                invalid("advertised.listeners", &a, "expected HOST:PORT".to_string())
            })?,
            None => {
                let host = if listen.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    listen.ip().to_string()
                };
                (host, listen.port())
            }
        };

        let hours_ms = |h: i64| h.saturating_mul(3_600_000);
        let log_roll_ms = match overrides.get("log.roll.ms") {
            Some(v) => parse_num::<i64>("log.roll.ms", v, 1, i64::MAX)?,
            None => hours_ms(parse_num::<i64>(
                "log.roll.hours",
                &req("log.roll.hours"),
                1,
                i64::MAX,
            )?),
        };
        let log_retention_ms = if let Some(v) = overrides.get("log.retention.ms") {
            parse_num::<i64>("log.retention.ms", v, -1, i64::MAX)?
        } else if let Some(v) = overrides.get("log.retention.minutes") {
            parse_num::<i64>("log.retention.minutes", v, -1, i64::MAX)?.saturating_mul(60_000)
        } else {
            let h = parse_num::<i64>(
                "log.retention.hours",
                &req("log.retention.hours"),
                -1,
                i64::MAX,
            )?;
            if h < 0 {
                -1
            } else {
                hours_ms(h)
            }
        };

        let ts_type = match req("log.message.timestamp.type").as_str() {
            "CreateTime" => TimestampType::CreateTime,
            "LogAppendTime" => TimestampType::LogAppendTime,
            other => {
                return Err(invalid(
                    "log.message.timestamp.type",
                    other,
                    "expected CreateTime or LogAppendTime",
                ))
            }
        };
        let metrics_listen = match get("metrics.listen").filter(|s| !s.trim().is_empty()) {
            Some(v) => Some(
                v.trim()
                    .parse::<SocketAddr>()
                    .map_err(|e| invalid("metrics.listen", v, e))?,
            ),
            None => None,
        };
        let cleanup = req("log.cleanup.policy");
        crate::broker::topic_config::validate_cleanup_policy(&cleanup)
            .map_err(|reason| invalid("log.cleanup.policy", &cleanup, reason))?;

        let config = Config {
            node_id: parse_num("node.id", &req("node.id"), 0, i32::MAX)?,
            listen,
            advertised_host,
            advertised_port,
            data_dir: PathBuf::from(req("log.dirs")),
            num_partitions: parse_num("num.partitions", &req("num.partitions"), 1, 1_000_000)?,
            default_replication_factor: parse_num(
                "default.replication.factor",
                &req("default.replication.factor"),
                1,
                i16::MAX,
            )?,
            auto_create_topics_enable: parse_bool(
                "auto.create.topics.enable",
                &req("auto.create.topics.enable"),
            )?,
            delete_topic_enable: parse_bool("delete.topic.enable", &req("delete.topic.enable"))?,
            socket_request_max_bytes: parse_num(
                "socket.request.max.bytes",
                &req("socket.request.max.bytes"),
                1024,
                i32::MAX as usize,
            )?,
            max_connections: parse_num("max.connections", &req("max.connections"), 1, 1 << 24)?,
            queued_max_requests: parse_num(
                "queued.max.requests",
                &req("queued.max.requests"),
                1,
                1 << 20,
            )?,
            queued_max_request_bytes: match req("queued.max.request.bytes").trim() {
                "-1" => None,
                v => Some(parse_num(
                    "queued.max.request.bytes",
                    v,
                    1024,
                    usize::MAX >> 4,
                )?),
            },
            message_max_bytes: parse_num(
                "message.max.bytes",
                &req("message.max.bytes"),
                0,
                i32::MAX,
            )?,
            log_segment_bytes: parse_num(
                "log.segment.bytes",
                &req("log.segment.bytes"),
                14,
                i32::MAX as u64,
            )?,
            log_roll_ms,
            log_retention_ms,
            log_retention_bytes: parse_num(
                "log.retention.bytes",
                &req("log.retention.bytes"),
                -1,
                i64::MAX,
            )?,
            log_retention_check_interval_ms: parse_num(
                "log.retention.check.interval.ms",
                &req("log.retention.check.interval.ms"),
                1,
                u64::MAX,
            )?,
            log_visible_unflushed: match req("log.visibility").trim() {
                "durable" => false,
                "page-cache" => true,
                other => {
                    return Err(invalid(
                        "log.visibility",
                        other,
                        "expected durable or page-cache",
                    ))
                }
            },
            log_flush_interval_messages: parse_num(
                "log.flush.interval.messages",
                &req("log.flush.interval.messages"),
                1,
                i64::MAX,
            )?,
            log_flush_interval_ms: parse_num(
                "log.flush.interval.ms",
                &req("log.flush.interval.ms"),
                0,
                i64::MAX,
            )?,
            log_segment_files_open_max: parse_num(
                "log.segment.files.open.max",
                &req("log.segment.files.open.max"),
                0,
                1 << 20,
            )?,
            log_flush_max_delay_ms: parse_num(
                "log.flush.max.delay.ms",
                &req("log.flush.max.delay.ms"),
                0,
                3_600_000,
            )?,
            fetch_max_bytes: parse_num("fetch.max.bytes", &req("fetch.max.bytes"), 1024, i32::MAX)?,
            replica_fetch_response_max_bytes: parse_num(
                "replica.fetch.response.max.bytes",
                &req("replica.fetch.response.max.bytes"),
                0,
                i32::MAX,
            )?,
            replica_fetch_max_bytes: parse_num(
                "replica.fetch.max.bytes",
                &req("replica.fetch.max.bytes"),
                1,
                i32::MAX,
            )?,
            replica_lag_time_max_ms: parse_num(
                "replica.lag.time.max.ms",
                &req("replica.lag.time.max.ms"),
                1,
                i64::MAX,
            )?,
            auto_leader_rebalance_enable: parse_bool(
                "auto.leader.rebalance.enable",
                &req("auto.leader.rebalance.enable"),
            )?,
            leader_imbalance_check_interval_seconds: parse_num(
                "leader.imbalance.check.interval.seconds",
                &req("leader.imbalance.check.interval.seconds"),
                1,
                86_400 * 365,
            )?,
            leader_imbalance_per_broker_percentage: parse_num(
                "leader.imbalance.per.broker.percentage",
                &req("leader.imbalance.per.broker.percentage"),
                0,
                100,
            )?,
            max_broker_partitions: parse_num(
                "max.broker.partitions",
                &req("max.broker.partitions"),
                1,
                1_000_000,
            )?,
            log_index_interval_bytes: parse_num(
                "log.index.interval.bytes",
                &req("log.index.interval.bytes"),
                0,
                i32::MAX as u32,
            )?,
            log_message_timestamp_type: ts_type,
            min_insync_replicas: parse_num(
                "min.insync.replicas",
                &req("min.insync.replicas"),
                1,
                i32::MAX,
            )?,
            log_cleanup_policy: cleanup,
            shutdown_timeout_ms: parse_num(
                "shutdown.timeout.ms",
                &req("shutdown.timeout.ms"),
                0,
                u64::MAX,
            )?,
            group_initial_rebalance_delay_ms: parse_num(
                "group.initial.rebalance.delay.ms",
                &req("group.initial.rebalance.delay.ms"),
                0,
                i32::MAX as u64,
            )?,
            group_min_session_timeout_ms: parse_num(
                "group.min.session.timeout.ms",
                &req("group.min.session.timeout.ms"),
                0,
                i32::MAX as u64,
            )?,
            group_max_session_timeout_ms: parse_num(
                "group.max.session.timeout.ms",
                &req("group.max.session.timeout.ms"),
                0,
                i32::MAX as u64,
            )?,
            offsets_retention_minutes: parse_num(
                "offsets.retention.minutes",
                &req("offsets.retention.minutes"),
                1,
                i32::MAX as i64,
            )?,
            offset_metadata_max_bytes: parse_num(
                "offset.metadata.max.bytes",
                &req("offset.metadata.max.bytes"),
                0,
                i32::MAX as usize,
            )?,
            group_consumer_session_timeout_ms: parse_num(
                "group.consumer.session.timeout.ms",
                &req("group.consumer.session.timeout.ms"),
                1,
                i32::MAX as u64,
            )?,
            group_consumer_heartbeat_interval_ms: parse_num(
                "group.consumer.heartbeat.interval.ms",
                &req("group.consumer.heartbeat.interval.ms"),
                1,
                i32::MAX as u64,
            )?,
            transactional_id_expiration_ms: parse_num(
                "transactional.id.expiration.ms",
                &req("transactional.id.expiration.ms"),
                1,
                i64::from(i32::MAX),
            )?,
            transaction_cleanup_interval_ms: parse_num(
                "transaction.remove.expired.transaction.cleanup.interval.ms",
                &req("transaction.remove.expired.transaction.cleanup.interval.ms"),
                1,
                i64::from(i32::MAX) as u64,
            )?,
            producer_id_expiration_ms: parse_num(
                "producer.id.expiration.ms",
                &req("producer.id.expiration.ms"),
                1,
                i32::MAX as i64,
            )?,
            metrics_listen,
            etcd_endpoints: req("etcd.endpoints")
                .split(',')
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            etcd_prefix: {
                let p = req("etcd.prefix").trim().trim_end_matches('/').to_string();
                if !p.starts_with('/') || p.len() < 2 || p.contains(char::is_whitespace) {
                    return Err(invalid(
                        "etcd.prefix",
                        &p,
                        "expected a path such as /strand (no spaces)",
                    ));
                }
                p
            },
            replica_selector_rack_aware: match get("replica.selector.class").map(str::trim) {
                None | Some("") | Some("null") => false,
                Some(RACK_AWARE_SELECTOR) => true,
                Some(other) => {
                    return Err(invalid(
                        "replica.selector.class",
                        other,
                        format!("the only replica selector is {RACK_AWARE_SELECTOR}"),
                    ))
                }
            },
            leader_replication_throttled_rate: parse_num(
                "leader.replication.throttled.rate",
                &req("leader.replication.throttled.rate"),
                0,
                i64::MAX as u64,
            )?,
            follower_replication_throttled_rate: parse_num(
                "follower.replication.throttled.rate",
                &req("follower.replication.throttled.rate"),
                0,
                i64::MAX as u64,
            )?,
            broker_rack: get("broker.rack")
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty()),
            broker_session_timeout_ms: parse_num(
                "broker.session.timeout.ms",
                &req("broker.session.timeout.ms"),
                2000,
                600_000,
            )?,
            broker_heartbeat_interval_ms: parse_num(
                "broker.heartbeat.interval.ms",
                &req("broker.heartbeat.interval.ms"),
                50,
                300_000,
            )?,
            etcd_compaction_interval_ms: parse_num(
                "etcd.compaction.interval.ms",
                &req("etcd.compaction.interval.ms"),
                0,
                u64::MAX / 2,
            )?,
            offsets_topic_num_partitions: parse_num(
                "offsets.topic.num.partitions",
                &req("offsets.topic.num.partitions"),
                1,
                10_000,
            )?,
            transaction_state_log_num_partitions: parse_num(
                "transaction.state.log.num.partitions",
                &req("transaction.state.log.num.partitions"),
                1,
                10_000,
            )?,
            explicit: ExplicitKeys(overrides.clone()),
        };
        if config.broker_heartbeat_interval_ms * 3 > config.broker_session_timeout_ms {
            return Err(invalid(
                "broker.heartbeat.interval.ms",
                &config.broker_heartbeat_interval_ms.to_string(),
                "must be at most a third of broker.session.timeout.ms (a lease is renewed several times before it can expire)",
            ));
        }
        if let Some(budget) = config.queued_max_request_bytes {
            if budget < config.socket_request_max_bytes {
                return Err(invalid(
                    "queued.max.request.bytes",
                    &budget.to_string(),
                    "must be -1 or at least socket.request.max.bytes, or a largest request could never be read",
                ));
            }
        }
        Ok(config)
    }

    /// Reads `path` (TOML) into `key → value` overrides.
    pub fn read_file(path: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_string(),
            source,
        })?;
        Self::parse_toml(path, &text)
    }

    /// Parses TOML text into flattened `key → value` overrides.
    pub fn parse_toml(path: &str, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Toml {
                path: path.to_string(),
                message: e.to_string(),
            })?;
        let mut out = BTreeMap::new();
        flatten("", &toml::Value::Table(table), &mut out)?;
        Ok(out)
    }

    /// Collects `STRAND_<KEY>` environment variables into overrides.
    pub fn from_env<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("STRAND_") else {
                continue;
            };
            // STRAND_CONFIG names the config file (a flag's env form), not a setting.
            if rest == "CONFIG" {
                continue;
            }
            // Other programs use the STRAND_ prefix too (STRAND_BIN in test scripts): an
            // environment variable that names no setting is reported and ignored, unlike an
            // unknown key in the config file or in --set, which stops the broker.
            match KEYS
                .iter()
                .find(|(k, _)| k.replace('.', "_").to_ascii_uppercase() == rest)
            {
                Some((k, _)) => {
                    out.insert(k.to_string(), value);
                }
                None => eprintln!("warning: ignoring {name}: it names no strand setting"),
            }
        }
        Ok(out)
    }
}

fn flatten(
    prefix: &str,
    value: &toml::Value,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out)?;
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        toml::Value::Integer(i) => {
            out.insert(prefix.to_string(), i.to_string());
        }
        toml::Value::Boolean(b) => {
            out.insert(prefix.to_string(), b.to_string());
        }
        toml::Value::Float(f) => {
            out.insert(prefix.to_string(), f.to_string());
        }
        toml::Value::Array(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.insert(prefix.to_string(), items.join(","));
        }
        toml::Value::Datetime(d) => {
            out.insert(prefix.to_string(), d.to_string());
        }
    }
    Ok(())
}

fn strip_scheme(s: &str) -> String {
    // Accept Kafka's `PLAINTEXT://host:port` as well as plain `host:port`.
    let first = s.split(',').next().unwrap_or("").trim();
    match first.split_once("://") {
        Some((_, rest)) => rest.to_string(),
        None => first.to_string(),
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}

fn invalid(key: &str, value: &str, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Parses an integer config value within `[min, max]`.
pub fn parse_num<T>(key: &str, value: &str, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let v: T = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not a valid number"))?;
    if v < min || v > max {
        return Err(invalid(
            key,
            value,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(v)
}

/// Parses a boolean config value (`true`/`false`, any case).
pub fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
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
    fn defaults_are_kafkas() {
        let c = Config::default();
        assert_eq!(c.num_partitions, 1);
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.message_max_bytes, 1048588);
        assert_eq!(c.log_retention_ms, 168 * 3_600_000);
        assert_eq!(c.log_segment_bytes, 1 << 30);
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(c.advertised_port, 9092);
    }

    #[test]
    fn toml_dotted_and_quoted_keys_flatten() {
        let m = Config::parse_toml(
            "t",
            "num.partitions = 3\n\"log.retention.ms\" = 1000\n[log]\nsegment.bytes = 2048\n",
        )
        .unwrap();
        let c = Config::from_overrides(&m).unwrap();
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.log_retention_ms, 1000);
        assert_eq!(c.log_segment_bytes, 2048);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::from_overrides(&map(&[("num.partition", "3")])).unwrap_err();
        assert!(e.to_string().contains("num.partition"), "{e}");
        let e = Config::from_overrides(&map(&[("num.partitions", "-1")])).unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e = Config::from_overrides(&map(&[("auto.create.topics.enable", "yes")])).unwrap_err();
        assert!(e.to_string().contains("auto.create.topics.enable"), "{e}");
        let e = Config::from_overrides(&map(&[("listeners", "nonsense")])).unwrap_err();
        assert!(e.to_string().contains("listeners"), "{e}");
    }

    #[test]
    fn env_vars_map_to_keys() {
        let m = Config::from_env(vec![
            ("STRAND_NUM_PARTITIONS".to_string(), "4".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ])
        .unwrap();
        assert_eq!(m.get("num.partitions").map(String::as_str), Some("4"));
        let m = Config::from_env(vec![("STRAND_BIN".to_string(), "x".to_string())]).unwrap();
        assert!(m.is_empty());
    }

    #[test]
    fn listener_scheme_and_advertised() {
        let c = Config::from_overrides(&map(&[
            ("listeners", "PLAINTEXT://0.0.0.0:19092"),
            ("advertised.listeners", "PLAINTEXT://broker1:29092"),
        ]))
        .unwrap();
        assert_eq!(c.listen.port(), 19092);
        assert_eq!(c.advertised_host, "broker1");
        assert_eq!(c.advertised_port, 29092);
    }

    #[test]
    fn retention_units() {
        let c = Config::from_overrides(&map(&[("log.retention.minutes", "2")])).unwrap();
        assert_eq!(c.log_retention_ms, 120_000);
        let c = Config::from_overrides(&map(&[("log.retention.hours", "-1")])).unwrap();
        assert_eq!(c.log_retention_ms, -1);
    }
}

#[cfg(test)]
mod config_file_tests {
    use super::*;

    /// config.toml documents every key with its default: uncommenting every setting line must
    /// give exactly the built-in defaults.
    #[test]
    fn shipped_config_toml_documents_every_key_with_its_default() {
        let text = include_str!("../config.toml");
        let mut settings = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# \"") {
                if !rest.ends_with("(unset)") {
                    settings.push('"');
                    settings.push_str(rest);
                    settings.push('\n');
                }
            }
        }
        let overrides = Config::parse_toml("config.toml", &settings).unwrap();
        for (key, default) in KEYS {
            if default.is_empty() {
                assert!(
                    text.contains(&format!("\"{key}\" = (unset)")),
                    "{key} undocumented"
                );
            } else {
                assert_eq!(
                    overrides.get(*key).map(String::as_str),
                    Some(*default),
                    "{key}"
                );
            }
        }
        let from_file = Config::from_overrides(&overrides).unwrap();
        assert_eq!(format!("{from_file:?}"), format!("{:?}", Config::default()));
    }
}
