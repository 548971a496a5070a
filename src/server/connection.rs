//! One client connection.
//!
//! Wire format: every request and response is a frame, an `i32` big-endian length followed by
//! that many bytes. The length is checked against `socket.request.max.bytes` before anything is
//! allocated; a frame too short to hold a request header, an unknown API key, an unsupported
//! version (except ApiVersions, see KIP-511) or a body that does not decode closes the connection,
//! as Kafka does.
//!
//! Memory: a frame's length is read first; its body is read only once the whole length is
//! reserved from the broker-wide `queued.max.request.bytes` budget (a semaphore of bytes), and
//! the reservation is given back when the request's handler finishes. The read buffer grows
//! with the bytes that arrive (at most 1 MiB ahead), never to the announced length up front, so
//! a client that announces a large frame and trickles it holds budget, not memory, and one
//! waiting for budget is not read from at all.
//!
//! Pipelining: the reader decodes frames as they arrive and spawns one task per request, up to
//! `queued.max.requests` in flight; the writer awaits those tasks in arrival order, so responses
//! leave strictly in request order even when later requests finish first. Requests that must also
//! *take effect* in order (Produce) use the connection's [`Sequencer`]. A request that gets no
//! response (Produce with acks=0) still holds its place in the queue.
//!
//! Fetch data: a response in parts ([`Frame::Parts`]) is written buffer by buffer, its record
//! regions with `sendfile` from the segment file (after flushing what is buffered before them),
//! so record bytes never pass through user space and responses stay in order.
//!
//! Shutdown: on the broker's shutdown signal the reader stops reading; the writer sends every
//! response already owed, then the socket is closed.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::sequencer::Sequencer;
use crate::broker::Broker;
use crate::handlers::{self, Frame, FramePart, HandlerError, RequestContext};

/// Why the reader stopped.
#[derive(Debug)]
enum Close {
    Eof,
    Io(std::io::Error),
    Protocol(String),
    Shutdown,
    WriterGone,
}

/// A response owed to the client, in request order.
type Pending = JoinHandle<Result<Option<Frame>, HandlerError>>;

pub async fn serve(
    broker: Arc<Broker>,
    socket: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    budget: Option<Arc<Semaphore>>,
) {
    info!(%peer, "connection opened");
    let _counted = crate::metrics::connection_opened();
    let (mut rd, wr) = socket.into_split();
    let (tx, rx) = mpsc::channel::<Pending>(broker.config.queued_max_requests);
    let mut writer = tokio::spawn(write_responses(wr, rx));
    let seq = Sequencer::new();
    let max = broker.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut writer_done = false;
    // The budget reserved for the frame at the front of `buf` (`Some` once reserved).
    let mut reserved: Option<Option<OwnedSemaphorePermit>> = None;

    let reason = loop {
        if reserved.is_none() {
            match frame_len(&buf, max) {
                Ok(Some(len)) => {
                    let permit = match &budget {
                        None => None,
                        Some(pool) => {
                            let n = u32::try_from(len.max(1)).unwrap_or(u32::MAX);
                            tokio::select! {
                                p = pool.clone().acquire_many_owned(n) => match p {
                                    Ok(p) => Some(p),
                                    Err(_) => break Close::Shutdown,
                                },
                                _ = shutdown.changed() => break Close::Shutdown,
                            }
                        }
                    };
                    reserved = Some(permit);
                }
                Ok(None) => {}
                Err(msg) => break Close::Protocol(msg),
            }
        }
        // Split off a whole frame if one is buffered (its budget is reserved by now).
        let frame = match reserved.is_some().then(|| next_frame(&mut buf, max)) {
            Some(Ok(Some(frame))) => frame,
            Some(Err(msg)) => break Close::Protocol(msg),
            Some(Ok(None)) | None => {
                if buf.capacity() - buf.len() < 4 {
                    buf.reserve(READ_CHUNK);
                }
                let read = tokio::select! {
                    r = rd.read_buf(&mut buf) => r,
                    _ = shutdown.changed() => break Close::Shutdown,
                    _ = &mut writer => {
                        writer_done = true;
                        break Close::WriterGone;
                    }
                };
                match read {
                    Ok(0) if buf.is_empty() => break Close::Eof,
                    Ok(0) => break Close::Protocol("connection closed mid-frame".into()),
                    Ok(_) => continue,
                    Err(e) => break Close::Io(e),
                }
            }
        };
        let permit = reserved.take().flatten();
        let pending = match start_request(&broker, &seq, peer, frame, permit) {
            Ok(p) => p,
            Err(msg) => break Close::Protocol(msg),
        };
        if tx.send(pending).await.is_err() {
            break Close::WriterGone;
        }
    };
    drop(tx);
    match &reason {
        Close::Protocol(msg) => warn!(%peer, "closing connection: {msg}"),
        Close::Io(e) => debug!(%peer, "read error: {e}"),
        _ => {}
    }
    // Send what is owed (for a protocol error, the responses before the bad frame).
    if !writer_done {
        let _ = writer.await;
    }
    info!(%peer, "connection closed");
}

