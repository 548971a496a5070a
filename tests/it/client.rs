//! A minimal Kafka client for tests: frames requests, matches responses by correlation id.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strand::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct TestBroker {
    pub dir: tempfile::TempDir,
    pub running: Option<strand::Running>,
    pub overrides: Vec<(String, String)>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(&[]).await
    }

    pub async fn start_with(overrides: &[(&str, &str)]) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut b = TestBroker {
            dir,
            running: None,
            overrides,
        };
        b.boot().await;
        b
    }

    pub fn config(&self) -> Config {
        let mut m: std::collections::BTreeMap<String, String> =
            self.overrides.iter().cloned().collect();
        m.insert("listeners".into(), "127.0.0.1:0".into());
        m.insert("log.dirs".into(), self.dir.path().to_string_lossy().into());
        Config::from_overrides(&m).unwrap()
    }

    pub async fn boot(&mut self) {
        self.running = Some(strand::Running::start(self.config()).await.unwrap());
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().unwrap().addr
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr()).await
    }

    /// Graceful stop and start on the same data dir (new port).
    pub async fn restart(&mut self) {
        self.running.take().unwrap().stop().await.unwrap();
        self.boot().await;
    }

    /// Stops without the graceful path: the server task is dropped, the clean marker is not
    /// written, so the next start recovers the logs. (Writes already made are in the page cache,
    /// as after a process kill.)
    pub async fn crash_and_restart(&mut self) {
        self.crash(false).await;
        self.boot().await;
    }

    /// As [`TestBroker::crash_and_restart`], but as a power failure: what no fdatasync covered
    /// is dropped from every partition's active segment before the restart.
    pub async fn power_loss_and_restart(&mut self) {
        self.crash(true).await;
        self.boot().await;
    }

    /// Stops abruptly (see `crash_and_restart`), optionally losing unsynced log bytes.
    pub async fn crash(&mut self, lose_unsynced: bool) {
        let r = self.running.take().unwrap();
        let broker = r.broker.clone();
        r.kill().await;
        // Every task holding the broker is gone once the count drops to ours.
        for _ in 0..500 {
            if std::sync::Arc::strong_count(&broker) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            std::sync::Arc::strong_count(&broker),
            1,
            "broker still referenced"
        );
        if lose_unsynced {
            for t in broker.topics() {
                for p in t.hosted() {
                    p.opened_log().unwrap().simulate_power_loss().unwrap();
                }
            }
        }
        drop(broker);
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }
}

pub struct Client {
    stream: TcpStream,
    next_id: i32,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_id: 1,
        }
    }

    pub fn encode<R: Request>(&mut self, req: &R, version: i16) -> (i32, Bytes) {
        let id = self.next_id;
        self.next_id += 1;
        (id, request_frame(req, version, id))
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(30), self.stream.read_exact(&mut len))
            .await
            .expect("response timed out")
            .ok()?;
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).await.ok()?;
        Some(Bytes::from(buf))
    }

    pub async fn recv<R: Request>(&mut self, id: i32, version: i16) -> R::Response {
        let mut frame = self.read_frame().await.expect("connection closed");
        let key = ApiKey::try_from(R::KEY).unwrap();
        let header =
            ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, id, "responses out of order");
        R::Response::decode(&mut frame, version).unwrap()
    }

    pub async fn call<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        let (id, frame) = self.encode(req, version);
        self.send_raw(&frame).await;
        self.recv::<R>(id, version).await
    }

    /// True if the broker closed the connection (EOF) within a few seconds.
    pub async fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// One request as it goes on the wire: length prefix, header (client id `strand-it`), body.
pub fn request_frame<R: Request>(req: &R, version: i16, correlation_id: i32) -> Bytes {
    try_request_frame(req, version, correlation_id).unwrap()
}

/// [`request_frame`], or the encoder's refusal (a field the version cannot carry).
pub fn try_request_frame<R: Request>(
    req: &R,
    version: i16,
    correlation_id: i32,
) -> anyhow::Result<Bytes> {
    let key = ApiKey::try_from(R::KEY).unwrap();
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("strand-it"));
    let mut body = BytesMut::new();
    header.encode(&mut body, key.request_header_version(version))?;
    req.encode(&mut body, version)?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    Ok(frame.freeze())
}

/// Builds one RecordBatch v2 with `values` (keys `k<i>`), timestamps `ts + i`.
pub fn batch(values: &[&str], ts: i64, compression: Compression) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: ts + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Decodes every record in `bytes` (whole batches) into `(offset, value)`.
pub fn decode(bytes: &Bytes) -> Vec<(i64, String)> {
    let mut buf = bytes.clone();
    let mut out = Vec::new();
    while buf.remaining() >= 12 {
        let len = i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize + 12;
        if buf.remaining() < len {
            break; // a partial trailing batch
        }
        let mut one = buf.split_to(len);
        let set = RecordBatchDecoder::decode(&mut one).unwrap();
        for r in set.records {
            out.push((
                r.offset,
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string(),
            ));
        }
    }
    out
}

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, ProduceRequest,
    ProduceResponse, TopicName,
};

/// `(name, partitions, configs)` of a topic to create.
pub type TopicSpec<'a> = (&'a str, i32, &'a [(&'a str, &'a str)]);

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn create_topics_request(topics: &[TopicSpec], validate_only: bool) -> CreateTopicsRequest {
    let mut req = CreateTopicsRequest::default();
    req.timeout_ms = 5000;
    req.validate_only = validate_only;
    for (name, partitions, configs) in topics {
        let mut t = CreatableTopic::default();
        t.name = topic_name(name);
        t.num_partitions = *partitions;
        t.replication_factor = -1;
        for (k, v) in configs.iter() {
            let mut c = CreatableTopicConfig::default();
            c.name = StrBytes::from_string(k.to_string());
            c.value = Some(StrBytes::from_string(v.to_string()));
            t.configs.push(c);
        }
        req.topics.push(t);
    }
    req
}

impl Client {
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> CreateTopicsResponse {
        let resp = self
            .call(
                &create_topics_request(&[(name, partitions, configs)], false),
                7,
            )
            .await;
        resp
    }

    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> ProduceResponse {
        self.call(&produce_request(topic, partition, records, acks), 9)
            .await
    }

    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        min_bytes: i32,
    ) -> FetchResponse {
        self.call(
            &fetch_request(topic, partition, offset, max_wait_ms, min_bytes, 1 << 20),
            12,
        )
        .await
    }
}

pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    let mut pd = PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(records);
    let mut td = TopicProduceData::default();
    td.name = topic_name(topic);
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 5000;
    req.topic_data = vec![td];
    req
}

pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
) -> FetchRequest {
    let mut fp = FetchPartition::default();
    fp.partition = partition;
    fp.fetch_offset = offset;
    fp.partition_max_bytes = max_bytes;
    fp.current_leader_epoch = -1;
    fp.log_start_offset = -1;
    let mut ft = FetchTopic::default();
    ft.topic = topic_name(topic);
    ft.partitions = vec![fp];
    let mut req = FetchRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = min_bytes;
    req.max_bytes = max_bytes;
    req.session_epoch = -1;
    req.topics = vec![ft];
    req
}
