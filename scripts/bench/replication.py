"""Replication figures (run by scripts/bench-replication.sh): etcd + 3 strand brokers on
127.0.0.1 and librdkafka's rdkafka_performance on the same machine. A topic with replication
factor 3 and min.insync.replicas=2; acks=all throughout:

1. throughput of 1 KiB messages, as fast as one rdkafka_performance producer goes;
2. latency (enqueue -> delivery report) at a fixed 20 MB/s (20,000 msgs/s of 1 KiB, linger.ms=0);
3. a follower left behind by CATCHUP_MB (default 1024) of produce while it was stopped: time
   from its restart until it is back in every partition's ISR.

Everything started here is stopped here."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).parent))
from cluster import Cluster, Procs  # noqa: E402

HERE = Path(__file__).parent


def report(kind: str, *args: str) -> list[str]:
    out = subprocess.run([sys.executable, str(HERE / "report.py"), kind, *args],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("\t")


def perf(perf_bin: str, log: Path, bootstrap: str, *args: str, timeout: float = 600) -> float:
    t0 = time.monotonic()
    with open(log, "wb") as f:
        subprocess.run([perf_bin, "-P", "-b", bootstrap, *args], stdout=f, stderr=f,
                       stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--latency-seconds", type=int, default=10)
    ap.add_argument("--catchup-mb", type=int, default=1024)
    ap.add_argument("--steps", default="throughput,latency,catchup",
                    help="which of throughput,latency,catchup to run")
    args = ap.parse_args()
    binary, perf_bin = os.environ["STRAND_BIN"], os.environ["PERF"]
    work = Path(tempfile.mkdtemp(prefix="strand-bench-replication-"))
    procs = Procs()
    log = open(work / "log", "ab")
    try:
        cluster = Cluster(procs, work, log, binary)
        ports, start_broker = cluster.ports, cluster.start_broker
        bootstrap = ",".join(f"127.0.0.1:{p}" for p in ports.values())
        admin = AdminClient({"bootstrap.servers": bootstrap})
        while len(admin.list_topics(timeout=10).brokers) < 3:
            time.sleep(0.1)
        print(f"etcd 127.0.0.1:{cluster.client}, brokers {sorted(ports.values())}, work dir {work}")

        def create(name: str) -> None:
            admin.create_topics([NewTopic(name, args.partitions, 3,
                                          config={"min.insync.replicas": "2"})])[name].result(20)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                md = admin.list_topics(topic=name, timeout=5).topics[name]
                if md.error is None and all(len(p.isrs) == 3 for p in md.partitions.values()):
                    return
                time.sleep(0.1)
            raise RuntimeError(f"{name}: not fully in sync")

        def isr_complete(name: str) -> bool:
            md = admin.list_topics(topic=name, timeout=5).topics[name]
            return md.error is None and all(sorted(p.isrs) == [1, 2, 3]
                                            for p in md.partitions.values())

        common = ("-s", "1024", "-a", "-1", "-X", "enable.idempotence=true")

        steps = set(args.steps.split(","))

        steps = set(args.steps.split(","))

        # 1. Throughput.
        if "throughput" in steps:
            create("rep-tput")
            perf(perf_bin, work / "warm.log", bootstrap, "-t", "rep-tput", "-c", "20000", *common)
            wall = perf(perf_bin, work / "tput.log", bootstrap, "-t", "rep-tput",
                        "-c", str(args.messages), *common)
            msgs, byts, ms, rate, mbs, failed = report("produce", str(work / "tput.log"))
            print(f"RF=3 acks=all 1 KiB, {args.partitions} partitions: {int(rate):,} msgs/s, "
                  f"{mbs} MB/s ({msgs} msgs in {int(ms) / 1000:.1f} s, {failed} failed; "
                  f"wall {wall:.1f} s)")

        # 2. Latency at 20 MB/s.
        if "latency" in steps:
            create("rep-lat")
            perf(perf_bin, work / "latwarm.log", bootstrap, "-t", "rep-lat", "-c", "5000", *common)
            lat_rate = 20000
            for linger in ("1", "0", "5"):
                out = subprocess.run([os.environ["LATENCY"], bootstrap, "rep-lat", str(lat_rate),
                                      str(args.latency_seconds), "1024", f"linger.ms={linger}"],
                                     capture_output=True, text=True, timeout=600)
                line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
                if out.returncode != 0 or not line:
                    print(f"latency run failed: {out.stderr[-2000:]}")
                    continue
                p50, p99, p999, mx, n, achieved, failed = line.split("\t")
                print(f"RF=3 acks=all 1 KiB at {lat_rate:,} msgs/s (~20 MB/s), linger.ms={linger}: "
                      f"p50 {p50} ms, p99 {p99} ms, p99.9 {p999} ms, max {mx} ms ({n} samples "
                      f"after the first second; achieved {int(achieved):,} msgs/s, {failed} failed)")

        # 3. A follower CATCHUP_MB behind.
        if "catchup" in steps:
            create("rep-catch")
            procs.kill("b3")
            while 3 in admin.list_topics(timeout=5).brokers:
                time.sleep(0.1)
            count = args.catchup_mb * 1024
            perf(perf_bin, work / "fill.log", bootstrap, "-t", "rep-catch", "-c", str(count),
                 *common)
            msgs, byts, ms, rate, mbs, failed = report("produce", str(work / "fill.log"))
            print(f"while broker 3 was down: {msgs} msgs ({int(byts) // 1_000_000} MB) produced "
                  f"at {mbs} MB/s with 2 in-sync replicas, {failed} failed")
            t0 = time.monotonic()
            start_broker(3)
            while not isr_complete("rep-catch"):
                time.sleep(0.05)
            caught = time.monotonic() - t0
            print(f"follower {int(byts) / 2**30:.2f} GiB behind -> back in every partition's "
                  f"ISR: {caught:.1f} s from its restart ({int(byts) / caught / 1e6:.0f} MB/s)")
        if os.environ.get("BENCH_HOLD"):
            print(f"holding the cluster (bootstrap {bootstrap}, metrics "
                  f"{sorted(cluster.metrics.values())}) until stdin closes", flush=True)
            sys.stdin.read()
    finally:
        procs.stop_all()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
