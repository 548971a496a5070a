//! The `rdkafka` crate (librdkafka 2.12) against a real `strand` process: admin, produce with
//! every codec and acks level, headers, keys, timestamps, consume by offset and by time.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

struct Strand {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Strand {
    fn start() -> Strand {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Strand {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_strand"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Strand {
            child,
            port,
            _dir: dir,
        }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Strand {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "10000");
    c
}

fn consume_all(
    bootstrap: &str,
    topic: &str,
    from: Offset,
    n: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", "rdkafka-compat")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, from).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            out.push(m.unwrap().detach());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_admin_produce_consume() {
    let strand = Strand::start();
    let bootstrap = strand.bootstrap();

    let admin: AdminClient<DefaultClientContext> = config(&bootstrap).create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topics = [
        NewTopic::new("rk", 1, TopicReplication::Fixed(1)),
        NewTopic::new("rk-bad", 1, TopicReplication::Fixed(3)),
    ];
    let res = admin.create_topics(&topics, &opts).await.unwrap();
    assert!(res[0].is_ok(), "{:?}", res[0]);
    assert_eq!(
        res[1].as_ref().unwrap_err().1,
        rdkafka::types::RDKafkaErrorCode::InvalidReplicationFactor
    );

    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let acks = ["0", "1", "all"];
    let base_ts = rdkafka::util::current_time_millis() - 60_000;
    let mut sent = 0i64;
    for codec in codecs {
        for ack in acks {
            let producer: FutureProducer = config(&bootstrap)
                .set("compression.type", codec)
                .set("acks", ack)
                .set("linger.ms", "5")
                .create()
                .unwrap();
            let batch: Vec<(i64, String, String)> = (sent..sent + 20)
                .map(|i| (i, format!("k{i}"), format!("v{i}")))
                .collect();
            sent += 20;
            let mut futures = Vec::new();
            for (i, key, value) in &batch {
                let headers = OwnedHeaders::new().insert(Header {
                    key: "codec",
                    value: Some(codec),
                });
                futures.push(
                    producer.send(
                        FutureRecord::to("rk")
                            .key(key)
                            .payload(value)
                            .timestamp(base_ts + i)
                            .headers(headers),
                        Duration::from_secs(10),
                    ),
                );
            }
            for f in futures {
                f.await
                    .unwrap_or_else(|e| panic!("{codec} acks={ack}: {e:?}"));
            }
        }
    }

    let msgs = consume_all(&bootstrap, "rk", Offset::Beginning, sent as usize);
    assert_eq!(msgs.len(), sent as usize);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.offset(), i as i64);
        assert_eq!(m.payload().unwrap(), format!("v{i}").as_bytes());
        assert_eq!(m.key().unwrap(), format!("k{i}").as_bytes());
        assert_eq!(m.timestamp().to_millis(), Some(base_ts + i as i64));
        let h = m.headers().unwrap().get(0);
        assert_eq!(h.key, "codec");
    }

    // Offsets by time and watermarks.
    let consumer: BaseConsumer = config(&bootstrap)
        .set("group.id", "rdkafka-compat")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("rk", 0, Offset::Offset(base_ts + 42))
        .unwrap();
    let found = consumer
        .offsets_for_times(tpl, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        found.find_partition("rk", 0).unwrap().offset(),
        Offset::Offset(42)
    );
    let (low, high) = consumer
        .fetch_watermarks("rk", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, sent));

    // Consume from the middle.
    let tail = consume_all(&bootstrap, "rk", Offset::Offset(sent - 5), 5);
    assert_eq!(tail.first().map(|m| m.offset()), Some(sent - 5));

    let res = admin
        .delete_topics(&["rk", "missing"], &opts)
        .await
        .unwrap();
    assert!(res[0].is_ok());
    assert_eq!(
        res[1].as_ref().unwrap_err().1,
        rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
    );
}

mod cooperative {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::ClientContext;

    use super::{config, Strand};

    /// Records every partition this consumer had revoked.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<i32>>>);

