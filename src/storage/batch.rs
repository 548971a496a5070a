//! RecordBatch v2 headers: parsing, validation and in-place rewriting (pure functions).
//!
//! Role: everything the append and read hot paths need to know about a batch without decoding
//! its records. Records themselves are decoded only in [`super::records`].
//!
//! Format (all big-endian, the 61-byte header of Kafka's `DefaultRecordBatch`):
//!
//! | offset | size | field                                                        |
//! |-------:|-----:|--------------------------------------------------------------|
//! |      0 |    8 | baseOffset (i64)                                             |
//! |      8 |    4 | batchLength (i32): bytes after this field                    |
//! |     12 |    4 | partitionLeaderEpoch (i32)                                   |
//! |     16 |    1 | magic (i8) = 2                                               |
//! |     17 |    4 | crc (u32): CRC32C of bytes 21..end                           |
//! |     21 |    2 | attributes (i16): bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control |
//! |     23 |    4 | lastOffsetDelta (i32)                                        |
//! |     27 |    8 | baseTimestamp (i64)                                          |
//! |     35 |    8 | maxTimestamp (i64)                                           |
//! |     43 |    8 | producerId (i64)                                             |
//! |     51 |    2 | producerEpoch (i16)                                          |
//! |     53 |    4 | baseSequence (i32)                                           |
//! |     57 |    4 | recordsCount (i32)                                           |
//! |     61 |    … | records (possibly compressed)                                |
//!
//! Invariants: base offset and partition leader epoch lie outside the CRC, so rewriting them
//! keeps the CRC valid; rewriting the max timestamp or attributes (LogAppendTime) requires
//! [`set_log_append_time`], which recomputes the CRC. Nothing here panics on any input.

use super::error::{Result, StorageError};

/// Bytes of the batch header before the records.
pub const HEADER_LEN: usize = 61;
/// Bytes before `partitionLeaderEpoch` that `batchLength` does not count (offset + length).
pub const LOG_OVERHEAD: usize = 12;
/// The only magic value stored.
pub const MAGIC_V2: i8 = 2;
/// Timestamp meaning "none".
pub const NO_TIMESTAMP: i64 = -1;

pub const BASE_OFFSET_OFFSET: usize = 0;
pub const LENGTH_OFFSET: usize = 8;
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub const MAGIC_OFFSET: usize = 16;
pub const CRC_OFFSET: usize = 17;
pub const ATTRIBUTES_OFFSET: usize = 21;
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub const BASE_TIMESTAMP_OFFSET: usize = 27;
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
pub const PRODUCER_ID_OFFSET: usize = 43;
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
pub const BASE_SEQUENCE_OFFSET: usize = 53;
pub const RECORDS_COUNT_OFFSET: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec for an attribute id, `None` for ids 5-7 (undefined).
    pub fn from_id(id: u8) -> Option<Compression> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The attribute id of this codec.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// The parsed 61-byte header of a v2 batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `buf`; `None` if fewer than [`HEADER_LEN`] bytes.
    /// Performs no validation.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_OFFSET),
            batch_length: be_i32(buf, LENGTH_OFFSET),
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH_OFFSET),
            magic: buf[MAGIC_OFFSET] as i8,
            crc: be_i32(buf, CRC_OFFSET) as u32,
            attributes: be_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, PRODUCER_ID_OFFSET),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_OFFSET),
            base_sequence: be_i32(buf, BASE_SEQUENCE_OFFSET),
            records_count: be_i32(buf, RECORDS_COUNT_OFFSET),
        })
    }

    /// Whole size of the batch on disk: `batchLength + 12`, or `None` if the length field is
    /// smaller than a header can be.
    pub fn total_size(&self) -> Option<usize> {
        let len = usize::try_from(self.batch_length).ok()?;
        if len < HEADER_LEN - LOG_OVERHEAD {
            return None;
        }
        Some(len + LOG_OVERHEAD)
    }

    /// Offset of the last record (`baseOffset + lastOffsetDelta`, saturating).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The codec id (attributes bits 0-2).
    pub fn compression_id(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// The codec, `None` for an undefined id.
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_id(self.compression_id())
    }

    /// Attribute bit 3: the timestamps are the broker's LogAppendTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Attribute bit 4.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Attribute bit 5: a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// What the partition layer needs about an appended batch (idempotence, transactions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
    pub is_transactional: bool,
    pub is_control: bool,
    /// Max timestamp as stored (the broker's time with LogAppendTime).
    pub max_timestamp: i64,
    /// Bytes of the batch including the 12-byte log overhead.
    pub size_bytes: usize,
}

