//! Restarts, crash recovery and start-up reconciliation of the data dir.

use kafka_protocol::records::Compression;

use crate::client::*;

async fn produce_n(c: &mut Client, topic: &str, n: usize, acks: i16) {
    for i in 0..n {
        let v = format!("m{i}");
        let r = c
            .produce(
                topic,
                0,
                batch(
                    &[&v],
                    strand::broker::now_ms() + i as i64,
                    Compression::None,
                ),
                acks,
            )
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
}

async fn read_all(c: &mut Client, topic: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    loop {
        let resp = c.fetch(topic, 0, out.len() as i64, 0, 0).await;
        let recs = decode(resp.responses[0].partitions[0].records.as_ref().unwrap());
        if recs.is_empty() {
            return out;
        }
        out.extend(recs);
    }
}

#[tokio::test]
async fn data_and_topics_survive_graceful_restart() {
    let mut b = TestBroker::start_with(&[("log.segment.bytes", "2048")]).await;
    let mut c = b.client().await;
    c.create_topic("keep", 1, &[("retention.ms", "-1")]).await;
    produce_n(&mut c, "keep", 100, 1).await;
    drop(c);
    b.restart().await;
    // A running broker has consumed its clean-shutdown marker.
    assert!(!b.dir.path().join(".strand_cleanshutdown").exists());
    let mut c = b.client().await;
    let recs = read_all(&mut c, "keep").await;
    assert_eq!(recs.len(), 100);
    assert!(recs
        .iter()
        .enumerate()
        .all(|(i, (o, v))| *o == i as i64 && *v == format!("m{i}")));
    // Appends continue at the right offset.
    let r = c
        .produce("keep", 0, batch(&["after"], 1, Compression::None), 1)
        .await;
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 100);
    b.stop().await;
}

#[tokio::test]
async fn data_survives_crash_restart_and_torn_tail_is_dropped() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("crash", 1, &[]).await;
    produce_n(&mut c, "crash", 20, -1).await;
    drop(c);
    b.crash_and_restart().await;
    let mut c = b.client().await;
    assert_eq!(read_all(&mut c, "crash").await.len(), 20);
    drop(c);
    // Simulate a torn write: half a batch at the end of the active segment.
    b.running.take().unwrap().stop().await.unwrap();
    let log = b
        .dir
        .path()
        .join("crash-0")
        .join("00000000000000000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let tail = batch(&["torn"], 1, Compression::None);
    bytes.extend_from_slice(&tail[..tail.len() / 2]);
    std::fs::write(&log, bytes).unwrap();
    std::fs::remove_file(b.dir.path().join(".strand_cleanshutdown")).unwrap();
    b.boot().await;
    let mut c = b.client().await;
    assert_eq!(read_all(&mut c, "crash").await.len(), 20);
    let r = c
        .produce("crash", 0, batch(&["next"], 1, Compression::None), 1)
        .await;
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 20);
    b.stop().await;
}

#[tokio::test]
async fn interrupted_deletion_is_finished_and_stray_dirs_set_aside_at_start() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("live", 1, &[]).await;
    drop(c);
    b.running.take().unwrap().stop().await.unwrap();
    // A deletion interrupted after the rename, and a partition dir of a topic that no longer
    // exists in the metadata store (crash between the store write and the rename).
    let deleting = b.dir.path().join("gone-0.0123-delete");
    let stray = b.dir.path().join("stray-0");
    std::fs::create_dir_all(&deleting).unwrap();
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("00000000000000000000.log"), b"").unwrap();
    b.boot().await;
    assert!(!deleting.exists());
    assert!(!stray.exists());
    // Set aside, never deleted: it may be the only copy of its data.
    let aside = stray_dirs(b.dir.path(), "stray-0");
    assert_eq!(aside.len(), 1);
    assert!(aside[0].join("00000000000000000000.log").exists());
    assert!(b.dir.path().join("live-0").exists());
    b.stop().await;
}

/// `<prefix>.*-stray` directories of the data dir.
fn stray_dirs(data_dir: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(data_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with(&format!("{prefix}.")) && n.ends_with("-stray")
        })
        .collect()
}

