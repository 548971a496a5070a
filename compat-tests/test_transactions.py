"""Transactions (KIP-98 exactly-once) against a real strand process.

Real clients: confluent-kafka 2.16 (librdkafka) for consume-transform-produce with
send_offsets_to_transaction (every third transaction aborted), commit/abort visibility across
partitions, read_committed vs read_uncommitted, the last stable offset (ListOffsets and Fetch),
interleaved transactions on one partition, 40 transactions over 2 KiB segments read with tiny
fetches and from inside aborted transactions (before/after SIGKILL and SIGTERM restarts),
zombie fencing, transactions left open by a killed producer (aborted after
transaction.timeout.ms, also across a broker SIGKILL), a live producer outliving its timeout,
SIGKILL/SIGTERM of the broker in the middle of a transaction, pending transactional offsets
(OffsetFetch require_stable waits); kafka-python 3.x and aiokafka commit/abort with
send_offsets_to_transaction.
Raw wire (kwire_txn.py): the error codes Kafka gives for wrong epochs (per request version,
KIP-588), unknown producer/transactional ids, produce to a partition not added to the
transaction, EndTxn without a transaction, invalid transaction timeouts, TxnOffsetCommit with an
unknown partition.

Producers that must die with an open transaction run as child processes (this file re-executed
with `producer <json>`), which flush and then os._exit().
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ != "__main__":
    import pytest
    from confluent_kafka import (Consumer, IsolationLevel, KafkaError, KafkaException, Producer,
                                 TopicPartition)

    import kwire_txn as kt
    from helpers import admin, consume, create_topic, produce_and_wait, producer, unique

    pytestmark = pytest.mark.timeout(60)

FAST_GROUPS = {"group.initial.rebalance.delay.ms": "0", "group.min.session.timeout.ms": "1000"}


# =====================================================================================
# Child process: a transactional producer that dies with its transaction open
# =====================================================================================


def child_producer(spec: dict) -> None:
    from confluent_kafka import Producer as P

    p = P({"bootstrap.servers": spec["bootstrap"], "transactional.id": spec["txn_id"],
           "transaction.timeout.ms": spec["timeout_ms"], "linger.ms": 1, "log_level": 3})
    p.init_transactions(20)
    p.begin_transaction()
    for t, part, value in spec["records"]:
        p.produce(t, value=value.encode(), partition=part)
    assert p.flush(20) == 0
    print(json.dumps({"ready": time.monotonic()}), flush=True)
    os._exit(0)  # no EndTxn, no clean close


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "producer":
        child_producer(json.loads(sys.argv[2]))
    sys.exit(2)


def run_dying_producer(bootstrap, txn_id, records, timeout_ms=5000) -> float:
    """Runs a child that opens a transaction, writes `records` [(topic, partition, value)],
    flushes and exits without ending it. Returns the monotonic time it was done."""
    spec = {"bootstrap": bootstrap, "txn_id": txn_id, "records": records, "timeout_ms": timeout_ms}
    out = subprocess.run([sys.executable, __file__, "producer", json.dumps(spec)], capture_output=True,
                         text=True, timeout=40)
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    assert out.returncode == 0 and lines, f"child failed rc={out.returncode}: {out.stderr[-2000:]}"
    return lines[-1]["ready"]


# =====================================================================================
# Helpers
# =====================================================================================


_CLIENTS: list = []


@pytest.fixture(autouse=True)
def _close_clients(make_broker):
    """Closes the test's librdkafka producers while its broker still runs (set up after
    make_broker, so torn down before it): otherwise a fenced or failed producer kept alive by
    a traceback reconnects to the dead port for the rest of the session."""
    yield
    while _CLIENTS:
        p = _CLIENTS.pop()
        with warnings.catch_warnings():  # "abort_transaction failed during close" of fenced ones
            warnings.simplefilter("ignore")
            try:
                p.purge()
                p.close()
            except Exception:  # noqa: BLE001 - a fatal producer may refuse; it is destroyed anyway
                pass


def txn_producer(broker, txn_id=None, **conf) -> "Producer":
    base = {"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id or unique("tx"),
            "transaction.timeout.ms": 10000, "linger.ms": 2, "log_level": 3}
    base.update(conf)
    p = Producer(base)
    _CLIENTS.append(p)
    return p


def plain_producer(broker) -> "Producer":
    p = producer(broker)
    _CLIENTS.append(p)
    return p


def read(broker, topic, partitions=(0,), committed=True, timeout=20):
    """All records of the partitions up to the end a consumer of this isolation level sees
    (read_committed stops at the last stable offset): {partition: [(offset, key, value)]}."""
    iso = "read_committed" if committed else "read_uncommitted"
    out = {}
    for p in partitions:
        msgs = consume(broker, topic, p, timeout=timeout, **{"isolation.level": iso})
        out[p] = [(m.offset(), m.key(), m.value()) for m in msgs]
    return out


def values(by_partition) -> list:
    return [v for recs in by_partition.values() for _o, _k, v in recs]


def list_offsets(broker, topic, partitions, committed: bool) -> dict:
    from confluent_kafka.admin import OffsetSpec

    iso = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    deadline = time.monotonic() + 15
    while True:  # the cached AdminClient may still be reconnecting after a broker restart
        try:
            fs = admin(broker).list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
                                            isolation_level=iso, request_timeout=10)
            return {tp.partition: f.result(10).offset for tp, f in fs.items()}
        except KafkaException as e:
            if not e.args[0].retriable() and e.args[0].code() != KafkaError._NOENT or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for(pred, timeout, step=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def committed_offset(broker, group, topic, partition) -> int:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "log_level": 3,
                  "isolation.level": "read_committed"})
    try:
        return c.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        c.close()


def fatal_error(exc) -> KafkaError:
    assert isinstance(exc, KafkaException), repr(exc)
    return exc.args[0]


# =====================================================================================
# Consume-transform-produce
# =====================================================================================


@pytest.mark.timeout(90)
@pytest.mark.broker_settings(**FAST_GROUPS)
def test_consume_transform_produce_abort_every_third(broker):
    """Input topic (3 partitions) → read_committed group consumer → upper-case → output topic
    (2 partitions) in transactions with the consumer offsets (send_offsets_to_transaction);
    every third transaction is flushed and aborted, and the consumer rewinds. The
    read_committed output holds every input record exactly once; read_uncommitted also the
    aborted copies; the group's committed offsets are the input's end."""
    tin, tout = unique("ctp-in"), unique("ctp-out")
    create_topic(broker, tin, 3)
    create_topic(broker, tout, 2)
    n = 90
    inputs = [{"key": f"k{i % 7}".encode(), "value": f"msg-{i:03d}".encode(), "partition": i % 3} for i in range(n)]
    produce_and_wait(plain_producer(broker), tin, inputs)
    group = unique("ctp-g")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "isolation.level": "read_committed",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                  "fetch.wait.max.ms": 50, "log_level": 3})
    c.subscribe([tin])
    p = txn_producer(broker)
    p.init_transactions(20)
    committed, aborted = [], []
    done: set = set()
    txn_no = 0
    deadline = time.monotonic() + 60
    try:
        while len(done) < n:
            assert time.monotonic() < deadline, f"only {len(done)} of {n} inputs committed"
            msgs = [m for m in c.consume(num_messages=8, timeout=0.5) if m.error() is None]
            if not msgs:
                continue
            txn_no += 1
            p.begin_transaction()
            for m in msgs:
                p.produce(tout, key=m.key(), value=m.value().upper())
            if txn_no % 3 == 0:
                assert p.flush(20) == 0  # so that the aborted records reach the log
                p.abort_transaction(20)
                aborted += [m.value().upper() for m in msgs]
                first = {}
                for m in msgs:
                    first.setdefault(m.partition(), m.offset())
                for part, off in first.items():
                    c.seek(TopicPartition(tin, part, off))
            else:
                p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 20)
                p.commit_transaction(20)
                committed += [m.value().upper() for m in msgs]
                done |= {(m.partition(), m.offset()) for m in msgs}
    finally:
        c.close()
    assert aborted, "no transaction was aborted"
    expected = sorted(f"MSG-{i:03d}".encode() for i in range(n))
    rc = read(broker, tout, (0, 1))
    assert sorted(values(rc)) == expected, "read_committed output is not every input exactly once"
    ru = read(broker, tout, (0, 1), committed=False)
    assert sorted(values(ru)) == sorted(expected + aborted), "read_uncommitted must see the aborted copies too"
    # per key, the committed output keeps the input order of that key's partition
    for p_ in (0, 1):
        offs = [o for o, _k, _v in rc[p_]]
        assert offs == sorted(offs)
    # the group's offsets were committed with the transactions
    c2 = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "log_level": 3,
                   "isolation.level": "read_committed"})
    try:
        got = c2.committed([TopicPartition(tin, q) for q in range(3)], timeout=10)
    finally:
        c2.close()
    assert {tp.partition: tp.offset for tp in got} == {0: 30, 1: 30, 2: 30}


# =====================================================================================
# Visibility: commit is atomic, abort hides everything, read_committed stops at the LSO
# =====================================================================================


def test_commit_abort_visibility_and_last_stable_offset(broker):
    t = unique("vis")
    create_topic(broker, t, 2)
    p = txn_producer(broker)
    p.init_transactions(20)
    plain = plain_producer(broker)

    # an open transaction on both partitions, then non-transactional records after it on p0
    p.begin_transaction()
    for i in range(5):
        p.produce(t, value=f"t1-{i}".encode(), partition=0)
        p.produce(t, value=f"t1-{i}".encode(), partition=1)
    assert p.flush(20) == 0
    produce_and_wait(plain, t, [{"value": f"plain-{i}".encode(), "partition": 0} for i in range(3)])

    assert list_offsets(broker, t, (0, 1), committed=False) == {0: 8, 1: 5}
    assert list_offsets(broker, t, (0, 1), committed=True) == {0: 0, 1: 0}, "LSO must be the open txn's start"
    assert read(broker, t, (0, 1)) == {0: [], 1: []}, "read_committed saw records of an open transaction"
    ru = read(broker, t, (0, 1), committed=False)
    assert len(ru[0]) == 8 and len(ru[1]) == 5
    f = kt.fetch(broker.address, t, 0, 0, isolation_level=1)
    assert (f.error, f.high_watermark, f.last_stable_offset) == (0, 8, 0)
    assert f.data_values() == [], "a read_committed Fetch returned records above the LSO"

    p.commit_transaction(20)
    # everything at once: both partitions, and the plain records behind the transaction
    rc = read(broker, t, (0, 1))
    assert [v for _o, _k, v in rc[0]] == [f"t1-{i}".encode() for i in range(5)] + [f"plain-{i}".encode() for i in range(3)]
    assert [v for _o, _k, v in rc[1]] == [f"t1-{i}".encode() for i in range(5)]
    # the commit marker takes an offset: p0 = 5 txn + 3 plain + marker, p1 = 5 + marker
    assert list_offsets(broker, t, (0, 1), committed=True) == {0: 9, 1: 6}
    assert list_offsets(broker, t, (0, 1), committed=False) == {0: 9, 1: 6}

    # an aborted transaction: nothing of it is visible, read_uncommitted sees it
    p.begin_transaction()
    for i in range(4):
        p.produce(t, value=f"t2-{i}".encode(), partition=0)
        p.produce(t, value=f"t2-{i}".encode(), partition=1)
    assert p.flush(20) == 0
    p.abort_transaction(20)
    produce_and_wait(plain, t, [{"value": b"after-abort", "partition": 0}])
    rc = read(broker, t, (0, 1))
    assert b"after-abort" in values(rc)
    assert not [v for v in values(rc) if v.startswith(b"t2-")], "aborted records visible to read_committed"
    ru = read(broker, t, (0, 1), committed=False)
    assert sum(v.startswith(b"t2-") for v in values(ru)) == 8
    f = kt.fetch(broker.address, t, 0, 0, isolation_level=1)
    assert f.aborted, "read_committed Fetch lists no aborted transaction"
    assert [a[1] for a in f.aborted] == [9], f"aborted transactions {f.aborted}"
    markers = f.control_markers()
    assert [m[2] for m in markers] == [True, False], f"markers {markers}"
    # a third transaction commits normally after the abort
    p.begin_transaction()
    p.produce(t, value=b"t3", partition=1)
    p.commit_transaction(20)
    assert values(read(broker, t, (1,)))[-1] == b"t3"


def test_interleaved_transactions_one_partition(broker):
    """Two transactional producers and a plain one interleave on one partition; A commits, B
    aborts. read_committed returns A's and the plain records in offset order, nothing of B;
    the LSO follows the earliest open transaction."""
    t = unique("inter")
    create_topic(broker, t, 1)
    a, b = txn_producer(broker), txn_producer(broker)
    a.init_transactions(20)
    b.init_transactions(20)
    plain = plain_producer(broker)
    a.begin_transaction()
    b.begin_transaction()

    def put(pr, vals):
        for v in vals:
            pr.produce(t, value=v.encode(), partition=0)
        assert pr.flush(20) == 0

    put(a, ["a0", "a1"])         # 0,1
    put(b, ["b0", "b1", "b2"])   # 2,3,4
    produce_and_wait(plain, t, [{"value": b"p0", "partition": 0}])  # 5
    put(a, ["a2"])               # 6
    assert list_offsets(broker, t, (0,), True) == {0: 0}
    b.abort_transaction(20)      # marker 7
    assert list_offsets(broker, t, (0,), True) == {0: 0}, "LSO passed A's open transaction"
    assert read(broker, t) == {0: []}
    b.begin_transaction()
    put(b, ["b3"])               # 8
    a.commit_transaction(20)     # marker 9
    assert list_offsets(broker, t, (0,), True) == {0: 8}, "LSO must stop at B's second transaction"
    assert [v for _o, _k, v in read(broker, t)[0]] == [b"a0", b"a1", b"p0", b"a2"]
    b.commit_transaction(20)     # marker 10
    rc = read(broker, t)[0]
    assert [(o, v) for o, _k, v in rc] == [(0, b"a0"), (1, b"a1"), (5, b"p0"), (6, b"a2"), (8, b"b3")]
    assert len(read(broker, t, committed=False)[0]) == 8
    # the raw view agrees (aborted list applied as a Java/librdkafka consumer does)
    got, f = kt.read_all(broker.address, t, 0, isolation_level=1)
    assert [v for _o, v in got] == [b"a0", b"a1", b"p0", b"a2", b"b3"]
    assert f.last_stable_offset == f.high_watermark == 11


# =====================================================================================
# Zombie fencing, concurrent incarnations
# =====================================================================================


def test_zombie_producer_is_fenced(broker):
    """A second producer with the same transactional.id fences the first: the first's open
    transaction is aborted, and its next produce/commit fails with a fatal fenced error;
    nothing it writes afterwards reaches the log."""
    t = unique("zombie")
    create_topic(broker, t, 1)
    txn_id = unique("tx-z")
    p1 = txn_producer(broker, txn_id)
    p1.init_transactions(20)
    p1.begin_transaction()
    for i in range(3):
        p1.produce(t, value=f"z1-{i}".encode(), partition=0)
    assert p1.flush(20) == 0

    p2 = txn_producer(broker, txn_id)
    p2.init_transactions(20)  # fences p1 and aborts its transaction
    assert list_offsets(broker, t, (0,), True) == {0: 4}, "p1's transaction was not aborted by the new incarnation"

    fenced = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)
    p1.produce(t, value=b"z1-late", partition=0)
    try:  # librdkafka raises the fatal error from flush() already
        p1.flush(10)
    except KafkaException as e:
        assert fatal_error(e).code() in fenced, e
    with pytest.raises(KafkaException) as ei:
        p1.commit_transaction(10)
    err = fatal_error(ei.value)
    assert err.fatal() or p1_fatal(p1), f"not fatal: {err}"
    assert err.code() in fenced, err

    p2.begin_transaction()
    p2.produce(t, value=b"z2", partition=0)
    p2.commit_transaction(20)
    assert [v for _o, _k, v in read(broker, t)[0]] == [b"z2"]
    ru = [v for _o, _k, v in read(broker, t, committed=False)[0]]
    assert ru == [b"z1-0", b"z1-1", b"z1-2", b"z2"], f"read_uncommitted {ru}"


def p1_fatal(p) -> bool:
    # confluent-kafka has no accessor for the fatal state: a fatal producer refuses begin
    try:
        p.begin_transaction()
    except KafkaException as e:
        return e.args[0].fatal()
    return False


# =====================================================================================
# Transactions left open: transaction.timeout.ms, broker SIGKILL
# =====================================================================================


def _wait_visible(broker, t, value, timeout):
    def seen():
        return value in values(read(broker, t, committed=True, timeout=10))

    return wait_for(seen, timeout, step=0.3, what=f"{value!r} visible to read_committed")


@pytest.mark.timeout(60)
def test_killed_producer_transaction_aborted_after_timeout(broker):
    """A producer dies with a transaction open (transaction.timeout.ms=5000). read_committed
    consumers are stuck at its first offset until the coordinator aborts it after the timeout;
    then they move on and never see its records. The transactional.id is reusable."""
    t = unique("dead")
    create_topic(broker, t, 2)
    txn_id = unique("tx-dead")
    recs = [(t, q, f"dead-{q}-{i}") for q in (0, 1) for i in range(3)]
    ready = run_dying_producer(broker.bootstrap, txn_id, recs, timeout_ms=5000)
    produce_and_wait(plain_producer(broker), t, [{"value": b"plain", "partition": 0}])
    assert list_offsets(broker, t, (0, 1), True) == {0: 0, 1: 0}
    assert read(broker, t, (0, 1)) == {0: [], 1: []}
    _wait_visible(broker, t, b"plain", 20)
    waited = time.monotonic() - ready
    assert waited >= 3.5, f"the transaction was aborted after only {waited:.1f}s (timeout 5s)"
    assert waited <= 15, f"the transaction was aborted only after {waited:.1f}s (timeout 5s)"
    rc = read(broker, t, (0, 1))
    assert values(rc) == [b"plain"]
    assert sorted(values(read(broker, t, (0, 1), committed=False))) == sorted([v.encode() for *_x, v in recs] + [b"plain"])
    # abort markers on both partitions: LSO = HW
    assert list_offsets(broker, t, (0, 1), True) == list_offsets(broker, t, (0, 1), False) == {0: 5, 1: 4}
    # the same transactional.id starts afresh
    p = txn_producer(broker, txn_id)
    p.init_transactions(20)
    p.begin_transaction()
    p.produce(t, value=b"reborn", partition=1)
    p.commit_transaction(20)
    assert values(read(broker, t, (1,))) == [b"reborn"]


@pytest.mark.timeout(60)
def test_kill9_broker_mid_transaction_commit_after_restart(broker):
    """SIGKILL the broker with a transaction open (records on two partitions, consumer offsets
    sent); restart; the same producer adds records and commits. read_committed sees all of
    the transaction exactly once and the group's offsets; or, if the commit fails, none of it."""
    t, tin = unique("k9"), unique("k9-in")
    create_topic(broker, t, 2)
    create_topic(broker, tin, 1)
    produce_and_wait(plain_producer(broker), tin, [{"value": f"in-{i}".encode()} for i in range(10)])
    group = unique("k9-g")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "isolation.level": "read_committed", "log_level": 3})
    c.assign([TopicPartition(tin, 0, 0)])
    got = []
    wait_for(lambda: got.extend(m for m in c.consume(10, 0.5) if m.error() is None) or len(got) >= 10, 15,
             what="input")
    p = txn_producer(broker, **{"transaction.timeout.ms": 5000, "reconnect.backoff.max.ms": 500})
    p.init_transactions(20)
    p.begin_transaction()
    for i in range(5):
        p.produce(t, value=f"pre-{i}".encode(), partition=i % 2)
    assert p.flush(20) == 0
    p.send_offsets_to_transaction([TopicPartition(tin, 0, 10)], c.consumer_group_metadata(), 20)
    broker.kill9()
    broker.start()
    for i in range(5):
        p.produce(t, value=f"post-{i}".encode(), partition=i % 2)
    ok = True
    try:
        assert p.flush(20) == 0
        p.commit_transaction(20)
    except KafkaException as e:
        ok = False
        err = e.args[0]
        assert err.txn_requires_abort() or err.fatal(), f"unexpected commit error {err}"
    c.close()
    rc = sorted(values(read(broker, t, (0, 1))))
    c2 = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "log_level": 3})
    off = c2.committed([TopicPartition(tin, 0)], timeout=10)[0].offset
    c2.close()
    if ok:
        assert rc == sorted([f"pre-{i}".encode() for i in range(5)] + [f"post-{i}".encode() for i in range(5)])
        assert off == 10
    else:  # the restart took longer than the timeout: aborted, nothing visible
        assert rc == [], f"a failed transaction left visible records: {rc}"
        assert off < 0
    assert ok, "commit after the restart failed (the restart took < 1s, the timeout is 5s)"


