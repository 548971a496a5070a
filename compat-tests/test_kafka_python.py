"""kafka-python 3.x (pure Python; guesses the broker version from ApiVersions)."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from helpers import CODECS, recent_ts, unique

pytestmark = pytest.mark.timeout(90)

CODEC_ARG = {"none": None, "gzip": "gzip", "snappy": "snappy", "lz4": "lz4", "zstd": "zstd"}


def make_producer(broker, **kw) -> KafkaProducer:
    conf = dict(bootstrap_servers=broker.bootstrap, enable_idempotence=False, linger_ms=5,
                request_timeout_ms=15000, retries=3)
    conf.update(kw)
    return KafkaProducer(**conf)


def make_consumer(broker, **kw) -> KafkaConsumer:
    conf = dict(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", request_timeout_ms=15000, fetch_max_wait_ms=100,
                )
    conf.update(kw)
    return KafkaConsumer(**conf)


def make_admin(broker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)


def create(broker, name, partitions=1, configs=None):
    a = make_admin(broker)
    try:
        a.create_topics({name: {"num_partitions": partitions, "replication_factor": 1,
                                "configs": configs or {}}}, timeout_ms=10000, wait_for_metadata=True)
    finally:
        a.close()
    return name


def read(c: KafkaConsumer, n: int, timeout: float = 20) -> list:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=200).values():
            out.extend(recs)
    assert len(out) >= n, f"got {len(out)} of {n} records"
    return out


def read_all(broker, topic, partition=0, expected=None, timeout=20) -> list:
    """Everything from the beginning up to the end offset."""
    c = make_consumer(broker)
    try:
        tp = TopicPartition(topic, partition)
        c.assign([tp])
        c.seek_to_beginning(tp)
        end = c.end_offsets([tp])[tp]
        if expected is not None:
            assert end == expected, f"end offset {end}, expected {expected}"
        recs = read(c, end, timeout) if end else []
        return recs
    finally:
        c.close()


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_produce_consume_roundtrip(broker, codec, acks):
    topic = create(broker, unique(f"kp-{codec}"))
    p = make_producer(broker, compression_type=CODEC_ARG[codec], acks=acks)
    base = recent_ts()
    sent = []
    try:
        futs = []
        for i in range(30):
            key = None if i == 29 else b"k%d" % i
            value = None if i == 28 else b"value-%d " % i * (1 + i % 5)
            headers = [("n", str(i).encode()), ("empty", b"")]
            ts = base + i * 7
            futs.append(p.send(topic, key=key, value=value, headers=headers, timestamp_ms=ts, partition=0))
            sent.append((key, value, headers, ts))
        p.flush(30)
        metas = [f.get(timeout=20) for f in futs]
    finally:
        p.close(timeout=10)
    if acks != 0:
        assert [m.offset for m in metas] == list(range(30))
    recs = read_all(broker, topic, expected=30)
    assert [r.offset for r in recs] == list(range(30))
    for r, (key, value, headers, ts) in zip(recs, sent):
        assert (r.key, r.value, r.timestamp, r.timestamp_type) == (key, value, ts, 0)
        assert list(r.headers) == headers


def test_admin_create_list_delete(broker):
    a = make_admin(broker)
    try:
        name = unique("kp-admin")
        a.create_topics({name: {"num_partitions": 3, "replication_factor": 1,
                                "configs": {"retention.ms": "3600000"}}},
                        timeout_ms=10000, wait_for_metadata=True)
        assert name in a.list_topics()
        (desc,) = a.describe_topics([name])
        assert desc["error_code"] == 0
        assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1, 2]
        assert all(p["leader_id"] == 0 for p in desc["partitions"])

        # duplicate -> TOPIC_ALREADY_EXISTS (36)
        res = a.create_topics({name: {"num_partitions": 1, "replication_factor": 1}},
                              timeout_ms=10000, raise_errors=False)
        assert [t["error_code"] for t in res["topics"]] == [36]

        # bad partition count -> INVALID_PARTITIONS (37)
        bad = unique("kp-bad")
        res = a.create_topics({bad: {"num_partitions": -5, "replication_factor": 1}},
                              timeout_ms=10000, raise_errors=False)
        assert [t["error_code"] for t in res["topics"]] == [37]

        # validate_only creates nothing
        vo = unique("kp-vo")
        res = a.create_topics({vo: {"num_partitions": 1, "replication_factor": 1}},
                              timeout_ms=10000, validate_only=True, raise_errors=False)
        assert [t["error_code"] for t in res["topics"]] == [0]

        res = a.delete_topics([name], timeout_ms=10000, raise_errors=False)
        assert [t["error_code"] for t in res["topics"]] == [0]
        res = a.delete_topics([unique("kp-missing")], timeout_ms=10000, raise_errors=False)
        assert [t["error_code"] for t in res["topics"]] == [3]
        deadline = time.monotonic() + 10
        while name in a.list_topics():
            assert time.monotonic() < deadline, "deleted topic still listed"
            time.sleep(0.1)
        topics = a.list_topics()
        assert vo not in topics and bad not in topics
    finally:
        a.close()


@pytest.fixture
def stamped(broker):
    topic = create(broker, unique("kp-ts"))
    base = recent_ts()
    p = make_producer(broker, acks="all")
    try:
        for i in range(10):
            p.send(topic, value=b"m%d" % i, timestamp_ms=base + i * 1000, partition=0)
        p.flush(30)
    finally:
        p.close(timeout=10)
    return topic, base


def test_seek_to_beginning_and_end_offsets(broker, stamped):
    topic, _ = stamped
    c = make_consumer(broker)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 10}
        c.seek(tp, 4)
        assert [r.value for r in read(c, 6)] == [b"m%d" % i for i in range(4, 10)]
        c.seek_to_beginning(tp)
        assert [r.value for r in read(c, 10)] == [b"m%d" % i for i in range(10)]
        c.seek_to_end(tp)
        assert c.position(tp) == 10
    finally:
        c.close()


def test_offsets_for_times(broker, stamped):
    topic, base = stamped
    c = make_consumer(broker)
    try:
        tp = TopicPartition(topic, 0)
        res = c.offsets_for_times({tp: base + 4500})
        assert (res[tp].offset, res[tp].timestamp) == (5, base + 5000)
        res = c.offsets_for_times({tp: base - 1})
        assert res[tp].offset == 0
        res = c.offsets_for_times({tp: base + 10_000})
        assert res[tp] is None
    finally:
        c.close()


def test_multi_partition_keys(broker):
    topic = create(broker, unique("kp-mp"), 4)
    p = make_producer(broker, acks=1)
    try:
        metas = [p.send(topic, key=b"key-%d" % (i % 8), value=b"%d" % i).get(timeout=20) for i in range(80)]
    finally:
        p.close(timeout=10)
    per_key = {}
    for i, m in enumerate(metas):
        per_key.setdefault(b"key-%d" % (i % 8), set()).add(m.partition)
    assert all(len(parts) == 1 for parts in per_key.values()), per_key  # same key, same partition
    total = 0
    for part in range(4):
        recs = read_all(broker, topic, part)
        assert [r.offset for r in recs] == list(range(len(recs)))
        for r in recs:
            assert metas[int(r.value)].partition == part
        total += len(recs)
    assert total == 80


def test_kafka_4_protocol_level(broker):
    """kafka-python infers the broker's version from ApiVersions (ListOffsets v10 means Kafka
    4.0); ListOffsets -4 (earliest local) and -5 (latest tiered) answer as Kafka does without
    tiered storage; DescribeTopicPartitions (KIP-966) pages through partitions with a cursor."""
    from kafka.protocol.consumer import OffsetSpec

    t1 = create(broker, unique("dtp-a"), partitions=3)
    t2 = create(broker, unique("dtp-b"), partitions=2)
    p = make_producer(broker, acks="all")
    for i in range(3):
        p.send(t1, value=b"v%d" % i, partition=0)
    p.flush(15)
    p.close()
    a = make_admin(broker)
    try:
        a.list_topics()  # connects and negotiates versions
        assert a._manager.broker_version >= (4, 0), a._manager.broker_version
        tp = TopicPartition(t1, 0)
        want = {OffsetSpec.EARLIEST_LOCAL: 0, OffsetSpec.LATEST_TIERED: -1, OffsetSpec.LATEST: 3}
        for spec, offset in want.items():
            got = a.list_partition_offsets({tp: spec})
            assert got[tp].offset == offset, (spec, got)

        pages, cursor = [], None
        for _ in range(5):
            r = a.describe_topic_partitions([t2, t1], response_partition_limit=2, cursor=cursor)
            pages.append([(t["name"], [q["partition_index"] for q in t["partitions"]])
                          for t in r["topics"]])
            cursor = r["next_cursor"]
            if cursor is None:
                break
        assert pages == [[(t1, [0, 1])], [(t1, [2]), (t2, [0])], [(t2, [1])]], pages
        r = a.describe_topic_partitions([unique("missing")])
        assert r["topics"][0]["error_code"] == 3, r
    finally:
        a.close()
