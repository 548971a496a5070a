#!/usr/bin/env python3
"""Consumer-group rebalance timings against a running broker, with librdkafka's defaults.

    groups.py --bootstrap 127.0.0.1:PORT [--runs 3] [--json FILE]

Every consumer is a confluent-kafka Consumer (bundled librdkafka) with only bootstrap.servers
and group.id set (session.timeout.ms 45000, heartbeat.interval.ms 3000, range,roundrobin,
auto commit), polled by its own thread. A background producer writes one message to every
partition every 10 ms, so "consuming" is seen within a few ms of a partition being fetched.
The second member's subscribe and the leave happen at a random phase of the existing members'
heartbeats (they learn of a rebalance at their next heartbeat, 0-3 s later), so the spread
over runs reflects that.

Scenarios (fresh group and topic per run):
  first   a lone first member: subscribe() -> its on_assign (the broker waits
          group.initial.rebalance.delay.ms for more members first)
  second  a stable, consuming member; a second one subscribes -> both have their new
          assignment and have consumed a message from it
  leave10 ten stable members; one close()s (LeaveGroup) -> the other nine have their new
          assignment (and, reported too, have consumed from it)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, libversion
from confluent_kafka.admin import AdminClient, NewTopic

HEARTBEAT_S = 3.0  # librdkafka default heartbeat.interval.ms
INITIAL_DELAY_S = 3.0  # broker default group.initial.rebalance.delay.ms


def uid(p: str) -> str:
    return f"{p}-{uuid.uuid4().hex[:8]}"


class Member(threading.Thread):
    """One consumer polled by its own thread; records (kind, t, partitions) events."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str):
        super().__init__(daemon=True, name=name)
        self.bootstrap, self.group, self.topic = bootstrap, group, topic
        self.lock = threading.Lock()
        self.events: list[tuple[str, float, frozenset]] = []
        self.cur: frozenset = frozenset()
        self.last_assign_t: float | None = None
        self.first_msg_after_assign: float | None = None
        self.stop_flag = threading.Event()
        self.subscribed_at: float | None = None
        self.closed = threading.Event()
        self.error: BaseException | None = None

    def run(self):
        try:
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group, "log_level": 3})

            def on_assign(_c, parts):
                now = time.monotonic()
                with self.lock:
                    self.cur = self.cur | {p.partition for p in parts}
                    self.events.append(("assign", now, frozenset(p.partition for p in parts)))
                    self.last_assign_t = now
                    self.first_msg_after_assign = None

            def on_revoke(_c, parts):
                now = time.monotonic()
                with self.lock:
                    self.cur = self.cur - {p.partition for p in parts}
                    self.events.append(("revoke", now, frozenset(p.partition for p in parts)))

            self.subscribed_at = time.monotonic()
            c.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke)
            while not self.stop_flag.is_set():
                m = c.poll(0.05)
                if m is None or m.error():
                    continue
                now = time.monotonic()
                with self.lock:
                    if self.first_msg_after_assign is None and m.partition() in self.cur:
                        self.first_msg_after_assign = now
            c.close()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
        finally:
            self.closed.set()

    def state(self):
        with self.lock:
            return self.cur, self.last_assign_t, self.first_msg_after_assign

    def close(self, timeout: float = 60):
        self.stop_flag.set()
        self.closed.wait(timeout)