@pytest.mark.timeout(60)
def test_kill9_broker_with_open_transaction_of_dead_producer(broker):
    """The producer dies with its transaction open, then the broker is SIGKILLed and
    restarted: the durable coordinator state still aborts the transaction after
    transaction.timeout.ms, and read_committed consumers get past it."""
    t = unique("k9dead")
    create_topic(broker, t, 1)
    recs = [(t, 0, f"lost-{i}") for i in range(4)]
    ready = run_dying_producer(broker.bootstrap, unique("tx-k9"), recs, timeout_ms=5000)
    broker.kill9()
    broker.start()
    produce_and_wait(plain_producer(broker), t, [{"value": b"plain", "partition": 0}])
    assert list_offsets(broker, t, (0,), True) == {0: 0}, "the open transaction's records became stable"
    _wait_visible(broker, t, b"plain", 25)
    assert time.monotonic() - ready >= 3.5
    assert values(read(broker, t)) == [b"plain"]
    assert len(read(broker, t, committed=False)[0]) == 5


@pytest.mark.timeout(60)
def test_graceful_restart_keeps_open_transaction(broker):
    """SIGTERM restart with a transaction open: the records stay invisible, the producer
    commits after the restart and they all appear once."""
    t = unique("rst")
    create_topic(broker, t, 1)
    p = txn_producer(broker, **{"transaction.timeout.ms": 20000, "reconnect.backoff.max.ms": 500})
    p.init_transactions(20)
    p.begin_transaction()
    for i in range(4):
        p.produce(t, value=f"r{i}".encode(), partition=0)
    assert p.flush(20) == 0
    broker.restart(graceful=True)
    assert read(broker, t) == {0: []}
    p.produce(t, value=b"r4", partition=0)
    p.commit_transaction(20)
    assert [v for _o, _k, v in read(broker, t)[0]] == [f"r{i}".encode() for i in range(5)]


