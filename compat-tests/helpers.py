"""Shared client helpers (confluent-kafka based) for the compat tests."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def recent_ts() -> int:
    """A whole-second timestamp an hour ago: recent enough that no retention
    policy deletes the records while the test runs."""
    return (int(time.time()) - 3600) * 1000


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def admin(broker, **conf) -> AdminClient:
    """An AdminClient for `broker`. Without extra conf it is cached on the broker
    object: the client must outlive the futures it returns (a destroyed handle
    fails them with _DESTROY)."""
    if conf:
        return AdminClient({"bootstrap.servers": broker.bootstrap, **conf})
    a = getattr(broker, "_admin_client", None)
    if a is None:
        a = broker._admin_client = AdminClient({"bootstrap.servers": broker.bootstrap})
    return a


def create_topic(broker, name: str, partitions: int = 1, config: dict | None = None, timeout: float = 20):
    a = admin(broker)
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
        request_timeout=15,
    )
    fs[name].result(timeout)
    wait_topic(broker, name, partitions)
    return name


def topic_id(broker, name: str) -> bytes:
    """The topic's id as its 16 bytes, as confluent-kafka's describe_topics reports it."""
    from confluent_kafka import TopicCollection

    d = admin(broker).describe_topics(TopicCollection([name]))[name].result(15)
    msb = d.topic_id.get_most_significant_bits() & (2**64 - 1)
    lsb = d.topic_id.get_least_significant_bits() & (2**64 - 1)
    return msb.to_bytes(8, "big") + lsb.to_bytes(8, "big")


def topic_names(broker, timeout: float = 10) -> set:
    """All topic names (a Metadata request for all topics: never auto-creates)."""
    md = admin(broker).list_topics(timeout=timeout)
    return {t for t, m in md.topics.items() if m.error is None}


def wait_topic(broker, name: str, partitions: int | None = None, timeout: float = 10):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin(broker).list_topics(timeout=5)
        t = md.topics.get(name)
        last = t
        if t is not None and t.error is None and (partitions is None or len(t.partitions) == partitions):
            if all(p.leader in md.brokers for p in t.partitions.values()):
                return t
        time.sleep(0.1)
    raise AssertionError(f"topic {name} not visible with {partitions} partitions: {last}")


def kafka_error_code(exc: BaseException) -> int:
    assert isinstance(exc, KafkaException), repr(exc)
    return exc.args[0].code()


def producer(broker, **conf) -> Producer:
    base = {
        "bootstrap.servers": broker.bootstrap,
        "enable.idempotence": False,
        "linger.ms": 5,
        "message.timeout.ms": 20000,
    }
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(base)


def produce_and_wait(p: Producer, topic: str, messages: list[dict], timeout: float = 30):
    """Produce each dict as produce(topic, **dict); return the delivery reports
    as (error, topic, partition, offset, key, value), in produce order."""
    reports = [None] * len(messages)

    def cb_for(i):
        def cb(err, msg):
            reports[i] = (err, msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())

        return cb

    for i, m in enumerate(messages):
        while True:
            try:
                p.produce(topic, on_delivery=cb_for(i), **m)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(timeout)
    assert left == 0, f"{left} messages still undelivered after {timeout}s"
    assert all(r is not None for r in reports)
    return reports


def consumer(broker, **conf) -> Consumer:
    base = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": unique("g"),  # required by librdkafka; only assign() is used
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,
        "log_level": 3,
    }
    base.update(conf)
    return Consumer(base)


def consume(broker, topic: str, partition: int = 0, offset: int = -2, n: int | None = None,
            timeout: float = 20, until_eof: bool = True, c: Consumer | None = None, **conf):
    """assign() at `offset` and read messages. Stops after n messages, or
    (n None) at the first partition EOF. Raises on any other consumer error."""
    own = c is None
    if own:
        c = consumer(broker, **conf)
    out = []
    try:
        if own:
            c.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if n is not None and len(out) >= n:
                break
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if n is None and until_eof:
                        return out
                    continue
                raise AssertionError(f"consumer error: {m.error()}")
            out.append(m)
        if n is not None:
            assert len(out) >= n, f"got only {len(out)} of {n} messages in {timeout}s"
        elif until_eof:
            raise AssertionError(f"no partition EOF within {timeout}s (got {len(out)} messages)")
        return out
    finally:
        if own:
            c.close()
