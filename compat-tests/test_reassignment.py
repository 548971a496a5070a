"""Operators move leaders and replicas (issue 10) against a real etcd and three strand
processes, with third-party admin clients: ElectLeaders (confluent-kafka's and kafka-python's
`elect_leaders`), `auto.leader.rebalance.enable`, and partition reassignment (kafka-python's
`alter_partition_reassignments` / `list_partition_reassignments`) under an acks=all load.
"""

from __future__ import annotations

import signal
import time

import pytest

from confluent_kafka import ElectionType, KafkaException, TopicPartition as CkTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import (ElectionNotNeededError, InvalidReplicationAssignmentError,
                          NoReassignmentInProgressError)

from helpers import producer, unique
from test_cluster import metadata, wait_everywhere, wait_for
from test_replication import (Load, by_id, consume_all, log_bytes, partition_md, wait_isr,
                              wait_same_logs)


def create_assigned(cluster, name, assignment, config=None):
    wait_for("every broker", lambda: len(metadata(cluster[0]).brokers) >= len(cluster))
    a = AdminClient({"bootstrap.servers": cluster[0].bootstrap})
    fs = a.create_topics([NewTopic(name, num_partitions=len(assignment),
                                   replica_assignment=assignment, config=config or {})],
                         operation_timeout=10, request_timeout=15)
    fs[name].result(20)
    wait_everywhere(cluster, name)


def kadmin(cluster):
    return KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=15000)


def wait_leader(cluster, topic, want, p=0, timeout=30):
    return wait_for(f"leader {want}", lambda: all(
        partition_md(b, topic, p).leader == want for b in cluster if b.running()),
        timeout=timeout)


def test_preferred_leader_election_gives_leadership_back(make_cluster):
    cluster = make_cluster(3)
    topic = unique("elect")
    create_assigned(cluster, topic, [[1, 2, 3], [2, 3, 1]])
    wait_leader(cluster, topic, 1)
    # A graceful stop moves partition 0's leadership away from its preferred replica.
    by_id(cluster, 1).stop()
    wait_leader(cluster, topic, 2)
    by_id(cluster, 1).start()
    wait_isr(cluster, topic, [1, 2, 3])
    assert partition_md(cluster[1], topic).leader == 2

    a = AdminClient({"bootstrap.servers": cluster.bootstrap})
    tps = [CkTopicPartition(topic, 0), CkTopicPartition(topic, 1)]
    result = a.elect_leaders(ElectionType.PREFERRED, tps).result(20)
    errors = {tp.partition: (e.code() if e else None) for tp, e in result.items()}
    # Partition 1's preferred replica leads already: ELECTION_NOT_NEEDED (84).
    assert errors == {0: None, 1: 84}, errors
    wait_leader(cluster, topic, 1, p=0)
    before = partition_md(cluster[0], topic).leader
    assert before == 1

    # kafka-python: the same election again is not needed; every partition (None) too.
    k = kadmin(cluster)
    try:
        r = k.elect_leaders(0, {topic: [0]}, raise_errors=False)
        codes = [p.error_code for t in r.replica_election_results for p in t.partition_result]
        assert codes == [ElectionNotNeededError.errno], codes
        k.elect_leaders(0, None)  # raises on anything but ELECTION_NOT_NEEDED
    finally:
        k.close()

    # Records still flow through the re-elected leader, with acks=all.
    p = producer(cluster[0], acks="all", **{"enable.idempotence": True})
    for i in range(100):
        p.produce(topic, value=f"e{i}".encode(), partition=0)
    assert p.flush(30) == 0
    assert consume_all(cluster[2].bootstrap, topic, 100) == [f"e{i}" for i in range(100)]


def test_the_controller_rebalances_leaders_to_preferred_replicas(make_cluster):
    cluster = make_cluster(3, {"leader.imbalance.check.interval.seconds": "1"})
    topic = unique("rebal")
    create_assigned(cluster, topic, [[1, 2, 3], [1, 3, 2], [2, 3, 1]])
    by_id(cluster, 1).stop()
    wait_for("partitions 0 and 1 led elsewhere", lambda: all(
        partition_md(cluster[1], topic, p).leader in (2, 3) for p in (0, 1)))
    by_id(cluster, 1).start()
    # Broker 1 leads none of the two partitions it prefers (100% > 10%): both come back.
    for p in (0, 1):
        wait_leader(cluster, topic, 1, p=p, timeout=30)
    assert partition_md(cluster[0], topic, 2).leader == 2