@pytest.mark.timeout(60)
@pytest.mark.broker_settings(**{"log.segment.bytes": "2048"})
def test_many_transactions_small_segments_and_fetches(broker):
    """40 transactions (every other one aborted, 6 records of ~100 bytes each) interleave with
    plain records on one partition of 2 KiB segments, so aborted transactions span segments.
    read_committed with tiny fetches returns exactly the committed and plain records, in
    order; a read_committed Fetch starting inside an aborted transaction lists it as aborted;
    the same after SIGKILL + restart and after a graceful restart (transaction index rebuilt)."""
    t = unique("many")
    create_topic(broker, t, 1)
    p = txn_producer(broker, **{"batch.num.messages": 2, "linger.ms": 0})
    p.init_transactions(20)
    plain = plain_producer(broker)
    expected, aborted_values = [], []
    for n in range(40):
        p.begin_transaction()
        vals = [f"tx{n:02d}-{j}-".encode() + b"x" * 90 for j in range(6)]
        for v in vals:
            p.produce(t, value=v, partition=0)
            p.poll(0)
        assert p.flush(20) == 0
        if n % 2:
            p.abort_transaction(20)
            aborted_values += vals
        else:
            p.commit_transaction(20)
            expected += vals
        if n % 5 == 4:
            pv = f"plain-{n}".encode()
            produce_and_wait(plain, t, [{"value": pv, "partition": 0}])
            expected.append(pv)
    small = {"isolation.level": "read_committed", "max.partition.fetch.bytes": 300, "fetch.max.bytes": 1024,
             "message.max.bytes": 1000}

    def check_all(label):
        got = [m.value() for m in consume(broker, t, 0, timeout=30, **small)]
        assert got == expected, f"{label}: read_committed differs ({len(got)} vs {len(expected)} records)"
        got_u = [m.value() for m in consume(broker, t, 0, timeout=30, **{"isolation.level": "read_uncommitted"})]
        assert sorted(got_u) == sorted(expected + aborted_values), label
        # start inside every aborted transaction
        raw = [(o, v) for o, v in kt.read_all(broker.address, t, 0, isolation_level=0)[0]]
        starts = {}
        for o, v in raw:
            if v in aborted_values:
                starts.setdefault(v[:4], []).append(o)
        for name, offs in sorted(starts.items())[:6]:
            mid = offs[len(offs) // 2]
            f = kt.fetch(broker.address, t, 0, mid, isolation_level=1, max_bytes=100000)
            assert f.aborted and any(first <= mid for _pid, first in f.aborted), (
                f"{label}: Fetch from offset {mid} inside aborted {name!r} (first {offs[0]}) lists aborted {f.aborted}")
            got_mid = [m.value() for m in consume(broker, t, 0, offset=mid, timeout=30, **small)]
            assert not set(got_mid) & set(aborted_values), f"{label}: aborted records seen reading from {mid}"
            assert got_mid == [v for o, v in raw if o >= mid and v in expected], label

    check_all("before restart")
    broker.kill9()
    broker.start()
    check_all("after SIGKILL")
    broker.restart(graceful=True)
    check_all("after SIGTERM")


@pytest.mark.timeout(40)
def test_slow_producer_fenced_by_transaction_timeout(broker):
    """A live producer that keeps its transaction open past transaction.timeout.ms: the
    coordinator aborts it (bumping the epoch); the producer's commit then fails and nothing of
    the transaction becomes visible; a new incarnation works."""
    t = unique("slow")
    create_topic(broker, t, 1)
    txn_id = unique("tx-slow")
    p = txn_producer(broker, txn_id, **{"transaction.timeout.ms": 2000})
    p.init_transactions(20)
    p.begin_transaction()
    for i in range(3):
        p.produce(t, value=f"slow-{i}".encode(), partition=0)
    assert p.flush(20) == 0
    wait_for(lambda: list_offsets(broker, t, (0,), True) == {0: 4}, 10, what="abort by timeout")
    try:
        p.produce(t, value=b"slow-late", partition=0)
        p.flush(10)
        p.commit_transaction(10)
        committed = True
    except KafkaException as e:
        committed = False
        err = e.args[0]
        assert err.fatal() or err.txn_requires_abort(), err
    assert not committed, "commit of a transaction aborted by the coordinator succeeded"
    assert values(read(broker, t)) == []
    ru = values(read(broker, t, committed=False))
    assert b"slow-late" not in ru, "a record of the fenced epoch was written"
    p2 = txn_producer(broker, txn_id)
    p2.init_transactions(20)
    p2.begin_transaction()
    p2.produce(t, value=b"fresh", partition=0)
    p2.commit_transaction(20)
    assert values(read(broker, t)) == [b"fresh"]


@pytest.mark.timeout(40)
@pytest.mark.broker_settings(**FAST_GROUPS)
def test_pending_transactional_offsets_are_unstable_until_commit(broker):
    """Offsets sent in an open transaction are invisible: a read_committed consumer of the
    group (OffsetFetch require_stable) waits (UNSTABLE_OFFSET_COMMIT) instead of reading the
    old offset, and gets the new one once the transaction commits. An abort discards them."""
    import threading

    tin = unique("unst")
    create_topic(broker, tin, 1)
    produce_and_wait(plain_producer(broker), tin, [{"value": f"v{i}".encode()} for i in range(10)])
    group = unique("unst-g")
    meta_c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "log_level": 3})
    meta = meta_c.consumer_group_metadata()
    p = txn_producer(broker)
    p.init_transactions(20)
    # committed 3, then an aborted 9
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition(tin, 0, 3)], meta, 20)
    p.commit_transaction(20)
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition(tin, 0, 9)], meta, 20)
    p.abort_transaction(20)

    def committed(timeout=10):
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "log_level": 3,
                      "isolation.level": "read_committed"})
        try:
            return c.committed([TopicPartition(tin, 0)], timeout=timeout)[0].offset
        finally:
            c.close()

    assert committed() == 3
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition(tin, 0, 7)], meta, 20)
    res = {}

    def fetch_committed():
        t0 = time.monotonic()
        try:
            res["offset"] = committed(timeout=15)
        except KafkaException as e:
            res["error"] = e
        res["took"] = time.monotonic() - t0

    th = threading.Thread(target=fetch_committed)
    th.start()
    time.sleep(2.0)
    p.commit_transaction(20)
    th.join(20)
    meta_c.close()
    assert "offset" in res, f"committed() failed: {res}"
    assert res["offset"] == 7, f"a read_committed member read {res['offset']} while offsets were pending"
    assert res["took"] >= 1.5, f"OffsetFetch(require_stable) returned after {res['took']:.1f}s without waiting"


