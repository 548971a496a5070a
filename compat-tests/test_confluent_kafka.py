"""confluent-kafka (bundled librdkafka 2.x): admin, producer, consumer."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import NewTopic, OffsetSpec

import kwire
from helpers import (
    CODEC_IDS,
    CODECS,
    admin,
    consume,
    consumer,
    create_topic,
    kafka_error_code,
    produce_and_wait,
    producer,
    recent_ts,
    topic_names,
    unique,
    wait_topic,
)

pytestmark = pytest.mark.timeout(90)

ONE_MIB = 1048576


def create_one(broker, new_topic: NewTopic, validate_only: bool = False):
    fs = admin(broker).create_topics([new_topic], operation_timeout=10, request_timeout=15,
                                     validate_only=validate_only)
    return fs[new_topic.topic]


def create_error(broker, new_topic: NewTopic, validate_only: bool = False) -> int:
    fut = create_one(broker, new_topic, validate_only)
    with pytest.raises(KafkaException) as ei:
        fut.result(20)
    return kafka_error_code(ei.value)


# ------------------------------------------------------------------ admin


def test_list_topics_shows_broker(broker):
    md = admin(broker).list_topics(timeout=10)
    assert list(md.brokers) == [0]
    b = md.brokers[0]
    assert (b.host, b.port) == ("127.0.0.1", broker.port)
    assert md.controller_id == 0


def test_create_topic_with_partitions_and_configs(broker):
    name = unique()
    create_one(broker, NewTopic(name, num_partitions=3, replication_factor=1,
                                config={"retention.ms": "3600000", "max.message.bytes": "2000000",
                                        "cleanup.policy": "delete"})).result(20)
    t = wait_topic(broker, name, 3)
    assert sorted(t.partitions) == [0, 1, 2]
    for p in t.partitions.values():
        assert p.leader == 0
        assert list(p.replicas) == [0]
        assert list(p.isrs) == [0]
    assert name in topic_names(broker)


@pytest.mark.broker_settings(**{"num.partitions": "3"})
def test_create_topic_default_partitions(broker):
    name = unique()
    create_one(broker, NewTopic(name, num_partitions=-1, replication_factor=-1)).result(20)
    t = wait_topic(broker, name)
    assert len(t.partitions) == 3


def test_create_topic_validate_only_creates_nothing(broker):
    name = unique()
    create_one(broker, NewTopic(name, num_partitions=2, replication_factor=1),
               validate_only=True).result(20)
    time.sleep(0.5)
    assert name not in topic_names(broker)
    # and it can then really be created
    create_topic(broker, name, 2)


def test_create_duplicate_topic(broker):
    name = create_topic(broker, unique(), 1)
    code = create_error(broker, NewTopic(name, num_partitions=1, replication_factor=1))
    assert code == KafkaError.TOPIC_ALREADY_EXISTS


@pytest.mark.parametrize("bad", ["bad/name", "..", "sp ace", "x" * 250, "ünïcode"])
def test_create_invalid_topic_name(broker, bad):
    code = create_error(broker, NewTopic(bad, num_partitions=1, replication_factor=1))
    assert code == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION, 17
    assert bad not in topic_names(broker)


def test_create_invalid_partitions(broker):
    name = unique()
    # librdkafka refuses num_partitions < -1 client-side; 0 reaches the broker.
    code = create_error(broker, NewTopic(name, num_partitions=0, replication_factor=1))
    assert code == KafkaError.INVALID_PARTITIONS
    assert name not in topic_names(broker)


@pytest.mark.parametrize("config", [
    {"retention.ms": "not-a-number"},
    {"max.message.bytes": "-7"},
    {"cleanup.policy": "shred"},
    {"no.such.topic.config": "1"},
])
def test_create_invalid_config(broker, config):
    name = unique()
    code = create_error(broker, NewTopic(name, num_partitions=1, replication_factor=1, config=config))
    assert code == KafkaError.INVALID_CONFIG
    assert name not in topic_names(broker)


def test_delete_topic(broker):
    name = create_topic(broker, unique(), 2)
    fs = admin(broker).delete_topics([name], operation_timeout=10, request_timeout=15)
    fs[name].result(20)
    deadline = time.monotonic() + 10
    while name in topic_names(broker):
        assert time.monotonic() < deadline, "deleted topic still listed"
        time.sleep(0.1)


def test_delete_missing_topic(broker):
    fs = admin(broker).delete_topics([unique("missing")], operation_timeout=10, request_timeout=15)
    (fut,) = fs.values()
    with pytest.raises(KafkaException) as ei:
        fut.result(20)
    assert kafka_error_code(ei.value) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_recreated_topic_starts_empty(broker):
    name = create_topic(broker, unique(), 1)
    produce_and_wait(producer(broker), name, [{"value": b"old-%d" % i} for i in range(5)])
    admin(broker).delete_topics([name], operation_timeout=10)[name].result(20)
    deadline = time.monotonic() + 10
    while name in topic_names(broker):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    create_topic(broker, name, 1)
    c = consumer(broker)
    try:
        assert c.get_watermark_offsets(TopicPartition(name, 0), timeout=10) == (0, 0)
    finally:
        c.close()
    produce_and_wait(producer(broker), name, [{"value": b"new"}])
    msgs = consume(broker, name)
    assert [(m.offset(), m.value()) for m in msgs] == [(0, b"new")]


def test_producer_auto_creates_topic(broker):
    name = unique("auto")
    reports = produce_and_wait(producer(broker), name, [{"value": b"v%d" % i} for i in range(3)])
    assert [r[0] for r in reports] == [None] * 3
    assert [r[3] for r in reports] == [0, 1, 2]
    assert name in topic_names(broker)


@pytest.mark.broker_settings(**{"auto.create.topics.enable": "false"})
def test_no_auto_create_when_disabled(broker):
    name = unique("noauto")
    p = producer(broker, **{"message.timeout.ms": 4000})
    errors = []
    p.produce(name, b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(15)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                                KafkaError._MSG_TIMED_OUT), errors[0]
    assert name not in topic_names(broker)


# ------------------------------------------------------------------ producer matrix


def sample_messages(n=20):
    base_ts = recent_ts()
    msgs = []
    for i in range(n):
        msgs.append({
            "key": b"key-%d" % i,
            "value": (b"value-%d-" % i) * (1 + i % 7),
            "headers": [("h-int", str(i).encode()), ("h-empty", b""), ("h-dup", b"a"), ("h-dup", b"b")],
            "timestamp": base_ts + i * 10,
        })
    msgs.append({"key": None, "value": b"no key"})
    msgs.append({"key": b"tombstone", "value": None})
    return msgs


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_consume_matrix(broker, acks, codec):
    name = create_topic(broker, unique(f"m-{acks}-{codec}"), 1)
    msgs = sample_messages()
    p = producer(broker, **{"acks": acks, "compression.type": codec, "linger.ms": 20})
    reports = produce_and_wait(p, name, msgs)
    assert [r[0] for r in reports] == [None] * len(msgs)
    if acks != "0":
        assert [r[3] for r in reports] == list(range(len(msgs)))

    got = consume(broker, name)
    assert [m.offset() for m in got] == list(range(len(msgs)))
    for m, want in zip(got, msgs):
        assert m.key() == want["key"]
        assert m.value() == want["value"]
        if "headers" in want:
            assert m.headers() == want["headers"]
        else:
            assert not m.headers()
        if "timestamp" in want:
            assert m.timestamp() == (TIMESTAMP_CREATE_TIME, want["timestamp"])
        else:
            ttype, ts = m.timestamp()
            assert ttype == TIMESTAMP_CREATE_TIME and abs(ts - time.time() * 1000) < 60_000


@pytest.mark.parametrize("codec", CODECS)
def test_producer_codec_is_kept_on_the_wire(broker, codec):
    """Kafka stores the producer's batches as sent (compression.type=producer):
    a raw Fetch returns batches with the producer's codec and valid CRCs.
    librdkafka (every version) enables its LZ4 feature only when the broker
    advertises FindCoordinator v0; without it lz4 is silently sent uncompressed."""
    name = create_topic(broker, unique(f"wire-{codec}"), 1)
    msgs = [{"key": b"k%d" % i, "value": b"payload %d " % i * 20} for i in range(50)]
    produce_and_wait(producer(broker, **{"compression.type": codec, "linger.ms": 50}), name, msgs)
    fp = kwire.fetch(broker.address, name, 0, 0)
    assert fp.error_code == 0
    assert fp.high_watermark == len(msgs)
    batches = fp.batches()
    assert batches, "no record batch returned"
    assert all(b.magic == 2 for b in batches)
    assert all(b.crc_ok for b in batches), "CRC32C mismatch in returned batch"
    assert {b.codec for b in batches} == {CODEC_IDS[codec]}
    assert sum(b.last_offset_delta + 1 for b in batches) == len(msgs)


TOPIC_CODEC = {"none": "uncompressed", "gzip": "gzip", "snappy": "snappy", "lz4": "lz4", "zstd": "zstd"}


@pytest.mark.parametrize("codec", CODECS)
def test_topic_compression_type_recompresses(broker, codec):
    """A topic's compression.type other than producer: batches produced in another codec are
    stored (and fetched) in the topic's codec with valid CRCs, and read back the same by
    librdkafka and kafka-python; an idempotent producer's sequence numbers survive it."""
    from kafka import KafkaConsumer, TopicPartition as KTopicPartition

    produced_with = "zstd" if codec != "zstd" else "lz4"
    name = create_topic(broker, unique(f"recompress-{codec}"), 1,
                        config={"compression.type": TOPIC_CODEC[codec], "compression.gzip.level": "9"})
    msgs = [{"key": b"k%d" % i, "value": b"payload %d " % i * 20, "headers": [("h", b"%d" % i)]}
            for i in range(200)]
    p = producer(broker, **{"compression.type": produced_with, "linger.ms": 50,
                            "enable.idempotence": True, "acks": "all"})
    reports = produce_and_wait(p, name, msgs)
    assert all(r[0] is None for r in reports)
    fp = kwire.fetch(broker.address, name, 0, 0)
    batches = fp.batches()
    assert batches and all(b.crc_ok for b in batches)
    assert {b.codec for b in batches} == {CODEC_IDS[codec]}
    assert sum(b.last_offset_delta + 1 for b in batches) == len(msgs)
    got = consume(broker, name, 0, n=len(msgs))
    assert [(m.key(), m.value(), m.headers()) for m in got] == [
        (m["key"], m["value"], m["headers"]) for m in msgs]
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                       auto_offset_reset="earliest", consumer_timeout_ms=10000)
    kc.assign([KTopicPartition(name, 0)])
    values = []
    for rec in kc:
        values.append(rec.value)
        if len(values) == len(msgs):
            break
    kc.close()
    assert values == [m["value"] for m in msgs]


