"""The fault harness (issue 11): a 3-broker Strand cluster with etcd, every process in its own
network namespace, faults injected at random times while `strand verify` runs, then healed,
then the verdict and the cluster's recovery recorded.

Topology (one per harness instance; namespace names carry the instance's pid, so several can
run at once and none touches the host's network):

    <p>-sw    a bridge, br0, and nothing else
    <p>-etcd  10.77.0.2    etcd (client port 2379)
    <p>-b1..3 10.77.0.11.. brokers 1..3 (port 9092); data dirs on their own small tmpfs
    <p>-cli   10.77.0.100  the clients: `strand verify`, and the harness's own queries

Each node namespace has a veth to the bridge. Faults are made inside the namespaces only:
nftables rules in a node's own input chain (cuts, one-way drops, random loss), tbf on its veth
(a slow link: this kernel has no netem, so there is no fixed delay), signals to its processes
(SIGKILL, SIGSTOP/SIGCONT), faketime (a broker restarted with a skewed wall clock), and a file
filling a broker's tmpfs (disk full).

`python3 compat-tests/chaos.py --runs N [--seed S]` (what scripts/chaos.sh runs) makes N runs,
each with its own seed (S, S+1, ...) so any run can be replayed with `--runs 1 --seed S`.
Each run: start the cluster, start the workload, inject faults for the load's duration, heal
everything, wait for verify's verdict and for the cluster to be healthy again (every broker
registered, no under-replicated or offline partition). Results: one JSON line per run in
`<out>/results.jsonl`, logs under `<out>/run-<seed>/`, a table on stdout. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUBNET = "10.77.0"
ETCD_IP = f"{SUBNET}.2"
CLI_IP = f"{SUBNET}.100"
PORT = 9092
LEASE_S = 2.0  # broker.session.timeout.ms, the default
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


def strand_bin() -> Path:
    env = os.environ.get("STRAND_BIN")
    if env:
        return Path(env).resolve()
    for p in (REPO / "target/release/strand", REPO / "target/debug/strand"):
        if p.exists():
            return p
    raise SystemExit("no strand binary: build it (cargo build --release) or set STRAND_BIN")


def _die_with_parent():
    # Children die with the harness (PR_SET_PDEATHSIG = 1).
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass


class Net:
    """The namespaces, the bridge and the veths; faults on links."""

    def __init__(self, nodes: dict[str, str]):
        self.prefix = f"sx{os.getpid()}"
        self.nodes = nodes  # name -> ip
        self.sw = f"{self.prefix}-sw"
        self.up = False

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def exec(self, node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns(node), *argv, check=check)

    def create(self) -> None:
        self.up = True
        sh("ip", "netns", "add", self.sw)
        sh("ip", "netns", "exec", self.sw, "ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "netns", "exec", self.sw, "ip", "link", "set", "br0", "up")
        for i, (node, ip) in enumerate(self.nodes.items()):
            ns, veth = self.ns(node), f"v{i}"
            sh("ip", "netns", "add", ns)
            # Both ends are made in the node's namespace, then one is moved to the switch.
            sh("ip", "netns", "exec", ns, "ip", "link", "add", veth, "type", "veth", "peer",
               "name", "eth0")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", veth, "netns", self.sw)
            sh("ip", "netns", "exec", self.sw, "ip", "link", "set", veth, "master", "br0", "up")
            self.exec(node, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            self.exec(node, "ip", "link", "set", "eth0", "up")
            self.exec(node, "ip", "link", "set", "lo", "up")
            self.exec(node, "nft", "add table inet sx; "
                      "add chain inet sx input { type filter hook input priority 0; }; "
                      "add chain inet sx output { type filter hook output priority 0; }")

    def destroy(self) -> None:
        if not self.up:
            return
        for node in self.nodes:
            sh("ip", "netns", "del", self.ns(node), check=False)
        sh("ip", "netns", "del", self.sw, check=False)
        self.up = False

    def drop_from(self, node: str, source: str) -> None:
        """`node` drops every packet from `source` (one way: replies still flow, but TCP
        cannot work in either direction when this is applied on both sides)."""
        self.exec(node, "nft", "add", "rule", "inet", "sx", "input", "ip", "saddr",
                  self.nodes[source], "drop")

    def cut(self, a: str, b: str) -> None:
        self.drop_from(a, b)
        self.drop_from(b, a)

    def loss(self, node: str, percent: int) -> None:
        for chain in ("input", "output"):
            self.exec(node, "nft", "add", "rule", "inet", "sx", chain, "ip", "daddr" if chain == "output" else "saddr",
                      f"{SUBNET}.0/24", "numgen", "random", "mod", "100", "<", str(percent), "drop")

    def slow(self, node: str, rate: str) -> None:
        self.exec(node, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate,
                  "burst", "16kbit", "latency", "500ms")

    def heal(self, node: str | None = None) -> None:
        for n in [node] if node else self.nodes:
            self.exec(n, "nft", "flush", "chain", "inet", "sx", "input", check=False)
            self.exec(n, "nft", "flush", "chain", "inet", "sx", "output", check=False)
            self.exec(n, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)


@dataclass
class Proc:
    """A process in a node's namespace, restartable."""

    net: Net
    node: str
    argv: list[str]
    log: Path
    env: dict = field(default_factory=dict)
    p: subprocess.Popen | None = None
    wrapper: list[str] = field(default_factory=list)
    expected_exit: bool = True

    def start(self, wrapper: list[str] | None = None) -> None:
        self.wrapper = wrapper or []
        f = open(self.log, "ab")
        f.write(f"\n=== start {time.strftime('%H:%M:%S')} {' '.join(self.wrapper)}\n".encode())
        f.flush()
        self.p = subprocess.Popen(["ip", "netns", "exec", self.net.ns(self.node), *self.wrapper,
                                   *self.argv], stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env={**os.environ, **self.env},
                                  preexec_fn=_die_with_parent)
        f.close()
        self.expected_exit = False

    def running(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.p.pid, sig)

    def kill9(self) -> None:
        self.expected_exit = True
        if self.running():
            self.p.kill()
            self.p.wait(10)

    def stop(self, timeout: float = 15) -> None:
        self.expected_exit = True
        if self.running():
            self.signal(signal.SIGCONT)
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)

    def died(self) -> bool:
        """Exited by itself (not by the harness)."""
        return self.p is not None and self.p.poll() is not None and not self.expected_exit