def test_unclean_election_by_an_operator(make_cluster):
    """With unclean election disabled, a partition whose only in-sync replica is gone stays
    offline; ElectLeaders UNCLEAN (kafka-python) makes an out-of-sync replica lead."""
    cluster = make_cluster(3)
    topic = unique("unclean")
    create_assigned(cluster, topic, [[1, 2]])
    by_id(cluster, 2).kill9()
    wait_isr([b for b in cluster if b.running()], topic, [1])
    p = producer(cluster[0], acks="all")
    p.produce(topic, value=b"only-on-1", partition=0)
    assert p.flush(30) == 0
    by_id(cluster, 1).kill9()
    by_id(cluster, 2).start()
    wait_for("no leader", lambda: partition_md(cluster[1], topic).leader == -1)
    k = kadmin(cluster)
    try:
        r = k.elect_leaders(1, {topic: [0]})
        codes = [p.error_code for t in r.replica_election_results for p in t.partition_result]
        assert codes == [0], codes
    finally:
        k.close()
    wait_leader(cluster, topic, 2)
    assert sorted(partition_md(cluster[1], topic).isrs) == [2]
    # Nothing is left to elect once a leader is live.
    k = kadmin(cluster)
    try:
        r = k.elect_leaders(1, {topic: [0]}, raise_errors=False)
        codes = [p.error_code for t in r.replica_election_results for p in t.partition_result]
        assert codes == [ElectionNotNeededError.errno], codes
    finally:
        k.close()


def test_a_reassignment_moves_a_partition_under_load_and_loses_nothing(make_cluster):
    cluster = make_cluster(3)
    topic = unique("move")
    create_assigned(cluster, topic, [[1, 2]], config={"min.insync.replicas": "2"})
    load = Load(cluster[0], topic, 1)
    try:
        wait_for("produce going on", lambda: load.count() > 500, timeout=30)
        k = kadmin(cluster)
        try:
            tp = TopicPartition(topic, 0)
            assert k.alter_partition_reassignments({tp: [3, 2]}) == {tp: None}
            wait_for("reassignment completed", lambda: not k.list_partition_reassignments(),
                     timeout=60)
            # Refusals: no such broker; nothing to cancel.
            r = k.alter_partition_reassignments({tp: [3, 9]})
            assert r == {tp: InvalidReplicationAssignmentError}, r
            r = k.alter_partition_reassignments({tp: None})
            assert r == {tp: NoReassignmentInProgressError}, r
        finally:
            k.close()
        md = partition_md(cluster[0], topic)
        assert md.replicas == [3, 2] and sorted(md.isrs) == [2, 3]
        assert md.leader in (2, 3)
        before = load.count()
        wait_for("produce going on after the move", lambda: load.count() > before + 300,
                 timeout=30)
    finally:
        load.finish()
    load.check(cluster.bootstrap)
    # Broker 1 deleted its copy; 2 and 3 hold the same bytes.
    wait_for("broker 1's copy deleted",
             lambda: not (by_id(cluster, 1).data_dir / f"{topic}-0").exists())
    holders = [by_id(cluster, 2), by_id(cluster, 3)]
    wait_same_logs(holders, topic)
    assert len(log_bytes(holders[0], topic)) > 0


def test_a_reassignment_in_progress_is_listed_and_can_be_cancelled(make_cluster):
    """The added replica's broker is paused, so the reassignment cannot complete: it is
    listed with its adding and removing replicas until cancelled, then the partition is as
    before and the paused broker, resumed, holds nothing of it."""
    cluster = make_cluster(3)
    a_id, b_id, added = 1, 2, 3
    topic = unique("cancel")
    create_assigned(cluster, topic, [[a_id, b_id]])
    p = producer(cluster[0], acks="all")
    for i in range(50):
        p.produce(topic, value=f"c{i}".encode(), partition=0)
    assert p.flush(30) == 0
    third = by_id(cluster, added)
    k = KafkaAdminClient(bootstrap_servers=[by_id(cluster, n).bootstrap for n in (a_id, b_id)],
                         request_timeout_ms=15000)
    # Every broker takes admin requests (each names itself the controller in Metadata):
    # kafka-python's are pinned to a broker that is not paused.
    k._controller_id = a_id
    tp = TopicPartition(topic, 0)
    try:
        third.proc.send_signal(signal.SIGSTOP)
        try:
            # The paused broker is still registered (its lease has not expired yet).
            assert k.alter_partition_reassignments({tp: [added, a_id]}) == {tp: None}
            listed = k.list_partition_reassignments()
            assert listed == {tp: {"replicas": [added, a_id, b_id], "adding_replicas": [added],
                                   "removing_replicas": [b_id]}}, listed
            assert k.list_partition_reassignments([TopicPartition(topic, 5)]) == {}
            time.sleep(3)  # past its lease: the reassignment cannot complete
            assert k.list_partition_reassignments({topic: [0]}) == listed
            md = partition_md(by_id(cluster, a_id), topic)
            assert md.replicas == [added, a_id, b_id] and sorted(md.isrs) == sorted([a_id, b_id])
            assert k.alter_partition_reassignments({tp: None}) == {tp: None}
            assert k.list_partition_reassignments() == {}
        finally:
            third.proc.send_signal(signal.SIGCONT)
    finally:
        k.close()
    md = partition_md(by_id(cluster, a_id), topic)
    assert md.replicas == [a_id, b_id] and sorted(md.isrs) == sorted([a_id, b_id]), md
    wait_for("the resumed broker holds nothing of the partition",
             lambda: not (third.data_dir / f"{topic}-0").exists())
    assert consume_all(cluster[1].bootstrap, topic, 50) == [f"c{i}" for i in range(50)]