# =====================================================================================
# Client-visible bad input
# =====================================================================================


def test_invalid_transaction_timeout_client(broker):
    """transaction.timeout.ms above the broker's transaction.max.timeout.ms (900000):
    init_transactions fails with INVALID_TRANSACTION_TIMEOUT."""
    p = txn_producer(broker, **{"transaction.timeout.ms": 900001})
    with pytest.raises(KafkaException) as ei:
        p.init_transactions(10)
    assert ei.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, ei.value


# =====================================================================================
# Other clients
# =====================================================================================


def test_kafka_python_transactions(broker):
    from kafka import KafkaProducer
    from kafka.structs import OffsetAndMetadata
    from kafka.structs import TopicPartition as KTP

    t = unique("kp-txn")
    create_topic(broker, t, 2)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique("tx-kp"),
                      transaction_timeout_ms=10000)
    group = unique("kp-g")
    p.init_transactions()
    p.begin_transaction()
    for i in range(4):
        p.send(t, value=f"c{i}".encode(), partition=i % 2)
    p.send_offsets_to_transaction({KTP(t, 0): OffsetAndMetadata(4, "", -1)}, group)
    p.commit_transaction()
    p.begin_transaction()
    for i in range(4):
        p.send(t, value=f"a{i}".encode(), partition=i % 2)
    p.send_offsets_to_transaction({KTP(t, 0): OffsetAndMetadata(9, "", -1)}, group)
    p.flush()
    p.abort_transaction()
    p.close(5)
    assert sorted(values(read(broker, t, (0, 1)))) == [f"c{i}".encode() for i in range(4)]
    assert len(values(read(broker, t, (0, 1), committed=False))) == 8
    assert committed_offset(broker, group, t, 0) == 4


