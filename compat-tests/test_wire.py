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
