//! What a client was told or shown survives crashes and disk failures: consumers see only
//! fdatasync'ed records, a failed write or fsync takes the data dir offline (KAFKA_STORAGE_ERROR,
//! nothing acknowledged after it), and the next start recovers. Power failures are simulated by
//! dropping what no fdatasync covered (`PartitionLog::simulate_power_loss`); disk errors come
//! from the storage fault seam (EIO) and from a real, full tmpfs (ENOSPC).

use std::collections::BTreeMap;
use std::path::Path;

use kafka_protocol::messages::{BrokerId, MetadataRequest};
use kafka_protocol::records::Compression;
use strand::storage::fault::{self, FaultOp};

use crate::client::*;

const EIO: i32 = 5;
const KAFKA_STORAGE_ERROR: i16 = 56;

/// Every record of partition 0 from offset 0, read until the high watermark.
async fn read_all(c: &mut Client, topic: &str) -> (Vec<(i64, String)>, i64) {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let resp = c.fetch(topic, 0, offset, 0, 0).await;
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch at {offset}");
        let recs = decode(p.records.as_ref().unwrap());
        if recs.is_empty() {
            return (out, p.high_watermark);
        }
        offset = recs.last().unwrap().0 + 1;
        out.extend(recs);
    }
}

fn produce_error(resp: &kafka_protocol::messages::ProduceResponse) -> i16 {
    resp.responses[0].partition_responses[0].error_code
}

#[tokio::test]
async fn acks1_records_become_visible_only_once_fsynced() {
    // A background flush far away: only an fsync makes records visible.
    let b = TestBroker::start_with(&[("log.flush.max.delay.ms", "600000")]).await;
    let mut c = b.client().await;
    c.create_topic("vis", 1, &[]).await;
    let r = c
        .produce("vis", 0, batch(&["a", "b"], 1, Compression::None), 1)
        .await;
    assert_eq!(produce_error(&r), 0);
    let resp = c.fetch("vis", 0, 0, 0, 0).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 0, "not fsynced, so not visible");
    assert!(decode(p.records.as_ref().unwrap()).is_empty());
    // An acks=all write fsyncs, which covers the earlier one too (group commit).
    let r = c
        .produce("vis", 0, batch(&["c"], 1, Compression::None), -1)
        .await;
    assert_eq!(produce_error(&r), 0);
    let (recs, hw) = read_all(&mut c, "vis").await;
    assert_eq!(hw, 3);
    assert_eq!(recs.len(), 3);
    b.stop().await;
}

#[tokio::test]
async fn what_a_consumer_saw_survives_a_power_failure() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("seen", 1, &[]).await;
    let mut seen: Vec<(i64, String)> = Vec::new();
    for i in 0..20 {
        let v = format!("r{i}");
        let r = c
            .produce("seen", 0, batch(&[&v], 1, Compression::None), 1)
            .await;
        assert_eq!(produce_error(&r), 0);
        // A long poll: answered as soon as the background flush makes the record visible.
        let resp = c.fetch("seen", 0, seen.len() as i64, 10_000, 1).await;
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        seen.extend(decode(p.records.as_ref().unwrap()));
    }
    assert_eq!(seen.len(), 20, "every record became visible");
    // More acks=1 writes, not waited for: a power failure may take these, not the seen ones.
    for i in 20..30 {
        let v = format!("r{i}");
        c.produce("seen", 0, batch(&[&v], 1, Compression::None), 1)
            .await;
    }
    drop(c);
    b.power_loss_and_restart().await;
    let mut c = b.client().await;
    let (after, hw) = read_all(&mut c, "seen").await;
    assert!(hw >= 20);
    assert_eq!(&after[..20], &seen[..], "a record a consumer saw was lost");
    // The log is whole: offsets continue without gaps after the restart.
    let r = c
        .produce("seen", 0, batch(&["next"], 1, Compression::None), -1)
        .await;
    assert_eq!(produce_error(&r), 0);
    assert_eq!(r.responses[0].partition_responses[0].base_offset, hw);
    b.stop().await;
}