def test_aiokafka_transactions(broker):
    import asyncio

    from aiokafka import AIOKafkaProducer
    from aiokafka.structs import TopicPartition as ATP

    t = unique("aio-txn")
    group = unique("aio-g")
    create_topic(broker, t, 2)

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique("tx-aio"),
                             transaction_timeout_ms=10000)
        await p.start()
        try:
            async with p.transaction():
                for i in range(4):
                    await p.send(t, value=f"c{i}".encode(), partition=i % 2)
                await p.send_offsets_to_transaction({ATP(t, 1): 3}, group)
            await p.begin_transaction()
            for i in range(4):
                await (await p.send(t, value=f"a{i}".encode(), partition=i % 2))
            await p.send_offsets_to_transaction({ATP(t, 1): 8}, group)
            await p.abort_transaction()
        finally:
            await p.stop()

    asyncio.run(main())
    assert sorted(values(read(broker, t, (0, 1)))) == [f"c{i}".encode() for i in range(4)]
    assert len(values(read(broker, t, (0, 1), committed=False))) == 8
    assert committed_offset(broker, group, t, 1) == 3


# =====================================================================================
# Raw wire: Kafka's error codes
# =====================================================================================


def test_txn_error_codes_raw(broker):
    """Every mismatch is collected, then reported together (expected = Kafka's answer)."""
    mismatches = []

    def check(actual, expected, what=""):
        if actual != expected:
            mismatches.append(f"{what}: got {actual!r}, Kafka gives {expected!r}")

    t = unique("raw")
    create_topic(broker, t, 2)
    s = kt.connect(broker.address)
    tx = unique("tx-raw")

    # InitProducerId: timeouts and ids
    for bad in (0, -1, 900001):
        check(kt.init_producer_id(s, tx, bad).error, kt.INVALID_TRANSACTION_TIMEOUT, f"InitProducerId with transaction timeout {bad}")
    check(kt.init_producer_id(s, "", 60000).error, kt.INVALID_REQUEST, 'InitProducerId with an empty transactional id')
    check(kt.find_coordinator(s, tx)[0], 0, 'FindCoordinator(transaction)')
    ip = kt.init_producer_id(s, tx, 900000)
    check((ip.error, ip.epoch), (0, 0), 'InitProducerId with timeout 900000')
    pid, ep = ip.producer_id, ip.epoch

    # EndTxn without a transaction, for an unknown id, with a wrong producer id or epoch
    check(kt.end_txn(s, tx, pid, ep, True), kt.INVALID_TXN_STATE, 'EndTxn(commit) without a transaction')
    check(kt.end_txn(s, tx, pid, ep, False), kt.INVALID_TXN_STATE, 'EndTxn(abort) without a transaction')
    check(kt.end_txn(s, unique("tx-none"), pid, ep, True), kt.INVALID_PRODUCER_ID_MAPPING, 'EndTxn for an unknown transactional id')
    check(kt.end_txn(s, tx, pid + 100000, ep, True), kt.INVALID_PRODUCER_ID_MAPPING, 'EndTxn with another producer id')
    check(kt.end_txn(s, tx, pid, ep + 1, True, version=2), kt.PRODUCER_FENCED, 'EndTxn v2 with a wrong epoch')
    check(kt.end_txn(s, tx, pid, ep + 1, True, version=1), kt.INVALID_PRODUCER_EPOCH, 'EndTxn v1 with a wrong epoch (KIP-588: old versions get INVALID_PRODUCER_EPOCH)')

    # a transactional batch for a partition not added to the transaction: nothing written
    err, _ = kt.produce(s, t, 0, kt.batch([b"x"], pid, ep, 0, transactional=True), transactional_id=tx)
    check(err, kt.INVALID_TXN_STATE, 'transactional produce to a partition not in the transaction')
    # AddPartitionsToTxn: an unknown partition fails the whole request
    res = kt.add_partitions_to_txn(s, tx, pid, ep, {t: [0, 7]})
    check(res, {(t, 0): kt.OPERATION_NOT_ATTEMPTED, (t, 7): kt.UNKNOWN_TOPIC_OR_PARTITION}, 'AddPartitionsToTxn with an unknown partition')
    err, _ = kt.produce(s, t, 0, kt.batch([b"x"], pid, ep, 0, transactional=True), transactional_id=tx)
    check(err, kt.INVALID_TXN_STATE, 'transactional produce to a partition not in the transaction')
    check(kt.fetch(s, t, 0, 0, 0).high_watermark, 0, 'high watermark after the refused produces')

    check(kt.add_partitions_to_txn(s, tx, pid, ep, {t: [0]}), {(t, 0): 0}, 'AddPartitionsToTxn')
    check(kt.add_partitions_to_txn(s, tx, pid, ep + 1, {t: [1]}), {(t, 1): kt.PRODUCER_FENCED}, 'AddPartitionsToTxn v2 with a wrong epoch')
    check(kt.add_partitions_to_txn(s, tx, pid, ep + 1, {t: [1]}, version=1), {(t, 1): kt.INVALID_PRODUCER_EPOCH}, 'AddPartitionsToTxn v1 with a wrong epoch')
    check(kt.produce(s, t, 0, kt.batch([b"in-0", b"in-1"], pid, ep, 0, transactional=True), transactional_id=tx), (0, 0), 'transactional produce to an added partition')
    # partition 1 was never added
    err, _ = kt.produce(s, t, 1, kt.batch([b"y"], pid, ep, 0, transactional=True), transactional_id=tx)
    check(err, kt.INVALID_TXN_STATE, 'transactional produce to a partition not in the transaction')
    f = kt.fetch(s, t, 0, 0, 1)
    check((f.high_watermark, f.last_stable_offset), (2, 0), 'HW/LSO with the transaction open')

    # offsets inside the transaction
    group = unique("raw-g")
    check(kt.add_offsets_to_txn(s, tx, pid, ep, group), 0, 'AddOffsetsToTxn')
    res = kt.txn_offset_commit(s, tx, group, pid, ep, {(t, 1): 5})
    check(res, {(t, 1): 0}, 'TxnOffsetCommit')

    check(kt.end_txn(s, tx, pid, ep, True), 0, 'EndTxn(commit)')
    check(kt.end_txn(s, tx, pid, ep, True), 0, "a retried EndTxn(commit) must succeed")
    check(kt.end_txn(s, tx, pid, ep, False), kt.INVALID_TXN_STATE, 'EndTxn(abort) after the commit')
    f = kt.fetch(s, t, 0, 0, 1)
    check((f.high_watermark, f.last_stable_offset), (3, 3), 'HW/LSO after commit')
    check([v for _o, v, _p, _tx in f.data_values()], [b"in-0", b"in-1"], 'read_committed records after commit')
    check([m[2] for m in f.control_markers()], [True], 'control markers (commit?)')
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "log_level": 3})
    try:
        assert c.committed([TopicPartition(t, 1)], timeout=10)[0].offset == 5
    finally:
        c.close()

    # a new incarnation fences the old epoch everywhere
    ip2 = kt.init_producer_id(s, tx, 60000)
    check((ip2.error, ip2.producer_id, ip2.epoch), (0, pid, ep + 1), 'InitProducerId again (new incarnation)')
    check(kt.add_partitions_to_txn(s, tx, pid, ep, {t: [0]}), {(t, 0): kt.PRODUCER_FENCED}, 'AddPartitionsToTxn v2 from the fenced epoch')
    check(kt.add_offsets_to_txn(s, tx, pid, ep, group), kt.PRODUCER_FENCED, 'AddOffsetsToTxn v2 from the fenced epoch')
    check(kt.add_offsets_to_txn(s, tx, pid, ep, group, version=1), kt.INVALID_PRODUCER_EPOCH,
          'AddOffsetsToTxn v1 from the fenced epoch (KIP-588)')
    check(kt.end_txn(s, tx, pid, ep, False), kt.PRODUCER_FENCED, 'EndTxn v2 from the fenced epoch')
    check(kt.add_partitions_to_txn(s, tx, pid, ep + 1, {t: [0]}), {(t, 0): 0}, 'AddPartitionsToTxn with the new epoch')
    err, _ = kt.produce(s, t, 0, kt.batch([b"zombie"], pid, ep, 2, transactional=True), transactional_id=tx)
    check(err, kt.INVALID_PRODUCER_EPOCH, 'transactional produce from the fenced epoch')
    check(kt.produce(s, t, 0, kt.batch([b"e1"], pid, ep + 1, 0, transactional=True), transactional_id=tx), (0, 3))
    # KIP-360: InitProducerId with the wrong current epoch is fenced (v4: PRODUCER_FENCED,
    # older versions: INVALID_PRODUCER_EPOCH)
    check(kt.init_producer_id(s, tx, 60000, version=4, producer_id=pid, epoch=ep).error, kt.PRODUCER_FENCED, 'InitProducerId v4 with a stale epoch')
    check(kt.init_producer_id(s, tx, 60000, version=3, producer_id=pid, epoch=ep).error, kt.INVALID_PRODUCER_EPOCH, 'InitProducerId v3 with a stale epoch (KIP-588: old versions get INVALID_PRODUCER_EPOCH)')
    # ... and with the right one it bumps the epoch and aborts the open transaction
    ip3 = kt.init_producer_id(s, tx, 60000, version=4, producer_id=pid, epoch=ep + 1)
    check((ip3.error, ip3.producer_id, ip3.epoch), (0, pid, ep + 2), 'InitProducerId v4 with the current pid/epoch')
    got, f = kt.read_all(s, t, 0, isolation_level=1)
    check([v for _o, v in got], [b"in-0", b"in-1"], 'read_committed after the open txn was aborted by re-init')
    check((f.last_stable_offset, f.high_watermark), (5, 5), 'LSO/HW at the end')
    s.close()
    assert not mismatches, "\n".join(mismatches)


