"""aiokafka 0.14 (asyncio; speaks only non-flexible protocol versions)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from helpers import CODECS, recent_ts, unique

pytestmark = pytest.mark.timeout(90)

CODEC_ARG = {"none": None, "gzip": "gzip", "snappy": "snappy", "lz4": "lz4", "zstd": "zstd"}


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def producer(broker, **kw) -> AIOKafkaProducer:
    conf = dict(bootstrap_servers=broker.bootstrap, enable_idempotence=False, linger_ms=5,
                request_timeout_ms=15000)
    conf.update(kw)
    return AIOKafkaProducer(**conf)


def consumer(broker, **kw) -> AIOKafkaConsumer:
    conf = dict(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", request_timeout_ms=15000, fetch_max_wait_ms=100)
    conf.update(kw)
    return AIOKafkaConsumer(**conf)


def topic_errors(resp) -> dict:
    """{topic: error_code} from a CreateTopics or DeleteTopics response."""
    obj = resp.to_object()
    rows = obj.get("topic_errors") or obj.get("topic_error_codes") or obj.get("responses") or []
    out = {}
    for r in rows:
        name = r.get("topic") or r.get("name")
        out[name] = r["error_code"]
    return out


async def create(broker, name, partitions=1, configs=None):
    a = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    await a.start()
    try:
        resp = await a.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
        assert topic_errors(resp) == {name: 0}
    finally:
        await a.close()
    return name


async def read(c: AIOKafkaConsumer, n: int, timeout: float = 20) -> list:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        batch = await c.getmany(timeout_ms=200)
        for recs in batch.values():
            out.extend(recs)
    assert len(out) >= n, f"got {len(out)} of {n} records"
    return out


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_produce_consume_roundtrip(broker, codec, acks):
    async def main():
        topic = await create(broker, unique(f"aio-{codec}"))
        base = recent_ts()
        sent = []
        p = producer(broker, compression_type=CODEC_ARG[codec], acks=acks)
        await p.start()
        try:
            futs = []
            for i in range(30):
                key = None if i == 29 else b"k%d" % i
                value = None if i == 28 else b"value-%d " % i * (1 + i % 5)
                headers = [("n", str(i).encode()), ("empty", b"")]
                ts = base + i * 7
                futs.append(await p.send(topic, value=value, key=key, partition=0, timestamp_ms=ts,
                                         headers=headers))
                sent.append((key, value, headers, ts))
            metas = await asyncio.gather(*futs)
        finally:
            await p.stop()
        if acks != 0:
            assert [m.offset for m in metas] == list(range(30))

        c = consumer(broker)
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            # Records become visible once fsynced: acks=0/1 writes within log.flush.max.delay.ms
            # (plus the fsync) after their ack, so the end offset may lag the acks briefly.
            deadline = time.monotonic() + 5
            while (end := (await c.end_offsets([tp]))[tp]) < 30 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert end == 30
            recs = await read(c, 30)
        finally:
            await c.stop()
        assert [r.offset for r in recs] == list(range(30))
        for r, (key, value, headers, ts) in zip(recs, sent):
            assert (r.key, r.value, r.timestamp, r.timestamp_type) == (key, value, ts, 0)
            assert [(k, bytes(v)) for k, v in r.headers] == headers

    run(main())


def test_admin_create_list_delete(broker):
    async def main():
        a = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
        await a.start()
        try:
            name = unique("aio-admin")
            resp = await a.create_topics([NewTopic(name, 2, 1, topic_configs={"retention.ms": "3600000"})])
            assert topic_errors(resp) == {name: 0}
            assert name in await a.list_topics()
            (desc,) = await a.describe_topics([name])
            assert desc["error_code"] == 0
            assert sorted(p["partition"] for p in desc["partitions"]) == [0, 1]
            assert all(p["leader"] == 0 for p in desc["partitions"])

            resp = await a.create_topics([NewTopic(name, 1, 1)])
            assert topic_errors(resp) == {name: 36}  # TOPIC_ALREADY_EXISTS
            bad = "bad/name"
            resp = await a.create_topics([NewTopic(bad, 1, 1)])
            assert topic_errors(resp) == {bad: 17}  # INVALID_TOPIC_EXCEPTION
            cfg = unique("aio-cfg")
            resp = await a.create_topics([NewTopic(cfg, 1, 1, topic_configs={"retention.ms": "soon"})])
            assert topic_errors(resp) == {cfg: 40}  # INVALID_CONFIG

            resp = await a.delete_topics([name])
            assert topic_errors(resp) == {name: 0}
            missing = unique("aio-missing")
            resp = await a.delete_topics([missing])
            assert topic_errors(resp) == {missing: 3}  # UNKNOWN_TOPIC_OR_PARTITION
            deadline = time.monotonic() + 10
            while name in await a.list_topics():
                assert time.monotonic() < deadline, "deleted topic still listed"
                await asyncio.sleep(0.1)
            listed = await a.list_topics()
            assert cfg not in listed and bad not in listed
        finally:
            await a.close()

    run(main())


def test_seek_offsets_for_times_end_offsets(broker):
    async def main():
        topic = await create(broker, unique("aio-ts"))
        base = recent_ts()
        p = producer(broker, acks="all")
        await p.start()
        try:
            for i in range(10):
                await p.send_and_wait(topic, value=b"m%d" % i, partition=0, timestamp_ms=base + i * 1000)
        finally:
            await p.stop()

        c = consumer(broker)
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            assert await c.beginning_offsets([tp]) == {tp: 0}
            assert await c.end_offsets([tp]) == {tp: 10}
            res = await c.offsets_for_times({tp: base + 6500})
            assert (res[tp].offset, res[tp].timestamp) == (7, base + 7000)
            assert (await c.offsets_for_times({tp: base + 60_000}))[tp] is None
            c.seek(tp, res[tp].offset)
            assert [r.value for r in await read(c, 3)] == [b"m7", b"m8", b"m9"]
            await c.seek_to_beginning(tp)
            assert [r.value for r in await read(c, 10)] == [b"m%d" % i for i in range(10)]
            await c.seek_to_end(tp)
            assert await c.position(tp) == 10
        finally:
            await c.stop()

    run(main())


def test_long_poll_wakes_on_produce(broker):
    """A consumer waiting at the end receives a new record promptly (Fetch long
    poll honours max_wait_ms and returns as soon as data arrives)."""
    async def main():
        topic = await create(broker, unique("aio-lp"))
        c = consumer(broker, fetch_max_wait_ms=5000)
        await c.start()
        p = producer(broker, acks=1)
        await p.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            await c.seek_to_end(tp)
            assert await c.position(tp) == 0
            reader = asyncio.ensure_future(c.getone())
            await asyncio.sleep(0.5)
            assert not reader.done()
            t0 = time.monotonic()
            await p.send_and_wait(topic, b"wake", partition=0)
            rec = await asyncio.wait_for(reader, 10)
            assert rec.value == b"wake"
            assert time.monotonic() - t0 < 3.0, "fetch did not return until max_wait_ms"
        finally:
            await p.stop()
            await c.stop()

    run(main())