#[tokio::test]
async fn failed_fsync_takes_the_log_dir_offline_until_restart() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("eio", 2, &[]).await;
    let r = c
        .produce("eio", 0, batch(&["kept"], 1, Compression::None), -1)
        .await;
    assert_eq!(produce_error(&r), 0);

    fault::inject(b.dir.path(), FaultOp::Sync, EIO);
    let r = c
        .produce("eio", 0, batch(&["lost"], 1, Compression::None), -1)
        .await;
    assert_eq!(produce_error(&r), KAFKA_STORAGE_ERROR, "failed fsync acked");
    // The disk "recovers", but the dir stays offline: an fsync is never retried and then
    // acknowledged, on any partition.
    fault::clear(b.dir.path());
    for (partition, acks) in [(0, -1), (0, 1), (1, -1), (1, 1)] {
        let r = c
            .produce("eio", partition, batch(&["x"], 1, Compression::None), acks)
            .await;
        assert_eq!(
            produce_error(&r),
            KAFKA_STORAGE_ERROR,
            "p{partition} acks={acks}"
        );
    }
    let f = c.fetch("eio", 1, 0, 0, 0).await;
    assert_eq!(f.responses[0].partitions[0].error_code, KAFKA_STORAGE_ERROR);
    let mut req = MetadataRequest::default();
    req.topics = None;
    let m = c.call(&req, 12).await;
    let t = m
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "eio"))
        .unwrap();
    for p in &t.partitions {
        assert_eq!(p.error_code, KAFKA_STORAGE_ERROR);
    }
    let broker = b.running.as_ref().unwrap().broker.clone();
    for p in &t.partitions {
        assert_eq!(p.offline_replicas, vec![BrokerId(broker.node_id())]);
    }
    assert!(broker.log_dir().is_offline());
    assert!(broker.log_dir().reason().unwrap().contains("fdatasync"));
    drop(broker);

    // A graceful stop cannot mark the logs clean; the next start recovers and serves again.
    drop(c);
    b.restart().await;
    let mut c = b.client().await;
    let (recs, _) = read_all(&mut c, "eio").await;
    assert_eq!(recs[0], (0, "kept".to_string()));
    let r = c
        .produce("eio", 1, batch(&["again"], 1, Compression::None), -1)
        .await;
    assert_eq!(produce_error(&r), 0);
    b.stop().await;
}

#[tokio::test]
async fn failed_write_takes_the_log_dir_offline() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    c.create_topic("wr", 1, &[]).await;
    fault::inject(b.dir.path(), FaultOp::Write, EIO);
    let r = c
        .produce("wr", 0, batch(&["x"], 1, Compression::None), 1)
        .await;
    assert_eq!(produce_error(&r), KAFKA_STORAGE_ERROR);
    fault::clear(b.dir.path());
    let r = c
        .produce("wr", 0, batch(&["y"], 1, Compression::None), 1)
        .await;
    assert_eq!(produce_error(&r), KAFKA_STORAGE_ERROR);
    b.stop().await;
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn mount_tmpfs(dir: &Path, size: &str) {
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .expect("mount");
    assert!(st.success(), "mount tmpfs on {}", dir.display());
}

