//! Broker-side recompression: the topic config `compression.type` (Kafka's `LogValidator`).
//!
//! Role: when a topic's `compression.type` names a codec (`uncompressed`, `gzip`, `snappy`,
//! `lz4`, `zstd`) and a produced batch uses another one, the batch's records section is
//! decompressed and compressed again with the topic's codec before the batch is appended.
//! With `producer` (the default), or when every batch already uses the topic's codec, nothing
//! is decoded or copied: the hot path stays zero-decode.
//!
//! Only the records section (the bytes after the 61-byte header) changes: the records inside
//! are kept byte for byte, so offsets deltas, timestamps, keys, values and headers are what the
//! producer sent. In the header the codec bits of the attributes, the batch length and the
//! CRC32C are rewritten; producer id, epoch, base sequence, record count, transactional flag
//! and timestamps stay, so idempotence and transactions work unchanged. Control batches
//! (transaction markers) are never recompressed.
//!
//! Output formats are the ones Kafka's clients read: gzip (RFC 1952, level from
//! `compression.gzip.level`), snappy in the xerial framing Java's `SnappyInputStream` expects
//! (header `82 'SNAPPY' 00`, version 1, compatible 1, then `i32 BE length | raw block` chunks
//! of at most 32 KiB of input), lz4 frames with independent 64 KiB blocks, zstd frames (level
//! from `compression.zstd.level`).

use std::io::Write;

use super::batch::{
    compute_crc, BatchHeader, Compression, ATTRIBUTES_OFFSET, CRC_OFFSET, HEADER_LEN,
    LENGTH_OFFSET, LOG_OVERHEAD,
};
use super::error::{Result, StorageError};
use super::records::decompress;

const XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
];
const SNAPPY_CHUNK: usize = 32 * 1024;
const COMPRESSION_MASK: i16 = 0x07;

/// What a topic's batches are stored with: `compression.type` other than `producer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetCodec {
    pub codec: Compression,
    /// `compression.gzip.level` (-1 = zlib's default, 6) when `codec` is gzip;
    /// `compression.zstd.level` when zstd; unused otherwise.
    pub level: i32,
}

/// A batch that cannot be recompressed is refused (never an I/O error: that would take the
/// data dir offline).
fn failed(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::InvalidRecord(format!("{what} compression failed: {e}"))
}

/// Compresses `data` (a decompressed records section) with `target`.
pub fn compress(target: TargetCodec, data: &[u8]) -> Result<Vec<u8>> {
    Ok(match target.codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let level = if target.level < 0 {
                flate2::Compression::default()
            } else {
                flate2::Compression::new(target.level.clamp(0, 9) as u32)
            };
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
            enc.write_all(data).map_err(|e| failed("gzip", e))?;
            enc.finish().map_err(|e| failed("gzip", e))?
        }
        Compression::Snappy => {
            let mut out = XERIAL_HEADER.to_vec();
            let mut enc = snap::raw::Encoder::new();
            for chunk in data.chunks(SNAPPY_CHUNK) {
                let block = enc.compress_vec(chunk).map_err(|e| failed("snappy", e))?;
                let len = i32::try_from(block.len()).map_err(|e| failed("snappy", e))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(data).map_err(|e| failed("lz4", e))?;
            enc.finish().map_err(|e| failed("lz4", e))?
        }
        Compression::Zstd => {
            zstd::bulk::compress(data, target.level).map_err(|e| failed("zstd", e))?
        }
    })
}

/// `batch` (one whole, validated v2 batch) with its records section in `target`'s codec.
fn recompress_one(batch: &[u8], target: TargetCodec, out: &mut Vec<u8>) -> Result<()> {
    let h = BatchHeader::parse(batch)
        .ok_or_else(|| StorageError::CorruptMessage("batch header".into()))?;
    let codec = h
        .compression()
        .ok_or(StorageError::UnsupportedCompression(h.compression_id()))?;
    let body = decompress(codec, &batch[HEADER_LEN..])?;
    let body = compress(target, &body)?;
    let start = out.len();
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&body);
    let new = &mut out[start..];
    let length = i32::try_from(new.len() - LOG_OVERHEAD)
        .map_err(|_| StorageError::CorruptMessage("recompressed batch too large".into()))?;
    new[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&length.to_be_bytes());
    let attributes =
        (h.attributes & !COMPRESSION_MASK) | i16::from(target.codec.id()) & COMPRESSION_MASK;
    new[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(new);
    new[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// The batches of `records` (positions and headers from `split_and_validate`) with every
/// non-control batch whose codec is not `target` recompressed; `None` when none needs it (the
/// caller keeps the producer's bytes).
pub fn recompress(
    records: &[u8],
    batches: &[(usize, BatchHeader)],
    target: TargetCodec,
) -> Result<Option<Vec<u8>>> {
    let needs = |h: &BatchHeader| !h.is_control() && h.compression() != Some(target.codec);
    if !batches.iter().any(|(_, h)| needs(h)) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(records.len());
    for (pos, h) in batches {
        let size = h.total_size().unwrap_or(0);
        let batch = records
            .get(*pos..*pos + size)
            .ok_or_else(|| StorageError::CorruptMessage("batch bounds".into()))?;
        if needs(h) {
            recompress_one(batch, target, &mut out)?;
        } else {
            out.extend_from_slice(batch);
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::super::batch::split_and_validate;
    use super::super::records::BatchRecords;
    use super::super::testutil::{batch, BatchSpec, ALL_CODECS};
    use super::*;

    fn contents(bytes: &[u8]) -> Vec<(i64, i64, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        for (pos, h) in split_and_validate(bytes).expect("valid") {
            let b =
                BatchRecords::decode(&bytes[pos..pos + h.total_size().unwrap()]).expect("decode");
            for r in b.iter() {
                let r = r.expect("record");
                out.push((r.offset, r.timestamp, r.value.map(<[u8]>::to_vec)));
            }
        }
        out
    }

    #[test]
    fn every_codec_to_every_codec_keeps_the_records() {
        for from in ALL_CODECS {
            let spec = BatchSpec::new(&[10, 11, 12]).codec(from).producer(7, 0, 3);
            let original = batch(&spec);
            let batches = split_and_validate(&original).expect("valid");
            for to in ALL_CODECS {
                let target = TargetCodec {
                    codec: to,
                    level: 3,
                };
                let out = recompress(&original, &batches, target).expect("recompress");
                let Some(out) = out else {
                    assert_eq!(from, to, "only a matching codec is left alone");
                    continue;
                };
                let again = split_and_validate(&out).expect("valid CRC and length");
                assert_eq!(again.len(), 1);
                let h = &again[0].1;
                assert_eq!(h.compression(), Some(to));
                assert_eq!((h.producer_id, h.base_sequence), (7, 3));
                assert_eq!(h.records_count, 3);
                assert_eq!(contents(&out), contents(&original), "{from:?} -> {to:?}");
            }
        }
    }
}