class Feeder(threading.Thread):
    """Produces one message to every partition every 10 ms."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "linger.ms": 0,
                           "log_level": 3})
        self.topic, self.partitions = topic, partitions
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            for part in range(self.partitions):
                try:
                    self.p.produce(self.topic, b"x", partition=part)
                except BufferError:
                    pass
            self.p.poll(0)
            time.sleep(0.01)
        self.p.flush(10)

    def stop(self):
        self.stop_flag.set()
        self.join(15)


def create_topic(bootstrap: str, name: str, partitions: int):
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        t = a.list_topics(name, timeout=5).topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        time.sleep(0.05)
    raise RuntimeError(f"topic {name} not ready")


def wait_until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        r = pred()
        if r:
            return r
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def settled(ms: list[Member], partitions: int, consuming: bool):
    """All members own a disjoint share covering every partition (and, with `consuming`, each
    has consumed from its latest assignment). Returns (last assign t, last first-message t)."""
    states = [m.state() for m in ms]
    curs = [s[0] for s in states]
    if not all(curs) or sum(len(c) for c in curs) != partitions:
        return None
    if frozenset().union(*curs) != frozenset(range(partitions)):
        return None
    if consuming and not all(s[2] is not None for s in states):
        return None
    return (max(s[1] for s in states), max((s[2] or 0) for s in states))


def run_first(bootstrap: str) -> dict:
    topic, group = uid("bench-first"), uid("bench-g")
    create_topic(bootstrap, topic, 4)
    m = Member(bootstrap, group, topic, "first")
    m.start()
    try:
        wait_until(lambda: m.state()[1] is not None, 30 + INITIAL_DELAY_S, "the first assignment")
        return {"assigned_s": m.state()[1] - m.subscribed_at}
    finally:
        m.close()


def run_second(bootstrap: str) -> dict:
    topic, group = uid("bench-second"), uid("bench-g")
    create_topic(bootstrap, topic, 4)
    feeder = Feeder(bootstrap, topic, 4)
    feeder.start()
    a = Member(bootstrap, group, topic, "a")
    a.start()
    b = None
    try:
        wait_until(lambda: settled([a], 4, True), 60, "the first member to consume")
        time.sleep(0.5 + random.uniform(0, HEARTBEAT_S))  # a random phase of A's heartbeats
        b = Member(bootstrap, group, topic, "b")
        t0 = time.monotonic()
        b.start()
        wait_until(lambda: b.subscribed_at is not None, 10, "subscribe")
        t0 = b.subscribed_at
        assigned, consumed = wait_until(lambda: settled([a, b], 4, True), 60, "both members to consume")
        return {"assigned_s": assigned - t0, "consuming_s": consumed - t0}
    finally:
        for m in (a, b):
            if m is not None:
                m.close()
        feeder.stop()


def run_leave10(bootstrap: str, n: int = 10, partitions: int = 20) -> dict:
    topic, group = uid("bench-leave"), uid("bench-g")
    create_topic(bootstrap, topic, partitions)
    feeder = Feeder(bootstrap, topic, partitions)
    feeder.start()
    ms = [Member(bootstrap, group, topic, f"m{i}") for i in range(n)]
    for m in ms:
        m.start()
    try:
        wait_until(lambda: settled(ms, partitions, True), 90, f"{n} members to consume")
        time.sleep(0.5 + random.uniform(0, HEARTBEAT_S))  # a random phase of the heartbeats
        leaver, rest = ms[-1], ms[:-1]
        before = {id(m): m.state()[1] for m in rest}
        t0 = time.monotonic()
        leaver.close()
        close_s = time.monotonic() - t0

        def done():
            if not all(m.state()[1] != before[id(m)] for m in rest):
                return None
            return settled(rest, partitions, True)

        assigned, consumed = wait_until(done, 60, f"{n - 1} members to rebalance")
        return {"assigned_s": assigned - t0, "consuming_s": consumed - t0, "close_s": close_s}
    finally:
        for m in ms:
            m.close()
        feeder.stop()


SCENARIOS = {
    "first": (run_first, "assigned_s", INITIAL_DELAY_S + 0.5,
              "lone first member: subscribe -> assigned"),
    "second": (run_second, "consuming_s", HEARTBEAT_S + 1.0,
               "second member: subscribe -> both consuming"),
    "leave10": (run_leave10, "assigned_s", HEARTBEAT_S + 1.0,
                "10-member group, one leaves: close() -> 9 reassigned"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=list(SCENARIOS), action="append")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    results = {"librdkafka": libversion()[0], "runs": args.runs, "scenarios": {}}
    ok_all = True
    print(f"librdkafka {libversion()[0]}, defaults: session.timeout.ms=45000 heartbeat.interval.ms=3000, "
          f"{args.runs} runs each", flush=True)
    for name in args.only or list(SCENARIOS):
        fn, key, target, label = SCENARIOS[name]
        runs = []
        for i in range(args.runs):
            r = fn(args.bootstrap)
            runs.append(r)
            extra = ", ".join(f"{k}={v:.3f}" for k, v in r.items() if k != key)
            print(f"  {name} run {i + 1}: {key}={r[key]:.3f}s" + (f" ({extra})" if extra else ""), flush=True)
        vals = [r[key] for r in runs]
        ok = max(vals) <= target
        ok_all &= ok
        summary = {"label": label, "metric": key, "target_s": target, "min_s": min(vals),
                   "median_s": statistics.median(vals), "max_s": max(vals), "ok": ok, "runs": runs}
        for extra in sorted({k for r in runs for k in r} - {key}):
            ev = [r[extra] for r in runs]
            summary[f"{extra}_median"] = statistics.median(ev)
        results["scenarios"][name] = summary
        print(f"{label}: min {min(vals):.2f}s  median {statistics.median(vals):.2f}s  max {max(vals):.2f}s  "
              f"target <= {target:.1f}s: {'MET' if ok else 'MISSED'}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