/// How far ahead of the bytes that arrived the read buffer grows (and its initial size).
const READ_CHUNK: usize = 64 * 1024;
const MAX_READ_AHEAD: usize = 1 << 20;

/// The length of the frame at the front of `buf`, once its 4 length bytes are there.
fn frame_len(buf: &BytesMut, max: usize) -> Result<Option<usize>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > max {
        return Err(format!(
            "frame of {len} bytes exceeds socket.request.max.bytes ({max})"
        ));
    }
    Ok(Some(len as usize))
}

/// Takes one whole frame off the front of `buf`, if there is one. When the frame is not whole
/// yet, makes room for at most [`MAX_READ_AHEAD`] more of it.
pub fn next_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, String> {
    let Some(len) = frame_len(buf, max)? else {
        buf.reserve(READ_CHUNK);
        return Ok(None);
    };
    if buf.len() < 4 + len {
        let missing = 4 + len - buf.len();
        buf.reserve(missing.clamp(READ_CHUNK.min(missing), MAX_READ_AHEAD));
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// A request frame after its header: what [`parse_request`] makes of one.
pub enum Parsed {
    /// ApiVersions at a version this broker does not serve: answered with this v0 body (KIP-511).
    UnsupportedApiVersions { correlation_id: i32 },
    /// A request for a registered API at a served version; `body` follows the header.
    Request {
        api: &'static handlers::Api,
        version: i16,
        correlation_id: i32,
        header: RequestHeader,
        body: Bytes,
    },
}

/// Parses a frame's request header: API key, version check against the registry, header
/// decode. `Err` (a reason) means the connection is closed. Shared by the server and the fuzzer.
pub fn parse_request(mut frame: Bytes) -> Result<Parsed, String> {
    // api key (2) + api version (2) + correlation id (4) precede everything else.
    if frame.len() < 8 {
        return Err(format!(
            "frame of {} bytes is shorter than a request header",
            frame.len()
        ));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(key).map_err(|_| format!("unknown api key {key}"))?;
    let Some(api) = handlers::lookup(api_key) else {
        return Err(format!("unsupported api {api_key:?}"));
    };
    if version < api.min || version > api.max {
        if api_key == ApiKey::ApiVersions {
            return Ok(Parsed::UnsupportedApiVersions { correlation_id });
        }
        return Err(format!("unsupported version {version} of {api_key:?}"));
    }
    let header_version = api_key.request_header_version(version);
    let header = decode_guarded(|| RequestHeader::decode(&mut frame, header_version))
        .ok_or_else(|| format!("undecodable {api_key:?} v{version} request header"))?;
    Ok(Parsed::Request {
        api,
        version,
        correlation_id,
        header,
        body: frame,
    })
}

/// Decodes a request header, finds its handler and spawns it.
fn start_request(
    broker: &Arc<Broker>,
    seq: &Arc<Sequencer>,
    peer: SocketAddr,
    frame: Bytes,
    budget: Option<OwnedSemaphorePermit>,
) -> Result<Pending, String> {
    let (api, version, correlation_id, header, frame) = match parse_request(frame)? {
        Parsed::UnsupportedApiVersions { correlation_id } => {
            // KIP-511: answer with our ranges in a v0 body so the client can retry.
            let body = handlers::api_versions::unsupported_version_body();
            let framed = frame_response(correlation_id, 0, &body);
            return Ok(tokio::spawn(async move { Ok(Some(Frame::Whole(framed))) }));
        }
        Parsed::Request {
            api,
            version,
            correlation_id,
            header,
            body,
        } => (api, version, correlation_id, header, body),
    };
    let api_key = api.key;
    let ctx = RequestContext {
        broker: broker.clone(),
        api_key,
        api_version: version,
        correlation_id,
        client_id: header.client_id.map(|c| c.to_string()),
        peer,
        ticket: (api.order != handlers::Order::Free).then(|| seq.ticket()),
    };
    let handle = (api.handle)(ctx, frame);
    Ok(tokio::spawn(async move {
        let out = handle.await;
        // The request's bytes are given back once its handler is done with them.
        drop(budget);
        out
    }))
}

/// Runs a decoder, turning a panic inside it into a decode failure: the decoder must never be
/// able to take the broker down, whatever bytes a client sends.
pub fn decode_guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Some(v),
        _ => None,
    }
}

/// Frames an encoded response body with its length and response header.
fn frame_response(correlation_id: i32, header_version: i16, body: &[u8]) -> Bytes {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let mut out = BytesMut::with_capacity(body.len() + 16);
    out.put_i32(0);
    // A response header has only the correlation id (and in v1 an empty tag buffer): encoding
    // it cannot fail.
    if header.encode(&mut out, header_version).is_err() {
        out.put_i32(correlation_id);
    }
    out.extend_from_slice(body);
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.freeze()
}

/// Writes a frame in parts: buffers through the writer, file regions with `sendfile` straight
/// from the page cache to the socket (after flushing what is buffered, so order is kept).
async fn write_parts(out: &mut BufWriter<OwnedWriteHalf>, parts: Vec<FramePart>) -> io::Result<()> {
    for part in parts {
        match part {
            FramePart::Bytes(b) => out.write_all(&b).await?,
            FramePart::File {
                file,
                position,
                len,
            } => {
                out.flush().await?;
                send_file(out.get_ref().as_ref(), &file, position, len).await?;
            }
        }
    }
    Ok(())
}

/// `sendfile(2)` of `len` bytes of `file` from `position` to the socket, waiting for the socket
/// to be writable between partial sends. The region lies in the page cache in the common case
/// (recent data); a cold read blocks this task for the disk read, as Kafka's network threads do.
async fn send_file(sock: &TcpStream, file: &File, position: u64, len: u64) -> io::Result<()> {
    let (mut at, end) = (position, position + len);
    while at < end {
        sock.writable().await?;
        let sent = sock.try_io(Interest::WRITABLE, || {
            let mut offset = libc::off_t::try_from(at).map_err(|_| io::Error::other("offset"))?;
            let count = usize::try_from(end - at).unwrap_or(usize::MAX).min(1 << 30);
            // SAFETY: both descriptors are open for the call (the socket through `sock`, the
            // file through the `Arc` the caller holds); sendfile writes only `offset`.
            let n =
                unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut offset, count) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as u64)
            }
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment shorter than the region",
                ))
            }
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn write_responses(wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Pending>) {
    let mut out = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(pending) = rx.recv().await {
        let result = match pending.await {
            Ok(r) => r,
            Err(e) => {
                warn!("request handler panicked: {e}");
                break;
            }
        };
        match result {
            Ok(Some(Frame::Whole(frame))) => {
                if out.write_all(&frame).await.is_err() {
                    break;
                }
            }
            Ok(Some(Frame::Parts(parts))) => {
                if write_parts(&mut out, parts).await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                warn!("closing connection: {e}");
                break;
            }
        }
        if rx.is_empty() && out.flush().await.is_err() {
            break;
        }
    }
    let _ = out.flush().await;
    let _ = out.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_and_limits_enforced() {
        let mut buf = BytesMut::new();
        buf.put_i32(3);
        buf.put_slice(b"abc");
        buf.put_i32(2);
        buf.put_slice(b"x");
        assert_eq!(
            next_frame(&mut buf, 100).unwrap().unwrap(),
            Bytes::from("abc")
        );
        assert!(next_frame(&mut buf, 100).unwrap().is_none());
        buf.put_slice(b"y");
        assert_eq!(
            next_frame(&mut buf, 100).unwrap().unwrap(),
            Bytes::from("xy")
        );

        let mut big = BytesMut::new();
        big.put_i32(101);
        assert!(next_frame(&mut big, 100).is_err());
        let mut neg = BytesMut::new();
        neg.put_i32(-1);
        assert!(next_frame(&mut neg, 100).is_err());
    }
}
