//! Offset-commit throughput and latency through the group coordinators, for the cluster bench
//! (scripts/bench-cluster.sh):
//!
//! ```text
//! commit_latency BOOTSTRAPS TOPIC CONSUMERS PARTITIONS SECONDS [rdkafka|wire]
//! ```
//!
//! CONSUMERS committers, each in its own group `bench-<i>` and bootstrapped from the `i % n`-th
//! of the comma-separated BOOTSTRAPS, commit offsets for PARTITIONS partitions of TOPIC (partitions 0..PARTITIONS, offset n on
//! the n-th commit) synchronously, one commit after another, for SECONDS. Every commit is timed
//! from the call to its return; commits in the first second are a warm-up (coordinator lookup,
//! connections) and are not counted. Prints one tab-separated line:
//!
//! ```text
//! partition_offsets_s  commits_s  p50_ms  p99_ms  p999_ms  max_ms  failed
//! ```
//!
//! The committers are either (`rdkafka`, the default) librdkafka consumers (the `rdkafka`
//! crate), one thread each, or (`wire`) one connection each to the group's coordinator (found
//! with FindCoordinator through the bootstrap broker) sending OffsetCommit with generation -1
//! and no member id, as admin tools do, all on one single-threaded tokio runtime
//! ([`strand::client::Client`]: the request and response only). On this 2-core machine the
//! client shares the CPU with etcd and three brokers: 100 librdkafka consumers take 60-75 % of
//! a core (each commit hops over three librdkafka threads), the `wire` committers a fraction of
//! that, so `wire` shows what the brokers and etcd do when the load generator gets out of the
//! way. (A Python version, 100 threads under the GIL, spent about 60 % of a core and timed the
//! GIL's hand-offs along with the commits.)

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{FindCoordinatorRequest, GroupId, OffsetCommitRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use strand::client::Client;

/// One `wire` committer: finds group `bench-<i>`'s coordinator, then commits until `end`.
/// Returns the latencies of the successful commits started after `warm`, and the failures.
async fn wire_committer(
    bootstrap: &str,
    i: usize,
    topic: &str,
    partitions: i32,
    warm: Instant,
    end: Instant,
) -> (Vec<Duration>, u64) {
    let timeout = Duration::from_secs(10);
    let group = format!("bench-{i}");
    let mut client = loop {
        match coordinator(bootstrap, &group, timeout).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < warm => {
                eprintln!("{group}: {e:#}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{group}: {e:#}"),
        }
    };
    let (mut mine, mut failed, mut n) = (Vec::new(), 0u64, 0i64);
    while Instant::now() < end {
        n += 1;
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(StrBytes::from_string(group.clone()));
        req.generation_id_or_member_epoch = -1;
        let mut rt = OffsetCommitRequestTopic::default();
        rt.name = TopicName(StrBytes::from_string(topic.to_string()));
        for p in 0..partitions {
            let mut rp = OffsetCommitRequestPartition::default();
            rp.partition_index = p;
            rp.committed_offset = n;
            rp.committed_leader_epoch = -1;
            rt.partitions.push(rp);
        }
        req.topics.push(rt);
        let t0 = Instant::now();
        let ok = match client.call(&req).await {
            Ok((resp, _)) => resp
                .topics
                .iter()
                .all(|t| t.partitions.iter().all(|p| p.error_code == 0)),
            Err(e) => panic!("{group}: {e:#}"),
        };
        let took = t0.elapsed();
        if t0 < warm {
            continue;
        }
        if ok {
            mine.push(took);
        } else {
            failed += 1;
        }
    }
    (mine, failed)
}

/// A connection to `group`'s coordinator, looked up through `bootstrap`.
async fn coordinator(bootstrap: &str, group: &str, timeout: Duration) -> anyhow::Result<Client> {
    let mut client = Client::connect_as(bootstrap, timeout, "commit-latency").await?;
    let mut req = FindCoordinatorRequest::default();
    let key = StrBytes::from_string(group.to_string());
    let v4 = client.version::<FindCoordinatorRequest>()? >= 4;
    if v4 {
        req.coordinator_keys = vec![key];
    } else {
        req.key = key;
    }
    let (resp, _) = client.call(&req).await?;
    let (code, host, port) = match resp.coordinators.first() {
        Some(c) if v4 => (c.error_code, c.host.to_string(), c.port),
        _ => (resp.error_code, resp.host.to_string(), resp.port),
    };
    if code != 0 {
        anyhow::bail!("FindCoordinator: error {code}");
    }
    Client::connect_as(&format!("{host}:{port}"), timeout, "commit-latency").await
}

fn usage() -> ! {
    eprintln!("usage: commit_latency BOOTSTRAPS TOPIC CONSUMERS PARTITIONS SECONDS");
    std::process::exit(2)
}

fn num<T: std::str::FromStr>(s: Option<String>) -> T {
    s.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())
}

