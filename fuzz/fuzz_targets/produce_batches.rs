//! A client's record set as the produce path sees it: validation, then every record decoded
//! with any codec (`strand::fuzzing::produce_batches`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strand::fuzzing::produce_batches(data));
