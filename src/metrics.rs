//! Prometheus metrics: recorded through the `metrics` facade, served by
//! metrics-exporter-prometheus at `http://<metrics.listen>/metrics`. Every name is listed in
//! docs/metrics.md.
//!
//! Cost: when `metrics.listen` is unset no recorder is installed and every hook here returns at
//! once (a `OnceLock` check). With a recorder, the per-request hooks use handles created once
//! (per API and version at install, per topic when a partition is opened), so the Produce and
//! Fetch paths never build label sets; only a response carrying an error code looks one up.
//!
//! Gauges (connections, purgatory depth, per-partition offsets and sizes) are sampled from the
//! broker once per [`SAMPLE_INTERVAL`]; gauges not set for [`GAUGE_IDLE`] (a deleted topic's)
//! disappear from the output.
//!
//! Invariant: the recorder is installed before the broker opens its partitions (their byte
//! counters are created at open), and at most once per process (the facade's recorder is global).

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use kafka_protocol::messages::{self as m, ApiKey};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use metrics_util::MetricKindMask;

use crate::broker::Broker;

/// How often gauges are sampled from the broker.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Gauges not updated for this long are dropped from the output.
pub const GAUGE_IDLE: Duration = Duration::from_secs(15);

/// Latency buckets (seconds) of every `_seconds` histogram.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

struct ApiHandles {
    name: &'static str,
    /// Indexed by `version - min`.
    requests: Vec<Counter>,
    latency: Histogram,
}

struct Handles {
    apis: HashMap<i16, ApiHandles>,
    connections_total: Counter,
    fsync: Histogram,
    /// I/O that left the async workers (`strand_offloaded_io_total`).
    offloaded: [Counter; 3],
}

/// File I/O a request handler sent to a blocking thread because it could wait for the disk.
#[derive(Clone, Copy)]
pub enum Offloaded {
    /// A fetch whose batch headers were not all in the page cache (or a file was not open).
    FetchRead = 0,
    /// A fetched region brought into the page cache before `sendfile`.
    FetchPrefetch = 1,
    /// A produce request whose appends ran on its connection's ordered blocking worker.
    ProduceAppend = 2,
}

/// Counts one piece of offloaded I/O.
pub fn offloaded(kind: Offloaded) {
    if let Some(h) = HANDLES.get() {
        h.offloaded[kind as usize].increment(1);
    }
}

static HANDLES: OnceLock<Handles> = OnceLock::new();
static CONNECTIONS: AtomicI64 = AtomicI64::new(0);
static PURGATORY_PRODUCE: AtomicI64 = AtomicI64::new(0);
static PURGATORY_FETCH: AtomicI64 = AtomicI64::new(0);

/// Version labels without allocating per request.
const VERSIONS: [&str; 32] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
];

fn version_label(v: i16) -> &'static str {
    usize::try_from(v)
        .ok()
        .and_then(|i| VERSIONS.get(i))
        .copied()
        .unwrap_or("other")
}

/// The running exporter: the HTTP listener and the gauge sampler. Dropping it stops both.
pub struct Exporter {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Installs the global recorder and starts serving `/metrics` on `addr`. Must run inside the
/// tokio runtime, before the broker is opened.
pub async fn install(addr: SocketAddr) -> anyhow::Result<Exporter> {
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
        .build()
        .map_err(|e| anyhow::anyhow!("metrics.listen {addr}: {e}"))?;
    ::metrics::set_global_recorder(recorder)
        .map_err(|_| anyhow::anyhow!("a metrics recorder is already installed in this process"))?;
    let serve = tokio::spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!("metrics endpoint stopped: {e:?}");
        }
    });
    let mut apis = HashMap::new();
    for api in crate::handlers::APIS.iter() {
        let name: &'static str = Box::leak(format!("{:?}", api.key).into_boxed_str());
        let requests = (api.min..=api.max)
            .map(
                |v| counter!("strand_requests_total", "api" => name, "version" => version_label(v)),
            )
            .collect();
        let latency = histogram!("strand_request_duration_seconds", "api" => name);
        apis.insert(
            api.key as i16,
            ApiHandles {
                name,
                requests,
                latency,
            },
        );
    }
    let _ = HANDLES.set(Handles {
        apis,
        connections_total: counter!("strand_connections_accepted_total"),
        fsync: histogram!("strand_log_flush_duration_seconds"),
        offloaded: ["fetch_read", "fetch_prefetch", "produce_append"]
            .map(|kind| counter!("strand_offloaded_io_total", "kind" => kind)),
    });
    // The exporter binds its listener when its task first runs: the endpoint is up before the
    // broker serves (a scrape right after start must not be refused).
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tracing::info!("serving metrics on http://{addr}/metrics");
    Ok(Exporter { tasks: vec![serve] })
}

