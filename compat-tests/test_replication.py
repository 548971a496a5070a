"""Replication against a real etcd and three strand processes (issue 10): topics with
replication factor 3, followers fetching from their leader, the ISR and min.insync.replicas,
and kill -9 of a leader under an idempotent acks=all producer losing nothing.

Replicas are compared byte for byte: a follower keeps every byte of the leader's batches,
so the segment files of in-sync replicas are identical once they have caught up.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import consumer, producer, unique

from test_cluster import metadata, wait_everywhere, wait_for


def create(broker, name, partitions=1, rf=3, config=None):
    # The broker places replicas on the brokers it has heard of: wait for them all.
    wait_for(f"{rf} brokers", lambda: len(metadata(broker).brokers) >= rf)
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf,
                                   config=config or {})],
                         operation_timeout=10, request_timeout=15)
    return fs[name].result(20)


def partition_md(broker, topic, p=0):
    return metadata(broker, topic).topics[topic].partitions[p]


def by_id(cluster, node):
    return next(b for b in cluster if int(b.settings["node.id"]) == node)


def log_bytes(broker, topic, p=0):
    d = broker.data_dir / f"{topic}-{p}"
    return b"".join(f.read_bytes() for f in sorted(d.glob("*.log")))


def wait_isr(cluster, topic, want, p=0, timeout=30):
    """Until every running broker's Metadata shows the ISR `want` (sorted)."""
    def ok():
        isrs = {tuple(sorted(partition_md(b, topic, p).isrs)) for b in cluster if b.running()}
        return isrs == {tuple(sorted(want))} or None
    return wait_for(f"ISR {want}", ok, timeout=timeout)


def wait_same_logs(cluster, topic, p=0, timeout=30):
    running = [b for b in cluster if b.running()]

    def same():
        logs = [log_bytes(b, topic, p) for b in running]
        return all(x == logs[0] for x in logs) and logs[0] or None
    return wait_for("replicas byte-identical", same, timeout=timeout)


def consume_all(bootstrap, topic, n, timeout=30, **conf):
    c = consumer(type("B", (), {"bootstrap": bootstrap})(), **conf)
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        out.append(m.value().decode())
    c.close()
    return out


def test_a_replicated_topic_is_byte_identical_on_every_replica(make_cluster):
    cluster = make_cluster(3)
    topic = unique("rf3")
    create(cluster[0], topic, partitions=2, rf=3)
    wait_everywhere(cluster, topic)
    for p in (0, 1):
        md = partition_md(cluster[1], topic, p)
        assert sorted(md.replicas) == [1, 2, 3]
        assert sorted(md.isrs) == [1, 2, 3]
    prod = producer(cluster[2], acks="all", **{"enable.idempotence": True})
    for i in range(2000):
        prod.produce(topic, value=f"v{i}".encode(), partition=i % 2)
        if i % 500 == 0:
            prod.poll(0)
    assert prod.flush(30) == 0
    for p in (0, 1):
        data = wait_same_logs(cluster, topic, p)
        assert len(data) > 1000
        # Every follower stamps the leader's bytes, and each replica's epoch cache agrees.
        epochs = {(b.data_dir / f"{topic}-{p}" / "leader-epoch-checkpoint").read_text()
                  for b in cluster}
        assert len(epochs) == 1, epochs
    got = consume_all(cluster[0].bootstrap, topic, 1000)
    assert got == [f"v{i}" for i in range(0, 2000, 2)]


