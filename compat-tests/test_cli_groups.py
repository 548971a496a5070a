"""`strand groups list|describe|reset-offsets|delete` against a real broker process, checked
with a confluent-kafka consumer group: lag, dry-run vs --execute, refusal on an active group."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from confluent_kafka import Consumer

from helpers import create_topic, producer, unique

pytestmark = pytest.mark.broker_settings({"group.initial.rebalance.delay.ms": "0"})


def strand(strand_bin, broker, *args, check=True):
    cmd = [str(strand_bin), "groups", *args, "--bootstrap-server", broker.bootstrap, "--timeout", "10"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    if check:
        assert p.returncode == 0, f"{cmd} exited {p.returncode}: {p.stderr}"
    return p


def consume_and_commit(broker, group, topic, n):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.time() + 30
    while got < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    return c


def test_list_describe_reset_and_delete(strand_bin, broker):
    topic = create_topic(broker, unique(), partitions=2)
    p = producer(broker)
    for i in range(20):
        p.produce(topic, str(i).encode(), partition=i % 2)
    p.flush(10)
    group = unique("g")
    c = consume_and_commit(broker, group, topic, 20)

    listed = json.loads(strand(strand_bin, broker, "list", "--json").stdout)
    assert {"group": group, "state": "Stable", "protocol_type": "consumer", "type": "classic"} in listed
    d = json.loads(strand(strand_bin, broker, "describe", group, "--json").stdout)
    assert d["state"] == "Stable" and len(d["members"]) == 1
    assert sorted((x["partition"], x["committed"], x["lag"]) for x in d["partitions"]) == [(0, 10, 0), (1, 10, 0)]
    assert all(x["member"] for x in d["partitions"])

    # Resetting an active group is refused with a sentence and a non-zero exit.
    r = strand(strand_bin, broker, "reset-offsets", group, "--to-earliest", "--execute", check=False)
    assert r.returncode == 1 and "stop its consumers" in r.stderr
    c.close()

    # Dry run changes nothing; --execute does.
    plan = json.loads(strand(strand_bin, broker, "reset-offsets", group, "--to-offset", "4", "--json").stdout)
    assert not plan["executed"] and {x["new"] for x in plan["offsets"]} == {4}
    d = json.loads(strand(strand_bin, broker, "describe", group, "--json").stdout)
    assert {x["committed"] for x in d["partitions"]} == {10}
    strand(strand_bin, broker, "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute")
    d = json.loads(strand(strand_bin, broker, "describe", group, "--json").stdout)
    assert d["state"] == "Empty"
    assert sorted((x["partition"], x["committed"], x["lag"]) for x in d["partitions"]) == [(0, 0, 10), (1, 0, 10)]

    # A consumer of the reset group starts again from the beginning.
    c = consume_and_commit(broker, group, topic, 20)
    c.close()

    out = strand(strand_bin, broker, "delete", group).stdout
    assert f"Deleted group {group}." in out
    r = strand(strand_bin, broker, "delete", group, check=False)
    assert r.returncode == 1 and "GROUP_ID_NOT_FOUND" in r.stderr
