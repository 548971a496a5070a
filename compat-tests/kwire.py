"""Minimal hand-written Kafka wire encoders/decoders for raw-socket tests.

Only what test_bad_input.py needs: request framing, ApiVersions v0/v3,
Produce v3, Fetch v4, RecordBatch v2 (uncompressed) with CRC32C.
Everything is encoded with `struct`, independent of any client library, so
the tests control every byte.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

try:  # the `crc32c` PyPI package (hardware accelerated)
    from crc32c import crc32c as _crc32c_fast
except ImportError:  # pragma: no cover
    _crc32c_fast = None

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19

# error codes
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
UNSUPPORTED_VERSION = 35
INVALID_REQUEST = 42
INVALID_RECORD = 87


# ---------------------------------------------------------------- crc32c
def _make_table():
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    if _crc32c_fast is not None:
        return _crc32c_fast(data)
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------- primitives
def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(v: int) -> bytes:  # zigzag
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


class Reader:
    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"read past end: want {n} at {self.pos} of {len(self.data)}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def _unpack(self, fmt, n):
        return struct.unpack(fmt, self.take(n))[0]

    def i8(self):
        return self._unpack(">b", 1)

    def i16(self):
        return self._unpack(">h", 2)

    def i32(self):
        return self._unpack(">i", 4)

    def u32(self):
        return self._unpack(">I", 4)

    def i64(self):
        return self._unpack(">q", 8)

    def uvarint(self):
        shift = result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def varint(self):
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def nbytes(self):
        n = self.i32()
        return None if n < 0 else self.take(n)

    def compact_array_len(self):
        n = self.uvarint()
        return None if n == 0 else n - 1

    def skip_tagged_fields(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())


# ---------------------------------------------------------------- framing
def request(api_key: int, api_version: int, correlation_id: int, body: bytes,
            client_id: str | None = "compat-tests", header_version: int = 1) -> bytes:
    """A full frame: length prefix + request header (v1 or v2) + body."""
    hdr = i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)
    if header_version >= 2:
        hdr += uvarint(0)  # no tagged fields
    payload = hdr + body
    return i32(len(payload)) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    (n,) = struct.unpack(">i", recv_exact(sock, 4))
    if n < 4 or n > 200 * 1024 * 1024:
        raise ValueError(f"bad response length {n}")
    return recv_exact(sock, n)


def connect(addr, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def roundtrip(addr_or_sock, frame: bytes, timeout: float = 10.0) -> Reader:
    """Send one frame, read one response frame; returns a Reader positioned
    after the correlation id (response header v0)."""
    own = not isinstance(addr_or_sock, socket.socket)
    s = connect(addr_or_sock, timeout) if own else addr_or_sock
    try:
        s.sendall(frame)
        resp = recv_frame(s)
    finally:
        if own:
            s.close()
    r = Reader(resp)
    sent_corr = struct.unpack(">i", frame[8:12])[0]
    corr = r.i32()
    if corr != sent_corr:
        raise ValueError(f"correlation id mismatch: sent {sent_corr}, got {corr}")
    return r


def wait_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read until the peer closes; returns whatever arrived (should be nothing).
    Raises TimeoutError if the connection stays open."""
    sock.settimeout(timeout)
    got = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("connection still open")
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(got)
            got += chunk
    except (ConnectionResetError, BrokenPipeError):
        return bytes(got)
    except socket.timeout:
        raise TimeoutError(f"connection still open after {timeout}s (received {len(got)} bytes)")


# ---------------------------------------------------------------- ApiVersions
def api_versions_request(version: int = 0, correlation_id: int = 1) -> bytes:
    if version >= 3:
        body = compact_string("compat-tests") + compact_string("1.0") + uvarint(0)
        return request(API_API_VERSIONS, version, correlation_id, body, header_version=2)
    return request(API_API_VERSIONS, version, correlation_id, b"", header_version=1)


@dataclass
class ApiVersionsResponse:
    error_code: int
    ranges: dict  # api_key -> (min, max)
    throttle_ms: int | None = None


def parse_api_versions(r: Reader, version: int) -> ApiVersionsResponse:
    """Parse the body of an ApiVersions response (header already consumed;
    the response header is always v0 for ApiVersions)."""
    err = r.i16()
    ranges = {}
    if version >= 3:
        n = r.compact_array_len() or 0
        for _ in range(n):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            r.skip_tagged_fields()
            ranges[k] = (lo, hi)
        throttle = r.i32()
        r.skip_tagged_fields()
        return ApiVersionsResponse(err, ranges, throttle)
    n = r.i32()
    for _ in range(n):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        ranges[k] = (lo, hi)
    throttle = r.i32() if version >= 1 else None
    return ApiVersionsResponse(err, ranges, throttle)


def api_versions(addr, version: int = 0) -> ApiVersionsResponse:
    r = roundtrip(addr, api_versions_request(version))
    resp = parse_api_versions(r, version)
    if r.remaining():
        raise ValueError(f"{r.remaining()} trailing bytes in ApiVersions v{version} response")
    return resp