    impl ClientContext for Recorder {}
    impl ConsumerContext for Recorder {
        fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
            if let Rebalance::Revoke(tpl) = rebalance {
                let mut r = self.0.lock().unwrap();
                r.extend(tpl.elements().iter().map(|e| e.partition()));
            }
        }
    }

    fn consumer(bootstrap: &str, rec: &Recorder) -> BaseConsumer<Recorder> {
        let c: BaseConsumer<Recorder> = config(bootstrap)
            .set("group.id", "coop")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "500")
            .create_with_context(rec.clone())
            .unwrap();
        c.subscribe(&["coop"]).unwrap();
        c
    }

    fn owned(c: &BaseConsumer<Recorder>) -> Vec<i32> {
        let mut v: Vec<i32> = c
            .assignment()
            .unwrap()
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        v.sort();
        v
    }

    /// An incremental cooperative-sticky rebalance: when a second member joins, the first gives
    /// up only the partitions that move and keeps consuming the others throughout.
    #[test]
    fn cooperative_sticky_rebalance_keeps_the_partitions_that_stay() {
        let strand = Strand::start_with(&[
            "--set",
            "num.partitions=4",
            "--set",
            "group.initial.rebalance.delay.ms=0",
        ]);
        let bootstrap = strand.bootstrap();
        let producer: ThreadedProducer<DefaultProducerContext> =
            config(&bootstrap).create().unwrap();
        for i in 0..40 {
            let key = i.to_string();
            producer
                .send(
                    BaseRecord::to("coop")
                        .key(&key)
                        .payload("x")
                        .partition(i % 4),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();

        let r1 = Recorder::default();
        let c1 = consumer(&bootstrap, &r1);
        let deadline = Instant::now() + Duration::from_secs(30);
        while owned(&c1).len() != 4 && Instant::now() < deadline {
            c1.poll(Duration::from_millis(100));
        }
        assert_eq!(owned(&c1), vec![0, 1, 2, 3]);

        let r2 = Recorder::default();
        let c2 = consumer(&bootstrap, &r2);
        let deadline = Instant::now() + Duration::from_secs(30);
        while (owned(&c1).len() != 2 || owned(&c2).len() != 2) && Instant::now() < deadline {
            c1.poll(Duration::from_millis(50));
            c2.poll(Duration::from_millis(50));
        }
        let (a, b) = (owned(&c1), owned(&c2));
        assert_eq!((a.len(), b.len()), (2, 2), "c1 {a:?} c2 {b:?}");
        assert!(a.iter().all(|p| !b.contains(p)));
        let revoked = r1.0.lock().unwrap().clone();
        assert_eq!(
            revoked.len(),
            2,
            "c1 must give up only what moves: {revoked:?}"
        );
        assert!(revoked.iter().all(|p| b.contains(p)));
    }
}

/// A consumer reading old data that is neither in the page cache nor in an open file (the
/// broker then reads on a blocking thread, brings the data into the page cache, and sends it
/// with `sendfile`): librdkafka gets every record, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_consumes_cold_segments() {
    use std::os::fd::AsRawFd;
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("metrics.listen=127.0.0.1:{metrics_port}");
    let strand = Strand::start_with(&[
        "--set",
        "log.segment.bytes=65536",
        "--set",
        "log.segment.files.open.max=2",
        "--set",
        &metrics,
    ]);
    let bootstrap = strand.bootstrap();
    let producer: FutureProducer = config(&bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "16384")
        .create()
        .unwrap();
    let n = 3000usize;
    let value = |i: usize| format!("{i:06}-{}", "c".repeat(200));
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let v = value(i);
            let p = producer.clone();
            async move {
                p.send(
                    FutureRecord::<(), _>::to("cold").payload(&v).partition(0),
                    Duration::from_secs(10),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
            }
        })
        .collect();
    for r in futures::future::join_all(sends).await {
        r.unwrap();
    }
    // Evict every segment from the page cache (clean pages: the data was fsynced).
    let dir = strand._dir.path().join("cold-0");
    let mut segments = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: plain syscall on a valid descriptor.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            segments += 1;
        }
    }
    assert!(segments >= 8, "{segments} segments");
    let got =
        tokio::task::spawn_blocking(move || consume_all(&bootstrap, "cold", Offset::Beginning, n))
            .await
            .unwrap();
    assert_eq!(got.len(), n);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.offset(), i as i64);
        assert_eq!(m.payload().unwrap(), value(i).as_bytes());
    }
    // The cold reads went through the blocking path (re-read, or prefetched before sendfile).
    let scrape = scrape(metrics_port);
    let count = |kind: &str| -> f64 {
        let key = format!("strand_offloaded_io_total{{kind=\"{kind}\"}} ");
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };
    assert!(count("fetch_read") >= 1.0, "{scrape}");
    assert!(count("fetch_prefetch") >= 1.0, "{scrape}");
}

/// `GET /metrics` from the broker's Prometheus endpoint.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[path = "support/etcd.rs"]
mod etcd;

/// The rdkafka crate against a three-broker cluster (a real etcd): it bootstraps from one
/// broker, produces to partitions led by all three, and reads every record back, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_against_a_three_broker_cluster() {
    let etcd = etcd::Etcd::start();
    let endpoints = format!("etcd.endpoints={}", etcd.endpoint);
    let brokers: Vec<Strand> = (1..=3)
        .map(|n| {
            let node = format!("node.id={n}");
            Strand::start_with(&["--set", &node, "--set", &endpoints])
        })
        .collect();
    let bootstrap = brokers[0].bootstrap();
    let admin: AdminClient<DefaultClientContext> = config(&bootstrap).create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let res = admin
        .create_topics(&[NewTopic::new("cl", 6, TopicReplication::Fixed(1))], &opts)
        .await
        .unwrap();
    assert!(res[0].is_ok(), "{:?}", res[0]);
    // Every broker is listed, and the partitions are led by all three.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some("cl"), Duration::from_secs(5))
            .unwrap();
        let leaders: std::collections::BTreeSet<i32> = md.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.leader())
            .collect();
        if md.brokers().len() == 3 && leaders == [1, 2, 3].into() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "leaders {leaders:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let producer: FutureProducer = config(&brokers[1].bootstrap())
        .set("acks", "all")
        .create()
        .unwrap();
    for i in 0..60i32 {
        let v = format!("c{i}");
        producer
            .send(
                FutureRecord::<(), _>::to("cl").payload(&v).partition(i % 6),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let consumer: BaseConsumer = config(&brokers[2].bootstrap())
        .set("group.id", "rdkafka-cluster")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition_offset("cl", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut got: std::collections::BTreeMap<i32, Vec<String>> = Default::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.values().map(Vec::len).sum::<usize>() < 60 && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let v = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            got.entry(m.partition()).or_default().push(v);
        }
    }
    for p in 0..6 {
        let want: Vec<String> = (p..60).step_by(6).map(|i| format!("c{i}")).collect();
        assert_eq!(got.get(&p), Some(&want), "partition {p}");
    }
}