async fn start_error(b: &TestBroker) -> String {
    match strand::Running::start(b.config()).await {
        Ok(_) => panic!("the broker started"),
        Err(e) => format!("{e:#}"),
    }
}

fn log_bytes(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("00000000000000000000.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// A data dir whose metadata store is gone: the broker refuses to start (naming the file)
/// instead of treating the partitions as strays, and nothing is deleted.
#[tokio::test]
async fn a_missing_metadata_store_refuses_to_start_and_deletes_nothing() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("keep", 1, &[]).await;
    produce_n(&mut c, "keep", 5, -1).await;
    drop(c);
    b.running.take().unwrap().stop().await.unwrap();
    let part = b.dir.path().join("keep-0");
    let size = log_bytes(&part);
    assert!(size > 0);

    std::fs::remove_file(b.dir.path().join("meta/metadata.json")).unwrap();
    let e = start_error(&b).await;
    assert!(e.contains("meta/metadata.json"), "{e}");
    assert_eq!(log_bytes(&part), size);
    // Without meta.properties too, the partition directories alone refuse the start.
    std::fs::remove_file(b.dir.path().join("meta.properties")).unwrap();
    let e = start_error(&b).await;
    assert!(e.contains("keep-0") && e.contains("metadata.json"), "{e}");
    assert_eq!(log_bytes(&part), size);
}

#[tokio::test]
async fn another_clusters_or_nodes_data_dir_is_refused() {
    let mut b = TestBroker::start().await;
    b.running.take().unwrap().stop().await.unwrap();
    let props = b.dir.path().join("meta.properties");
    let text = std::fs::read_to_string(&props).unwrap();
    assert!(text.contains("cluster.id="), "{text}");
    // Another node id than configured.
    b.overrides.push(("node.id".into(), "7".into()));
    let e = start_error(&b).await;
    assert!(
        e.contains("meta.properties") && e.contains("node.id"),
        "{e}"
    );
    b.overrides.pop();
    // Another cluster.
    let other: String = text
        .lines()
        .map(|l| {
            if l.starts_with("cluster.id=") {
                "cluster.id=SomeOtherClusterId0000".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&props, other).unwrap();
    let e = start_error(&b).await;
    assert!(
        e.contains("meta.properties") && e.contains("SomeOtherClusterId0000"),
        "{e}"
    );
    // Restored, it starts.
    std::fs::write(&props, text).unwrap();
    b.boot().await;
    b.stop().await;
}

/// A partition directory whose `partition.metadata` names another topic id (e.g. copied from
/// elsewhere) is set aside with its data, and the topic gets a fresh directory.
#[tokio::test]
async fn a_partition_of_another_topic_id_is_set_aside_with_its_data() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("moved", 1, &[]).await;
    produce_n(&mut c, "moved", 3, -1).await;
    drop(c);
    b.running.take().unwrap().stop().await.unwrap();
    let part = b.dir.path().join("moved-0");
    let size = log_bytes(&part);
    std::fs::write(
        part.join("partition.metadata"),
        format!("version: 0\ntopic_id: {}\n", uuid::Uuid::new_v4()),
    )
    .unwrap();
    b.boot().await;
    let aside = stray_dirs(b.dir.path(), "moved-0");
    assert_eq!(aside.len(), 1);
    assert_eq!(log_bytes(&aside[0]), size);
    let mut c = b.client().await;
    assert!(read_all(&mut c, "moved").await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn a_second_broker_cannot_open_the_same_data_dir() {
    let b = TestBroker::start().await;
    let second = strand::Running::start(b.config()).await;
    assert!(second.is_err());
    b.stop().await;
}

#[tokio::test]
async fn retention_deletes_old_segments_and_moves_log_start() {
    let b = TestBroker::start_with(&[("log.retention.check.interval.ms", "100")]).await;
    let mut c = b.client().await;
    c.create_topic(
        "ret",
        1,
        &[("retention.ms", "60000"), ("segment.bytes", "1024")],
    )
    .await;
    // Old records (an hour ago) fill several segments, then fresh ones follow.
    let old = strand::broker::now_ms() - 3_600_000;
    let pad = "o".repeat(400);
    for i in 0..10 {
        c.produce("ret", 0, batch(&[&pad], old + i, Compression::None), 1)
            .await;
    }
    // Large enough not to share a segment with the old records (a segment is deleted only
    // when its newest record is past retention).
    c.produce(
        "ret",
        0,
        batch(&[&pad], strand::broker::now_ms(), Compression::None),
        1,
    )
    .await;
    let mut start = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let resp = c.fetch("ret", 0, 10, 0, 0).await;
        start = resp.responses[0].partitions[0].log_start_offset;
        if start == 10 {
            break;
        }
    }
    assert_eq!(start, 10, "old segments were not deleted");
    let resp = c.fetch("ret", 0, 0, 0, 0).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        kafka_protocol::ResponseError::OffsetOutOfRange.code()
    );
    b.stop().await;
}

/// A partition whose log cannot be opened at start stays offline (KAFKA_STORAGE_ERROR for it,
/// reported offline in Metadata) while the broker serves every other partition; its files are
/// left alone, and once they can be opened again a restart serves its data.
#[tokio::test]
async fn a_partition_that_cannot_be_opened_at_start_is_offline_not_fatal() {
    const KAFKA_STORAGE_ERROR: i16 = 56;
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("half", 2, &[]).await;
    for p in 0..2 {
        let r = c
            .produce(
                "half",
                p,
                batch(&[&format!("p{p}")], 1, Compression::None),
                -1,
            )
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    drop(c);
    b.running.take().unwrap().stop().await.unwrap();
    // Make partition 1's segment unopenable: its .log becomes a directory.
    let seg = b.dir.path().join("half-1").join("00000000000000000000.log");
    let kept = b.dir.path().join("kept.log");
    std::fs::rename(&seg, &kept).unwrap();
    std::fs::create_dir(&seg).unwrap();
    b.boot().await;
    let mut c = b.client().await;
    let r = c
        .produce("half", 1, batch(&["lost?"], 1, Compression::None), -1)
        .await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        KAFKA_STORAGE_ERROR
    );
    let f = c.fetch("half", 1, 0, 0, 1).await;
    assert_eq!(f.responses[0].partitions[0].error_code, KAFKA_STORAGE_ERROR);
    let mut req = kafka_protocol::messages::MetadataRequest::default();
    req.topics = None;
    let md = c.call(&req, 12).await;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "half")
        .unwrap();
    let p1 = t
        .partitions
        .iter()
        .find(|p| p.partition_index == 1)
        .unwrap();
    assert_eq!(p1.error_code, KAFKA_STORAGE_ERROR);
    assert_eq!(p1.offline_replicas.len(), 1);
    let p0 = t
        .partitions
        .iter()
        .find(|p| p.partition_index == 0)
        .unwrap();
    assert_eq!(p0.error_code, 0);
    // Partition 0 is served, reads and writes.
    let r = c
        .produce("half", 0, batch(&["more"], 1, Compression::None), -1)
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let f = c.fetch("half", 0, 0, 0, 1).await;
    let got = decode(f.responses[0].partitions[0].records.as_ref().unwrap());
    assert_eq!(got, vec![(0, "p0".to_string()), (1, "more".to_string())]);
    drop(c);
    b.running.take().unwrap().stop().await.unwrap();
    // An offline partition was not recovered: the stop must not claim a clean shutdown.
    assert!(!b.dir.path().join(".strand_cleanshutdown").exists());
    assert!(seg.is_dir(), "the unopenable file was left alone");
    std::fs::remove_dir(&seg).unwrap();
    std::fs::rename(&kept, &seg).unwrap();
    b.boot().await;
    let mut c = b.client().await;
    let f = c.fetch("half", 1, 0, 0, 1).await;
    assert_eq!(f.responses[0].partitions[0].error_code, 0);
    let got = decode(f.responses[0].partitions[0].records.as_ref().unwrap());
    assert_eq!(got, vec![(0, "p1".to_string())]);
    b.stop().await;
}
