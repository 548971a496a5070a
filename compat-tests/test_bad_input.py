"""Raw-socket robustness: malformed frames and records never take the broker
down, and well-formed edge cases get Kafka's error codes."""

from __future__ import annotations

import socket
import struct

import pytest

import kwire
from helpers import create_topic, unique

pytestmark = pytest.mark.timeout(60)


def assert_alive(broker):
    """A fresh connection still gets a valid ApiVersions v0 answer."""
    assert broker.running(), f"broker died:\n{broker.stderr_tail()}"
    resp = kwire.api_versions(broker.address, 0)
    assert resp.error_code == 0
    assert kwire.API_API_VERSIONS in resp.ranges


def send_and_expect_close(broker, data: bytes, timeout: float = 10.0, shutdown_write=False) -> bytes:
    s = kwire.connect(broker.address)
    try:
        s.sendall(data)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        return kwire.wait_closed(s, timeout)
    finally:
        s.close()


# ------------------------------------------------------------------ ApiVersions


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions(broker, version):
    resp = kwire.api_versions(broker.address, version)
    assert resp.error_code == 0
    r = resp.ranges
    for key in (0, 1, 2, 3, 18, 19, 20, 23):  # Produce Fetch ListOffsets Metadata ApiVersions Create/DeleteTopics OffsetForLeaderEpoch
        assert key in r, f"api {key} not advertised: {r}"
        lo, hi = r[key]
        assert 0 <= lo <= hi, (key, lo, hi)
    assert r[18][0] == 0 and r[18][1] >= 3
    assert r[0][0] == 0, "Produce must be advertised from v0 (librdkafka < 2.11 compression detection)"
    assert 7 <= r[0][1] <= 12, f"Produce range {r[0]}"
    assert r[1][0] <= 4 <= r[1][1] <= 17, f"Fetch range {r[1]}"
    assert r[2][0] <= 1 <= r[2][1], f"ListOffsets range {r[2]}"
    assert r[19][0] <= 2 <= r[19][1], f"CreateTopics range {r[19]}"
    assert r[23][0] <= 2 <= r[23][1], f"OffsetForLeaderEpoch range {r[23]}"


def test_api_versions_unsupported_version(broker):
    """KIP-511: a too-new ApiVersions request gets UNSUPPORTED_VERSION with a
    v0 body still listing the ranges (clients then retry with a lower version)."""
    frame = kwire.request(kwire.API_API_VERSIONS, 99, 4242, b"", header_version=1)
    r = kwire.roundtrip(broker.address, frame)
    resp = kwire.parse_api_versions(r, 0)
    assert resp.error_code == kwire.UNSUPPORTED_VERSION
    assert kwire.API_API_VERSIONS in resp.ranges
    assert kwire.API_PRODUCE in resp.ranges and kwire.API_FETCH in resp.ranges
    assert r.remaining() == 0, f"{r.remaining()} trailing bytes after the v0 body"
    assert_alive(broker)


def test_many_requests_on_one_connection(broker):
    s = kwire.connect(broker.address)
    try:
        frames = b"".join(kwire.api_versions_request(v % 4, correlation_id=100 + i) for i, v in enumerate(range(20)))
        s.sendall(frames)  # pipelined
        for i in range(20):
            resp = kwire.Reader(kwire.recv_frame(s))
            assert resp.i32() == 100 + i, "responses out of order"
            assert resp.i16() == 0
    finally:
        s.close()


# ------------------------------------------------------------------ framing


@pytest.mark.parametrize("length", [0, 3, 7])
def test_frame_shorter_than_header(broker, length):
    got = send_and_expect_close(broker, struct.pack(">i", length) + b"\x00" * length)
    assert got == b"", f"unexpected response {got!r}"
    assert_alive(broker)


def test_truncated_frame_then_close(broker):
    frame = kwire.api_versions_request(0)
    s = kwire.connect(broker.address)
    s.sendall(struct.pack(">i", 100) + frame[4:])  # claims 100 bytes, sends fewer
    s.close()
    assert_alive(broker)


