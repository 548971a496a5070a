"""Cluster mode (docs/cluster.md): a real etcd and three `strand` processes.

Each broker registers under an etcd lease and hosts the partitions assigned to it; any broker
answers Metadata for the whole cluster, so clients bootstrap from any one and go to each
partition's leader. Group and transactional ids hash to coordinator slots, each held by one
live broker; FindCoordinator names it from any broker. What is not here yet (replication) is
listed in docs/cluster.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kwire
import kwire_txn
from conftest import Broker, BrokerError
from helpers import consumer, producer, unique


def metadata(broker_or_bootstrap, topic=None, timeout=10):
    bootstrap = getattr(broker_or_bootstrap, "bootstrap", broker_or_bootstrap)
    a = AdminClient({"bootstrap.servers": bootstrap})
    return a.list_topics(topic=topic, timeout=timeout)


def leaders(broker, topic):
    md = metadata(broker, topic)
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


def wait_for(what, predicate, timeout=15, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last and not isinstance(last, Exception):
                return last
        except KafkaException as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def wait_everywhere(brokers, topic):
    """Until every running broker's Metadata shows `topic` (created through another)."""
    wait_for(f"{topic} on every broker", lambda: all(
        metadata(b, topic).topics[topic].error is None for b in brokers if b.running()))


def create(broker, name, partitions, rf=1):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)],
                         operation_timeout=10, request_timeout=15)
    return fs[name].result(20)


def create_assigned(broker, name, assignment):
    """A topic whose partition p lives on broker assignment[p] (one replica each)."""
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    fs = a.create_topics([NewTopic(name, num_partitions=len(assignment),
                                   replica_assignment=[[n] for n in assignment])],
                         operation_timeout=10, request_timeout=15)
    return fs[name].result(20)


def coordinator(cluster, key, key_type=0):
    """The node every running broker names as `key`'s coordinator (0 = group, 1 = txn)."""
    def agreed():
        answers = {kwire_txn.find_coordinator(b.address, key, key_type)[:2]
                   for b in cluster if b.running()}
        if len(answers) == 1:
            err, node = answers.pop()
            return node if err == 0 else None
        return None
    return wait_for(f"one coordinator for {key}", agreed)


def key_coordinated_by(cluster, node, key_type=0, prefix="k"):
    for _ in range(200):
        k = unique(prefix)
        if coordinator(cluster, k, key_type) == node:
            return k
    raise AssertionError(f"no key coordinated by {node}")


def produce_all(bootstrap, topic, values, partitions):
    p = producer(type("B", (), {"bootstrap": bootstrap})(), acks="all")
    errors = []
    for i, v in enumerate(values):
        p.produce(topic, value=v.encode(), partition=i % partitions,
                  on_delivery=lambda e, m: errors.append(e) if e else None)
    assert p.flush(30) == 0
    assert errors == []


def consume_all(bootstrap, topic, partitions, n, timeout=30):
    c = consumer(type("B", (), {"bootstrap": bootstrap})(), **{"group.id": unique("g")})
    c.assign([TopicPartition(topic, i, 0) for i in range(partitions)])
    got = {}
    deadline = time.monotonic() + timeout
    while sum(len(v) for v in got.values()) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.setdefault(m.partition(), []).append(m.value().decode())
    c.close()
    return got


def test_any_broker_describes_the_whole_cluster(make_cluster):
    cluster = make_cluster(3)
    topic = unique("spread")
    create(cluster[0], topic, 6)
    for b in cluster:
        md = wait_for("every broker to know the topic",
                      lambda: (m := metadata(b, topic)).topics[topic].error is None and m)
        assert sorted(md.brokers) == [1, 2, 3]
        assert {(x.host, x.port) for x in md.brokers.values()} == {b.address for b in cluster}
        assert md.cluster_id == metadata(cluster[0]).cluster_id
    by = leaders(cluster[2], topic)
    # spread over every broker, each partition led by the broker that holds it
    assert sorted(set(by.values())) == [1, 2, 3], by
    for node, b in enumerate(cluster, start=1):
        held = sorted(p.name for p in b.data_dir.iterdir() if p.name.startswith(topic + "-"))
        assert held == sorted(f"{topic}-{p}" for p, leader in by.items() if leader == node)
    # DescribeCluster (KIP-700) lists every broker too
    a = AdminClient({"bootstrap.servers": cluster[1].bootstrap})
    desc = a.describe_cluster(request_timeout=10).result(15)
    assert sorted(n.id for n in desc.nodes) == [1, 2, 3]


