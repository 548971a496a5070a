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