fn remount(dir: &Path, size: &str) {
    let st = std::process::Command::new("mount")
        .args(["-o", &format!("remount,size={size}")])
        .arg(dir)
        .status()
        .expect("mount");
    assert!(st.success());
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        // Background flush tasks may hold a log file open for a moment after the stop.
        for _ in 0..100 {
            let done = std::process::Command::new("umount")
                .arg(self.0)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if done {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(self.0)
            .status();
    }
}

/// A real ENOSPC: the data dir is a 3 MiB tmpfs filled by acks=all writes.
#[tokio::test]
async fn disk_full_takes_the_log_dir_offline_and_keeps_every_ack() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let mut b = TestBroker::start().await;
    b.running.take().unwrap().stop().await.unwrap();
    let data = b.dir.path().join("full");
    std::fs::create_dir(&data).unwrap();
    mount_tmpfs(&data, "3m");
    let _unmount = Unmount(&data);
    let config = {
        let mut cfg = b.config();
        cfg.data_dir = data.clone();
        cfg
    };
    b.running = Some(strand::Running::start(config.clone()).await.unwrap());
    let mut c = b.client().await;
    c.create_topic("full", 1, &[]).await;
    let value = "v".repeat(16 * 1024);
    let mut acked: BTreeMap<i64, String> = BTreeMap::new();
    let mut failed = None;
    for i in 0..1000 {
        let v = format!("{i}:{value}");
        let r = c
            .produce("full", 0, batch(&[&v], 1, Compression::None), -1)
            .await;
        let p = &r.responses[0].partition_responses[0];
        if p.error_code != 0 {
            failed = Some((i, p.error_code));
            break;
        }
        acked.insert(p.base_offset, v);
    }
    let (at, code) = failed.expect("a 3 MiB disk filled up");
    assert_eq!(code, KAFKA_STORAGE_ERROR, "write {at} failed with {code}");
    assert!(acked.len() > 50, "only {} writes fit", acked.len());
    assert!(b.running.as_ref().unwrap().broker.log_dir().is_offline());
    // Still up and answering, but nothing more is acknowledged.
    let r = c
        .produce("full", 0, batch(&["small"], 1, Compression::None), 1)
        .await;
    assert_eq!(produce_error(&r), KAFKA_STORAGE_ERROR);
    drop(c);
    b.running.take().unwrap().stop().await.unwrap();

    // The operator makes room; the next start recovers and every acknowledged write is there.
    remount(&data, "16m");
    b.running = Some(strand::Running::start(config).await.unwrap());
    let mut c = b.client().await;
    let (recs, _) = read_all(&mut c, "full").await;
    let got: BTreeMap<i64, String> = recs.into_iter().collect();
    for (offset, v) in &acked {
        assert_eq!(
            got.get(offset),
            Some(v),
            "acknowledged offset {offset} lost"
        );
    }
    let r = c
        .produce("full", 0, batch(&["after"], 1, Compression::None), -1)
        .await;
    assert_eq!(produce_error(&r), 0);
    drop(c);
    b.running.take().unwrap().stop().await.unwrap();
}

/// `log.visibility = page-cache`: Kafka's behaviour, records visible once written and fsynced
/// only as `flush.messages` / `flush.ms` ask.
#[tokio::test]
async fn page_cache_mode_shows_records_before_fsync_and_honours_flush_configs() {
    let b = TestBroker::start_with(&[("log.visibility", "page-cache")]).await;
    let broker = b.running.as_ref().unwrap().broker.clone();
    let mut c = b.client().await;
    c.create_topic("pc", 1, &[]).await;
    let r = c
        .produce("pc", 0, batch(&["a"], 1, Compression::None), 1)
        .await;
    assert_eq!(produce_error(&r), 0);
    let (recs, hw) = read_all(&mut c, "pc").await;
    assert_eq!((recs.len(), hw), (1, 1), "visible at once");
    let p = broker.partition("pc", 0).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        p.log().unwrap().durable_offset(),
        0,
        "no fsync without flush.messages/flush.ms"
    );

    // flush.messages=1: the acks=1 produce is answered after its fsync.
    c.create_topic("pc-msgs", 1, &[("flush.messages", "1")])
        .await;
    let r = c
        .produce("pc-msgs", 0, batch(&["a"], 1, Compression::None), 1)
        .await;
    assert_eq!(produce_error(&r), 0);
    let pm = broker.partition("pc-msgs", 0).unwrap();
    assert_eq!(pm.log().unwrap().durable_offset(), 1);

    // flush.ms=20: fsynced shortly after.
    c.create_topic("pc-ms", 1, &[("flush.ms", "20")]).await;
    let r = c
        .produce("pc-ms", 0, batch(&["a"], 1, Compression::None), 1)
        .await;
    assert_eq!(produce_error(&r), 0);
    let pt = broker.partition("pc-ms", 0).unwrap();
    let mut synced = false;
    for _ in 0..200 {
        if pt.log().unwrap().durable_offset() == 1 {
            synced = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(synced, "flush.ms did not fsync");
    drop((p, pm, pt, broker));
    b.stop().await;
}

/// Durable mode with `flush.messages=1`: an acks=1 write is fsynced (so visible) before its
/// response, even with the background flush far away.
#[tokio::test]
async fn flush_messages_fsyncs_before_the_ack_in_durable_mode() {
    let b = TestBroker::start_with(&[
        ("log.flush.max.delay.ms", "600000"),
        ("log.flush.interval.messages", "1"),
    ])
    .await;
    let mut c = b.client().await;
    c.create_topic("fm", 1, &[]).await;
    let r = c
        .produce("fm", 0, batch(&["a", "b"], 1, Compression::None), 1)
        .await;
    assert_eq!(produce_error(&r), 0);
    let resp = c.fetch("fm", 0, 0, 0, 0).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 2);
    b.stop().await;
}
