//! Fuzz smoke: the fuzzing seams (`strand::fuzzing`, also driven by the cargo-fuzz targets in
//! `fuzz/` through `scripts/fuzz.sh`) fed seeded mutations of valid inputs on every
//! `cargo test`: request frames of every served API at every advertised version, record batches
//! in every codec (with their CRC fixed up so mutations reach the record decoders), and real
//! partition directories. A panic anywhere fails the test with the seed that caused it.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::Request;
use kafka_protocol::records::Compression;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strand::fuzzing;

use crate::client::{
    batch, create_topics_request, fetch_request, produce_request, try_request_frame,
};

/// Mutations per seed input.
const MUTATIONS: usize = 400;

/// 1-4 random edits: bit flips, boundary bytes, truncation, a duplicated or deleted run, random
/// bytes inserted.
fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        let i = rng.random_range(0..v.len());
        match rng.random_range(0..6) {
            0 => v[i] ^= 1 << rng.random_range(0..8),
            1 => v[i] = [0x00, 0x7f, 0x80, 0xff][rng.random_range(0..4)],
            2 => v.truncate(i),
            3 => {
                let end = (i + rng.random_range(1..16)).min(v.len());
                let run = v[i..end].to_vec();
                v.splice(i..i, run);
            }
            4 => {
                let end = (i + rng.random_range(1..16)).min(v.len());
                v.drain(i..end);
            }
            _ => {
                let extra: Vec<u8> = (0..rng.random_range(1..8)).map(|_| rng.random()).collect();
                v.splice(i..i, extra);
            }
        }
    }
    v
}

/// Runs `seam` over every seed and `MUTATIONS` mutations of each, naming the case that panics.
fn drive(name: &str, seeds: &[Vec<u8>], seam: impl Fn(&[u8])) {
    let mut rng = StdRng::seed_from_u64(0x5742_4e44);
    for (s, seed) in seeds.iter().enumerate() {
        seam(seed);
        for m in 0..MUTATIONS {
            let input = mutate(&mut rng, seed);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| seam(&input)));
            assert!(
                r.is_ok(),
                "{name}: seed {s}, mutation {m} panicked on {input:02x?}"
            );
        }
    }
}

/// `req` framed at every version the broker advertises for its API that can carry it.
fn frames<R: Request>(req: &R, out: &mut Vec<Vec<u8>>) {
    let key = ApiKey::try_from(R::KEY).unwrap();
    let api = strand::handlers::lookup(key).expect("a served API");
    let before = out.len();
    for version in api.min..=api.max {
        if let Ok(frame) = try_request_frame(req, version, 7) {
            out.push(frame.to_vec());
        }
    }
    assert!(out.len() > before, "{key:?}: no version encodes");
}

fn request_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let records = batch(&["a", "bb", "ccc"], 1_700_000_000_000, Compression::None);
    frames(&produce_request("t", 0, records, -1), &mut out);
    frames(&fetch_request("t", 0, 5, 100, 1, 1 << 20), &mut out);
    frames(
        &create_topics_request(&[("t", 3, &[("cleanup.policy", "compact")])], false),
        &mut out,
    );
    let mut metadata = MetadataRequest::default();
    metadata.topics = Some(vec![metadata_request::MetadataRequestTopic::default()
        .with_name(Some(crate::client::topic_name("t")))]);
    frames(&metadata, &mut out);
    frames(&ApiVersionsRequest::default(), &mut out);
    frames(&ListOffsetsRequest::default(), &mut out);
    frames(&DeleteTopicsRequest::default(), &mut out);
    frames(&FindCoordinatorRequest::default(), &mut out);
    frames(&JoinGroupRequest::default(), &mut out);
    frames(&SyncGroupRequest::default(), &mut out);
    frames(&HeartbeatRequest::default(), &mut out);
    frames(&LeaveGroupRequest::default(), &mut out);
    frames(&OffsetCommitRequest::default(), &mut out);
    frames(&OffsetFetchRequest::default(), &mut out);
    frames(&DescribeGroupsRequest::default(), &mut out);
    frames(&ListGroupsRequest::default(), &mut out);
    frames(&InitProducerIdRequest::default(), &mut out);
    frames(&AddPartitionsToTxnRequest::default(), &mut out);
    frames(&EndTxnRequest::default(), &mut out);
    frames(&TxnOffsetCommitRequest::default(), &mut out);
    frames(&ConsumerGroupHeartbeatRequest::default(), &mut out);
    frames(&DescribeConfigsRequest::default(), &mut out);
    frames(&IncrementalAlterConfigsRequest::default(), &mut out);
    frames(&DeleteRecordsRequest::default(), &mut out);
    frames(&OffsetForLeaderEpochRequest::default(), &mut out);
    frames(&DescribeClusterRequest::default(), &mut out);
    frames(&ElectLeadersRequest::default(), &mut out);
    frames(&AlterPartitionReassignmentsRequest::default(), &mut out);
    // Two frames back to back, as a pipelining client sends them.
    let both = [out[0].clone(), out[out.len() - 1].clone()].concat();
    out.push(both);
    out
}