impl BatchInfo {
    /// Summary of a header of `size_bytes` bytes.
    pub fn from_header(h: &BatchHeader, size_bytes: usize) -> BatchInfo {
        BatchInfo {
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            records_count: h.records_count,
            is_transactional: h.is_transactional(),
            is_control: h.is_control(),
            max_timestamp: h.max_timestamp,
            size_bytes,
        }
    }
}

/// CRC32C of bytes 21..end of a batch (what the `crc` field must hold).
pub fn compute_crc(batch: &[u8]) -> u32 {
    match batch.get(ATTRIBUTES_OFFSET..) {
        Some(covered) => crc32c::crc32c(covered),
        None => 0,
    }
}

/// Checks that `batch` is exactly one well-formed v2 batch: complete header, length field equal
/// to the bytes, magic 2, CRC32C, a known codec, and a consistent offset range and record count
/// (Kafka's `LogValidator` rule: `recordsCount == lastOffsetDelta + 1 > 0`).
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader> {
    let h = BatchHeader::parse(batch).ok_or_else(|| {
        StorageError::CorruptMessage(format!(
            "batch of {} bytes is shorter than the {HEADER_LEN}-byte header",
            batch.len()
        ))
    })?;
    match h.total_size() {
        Some(size) if size == batch.len() => {}
        _ => {
            return Err(StorageError::CorruptMessage(format!(
                "batch length field {} disagrees with {} bytes",
                h.batch_length,
                batch.len()
            )))
        }
    }
    if h.magic != MAGIC_V2 {
        return Err(StorageError::InvalidRecord(format!(
            "magic {} (only 2 is supported)",
            h.magic
        )));
    }
    let crc = compute_crc(batch);
    if crc != h.crc {
        return Err(StorageError::CorruptMessage(format!(
            "crc mismatch: stored {:#010x}, computed {crc:#010x}",
            h.crc
        )));
    }
    if h.compression().is_none() {
        return Err(StorageError::UnsupportedCompression(h.compression_id()));
    }
    if h.last_offset_delta < 0 || h.records_count <= 0 {
        return Err(StorageError::InvalidRecord(format!(
            "invalid offset range or record count (lastOffsetDelta {}, recordsCount {})",
            h.last_offset_delta, h.records_count
        )));
    }
    if i64::from(h.records_count) != i64::from(h.last_offset_delta) + 1 {
        return Err(StorageError::InvalidRecord(format!(
            "inconsistent batch offset range and record count (lastOffsetDelta {}, recordsCount {})",
            h.last_offset_delta, h.records_count
        )));
    }
    Ok(h)
}

/// Splits a record set (batches back to back) and validates each batch with
/// [`validate_batch`]. Returns each batch's start position and header. An empty set, a trailing
/// fragment or a length field pointing past the end is an error.
pub fn split_and_validate(records: &[u8]) -> Result<Vec<(usize, BatchHeader)>> {
    if records.is_empty() {
        return Err(StorageError::InvalidRecord("empty record set".into()));
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < LOG_OVERHEAD {
            return Err(StorageError::CorruptMessage(format!(
                "truncated batch: {} trailing bytes",
                rest.len()
            )));
        }
        let len = be_i32(rest, LENGTH_OFFSET);
        let size = usize::try_from(len)
            .ok()
            .filter(|l| *l >= HEADER_LEN - LOG_OVERHEAD)
            .map(|l| l + LOG_OVERHEAD)
            .ok_or_else(|| StorageError::CorruptMessage(format!("invalid batch length {len}")))?;
        if size > rest.len() {
            return Err(StorageError::CorruptMessage(format!(
                "truncated batch: length field says {size} bytes, {} present",
                rest.len()
            )));
        }
        let h = validate_batch(&rest[..size])?;
        out.push((pos, h));
        pos += size;
    }
    Ok(out)
}

/// Rewrites the base offset (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], offset: i64) {
    if let Some(b) = batch.get_mut(BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8) {
        b.copy_from_slice(&offset.to_be_bytes());
    }
}

