"""Debian's kcat 1.7.1 (librdkafka 2.0.2: an old client, see shared protocol notes)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest

import kwire
from helpers import CODEC_IDS, CODECS, unique

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed"),
]

FMT = "%p|%o|%k|%s|%h\\n"


def kcat(broker, *args, input: str | None = None, timeout: float = 30, check: bool = True):
    cmd = ["kcat", "-b", broker.bootstrap, "-m", "10", *args]
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
        )
    return p


def produce(broker, topic, lines: list[str], *extra, timeout=30):
    """kcat -P; returns the CompletedProcess. Fails on any delivery error."""
    p = kcat(broker, "-P", "-t", topic, "-X", "message.timeout.ms=15000", *extra,
             input="".join(line + "\n" for line in lines), timeout=timeout)
    assert "Delivery failed" not in p.stderr, p.stderr
    assert "ERROR" not in p.stderr, p.stderr
    return p


def consume(broker, topic, *extra, fmt=FMT, timeout=30) -> list[list[str]]:
    """kcat -C -e: rows of the -f format split on '|'."""
    p = kcat(broker, "-C", "-t", topic, "-e", "-f", fmt, *extra, timeout=timeout)
    return [line.split("|") for line in p.stdout.splitlines() if line]


def metadata(broker, *extra) -> dict:
    p = kcat(broker, "-L", "-J", *extra)
    return json.loads(p.stdout)


def wait_topic_in_metadata(broker, topic, timeout=15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        md = metadata(broker)
        for t in md.get("topics", []):
            if t["topic"] == topic and not t.get("error") and all(
                p.get("leader") == 0 for p in t["partitions"]
            ):
                return t
        assert time.monotonic() < deadline, f"topic {topic} not in metadata: {md}"
        time.sleep(0.2)


def test_metadata_lists_broker(broker):
    md = metadata(broker)
    assert [b["id"] for b in md["brokers"]] == [0]
    assert md["brokers"][0]["name"] == broker.bootstrap
    # plain-text listing too
    p = kcat(broker, "-L")
    assert re.search(rf"broker 0 at {re.escape(broker.bootstrap)}", p.stdout), p.stdout


def test_metadata_auto_creates_topic(broker):
    topic = unique("kc-meta")
    # A Metadata request naming the topic (kcat -L -t uses a producer handle,
    # which allows auto-creation) creates it with num.partitions=1.
    kcat(broker, "-L", "-t", topic, check=False)
    t = wait_topic_in_metadata(broker, topic)
    assert [p["partition"] for p in t["partitions"]] == [0]
    p = kcat(broker, "-L")
    assert f'topic "{topic}" with 1 partitions' in p.stdout, p.stdout


@pytest.mark.broker_settings(**{"num.partitions": "3"})
def test_produce_auto_creates_with_num_partitions(broker):
    topic = unique("kc-auto3")
    produce(broker, topic, ["a", "b", "c", "d", "e", "f"])
    t = wait_topic_in_metadata(broker, topic)
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
    rows = []
    for part in range(3):
        rows += consume(broker, topic, "-p", str(part), "-o", "beginning")
    assert sorted(r[3] for r in rows) == ["a", "b", "c", "d", "e", "f"]


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_roundtrip(broker, codec):
    topic = unique(f"kc-{codec}")
    lines = [f"key{i}:value {i} " + "x" * (i * 13) for i in range(40)]
    produce(broker, topic, lines, "-K:", "-z", codec, "-H", "h1=v1", "-H", "trace=abc-123", "-p", "0")
    rows = consume(broker, topic, "-o", "beginning")
    assert len(rows) == len(lines), rows
    for i, (row, line) in enumerate(zip(rows, lines)):
        key, value = line.split(":", 1)
        assert row == ["0", str(i), key, value, "h1=v1,trace=abc-123"]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_codec_reaches_the_broker(broker, codec):
    """librdkafka 2.0.2 only compresses when the broker's ApiVersions ranges
    enable the feature (for lz4 it needs FindCoordinator v0 advertised); a
    raw Fetch shows whether the batches kcat sent were really compressed."""
    topic = unique(f"kc-wire-{codec}")
    produce(broker, topic, ["compressible payload " * 20] * 30, "-z", codec, "-p", "0")
    fp = kwire.fetch(broker.address, topic, 0, 0)
    assert fp.error_code == 0 and fp.high_watermark == 30
    batches = fp.batches()
    assert batches and all(b.crc_ok for b in batches)
    assert {b.codec for b in batches} == {CODEC_IDS[codec]}, (
        f"kcat -z {codec} sent codec(s) {sorted({b.codec for b in batches})}"
    )


def test_null_key_and_empty_value(broker):
    topic = unique("kc-null")
    produce(broker, topic, [":", "k:", ":v"], "-K:", "-Z", "-p", "0")
    rows = consume(broker, topic, "-o", "beginning", fmt="%o|%K|%S|%k|%s\\n")
    # -Z: empty key/value are sent as NULL; %K/%S print -1 for NULL
    assert rows == [["0", "-1", "-1", "", ""], ["1", "1", "-1", "k", ""], ["2", "-1", "1", "", "v"]]


@pytest.fixture
def ten(broker):
    topic = unique("kc-ten")
    produce(broker, topic, [f"m{i}" for i in range(10)], "-p", "0")
    return topic


def test_consume_from_offset(broker, ten):
    rows = consume(broker, ten, "-o", "7")
    assert [(r[1], r[3]) for r in rows] == [("7", "m7"), ("8", "m8"), ("9", "m9")]


def test_consume_relative_to_end(broker, ten):
    rows = consume(broker, ten, "-o", "-2")
    assert [(r[1], r[3]) for r in rows] == [("8", "m8"), ("9", "m9")]


def test_consume_count_limit(broker, ten):
    p = kcat(broker, "-C", "-t", ten, "-o", "beginning", "-c", "4", "-f", "%s\\n")
    assert p.stdout.split() == ["m0", "m1", "m2", "m3"]


def test_consume_by_timestamp(broker):
    topic = unique("kc-ts")
    produce(broker, topic, [f"old{i}" for i in range(5)], "-p", "0")
    time.sleep(1.2)
    ts = int(time.time() * 1000)
    time.sleep(0.05)
    produce(broker, topic, [f"new{i}" for i in range(3)], "-p", "0")
    rows = consume(broker, topic, "-o", f"s@{ts}", fmt="%o|%T|%s\\n")
    assert [(r[0], r[2]) for r in rows] == [("5", "new0"), ("6", "new1"), ("7", "new2")]
    assert all(int(r[1]) >= ts for r in rows)
    # a timestamp after every record: nothing
    rows = consume(broker, topic, "-o", f"s@{int(time.time() * 1000) + 60_000}", fmt="%o|%T|%s\\n")
    assert rows == []


@pytest.mark.broker_settings(**{"auto.create.topics.enable": "false"})
def test_produce_to_missing_topic_fails(broker):
    topic = unique("kc-missing")
    p = kcat(broker, "-P", "-t", topic,
             "-X", "message.timeout.ms=5000", "-X", "topic.metadata.propagation.max.ms=500",
             input="x\n", check=False, timeout=40)
    out = p.stdout + p.stderr
    assert re.search(r"unknown topic", out, re.I), f"rc={p.returncode}\n{out}"
    md = metadata(broker)
    assert topic not in [t["topic"] for t in md.get("topics", [])]