impl Exporter {
    /// Starts sampling the broker's gauges.
    pub fn sample(&mut self, broker: Arc<Broker>) {
        self.tasks.push(tokio::spawn(sample_loop(broker)));
    }
}

/// Records one handled request: its count, latency and the error codes in its response.
/// `resp` is `None` when the request got no response (acks=0) or closed the connection
/// (`closed`).
pub fn request(key: ApiKey, version: i16, elapsed: Duration, resp: Option<&dyn Any>, closed: bool) {
    let Some(h) = HANDLES.get() else {
        return;
    };
    let Some(api) = h.apis.get(&(key as i16)) else {
        return;
    };
    let min = crate::handlers::lookup(key).map_or(0, |a| a.min);
    if let Some(c) = usize::try_from(version - min)
        .ok()
        .and_then(|i| api.requests.get(i))
    {
        c.increment(1);
    }
    api.latency.record(elapsed.as_secs_f64());
    let v = version_label(version);
    if closed {
        counter!("strand_request_errors_total", "api" => api.name, "version" => v, "error" => "CONNECTION_CLOSED")
            .increment(1);
    }
    if let Some(resp) = resp {
        error_codes(resp, &mut |code| {
            if code != 0 {
                let name = error_name(code);
                counter!("strand_request_errors_total", "api" => api.name, "version" => v, "error" => name)
                    .increment(1);
            }
        });
    }
}

/// A new client connection; the returned guard marks it closed when dropped.
pub fn connection_opened() -> ConnectionGuard {
    CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    if let Some(h) = HANDLES.get() {
        h.connections_total.increment(1);
    }
    ConnectionGuard
}

pub struct ConnectionGuard;

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Requests parked waiting for something (Kafka's "purgatory").
#[derive(Clone, Copy)]
pub enum Purgatory {
    /// acks=all produce waiting for fsync.
    Produce,
    /// Fetch long-polling for `min_bytes`.
    Fetch,
}

impl Purgatory {
    fn counter(self) -> &'static AtomicI64 {
        match self {
            Purgatory::Produce => &PURGATORY_PRODUCE,
            Purgatory::Fetch => &PURGATORY_FETCH,
        }
    }

    /// Counts a request as waiting until the guard is dropped.
    pub fn enter(self) -> PurgatoryGuard {
        self.counter().fetch_add(1, Ordering::Relaxed);
        PurgatoryGuard(self)
    }
}

pub struct PurgatoryGuard(Purgatory);

impl Drop for PurgatoryGuard {
    fn drop(&mut self) {
        self.0.counter().fetch_sub(1, Ordering::Relaxed);
    }
}

/// One group-commit fdatasync took `elapsed`.
pub fn fsync(elapsed: Duration) {
    if let Some(h) = HANDLES.get() {
        h.fsync.record(elapsed.as_secs_f64());
    }
}

/// Byte counters of one topic, held by each of its partitions.
pub struct TopicCounters {
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    /// Bytes a follower appended from its leader (`strand_replication_bytes_in_total`).
    pub replication_bytes_in: Counter,
    /// Bytes a leader sent its followers (`strand_replication_bytes_out_total`).
    pub replication_bytes_out: Counter,
}