/// Rewrites the partition leader epoch (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    let at = PARTITION_LEADER_EPOCH_OFFSET;
    if let Some(b) = batch.get_mut(at..at + 4) {
        b.copy_from_slice(&epoch.to_be_bytes());
    }
}

/// LogAppendTime: sets the max timestamp to `now_ms`, sets the timestamp-type attribute bit and
/// recomputes the CRC (as Kafka's `DefaultRecordBatch.setMaxTimestamp`).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    if batch.len() < HEADER_LEN {
        return;
    }
    let (header, body) = batch.split_at_mut(HEADER_LEN);
    set_log_append_time_split(header, body, now_ms);
}

/// [`set_log_append_time`] for a batch whose header (`HEADER_LEN` bytes, patched in place) and
/// records section (`body`, read only) are in different buffers: the append path patches a
/// copy of the header and writes the producer's body bytes as they are.
pub fn set_log_append_time_split(header: &mut [u8], body: &[u8], now_ms: i64) {
    if header.len() < HEADER_LEN {
        return;
    }
    let attrs = be_i16(header, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    header[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    header[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[ATTRIBUTES_OFFSET..HEADER_LEN]), body);
    header[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{batch, BatchSpec};
    use super::*;

    #[test]
    fn parse_and_validate_round_trip() {
        let b = batch(&BatchSpec::new(&[100, 200, 150]).producer(7, 2, 11));
        let h = validate_batch(&b).expect("valid");
        assert_eq!(h.magic, 2);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 100);
        assert_eq!(h.max_timestamp, 200);
        assert_eq!(h.producer_id, 7);
        assert_eq!(h.producer_epoch, 2);
        assert_eq!(h.base_sequence, 11);
        assert_eq!(h.total_size(), Some(b.len()));
    }

    #[test]
    fn rewriting_offset_and_epoch_keeps_crc() {
        let mut b = batch(&BatchSpec::new(&[1, 2]));
        set_base_offset(&mut b, 1234);
        set_partition_leader_epoch(&mut b, 9);
        let h = validate_batch(&b).expect("still valid");
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.partition_leader_epoch, 9);
        assert_eq!(h.last_offset(), 1235);
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut b = batch(&BatchSpec::new(&[1, 2]));
        set_log_append_time(&mut b, 5555);
        let h = validate_batch(&b).expect("valid after rewrite");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5555);
    }

    #[test]
    fn rejects_bad_batches() {
        let good = batch(&BatchSpec::new(&[1, 2, 3]));
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xff;
        assert!(matches!(
            validate_batch(&bad_crc),
            Err(StorageError::CorruptMessage(_))
        ));
        let mut bad_magic = good.clone();
        bad_magic[MAGIC_OFFSET] = 1;
        assert!(matches!(
            validate_batch(&bad_magic),
            Err(StorageError::InvalidRecord(_))
        ));
        assert!(matches!(
            validate_batch(&good[..good.len() - 1]),
            Err(StorageError::CorruptMessage(_))
        ));
        assert!(matches!(
            split_and_validate(&[]),
            Err(StorageError::InvalidRecord(_))
        ));
        let mut two = good.clone();
        two.extend_from_slice(&good[..30]);
        assert!(matches!(
            split_and_validate(&two),
            Err(StorageError::CorruptMessage(_))
        ));
        let mut neg_len = good.clone();
        neg_len[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            split_and_validate(&neg_len),
            Err(StorageError::CorruptMessage(_))
        ));
        // Garbage of every length never panics.
        for n in 0..80 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert!(split_and_validate(&junk).is_err());
        }
    }

    #[test]
    fn inconsistent_count_is_invalid_record() {
        let mut b = batch(&BatchSpec::new(&[1, 2, 3]));
        b[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4].copy_from_slice(&2i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batch(&b),
            Err(StorageError::InvalidRecord(_))
        ));
    }

    #[test]
    fn splits_several_batches() {
        let mut set = batch(&BatchSpec::new(&[1, 2]));
        let second = batch(&BatchSpec::new(&[3]));
        let first_len = set.len();
        set.extend_from_slice(&second);
        let parts = split_and_validate(&set).expect("valid");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].0, first_len);
        assert_eq!(parts[1].1.records_count, 1);
    }
}
