"""Pytest fixtures that run a real `strand` broker process per test.

The binary comes from $STRAND_BIN (absolute, or relative to the repo root),
else target/release/strand, else target/debug/strand.

    def test_x(broker):                 # default settings
        broker.bootstrap                # "127.0.0.1:PORT"

    def test_y(make_broker):
        b = make_broker({"auto.create.topics.enable": "false"})

    @pytest.mark.broker_settings(**{"num.partitions": "3"})
    def test_z(broker): ...             # `broker` with extra --set options

Each broker gets a free 127.0.0.1 port and a fresh data dir under the test's
tmp_path; its stderr goes to a file there and is attached to the report of a
failing test. Brokers are always killed at teardown (and die with pytest:
PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


def find_strand_bin() -> Path:
    env = os.environ.get("STRAND_BIN")
    if env:
        p = Path(env)
        if not p.is_absolute():
            p = REPO / p
        if not p.exists():
            pytest.fail(f"STRAND_BIN={env} does not exist", pytrace=False)
        return p
    for rel in ("target/release/strand", "target/debug/strand"):
        p = REPO / rel
        if p.exists():
            return p
    pytest.fail(
        "no strand binary: build it (cargo build --release) or set STRAND_BIN",
        pytrace=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # Make the broker die if pytest dies (e.g. pytest-timeout, Ctrl-C).
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class BrokerError(Exception):
    pass


class Broker:
    """One strand process: start/stop/kill9/restart on a fixed port and data dir."""

    def __init__(self, binary: Path, workdir: Path, settings: dict | None = None, name: str = "broker"):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.settings = {str(k): str(v) for k, v in (settings or {}).items()}
        self.port = free_port()
        self.host = "127.0.0.1"
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.stderr_path = self.workdir / "stderr.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.last_returncode: int | None = None

    # -- properties --------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "serve",
            "--listen",
            self.bootstrap,
            "--data-dir",
            str(self.data_dir),
        ]
        for k, v in self.settings.items():
            cmd += ["--set", f"{k}={v}"]
        return cmd

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> "Broker":
        if self.running():
            raise BrokerError("broker already running")
        self.starts += 1
        # STRAND_<KEY> variables are broker settings (and strand rejects unknown
        # ones, e.g. our own STRAND_BIN): start from a clean slate.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRAND_")}
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        with open(self.stderr_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=str(self.workdir),
                preexec_fn=_die_with_parent,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.last_returncode = rc
                raise BrokerError(
                    f"strand exited with code {rc} before listening on {self.bootstrap}\n"
                    f"--- stderr tail ---\n{self.stderr_tail()}"
                )
            try:
                with socket.create_connection(self.address, timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise BrokerError(
                    f"strand did not listen on {self.bootstrap} within {timeout}s\n"
                    f"--- stderr tail ---\n{self.stderr_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Graceful stop: SIGTERM and wait. Raises if it does not exit in time."""
        if self.proc is None:
            return self.last_returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.last_returncode = self.proc.returncode
                self.proc = None
                raise BrokerError(
                    f"strand did not exit within {timeout}s of SIGTERM (killed)\n"
                    f"--- stderr tail ---\n{self.stderr_tail()}"
                )
        self.last_returncode = self.proc.returncode
        self.proc = None
        return self.last_returncode

    def kill9(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.last_returncode = self.proc.returncode
            self.proc = None

    def restart(self, graceful: bool = True, timeout: float = START_TIMEOUT) -> "Broker":
        """Stop (SIGTERM, or SIGKILL if graceful=False) and start on the same port and data dir."""
        if graceful:
            self.stop()
        else:
            self.kill9()
        # The port may still be held briefly by the old process' socket.
        return self.start(timeout)

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    # -- diagnostics ---------------------------------------------------------
    def stderr_tail(self, max_bytes: int = 6000) -> str:
        try:
            data = self.stderr_path.read_bytes()
        except OSError:
            return "<no stderr file>"
        if len(data) > max_bytes:
            data = b"...\n" + data[-max_bytes:]
        return data.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Broker {self.bootstrap} data={self.data_dir} running={self.running()}>"


# -- fixtures ----------------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "broker_settings(**kv): extra --set KEY=VALUE options for the `broker` fixture"
    )


@pytest.fixture(scope="session")
def strand_bin() -> Path:
    return find_strand_bin()