impl TopicCounters {
    pub fn new(topic: &str) -> TopicCounters {
        if HANDLES.get().is_none() {
            return TopicCounters {
                bytes_in: Counter::noop(),
                bytes_out: Counter::noop(),
                replication_bytes_in: Counter::noop(),
                replication_bytes_out: Counter::noop(),
            };
        }
        TopicCounters {
            bytes_in: counter!("strand_topic_bytes_in_total", "topic" => topic.to_string()),
            bytes_out: counter!("strand_topic_bytes_out_total", "topic" => topic.to_string()),
            replication_bytes_in: counter!("strand_replication_bytes_in_total", "topic" => topic.to_string()),
            replication_bytes_out: counter!("strand_replication_bytes_out_total", "topic" => topic.to_string()),
        }
    }
}

struct PartitionGauges {
    log_start_offset: Gauge,
    log_end_offset: Gauge,
    high_watermark: Gauge,
    size: Gauge,
    segments: Gauge,
    /// While this broker leads: the farthest follower's lag (messages, seconds since it last
    /// caught up).
    lag_messages: Gauge,
    lag_seconds: Gauge,
}

async fn sample_loop(broker: Arc<Broker>) {
    let connections = gauge!("strand_connections");
    let purgatory_produce = gauge!("strand_purgatory_size", "operation" => "produce");
    let purgatory_fetch = gauge!("strand_purgatory_size", "operation" => "fetch");
    let info = gauge!("strand_build_info", "version" => env!("CARGO_PKG_VERSION"));
    let offline = gauge!("strand_log_dir_offline",
        "log_dir" => broker.log_dir().dir().display().to_string());
    let offline_partitions = gauge!("strand_partitions_offline");
    let open_segment_files = gauge!("strand_open_segment_files");
    let under_replicated = gauge!("strand_under_replicated_partitions");
    let mut partitions: HashMap<(String, i32), PartitionGauges> = HashMap::new();
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    loop {
        tick.tick().await;
        info.set(1.0);
        offline.set(if broker.log_dir().is_offline() {
            1.0
        } else {
            0.0
        });
        connections.set(CONNECTIONS.load(Ordering::Relaxed) as f64);
        purgatory_produce.set(PURGATORY_PRODUCE.load(Ordering::Relaxed) as f64);
        purgatory_fetch.set(PURGATORY_FETCH.load(Ordering::Relaxed) as f64);
        let topics = broker.topics();
        open_segment_files.set(broker.open_files().open_count() as f64);
        offline_partitions.set(
            topics
                .iter()
                .flat_map(|t| t.hosted())
                .filter(|p| p.log().is_err())
                .count() as f64,
        );
        let mut live = std::collections::HashSet::new();
        let mut under = 0usize;
        for t in &topics {
            for p in t.hosted() {
                let key = (p.topic.clone(), p.index);
                let g = partitions.entry(key.clone()).or_insert_with(|| {
                    let labels = [
                        ("topic", p.topic.clone()),
                        ("partition", p.index.to_string()),
                    ];
                    PartitionGauges {
                        log_start_offset: gauge!("strand_partition_log_start_offset", &labels),
                        log_end_offset: gauge!("strand_partition_log_end_offset", &labels),
                        high_watermark: gauge!("strand_partition_high_watermark", &labels),
                        size: gauge!("strand_partition_size_bytes", &labels),
                        segments: gauge!("strand_partition_segments", &labels),
                        lag_messages: gauge!("strand_partition_replica_lag_messages", &labels),
                        lag_seconds: gauge!("strand_partition_replica_lag_seconds", &labels),
                    }
                });
                if let Some(log) = p.opened_log() {
                    g.log_start_offset.set(log.log_start_offset() as f64);
                    g.log_end_offset.set(log.log_end_offset() as f64);
                    g.size.set(log.size_bytes() as f64);
                    g.segments.set(log.segment_count() as f64);
                }
                g.high_watermark.set(p.high_watermark() as f64);
                let end = p.opened_log().map_or(0, |l| l.log_end_offset());
                let lag = p.replication().lag(end, crate::broker::now_ms());
                let worst = |f: fn(&(i32, i64, i64)) -> i64| lag.iter().map(f).max().unwrap_or(0);
                g.lag_messages.set(worst(|l| l.1) as f64);
                g.lag_seconds.set(worst(|l| l.2) as f64 / 1000.0);
                if p.is_leader() {
                    let view = broker.partition_view(t, p.index);
                    if view.isr.len() < view.replicas.len() {
                        under += 1;
                    }
                }
                live.insert(key);
            }
        }
        under_replicated.set(under as f64);
        partitions.retain(|k, _| live.contains(k));
    }
}