def test_consumers_fetch_from_a_replica_in_their_rack(make_cluster):
    """KIP-392: with the rack-aware replica selector, librdkafka consumers with `client.rack`
    are sent by the leader to the in-sync replica in their rack and read everything from it;
    consumers in the leader's rack (or without a rack) read from the leader."""
    from conftest import free_port
    from helpers import consumer
    from test_metrics import scrape, value
    cluster = make_cluster(0)
    ports = {}
    for node in (1, 2, 3):
        ports[node] = free_port()
        cluster.add(node, {"broker.rack": f"r{node}", "metrics.listen": f"127.0.0.1:{ports[node]}",
                           "replica.selector.class":
                           "org.apache.kafka.common.replica.RackAwareReplicaSelector"})
    topic = unique("rack")
    create_assigned(cluster, topic, [[1, 2, 3]])
    wait_leader(cluster, topic, 1)
    p = producer(cluster[0], acks="all")
    for i in range(500):
        p.produce(topic, value=f"k{i}".encode(), partition=0)
    assert p.flush(30) == 0
    wait_isr(cluster, topic, [1, 2, 3])

    def served(node):
        return value(scrape(ports[node]), "strand_topic_bytes_out_total", topic=topic)

    want = [f"k{i}" for i in range(500)]
    assert consume_all(cluster.bootstrap, topic, 500, **{"client.rack": "r2"}) == want
    assert served(2) > 0 and served(1) == 0 and served(3) == 0, (served(1), served(2), served(3))
    assert consume_all(cluster.bootstrap, topic, 500, **{"client.rack": "r1"}) == want
    assert served(1) > 0 and served(3) == 0
    # Records produced later reach the follower-fetching consumer too (its high watermark).
    c = consumer(type("B", (), {"bootstrap": cluster.bootstrap})(), **{"client.rack": "r3"})
    c.assign([CkTopicPartition(topic, 0, 500)])
    p.produce(topic, value=b"late", partition=0)
    assert p.flush(30) == 0
    got = wait_for("the late record", lambda: next(
        (m.value() for m in [c.poll(0.5)] if m is not None and not m.error()), None), timeout=30)
    c.close()
    assert got == b"late"
    assert served(3) > 0