def test_truncated_frame_half_close(broker):
    frame = kwire.api_versions_request(0)
    got = send_and_expect_close(broker, struct.pack(">i", 100) + frame[4:], shutdown_write=True)
    assert got == b""
    assert_alive(broker)


@pytest.mark.parametrize("length", [2**31 - 1, 200 * 1024 * 1024, -1, -100])
def test_oversized_or_negative_length(broker, length):
    other = kwire.connect(broker.address)  # an open connection is not disturbed
    try:
        got = send_and_expect_close(broker, struct.pack(">i", length) + b"\x00" * 64)
        assert got == b""
        other.sendall(kwire.api_versions_request(0, correlation_id=77))
        r = kwire.Reader(kwire.recv_frame(other))
        assert r.i32() == 77 and r.i16() == 0
    finally:
        other.close()
    assert_alive(broker)


@pytest.mark.parametrize("api_key", [999, 32767, -5])
def test_unknown_api_key(broker, api_key):
    frame = kwire.request(api_key, 0, 5, b"\x00" * 16)
    send_and_expect_close(broker, frame)
    assert_alive(broker)


def test_garbage_body(broker):
    """A known API with a body that does not decode: closed, not a crash."""
    frame = kwire.request(kwire.API_PRODUCE, 3, 5, b"\xff\xff\x7f\xff\xff\xff\x00")
    send_and_expect_close(broker, frame)
    assert_alive(broker)


def test_random_bytes(broker):
    import random

    rnd = random.Random(1234)
    for _ in range(20):
        n = rnd.randint(1, 300)
        body = bytes(rnd.getrandbits(8) for _ in range(n))
        s = kwire.connect(broker.address, timeout=5)
        try:
            s.sendall(struct.pack(">i", len(body)) + body)
            s.settimeout(2)
            try:
                s.recv(65536)
            except (socket.timeout, ConnectionError):
                pass
        finally:
            s.close()
    assert_alive(broker)


# ------------------------------------------------------------------ records


def records(n=3, key_prefix=b"k"):
    return [kwire.Record(key_prefix + b"%d" % i, b"value-%d" % i, [("h", b"%d" % i)], timestamp_delta=i)
            for i in range(n)]


def test_raw_produce_and_fetch(broker):
    """The hand-built encoders against the broker: a valid batch round-trips."""
    topic = create_topic(broker, unique("raw"), 1)
    batch = kwire.record_batch(records(3))
    err, base = kwire.produce(broker.address, topic, 0, batch)
    assert (err, base) == (0, 0)
    err, base = kwire.produce(broker.address, topic, 0, kwire.record_batch(records(2, b"x")))
    assert (err, base) == (0, 3)
    fp = kwire.fetch(broker.address, topic, 0, 0)
    assert fp.error_code == 0 and fp.high_watermark == 5
    recs = [r for b in fp.batches() for r in b.records]
    assert all(b.crc_ok for b in fp.batches())
    assert [(o, k, v, h) for o, _, k, v, h in recs] == [
        (0, b"k0", b"value-0", [("h", b"0")]),
        (1, b"k1", b"value-1", [("h", b"1")]),
        (2, b"k2", b"value-2", [("h", b"2")]),
        (3, b"x0", b"value-0", [("h", b"0")]),
        (4, b"x1", b"value-1", [("h", b"1")]),
    ]
    # fetch from the middle of a batch: that batch is returned whole (offsets < 4 may appear)
    fp = kwire.fetch(broker.address, topic, 0, 4)
    assert fp.error_code == 0
    assert 4 in [r[0] for b in fp.batches() for r in b.records]


def _assert_empty(broker, topic):
    fp = kwire.fetch(broker.address, topic, 0, 0)
    assert fp.error_code == 0
    assert fp.high_watermark == 0, "rejected batch was stored"
    assert fp.batches() == []


def test_produce_corrupt_crc(broker):
    topic = create_topic(broker, unique("crc"), 1)
    batch = bytearray(kwire.record_batch(records(3)))
    batch[-3] ^= 0xFF  # flip a byte inside the last record's value
    err, _ = kwire.produce(broker.address, topic, 0, bytes(batch))
    assert err == kwire.CORRUPT_MESSAGE
    _assert_empty(broker, topic)
    assert_alive(broker)


