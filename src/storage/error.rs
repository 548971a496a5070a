//! Storage errors.
//!
//! Role: the one error type of the segment store, with an exhaustive mapping to the Kafka error
//! code a handler puts in a response body ([`StorageError::error_code`]). The mapping has no
//! catch-all arm on purpose: adding a variant forces a decision about what clients see.
//!
//! Invariant: the `Display` text is for logs only; handlers send the error code, never the text.

use kafka_protocol::ResponseError;

/// Result alias of the storage module.
pub type Result<T> = std::result::Result<T, StorageError>;

/// Everything that can go wrong in the segment store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file-system operation failed (disk error, permission, disk full).
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A file on disk is not what the store wrote (bad checkpoint, unparseable batch header in a
    /// segment that passed recovery). The partition should be treated as offline.
    #[error("corrupt log data: {0}")]
    CorruptLog(String),
    /// A batch from a client failed its CRC, its length field disagrees with the bytes, or it is
    /// truncated.
    #[error("corrupt message: {0}")]
    CorruptMessage(String),
    /// A batch from a client is structurally invalid (magic != 2, bad record count or offset
    /// range, no batches at all, undecodable records).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A batch uses a compression codec id that does not exist.
    #[error("unsupported compression codec id {0}")]
    UnsupportedCompression(u8),
    /// A batch is larger than `max.message.bytes`.
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: i64 },
    /// The record set of one append is larger than `segment.bytes`.
    #[error("record set of {size} bytes exceeds segment.bytes {max}")]
    RecordListTooLarge { size: usize, max: u64 },
    /// A read or a log start offset move asked for an offset outside the log.
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// An idempotent/transactional batch carries an older producer epoch than the partition
    /// knows (a zombie producer is fenced).
    #[error("producer {producer_id}: epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// A batch's base sequence does not follow the producer's last sequence (or is not 0 on a
    /// new epoch).
    #[error("producer {producer_id} epoch {epoch}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        got: i32,
    },
    /// The log directory went offline after a failed write or fdatasync (see
    /// [`LogDirHealth`](super::LogDirHealth)); nothing in it is written or read any more.
    #[error("log directory is offline")]
    LogDirOffline,
    /// A no-wait read ([`PartitionLog::read_region_nowait`](super::PartitionLog::read_region_nowait))
    /// met bytes outside the page cache or a segment file that is not open: the caller repeats
    /// it where blocking is allowed. Handlers never answer it to a client.
    #[error("the read would block")]
    WouldBlock,
    /// A request mixes a retried (duplicate) batch with new ones.
    #[error("producer {producer_id}: duplicate batch at sequence {first_seq} among new batches")]
    DuplicateSequence { producer_id: i64, first_seq: i32 },
}

impl StorageError {
    /// The Kafka error code for a response body. Exhaustive on purpose (no `_` arm).
    pub fn error_code(&self) -> ResponseError {
        match self {
            StorageError::Io(_) => ResponseError::KafkaStorageError,
            StorageError::CorruptLog(_) => ResponseError::KafkaStorageError,
            StorageError::LogDirOffline => ResponseError::KafkaStorageError,
            StorageError::CorruptMessage(_) => ResponseError::CorruptMessage,
            StorageError::InvalidRecord(_) => ResponseError::InvalidRecord,
            StorageError::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType,
            StorageError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            StorageError::RecordListTooLarge { .. } => ResponseError::RecordListTooLarge,
            StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            StorageError::DuplicateSequence { .. } => ResponseError::DuplicateSequenceNumber,
            // Retried blocking by the caller; should one ever escape, the client retries.
            StorageError::WouldBlock => ResponseError::UnknownServerError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_match_kafka() {
        let io = StorageError::Io(std::io::Error::other("disk"));
        assert_eq!(io.error_code(), ResponseError::KafkaStorageError);
        assert_eq!(io.error_code().code(), 56);
        let crc = StorageError::CorruptMessage("crc".into());
        assert_eq!(crc.error_code().code(), 2);
        let oor = StorageError::OffsetOutOfRange {
            offset: 5,
            log_start_offset: 0,
            log_end_offset: 3,
        };
        assert_eq!(oor.error_code().code(), 1);
        let big = StorageError::MessageTooLarge { size: 10, max: 5 };
        assert_eq!(big.error_code().code(), 10);
        let list = StorageError::RecordListTooLarge { size: 10, max: 5 };
        assert_eq!(list.error_code().code(), 18);
        assert_eq!(
            StorageError::InvalidRecord("x".into()).error_code().code(),
            87
        );
        let fenced = StorageError::InvalidProducerEpoch {
            producer_id: 1,
            epoch: 0,
            current: 1,
        };
        assert_eq!(fenced.error_code().code(), 47);
        let gap = StorageError::OutOfOrderSequence {
            producer_id: 1,
            epoch: 0,
            expected: 3,
            got: 5,
        };
        assert_eq!(gap.error_code().code(), 45);
        let dup = StorageError::DuplicateSequence {
            producer_id: 1,
            first_seq: 0,
        };
        assert_eq!(dup.error_code().code(), 46);
    }
}