def test_multi_partition_produce_consume(broker):
    name = create_topic(broker, unique("mp"), 3)
    msgs = [{"value": b"p%d-%d" % (i % 3, i), "partition": i % 3} for i in range(30)]
    reports = produce_and_wait(producer(broker, acks="all"), name, msgs)
    assert all(r[0] is None for r in reports)
    for part in range(3):
        got = consume(broker, name, part)
        assert [m.value() for m in got] == [m["value"] for m in msgs if m["partition"] == part]
        assert [m.offset() for m in got] == list(range(10))


def test_produce_to_missing_partition_fails(broker):
    name = create_topic(broker, unique(), 1)
    p = producer(broker, **{"message.timeout.ms": 3000})
    errs = []
    p.produce(name, b"x", partition=5, on_delivery=lambda e, m: errs.append(e))
    p.flush(10)
    assert len(errs) == 1 and errs[0] is not None
    assert errs[0].code() in (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART)


# ------------------------------------------------------------------ message size


def test_one_mib_message_roundtrip_with_raised_limit(broker):
    name = create_topic(broker, unique("big"), 1, config={"max.message.bytes": "2000000"})
    value = bytes(range(256)) * (ONE_MIB // 256)
    assert len(value) == ONE_MIB
    p = producer(broker, **{"message.max.bytes": 2000000, "compression.type": "none", "acks": "all"})
    reports = produce_and_wait(p, name, [{"key": b"big", "value": value}, {"value": b"small"}])
    assert [r[0] for r in reports] == [None, None]
    got = consume(broker, name)
    assert len(got) == 2
    assert got[0].value() == value and got[0].key() == b"big"
    assert got[1].value() == b"small"


def test_one_mib_message_rejected_by_default_topic(broker):
    name = create_topic(broker, unique("big"), 1)
    value = b"x" * ONE_MIB
    p = producer(broker, **{"message.max.bytes": 2000000, "compression.type": "none", "acks": "all",
                            "message.send.max.retries": 0})
    errs = []
    p.produce(name, value, on_delivery=lambda e, m: errs.append(e))
    assert p.flush(30) == 0
    assert len(errs) == 1 and errs[0] is not None, "1 MiB record accepted by a default topic"
    assert errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errs[0]
    # nothing was stored, and the topic still works
    produce_and_wait(p, name, [{"value": b"after"}])
    got = consume(broker, name)
    assert [(m.offset(), m.value()) for m in got] == [(0, b"after")]


# ------------------------------------------------------------------ consumer positions


@pytest.fixture
def ten_messages(broker):
    name = create_topic(broker, unique("ten"), 1)
    base_ts = recent_ts()
    msgs = [{"value": b"m%d" % i, "timestamp": base_ts + i * 1000} for i in range(10)]
    produce_and_wait(producer(broker, acks="all"), name, msgs)
    return name, base_ts


def test_consume_from_beginning(broker, ten_messages):
    name, _ = ten_messages
    got = consume(broker, name, 0, OFFSET_BEGINNING)
    assert [m.value() for m in got] == [b"m%d" % i for i in range(10)]


def test_consume_from_given_offset(broker, ten_messages):
    name, _ = ten_messages
    got = consume(broker, name, 0, 6)
    assert [(m.offset(), m.value()) for m in got] == [(i, b"m%d" % i) for i in range(6, 10)]


def test_consume_from_end_sees_only_new(broker, ten_messages):
    name, _ = ten_messages
    c = consumer(broker)
    try:
        c.assign([TopicPartition(name, 0, OFFSET_END)])
        # a partition EOF event means OFFSET_END was resolved and fetched up to
        deadline = time.monotonic() + 15
        while True:
            assert time.monotonic() < deadline, "no partition EOF at OFFSET_END"
            m = c.poll(0.2)
            if m is None:
                continue
            assert m.error() is not None, f"OFFSET_END consumer got old message at {m.offset()}"
            if m.error().code() == KafkaError._PARTITION_EOF:
                assert m.offset() == 10
                break
        produce_and_wait(producer(broker), name, [{"value": b"new%d" % i} for i in range(3)])
        got = consume(broker, name, n=3, c=c)
        assert [(m.offset(), m.value()) for m in got] == [(10 + i, b"new%d" % i) for i in range(3)]
    finally:
        c.close()


def test_watermarks(broker, ten_messages):
    name, _ = ten_messages
    c = consumer(broker)
    try:
        assert c.get_watermark_offsets(TopicPartition(name, 0), timeout=10) == (0, 10)
    finally:
        c.close()


def test_offsets_for_times(broker, ten_messages):
    name, base = ten_messages
    c = consumer(broker)
    try:
        def lookup(ts):
            (tp,) = c.offsets_for_times([TopicPartition(name, 0, ts)], timeout=10)
            assert tp.error is None, tp.error
            return tp.offset

        assert lookup(base) == 0
        assert lookup(base - 5000) == 0
        assert lookup(base + 3000) == 3
        assert lookup(base + 3001) == 4
        assert lookup(base + 9000) == 9
        assert lookup(base + 9001) == OFFSET_END  # -1: no such message
    finally:
        c.close()


def test_admin_list_offsets(broker):
    name = create_topic(broker, unique("lo"), 1)
    base = recent_ts()
    stamps = [base + 1000, base + 5000, base + 3000, base + 5000, base + 2000]
    produce_and_wait(producer(broker), name, [{"value": b"v", "timestamp": t} for t in stamps])
    a = admin(broker)
    tp = TopicPartition(name, 0)

    def query(spec):
        res = a.list_offsets({tp: spec}, request_timeout=15)
        return res[tp].result(20)

    assert query(OffsetSpec.earliest()).offset == 0
    assert query(OffsetSpec.latest()).offset == 5
    mx = query(OffsetSpec.max_timestamp())
    assert (mx.offset, mx.timestamp) == (1, base + 5000)
    ft = query(OffsetSpec.for_timestamp(base + 2500))
    assert (ft.offset, ft.timestamp) == (1, base + 5000)
    assert query(OffsetSpec.for_timestamp(base + 6000)).offset == -1


# ------------------------------------------------------------------ restarts


def _produce_numbered(broker, name, start, n):
    msgs = [{"key": b"%d" % i, "value": b"value-%d" % i, "partition": 0} for i in range(start, start + n)]
    reports = produce_and_wait(producer(broker, acks="all"), name, msgs)
    assert all(r[0] is None for r in reports)
    return [m["value"] for m in msgs]


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_data_survives_restart(broker, how):
    name = create_topic(broker, unique(f"restart-{how}"), 2, config={"retention.ms": "86400000"})
    want = _produce_numbered(broker, name, 0, 200)
    broker.restart(graceful=(how == "graceful"))
    t = wait_topic(broker, name, 2)
    assert len(t.partitions) == 2
    got = consume(broker, name, 0)
    assert [m.value() for m in got] == want
    assert [m.offset() for m in got] == list(range(200))
    # appends continue after the recovered end
    more = _produce_numbered(broker, name, 200, 10)
    got = consume(broker, name, 0, 195)
    assert [m.value() for m in got] == want[195:] + more
    assert [m.offset() for m in got] == list(range(195, 210))


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_topic_metadata_survives_restart(broker, how):
    """Created topics keep their partitions and configs, deleted ones stay deleted."""
    kept = create_topic(broker, unique("kept"), 3, config={"max.message.bytes": "2000000"})
    gone = create_topic(broker, unique("gone"), 1)
    admin(broker).delete_topics([gone], operation_timeout=10)[gone].result(20)
    deadline = time.monotonic() + 10
    while gone in topic_names(broker):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    broker.restart(graceful=(how == "graceful"))
    assert len(wait_topic(broker, kept).partitions) == 3
    names = topic_names(broker)
    assert kept in names and gone not in names
    p = producer(broker, **{"message.max.bytes": 2000000, "compression.type": "none",
                            "message.send.max.retries": 0})
    reports = produce_and_wait(p, kept, [{"value": b"z" * ONE_MIB, "partition": 2}])
    assert reports[0][0] is None, f"max.message.bytes lost on restart: {reports[0][0]}"
