//! Decompression and record iteration of a v2 batch (off the hot path).
//!
//! Role: only where semantics need individual records — timestamp lookups (ListOffsets),
//! recompression for a topic's `compression.type` ([`super::recompress`]), later compaction.
//! Append (unless it recompresses) and fetch never call this.
//!
//! Record format inside the (decompressed) records section, Kafka's `DefaultRecord`:
//! `length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
//! keyLength varint | key | valueLength varint | value | headerCount varint |
//! (headerKeyLength varint | headerKey | headerValueLength varint | headerValue)*`.
//! Varints are zigzag-encoded (protobuf style); a length of -1 means null.
//!
//! Codecs: gzip (RFC 1952), snappy in the Java/xerial framing (16-byte header
//! `82 'SNAPPY' 00`, version 1, compatible version 1, then chunks of `i32 BE length | raw snappy
//! block`) and raw snappy, lz4 frame format, zstd.
//!
//! Invariants: never panics on garbage; every malformation is an
//! [`StorageError::InvalidRecord`] (or `CorruptMessage` for a bad batch header). Decompressed
//! output is capped at [`MAX_DECOMPRESSED_BYTES`] so a zip bomb cannot exhaust memory.

use std::borrow::Cow;
use std::io::Read;

use super::batch::{BatchHeader, Compression, HEADER_LEN};
use super::error::{Result, StorageError};

/// Upper bound of a decompressed records section.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 * 1024 * 1024;

const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;

fn invalid(msg: impl Into<String>) -> StorageError {
    StorageError::InvalidRecord(msg.into())
}

fn read_capped(mut r: impl Read, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let limit = MAX_DECOMPRESSED_BYTES as u64 + 1;
    (&mut r)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| invalid(format!("{what} decompression failed: {e}")))?;
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(invalid(format!(
            "{what} data decompresses beyond the limit"
        )));
    }
    Ok(out)
}

fn snappy_raw(data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let len = snap::raw::decompress_len(data).map_err(|e| invalid(format!("snappy: {e}")))?;
    if out.len().saturating_add(len) > MAX_DECOMPRESSED_BYTES {
        return Err(invalid("snappy data decompresses beyond the limit"));
    }
    let start = out.len();
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(data, &mut out[start..])
        .map_err(|e| invalid(format!("snappy: {e}")))?;
    out.truncate(start + n);
    Ok(())
}

fn snappy(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if data.len() >= XERIAL_HEADER_LEN && data[..8] == XERIAL_MAGIC {
        let mut pos = XERIAL_HEADER_LEN;
        while pos < data.len() {
            let len_bytes = data
                .get(pos..pos + 4)
                .ok_or_else(|| invalid("snappy: truncated chunk length"))?;
            let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
            let len = usize::try_from(len).map_err(|_| invalid("snappy: negative chunk length"))?;
            pos += 4;
            let chunk = data
                .get(pos..pos.saturating_add(len))
                .ok_or_else(|| invalid("snappy: truncated chunk"))?;
            snappy_raw(chunk, &mut out)?;
            pos += len;
        }
    } else {
        snappy_raw(data, &mut out)?;
    }
    Ok(out)
}

/// Decompresses a records section with `codec`; borrows when uncompressed.
pub fn decompress(codec: Compression, data: &[u8]) -> Result<Cow<'_, [u8]>> {
    Ok(match codec {
        Compression::None => Cow::Borrowed(data),
        Compression::Gzip => Cow::Owned(read_capped(
            flate2::read::MultiGzDecoder::new(data),
            "gzip",
        )?),
        Compression::Snappy => Cow::Owned(snappy(data)?),
        Compression::Lz4 => Cow::Owned(read_capped(
            lz4_flex::frame::FrameDecoder::new(data),
            "lz4",
        )?),
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::new(data)
                .map_err(|e| invalid(format!("zstd: {e}")))?;
            Cow::Owned(read_capped(dec, "zstd")?)
        }
    })
}

