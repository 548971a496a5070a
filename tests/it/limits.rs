//! No client request may make the broker allocate without bound: each test floods the broker
//! with one kind of oversized request from many connections and checks that it stays up,
//! answers Kafka's error and that the process's resident memory stays bounded.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::CreatePartitionsRequest;
use kafka_protocol::records::Compression;

use crate::client::*;

const INVALID_PARTITIONS: i16 = 37;
const POLICY_VIOLATION: i16 = 44;

/// Resident set size of this process (broker and test client), in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn create_partitions(name: &str, count: i32, validate_only: bool) -> CreatePartitionsRequest {
    let mut t = CreatePartitionsTopic::default();
    t.name = topic_name(name);
    t.count = count;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5000;
    req.validate_only = validate_only;
    req
}

#[tokio::test]
async fn partition_counts_are_capped_before_anything_is_allocated_or_stored() {
    let b = TestBroker::start_with(&[("max.broker.partitions", "10")]).await;
    let mut c = b.client().await;
    assert_eq!(c.create_topic("six", 6, &[]).await.topics[0].error_code, 0);
    // Beyond the broker's total: POLICY_VIOLATION, for real and validate-only alike.
    for validate_only in [false, true] {
        let r = c
            .call(
                &create_topics_request(&[("five", 5, &[])], validate_only),
                7,
            )
            .await;
        assert_eq!(r.topics[0].error_code, POLICY_VIOLATION);
        let r = c
            .call(&create_partitions("six", 11, validate_only), 3)
            .await;
        assert_eq!(r.results[0].error_code, POLICY_VIOLATION);
    }
    // More than the cap in one topic: INVALID_PARTITIONS.
    let r = c.create_topic("huge", 11, &[]).await;
    assert_eq!(r.topics[0].error_code, INVALID_PARTITIONS);
    // Nothing was stored or created.
    assert!(b.running.as_ref().unwrap().broker.topic("five").is_none());
    assert!(!b.dir.path().join("five-0").exists());
    assert_eq!(
        b.running
            .as_ref()
            .unwrap()
            .broker
            .topic("six")
            .unwrap()
            .partitions
            .len(),
        6
    );
    // What fits still works.
    assert_eq!(c.create_topic("four", 4, &[]).await.topics[0].error_code, 0);
    let r = c.create_topic("one", 1, &[]).await;
    assert_eq!(r.topics[0].error_code, POLICY_VIOLATION);
    b.stop().await;
}

/// CreateTopics and CreatePartitions asking for two billion partitions, from 16 connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_huge_partition_counts_keeps_memory_bounded() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    assert_eq!(c.create_topic("base", 1, &[]).await.topics[0].error_code, 0);
    let before = rss_bytes();
    let mut tasks = Vec::new();
    for conn in 0..16 {
        let addr = b.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            for i in 0..20 {
                let name = format!("flood-{conn}-{i}");
                let r = c.create_topic(&name, i32::MAX, &[]).await;
                assert_eq!(r.topics[0].error_code, INVALID_PARTITIONS);
                let r = c.call(&create_partitions("base", i32::MAX, false), 3).await;
                assert_eq!(r.results[0].error_code, INVALID_PARTITIONS);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "RSS grew by {} MiB", grown >> 20);
    // Still serving.
    assert_eq!(
        c.create_topic("after", 2, &[]).await.topics[0].error_code,
        0
    );
    b.stop().await;
}

