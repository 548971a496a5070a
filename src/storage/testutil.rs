//! Test helpers: builds real RecordBatch v2 bytes (real CRC32C, optional compression).

use std::io::Write;

use super::batch::{compute_crc, Compression, CRC_OFFSET, HEADER_LEN};

pub const ALL_CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// What to put in a test batch: one record per timestamp.
#[derive(Clone, Debug)]
pub struct BatchSpec {
    pub base_offset: i64,
    pub timestamps: Vec<i64>,
    pub codec: Compression,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// Attribute bit 4.
    pub transactional: bool,
    /// Attribute bit 5 (a transaction marker).
    pub control: bool,
}

impl BatchSpec {
    pub fn new(timestamps: &[i64]) -> BatchSpec {
        BatchSpec {
            base_offset: 0,
            timestamps: timestamps.to_vec(),
            codec: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
        }
    }
    pub fn codec(mut self, c: Compression) -> BatchSpec {
        self.codec = c;
        self
    }
    pub fn producer(mut self, id: i64, epoch: i16, seq: i32) -> BatchSpec {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = seq;
        self
    }
    pub fn transactional(mut self) -> BatchSpec {
        self.transactional = true;
        self
    }
    pub fn control(mut self) -> BatchSpec {
        self.control = true;
        self
    }
}

fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

fn bytes_field(out: &mut Vec<u8>, b: &[u8]) {
    varint(out, b.len() as i64);
    out.extend_from_slice(b);
}

fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("gzip");
            e.finish().expect("gzip")
        }
        Compression::Snappy => {
            // Java/xerial framing, split in two chunks to exercise chunking.
            let mut out = vec![
                0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
            ];
            let mid = data.len() / 2;
            for part in [&data[..mid], &data[mid..]] {
                let c = snap::raw::Encoder::new()
                    .compress_vec(part)
                    .expect("snappy");
                out.extend_from_slice(&(c.len() as i32).to_be_bytes());
                out.extend_from_slice(&c);
            }
            out
        }
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(data).expect("lz4");
            e.finish().expect("lz4")
        }
        Compression::Zstd => zstd::encode_all(data, 3).expect("zstd"),
    }
}

/// Builds one batch: record i has key `key-i`, value `value-i`, header `h`=`v`.
pub fn batch(spec: &BatchSpec) -> Vec<u8> {
    let base_ts = spec.timestamps.first().copied().unwrap_or(0);
    let max_ts = spec.timestamps.iter().copied().max().unwrap_or(0);
    let mut body = Vec::new();
    for (i, ts) in spec.timestamps.iter().enumerate() {
        let mut rec = vec![0u8]; // attributes
        varint(&mut rec, ts - base_ts);
        varint(&mut rec, i as i64);
        bytes_field(&mut rec, format!("key-{i}").as_bytes());
        bytes_field(&mut rec, format!("value-{i}").as_bytes());
        varint(&mut rec, 1);
        bytes_field(&mut rec, b"h");
        bytes_field(&mut rec, b"v");
        varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let body = compress(spec.codec, &body);
    let n = spec.timestamps.len() as i32;
    let mut b = Vec::with_capacity(HEADER_LEN + body.len());
    b.extend_from_slice(&spec.base_offset.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - 12 + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&[0; 4]); // crc
    let attributes = i16::from(spec.codec.id())
        | if spec.transactional { 0x10 } else { 0 }
        | if spec.control { 0x20 } else { 0 };
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&spec.producer_id.to_be_bytes());
    b.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    b.extend_from_slice(&spec.base_sequence.to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&body);
    let crc = compute_crc(&b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}
