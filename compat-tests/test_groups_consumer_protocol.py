"""KIP-848 consumer groups (`group.protocol=consumer`) with confluent-kafka (librdkafka):
server-side assignment split across members, incremental reassignment when members come and
go, a dead member evicted after the broker-side session timeout, committed offsets resumed,
and ConsumerGroupDescribe through the AdminClient."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupState  # noqa: F401

from helpers import admin, create_topic, producer, unique

pytestmark = pytest.mark.broker_settings(
    **{"group.consumer.session.timeout.ms": "3000", "group.consumer.heartbeat.interval.ms": "500"}
)


def new_consumer(broker, group, **extra):
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": group, "group.protocol": "consumer",
            "auto.offset.reset": "earliest", "enable.auto.commit": False}
    conf.update(extra)
    return Consumer(conf)


def owned(c):
    return sorted(tp.partition for tp in c.assignment())


def poll_until(consumers, cond, timeout=30, sink=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in consumers:
            m = c.poll(0.05)
            if m is not None and not m.error() and sink is not None:
                sink.append((m.partition(), m.offset()))
        if cond():
            return True
    return False


def produce(broker, topic, n, partitions):
    p = producer(broker)
    for i in range(n):
        p.produce(topic, str(i).encode(), partition=i % partitions)
    p.flush(10)


def test_members_split_partitions_and_each_message_is_consumed_once(broker):
    topic = create_topic(broker, unique(), partitions=4)
    produce(broker, topic, 200, 4)
    group = unique("g848")
    got = []
    c1 = new_consumer(broker, group)
    c1.subscribe([topic])
    assert poll_until([c1], lambda: owned(c1) == [0, 1, 2, 3], sink=got)
    c2 = new_consumer(broker, group)
    c2.subscribe([topic])
    assert poll_until([c1, c2], lambda: len(owned(c1)) == 2 and len(owned(c2)) == 2, sink=got)
    assert not set(owned(c1)) & set(owned(c2))
    produce(broker, topic, 200, 4)
    assert poll_until([c1, c2], lambda: len(set(got)) == 400, sink=got)
    # Without commits, a moved partition is read again from the start by its new owner
    # (at-least-once); what is produced after the assignment settled is read exactly once.
    late = [(p, o) for p, o in got if o >= 50]
    assert len(late) == len(set(late)) == 200, "a message was consumed twice"
    c2.close()
    # The remaining member gets everything back.
    assert poll_until([c1], lambda: owned(c1) == [0, 1, 2, 3])
    c1.close()


def _member_that_dies(bootstrap, group, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    deadline = time.time() + 20
    while time.time() < deadline and len(c.assignment()) == 0:
        c.poll(0.1)
    os._exit(0)  # no leave: the broker must notice from the missing heartbeats


def test_a_dead_member_is_evicted_and_its_partitions_reassigned(broker):
    topic = create_topic(broker, unique(), partitions=2)
    group = unique("g848")
    c1 = new_consumer(broker, group)
    c1.subscribe([topic])
    assert poll_until([c1], lambda: owned(c1) == [0, 1])
    child = multiprocessing.get_context("spawn").Process(
        target=_member_that_dies, args=(broker.bootstrap, group, topic))
    child.start()
    assert poll_until([c1], lambda: len(owned(c1)) == 1, timeout=30), "the second member never got a partition"
    child.join(30)
    # After the broker-side session timeout (3 s) the survivor owns both again.
    started = time.time()
    assert poll_until([c1], lambda: owned(c1) == [0, 1], timeout=30)
    assert time.time() - started < 20
    c1.close()


def test_committed_offsets_are_resumed_and_described(broker):
    topic = create_topic(broker, unique(), partitions=2)
    produce(broker, topic, 40, 2)
    group = unique("g848")
    c = new_consumer(broker, group)
    c.subscribe([topic])
    got = []
    assert poll_until([c], lambda: len(got) >= 20, sink=got)
    c.commit(asynchronous=False)
    # A partition the consumer has read nothing from has no commit (OFFSET_INVALID).
    committed = {tp.partition: max(tp.offset, 0) for tp in c.committed(c.assignment(), timeout=10)}
    assert sum(committed.values()) == len(set(got)) >= 20

    desc = admin(broker).describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    assert desc.group_id == group
    assert len(desc.members) == 1
    assert sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions) == [0, 1]
    c.close()

    # A new member of the group resumes after the committed offsets.
    again = []
    c2 = new_consumer(broker, group)
    c2.subscribe([topic])
    assert poll_until([c2], lambda: len(again) >= 40 - sum(committed.values()), sink=again)
    assert all(off >= committed[p] for p, off in again)
    c2.close()