/// One record header, as Kafka's `Header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// One decoded record with its absolute offset and effective timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: i64,
    /// `baseTimestamp + timestampDelta`, or the batch max timestamp under LogAppendTime.
    pub timestamp: i64,
    pub attributes: i8,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<RecordHeader<'a>>,
}

/// A batch with its records section decompressed, ready to iterate.
#[derive(Debug)]
pub struct BatchRecords<'a> {
    pub header: BatchHeader,
    body: Cow<'a, [u8]>,
}

impl<'a> BatchRecords<'a> {
    /// Parses the header of a whole batch (`batch` = exactly its bytes) and decompresses its
    /// records. Does not check the CRC (see [`super::batch::validate_batch`]).
    pub fn decode(batch: &'a [u8]) -> Result<BatchRecords<'a>> {
        let header = BatchHeader::parse(batch)
            .ok_or_else(|| StorageError::CorruptMessage("batch shorter than its header".into()))?;
        if header.total_size() != Some(batch.len()) {
            return Err(StorageError::CorruptMessage(
                "batch length field disagrees with the bytes".into(),
            ));
        }
        let codec = header
            .compression()
            .ok_or(StorageError::UnsupportedCompression(
                header.compression_id(),
            ))?;
        let body = decompress(codec, &batch[HEADER_LEN..])?;
        Ok(BatchRecords { header, body })
    }

    /// Iterates the records; yields an error (then stops) on malformed data, including a count
    /// that disagrees with the bytes.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            header: self.header,
            buf: &self.body,
            pos: 0,
            remaining: i64::from(self.header.records_count.max(0)),
            failed: false,
        }
    }

    /// All records, or the first error.
    pub fn records(&self) -> Result<Vec<Record<'_>>> {
        self.iter().collect()
    }
}

/// Iterator over the records of a [`BatchRecords`].
pub struct RecordIter<'a> {
    header: BatchHeader,
    buf: &'a [u8],
    pos: usize,
    remaining: i64,
    failed: bool,
}

/// Reads a zigzag varint (at most 5 bytes) at `*pos`.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32> {
    let raw = read_unsigned(buf, pos, 5)?;
    let v = u32::try_from(raw).map_err(|_| invalid("varint overflow"))?;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