@pytest.fixture
def make_broker(request, strand_bin, tmp_path):
    brokers: list[Broker] = []
    request.node._strand_brokers = brokers

    def make(settings: dict | None = None, start: bool = True) -> Broker:
        b = Broker(strand_bin, tmp_path / f"broker{len(brokers)}", settings, name=f"broker{len(brokers)}")
        brokers.append(b)
        if start:
            try:
                b.start()
            except BrokerError as e:
                pytest.fail(str(e), pytrace=False)
        return b

    yield make
    for b in brokers:
        b.close()
        # drop client handles cached on the broker (helpers.admin) so librdkafka
        # threads do not outlive the test and retry a dead port
        for attr in [a for a in vars(b) if a.endswith("_client")]:
            delattr(b, attr)


@pytest.fixture
def broker(request, make_broker) -> Broker:
    marker = request.node.get_closest_marker("broker_settings")
    settings = dict(marker.kwargs) if marker else {}
    return make_broker(settings)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in getattr(item, "_strand_brokers", []):
            rep.sections.append((f"strand {b.name} stderr ({b.stderr_path})", b.stderr_tail()))


# -- cluster mode: a real etcd plus several strand processes -------------------------


class Etcd:
    """One etcd server (Debian's etcd-server) on free 127.0.0.1 ports with its own data dir."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.started = False

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20) -> "Etcd":
        # A port picked by free_port() can be taken by someone else's outgoing connection
        # before etcd binds it: the first start moves to other ports then (a restart keeps
        # its endpoint, which the brokers know).
        for attempt in range(3):
            try:
                return self._start(timeout)
            except BrokerError as e:
                if self.started or "address already in use" not in str(e) or attempt == 2:
                    raise
                self.client_port = free_port()
                self.peer_port = free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> "Etcd":
        binary = shutil.which("etcd") or "/usr/bin/etcd"
        peer = f"http://127.0.0.1:{self.peer_port}"
        client = f"http://{self.endpoint}"
        cmd = [
            binary, "--name", "e0", "--data-dir", str(self.workdir / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"e0={peer}",
        ]
        with open(self.workdir / "etcd.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"etcd exited: {(self.workdir / 'etcd.log').read_text()[-3000:]}")
            try:
                out = subprocess.run(["etcdctl", "--endpoints", self.endpoint, "endpoint", "health"],
                                     capture_output=True, timeout=5)
                if out.returncode == 0:
                    self.started = True
                    return self
            except (OSError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.1)
        raise BrokerError("etcd did not become healthy")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None

    def get_prefix(self, prefix: str) -> dict:
        out = subprocess.run(["etcdctl", "--endpoints", self.endpoint, "get", "--prefix", prefix],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        lines = out.splitlines()
        return dict(zip(lines[0::2], lines[1::2]))


@pytest.fixture
def etcd(tmp_path):
    e = Etcd(tmp_path / "etcd").start()
    yield e
    e.stop()


@pytest.fixture
def make_cluster(make_broker, etcd):
    """make_cluster(n, settings) -> [Broker] with node ids 1..n, sharing `etcd` (prefix
    /strand-test). Brokers added later with make_cluster.add(node_id)."""

    class Cluster(list):
        prefix = "/strand-test"

        def settings_for(self, node_id: int, extra: dict | None = None) -> dict:
            s = {"node.id": node_id, "etcd.endpoints": etcd.endpoint, "etcd.prefix": self.prefix}
            s.update(extra or {})
            return s

        def add(self, node_id: int, extra: dict | None = None, start: bool = True) -> Broker:
            b = make_broker(self.settings_for(node_id, extra), start=start)
            self.append(b)
            return b

        @property
        def bootstrap(self) -> str:
            return ",".join(b.bootstrap for b in self if b.running())

    cluster = Cluster()
    cluster.etcd = etcd

    def make(n: int = 3, settings: dict | None = None) -> Cluster:
        for i in range(1, n + 1):
            cluster.add(i, settings)
        wait_until_each_names_all(cluster, n)
        return cluster

    return make


def wait_until_each_names_all(brokers: list[Broker], n: int, timeout: float = 15.0) -> None:
    """Every broker's Metadata lists `n` brokers. A broker learns of the others through its
    etcd watch, a few milliseconds after they register; a test that creates an RF=n topic the
    moment the last broker listens could otherwise be told only some are registered."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    for b in brokers:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        while True:
            seen = len(admin.list_topics(timeout=5).brokers)
            if seen >= n:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{b.name} names {seen} of {n} brokers after {timeout}s")
            time.sleep(0.05)