/// Kafka's name for an error code (`UNKNOWN_TOPIC_OR_PARTITION`).
pub fn error_name(code: i16) -> String {
    let camel = match kafka_protocol::ResponseError::try_from_code(code) {
        Some(kafka_protocol::ResponseError::Unknown(c)) => return format!("UNKNOWN_{c}"),
        Some(e) => format!("{e:?}"),
        None => return "NONE".into(),
    };
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// Calls `f` with every error code in a response (top level and per topic / partition) of the
/// APIs listed in docs/metrics.md; other responses report nothing.
fn error_codes(resp: &dyn Any, f: &mut dyn FnMut(i16)) {
    if let Some(r) = resp.downcast_ref::<m::ProduceResponse>() {
        r.responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| f(p.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::FetchResponse>() {
        f(r.error_code);
        r.responses
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::ListOffsetsResponse>() {
        r.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::MetadataResponse>() {
        r.topics.iter().for_each(|t| f(t.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::CreateTopicsResponse>() {
        r.topics.iter().for_each(|t| f(t.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::DeleteTopicsResponse>() {
        r.responses.iter().for_each(|t| f(t.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::CreatePartitionsResponse>() {
        r.results.iter().for_each(|t| f(t.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::DescribeConfigsResponse>() {
        r.results.iter().for_each(|t| f(t.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::AlterConfigsResponse>() {
        r.responses.iter().for_each(|t| f(t.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::IncrementalAlterConfigsResponse>() {
        r.responses.iter().for_each(|t| f(t.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::DescribeClusterResponse>() {
        f(r.error_code);
    } else if let Some(r) = resp.downcast_ref::<m::DeleteRecordsResponse>() {
        r.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::OffsetForLeaderEpochResponse>() {
        r.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::JoinGroupResponse>() {
        f(r.error_code);
    } else if let Some(r) = resp.downcast_ref::<m::SyncGroupResponse>() {
        f(r.error_code);
    } else if let Some(r) = resp.downcast_ref::<m::HeartbeatResponse>() {
        f(r.error_code);
    } else if let Some(r) = resp.downcast_ref::<m::LeaveGroupResponse>() {
        f(r.error_code);
    } else if let Some(r) = resp.downcast_ref::<m::FindCoordinatorResponse>() {
        f(r.error_code);
        r.coordinators.iter().for_each(|c| f(c.error_code));
    } else if let Some(r) = resp.downcast_ref::<m::OffsetCommitResponse>() {
        r.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(10), "MESSAGE_TOO_LARGE");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(version_label(12), "12");
        assert_eq!(version_label(-1), "other");
    }

    #[test]
    fn error_codes_walk_partitions() {
        use m::produce_response::{PartitionProduceResponse, TopicProduceResponse};
        let mut p = PartitionProduceResponse::default();
        p.error_code = 10;
        let mut t = TopicProduceResponse::default();
        t.partition_responses = vec![p, PartitionProduceResponse::default()];
        let mut r = m::ProduceResponse::default();
        r.responses = vec![t];
        let mut seen = vec![];
        error_codes(&r, &mut |c| seen.push(c));
        assert_eq!(seen, vec![10, 0]);
    }
}
