//! Bytes from a socket, framed, parsed and decoded as a connection does
//! (`strand::fuzzing::request`). Nothing may panic, hang or allocate beyond the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strand::fuzzing::request(data));