def test_produce_and_consume_across_every_broker(make_cluster):
    cluster = make_cluster(3)
    topic = unique("xb")
    create(cluster[0], topic, 6)
    wait_everywhere(cluster, topic)
    values = [f"v{i}" for i in range(600)]
    # bootstrap from one broker only: the client finds every leader from its metadata
    produce_all(cluster[1].bootstrap, topic, values, 6)
    got = consume_all(cluster[2].bootstrap, topic, 6, len(values))
    assert sorted(v for vs in got.values() for v in vs) == sorted(values)
    for p, vs in got.items():
        assert vs == [f"v{i}" for i in range(p, 600, 6)], f"partition {p} out of order"


def test_kafka_python_and_kcat_work_against_the_cluster(make_cluster):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP

    cluster = make_cluster(3)
    topic = unique("kp")
    create(cluster[0], topic, 3)
    wait_everywhere(cluster, topic)
    p = KafkaProducer(bootstrap_servers=cluster[2].bootstrap, acks="all")
    for i in range(30):
        p.send(topic, value=f"k{i}".encode(), partition=i % 3).get(timeout=20)
    p.close()
    c = KafkaConsumer(bootstrap_servers=cluster[0].bootstrap, consumer_timeout_ms=5000)
    c.assign([KTP(topic, i) for i in range(3)])
    c.seek_to_beginning()
    seen = sorted(m.value.decode() for m in c)
    c.close()
    assert seen == sorted(f"k{i}" for i in range(30))
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat, "kcat is installed by scripts/install-test-deps.sh"
    if kcat:
        out = subprocess.run([kcat, "-b", cluster[1].bootstrap, "-L", "-J"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        import json
        md = json.loads(out)
        assert sorted(b["id"] for b in md["brokers"]) == [1, 2, 3]
        # produce to every partition and read them back, bootstrapping from one broker
        for part in range(3):
            subprocess.run([kcat, "-b", cluster[0].bootstrap, "-P", "-t", topic, "-p", str(part)],
                           input=f"kcat{part}\n", text=True, timeout=30, check=True)
        for part in range(3):
            out = subprocess.run([kcat, "-b", cluster[1].bootstrap, "-C", "-t", topic, "-p", str(part),
                                  "-o", "beginning", "-e", "-q"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.split()
            assert out[-1] == f"kcat{part}", out


def test_a_broker_that_does_not_host_a_partition_answers_not_leader(make_cluster):
    cluster = make_cluster(3)
    topic = unique("nl")
    create(cluster[0], topic, 3)
    wait_everywhere(cluster, topic)
    by = wait_for("leaders everywhere", lambda: (l := leaders(cluster[0], topic))
                  and all(v > 0 for v in l.values()) and l)
    batch = kwire.record_batch([kwire.Record(key=None, value=b"x")])
    for part, leader in by.items():
        other = next(b for n, b in enumerate(cluster, start=1) if n != leader)
        assert kwire.produce(other.address, topic, part, batch)[0] == 6  # NOT_LEADER_OR_FOLLOWER
        assert kwire.fetch(other.address, topic, part, 0).error_code == 6
        right = cluster[leader - 1]
        assert kwire.produce(right.address, topic, part, batch)[0] == 0


def test_replication_factor_beyond_the_live_brokers_is_refused(make_cluster):
    cluster = make_cluster(2)
    a = AdminClient({"bootstrap.servers": cluster[0].bootstrap})
    name = unique("rf3")
    fs = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=3)],
                         request_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs[name].result(20)
    assert e.value.args[0].name() == "INVALID_REPLICATION_FACTOR"
    # As many replicas as brokers is fine (test_replication.py replicates them).
    name = unique("rf2")
    create(cluster[0], name, 1, rf=2)
    wait_everywhere(cluster, name)
    assert sorted(metadata(cluster[1], name).topics[name].partitions[0].replicas) == [1, 2]


def test_a_second_broker_with_the_same_node_id_refuses_to_start(make_cluster):
    cluster = make_cluster(1)
    twin = cluster.add(1, start=False)
    # It waits one lease TTL (a crashed predecessor's registration would expire), then exits.
    try:
        twin.start(timeout=20)
    except BrokerError:
        pass
    if twin.proc is not None:
        assert twin.proc.wait(20) != 0
    assert "node.id 1 is already registered by a live broker" in twin.stderr_tail()
    assert cluster[0].running()
    assert sorted(metadata(cluster[0]).brokers) == [1]


def test_a_killed_brokers_partitions_are_offline_until_it_returns(make_cluster):
    cluster = make_cluster(3)
    topic = unique("off")
    create(cluster[0], topic, 3)
    by = wait_for("leaders", lambda: (l := leaders(cluster[0], topic))
                  and sorted(l.values()) == [1, 2, 3] and l)
    values = [f"o{i}" for i in range(90)]
    produce_all(cluster[0].bootstrap, topic, values, 3)
    victim = cluster[2]
    lost = [p for p, n in by.items() if n == 3]
    t0 = time.monotonic()
    victim.kill9()
    # the registration expires with its lease (broker.session.timeout.ms, 2 s)
    md = wait_for("node 3 to leave", lambda: (m := metadata(cluster[0], topic))
                  and sorted(m.brokers) == [1, 2] and m, timeout=10)
    gone_after = time.monotonic() - t0
    assert gone_after < 6, gone_after
    for p in lost:
        part = md.topics[topic].partitions[p]
        assert part.leader == -1 and part.error is not None
        assert part.error.name() == "LEADER_NOT_AVAILABLE"
    # the others keep serving
    assert kwire.produce(cluster[0].address, topic, next(p for p, n in by.items() if n == 1),
                         kwire.record_batch([kwire.Record(key=None, value=b"y")]))[0] == 0
    victim.start()
    wait_for("node 3 back", lambda: leaders(cluster[1], topic) == by)
    got = consume_all(cluster[1].bootstrap, topic, 3, len(values) + 1)
    for p in lost:
        assert got[p] == [f"o{i}" for i in range(p, 90, 3)]
    # The controller moved leadership twice (to none, then back): the leader epoch is 2 now,
    # and what the returned leader appends is stamped with it.
    p = lost[0]
    err, base = kwire.produce(victim.address, topic, p,
                              kwire.record_batch([kwire.Record(key=None, value=b"back")]))
    assert err == 0
    f = wait_for("the new record", lambda: (r := kwire.fetch(victim.address, topic, p, base))
                 and r.batches() and r)
    assert f.batches()[0].partition_leader_epoch == 2
    first = kwire.fetch(victim.address, topic, p, 0).batches()[0]
    assert first.partition_leader_epoch == 0


def test_the_controller_is_elected_again_when_it_dies(make_cluster, strand_bin):
    """One broker is the controller (etcd election). Killed, another is elected once its
    lease expires, and moves the dead broker's partitions offline; when it returns, it is
    a candidate again and gets its partitions back."""
    cluster = make_cluster(3)

    def status(b):
        p = subprocess.run([str(strand_bin), "cluster", "status", "--bootstrap-server", b.bootstrap,
                            "--timeout", "10", "--json"], capture_output=True, text=True, timeout=30,
                           env={"PATH": "/usr/bin:/bin"})
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    # every broker names the same controller
    first = wait_for("one controller", lambda: len(c := {status(b)["controller_id"] for b in cluster}) == 1
                     and c.pop())
    victim = cluster[first - 1]
    survivors = [b for b in cluster if b is not victim]
    topic = unique("ctl")
    create_assigned(survivors[0], topic, [1, 2, 3])
    wait_everywhere(cluster, topic)
    victim.kill9()
    second = wait_for("another controller", lambda: len(c := {status(b)["controller_id"] for b in survivors}) == 1
                      and (n := c.pop()) != first and n, timeout=15)
    assert second in {int(b.settings["node.id"]) for b in survivors}
    # the new controller moved the dead broker's partition offline (LEADER_NOT_AVAILABLE)
    wait_for("offline partition", lambda: status(survivors[0])["offline_partitions"] == 1)
    assert leaders(survivors[1], topic)[first - 1] == -1
    victim.start()
    wait_for("its partition back", lambda: leaders(survivors[1], topic) == {0: 1, 1: 2, 2: 3})
    assert status(victim)["controller_id"] == second
    err, _ = kwire.produce(victim.address, topic, first - 1,
                           kwire.record_batch([kwire.Record(key=None, value=b"x")]))
    assert err == 0


def test_brokers_ride_out_an_etcd_restart(make_cluster):
    cluster = make_cluster(2)
    topic = unique("er")
    create(cluster[0], topic, 2)
    wait_everywhere(cluster, topic)
    produce_all(cluster[0].bootstrap, topic, ["before0", "before1"], 2)
    cluster.etcd.stop()
    time.sleep(1.0)
    cluster.etcd.start()
    # leases survive a restart of the same etcd data; writes go on once etcd answers
    produce_all(cluster[1].bootstrap, topic, ["after0", "after1"], 2)
    wait_for("both brokers registered", lambda: sorted(metadata(cluster[0]).brokers) == [1, 2])
    # a topic created after the restart reaches the other broker through the resumed watch
    t2 = unique("er2")
    create(cluster[1], t2, 2)
    wait_for("the new topic on broker 1", lambda: metadata(cluster[0], t2).topics[t2].error is None)
    got = consume_all(cluster[0].bootstrap, topic, 2, 4)
    assert sorted(v for vs in got.values() for v in vs) == ["after0", "after1", "before0", "before1"]


def test_a_data_dir_of_another_cluster_is_refused(make_cluster, make_broker, tmp_path):
    cluster = make_cluster(1)
    create(cluster[0], unique("keep"), 1)
    cluster[0].stop()
    # the same data dir pointed at a fresh etcd prefix (another cluster): refused
    strange = Broker(cluster[0].binary, tmp_path / "again",
                     {"node.id": 1, "etcd.endpoints": cluster.etcd.endpoint,
                      "etcd.prefix": "/another"})
    strange.data_dir = cluster[0].data_dir
    with pytest.raises(BrokerError) as e:
        strange.start(timeout=20)
    assert "refusing to start" in str(e.value)
    strange.close()
    assert any(p.name.startswith("keep-") for p in cluster[0].data_dir.iterdir())


def test_cli_shows_the_real_cluster(make_cluster, strand_bin):
    cluster = make_cluster(3, {"broker.rack": "r1"})
    topic = unique("cli")
    create(cluster[0], topic, 6)
    wait_everywhere(cluster, topic)

    def run(b, *args):
        p = subprocess.run([str(strand_bin), *args, "--bootstrap-server", b.bootstrap, "--timeout", "10",
                            "--json"], capture_output=True, text=True, timeout=30,
                           env={"PATH": "/usr/bin:/bin"})
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    s = run(cluster[1], "cluster", "status")
    assert [b["id"] for b in s["brokers"]] == [1, 2, 3]
    assert {b["rack"] for b in s["brokers"]} == {"r1"}
    assert s["offline_partitions"] == 0
    d = run(cluster[2], "topics", "describe", topic)
    d = d[0] if isinstance(d, list) else d
    assert sorted({p["leader"] for p in d["partitions"]}) == [1, 2, 3]
    cluster[2].kill9()
    wait_for("node 3 to leave", lambda: run(cluster[0], "cluster", "status")["offline_partitions"] == 2)
    s = run(cluster[0], "cluster", "status")
    assert [b["id"] for b in s["brokers"]] == [1, 2]


def test_writes_stop_while_etcd_is_unreachable_and_resume_after(make_cluster):
    """A broker whose lease may have expired (etcd unreachable past its safety margin) must not
    acknowledge writes: another broker may lead its partitions by then. When etcd answers
    again it renews or registers again and carries on, without an operator."""
    import signal as sig
    cluster = make_cluster(1)
    b = cluster[0]
    topic = unique("eu")
    create(b, topic, 1)
    batch = kwire.record_batch([kwire.Record(key=None, value=b"z")])
    assert kwire.produce(b.address, topic, 0, batch)[0] == 0
    cluster.etcd.proc.send_signal(sig.SIGSTOP)
    try:
        # liveness ends 1.5 s after the last renewal etcd answered (TTL 2 s less 25 %)
        code = wait_for("produce refused", lambda: (c := kwire.produce(b.address, topic, 0, batch)[0]) != 0 and c,
                        timeout=10)
        assert code == 6, code  # NOT_LEADER_OR_FOLLOWER: retriable, the client retries
    finally:
        cluster.etcd.proc.send_signal(sig.SIGCONT)
    wait_for("produce accepted again", lambda: kwire.produce(b.address, topic, 0, batch)[0] == 0, timeout=20)
    # and it is registered (again)
    assert "/strand-test/brokers/1" in cluster.etcd.get_prefix("/strand-test/brokers/")


def test_committed_offsets_are_kept_in_etcd(make_cluster):
    """OffsetCommit goes to etcd (concurrent commits share transactions), 16 partitions of a
    topic per key; a restarted broker loads them back. (Coordinators that move between live
    brokers come with the coordinator slots, docs/cluster.md.)"""
    cluster = make_cluster(1)
    b = cluster[0]
    topic = unique("oc")
    create(b, topic, 3)
    groups = [unique("g") for _ in range(8)]
    import threading

    def commit(g, base):
        c = consumer(b, **{"group.id": g})
        c.commit(offsets=[TopicPartition(topic, p, base + p) for p in range(3)], asynchronous=False)
        c.close()

    threads = [threading.Thread(target=commit, args=(g, 10 * i)) for i, g in enumerate(groups)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = cluster.etcd.get_prefix(f"{cluster.prefix}/offsets/")
    # One key per group: its 3 partitions are in bucket 0 of the topic.
    assert len(keys) == len(groups), keys
    for key, value in keys.items():
        assert key.endswith(f"/{topic}/b0"), key
        assert sorted(json.loads(value)) == ["0", "1", "2"], value
    b.restart(graceful=False)
    for i, g in enumerate(groups):
        c = consumer(b, **{"group.id": g})
        got = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=15)
        c.close()
        assert [tp.offset for tp in got] == [10 * i + p for p in range(3)]


def test_a_broker_paused_past_its_lease_registers_again_with_a_new_epoch(make_cluster):
    import signal as sig
    cluster = make_cluster(2)
    b = cluster[1]
    key = f"{cluster.prefix}/brokers/2"
    before = wait_for("broker 2's registration", lambda: key in (kv := cluster.etcd.get_prefix(key))
                      and json.loads(kv[key])["epoch"], timeout=10)
    b.proc.send_signal(sig.SIGSTOP)
    try:
        wait_for("the lease to expire", lambda: key not in cluster.etcd.get_prefix(key), timeout=15)
        assert sorted(metadata(cluster[0]).brokers) == [1]
    finally:
        b.proc.send_signal(sig.SIGCONT)
    after = wait_for("registered again", lambda: key in (kv := cluster.etcd.get_prefix(key))
                     and json.loads(kv[key])["epoch"], timeout=15)
    assert after > before
    wait_for("back in Metadata", lambda: sorted(metadata(cluster[0]).brokers) == [1, 2])
    topic = unique("pz")
    create(cluster[0], topic, 2)
    wait_for("the topic on broker 2", lambda: metadata(b, topic).topics[topic].error is None)
    produce_all(b.bootstrap, topic, ["a", "b"], 2)


def test_assignments_cannot_overload_another_broker(make_cluster):
    cluster = make_cluster(2, {"max.broker.partitions": 4})
    a = AdminClient({"bootstrap.servers": cluster[0].bootstrap})
    name = unique("ov")
    fs = a.create_topics([NewTopic(name, num_partitions=5, replica_assignment=[[2]] * 5)], request_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs[name].result(20)
    assert e.value.args[0].name() == "POLICY_VIOLATION"
    ok = unique("ok")
    a.create_topics([NewTopic(ok, num_partitions=4, replica_assignment=[[2]] * 4)], request_timeout=15)[ok].result(20)
    # broker 2 is full now: even one more partition on it through broker 1 is refused
    more = unique("more")
    fs = a.create_topics([NewTopic(more, num_partitions=1, replica_assignment=[[2]])], request_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs[more].result(20)
    assert e.value.args[0].name() == "POLICY_VIOLATION"


def test_group_members_on_different_brokers_form_one_group(make_cluster):
    """Consumers of one group bootstrapped from three different brokers all find the group's
    one coordinator and share the partitions (no split groups)."""
    cluster = make_cluster(3)
    topic = unique("grp")
    create(cluster[0], topic, 6)
    wait_everywhere(cluster, topic)
    group = unique("g")
    coordinator(cluster, group)
    members = [consumer(b, **{"group.id": group, "enable.partition.eof": False,
                              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
               for b in cluster]
    for c in members:
        c.subscribe([topic])

    def balanced():
        for c in members:
            c.poll(0.1)
        owned = [sorted(tp.partition for tp in c.assignment()) for c in members]
        flat = sorted(p for o in owned for p in o)
        return flat == list(range(6)) and all(owned) and owned
    owned = wait_for("one group over three brokers", balanced, timeout=40, interval=0.05)
    assert sum(len(o) for o in owned) == 6
    values = [f"m{i}" for i in range(60)]
    produce_all(cluster[1].bootstrap, topic, values, 6)
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 60 and time.monotonic() < deadline:
        for c in members:
            m = c.poll(0.1)
            if m is not None and not m.error():
                got.append(m.value().decode())
    for c in members:
        c.close()
    assert sorted(got) == sorted(values)


def test_a_group_resumes_from_its_commits_after_its_coordinator_is_killed(make_cluster):
    """kill -9 of a group's coordinator: another broker takes its slot within seconds, every
    committed offset is there, and the running consumer carries on and commits again."""
    cluster = make_cluster(3)
    topic = unique("ck")
    create_assigned(cluster[0], topic, [1, 2, 1, 2])
    wait_everywhere(cluster, topic)
    group = key_coordinated_by(cluster, 3, prefix="g")
    values = [f"v{i}" for i in range(80)]
    produce_all(cluster[0].bootstrap, topic, values, 4)
    c = consumer(cluster[0], **{"group.id": group, "enable.partition.eof": False,
                                "enable.auto.offset.store": True,
                                "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe([topic])
    seen = []
    deadline = time.monotonic() + 40
    while len(seen) < 40 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            seen.append(m)
    assert len(seen) == 40
    c.commit(asynchronous=False)
    before = {tp.partition: tp.offset
              for tp in c.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)}
    assert sum(o for o in before.values() if o > 0) == 40

    t0 = time.monotonic()
    cluster[2].kill9()
    new = wait_for("a new coordinator", lambda: coordinator(cluster, group) in (1, 2), timeout=15)
    took = time.monotonic() - t0
    assert new in (1, 2)
    assert took < 10, took

    # The commits made before the kill are all there, read through the new coordinator.
    probe = consumer(cluster[1], **{"group.id": group})
    after = {tp.partition: tp.offset for tp in
             wait_for("committed offsets", lambda: probe.committed(
                 [TopicPartition(topic, p) for p in range(4)], timeout=5), timeout=20)}
    probe.close()
    assert after == before

    # The running consumer finds the new coordinator (rejoining: membership is not kept),
    # reads on and commits the rest.
    def drained():
        for _ in range(10):
            m = c.poll(0.05)
            if m is not None and not m.error():
                seen.append(m)
        try:
            c.commit(asynchronous=False)
        except KafkaException as e:
            return e  # nothing new stored yet, or the group is rebalancing
        got = c.committed([TopicPartition(topic, p) for p in range(4)], timeout=5)
        return [tp.offset for tp in got] == [20, 20, 20, 20]
    wait_for("the rest read and committed through the new coordinator", drained, timeout=60,
             interval=0)
    c.close()
    # Records after the last commit before the kill may be read twice (at-least-once), none lost.
    assert {m.value().decode() for m in seen} == set(values)
    final = consumer(cluster[0], **{"group.id": group})
    got = final.committed([TopicPartition(topic, p) for p in range(4)], timeout=15)
    final.close()
    assert [tp.offset for tp in got] == [20, 20, 20, 20]


def test_transactions_span_partitions_on_different_brokers(make_cluster):
    """One transaction writes to partitions on three brokers and commits a group's offsets:
    every partition gets its marker (a read_committed consumer reaches the end of each), the
    aborted transaction stays invisible, and the offsets commit with the transaction."""
    from confluent_kafka import Producer
    cluster = make_cluster(3)
    topic = unique("tx")
    create_assigned(cluster[0], topic, [1, 2, 3])
    wait_everywhere(cluster, topic)
    tid = unique("tid")
    group = unique("g")
    txn_node = coordinator(cluster, tid, 1)
    group_node = coordinator(cluster, group, 0)
    p = Producer({"bootstrap.servers": cluster[0].bootstrap, "transactional.id": tid,
                  "linger.ms": 5})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(30):
        p.produce(topic, value=f"c{i}".encode(), partition=i % 3)
    meta = consumer(cluster[1], **{"group.id": group}).consumer_group_metadata()
    p.send_offsets_to_transaction([TopicPartition(topic, 0, 7)], meta, 30)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(9):
        p.produce(topic, value=f"a{i}".encode(), partition=i % 3)
    p.send_offsets_to_transaction([TopicPartition(topic, 0, 99)], meta, 30)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic, value=b"last", partition=2)
    p.commit_transaction(30)

    c = consumer(cluster[2], **{"isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, i, 0) for i in range(3)])
    got = {0: [], 1: [], 2: []}
    eof = set()
    deadline = time.monotonic() + 30
    while len(eof) < 3 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF: the last stable offset reached
                eof.add(m.partition())
            continue
        got[m.partition()].append(m.value().decode())
    c.close()
    assert eof == {0, 1, 2}, (eof, txn_node, group_node)
    for part in range(3):
        expected = [f"c{i}" for i in range(part, 30, 3)] + (["last"] if part == 2 else [])
        assert got[part] == expected
    probe = consumer(cluster[0], **{"group.id": group})
    committed = probe.committed([TopicPartition(topic, 0)], timeout=15)
    probe.close()
    assert committed[0].offset == 7


def test_transactions_survive_their_coordinators_death(make_cluster):
    """kill -9 of a transaction coordinator with a transaction open: another broker takes the
    slot with the transactional id's state from etcd; the next producer incarnation is fenced
    in and the open transaction aborted, and what was committed before stays committed."""
    from confluent_kafka import Producer
    cluster = make_cluster(3)
    topic = unique("txk")
    create_assigned(cluster[0], topic, [1, 2])
    wait_everywhere(cluster, topic)
    tid = key_coordinated_by(cluster, 3, key_type=1, prefix="tid")
    conf = {"bootstrap.servers": cluster[0].bootstrap, "transactional.id": tid, "linger.ms": 5}
    p = Producer(conf)
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, value=f"c{i}".encode(), partition=i % 2)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, value=f"open{i}".encode(), partition=i % 2)
    assert p.flush(30) == 0
    cluster[2].kill9()
    wait_for("a new transaction coordinator", lambda: coordinator(cluster, tid, 1) in (1, 2))
    p2 = Producer(conf)
    p2.init_transactions(30)  # fences the first incarnation, aborting its open transaction
    p2.begin_transaction()
    p2.produce(topic, value=b"after", partition=1)
    p2.commit_transaction(30)
    with pytest.raises(KafkaException):
        p.commit_transaction(10)

    c = consumer(cluster[1], **{"isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, i, 0) for i in range(2)])
    got, eof = [], set()
    deadline = time.monotonic() + 30
    while len(eof) < 2 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:
                eof.add(m.partition())
            continue
        got.append(m.value().decode())
    c.close()
    assert eof == {0, 1}
    assert sorted(got) == sorted([f"c{i}" for i in range(10)] + ["after"])


def test_brokers_compact_etcd_history(make_cluster):
    """etcd.compaction.interval.ms: brokers compact etcd's history (keeping one interval), so
    old revisions are gone while the current keys and the brokers' watches carry on."""
    cluster = make_cluster(2, {"etcd.compaction.interval.ms": 1000})
    key = f"{cluster.prefix}/cluster/id"

    def status():
        out = subprocess.run(["etcdctl", "--endpoints", cluster.etcd.endpoint, "endpoint", "status",
                              "-w", "json"], capture_output=True, text=True, timeout=10, check=True)
        return json.loads(out.stdout)[0]["Status"]["header"]["revision"]
    first = status()
    for i in range(3):
        create(cluster[0], unique("cmp"), 1)
    # After two rounds the history before the first topics is compacted away.
    def compacted():
        r = subprocess.run(["etcdctl", "--endpoints", cluster.etcd.endpoint, "get", key,
                            f"--rev={first}"], capture_output=True, text=True, timeout=10)
        return r.returncode != 0 and "compacted" in r.stderr
    wait_for("etcd history compacted", compacted, timeout=15)
    assert cluster.etcd.get_prefix(key)
    # The watch still works: a topic created through one broker reaches the other.
    late = unique("late")
    create(cluster[1], late, 1)
    wait_for("the topic on broker 1", lambda: metadata(cluster[0], late).topics[late].error is None)


def test_kafka_python_group_over_the_cluster(make_cluster):
    """kafka-python consumers of one group, bootstrapped from different brokers, share the
    partitions through the group's coordinator and commit; a new member resumes from there."""
    from kafka import KafkaConsumer, KafkaProducer

    cluster = make_cluster(3)
    topic = unique("kpg")
    create(cluster[0], topic, 3)
    wait_everywhere(cluster, topic)
    group = unique("g")
    p = KafkaProducer(bootstrap_servers=cluster[2].bootstrap, acks="all")
    for i in range(30):
        p.send(topic, value=f"k{i}".encode(), partition=i % 3)
    p.flush(30)
    p.close()

    def member(b):
        return KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=6000, heartbeat_interval_ms=500,
                             consumer_timeout_ms=500)
    members = [member(cluster[0]), member(cluster[1])]
    # Each member polls in a thread of its own, as applications do. Polling both from one
    # thread in turn livelocks kafka-python 3.0.12: a JoinGroup+SyncGroup that completes
    # while its consumer is not inside poll() is thrown away and joined again
    # (`_join_task.is_done` in join_group_async), and the leader's fresh JoinGroup starts
    # another rebalance; so it goes on forever, against Kafka as well (a leader's JoinGroup
    # in a Stable group always starts a rebalance).
    got = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def run(c):
        while time.monotonic() < deadline:
            with lock:
                if len(got) >= 30:
                    return
            for batch in c.poll(timeout_ms=500).values():
                with lock:
                    got.extend(m.value.decode() for m in batch)
    threads = [threading.Thread(target=run, args=(c,)) for c in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(f"k{i}" for i in range(30))
    owned = [sorted(tp.partition for tp in c.assignment()) for c in members]
    assert sorted(x for o in owned for x in o) == [0, 1, 2] and all(owned), owned
    wait_for("commits", lambda: [c.commit() for c in members] and True)
    for c in members:
        c.close()
    again = member(cluster[2])
    rest = []
    deadline = time.monotonic() + 40
    while len(again.assignment()) < 3 and time.monotonic() < deadline:
        rest.extend(m for batch in again.poll(timeout_ms=200).values() for m in batch)
    rest.extend(m for batch in again.poll(timeout_ms=1000).values() for m in batch)
    committed = {tp: again.committed(tp) for tp in again.assignment()}
    again.close()
    assert rest == []
    assert sorted(committed.values()) == [10, 10, 10], committed


def offset_commit_v2(sock_or_addr, group, topic, partition, offset):
    """A simple (generation -1) OffsetCommit v2 of one partition; returns its error code."""
    from kwire import array, i32, i64, request, roundtrip, string
    body = (string(group) + i32(-1) + string("") + i64(-1)
            + array([string(topic) + array([i32(partition) + i64(offset) + string("")])]))
    r = roundtrip(sock_or_addr, request(8, 2, 4242, body))
    assert r.i32() == 1  # topics
    r.string()
    assert r.i32() == 1  # partitions
    r.i32()
    return r.i16()


def test_a_paused_coordinator_cannot_overwrite_its_successors_commits(make_cluster):
    """SIGSTOP of a group coordinator past its lease: another broker takes the slot and takes
    commits; a commit that reached the paused broker is refused when it resumes (it is not
    live, and its slot claim is gone from etcd), so the successor's commit stands."""
    import signal as sig
    cluster = make_cluster(3)
    topic = unique("ps")
    create_assigned(cluster[0], topic, [1, 2])
    wait_everywhere(cluster, topic)
    group = key_coordinated_by(cluster, 3, prefix="g")
    victim = cluster[2]
    # COORDINATOR_LOAD_IN_PROGRESS (14) while the victim is still loading the slot it claimed.
    wait_for("the victim takes commits", lambda: offset_commit_v2(
        victim.address, group, topic, 0, 5) == 0)
    stale = kwire.connect(victim.address)
    victim.proc.send_signal(sig.SIGSTOP)
    try:
        survivors = cluster[:2]
        new = wait_for("another coordinator", lambda: coordinator(survivors, group) in (1, 2)
                       and coordinator(survivors, group))
        # COORDINATOR_LOAD_IN_PROGRESS (14) until the new holder has loaded the slot.
        wait_for("the commit at the new coordinator", lambda: offset_commit_v2(
            cluster[new - 1].address, group, topic, 0, 7) == 0)
        # A commit for the old coordinator, read by it only when it resumes.
        from kwire import array, i32, i64, request, string
        body = (string(group) + i32(-1) + string("") + i64(-1)
                + array([string(topic) + array([i32(0) + i64(3) + string("")])]))
        stale.sendall(request(8, 2, 77, body))
    finally:
        victim.proc.send_signal(sig.SIGCONT)
    r = kwire.Reader(kwire.recv_frame(stale))
    assert r.i32() == 77
    r.i32(), r.string(), r.i32(), r.i32()
    assert r.i16() == 16  # NOT_COORDINATOR
    stale.close()
    # The resumed broker registers again and may take the slot back (it is the slot's preferred
    # owner): whoever coordinates the group now has the successor's commit.
    probe = consumer(cluster[0], **{"group.id": group})
    got = wait_for("committed offsets", lambda: probe.committed([TopicPartition(topic, 0)],
                                                                timeout=5), timeout=20)
    probe.close()
    assert got[0].offset == 7


def test_brokers_that_join_take_their_slots_with_the_offsets(make_cluster):
    """One broker holds every slot; as two more join, it hands a share of its slots over
    (unload, release, claim, load): every group's commits are read back through whichever
    broker coordinates it afterwards, and the coordinators are spread over all three."""
    cluster = make_cluster(1)
    topic = unique("ho")
    create(cluster[0], topic, 1)
    groups = [unique("g") for _ in range(24)]
    for i, g in enumerate(groups):
        assert offset_commit_v2(cluster[0].address, g, topic, 0, 100 + i) == 0
    cluster.add(2)
    cluster.add(3)
    nodes = {g: coordinator(cluster, g) for g in groups}
    assert set(nodes.values()) == {1, 2, 3}, nodes
    for i, g in enumerate(groups):
        probe = consumer(cluster[2], **{"group.id": g})
        got = wait_for(f"offsets of {g}", lambda: probe.committed([TopicPartition(topic, 0)],
                                                                  timeout=5), timeout=20)
        probe.close()
        assert got[0].offset == 100 + i, (g, nodes[g])


def test_a_broker_started_before_etcd_waits_for_it(make_cluster):
    """Brokers and etcd started together (docker compose): a broker that finds etcd not yet
    answering waits for it instead of refusing to start."""
    import shlex
    cluster = make_cluster(0)
    e = cluster.etcd
    e.stop()
    peer, client = f"http://127.0.0.1:{e.peer_port}", f"http://{e.endpoint}"
    cmd = ["etcd", "--name", "e0", "--data-dir", str(e.workdir / "data"),
           "--listen-client-urls", client, "--advertise-client-urls", client,
           "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
           "--initial-cluster", f"e0={peer}"]
    # etcd comes up 2 s after the broker was started (from this thread: the fixtures' processes
    # die with the thread that started them).
    late = subprocess.Popen(["sh", "-c", "sleep 2; exec " + shlex.join(cmd)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        b = cluster.add(1)
        assert sorted(metadata(b).brokers) == [1]
        topic = unique("late")
        create(b, topic, 2)
        wait_everywhere(cluster, topic)
        assert "waiting for etcd" in b.stderr_tail()
    finally:
        for x in cluster:
            x.stop()
        late.terminate()
        late.wait(10)