def test_killing_the_leader_under_an_acks_all_idempotent_producer_loses_nothing(make_cluster):
    cluster = make_cluster(3)
    topic = unique("kill")
    create(cluster[0], topic, rf=3, config={"min.insync.replicas": "2"})
    wait_everywhere(cluster, topic)
    leader = partition_md(cluster[0], topic).leader
    survivor = next(b for b in cluster if int(b.settings["node.id"]) != leader)
    prod = producer(survivor, acks="all", **{"enable.idempotence": True, "linger.ms": 2,
                                            "message.timeout.ms": 60000,
                                            "retry.backoff.ms": 50})
    acked, failed = [], []

    def report(err, msg):
        (failed if err else acked).append(msg.value().decode() if not err else str(err))

    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            prod.produce(topic, value=f"m{i}".encode(), partition=0, on_delivery=report)
            prod.poll(0)
            i += 1
            time.sleep(0.002)
        prod.flush(60)
    t = threading.Thread(target=produce)
    t.start()
    wait_for("records acknowledged", lambda: len(acked) > 300, timeout=30)
    by_id(cluster, leader).kill9()
    before = len(acked)
    wait_for("acknowledged on the new leader", lambda: len(acked) > before + 300, timeout=30)
    stop.set()
    t.join(90)
    assert not failed, failed[:5]
    new_leader = partition_md(survivor, topic).leader
    assert new_leader not in (-1, leader)
    # Every acknowledged record is there exactly once, in order.
    got = consume_all(survivor.bootstrap, topic, len(acked), timeout=60)
    assert len(got) == len(set(got)), "duplicates"
    assert got[:len(acked)] == acked, "acknowledged records lost or reordered"
    # The killed broker comes back, truncates to the new leader's log, catches up and
    # rejoins the ISR; then all three replicas are identical.
    by_id(cluster, leader).start()
    wait_isr(cluster, topic, [1, 2, 3], timeout=60)
    wait_same_logs(cluster, topic)


