"""kill -9 in the middle of a produce stream loses no acknowledged write."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from helpers import consume, create_topic, producer, unique

pytestmark = pytest.mark.timeout(120)


def run_kill9(broker, topic, value_size=100, run_before_kill=2.0, min_acked=1000, **producer_conf):
    acked = {}  # id -> offset
    failed = {}  # id -> error
    p: Producer = producer(
        broker,
        **{
            "acks": "all",
            "message.send.max.retries": 0,
            "retry.backoff.ms": 100,
            "enable.idempotence": False,
            "linger.ms": 2,
            "message.timeout.ms": 5000,
            "socket.timeout.ms": 5000,
            "reconnect.backoff.max.ms": 500,
            **producer_conf,
        },
    )

    def on_delivery(err, msg):
        i = int(msg.key())
        if err is None:
            assert msg.partition() == 0
            acked[i] = msg.offset()
        else:
            failed[i] = err

    pad = b"." * value_size
    sent = 0
    start = time.monotonic()
    killed_at = None
    while True:
        now = time.monotonic()
        if killed_at is None and now - start >= run_before_kill and len(acked) >= min_acked:
            broker.kill9()  # mid-stream: thousands of messages are in flight
            killed_at = sent
        if killed_at is None and now - start > 30:
            raise AssertionError(f"broker acknowledged only {len(acked)} of {sent} messages in 30 s")
        if killed_at is not None and sent >= killed_at + 500:
            break
        if killed_at is None and len(p) > 20000:  # bound the backlog
            p.poll(0.005)
            continue
        try:
            p.produce(topic, key=b"%d" % sent, value=b"%d|" % sent + pad, partition=0, on_delivery=on_delivery)
            sent += 1
        except BufferError:
            p.poll(0.01)
            continue
        if sent % 50 == 0:
            p.poll(0)
    left = p.flush(30)
    assert left == 0, f"{left} messages neither delivered nor failed"
    assert len(acked) + len(failed) == sent
    assert failed, "no message failed: the kill did not interrupt the stream"
    broker_errors = {str(e) for e in failed.values() if e.code() >= 0}
    assert not broker_errors, f"the broker rejected messages: {broker_errors}"

    broker.start()
    msgs = consume(broker, topic, 0, timeout=60)
    ids = [int(m.key()) for m in msgs]
    offsets = {int(m.key()): m.offset() for m in msgs}
    for m in msgs:
        i = int(m.key())
        assert m.value() == b"%d|" % i + pad, f"corrupt value at offset {m.offset()}"

    missing = sorted(set(acked) - set(ids))
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:10]} (acked {len(acked)})"
    dups = len(ids) - len(set(ids))
    assert dups == 0, f"{dups} duplicated messages"
    acked_in_log = [i for i in ids if i in acked]
    assert acked_in_log == sorted(acked), "acknowledged messages out of order"
    wrong = {i: (acked[i], offsets[i]) for i in acked if acked[i] != offsets[i]}
    assert not wrong, f"acknowledged offsets differ from the log: {list(wrong.items())[:10]}"
    assert [m.offset() for m in msgs] == list(range(len(msgs))), "offsets not contiguous"

    # the log accepts appends right after the recovered end
    p2 = producer(broker, acks="all")
    reports = []
    p2.produce(topic, key=b"-1", value=b"after", partition=0, on_delivery=lambda e, m: reports.append((e, m.offset())))
    p2.flush(20)
    assert reports == [(None, len(msgs))]
    print(f"sent={sent} acked={len(acked)} failed={len(failed)} in log={len(msgs)}")
    return len(acked), len(failed), len(msgs)


def test_kill9_loses_no_acknowledged_write(broker):
    topic = create_topic(broker, unique("dur"), 1)
    run_kill9(broker, topic)


@pytest.mark.broker_settings(**{"log.segment.bytes": "65536"})
def test_kill9_with_rolling_segments(broker):
    topic = create_topic(broker, unique("dur-roll"), 1)
    # batches must stay below the segment size (Kafka rejects larger ones with
    # RECORD_LIST_TOO_LARGE, 18)
    acked, _, _ = run_kill9(broker, topic, value_size=300, **{"batch.size": 16384})
    assert acked * 300 > 3 * 65536, "test did not write enough to roll segments"


def test_sigterm_exits_cleanly_and_keeps_data(broker):
    topic = create_topic(broker, unique("term"), 1)
    p = producer(broker, acks="1")  # acks=1: a graceful stop must still flush it
    for i in range(1000):
        p.produce(topic, key=b"%d" % i, value=b"v%d" % i, partition=0)
    assert p.flush(20) == 0
    rc = broker.stop()
    assert rc == 0, f"strand exited with {rc} on SIGTERM"
    broker.start()
    msgs = consume(broker, topic, 0)
    assert [m.key() for m in msgs] == [b"%d" % i for i in range(1000)]