def test_txn_offset_commit_with_unknown_partition_raw(broker):
    """TxnOffsetCommit naming an unknown partition next to a known one: Kafka answers
    UNKNOWN_TOPIC_OR_PARTITION for the unknown one and commits the others (with the
    transaction). An answer of NONE must mean the offset is committed."""
    t = unique("raw-oc")
    create_topic(broker, t, 1)
    s = kt.connect(broker.address)
    tx, group = unique("tx-oc"), unique("g-oc")
    ip = kt.init_producer_id(s, tx, 60000)
    assert kt.add_offsets_to_txn(s, tx, ip.producer_id, ip.epoch, group) == 0
    res = kt.txn_offset_commit(s, tx, group, ip.producer_id, ip.epoch, {(t, 0): 7, (t + "-nope", 0): 3})
    assert res[(t + "-nope", 0)] == kt.UNKNOWN_TOPIC_OR_PARTITION
    known = res[(t, 0)]
    assert kt.end_txn(s, tx, ip.producer_id, ip.epoch, True) == 0
    s.close()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "log_level": 3})
    try:
        off = c.committed([TopicPartition(t, 0)], timeout=10)[0].offset
    finally:
        c.close()
    if known == 0:
        assert off == 7, f"TxnOffsetCommit answered NONE for {t}-0 but the committed offset is {off}"