# ---------------------------------------------------------------- records
@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)  # [(str, bytes|None)]
    timestamp_delta: int = 0
    offset_delta: int = 0


def encode_record(rec: Record) -> bytes:
    body = i8(0) + varint(rec.timestamp_delta) + varint(rec.offset_delta)
    body += varint(-1) if rec.key is None else varint(len(rec.key)) + rec.key
    body += varint(-1) if rec.value is None else varint(len(rec.value)) + rec.value
    body += varint(len(rec.headers))
    for hk, hv in rec.headers:
        hkb = hk.encode()
        body += varint(len(hkb)) + hkb
        body += varint(-1) if hv is None else varint(len(hv)) + hv
    return varint(len(body)) + body


def record_batch(records: list[Record], base_timestamp: int | None = None, *,
                 base_offset: int = 0, magic: int = 2, attributes: int = 0,
                 producer_id: int = -1, producer_epoch: int = -1, base_sequence: int = -1,
                 partition_leader_epoch: int = -1) -> bytes:
    """An uncompressed RecordBatch v2 with a correct CRC32C."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    for i, rec in enumerate(records):
        rec.offset_delta = i
    recs = b"".join(encode_record(r) for r in records)
    max_ts = base_timestamp + max((r.timestamp_delta for r in records), default=0)
    after_crc = (
        i16(attributes)
        + i32(len(records) - 1)
        + i64(base_timestamp)
        + i64(max_ts)
        + i64(producer_id)
        + i16(producer_epoch)
        + i32(base_sequence)
        + i32(len(records))
        + recs
    )
    crc = crc32c(after_crc)
    # batchLength counts from partitionLeaderEpoch to the end
    batch_len = 4 + 1 + 4 + len(after_crc)
    return (
        i64(base_offset)
        + i32(batch_len)
        + i32(partition_leader_epoch)
        + i8(magic)
        + struct.pack(">I", crc)
        + after_crc
    )


CRC_OFFSET = 17  # byte offset of the CRC field in a v2 batch
MAGIC_OFFSET = 16


@dataclass
class Batch:
    base_offset: int
    magic: int
    crc: int
    crc_ok: bool
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    records: list  # [(offset, timestamp, key, value, headers)]
    partition_leader_epoch: int = -1

    @property
    def codec(self) -> int:
        return self.attributes & 0x07


def parse_batches(data: bytes, decode_records: bool = True) -> list[Batch]:
    """Parse a sequence of v2 record batches (a trailing partial batch, which
    Fetch responses may contain, is ignored). Records of compressed batches are
    not decoded (records == [])."""
    out = []
    pos = 0
    while len(data) - pos >= 12:
        base_offset, batch_len = struct.unpack(">qi", data[pos : pos + 12])
        end = pos + 12 + batch_len
        if end > len(data):
            break
        b = data[pos:end]
        magic = b[MAGIC_OFFSET]
        crc = struct.unpack(">I", b[CRC_OFFSET : CRC_OFFSET + 4])[0]
        r = Reader(b[21:])
        attributes = r.i16()
        last_delta = r.i32()
        base_ts = r.i64()
        max_ts = r.i64()
        r.i64(), r.i16(), r.i32()  # producer id/epoch, base sequence
        count = r.i32()
        records = []
        if decode_records and attributes & 0x07 == 0:
            for _ in range(count):
                length = r.varint()
                rr = Reader(r.take(length))
                rr.i8()
                ts_delta = rr.varint()
                off_delta = rr.varint()
                kl = rr.varint()
                key = None if kl < 0 else rr.take(kl)
                vl = rr.varint()
                value = None if vl < 0 else rr.take(vl)
                headers = []
                for _ in range(rr.varint()):
                    hk = rr.take(rr.varint()).decode()
                    hl = rr.varint()
                    headers.append((hk, None if hl < 0 else rr.take(hl)))
                records.append((base_offset + off_delta, base_ts + ts_delta, key, value, headers))
        leader_epoch = struct.unpack(">i", b[12:16])[0]
        out.append(Batch(base_offset, magic, crc, crc == crc32c(b[21:]), attributes, last_delta,
                         base_ts, max_ts, records, leader_epoch))
        pos = end
    return out


# ---------------------------------------------------------------- Produce v3
def produce_request(topic: str, partition: int, records: bytes, acks: int = -1,
                    timeout_ms: int = 10000, correlation_id: int = 7, version: int = 3) -> bytes:
    body = (
        string(None)  # transactional_id
        + i16(acks)
        + i32(timeout_ms)
        + array([string(topic) + array([i32(partition) + nbytes(records)])])
    )
    return request(API_PRODUCE, version, correlation_id, body)


def parse_produce_response(r: Reader) -> dict:
    """{(topic, partition): (error_code, base_offset, log_append_time)}"""
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            base = r.i64()
            lat = r.i64()
            out[(topic, p)] = (err, base, lat)
    r.i32()  # throttle
    return out


def produce(addr, topic, partition, records: bytes, acks=-1) -> tuple[int, int]:
    """Returns (error_code, base_offset) for the one partition."""
    resp = parse_produce_response(roundtrip(addr, produce_request(topic, partition, records, acks)))
    return resp[(topic, partition)][:2]


# ---------------------------------------------------------------- Fetch v4
def fetch_request(topic: str, partition: int, offset: int, max_wait_ms: int = 100,
                  min_bytes: int = 1, max_bytes: int = 10 * 1024 * 1024,
                  partition_max_bytes: int = 1024 * 1024, correlation_id: int = 9,
                  replica_id: int = -1) -> bytes:
    body = (
        i32(replica_id)
        + i32(max_wait_ms)
        + i32(min_bytes)
        + i32(max_bytes)
        + i8(0)  # isolation level READ_UNCOMMITTED
        + array([string(topic) + array([i32(partition) + i64(offset) + i32(partition_max_bytes)])])
    )
    return request(API_FETCH, 4, correlation_id, body)


@dataclass
class FetchPartition:
    error_code: int
    high_watermark: int
    last_stable_offset: int
    records: bytes

    def batches(self) -> list[Batch]:
        return parse_batches(self.records or b"")


def parse_fetch_response(r: Reader) -> dict:
    r.i32()  # throttle
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            hw = r.i64()
            lso = r.i64()
            n_aborted = r.i32()
            for _ in range(max(n_aborted, 0)):
                r.i64(), r.i64()
            recs = r.nbytes()
            out[(topic, p)] = FetchPartition(err, hw, lso, recs or b"")
    return out


def fetch(addr, topic, partition, offset, **kw) -> FetchPartition:
    resp = parse_fetch_response(roundtrip(addr, fetch_request(topic, partition, offset, **kw)))
    return resp[(topic, partition)]


# ---------------------------------------------------------------- Fetch v15+ (topic ids)
UNKNOWN_TOPIC_ID = 100
NOT_LEADER_OR_FOLLOWER = 6


def fetch_request_by_id(topic_id: bytes, partition: int, offset: int, version: int = 16,
                        max_wait_ms: int = 100, min_bytes: int = 1,
                        max_bytes: int = 10 * 1024 * 1024, partition_max_bytes: int = 1024 * 1024,
                        current_leader_epoch: int = -1, replica: tuple[int, int] | None = None,
                        correlation_id: int = 11) -> bytes:
    """Fetch v15-v17 (flexible; the topic by its 16-byte id). `replica` = (replica id, broker
    epoch) sends a follower's ReplicaState (tagged field 1, KIP-903)."""
    assert 15 <= version <= 17 and len(topic_id) == 16
    part = (i32(partition) + i32(current_leader_epoch) + i64(offset) + i32(-1)  # last fetched epoch
            + i64(-1) + i32(partition_max_bytes) + uvarint(0))
    body = (
        i32(max_wait_ms) + i32(min_bytes) + i32(max_bytes) + i8(0)
        + i32(0) + i32(-1)  # session id, epoch: no session
        + uvarint(2) + topic_id + uvarint(2) + part + uvarint(0)  # one topic, one partition
        + uvarint(1)  # no forgotten topics
        + compact_string("")  # rack id
    )
    if replica is None:
        body += uvarint(0)
    else:
        state = i32(replica[0]) + i64(replica[1]) + uvarint(0)
        body += uvarint(1) + uvarint(1) + uvarint(len(state)) + state
    return request(API_FETCH, version, correlation_id, body, header_version=2)


@dataclass
class FetchPartitionById:
    topic_id: bytes
    partition: int
    error_code: int
    high_watermark: int
    records: bytes

    def batches(self) -> list[Batch]:
        return parse_batches(self.records or b"")


def parse_fetch_response_by_id(r: Reader) -> list[FetchPartitionById]:
    """A Fetch v13+ response, after the correlation id (response header v1: tags first)."""
    r.skip_tagged_fields()
    r.i32(), r.i16(), r.i32()  # throttle, error code, session id
    out = []
    for _ in range(r.compact_array_len() or 0):
        tid = r.take(16)
        for _ in range(r.compact_array_len() or 0):
            p, err, hw = r.i32(), r.i16(), r.i64()
            r.i64(), r.i64()  # last stable offset, log start offset
            for _ in range(r.compact_array_len() or 0):
                r.i64(), r.i64()
                r.skip_tagged_fields()
            r.i32()  # preferred read replica
            n = r.uvarint()
            recs = r.take(n - 1) if n > 0 else b""
            r.skip_tagged_fields()
            out.append(FetchPartitionById(tid, p, err, hw, recs))
        r.skip_tagged_fields()
    r.skip_tagged_fields()
    return out