#[derive(Default)]
struct Totals {
    latencies: Vec<Duration>,
    failed: u64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let bootstraps: Vec<String> = args
        .next()
        .unwrap_or_else(|| usage())
        .split(',')
        .map(str::to_owned)
        .collect();
    let topic = args.next().unwrap_or_else(|| usage());
    let consumers: usize = num(args.next());
    let partitions: i32 = num(args.next());
    let seconds: f64 = num(args.next());
    let wire = match args.next().as_deref() {
        None | Some("rdkafka") => false,
        Some("wire") => true,
        Some(_) => usage(),
    };

    let start = Instant::now();
    let warm = start + Duration::from_secs(1);
    let end = start + Duration::from_secs_f64(seconds + 1.0);
    let totals = Arc::new(Mutex::new(Totals::default()));
    if wire {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let tasks: Vec<_> = (0..consumers)
                .map(|i| {
                    let bootstrap = bootstraps[i % bootstraps.len()].clone();
                    let (topic, totals) = (topic.clone(), Arc::clone(&totals));
                    tokio::spawn(async move {
                        let (mine, failed) =
                            wire_committer(&bootstrap, i, &topic, partitions, warm, end).await;
                        let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                        t.latencies.extend(mine);
                        t.failed += failed;
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        });
        report(&totals, warm, end, partitions);
        return;
    }
    let threads: Vec<_> = (0..consumers)
        .map(|i| {
            let bootstrap = bootstraps[i % bootstraps.len()].clone();
            let topic = topic.clone();
            let totals = Arc::clone(&totals);
            thread::spawn(move || {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .set("group.id", format!("bench-{i}"))
                    .set("enable.auto.commit", "false")
                    .set("log_level", "3")
                    .create()
                    .expect("consumer");
                let mut mine = Vec::new();
                let mut failed = 0u64;
                let mut n = 0i64;
                while Instant::now() < end {
                    n += 1;
                    let mut tpl = TopicPartitionList::with_capacity(partitions as usize);
                    for p in 0..partitions {
                        tpl.add_partition_offset(&topic, p, Offset::Offset(n))
                            .expect("offset");
                    }
                    let t0 = Instant::now();
                    let ok = consumer.commit(&tpl, CommitMode::Sync).is_ok();
                    let took = t0.elapsed();
                    if t0 < warm {
                        continue;
                    }
                    if ok {
                        mine.push(took);
                    } else {
                        failed += 1;
                    }
                }
                let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                t.latencies.extend(mine);
                t.failed += failed;
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    report(&totals, warm, end, partitions);
}

fn report(totals: &Mutex<Totals>, warm: Instant, end: Instant, partitions: i32) {
    let took = end.saturating_duration_since(warm).as_secs_f64();
    let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
    t.latencies.sort_unstable();
    let q = |f: f64| -> f64 {
        if t.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((t.latencies.len() as f64 * f) as usize).min(t.latencies.len() - 1);
        t.latencies[i].as_secs_f64() * 1000.0
    };
    let commits = t.latencies.len() as f64;
    println!(
        "{:.0}\t{:.0}\t{:.2}\t{:.2}\t{:.2}\t{:.2}\t{}",
        commits * partitions as f64 / took,
        commits / took,
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0),
        t.failed
    );
}
