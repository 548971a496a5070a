"""`strand verify` (issue 11) against real `strand` processes: clean runs pass (plain and
transactional, classic and KIP-848 groups), a run across kill -9 and restart of brokers of a
3-broker cluster finds nothing lost, and records really removed under a run (DeleteRecords,
by another client) are reported as lost acknowledged writes with exit status 1.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from helpers import unique

from test_replication import by_id, create, partition_md


def verify(strand_bin, bootstrap: str, *args: str, timeout: float = 300):
    """Runs `strand verify --json -`; returns (exit status, report, stderr)."""
    p = subprocess.run([str(strand_bin), "verify", "-b", bootstrap, "--json", "-", *args],
                       capture_output=True, text=True, timeout=timeout)
    report = json.loads(p.stdout) if p.stdout.strip() else None
    return p.returncode, report, p.stderr


def verify_in_background(strand_bin, bootstrap: str, *args: str):
    """Starts `verify(...)` on a thread; returns (thread, out), out["result"] set when done."""
    out = {}

    def run():
        out["result"] = verify(strand_bin, bootstrap, *args)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def violations(report) -> dict:
    return {k: v["count"] for k, v in report["violations"].items() if v["count"]}


def assert_clean(rc, report, err):
    assert report is not None, err
    assert violations(report) == {}, json.dumps(report["violations"], indent=1)
    assert report["stalls"] == [], report["stalls"]
    assert (rc, report["verdict"]) == (0, "ok"), err[-3000:]


def test_a_clean_run_against_one_broker(broker, strand_bin):
    rc, r, err = verify(strand_bin, broker.bootstrap, "--duration", "5", "--rate", "1500",
                        "--settle", "60")
    assert_clean(rc, r, err)
    t = r["totals"]
    assert t["acked"] > 4000 and t["acked"] == t["sent"], t
    # Two tail readers, two final readers and the group each read every record.
    assert t["reads"] >= 5 * t["acked"], t
    assert t["commit_samples"] > 10, t


def test_transactions_with_aborts_and_a_kip848_group(broker, strand_bin):
    rc, r, err = verify(strand_bin, broker.bootstrap, "--duration", "6", "--rate", "2000",
                        "--transactional", "--abort-rate", "0.3", "--txn-records", "5",
                        "--group-protocol", "consumer", "--churn", "1.5", "--settle", "60")
    assert_clean(rc, r, err)
    t = r["totals"]
    assert t["txns_committed"] > 20 and t["txns_aborted"] > 5, t
    assert t["txns_unknown"] == 0, t


def test_records_removed_under_a_run_are_reported_lost(broker, strand_bin):
    """DeleteRecords from another client removes acknowledged records while verify runs: the
    checker must say so (this is how a real loss would look) and exit 1."""
    topic = unique("verify-del")
    t, out = verify_in_background(strand_bin, broker.bootstrap, "--topic", topic,
                                  "--partitions", "2", "--duration", "6", "--rate", "1000",
                                  "--settle", "60", "--group-members", "0")
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    deadline = time.monotonic() + 30
    high = 0
    while high < 500 and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            md = a.list_topics(topic, timeout=5)
            if topic in md.topics and not md.topics[topic].error:
                c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "w"})
                high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1]
                c.close()
        except Exception:
            pass
    assert high >= 500, "verify produced too little"
    fs = a.delete_records([TopicPartition(topic, 0, 300)], operation_timeout=10)
    for f in fs.values():
        f.result(20)
    t.join(200)
    rc, r, err = out["result"]
    assert r is not None, err
    assert rc == 1 and r["verdict"] == "violations", err[-2000:]
    v = violations(r)
    # Offsets 0..299 of partition 0 were acknowledged and are gone; the final readers miss
    # them (the tail readers had seen some: those are lost reads too, not double-counted).
    assert v.pop("lost_acknowledged") == 300, r["violations"]["lost_acknowledged"]
    assert set(v) <= {"lost_reads"}, v


def test_a_run_across_broker_kills_and_restarts_loses_nothing(make_cluster, strand_bin):
    """A 3-broker cluster (RF 3, min.insync.replicas 2): while verify runs, the leader of
    partition 0 is killed with SIGKILL and restarted, then another broker. Everything
    acknowledged is read back exactly once and in order, at both isolation levels and by the
    group; no reader stalls."""
    cluster = make_cluster(3)
    topic = unique("verify-kill")
    create(cluster[0], topic, partitions=3, rf=3, config={"min.insync.replicas": "2"})
    t, out = verify_in_background(strand_bin, cluster.bootstrap, "--topic", topic,
                                  "--partitions", "3", "--duration", "20", "--rate", "800",
                                  "--settle", "90", "--delivery-timeout", "60")
    time.sleep(4)
    leader = partition_md(cluster[0], topic).leader
    for victim in (leader, leader % 3 + 1):
        b = by_id(cluster, victim)
        b.kill9()
        time.sleep(3)
        b.start()
        time.sleep(3)
    t.join(240)
    rc, r, err = out["result"]
    assert_clean(rc, r, err)
    assert r["totals"]["acked"] > 8000, r["totals"]


def test_records_acknowledged_above_a_frozen_high_watermark_are_a_stall_not_a_loss(
        make_cluster, strand_bin):
    """Chaos run 100's shape: with one follower down, the leader of an RF 3 partition
    (min.insync.replicas 2) is killed under verify's load. The survivor leads alone, below
    min.insync.replicas, so its high watermark stays where it was (KIP-966), usually below the
    last records acknowledged. verify must not call those lost: the final readers' end is past
    the last acknowledged offset, and not reaching it is a stall (exit 3). Once the followers
    are back the records are readable, and a second run over the same topic is clean."""
    cluster = make_cluster(3)
    topic = unique("verify-frozen")
    create(cluster[0], topic, partitions=1, rf=3, config={"min.insync.replicas": "2"})
    md = partition_md(cluster[0], topic)
    old = by_id(cluster, md.leader)
    survivor, down = (by_id(cluster, r) for r in md.replicas if r != md.leader)
    down.kill9()
    t, out = verify_in_background(strand_bin, survivor.bootstrap, "--topic", topic,
                                  "--partitions", "1", "--duration", "6", "--rate", "500",
                                  "--settle", "15", "--delivery-timeout", "8",
                                  "--group-members", "0")
    time.sleep(3)
    old.kill9()
    t.join(120)
    rc, r, err = out["result"]
    assert r is not None, err
    # Nothing is called lost.
    assert violations(r) == {}, json.dumps(r["violations"], indent=1)
    hwm, end = r["high_watermarks"]["0"], r["ends"]["0"]
    if end > hwm:
        assert (rc, r["verdict"]) == (3, "incomplete"), err[-2000:]
        assert {s["reader"] for s in r["stalls"]} == {"final-read_uncommitted",
                                                     "final-read_committed"}, r["stalls"]
        assert all((s["reached"], s["end"]) == (hwm, end) for s in r["stalls"]), r["stalls"]
    else:
        assert_clean(rc, r, err)
    down.start()
    old.start()
    rc, r, err = verify(strand_bin, cluster.bootstrap, "--topic", topic, "--partitions", "1",
                        "--duration", "2", "--rate", "500", "--settle", "60",
                        "--group-members", "0")
    assert_clean(rc, r, err)
