//! Transaction markers: the control batches that end a transaction (KIP-98).
//!
//! Role: build the COMMIT/ABORT marker the transaction coordinator writes to every partition of
//! a transaction ([`end_txn_marker`]), and read the marker type back from a stored control
//! batch ([`control_type`]) where the aborted-transaction index needs it (on append of a marker
//! and when the index is rebuilt from the log). Nothing else decodes control batches.
//!
//! A marker is a RecordBatch v2 (magic 2) with attributes = transactional (bit 4) + control
//! (bit 5), no compression, baseSequence -1, producer id and epoch of the transaction, and one
//! record (Kafka's `EndTransactionMarker`), all integers big-endian:
//! - key (4 bytes, Kafka's `ControlRecordType` key): `version i16 = 0 | type i16`
//!   (0 = ABORT, 1 = COMMIT);
//! - value (6 bytes): `version i16 = 0 | coordinatorEpoch i32`;
//! - record attributes 0, timestamp delta 0, offset delta 0, no headers.
//!
//! Both timestamps of the batch are the coordinator's time; the base offset and partition
//! leader epoch are placeholders that the append rewrites. The CRC32C is real.
//!
//! Invariant: never panics; a malformed control record is a [`StorageError::InvalidRecord`].

use super::batch::{compute_crc, CRC_OFFSET, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use super::error::{Result, StorageError};
use super::records::BatchRecords;

/// Attributes of a marker batch: transactional (bit 4) + control (bit 5), no codec.
const MARKER_ATTRIBUTES: i16 = 0x10 | 0x20;
/// `ControlRecordType` key version written and understood.
const CONTROL_KEY_VERSION: i16 = 0;
/// `EndTransactionMarker` value version written.
const END_TXN_MARKER_VERSION: i16 = 0;

/// What a control record says (its key's type field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    /// Type 0: the transaction's records are discarded by read_committed consumers.
    Abort,
    /// Type 1: the transaction's records become visible.
    Commit,
    /// Any other type (Kafka's LEADER_CHANGE, snapshot markers, ...): not a transaction end.
    Other(i16),
}

impl ControlType {
    fn from_code(code: i16) -> ControlType {
        match code {
            0 => ControlType::Abort,
            1 => ControlType::Commit,
            other => ControlType::Other(other),
        }
    }
}

fn varint(out: &mut Vec<u8>, v: i32) {
    let mut z = ((v << 1) ^ (v >> 31)) as u32;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// Builds a COMMIT (`commit = true`) or ABORT marker batch of producer (`producer_id`,
/// `producer_epoch`) stamped `timestamp_ms` (format in the module docs).
pub fn end_txn_marker(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Vec<u8> {
    let kind: i16 = if commit { 1 } else { 0 };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&END_TXN_MARKER_VERSION.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());

    let mut record = vec![0u8]; // attributes
    varint(&mut record, 0); // timestamp delta (a varlong; 0 encodes the same)
    varint(&mut record, 0); // offset delta
    varint(&mut record, key.len() as i32);
    record.extend_from_slice(&key);
    varint(&mut record, value.len() as i32);
    record.extend_from_slice(&value);
    varint(&mut record, 0); // header count
    let mut body = Vec::with_capacity(record.len() + 1);
    varint(&mut body, record.len() as i32);
    body.extend_from_slice(&record);

    let mut b = Vec::with_capacity(HEADER_LEN + body.len());
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset (assigned on append)
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch (set on append)
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&[0; 4]); // crc, below
    b.extend_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp_ms.to_be_bytes()); // base timestamp
    b.extend_from_slice(&timestamp_ms.to_be_bytes()); // max timestamp
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // records count
    b.extend_from_slice(&body);
    let crc = compute_crc(&b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The type of the control record of a control batch (`batch` = exactly its bytes), read from
/// the first record's key as Kafka's `ControlRecordType.parse`: a key shorter than 4 bytes, a
/// negative key version, or undecodable records are `InvalidRecord`. Newer key versions are read
/// like version 0 (Kafka does the same).
pub fn control_type(batch: &[u8]) -> Result<ControlType> {
    let invalid = |what: &str| StorageError::InvalidRecord(format!("control batch: {what}"));
    let decoded = BatchRecords::decode(batch)?;
    let mut records = decoded.iter();
    let record = records
        .next()
        .ok_or_else(|| invalid("no control record"))??;
    let key = record
        .key
        .ok_or_else(|| invalid("control record without key"))?;
    let (Some(version), Some(kind)) = (key.get(0..2), key.get(2..4)) else {
        return Err(invalid("control record key shorter than 4 bytes"));
    };
    let version = i16::from_be_bytes([version[0], version[1]]);
    if version < 0 {
        return Err(invalid(&format!("control record key version {version}")));
    }
    Ok(ControlType::from_code(i16::from_be_bytes([
        kind[0], kind[1],
    ])))
}

#[cfg(test)]
mod tests {
    use super::super::batch::validate_batch;
    use super::super::testutil::{batch, BatchSpec};
    use super::*;

    #[test]
    fn markers_are_valid_control_batches() {
        for (commit, kind) in [(true, ControlType::Commit), (false, ControlType::Abort)] {
            let m = end_txn_marker(42, 7, commit, 3, 1234);
            let h = validate_batch(&m).expect("valid batch with a real crc");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(h.compression_id(), 0);
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 7, -1)
            );
            assert_eq!((h.records_count, h.last_offset_delta), (1, 0));
            assert_eq!((h.base_timestamp, h.max_timestamp), (1234, 1234));
            assert_eq!(control_type(&m).expect("type"), kind);
            let decoded = BatchRecords::decode(&m).expect("decode");
            let recs = decoded.records().expect("records");
            assert_eq!(recs.len(), 1);
            let code: i16 = if commit { 1 } else { 0 };
            let mut key = vec![0, 0];
            key.extend_from_slice(&code.to_be_bytes());
            assert_eq!(recs[0].key, Some(&key[..]));
            assert_eq!(recs[0].value, Some(&[0, 0, 0, 0, 0, 3][..]));
            assert!(recs[0].headers.is_empty());
        }
    }

    #[test]
    fn malformed_control_records_are_invalid() {
        // A control batch whose record key is not a control key ("key-0": version 0x6b65,
        // type 0x792d) parses as an unknown type; a short or negative-version key is invalid.
        let odd = batch(&BatchSpec::new(&[1]).producer(1, 0, -1).control());
        assert_eq!(
            control_type(&odd).expect("parsed"),
            ControlType::Other(0x792d)
        );
        let mut m = end_txn_marker(1, 0, false, 0, 0);
        // Key version byte (first key byte) set negative: record layout puts the key at
        // HEADER_LEN + 1 (length) + 1 (attributes) + 1 (ts delta) + 1 (offset delta) + 1 (key len).
        m[HEADER_LEN + 5] = 0xff;
        assert!(matches!(
            control_type(&m),
            Err(StorageError::InvalidRecord(_))
        ));
        for cut in 0..m.len() {
            let _ = control_type(&m[..cut]);
        }
    }
}
