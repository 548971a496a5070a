"""Wire-level behaviours clients rely on, checked with raw requests (kwire.py)."""

from __future__ import annotations

import time

import pytest

import kwire
from helpers import create_topic, unique

pytestmark = pytest.mark.timeout(60)


def test_acks0_produce_gets_no_response(broker):
    """Produce with acks=0 has no response: the next response on the
    connection belongs to the next request."""
    topic = create_topic(broker, unique("acks0"), 1)
    s = kwire.connect(broker.address)
    try:
        batch = kwire.record_batch([kwire.Record(b"k", b"v")])
        s.sendall(kwire.produce_request(topic, 0, batch, acks=0, correlation_id=501))
        s.sendall(kwire.api_versions_request(0, correlation_id=502))
        r = kwire.Reader(kwire.recv_frame(s))
        assert r.i32() == 502, "got a response to an acks=0 produce"
    finally:
        s.close()
    deadline = time.monotonic() + 5
    while kwire.fetch(broker.address, topic, 0, 0).high_watermark != 1:
        assert time.monotonic() < deadline, "acks=0 record never appeared"
        time.sleep(0.05)


def test_fetch_long_poll_waits_for_max_wait(broker):
    topic = create_topic(broker, unique("lp"), 1)
    t0 = time.monotonic()
    fp = kwire.fetch(broker.address, topic, 0, 0, max_wait_ms=800, min_bytes=1)
    took = time.monotonic() - t0
    assert fp.error_code == 0 and fp.batches() == []
    assert 0.6 <= took < 5, f"empty fetch with max_wait_ms=800 returned after {took:.2f}s"


def test_fetch_long_poll_returns_when_data_arrives(broker):
    import threading

    topic = create_topic(broker, unique("lp2"), 1)
    result = {}

    def waiter():
        t0 = time.monotonic()
        result["fp"] = kwire.fetch(broker.address, topic, 0, 0, max_wait_ms=10000, min_bytes=1)
        result["took"] = time.monotonic() - t0

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.5)
    err, _ = kwire.produce(broker.address, topic, 0, kwire.record_batch([kwire.Record(b"k", b"wake")]))
    assert err == 0
    th.join(15)
    assert not th.is_alive()
    assert result["took"] < 5, f"long poll returned only after {result['took']:.2f}s"
    recs = [r for b in result["fp"].batches() for r in b.records]
    assert [r[3] for r in recs] == [b"wake"]


def test_fetch_returns_whole_batch_over_partition_limit(broker):
    """KIP-74: the first batch is returned even if it exceeds the limits."""
    topic = create_topic(broker, unique("kip74"), 1)
    big = kwire.record_batch([kwire.Record(b"k%d" % i, b"v" * 1000) for i in range(20)])
    assert kwire.produce(broker.address, topic, 0, big) == (0, 0)
    assert kwire.produce(broker.address, topic, 0, kwire.record_batch([kwire.Record(b"x", b"y")])) == (0, 20)
    fp = kwire.fetch(broker.address, topic, 0, 0, partition_max_bytes=100, max_bytes=100)
    assert fp.error_code == 0
    batches = fp.batches()
    assert batches, "no complete batch returned when it exceeds partition_max_bytes"
    assert batches[0].base_offset == 0 and len(batches[0].records) == 20
    # the limit still stops further batches
    assert len(fp.records) < len(big) + 200


def test_fetch_respects_partition_max_bytes(broker):
    topic = create_topic(broker, unique("limit"), 1)
    for i in range(20):
        kwire.produce(broker.address, topic, 0, kwire.record_batch([kwire.Record(b"k", b"v" * 1000)]))
    fp = kwire.fetch(broker.address, topic, 0, 0, partition_max_bytes=5000)
    assert fp.error_code == 0 and fp.high_watermark == 20
    assert len(fp.records) <= 5000 + 1200, f"{len(fp.records)} bytes returned for a 5000-byte limit"
    assert 1 <= len(fp.batches()) <= 5


@pytest.mark.parametrize("version", [15, 16, 17])
def test_fetch_by_topic_id(broker, version):
    """Fetch v13+ names topics by id (the id Metadata and DescribeTopics report); an id no
    topic has is answered UNKNOWN_TOPIC_ID, and so is the id of a topic deleted and created
    again under its name."""
    from helpers import admin, topic_id

    topic = create_topic(broker, unique("byid"))
    batch = kwire.record_batch([kwire.Record(b"k", b"by-id-%d" % i) for i in range(3)])
    assert kwire.produce(broker.address, topic, 0, batch) == (0, 0)
    tid = topic_id(broker, topic)
    assert tid != bytes(16)
    r = kwire.roundtrip(broker.address, kwire.fetch_request_by_id(tid, 0, 0, version=version))
    [p] = kwire.parse_fetch_response_by_id(r)
    assert (p.topic_id, p.partition, p.error_code, p.high_watermark) == (tid, 0, 0, 3)
    [b] = p.batches()
    assert [rec[3] for rec in b.records] == [b"by-id-0", b"by-id-1", b"by-id-2"]

    unknown = bytes(range(1, 17))
    r = kwire.roundtrip(broker.address, kwire.fetch_request_by_id(unknown, 0, 0, version=version))
    [p] = kwire.parse_fetch_response_by_id(r)
    assert (p.topic_id, p.error_code, p.records) == (unknown, kwire.UNKNOWN_TOPIC_ID, b"")

    admin(broker).delete_topics([topic])[topic].result(15)
    deadline = time.monotonic() + 15
    while True:
        try:
            create_topic(broker, topic)
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert topic_id(broker, topic) != tid
    r = kwire.roundtrip(broker.address, kwire.fetch_request_by_id(tid, 0, 0, version=version))
    [p] = kwire.parse_fetch_response_by_id(r)
    assert p.error_code == kwire.UNKNOWN_TOPIC_ID