class Cluster:
    def __init__(self, workdir: Path, brokers: int = 3, settings: dict | None = None,
                 disk_mb: int = 512):
        self.workdir = workdir
        self.n = brokers
        self.ids = list(range(1, brokers + 1))
        nodes = {"etcd": ETCD_IP, **{f"b{i}": f"{SUBNET}.{10 + i}" for i in self.ids},
                 "cli": CLI_IP}
        self.net = Net(nodes)
        self.bin = strand_bin()
        self.settings = {"default.replication.factor": "3", "min.insync.replicas": "2",
                         **(settings or {})}
        self.disk_mb = disk_mb
        self.mounts: list[Path] = []
        self.etcd = Proc(self.net, "etcd", [
            "etcd", "--name", "e", "--data-dir", str(workdir / "etcd"),
            "--listen-client-urls", f"http://{ETCD_IP}:2379",
            "--advertise-client-urls", f"http://{ETCD_IP}:2379",
            "--listen-peer-urls", "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", "e=http://127.0.0.1:2380"], workdir / "etcd.log",
            )
        self.brokers: dict[int, Proc] = {}
        for i in self.ids:
            data = workdir / f"b{i}"
            argv = [str(self.bin), "--listen", f"{self.ip(i)}:{PORT}",
                    "--advertised", f"{self.ip(i)}:{PORT}", "--data-dir", str(data / "data"),
                    "--node-id", str(i), "--etcd-endpoints", f"{ETCD_IP}:2379"]
            for k, v in self.settings.items():
                argv += ["--set", f"{k}={v}"]
            self.brokers[i] = Proc(self.net, f"b{i}", argv, workdir / f"broker{i}.log",
                                   env={"RUST_LOG": "info"})

    def ip(self, i: int) -> str:
        return f"{SUBNET}.{10 + i}"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.ip(i)}:{PORT}" for i in self.ids)

    def start(self) -> None:
        self.net.create()
        for i in self.ids:
            d = self.workdir / f"b{i}"
            d.mkdir(parents=True, exist_ok=True)
            sh("mount", "-t", "tmpfs", "-o", f"size={self.disk_mb}m", "tmpfs", str(d))
            self.mounts.append(d)
        self.etcd.start()
        self.wait_etcd()
        for b in self.brokers.values():
            b.start()
        self.wait_healthy(60)

    def wait_etcd(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.net.exec("cli", "etcdctl", f"--endpoints=http://{ETCD_IP}:2379",
                              "endpoint", "health", check=False)
            if r.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("etcd did not become healthy")

    def cli(self, *args: str, broker: int | None = None, timeout: float = 10):
        """`strand <args> --json` from the client namespace; the parsed JSON or None."""
        b = f"{self.ip(broker)}:{PORT}" if broker else self.bootstrap.split(",")[0]
        r = self.net.exec("cli", str(self.bin), *args, "-b", b, "--json", "--timeout",
                          str(int(timeout)), check=False)
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except json.JSONDecodeError:
            return None

    def health(self) -> str | None:
        """None when healthy; otherwise what is wrong."""
        for i in self.ids:
            if not self.brokers[i].running():
                return f"broker {i} is not running"
            s = self.cli("cluster", "status", broker=i, timeout=5)
            if s is None:
                return f"broker {i} does not answer"
            if len(s["brokers"]) != self.n:
                return f"broker {i} names {len(s['brokers'])} brokers"
            if s["under_replicated_partitions"] or s["offline_partitions"]:
                return (f"broker {i}: {s['under_replicated_partitions']} under-replicated, "
                        f"{s['offline_partitions']} offline")
        return None

    def wait_healthy(self, timeout: float) -> float | None:
        """Seconds until healthy, or None if not within `timeout`."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.health() is None:
                return time.monotonic() - t0
            time.sleep(0.5)
        return None

    def controller(self) -> int | None:
        s = self.cli("cluster", "status", timeout=5)
        return s["controller_id"] if s and s["controller_id"] in self.brokers else None

    def leader(self, topic: str, partition: int) -> int | None:
        d = self.cli("topics", "describe", topic, timeout=5)
        try:
            lead = d[0]["partitions"][partition]["leader"]
        except (TypeError, IndexError, KeyError):
            return None
        return lead if lead in self.brokers else None

    def coordinator(self, group: str) -> int | None:
        py = REPO / ".venv/bin/python"
        code = ("import sys\nfrom confluent_kafka.admin import AdminClient\n"
                f"a=AdminClient({{'bootstrap.servers':'{self.bootstrap}'}})\n"
                f"f=a.describe_consumer_groups(['{group}'],request_timeout=5)['{group}']\n"
                "print(f.result(6).coordinator.id)")
        r = self.net.exec("cli", str(py if py.exists() else sys.executable), "-c", code,
                          check=False)
        try:
            c = int(r.stdout.strip())
        except ValueError:
            return None
        return c if c in self.brokers else None

    def fill_disk(self, i: int) -> None:
        f = self.workdir / f"b{i}" / "filler"
        sh("fallocate", "-l", f"{self.disk_mb}M", str(f), check=False)  # ENOSPC: as much as fits
        if not f.exists() or f.stat().st_size == 0:
            sh("dd", "if=/dev/zero", f"of={f}", "bs=1M", check=False, timeout=60)

    def free_disk(self, i: int) -> None:
        (self.workdir / f"b{i}" / "filler").unlink(missing_ok=True)

    def crashed(self) -> list[str]:
        out = []
        for i, b in self.brokers.items():
            if b.died():
                out.append(f"broker {i} exited by itself ({b.p.returncode}): "
                           + tail(b.log))
        if self.etcd.died():
            out.append(f"etcd exited by itself ({self.etcd.p.returncode})")
        return out

    def stop(self) -> None:
        for b in self.brokers.values():
            b.stop()
        self.etcd.stop()
        self.net.destroy()
        for d in self.mounts:
            sh("umount", "-l", str(d), check=False)
        self.mounts.clear()


def tail(path: Path, n: int = 6) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    picked = [l for l in lines if "panic" in l or "ERROR" in l][-n:] or lines[-n:]
    return " | ".join(l[-300:] for l in picked)


# --- faults --------------------------------------------------------------------------------

FAULTS = ["kill", "pause", "isolate", "controller-etcd-cut", "split", "one-way",
          "etcd-kill", "broker-etcd-cut", "loss", "slow", "clock-skew", "disk-full"]


@dataclass
class Fault:
    kind: str
    target: int | None
    why: str  # how the target was chosen
    at_s: float
    held_s: float
    detail: str = ""


class Injector:
    """Applies and heals one fault at a time."""

    def __init__(self, cluster: Cluster, rng: random.Random, topic: str, group: str | None):
        self.c = cluster
        self.rng = rng
        self.topic = topic
        self.group = group

    def pick(self) -> tuple[int, str]:
        """A broker: the leader of a partition, the controller, the group coordinator or any."""
        how = self.rng.choice(["leader", "controller", "coordinator", "any"])
        b = None
        if how == "leader":
            b = self.c.leader(self.topic, self.rng.randrange(6))
        elif how == "controller":
            b = self.c.controller()
        elif how == "coordinator" and self.group:
            b = self.c.coordinator(self.group)
        if b is None:
            how, b = "any", self.rng.choice(self.c.ids)
        return b, how

    def others(self, b: int) -> list[int]:
        return [i for i in self.c.ids if i != b]

    def apply(self, kind: str) -> tuple[int | None, str, str, callable]:
        """Applies `kind`; returns (target, how chosen, detail, heal)."""
        c, net, rng = self.c, self.c.net, self.rng
        if kind == "etcd-kill":
            c.etcd.kill9()

            def heal():
                c.etcd.start()
                c.wait_etcd(30)
            return None, "-", "", heal
        b, how = self.pick()
        node, proc = f"b{b}", c.brokers[b]
        if kind == "kill":
            proc.kill9()
            return b, how, "", lambda: proc.start()
        if kind == "pause":
            proc.signal(signal.SIGSTOP)
            return b, how, "", lambda: proc.signal(signal.SIGCONT)
        if kind == "isolate":
            for other in ["etcd", "cli", *[f"b{o}" for o in self.others(b)]]:
                net.cut(node, other)
            return b, how, "from etcd, brokers and clients", lambda: net.heal()
        if kind == "controller-etcd-cut":
            b = c.controller() or b
            net.cut(f"b{b}", "etcd")
            return b, "controller", "cut from etcd, not from clients", lambda: net.heal()
        if kind == "split":
            for o in self.others(b):
                net.cut(node, f"b{o}")
            net.cut(node, "etcd")
            return b, how, "minority of one (with clients) | majority with etcd", lambda: net.heal()
        if kind == "one-way":
            o = rng.choice(self.others(b))
            net.drop_from(f"b{o}", node)
            return b, how, f"packets from {b} to {o} dropped", lambda: net.heal()
        if kind == "broker-etcd-cut":
            net.cut(node, "etcd")
            return b, how, "", lambda: net.heal()
        if kind == "loss":
            pct = rng.choice([10, 20, 30])
            net.loss(node, pct)
            return b, how, f"{pct}% loss", lambda: net.heal()
        if kind == "slow":
            rate = rng.choice(["1mbit", "4mbit"])
            net.slow(node, rate)
            return b, how, rate, lambda: net.heal()
        if kind == "clock-skew":
            skew = rng.choice([-1, 1]) * rng.choice([30, 300, 3600])
            proc.stop()
            # libfaketime preloaded into the broker itself (the `faketime` wrapper would be
            # another process in between): the wall clock skewed, the monotonic one not.
            proc.env.update({"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": f"{skew:+d}s",
                             "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
            proc.start()

            def heal():
                proc.stop()
                for k in ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC"):
                    proc.env.pop(k, None)
                proc.start()
            return b, how, f"wall clock {skew:+d} s", heal
        if kind == "disk-full":
            c.fill_disk(b)

            def heal():
                c.free_disk(b)
                # A clustered broker whose data dir went offline leaves the cluster (as Kafka's
                # halts); the operator frees space and starts it again.
                time.sleep(0.5)
                since_start = proc.log.read_text(errors="replace").rsplit("=== start", 1)[-1]
                if proc.p is not None and proc.p.poll() is not None \
                        and "data dir is offline" in since_start:
                    proc.expected_exit = True
                    proc.start()
            return b, how, f"tmpfs of {c.disk_mb} MiB filled", heal
        raise ValueError(kind)


# --- a run ---------------------------------------------------------------------------------

WORKLOADS = {
    # idempotent acks=all producers, tail/final readers at both isolation levels, a group
    "idempotent": [],
    # transactions with aborts; read_committed readers must see no aborted record
    "transactional": ["--transactional", "--abort-rate", "0.2"],
    # a KIP-848 group churning fast while records flow
    "group-churn": ["--group-protocol", "consumer", "--group-members", "4", "--churn", "2"],
}


def one_run(seed: int, out: Path, load_s: float, workload: str, kinds: list[str],
            rate: int = 600) -> dict:
    rng = random.Random(seed)
    workload = workload if workload != "random" else rng.choice(sorted(WORKLOADS))
    rundir = out / f"run-{seed}"
    if rundir.exists():
        shutil.rmtree(rundir)
    rundir.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix=f"chaos-{seed}-", dir="/tmp"))
    cluster = Cluster(work)
    result: dict = {"seed": seed, "workload": workload, "load_s": load_s, "faults": []}
    t_start = time.monotonic()
    try:
        cluster.start()
        topic = f"chaos-{seed}"
        verify_json = rundir / "verify.json"
        vlog = open(rundir / "verify.log", "wb")
        argv = ["ip", "netns", "exec", cluster.net.ns("cli"), str(cluster.bin), "verify",
                "-b", cluster.bootstrap, "--topic", topic, "--partitions", "6",
                "--replication-factor", "3", "--config", "min.insync.replicas=2",
                "--duration", str(load_s), "--settle", "150", "--rate", str(rate),
                "--seed", str(seed), "--json", str(verify_json),
                "--delivery-timeout", "90", *WORKLOADS[workload]]
        v = subprocess.Popen(argv, stdout=vlog, stderr=subprocess.STDOUT,
                             preexec_fn=_die_with_parent)
        t0 = time.monotonic()
        group = None
        inj = Injector(cluster, rng, topic, None)
        # Faults, one at a time, from 3 s into the load until 3 s before its end.
        time.sleep(3)
        while time.monotonic() - t0 < load_s - 3:
            if group is None:
                txt = (rundir / "verify.log").read_text(errors="replace")
                if " run " in txt:
                    run_id = txt.split(" run ", 1)[1].split()[0]
                    group = inj.group = f"strand-verify-{run_id}-group"
            kind = rng.choice(kinds)
            held = rng.uniform(2, 8) if kind != "pause" else rng.uniform(LEASE_S + 1, 8)
            held = min(held, max(1.0, load_s - 3 - (time.monotonic() - t0)))
            at = time.monotonic() - t0
            target, how, detail, heal = inj.apply(kind)
            time.sleep(held)
            heal()
            result["faults"].append(Fault(kind, target, how, round(at, 1), round(held, 1),
                                          detail).__dict__)
            time.sleep(rng.uniform(1, 3))
        cluster.net.heal()
        t_heal = time.monotonic()
        rc = v.wait(load_s + 400)
        vlog.close()
        result["verify_exit"] = rc
        report = json.loads(verify_json.read_text()) if verify_json.exists() else None
        if report:
            result["verdict"] = report["verdict"]
            result["violations"] = {k: f["count"] for k, f in report["violations"].items()
                                    if f["count"]}
            result["examples"] = {k: f["examples"][:3] for k, f in report["violations"].items()
                                  if f["count"]}
            result["totals"] = report["totals"]
            result["stalls"] = report["stalls"]
        else:
            result["verdict"] = "error"
            result["error"] = tail(rundir / "verify.log", 10)
        rec = cluster.wait_healthy(90)
        result["healthy"] = rec is not None
        result["recovery_s"] = round(time.monotonic() - t_heal, 1) if rec is not None else None
        if rec is None:
            result["unhealthy"] = cluster.health()
        result["crashes"] = cluster.crashed()
    except Exception as e:  # the harness's own failure is a failed run, with why
        result["verdict"] = "error"
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        cluster.stop()
        for name in ["etcd.log", *[f"broker{i}.log" for i in cluster.ids]]:
            if (work / name).exists():
                shutil.copy(work / name, rundir / name)
        shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    result["ok"] = (result.get("verdict") == "ok" and result.get("healthy", False)
                    and not result.get("crashes"))
    return result


def summary_row(r: dict) -> str:
    t = r.get("totals", {})
    kinds = ",".join(sorted({f["kind"] for f in r["faults"]}))
    v = r.get("violations") or {}
    return (f"{r['seed']:>6} {r['workload']:<13} {len(r['faults']):>3} {t.get('acked', 0):>7} "
            f"{t.get('unknown', 0):>5} {sum(v.values()):>4} {len(r.get('stalls') or []):>3} "
            f"{str(r.get('recovery_s')):>6} {'ok' if r['ok'] else 'FAIL':<4} {kinds}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=None, help="first seed (default: from the clock)")
    ap.add_argument("--duration", type=float, default=60, help="seconds of load per run")
    ap.add_argument("--workload", default="random", choices=["random", *WORKLOADS])
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help=f"comma-separated kinds to draw from (default: all of {FAULTS})")
    ap.add_argument("--rate", type=int, default=600, help="records/s of the workload")
    ap.add_argument("--out", default=str(REPO / "compat-tests/.work/chaos"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("chaos.py needs root (network namespaces, nftables, tmpfs)", file=sys.stderr)
        return 2
    kinds = [k for k in a.faults.split(",") if k]
    bad = set(kinds) - set(FAULTS)
    if bad:
        print(f"unknown fault kinds {sorted(bad)}; known: {FAULTS}", file=sys.stderr)
        return 2
    seed0 = a.seed if a.seed is not None else int(time.time()) % 100000
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    print(f"{'SEED':>6} {'WORKLOAD':<13} {'FLT':>3} {'ACKED':>7} {'UNKN':>5} {'VIOL':>4} "
          f"{'STL':>3} {'RECOV':>6} {'':<4} FAULTS", flush=True)
    failed = 0
    for n in range(a.runs):
        r = one_run(seed0 + n, out, a.duration, a.workload, kinds, a.rate)
        with open(results, "a") as f:
            f.write(json.dumps(r) + "\n")
        print(summary_row(r), flush=True)
        if not r["ok"]:
            failed += 1
            print(f"       run {r['seed']} failed: " + json.dumps(
                {k: r.get(k) for k in ("verdict", "violations", "examples", "stalls",
                                       "unhealthy", "crashes", "error") if r.get(k)})[:3000],
                  flush=True)
    print(f"{a.runs - failed} of {a.runs} runs ok; results in {results}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