def test_acks_all_needs_min_insync_replicas(make_cluster, strand_bin):
    import json
    import subprocess
    cluster = make_cluster(3)
    topic = unique("minisr")
    create(cluster[0], topic, rf=2, config={"min.insync.replicas": "2"})
    wait_everywhere(cluster, topic)
    md = partition_md(cluster[0], topic)
    leader, follower = md.leader, next(r for r in md.replicas if r != md.leader)
    client = next(b for b in cluster if int(b.settings["node.id"]) not in (leader, follower))
    p = producer(client, acks="all", **{"message.timeout.ms": 30000})
    errors = []
    p.produce(topic, value=b"ok", partition=0, on_delivery=lambda e, m: errors.append(e))
    p.flush(30)
    assert errors == [None]
    by_id(cluster, follower).kill9()
    wait_isr([b for b in cluster if b.running()], topic, [leader])
    # The admin CLI lists it as under-replicated, the dead follower offline.
    out = subprocess.run([str(strand_bin), "cluster", "under-replicated", "--json",
                          "--bootstrap-server", client.bootstrap, "--timeout", "10"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    listed = {(e["topic"], e["partition"]): e for e in json.loads(out)}
    assert listed[(topic, 0)]["isr"] == [leader], listed
    assert listed[(topic, 0)]["offline"] == [follower], listed
    # The ISR (just the leader) is below min.insync.replicas: refused before appending.
    q = producer(client, acks="all", retries=0, **{"message.timeout.ms": 10000})
    q.produce(topic, value=b"refused", partition=0, on_delivery=lambda e, m: errors.append(e))
    q.flush(15)
    assert errors[-1] is not None and errors[-1].code() == KafkaError.NOT_ENOUGH_REPLICAS, errors
    # The follower returns, catches up, rejoins: acks=all works again.
    by_id(cluster, follower).start()
    wait_isr(cluster, topic, [leader, follower])
    p.produce(topic, value=b"again", partition=0, on_delivery=lambda e, m: errors.append(e))
    p.flush(30)
    assert errors[-1] is None, errors
    got = consume_all(client.bootstrap, topic, 2)
    assert got == ["ok", "again"]


def test_a_follower_that_was_down_catches_up_and_rejoins_the_isr(make_cluster):
    cluster = make_cluster(3)
    topic = unique("catchup")
    create(cluster[0], topic, rf=3, config={"segment.bytes": "262144"})
    wait_everywhere(cluster, topic)
    md = partition_md(cluster[0], topic)
    follower = next(r for r in md.replicas if r != md.leader)
    by_id(cluster, follower).kill9()
    alive = [b for b in cluster if b.running()]
    wait_isr(alive, topic, [r for r in md.replicas if r != follower])
    prod = producer(alive[0], acks="all", **{"batch.size": 16384})
    errors = []
    for i in range(20000):
        prod.produce(topic, value=(f"r{i}-" + "x" * 50).encode(), partition=0,
                     on_delivery=lambda e, m: e and errors.append(e))
        if i % 1000 == 0:
            prod.poll(0)
    assert prod.flush(60) == 0
    assert not errors, errors[:3]
    by_id(cluster, follower).start()
    wait_isr(cluster, topic, md.replicas, timeout=60)
    data = wait_same_logs(cluster, topic)
    assert len(data) > 20000 * 50
    # Several segments, rolled the same way on every replica (the same batches).
    names = {tuple(sorted(f.name for f in (b.data_dir / f"{topic}-0").glob("*.log")))
             for b in cluster}
    assert len(names) == 1 and len(next(iter(names))) > 1, names


def test_a_replica_fetch_from_a_non_replica_is_refused(make_cluster):
    """A Fetch whose replica id is not one of the partition's replicas counts for nothing
    and is answered NOT_LEADER_OR_FOLLOWER."""
    import kwire
    cluster = make_cluster(2)
    topic = unique("nonrep")
    create(cluster[0], topic, rf=1)
    wait_everywhere(cluster, topic)
    leader = by_id(cluster, partition_md(cluster[0], topic).leader)
    assert kwire.fetch(leader.address, topic, 0, 0, replica_id=7).error_code == 6
    assert kwire.fetch(leader.address, topic, 0, 0, replica_id=-1).error_code == 0


def in_sync_topic(cluster, prefix):
    """A new RF=3 topic with min.insync.replicas=2, once all replicas are in sync: (name,
    partition 0's metadata)."""
    topic = unique(prefix)
    create(cluster[0], topic, rf=3, config={"min.insync.replicas": "2"})
    wait_everywhere(cluster, topic)
    md = partition_md(cluster[0], topic)
    wait_isr(cluster, topic, md.replicas)
    return topic, md


def test_a_fetch_from_an_earlier_incarnation_of_a_follower_is_refused(make_cluster):
    """KIP-903: a follower's Fetch (v15+) carries its broker epoch. One older than the
    follower's live registration (sent by a process of that broker that has since restarted)
    is answered NOT_LEADER_OR_FOLLOWER and counts for nothing: the high watermark does not
    move on it, and the real follower still keeps the ISR whole."""
    import kwire
    from helpers import topic_id
    cluster = make_cluster(3)
    topic, md = in_sync_topic(cluster, "kip903")
    leader = by_id(cluster, md.leader)
    follower = next(r for r in md.replicas if r != md.leader)
    tid = topic_id(cluster[0], topic)
    prod = producer(cluster[0], acks="all")
    for i in range(10):
        prod.produce(topic, value=b"v%d" % i, partition=0)
    assert prod.flush(30) == 0

    def fetch(epoch, offset):
        r = kwire.roundtrip(leader.address, kwire.fetch_request_by_id(
            tid, 0, offset, version=15,
            replica=(follower, epoch)))
        [p] = kwire.parse_fetch_response_by_id(r)
        return p

    # Epoch 0 is older than any registration (etcd revisions start at 1).
    stale = fetch(0, 0)
    assert stale.error_code == kwire.NOT_LEADER_OR_FOLLOWER and stale.records == b""
    # The stale fetch from offset 0 did not count as the follower's position: the high
    # watermark stays at the end, and produce with acks=all still completes.
    assert fetch(0, 0).error_code == kwire.NOT_LEADER_OR_FOLLOWER
    assert kwire.fetch(leader.address, topic, 0, 0).high_watermark == 10
    prod.produce(topic, value=b"after", partition=0)
    assert prod.flush(30) == 0
    wait_isr(cluster, topic, md.replicas)
    # The same fetch without an epoch (Fetch v4, before KIP-903) is a follower's fetch.
    assert kwire.fetch(leader.address, topic, 0, 11, replica_id=follower).error_code == 0


def test_a_follower_that_registers_again_rejoins_the_isr(make_cluster):
    """A follower whose lease is lost (revoked here, as a fetcher that finds a listener
    refusing connections does) registers again with a new broker epoch and sends that epoch
    in its fetches from then on (KIP-903): the leader takes them and it rejoins the ISR."""
    import json
    import subprocess
    cluster = make_cluster(3)
    topic, md = in_sync_topic(cluster, "rereg")
    follower = next(r for r in md.replicas if r != md.leader)
    key = f"{cluster.prefix}/brokers/{follower}"

    def registration():
        out = subprocess.run(["etcdctl", "--endpoints", cluster.etcd.endpoint, "get", key,
                              "-w", "json"], capture_output=True, text=True, timeout=10,
                             check=True).stdout
        kvs = json.loads(out).get("kvs") or []
        return kvs[0] if kvs else None

    before = registration()
    subprocess.run(["etcdctl", "--endpoints", cluster.etcd.endpoint, "lease", "revoke",
                    format(before["lease"], "x")], check=True, capture_output=True, timeout=10)
    after = wait_for("registered again", lambda: (r := registration())
                     and r["create_revision"] > before["create_revision"] and r, timeout=15)
    assert after["lease"] != before["lease"]
    prod = producer(cluster[0], acks="all")
    for i in range(100):
        prod.produce(topic, value=b"r%d" % i, partition=0)
    assert prod.flush(30) == 0
    wait_isr(cluster, topic, md.replicas, timeout=30)
    wait_same_logs(cluster, topic)


class Load:
    """An idempotent acks=all producer writing numbered records to every partition of a
    topic in a thread, recording what was acknowledged (per partition, in order) and what
    failed."""

    def __init__(self, broker, topic, partitions, **conf):
        settings = {"enable.idempotence": True, "linger.ms": 2, "message.timeout.ms": 60000,
                    "retry.backoff.ms": 50}
        settings.update(conf)
        self.prod = producer(broker, acks="all", **settings)
        self.topic, self.partitions = topic, partitions
        self.acked = {p: [] for p in range(partitions)}
        self.failed = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def report(self, err, msg):
        if err:
            self.failed.append(str(err))
        else:
            self.acked[msg.partition()].append(msg.value().decode())

    def run(self):
        i = 0
        while not self.stop.is_set():
            p = i % self.partitions
            self.prod.produce(self.topic, value=f"p{p}-{i}".encode(), partition=p,
                              on_delivery=self.report)
            self.prod.poll(0)
            i += 1
            time.sleep(0.002)
        self.prod.flush(90)

    def count(self):
        return sum(len(v) for v in self.acked.values())

    def finish(self):
        self.stop.set()
        self.thread.join(120)
        assert not self.thread.is_alive()

    def check(self, bootstrap):
        """Every acknowledged record is there exactly once, in order (per partition)."""
        assert not self.failed, self.failed[:5]
        for p, acked in self.acked.items():
            c = consumer(type("B", (), {"bootstrap": bootstrap})())
            c.assign([TopicPartition(self.topic, p, 0)])
            got = []
            deadline = time.monotonic() + 60
            while len(got) < len(acked) and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got.append(m.value().decode())
            c.close()
            assert len(got) == len(set(got)), f"partition {p}: duplicates"
            assert got[:len(acked)] == acked, f"partition {p}: acknowledged records lost"


def test_a_rolling_restart_under_load_loses_nothing_and_fails_no_produce(make_cluster):
    """SIGTERM hands leadership over first (the registration ends at once, the controller
    elects other in-sync replicas): producers retry at the new leaders and no delivery fails."""
    cluster = make_cluster(3)
    topic = unique("roll")
    create(cluster[0], topic, partitions=3, rf=3, config={"min.insync.replicas": "2"})
    wait_everywhere(cluster, topic)
    load = Load(cluster[0], topic, 3)
    try:
        for b in cluster:
            before = load.count()
            wait_for("produce going on", lambda: load.count() > before + 100, timeout=30)
            t0 = time.monotonic()
            b.stop()
            assert time.monotonic() - t0 < 15, "the stop waited for leadership to time out"
            b.start()
            for p in range(3):
                wait_isr(cluster, topic, [1, 2, 3], p=p, timeout=60)
        before = load.count()
        wait_for("produce going on", lambda: load.count() > before + 100, timeout=30)
    finally:
        load.finish()
    load.check(cluster.bootstrap)
    for p in range(3):
        wait_same_logs(cluster, topic, p)


def test_a_paused_leader_acknowledges_nothing_after_it_is_replaced(make_cluster):
    """SIGSTOP of the leader past its lease: another replica leads (a new epoch); when the old
    one resumes it acknowledges no write, learns it was deposed and follows again."""
    import signal
    import kwire
    cluster = make_cluster(3)
    topic = unique("pause")
    create(cluster[0], topic, rf=3, config={"min.insync.replicas": "2"})
    wait_everywhere(cluster, topic)
    old = partition_md(cluster[0], topic)
    paused = by_id(cluster, old.leader)
    other = next(b for b in cluster if b is not paused)
    # A paused broker keeps its connections open: requests in flight there end only by the
    # client's timeout, so it is short here.
    load = Load(other, topic, 1, **{"request.timeout.ms": 3000, "socket.timeout.ms": 3000})
    try:
        wait_for("produce going on", lambda: load.count() > 100, timeout=30)
        paused.proc.send_signal(signal.SIGSTOP)
        try:
            wait_for("a new leader", lambda: partition_md(other, topic).leader
                     not in (-1, old.leader), timeout=30)
            before = load.count()
            wait_for("produce at the new leader", lambda: load.count() > before + 100,
                     timeout=30)
        finally:
            paused.proc.send_signal(signal.SIGCONT)
        # At once after resuming: no acks=all write is acknowledged there.
        batch = kwire.record_batch([kwire.Record(key=None, value=b"stale")])
        err, _ = kwire.produce(paused.address, topic, 0, batch, acks=-1)
        assert err != 0
        wait_isr(cluster, topic, [1, 2, 3], timeout=60)
    finally:
        load.finish()
    load.check(other.bootstrap)
    got = consume_all(other.bootstrap, topic, load.count() + 1, timeout=10)
    assert "stale" not in got
    wait_same_logs(cluster, topic)


def test_a_new_leader_below_min_insync_keeps_what_was_acknowledged(make_cluster):
    """Chaos run 100's shape (docs/reliability.md): a follower is down, the leader dies with
    acknowledged writes the survivor has but whose high watermark it has not heard of yet. The
    survivor leads with ISR [itself], below min.insync.replicas: it acknowledges nothing and
    keeps its high watermark (KIP-966), so those writes are unreadable but not gone. Once the
    other follower is back in the ISR, every acknowledged record is readable, in order."""
    cluster = make_cluster(3)
    topic = unique("frozen")
    create(cluster[0], topic, rf=3, config={"min.insync.replicas": "2"})
    wait_everywhere(cluster, topic)
    md = partition_md(cluster[0], topic)
    old = by_id(cluster, md.leader)
    survivor, down = (by_id(cluster, r) for r in md.replicas if r != md.leader)
    down.kill9()
    wait_isr([old, survivor], topic, [md.leader, int(survivor.settings["node.id"])])
    load = Load(survivor, topic, 1)
    try:
        wait_for("records acknowledged", lambda: load.count() > 300, timeout=30)
        old.kill9()
        sid = int(survivor.settings["node.id"])
        wait_for("the survivor leads", lambda: partition_md(survivor, topic).leader == sid,
                 timeout=30)
        wait_isr([survivor], topic, [sid])
        # Alone in the ISR: no acks=all write is acknowledged.
        frozen = load.count()
        time.sleep(2)
        assert load.count() == frozen
        # The last acknowledged record is in the survivor's log, readable or not.
        assert load.acked[0][-1].encode() in log_bytes(survivor, topic)
        # Usually (every local run so far) the survivor's high watermark is below what was
        # acknowledged: the records in between are readable only after the ISR grows again.
        # That is timing, so it is not asserted; what is asserted is that nothing is lost.
        c = consumer(survivor)
        _, hwm = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.close()
        print(f"survivor's high watermark {hwm}, {frozen} acknowledged")
        down.start()
        wait_isr([survivor, down], topic, [sid, int(down.settings["node.id"])], timeout=60)
        wait_for("acknowledged again", lambda: load.count() > frozen + 100, timeout=30)
    finally:
        load.finish()
    load.check(survivor.bootstrap)
    old.start()
    wait_isr(cluster, topic, [1, 2, 3], timeout=60)
    wait_same_logs(cluster, topic)


def test_transactions_and_read_committed_across_a_leader_kill(make_cluster):
    """A transactional producer (librdkafka) runs transactions while the partition leader is
    killed -9 in the middle of one; a read_committed consumer reads throughout. Every
    committed transaction's records are read exactly once, in order; no record of an aborted
    one is."""
    from confluent_kafka import Producer
    cluster = make_cluster(3)
    topic = unique("txfail")
    create(cluster[0], topic, rf=3, config={"min.insync.replicas": "2"})
    wait_everywhere(cluster, topic)
    leader = by_id(cluster, partition_md(cluster[0], topic).leader)
    bootstrap = cluster.bootstrap
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("tx"),
                  "linger.ms": 5, "transaction.timeout.ms": 60000, "log_level": 3})
    p.init_transactions(30)
    seen, committed = [], {}
    stop = threading.Event()

    def consume():
        c = consumer(type("B", (), {"bootstrap": bootstrap})(), **{"isolation.level":
                                                                   "read_committed"})
        c.assign([TopicPartition(topic, 0, 0)])
        while not stop.is_set() or len(seen) < sum(len(v) for v in committed.values()):
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen.append(m.value().decode())
            if stop.is_set() and time.monotonic() > stop.deadline:
                break
        c.close()

    reader = threading.Thread(target=consume)
    reader.start()
    aborted = []
    try:
        for t in range(12):
            values = [f"t{t}-{i}" for i in range(50)]
            p.begin_transaction()
            for i, v in enumerate(values):
                p.produce(topic, value=v.encode(), partition=0)
                if t == 4 and i == 25:
                    p.flush(30)
                    leader.kill9()
                p.poll(0)
            while True:
                try:
                    p.commit_transaction(60)
                    committed[t] = values
                    break
                except KafkaException as e:
                    err = e.args[0]
                    if err.retriable():
                        continue
                    assert err.txn_requires_abort(), err
                    p.abort_transaction(60)
                    aborted.extend(values)
                    break
    finally:
        stop.deadline = time.monotonic() + 60
        stop.set()
        reader.join(90)
    assert not reader.is_alive()
    want = [v for t in sorted(committed) for v in committed[t]]
    assert len(committed) >= 10, (sorted(committed), len(aborted))
    assert seen == want, (len(seen), len(want), seen[:3])
    assert not set(aborted) & set(seen)
    leader.start()
    wait_isr(cluster, topic, [1, 2, 3], timeout=60)
    wait_same_logs(cluster, topic)
