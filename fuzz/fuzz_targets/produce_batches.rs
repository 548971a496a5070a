//! The produce path's view of a client's record set: batch splitting and validation (length,
//! magic, CRC32C, offsets, counts), then, as for compacted topics and timestamp lookups, every
//! record of every valid batch decoded (decompressing any codec).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strand::storage::batch::split_and_validate;
use strand::storage::records::BatchRecords;

fuzz_target!(|data: &[u8]| {
    if let Ok(batches) = split_and_validate(data) {
        for (pos, h) in batches {
            let Some(size) = h.total_size() else { continue };
            let Some(batch) = data.get(pos..pos + size) else {
                continue;
            };
            if let Ok(records) = BatchRecords::decode(batch) {
                for r in records.iter().take(100_000) {
                    if r.is_err() {
                        break;
                    }
                }
            }
        }
    }
    // Decoding without validation (a stored batch read back) must be just as safe.
    let _ = BatchRecords::decode(data).map(|r| r.iter().take(100_000).count());
});