/// Peak resident memory of this process since the last [`reset_peak_rss`].
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[tokio::test]
async fn fetch_max_bytes_bounds_every_response() {
    let b = TestBroker::start_with(&[("fetch.max.bytes", "1024")]).await;
    let mut c = b.client().await;
    c.create_topic("fmb", 1, &[]).await;
    let v = "x".repeat(500);
    for _ in 0..10 {
        let r = c
            .produce(
                "fmb",
                0,
                batch(&[&v], 1, kafka_protocol::records::Compression::None),
                -1,
            )
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let resp = c
        .call(&fetch_request("fmb", 0, 0, 0, 0, i32::MAX), 12)
        .await;
    let recs = resp.responses[0].partitions[0].records.as_ref().unwrap();
    assert!(recs.len() <= 1024, "{} bytes", recs.len());
    assert_eq!(decode(recs).len(), 1);
    b.stop().await;
}

/// 48 MiB lie beyond the high watermark (written, not yet fsynced); 16 consumers fetch at the
/// high watermark's edge asking for 64 MiB each. Reads stop at the watermark without loading
/// what lies past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_do_not_load_what_lies_past_the_high_watermark() {
    let b = TestBroker::start_with(&[("log.flush.max.delay.ms", "600000")]).await;
    let mut c = b.client().await;
    c.create_topic("past", 1, &[]).await;
    let r = c
        .produce(
            "past",
            0,
            batch(&["first"], 1, kafka_protocol::records::Compression::None),
            -1,
        )
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let v = "y".repeat(512 * 1024);
    for _ in 0..96 {
        let r = c
            .produce(
                "past",
                0,
                batch(&[&v], 1, kafka_protocol::records::Compression::None),
                1,
            )
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    reset_peak_rss();
    let before = rss_bytes();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let addr = b.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            for _ in 0..10 {
                let resp = c
                    .call(&fetch_request("past", 0, 0, 0, 0, 64 << 20), 12)
                    .await;
                let p = &resp.responses[0].partitions[0];
                assert_eq!(p.high_watermark, 1);
                assert_eq!(decode(p.records.as_ref().unwrap()).len(), 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let peak = peak_rss_bytes().saturating_sub(before);
    // Loading what lies past the watermark costs 48 MiB per read in flight (two workers).
    assert!(peak < 32 << 20, "peak RSS grew by {} MiB", peak >> 20);
    b.stop().await;
}

/// Six clients each announce a ~95 MiB frame and send all of it but the last byte. With a
/// budget of one such frame, the broker reads one body and leaves the others unread (in the
/// kernel's socket buffers); once the clients go, it serves new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_frames_wait_for_the_request_memory_budget() {
    use tokio::io::AsyncWriteExt;
    let b = TestBroker::start_with(&[("queued.max.request.bytes", "104857600")]).await;
    const LEN: usize = 100_000_000;
    reset_peak_rss();
    let before = rss_bytes();
    let mut writers = Vec::new();
    for _ in 0..6 {
        let addr = b.addr();
        writers.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(&(LEN as i32).to_be_bytes()).await.unwrap();
            // A Produce v9 header, then filler: the broker only learns it is garbage once whole.
            let mut head = vec![0u8, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff];
            head.resize(1 << 20, 0);
            let zeros = vec![0u8; 1 << 20];
            let mut left = LEN - 1;
            let mut first = true;
            while left > 0 {
                let n = left.min(head.len());
                let chunk = if first { &head[..n] } else { &zeros[..n] };
                first = false;
                if s.write_all(chunk).await.is_err() {
                    return;
                }
                left -= n;
            }
            // Hold the connection open with the frame one byte short.
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        }));
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let peak = peak_rss_bytes().saturating_sub(before);
    for w in &writers {
        w.abort();
    }
    // One body (95 MiB) may be buffered, not six.
    assert!(peak < 200 << 20, "peak RSS grew by {} MiB", peak >> 20);
    // The budget comes back when the connections close; new clients are served.
    for w in writers {
        let _ = w.await;
    }
    let mut c = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut c = b.client().await;
        c.create_topic("served", 1, &[]).await;
        c
    })
    .await
    .expect("served after the budget came back");
    assert_eq!(
        c.create_topic("served2", 1, &[]).await.topics[0].error_code,
        0
    );
    b.stop().await;
}

/// Open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// 1,500 partitions written and read need neither three descriptors each (log, offset index,
/// time index, as before) nor one each: the segment files are a bounded cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_need_a_bounded_number_of_open_files() {
    const PARTITIONS: i32 = 1500;
    const OPEN_MAX: usize = 100;
    let before = open_fds();
    let broker = TestBroker::start_with(&[
        ("log.segment.files.open.max", "100"),
        ("max.broker.partitions", "2000"),
    ])
    .await;
    let mut c = broker.client().await;
    let resp = c.create_topic("many", PARTITIONS, &[]).await;
    assert_eq!(resp.topics[0].error_code, 0);
    for p in 0..PARTITIONS {
        let r = c
            .produce(
                "many",
                p,
                batch(&[&format!("v{p}")], 1, Compression::None),
                -1,
            )
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let b = broker.running.as_ref().unwrap().broker.clone();
    let files = b.open_files();
    assert!(
        files.open_count() <= OPEN_MAX,
        "{} segment files open",
        files.open_count()
    );
    // Every partition still reads (evicted files are reopened).
    for p in (0..PARTITIONS).step_by(7) {
        let f = c.fetch("many", p, 0, 0, 1).await;
        let pd = &f.responses[0].partitions[0];
        assert_eq!(pd.error_code, 0);
        let got = decode(pd.records.as_ref().unwrap());
        assert_eq!(got, vec![(0, format!("v{p}"))]);
    }
    assert!(files.open_count() <= OPEN_MAX);
    let grown = open_fds().saturating_sub(before);
    // Generous slack for other tests of this binary running meanwhile; the old layout needed
    // 3 * 1,500 = 4,500 here.
    assert!(
        grown < PARTITIONS as usize / 2,
        "{grown} descriptors more for {PARTITIONS} partitions"
    );
    // Our handle on the broker goes first: stop waits until the broker is released.
    drop(b);
    broker.stop().await;
}