#[test]
fn request_frames_of_every_api_survive_mutation() {
    let seeds = request_seeds();
    assert!(seeds.len() > 100, "{} seeds", seeds.len());
    drive("request", &seeds, fuzzing::request);
}

/// Recomputes a batch's CRC32C (over attributes to the end) so a mutated batch passes the
/// checksum and reaches the record decoders.
fn fix_crc(batch: &mut [u8]) {
    if batch.len() >= 61 {
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

fn batch_seeds() -> Vec<Vec<u8>> {
    let values = ["one", "two", "three", &"x".repeat(300)];
    let mut out: Vec<Vec<u8>> = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .map(|c| batch(&values, 1_700_000_000_000, c).to_vec())
    .collect();
    let two = [out[0].clone(), out[4].clone()].concat();
    out.push(two);
    out
}

#[test]
fn record_batches_in_every_codec_survive_mutation() {
    let seeds = batch_seeds();
    drive("produce_batches", &seeds, fuzzing::produce_batches);
    // The same mutations with a valid checksum, so they get past validation.
    drive("produce_batches (crc fixed)", &seeds, |input| {
        let mut v = input.to_vec();
        fix_crc(&mut v);
        fuzzing::produce_batches(&v)
    });
}

/// A real partition directory (three appends in two leader epochs, a clean close) in the
/// fuzzing seam's input format.
fn partition_seed() -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    std::fs::create_dir(&dir).unwrap();
    let config = strand::storage::LogConfig {
        index_interval_bytes: 64,
        ..Default::default()
    };
    {
        let log = strand::storage::PartitionLog::open(&dir, config, true).unwrap();
        for (i, epoch) in [0, 0, 3].into_iter().enumerate() {
            let b = batch(
                &["r1", "r2", &"v".repeat(100)],
                1_000 + i as i64,
                Compression::None,
            );
            log.append(&b, epoch, 1_000).unwrap();
        }
        log.close().unwrap();
    }
    let mut header = Vec::new();
    let mut parts = Vec::new();
    for name in fuzzing::PARTITION_FILES {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_default();
        if name.ends_with(".log") {
            parts.push(bytes);
        } else {
            let n = bytes.len().min(255 * 8) / 8;
            header.push(n as u8);
            parts.push(bytes[..n * 8].to_vec());
        }
    }
    [header, parts.concat()].concat()
}

#[test]
fn partition_directories_survive_mutation() {
    let seed = partition_seed();
    assert!(seed.len() > 300, "a seed of {} bytes", seed.len());
    let root = tempfile::tempdir().unwrap();
    let n = std::cell::Cell::new(0);
    drive("segment_recovery", &[seed], |input| {
        let dir = root.path().join(n.get().to_string());
        n.set(n.get() + 1);
        std::fs::create_dir(&dir).unwrap();
        fuzzing::segment_recovery(&dir, input).unwrap();
    });
}
