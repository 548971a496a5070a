"""Cluster-mode figures (run by scripts/bench-cluster.sh): etcd + 3 strand brokers on
127.0.0.1, each with its own temp data dir; everything started here is stopped here."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Procs:
    def __init__(self):
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name, cmd, log):
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs.pop(name)
        p.send_signal(sig)
        p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)


class Cluster:
    """etcd and brokers 1..3 started under `procs`, data in `work`, output to `log`."""

    def __init__(self, procs: Procs, work: Path, log, binary: str):
        self.procs, self.work, self.log, self.binary = procs, work, log, binary
        self.client, peer = free_port(), free_port()
        curl, purl = f"http://127.0.0.1:{self.client}", f"http://127.0.0.1:{peer}"
        procs.start("etcd", ["etcd", "--name", "e0", "--data-dir", str(work / "etcd"),
                             "--listen-client-urls", curl, "--advertise-client-urls", curl,
                             "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
                             "--initial-cluster", f"e0={purl}", "--auto-compaction-retention", "1h"], log)
        wait_port(self.client)
        self.ports: dict[int, int] = {}
        # Each broker serves Prometheus metrics too (GET http://127.0.0.1:PORT/metrics).
        self.metrics: dict[int, int] = {}
        for n in (1, 2, 3):
            self.start_broker(n)

    def start_broker(self, n: int) -> None:
        self.ports.setdefault(n, free_port())
        self.metrics.setdefault(n, free_port())
        self.procs.start(f"b{n}", [self.binary, "serve", "--node-id", str(n), "--listen",
                                   f"127.0.0.1:{self.ports[n]}", "--data-dir", str(self.work / f"d{n}"),
                                   "--etcd-endpoints", f"127.0.0.1:{self.client}",
                                   "--metrics-listen", f"127.0.0.1:{self.metrics[n]}"], self.log)
        wait_port(self.ports[n])


def summary(xs):
    xs = sorted(xs)
    return f"min {xs[0]*1000:.0f} ms, median {statistics.median(xs)*1000:.0f} ms, max {xs[-1]*1000:.0f} ms (n={len(xs)})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--consumers", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--failovers", type=int, default=20)
    ap.add_argument("--steps", default="metadata,controller,coordinator,failover,commits",
                    help="comma-separated subset of metadata,controller,coordinator,failover,commits")
    ap.add_argument("--committers", default="rdkafka,wire",
                    help="who commits in the commits step: rdkafka (librdkafka consumers) and/or "
                         "wire (bare OffsetCommit requests); see examples/commit_latency.rs")
    args = ap.parse_args()
    steps = set(args.steps.split(","))
    unknown = steps - {"metadata", "controller", "coordinator", "failover", "commits"}
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}")
    binary = os.environ["STRAND_BIN"]
    work = Path(tempfile.mkdtemp(prefix="strand-bench-cluster-"))
    procs = Procs()
    log = open(work / "log", "ab")
    try:
        cluster = Cluster(procs, work, log, binary)
        client, ports, start_broker = cluster.client, cluster.ports, cluster.start_broker
        admins = {n: AdminClient({"bootstrap.servers": f"127.0.0.1:{p}"}) for n, p in ports.items()}
        for a in admins.values():
            a.list_topics(timeout=10)
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "compat-tests"))
        print(f"etcd 127.0.0.1:{client}, brokers {sorted(ports.values())}, work dir {work}")

        # 1. CreateTopics on broker 1 until every broker's Metadata shows the topic.
        if "metadata" in steps:
            visible = []
            for i in range(20):
                name = f"vis-{i}"
                t0 = time.monotonic()
                admins[1].create_topics([NewTopic(name, 3, 1)])[name].result(10)
                for n, a in admins.items():
                    while name not in a.list_topics(topic=name, timeout=5).topics or \
                            a.list_topics(topic=name, timeout=5).topics[name].error is not None:
                        time.sleep(0.002)
                visible.append(time.monotonic() - t0)
            print(f"topic created -> visible on all 3 brokers: {summary(visible)}")

        # 2. kill -9 of a broker until the others no longer list it (its lease expired).
        if "metadata" in steps:
            gone = []
            for i in range(5):
                t0 = time.monotonic()
                procs.kill("b3")
                while 3 in admins[1].list_topics(timeout=5).brokers:
                    time.sleep(0.02)
                gone.append(time.monotonic() - t0)
                start_broker(3)
                while 3 not in admins[1].list_topics(timeout=5).brokers:
                    time.sleep(0.02)
            print(f"kill -9 -> broker gone from the others' Metadata: {summary(gone)}")

        # 2b. kill -9 of the controller until the others name another (its election key goes
        #     with its lease), and a killed broker's restart until its partition takes produce
        #     again (the new controller elects it back with a new leader epoch).
        if "controller" in steps:
            import kwire
            ct = "controller-bench"
            admins[1].create_topics([NewTopic(ct, num_partitions=3, replica_assignment=[[1], [2], [3]])])[ct].result(10)
            elected, back = [], []

            def controller_named_by(n):
                # The DescribeCluster API itself (`strand cluster status`): librdkafka's
                # describe_cluster reads Metadata, whose controller id is the broker answering.
                r = subprocess.run([binary, "cluster", "status", "--json", "-b", f"127.0.0.1:{ports[n]}",
                                    "--timeout", "2"], capture_output=True, text=True)
                return json.loads(r.stdout)["controller_id"] if r.returncode == 0 else None

            for trial in range(5):
                first = controller_named_by(1)
                others = [n for n in ports if n != first]
                t0 = time.monotonic()
                procs.kill(f"b{first}")
                while True:
                    named = {controller_named_by(n) for n in others}
                    if len(named) == 1 and first not in named and None not in named:
                        break
                    time.sleep(0.01)
                elected.append(time.monotonic() - t0)
                t0 = time.monotonic()
                start_broker(first)
                batch = kwire.record_batch([kwire.Record(key=None, value=b"x")])
                while kwire.produce(("127.0.0.1", ports[first]), ct, first - 1, batch)[0] != 0:
                    time.sleep(0.01)
                back.append(time.monotonic() - t0)
                while first not in admins[others[0]].list_topics(timeout=5).brokers:
                    time.sleep(0.02)
            print(f"kill -9 of the controller -> the others name another controller: {summary(elected)}")
            print(f"restart of a killed broker -> its partition takes produce again: {summary(back)}")

        # 3. kill -9 of a group's coordinator until (a) FindCoordinator names another broker
        #    and (b) a consumer that was committing through it commits again.
        if "coordinator" in steps:
            import kwire_txn
            ft = "failover"
            admins[1].create_topics([NewTopic(ft, num_partitions=2, replica_assignment=[[1], [2]])])[ft].result(10)
            found, resumed = [], []
            b1 = f"127.0.0.1:{ports[1]}"
            for trial in range(5):
                group = next(g for g in (f"fo-{trial}-{k}" for k in range(1000))
                             if kwire_txn.find_coordinator(("127.0.0.1", ports[1]), g, 0)[:2] == (0, 3))
                c = Consumer({"bootstrap.servers": b1, "group.id": group, "log_level": 3,
                              "enable.auto.commit": False})
                offsets = [TopicPartition(ft, p, 1) for p in range(2)]
                c.commit(offsets=offsets, asynchronous=False)
                t0 = time.monotonic()
                procs.kill("b3")
                while True:
                    err, node = kwire_txn.find_coordinator(("127.0.0.1", ports[1]), group, 0)[:2]
                    if err == 0 and node != 3:
                        break
                    time.sleep(0.01)
                found.append(time.monotonic() - t0)
                for o in offsets:
                    o.offset = 2
                while True:
                    try:
                        c.commit(offsets=offsets, asynchronous=False)
                        break
                    except KafkaException:
                        time.sleep(0.01)
                resumed.append(time.monotonic() - t0)
                got = [tp.offset for tp in c.committed([TopicPartition(ft, p) for p in range(2)], timeout=10)]
                assert got == [2, 2], got
                c.close()
                start_broker(3)
                while 3 not in admins[1].list_topics(timeout=5).brokers:
                    time.sleep(0.02)
                time.sleep(1.5)  # let broker 3 take its slots back
            print(f"kill -9 of a group coordinator -> FindCoordinator names another broker: {summary(found)}")
            print(f"kill -9 of a group coordinator -> the consumer's next commit succeeds: {summary(resumed)}")

        # 5. Replicated partition (RF=3, min.insync.replicas=2): kill -9 of its leader under an
        #    idempotent acks=all producer with librdkafka's defaults, until a record produced
        #    after the kill is acknowledged (by the new leader); then the killed broker returns
        #    and rejoins the ISR before the next trial. Every acknowledged record is checked.
        if "failover" in steps:
            rt = "failover-rf3"
            admins[1].create_topics([NewTopic(rt, 1, 3, config={"min.insync.replicas": "2"})])[rt].result(10)
            time.sleep(1)
            all_b = ",".join(f"127.0.0.1:{p}" for p in ports.values())
            prod = Producer({"bootstrap.servers": all_b, "enable.idempotence": True, "acks": "all",
                             "log_level": 0})
            acked: list[tuple[float, float, int]] = []  # (sent, acknowledged, n)
            errors: list[str] = []
            halt = threading.Event()

            def load():
                n = 0
                while not halt.is_set():
                    sent = time.monotonic()
                    prod.produce(rt, value=str(n).encode(), partition=0,
                                 on_delivery=lambda e, m, sent=sent, n=n: errors.append(str(e)) if e
                                 else acked.append((sent, time.monotonic(), n)))
                    prod.poll(0)
                    n += 1
                    time.sleep(0.001)
                prod.flush(120)

            def leader_of():
                for n in ports:
                    try:
                        md = admins[n].list_topics(topic=rt, timeout=2).topics[rt].partitions[0]
                        if md.leader >= 0 and len(md.isrs) == 3:
                            return md.leader
                    except (KafkaException, KeyError):
                        pass
                return None

            t = threading.Thread(target=load)
            t.start()
            failover = []
            try:
                for trial in range(args.failovers):
                    deadline = time.monotonic() + 60
                    while (victim := leader_of()) is None:
                        if time.monotonic() > deadline:
                            raise RuntimeError("the ISR did not reach 3 replicas")
                        time.sleep(0.05)
                    time.sleep(0.3)
                    t0 = time.monotonic()
                    procs.kill(f"b{victim}")
                    while not any(s > t0 for s, _, _ in acked[-200:]):
                        if time.monotonic() - t0 > 60:
                            raise RuntimeError("no produce succeeded after the kill")
                        time.sleep(0.005)
                    failover.append(min(a for s, a, _ in acked[-200:] if s > t0) - t0)
                    start_broker(victim)
            finally:
                halt.set()
                t.join(180)
            print(f"kill -9 of a partition leader (RF=3, acks=all, idempotent) -> a record produced "
                  f"after it is acknowledged: {summary(failover)}")
            cons = Consumer({"bootstrap.servers": all_b, "group.id": "failover-check", "log_level": 0,
                             "enable.auto.commit": False})
            cons.assign([TopicPartition(rt, 0, 0)])
            want = sorted(n for _, _, n in acked)
            seen = []
            end = time.monotonic() + 60
            while len(seen) < len(want) and time.monotonic() < end:
                m = cons.poll(0.5)
                if m is not None and not m.error():
                    seen.append(int(m.value()))
            cons.close()
            lost = set(want) - set(seen)
            print(f"  {len(want)} records acknowledged, {len(errors)} failed, {len(lost)} lost, "
                  f"{len(seen) - len(set(seen))} duplicated, in order: {seen == sorted(seen)}")

        # 4. Offset commits through etcd, by examples/commit_latency.rs (librdkafka consumers
        #    in one Rust process; see its module doc for why not Python threads).
        if "commits" in steps:
            topic = "commits"
            admins[1].create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(10)
            time.sleep(1)
            bootstraps = ",".join(f"127.0.0.1:{ports[n]}" for n in (1, 2, 3))
            for who in args.committers.split(","):
                out = subprocess.run([os.environ["COMMIT_LATENCY"], bootstraps, topic, str(args.consumers),
                                      str(args.partitions), str(args.seconds), who],
                                     capture_output=True, text=True, check=True).stdout.split()
                offsets_s, commits_s, p50, p99, p999, mx, failed = out
                print(f"offset commits ({who}): {args.consumers} consumers x {args.partitions} partitions, "
                      f"{args.seconds:.0f} s: {float(offsets_s):,.0f} partition-offsets/s, "
                      f"{float(commits_s):,.0f} commits/s, latency p50 {float(p50):.1f} ms, "
                      f"p99 {float(p99):.1f} ms, p99.9 {float(p999):.1f} ms, max {float(mx):.1f} ms, "
                      f"{failed} failed")
        out = subprocess.run(["etcdctl", "--endpoints", f"127.0.0.1:{client}", "get", "--prefix",
                              "--keys-only", "/strand/"], capture_output=True, text=True).stdout
        print(f"etcd keys under /strand/: {sum(1 for line in out.splitlines() if line.strip())}")
        return 0
    finally:
        procs.stop_all()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
