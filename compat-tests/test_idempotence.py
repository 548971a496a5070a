"""Idempotent producers (KIP-98 / KIP-360) against a real strand process.

- Real clients (confluent-kafka / librdkafka 2.16, kafka-python 3.x, aiokafka) with
  enable.idempotence=true talk to the broker through a small TCP proxy (`KafkaProxy`) that
  forwards a ProduceRequest to the broker, then throws away the broker's response and closes
  the client's connection (or holds the response back past the client's request timeout).
  The broker has written the batch; the client does not know and sends the same batch again
  (same producer id, epoch and sequence). The partition must hold every record exactly once,
  in order, at the offsets the delivery reports gave. The proxy parses the requests, so each
  test also proves that a batch really was sent twice.
- SIGKILL of the broker right after it wrote (and fsynced) a batch, before the ack reaches
  librdkafka: the batch resent to the restarted broker is recognised from the producer state
  rebuilt from the log.
- Raw wire (kwire_txn.py): sequence gaps, duplicates of the last five batches, fenced epochs,
  unknown producer ids, a new epoch that does not start at sequence 0.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import pytest
from confluent_kafka import Producer

import kwire
import kwire_txn as kt
from conftest import free_port
from helpers import create_topic, unique

pytestmark = pytest.mark.timeout(60)


# ======================================================================================
# A Kafka-aware TCP proxy
# ======================================================================================


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(sock: socket.socket) -> bytes | None:
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">i", head)
    body = _read_exact(sock, n)
    return None if body is None else head + body


def produce_batches(frame: bytes) -> list[tuple[str, int, int, int, int, int]]:
    """(topic, partition, producer_id, epoch, base_sequence, record_count) of every batch in a
    ProduceRequest frame (any version 3-11)."""
    r = kwire.Reader(frame[4:])
    _api, version, _corr = r.i16(), r.i16(), r.i32()
    r.string()  # client id
    flexible = version >= 9
    if flexible:
        r.skip_tagged_fields()

    def s():
        if flexible:
            n = r.uvarint() - 1
            return None if n < 0 else r.take(n).decode()
        return r.string()

    def arr():
        return (r.uvarint() - 1) if flexible else r.i32()

    s()  # transactional id
    r.i16(), r.i32()  # acks, timeout
    out = []
    for _ in range(max(arr(), 0)):
        topic = s()
        for _ in range(max(arr(), 0)):
            p = r.i32()
            if flexible:
                n = r.uvarint() - 1
            else:
                n = r.i32()
            data = r.take(n) if n > 0 else b""
            pos = 0
            while len(data) - pos >= 61:
                (blen,) = struct.unpack(">i", data[pos + 8:pos + 12])
                pid, epoch, seq, count = struct.unpack(">qhii", data[pos + 43:pos + 61])
                out.append((topic, p, pid, epoch, seq, count))
                pos += 12 + blen
            if flexible:
                r.skip_tagged_fields()
        if flexible:
            r.skip_tagged_fields()
    return out


class KafkaProxy:
    """Forwards 127.0.0.1:<port> to the broker. `drop_produce` holds the 1-based ordinals of
    ProduceRequests whose response is discarded (the client connection is then closed);
    `stall_produce` those whose response is held back `stall_s` seconds before it is
    discarded and the connection closed (the client times the request out first)."""

    def __init__(self, upstream: tuple[str, int], port: int = 0, drop_produce=(), stall_produce=(),
                 stall_s=0.0, on_drop=None):
        self.upstream = upstream
        self.on_drop = on_drop
        self.drop_produce = set(drop_produce)
        self.stall_produce = set(stall_produce)
        self.stall_s = stall_s
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.produce_count = 0
        self.batches: list[tuple] = []  # every produce batch seen, in send order
        self.dropped: list[tuple] = []  # batches whose response was discarded
        self.connections = 0
        self.closed = False
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            for x in (c, u):
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections += 1
                self._socks += [c, u]
            conn = {"c": c, "u": u, "fate": {}, "dead": False}
            threading.Thread(target=self._up, args=(conn,), daemon=True).start()
            threading.Thread(target=self._down, args=(conn,), daemon=True).start()

    def _kill(self, conn):
        conn["dead"] = True
        for x in (conn["c"], conn["u"]):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()

    def _up(self, conn):
        while not conn["dead"]:
            frame = _read_frame(conn["c"])
            if frame is None:
                return self._kill(conn)
            api, _v, corr = struct.unpack(">hhi", frame[4:12])
            if api == kwire.API_PRODUCE:
                batches = produce_batches(frame)
                with self.lock:
                    self.produce_count += 1
                    n = self.produce_count
                    self.batches += batches
                    if n in self.drop_produce:
                        conn["fate"][corr] = ("drop", batches)
                    elif n in self.stall_produce:
                        conn["fate"][corr] = ("stall", batches)
            try:
                conn["u"].sendall(frame)
            except OSError:
                return self._kill(conn)

    def _down(self, conn):
        while not conn["dead"]:
            frame = _read_frame(conn["u"])
            if frame is None:
                return self._kill(conn)
            (corr,) = struct.unpack(">i", frame[4:8])
            fate = conn["fate"].pop(corr, None)
            if fate is not None:
                kind, batches = fate
                with self.lock:
                    self.dropped += batches
                if kind == "stall":
                    time.sleep(self.stall_s)
                if self.on_drop is not None:
                    self.on_drop()
                # the broker has answered (so it has written the batch): the client never
                # learns of it
                return self._kill(conn)
            try:
                conn["c"].sendall(frame)
            except OSError:
                return self._kill(conn)

    def resent(self) -> list[tuple]:
        """Batches (topic, partition, pid, epoch, seq, count) sent more than once."""
        seen, again = set(), []
        with self.lock:
            for b in self.batches:
                if b in seen:
                    again.append(b)
                seen.add(b)
        return again

    def close(self):
        self.closed = True
        self.lsock.close()
        with self.lock:
            for s in self._socks:
                try:
                    s.close()
                except OSError:
                    pass


@pytest.fixture
def proxied(make_broker):
    """Factory -> (broker, proxy): the broker advertises the proxy's address, so every client
    connection (bootstrap and the ones Metadata names) goes through the proxy."""
    proxies = []

    def make(**kw):
        port = free_port()
        b = make_broker({"advertised.listeners": f"127.0.0.1:{port}"})
        p = KafkaProxy(b.address, port=port, **kw)
        proxies.append(p)
        return b, p

    yield make
    for p in proxies:
        p.close()


def _check_exactly_once(broker_direct_consume, topic, n, acks):
    """Every value v0..v{n-1} exactly once, in order, at the offsets acknowledged."""
    got = broker_direct_consume()
    values = [v for _o, v in got]
    dups = sorted({v for v in values if values.count(v) > 1})
    assert not dups, f"duplicated records in the log: {dups[:10]}"
    expected = [f"v{i:05d}".encode() for i in range(n)]
    assert values == expected, f"log differs from the sent sequence (first 20: {values[:20]})"
    assert [o for o, _ in got] == list(range(n))
    if acks is not None:
        assert acks == {f"v{i:05d}".encode(): i for i in range(n)}, "acknowledged offsets differ from the log"


class _Direct:
    """Reads through the broker's real port (the proxy may be closed); Metadata advertises the
    proxy, so read with raw Fetch requests instead of a client."""

    def __init__(self, broker, topic):
        self.addr = broker.address
        self.topic = topic

    def __call__(self):
        out, f = kt.read_all(self.addr, self.topic, 0, isolation_level=0)
        return out


# ======================================================================================
# Real clients through the proxy
# ======================================================================================

N_MSGS = 400
DROPS = (2, 5, 9, 14)


def _run_confluent(bootstrap, topic, extra=None):
    acks, errors = {}, []

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acks[msg.value()] = msg.offset()

    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "linger.ms": 2,
        "batch.num.messages": 20,
        "max.in.flight.requests.per.connection": 5,
        "message.timeout.ms": 40000,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 50,
        "log_level": 3,
    }
    conf.update(extra or {})
    p = Producer(conf)
    for i in range(N_MSGS):
        while True:
            try:
                p.produce(topic, value=f"v{i:05d}".encode(), partition=0, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        if i % 20 == 19:
            p.poll(0)
            time.sleep(0.01)  # several requests, several in flight
    left = p.flush(45)
    assert left == 0, f"{left} messages undelivered"
    assert not errors, f"delivery errors: {errors[:5]}"
    return acks


def _run_kafka_python(bootstrap, topic, extra=None):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                      linger_ms=2, batch_size=400, max_in_flight_requests_per_connection=5,
                      retries=2147483647, delivery_timeout_ms=40000, request_timeout_ms=5000,
                      retry_backoff_ms=50, reconnect_backoff_ms=50, **(extra or {}))
    futures = []
    for i in range(N_MSGS):
        futures.append((f"v{i:05d}".encode(), p.send(topic, value=f"v{i:05d}".encode(), partition=0)))
        if i % 20 == 19:
            time.sleep(0.01)
    p.flush(45)
    acks = {v: f.get(timeout=45).offset for v, f in futures}
    p.close(5)
    return acks


def _run_aiokafka(bootstrap, topic, extra=None):
    from aiokafka import AIOKafkaProducer

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                             linger_ms=2, max_batch_size=400, request_timeout_ms=5000,
                             retry_backoff_ms=50, **(extra or {}))
        await p.start()
        try:
            futs = []
            for i in range(N_MSGS):
                futs.append((f"v{i:05d}".encode(), await p.send(topic, value=f"v{i:05d}".encode(), partition=0)))
                if i % 20 == 19:
                    await asyncio.sleep(0.01)
            out = {}
            for v, f in futs:
                md = await asyncio.wait_for(f, 45)
                out[v] = md.offset
            return out
        finally:
            await p.stop()

    return asyncio.run(main())


RUNNERS = {"confluent": _run_confluent, "kafka-python": _run_kafka_python, "aiokafka": _run_aiokafka}


@pytest.mark.parametrize("client", list(RUNNERS))
def test_response_lost_after_write_no_duplicates(proxied, client):
    """The broker writes a batch, its ack is lost with the connection; the client resends the
    same batch (same pid/epoch/sequence) on a new connection: stored once, in order."""
    broker, proxy = proxied(drop_produce=DROPS)
    topic = unique("idem")
    kt_create(broker, topic)
    acks = RUNNERS[client](proxy.address, topic)
    assert proxy.dropped, "the proxy never dropped a produce response (scenario not exercised)"
    resent = proxy.resent()
    assert resent, f"no batch was sent twice; dropped {proxy.dropped[:3]}"
    dropped_seqs = {(b[2], b[3], b[4]) for b in proxy.dropped}
    assert any((b[2], b[3], b[4]) in dropped_seqs for b in resent), (
        "no batch whose response was dropped was resent with the same pid/epoch/sequence")
    _check_exactly_once(_Direct(broker, topic), topic, N_MSGS, acks)


def test_request_timeout_retry_no_duplicates(proxied):
    """The ack is held back past the client's request timeout (the broker wrote the batch);
    librdkafka times the request out and retries it: stored once, in order."""
    broker, proxy = proxied(stall_produce=(3, 8), stall_s=2.5)
    topic = unique("idem-to")
    kt_create(broker, topic)
    acks = _run_confluent(proxy.address, topic, {"request.timeout.ms": 1000, "socket.timeout.ms": 1500})
    assert proxy.dropped, "the proxy never held a produce response back"
    assert proxy.resent(), "no batch was sent twice (the timeout did not cause a retry)"
    _check_exactly_once(_Direct(broker, topic), topic, N_MSGS, acks)


def kt_create(broker, topic, partitions=1):
    """Create a topic through the broker's real port (Metadata advertises the proxy, and the
    proxy may drop responses) and wait until a raw Fetch finds its partition 0."""
    from confluent_kafka.admin import AdminClient, NewTopic

    a = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 3})
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                         operation_timeout=10, request_timeout=15)
    fs[topic].result(20)
    # wait until the partition answers a raw Fetch
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if kt.fetch(broker.address, topic, 0, 0, 0).error == 0:
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} not ready")


# ======================================================================================
# SIGKILL in the middle of an idempotent stream
# ======================================================================================


def test_kill9_after_write_before_ack_exactly_once(proxied):
    """The broker writes (and fsyncs: acks=all) the 5th ProduceRequest; the proxy then
    SIGKILLs and restarts it instead of passing the ack on. librdkafka resends that batch
    (and the others in flight) to the restarted broker, which must recognise it from the
    producer state rebuilt from the log: every record once, in order, no delivery error."""
    kill, killed = threading.Event(), threading.Event()

    def kill_and_restart():  # in a proxy thread, which must not start the broker (PDEATHSIG)
        kill.set()
        killed.wait(10)

    broker, proxy = proxied(drop_produce=(5,), on_drop=kill_and_restart)
    topic = unique("idem-kill")
    kt_create(broker, topic)
    result = {}

    def run():
        try:
            result["acks"] = _run_confluent(proxy.address, topic, {"reconnect.backoff.max.ms": 500})
        except BaseException as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert kill.wait(20), "the 5th ProduceRequest never got a response"
    broker.kill9()
    killed.set()
    broker.start()
    t.join(50)
    assert not t.is_alive(), "producer did not finish"
    if "error" in result:
        raise result["error"]
    acks = result["acks"]
    assert broker.starts == 2, "the broker was not restarted"
    assert proxy.dropped, "the scenario did not happen"
    dropped = {(b[2], b[3], b[4]) for b in proxy.dropped}
    assert any((b[2], b[3], b[4]) in dropped for b in proxy.resent()), (
        "the batch written before the kill was not resent")
    _check_exactly_once(_Direct(broker, topic), topic, N_MSGS, acks)
    # and the producer state is also right for a new producer after the restart
    n2 = _run_confluent(proxy.address, topic)
    assert sorted(n2.values()) == list(range(N_MSGS, 2 * N_MSGS))


# ======================================================================================
# Raw wire: the sequence and epoch rules
# ======================================================================================


def _vals(prefix, n):
    return [f"{prefix}{i}".encode() for i in range(n)]


def test_sequence_rules_raw(broker):
    topic = unique("idem-raw")
    create_topic(broker, topic)
    s = kt.connect(broker.address)
    ip = kt.init_producer_id(s, None)
    assert ip.error == 0 and ip.producer_id >= 0 and ip.epoch == 0, ip
    pid = ip.producer_id
    b0 = kt.batch(_vals("a", 3), pid, 0, 0)  # seq 0..2
    assert kt.produce(s, topic, 0, b0) == (0, 0)
    # an exact retry: acknowledged with the original offset, not written again
    assert kt.produce(s, topic, 0, b0) == (0, 0)
    b1 = kt.batch(_vals("b", 2), pid, 0, 3)  # seq 3..4
    assert kt.produce(s, topic, 0, b1) == (0, 3)
    # a retry of an older batch still among the last five
    assert kt.produce(s, topic, 0, b0) == (0, 0)
    # a gap: expected 5
    err, _ = kt.produce(s, topic, 0, kt.batch(_vals("gap", 1), pid, 0, 7))
    assert err == kt.OUT_OF_ORDER_SEQUENCE_NUMBER
    # a batch overlapping the last one but not equal to a cached batch is out of order too
    err, _ = kt.produce(s, topic, 0, kt.batch(_vals("ovl", 2), pid, 0, 4))
    assert err == kt.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert kt.produce(s, topic, 0, kt.batch(_vals("c", 1), pid, 0, 5)) == (0, 5)
    # a new epoch starts at sequence 0 ...
    err, _ = kt.produce(s, topic, 0, kt.batch(_vals("e1x", 1), pid, 1, 6))
    assert err == kt.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert kt.produce(s, topic, 0, kt.batch(_vals("e1", 2), pid, 1, 0)) == (0, 6)
    # ... and fences the older one (a zombie with the old epoch)
    err, _ = kt.produce(s, topic, 0, kt.batch(_vals("zombie", 1), pid, 0, 6))
    assert err == kt.INVALID_PRODUCER_EPOCH
    # a producer id the partition has no state for accepts any sequence (KIP-360)
    ip2 = kt.init_producer_id(s, None)
    assert ip2.producer_id != pid
    assert kt.produce(s, topic, 0, kt.batch(_vals("late", 1), ip2.producer_id, 0, 42)) == (0, 8)
    assert kt.produce(s, topic, 0, kt.batch(_vals("late", 1), ip2.producer_id, 0, 43)) == (0, 9)
    # sequences of different partitions are independent
    create_topic(broker, topic + "-2")
    assert kt.produce(s, topic + "-2", 0, kt.batch(_vals("x", 1), pid, 1, 0)) == (0, 0)
    s.close()
    got, f = kt.read_all(broker.address, topic, 0, isolation_level=0)
    assert [v for _o, v in got] == (_vals("a", 3) + _vals("b", 2) + _vals("c", 1) + _vals("e1", 2)
                                    + [b"late0", b"late0"])
    assert [o for o, _ in got] == list(range(10))
    assert f.high_watermark == 10


def test_producer_state_survives_restart_raw(broker):
    """Duplicates are recognised and zombies fenced after a SIGKILL + restart (producer state
    rebuilt from snapshots and the log) and after a graceful restart."""
    topic = unique("idem-rst")
    create_topic(broker, topic)
    ip = kt.init_producer_id(broker.address, None)
    pid = ip.producer_id
    batches = [kt.batch(_vals(f"r{j}-", 2), pid, 0, 2 * j) for j in range(4)]
    for j, b in enumerate(batches):
        assert kt.produce(broker.address, topic, 0, b) == (0, 2 * j)
    for graceful in (False, True):
        broker.restart(graceful=graceful)
        for j in (3, 2):  # retries of cached batches
            assert kt.produce(broker.address, topic, 0, batches[j]) == (0, 2 * j), f"graceful={graceful}"
        err, _ = kt.produce(broker.address, topic, 0, kt.batch([b"gap"], pid, 0, 11))
        assert err == kt.OUT_OF_ORDER_SEQUENCE_NUMBER
    err, _ = kt.produce(broker.address, topic, 0, kt.batch([b"next"], pid, 0, 8))
    assert err == 0
    # a new pid from InitProducerId is never one handed out before the restart
    assert kt.init_producer_id(broker.address, None).producer_id != pid
    got, _ = kt.read_all(broker.address, topic, 0, isolation_level=0)
    assert len(got) == 9