def test_produce_corrupt_crc_field(broker):
    topic = create_topic(broker, unique("crc2"), 1)
    batch = bytearray(kwire.record_batch(records(1)))
    batch[kwire.CRC_OFFSET] ^= 0x01
    err, _ = kwire.produce(broker.address, topic, 0, bytes(batch))
    assert err == kwire.CORRUPT_MESSAGE
    _assert_empty(broker, topic)


@pytest.mark.parametrize("magic", [0, 1, 3, 99])
def test_produce_wrong_magic(broker, magic):
    topic = create_topic(broker, unique("magic"), 1)
    batch = kwire.record_batch(records(2), magic=magic)
    err, _ = kwire.produce(broker.address, topic, 0, batch)
    assert err in (kwire.INVALID_RECORD, kwire.CORRUPT_MESSAGE, 43), err  # 43 UNSUPPORTED_FOR_MESSAGE_FORMAT
    _assert_empty(broker, topic)
    assert_alive(broker)


def test_produce_batch_length_mismatch(broker):
    """batchLength claims more bytes than the records field holds."""
    topic = create_topic(broker, unique("len"), 1)
    batch = bytearray(kwire.record_batch(records(2)))
    struct.pack_into(">i", batch, 8, len(batch) + 100)
    err, _ = kwire.produce(broker.address, topic, 0, bytes(batch))
    assert err in (kwire.CORRUPT_MESSAGE, kwire.INVALID_RECORD), err
    _assert_empty(broker, topic)
    assert_alive(broker)


def test_produce_record_count_lies(broker):
    """A batch whose header says 5 records but holds 2 (CRC recomputed): rejected."""
    topic = create_topic(broker, unique("count"), 1)
    batch = bytearray(kwire.record_batch(records(2)))
    struct.pack_into(">i", batch, 57, 5)  # records count field
    struct.pack_into(">I", batch, kwire.CRC_OFFSET, kwire.crc32c(bytes(batch[21:])))
    err, _ = kwire.produce(broker.address, topic, 0, bytes(batch))
    assert err in (kwire.CORRUPT_MESSAGE, kwire.INVALID_RECORD), err
    _assert_empty(broker, topic)
    assert_alive(broker)


def test_produce_unknown_partition(broker):
    topic = create_topic(broker, unique("part"), 1)
    err, _ = kwire.produce(broker.address, topic, 7, kwire.record_batch(records(1)))
    assert err == kwire.UNKNOWN_TOPIC_OR_PARTITION
    assert_alive(broker)


def test_produce_record_too_large_for_topic(broker):
    topic = create_topic(broker, unique("small"), 1, config={"max.message.bytes": "1000"})
    big = kwire.record_batch([kwire.Record(b"k", b"x" * 2000)])
    err, _ = kwire.produce(broker.address, topic, 0, big)
    assert err == kwire.MESSAGE_TOO_LARGE
    _assert_empty(broker, topic)
    err, base = kwire.produce(broker.address, topic, 0, kwire.record_batch([kwire.Record(b"k", b"x" * 100)]))
    assert (err, base) == (0, 0)


def test_fetch_past_end(broker):
    topic = create_topic(broker, unique("oor"), 1)
    kwire.produce(broker.address, topic, 0, kwire.record_batch(records(3)))
    fp = kwire.fetch(broker.address, topic, 0, 3)  # == high watermark: fine, empty
    assert fp.error_code == 0 and fp.high_watermark == 3 and fp.batches() == []
    fp = kwire.fetch(broker.address, topic, 0, 1000)
    assert fp.error_code == kwire.OFFSET_OUT_OF_RANGE
    fp = kwire.fetch(broker.address, topic, 0, -5)
    assert fp.error_code == kwire.OFFSET_OUT_OF_RANGE
    assert_alive(broker)


def test_fetch_unknown_topic(broker):
    fp = kwire.fetch(broker.address, unique("nope"), 0, 0)
    assert fp.error_code == kwire.UNKNOWN_TOPIC_OR_PARTITION
    assert_alive(broker)
