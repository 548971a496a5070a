//! Bytes from a socket: split into frames as the connection does (`next_frame`, with the
//! broker's frame size limit), each frame's request header parsed and checked against the
//! registry (`parse_request`), and its body decoded at its version by the registered API's
//! decoder. Nothing may panic, hang or allocate beyond the frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strand::server::connection::{next_frame, parse_request, Parsed};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // Also the bytes as one frame without a length prefix (most inputs are not stream-shaped).
    check(bytes::Bytes::copy_from_slice(data));
    while let Ok(Some(frame)) = next_frame(&mut buf, 1 << 20) {
        check(frame);
    }
});

fn check(frame: bytes::Bytes) {
    if let Ok(Parsed::Request {
        api, version, body, ..
    }) = parse_request(frame)
    {
        let _ = (api.decode)(body, version);
    }
}