/// Reads a zigzag varlong (at most 10 bytes) at `*pos`.
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64> {
    let v = read_unsigned(buf, pos, 10)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

fn read_unsigned(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64> {
    let mut v: u64 = 0;
    for i in 0..max_bytes {
        let b = *buf.get(*pos).ok_or_else(|| invalid("truncated varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(invalid("varint too long"))
}

fn read_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>> {
    let len = read_varint(buf, pos)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| invalid("negative length"))?;
    let end = pos
        .checked_add(len)
        .ok_or_else(|| invalid("length overflow"))?;
    let s = buf
        .get(*pos..end)
        .ok_or_else(|| invalid("field runs past the record"))?;
    *pos = end;
    Ok(Some(s))
}

impl<'a> RecordIter<'a> {
    fn next_record(&mut self) -> Result<Record<'a>> {
        let len = read_varint(self.buf, &mut self.pos)?;
        let len = usize::try_from(len).map_err(|_| invalid("negative record length"))?;
        let end = self
            .pos
            .checked_add(len)
            .ok_or_else(|| invalid("record length overflow"))?;
        let rec = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| invalid("record runs past the batch"))?;
        self.pos = end;
        let mut p = 0usize;
        let attributes = *rec.first().ok_or_else(|| invalid("empty record"))? as i8;
        p += 1;
        let timestamp_delta = read_varlong(rec, &mut p)?;
        let offset_delta = read_varint(rec, &mut p)?;
        let key = read_bytes(rec, &mut p)?;
        let value = read_bytes(rec, &mut p)?;
        let count = read_varint(rec, &mut p)?;
        let count = usize::try_from(count).map_err(|_| invalid("negative header count"))?;
        let mut headers = Vec::new();
        for _ in 0..count {
            let key = read_bytes(rec, &mut p)?.ok_or_else(|| invalid("null header key"))?;
            let value = read_bytes(rec, &mut p)?;
            headers.push(RecordHeader { key, value });
        }
        if p != rec.len() {
            return Err(invalid("record length disagrees with its fields"));
        }
        let timestamp = if self.header.is_log_append_time() {
            self.header.max_timestamp
        } else {
            self.header.base_timestamp.saturating_add(timestamp_delta)
        };
        Ok(Record {
            offset: self
                .header
                .base_offset
                .saturating_add(i64::from(offset_delta)),
            timestamp,
            attributes,
            key,
            value,
            headers,
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining == 0 {
            if self.pos != self.buf.len() {
                self.failed = true;
                return Some(Err(invalid("bytes left after the declared record count")));
            }
            return None;
        }
        if self.pos >= self.buf.len() {
            self.failed = true;
            return Some(Err(invalid("fewer records than the declared count")));
        }
        self.remaining -= 1;
        let r = self.next_record();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{batch, BatchSpec, ALL_CODECS};
    use super::*;

    #[test]
    fn iterates_records_for_every_codec() {
        for codec in ALL_CODECS {
            let mut spec = BatchSpec::new(&[1000, 900, 1500, 1200]).codec(codec);
            spec.base_offset = 40;
            let b = batch(&spec);
            let decoded = BatchRecords::decode(&b).expect("decode");
            let recs = decoded.records().expect("records");
            let got: Vec<(i64, i64)> = recs.iter().map(|r| (r.offset, r.timestamp)).collect();
            assert_eq!(
                got,
                vec![(40, 1000), (41, 900), (42, 1500), (43, 1200)],
                "{codec:?}"
            );
            assert_eq!(recs[2].key, Some(&b"key-2"[..]));
            assert_eq!(recs[2].value, Some(&b"value-2"[..]));
            assert_eq!(recs[2].headers.len(), 1);
            assert_eq!(recs[2].headers[0].key, b"h");
        }
    }

    #[test]
    fn raw_snappy_is_accepted() {
        let plain = batch(&BatchSpec::new(&[5, 6]));
        let body = &plain[HEADER_LEN..];
        let raw = snap::raw::Encoder::new()
            .compress_vec(body)
            .expect("compress");
        assert_eq!(
            decompress(Compression::Snappy, &raw).expect("raw").as_ref(),
            body
        );
    }

    #[test]
    fn varints_round_trip_zigzag() {
        let mut p = 0;
        assert_eq!(read_varint(&[0x01], &mut p).expect("ok"), -1);
        p = 0;
        assert_eq!(read_varint(&[0x02], &mut p).expect("ok"), 1);
        p = 0;
        assert_eq!(read_varlong(&[0xfe, 0x01], &mut p).expect("ok"), 127);
        p = 0;
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &mut p).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        for codec in ALL_CODECS {
            let b = batch(&BatchSpec::new(&[1, 2, 3]).codec(codec));
            for cut in HEADER_LEN..b.len() {
                let mut t = b[..cut].to_vec();
                // Make the length field agree so decoding reaches the records.
                let len = (t.len() - 12) as i32;
                t[8..12].copy_from_slice(&len.to_be_bytes());
                if let Ok(d) = BatchRecords::decode(&t) {
                    // A cut inside a codec's trailer may still decode; then it must be intact.
                    if let Ok(recs) = d.records() {
                        let offsets: Vec<i64> = recs.iter().map(|r| r.offset).collect();
                        assert_eq!(offsets, vec![0, 1, 2], "{codec:?} cut at {cut}");
                    }
                }
            }
            let mut flipped = b.clone();
            for i in HEADER_LEN..flipped.len() {
                flipped[i] ^= 0x5a;
                if let Ok(d) = BatchRecords::decode(&flipped) {
                    let _ = d.records();
                }
                flipped[i] ^= 0x5a;
            }
        }
    }

    #[test]
    fn count_mismatch_is_an_error() {
        let mut b = batch(&BatchSpec::new(&[1, 2, 3]));
        b[57..61].copy_from_slice(&2i32.to_be_bytes());
        let d = BatchRecords::decode(&b).expect("header ok");
        assert!(d.records().is_err());
    }
}