def test_a_new_replica_starts_at_the_leaders_log_start(make_cluster):
    """Records deleted at the leader (DeleteRecords, which its follower follows) are not there
    for a replica a reassignment adds: it starts at the leader's log start offset (the batch
    holding it kept whole), catches up, and the reassignment completes."""
    cluster = make_cluster(3)
    topic = unique("start")
    create_assigned(cluster, topic, [[1, 2]], config={"segment.bytes": "65536"})
    p = producer(cluster[0], acks="all", **{"batch.size": 16384})
    errors = []
    for i in range(2000):
        p.produce(topic, value=(f"s{i}-" + "y" * 40).encode(), partition=0,
                  on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and not errors, errors[:3]
    a = AdminClient({"bootstrap.servers": cluster.bootstrap})
    r = a.delete_records([CkTopicPartition(topic, 0, 1500)], request_timeout=15)
    assert list(r.values())[0].result(20).low_watermark == 1500
    # The follower's log start follows the leader's.
    start_file = by_id(cluster, 2).data_dir / f"{topic}-0" / "log-start-offset"
    wait_for("the follower's log start", lambda: start_file.exists()
             and start_file.read_text().split() == ["0", "1500"])
    k = kadmin(cluster)
    tp = TopicPartition(topic, 0)
    try:
        assert k.alter_partition_reassignments({tp: [3, 1]}) == {tp: None}
        wait_for("reassignment completed", lambda: not k.list_partition_reassignments(),
                 timeout=60)
    finally:
        k.close()
    md = partition_md(cluster[0], topic)
    assert md.replicas == [3, 1] and sorted(md.isrs) == [1, 3], md
    third = by_id(cluster, 3)
    start = (third.data_dir / f"{topic}-0" / "log-start-offset").read_text().split()
    assert start == ["0", "1500"], start
    segments = sorted(int(f.stem) for f in (third.data_dir / f"{topic}-0").glob("*.log"))
    # Nothing below the batch holding offset 1500 was copied (batches of about 300 records).
    assert 1000 < segments[0] <= 1500, segments
    # Broker 3 leads once broker 1 stops, and serves everything from the log start.
    by_id(cluster, 1).stop()
    wait_leader([b for b in cluster if b.running()], topic, 3)
    got = consume_all(third.bootstrap, topic, 500, **{"auto.offset.reset": "earliest"})
    assert got == [f"s{i}-" + "y" * 40 for i in range(1500, 2000)], got[:3]


def _replica_bytes(broker, topic):
    d = broker.data_dir / f"{topic}-0"
    return sum(f.stat().st_size for f in d.glob("*.log")) if d.exists() else 0


@pytest.mark.parametrize("side", ["leader", "follower"])
def test_a_replication_throttle_paces_a_reassignment(make_cluster, side):
    """kafka-reassign-partitions' throttle: a rate on the leader (or on the added follower)
    and the topic's throttled-replicas list for it hold the added replica's catch-up to about
    the rate; lifting the rate lets the reassignment complete. In-sync replicas are never
    throttled (acks=all keeps going)."""
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)
    cluster = make_cluster(3)
    topic = unique(f"thr-{side}")
    create_assigned(cluster, topic, [[1, 2]])
    p = producer(cluster[0], acks="all", **{"batch.size": 65536})
    payload = b"z" * 1000
    for i in range(12000):
        p.produce(topic, value=payload, partition=0)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    total = _replica_bytes(by_id(cluster, 1), topic)
    assert total > 11_000_000
    node, lst = (1, "leader") if side == "leader" else (3, "follower")
    a = AdminClient({"bootstrap.servers": cluster.bootstrap})

    def alter(rtype, name, key, value):
        op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
        r = ConfigResource(rtype, name, incremental_configs=[
            ConfigEntry(key, value or "", incremental_operation=op)])
        for f in a.incremental_alter_configs([r]).values():
            f.result(20)

    rate = 1_000_000
    alter(ResourceType.BROKER, str(node), f"{lst}.replication.throttled.rate", str(rate))
    alter(ResourceType.TOPIC, topic, f"{lst}.replication.throttled.replicas", f"0:{node}")
    k = kadmin(cluster)
    tp = TopicPartition(topic, 0)
    try:
        assert k.alter_partition_reassignments({tp: [3, 1]}) == {tp: None}
        t0 = time.monotonic()
        wait_for("the added replica fetching", lambda: _replica_bytes(by_id(cluster, 3), topic) > 0)
        time.sleep(4)
        moved = _replica_bytes(by_id(cluster, 3), topic)
        elapsed = time.monotonic() - t0
        # At most the rate over the time (plus a second's burst and one fetch of 1 MiB).
        assert moved <= rate * (elapsed + 1) + (1 << 20) + 200_000, (moved, elapsed)
        assert k.list_partition_reassignments(), "completed despite the throttle"
        # acks=all goes on meanwhile: the in-sync replicas are not throttled.
        p.produce(topic, value=b"during", partition=0)
        assert p.flush(30) == 0
        alter(ResourceType.BROKER, str(node), f"{lst}.replication.throttled.rate", None)
        wait_for("reassignment completed", lambda: not k.list_partition_reassignments(),
                 timeout=60)
    finally:
        k.close()
    md = partition_md(cluster[0], topic)
    assert md.replicas == [3, 1] and sorted(md.isrs) == [1, 3], md
    # Bad values are refused.
    bad = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[ConfigEntry(
        "leader.replication.throttled.replicas", "0:x",
        incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException):
        for f in a.incremental_alter_configs([bad]).values():
            f.result(20)
