//! Native segment store: one [`PartitionLog`] per partition directory, Kafka's on-disk layout.
//!
//! Files of `<data_dir>/<topic>-<partition>/` (full description in docs/on-disk-format.md):
//! - `<base offset, 20 digits>.log`: RecordBatch v2 batches exactly as the producer sent them,
//!   with only base offset and partition leader epoch rewritten (both outside the CRC), except
//!   under LogAppendTime where max timestamp and the timestamp-type bit are set and the CRC
//!   recomputed ([`batch`]);
//! - `.index` (8-byte entries) and `.timeindex` (12-byte entries), sparse ([`index`]);
//! - `.txnindex` (34-byte entries `version i16 = 0 | producerId i64 | firstOffset i64 |
//!   lastOffset i64 | lastStableOffset i64`), one per ABORT marker in the segment, the file
//!   existing only once there is one ([`txn_index`]);
//! - `leader-epoch-checkpoint` and `log-start-offset`, replaced atomically;
//! - `<offset, 20 digits>.snapshot`: idempotent-producer state as of that offset, written
//!   atomically at every roll and at close, checksummed ([`producer_state`]).
//!
//! Hot path: append validates batch headers and CRC32C, patches copies of the batch headers
//! (base offset, leader epoch) and writes them with the producer's bytes in one `pwritev` (no
//! copy of the records); read returns whole stored batches via `pread`. Records are decoded
//! ([`records`]) only for timestamp lookups and recompression ([`recompress`]). Every call here
//! is blocking file I/O: the server runs them on blocking threads, never on async workers.
//!
//! Durability invariant: when a segment is rolled, the old segment's `.log` and indexes are
//! fdatasync'ed before the new segment takes writes, so only the active segment can ever have a
//! torn tail; the partition directory is fsync'ed after a file is created or deleted. acks=all
//! waits on [`PartitionLog::flush_until`] (group commit: one fdatasync, run in
//! `spawn_blocking` without the append lock, covers every batch appended meanwhile). After an
//! unclean stop, `open(.., clean = false)` re-validates the active segment and truncates its
//! torn tail; other segments only get missing or invalid indexes rebuilt.
//!
//! Idempotence: `append` fences old producer epochs, rejects sequence gaps and answers retried
//! batches with their original offsets without writing them, atomically with the write
//! (Kafka's `ProducerStateManager`; state per producer id in [`producer_state`]).
//!
//! Transactions (KIP-98): `append_control` writes COMMIT/ABORT markers ([`control`]) through
//! `append`; producer state tracks each open transaction's first offset
//! (`first_unstable_offset`, bounding the last stable offset); ABORT markers are indexed in the
//! segment's `.txnindex`, queried by `aborted_transactions` for read_committed fetches and
//! rebuilt at open by the producer-state replay (entries at or above its start).
//!
//! Nothing here panics on corrupt files or client bytes: every problem is a [`StorageError`].

pub mod batch;
mod config;
pub mod control;
mod epoch;
mod error;
pub mod fault;
mod files;
mod index;
mod log;
mod log_dir;
#[cfg(test)]
mod log_tests;
mod open_files;
#[cfg(test)]
mod producer_log_tests;
mod producer_state;
pub mod recompress;
pub mod records;
#[cfg(test)]
mod replica_tests;
mod segment;
#[cfg(test)]
pub(crate) mod testutil;
mod txn_index;
#[cfg(test)]
mod txn_log_tests;

pub use batch::BatchInfo;
pub use config::LogConfig;
pub use epoch::EpochEntry;
pub use error::{Result, StorageError};
pub use log::{AppendInfo, PartitionLog, ReadResult, Region, RegionRead, TimestampOffset};
pub use log_dir::LogDirHealth;
pub use open_files::OpenFiles;
pub use producer_state::ActiveProducer;
