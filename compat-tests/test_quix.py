"""Quix Streams (PyPI `quixstreams`) exactly-once applications against a real strand process.

quixstreams 3.28.1 requires confluent-kafka < 2.13, while the suite pins confluent-kafka 2.16.1
(requirements.txt), so the two cannot share .venv: the Quix application runs in its own venv,
compat-tests/.work/quix-venv, created on first use from the pins in QUIX_REQUIREMENTS (pip's
cache makes later creations quick; a changed pin list recreates it). The application is this
file re-executed by that venv's python (`app <json>`); the test itself checks the results with
the suite's confluent-kafka.

The application: processing_guarantee="exactly-once", a stateful step keeping a per-key running
count (RocksDB state with a changelog topic that Quix creates through CreateTopics with
cleanup.policy=compact), output to a 2-partition topic. Input: 100 JSON messages over 5 keys
on 3 partitions (a key on one partition: Quix state is per partition).

- test_quix_exactly_once_running_count: one run over all 100; the read_committed output holds
  counts 1..20 for each key exactly once; the changelog topic is compacted; the group's offsets
  are at the input's end.
- test_quix_exactly_once_survives_crash: the application dies (os._exit) in the middle of a
  checkpoint after some outputs of the open transaction reached the broker; a second run with
  the same transactional.id and an empty state dir (state recovered from the changelog, which
  Quix reads read_committed) finishes the input. The read_committed output still holds every
  count exactly once; read_uncommitted shows the aborted ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

QUIX_REQUIREMENTS = """\
quixstreams==3.28.1
confluent-kafka==2.12.2
rocksdict==0.3.29
orjson==3.13.0
pydantic==2.13.5
pydantic-settings==2.15.0
pydantic_core==2.46.5
annotated-types==0.8.0
typing-inspection==0.4.5
typing_extensions==4.16.0
python-dotenv==1.2.4
requests==2.34.2
certifi==2026.10.18
charset-normalizer==3.5.2
idna==3.20
urllib3==2.8.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
referencing==0.37.0
rpds-py==2026.9.1
attrs==26.1.0
jsonlines==4.0.0
jsonpath-ng==1.16.0
rich==15.0.0
markdown-it-py==4.3.0
mdurl==0.1.2
Pygments==2.21.0
"""

N_INPUT = 100
KEYS = [f"k{i}" for i in range(5)]


# =====================================================================================
# Child: the Quix application (runs under the quix venv's python)
# =====================================================================================


def run_app(spec: dict) -> None:
    import logging

    from quixstreams import Application

    app = Application(
        broker_address=spec["bootstrap"],
        consumer_group=spec["group"],
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_every=spec.get("commit_every", 0),
        commit_interval=spec.get("commit_interval", 1.0),
        state_dir=spec["state_dir"],
        loglevel=logging.WARNING,
        producer_extra_config={"transactional.id": spec["txn_id"], "transaction.timeout.ms": 10000,
                               "linger.ms": 5},
        consumer_extra_config={"session.timeout.ms": 3000, "heartbeat.interval.ms": 300},
    )
    tin = app.topic(spec["input"], value_deserializer="json", key_deserializer="str")
    tout = app.topic(spec["output"], value_serializer="json", key_serializer="str")
    processed = [0]
    die_after = spec.get("die_after", 0)

    def count(value, state):
        processed[0] += 1
        if die_after and processed[0] == die_after:
            # outputs of this checkpoint's earlier messages are in the open transaction:
            # give librdkafka time to send them, then die without ending it
            time.sleep(1.5)
            print(json.dumps({"died_after": processed[0]}), flush=True)
            os._exit(3)
        n = state.get("n", 0) + 1
        state.set("n", n)
        return {"key": value["key"], "n": n, "i": value["i"]}

    sdf = app.dataframe(tin)
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(tout)
    if spec.get("count"):
        app.run(count=spec["count"], timeout=spec.get("timeout", 30))
    else:
        app.run(timeout=spec.get("timeout", 5))
    print(json.dumps({"done": processed[0]}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "app":
        run_app(json.loads(sys.argv[2]))
        sys.exit(0)
    sys.exit(2)


# =====================================================================================
# Test side
# =====================================================================================

import pytest  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import ConfigResource  # noqa: E402

from helpers import admin, consume, create_topic, produce_and_wait, producer, topic_names, unique  # noqa: E402

pytestmark = pytest.mark.timeout(120)

VENV = HERE / ".work" / "quix-venv"
FAST_GROUPS = {"group.initial.rebalance.delay.ms": "0", "group.min.session.timeout.ms": "1000"}


@pytest.fixture(scope="session")
def quix_python() -> Path:
    """The quix venv's python, (re)created when QUIX_REQUIREMENTS changes."""
    py = VENV / "bin" / "python"
    stamp = VENV / ".requirements.sha256"
    want = hashlib.sha256(QUIX_REQUIREMENTS.encode()).hexdigest()
    if py.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return py
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=120)
    req = VENV / "requirements.txt"
    req.write_text(QUIX_REQUIREMENTS)
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"cannot install quixstreams into {VENV}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}", pytrace=False)
    stamp.write_text(want)
    return py


def start_app(quix_python, spec: dict) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRAND_", "Quix__"))}
    return subprocess.Popen([str(quix_python), __file__, "app", json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=spec["state_dir"])


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, list, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the Quix application did not finish in {timeout}s:\n{err[-4000:]}")
    events = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    return proc.returncode, events, err


def setup_topics(broker):
    tin, tout = unique("quix-in"), unique("quix-out")
    create_topic(broker, tin, 3)
    create_topic(broker, tout, 2)
    msgs = [{"key": KEYS[i % 5].encode(), "value": json.dumps({"key": KEYS[i % 5], "i": i}).encode(),
             "partition": (i % 5) % 3} for i in range(N_INPUT)]  # a key stays on one partition
    produce_and_wait(producer(broker), tin, msgs)
    return tin, tout


def read_output(broker, tout, committed=True) -> list:
    iso = "read_committed" if committed else "read_uncommitted"
    out = []
    for p in (0, 1):
        out += [json.loads(m.value()) for m in consume(broker, tout, p, timeout=20, **{"isolation.level": iso})]
    return out


def check_counts(rows: list):
    """Every key's counts are exactly 1..20, each once, and each input index appears once."""
    by_key: dict = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r["n"])
    per_key = N_INPUT // len(KEYS)
    problems = {k: sorted(v) for k, v in by_key.items() if sorted(v) != list(range(1, per_key + 1))}
    assert set(by_key) == set(KEYS), f"keys in the output: {sorted(by_key)}"
    assert not problems, f"per-key counts not exactly 1..{per_key} once each: {problems}"
    idx = sorted(r["i"] for r in rows)
    assert idx == list(range(N_INPUT)), "some input was processed twice or not at all"
    return {k: max(v) for k, v in by_key.items()}


def check_changelog_and_offsets(broker, tin, group):
    changelogs = [t for t in topic_names(broker) if "changelog" in t and group in t]
    assert changelogs, f"no changelog topic for group {group}: {sorted(topic_names(broker))}"
    res = ConfigResource("topic", changelogs[0])
    cfg = admin(broker).describe_configs([res])[res].result(15)
    assert cfg["cleanup.policy"].value == "compact", f"changelog cleanup.policy={cfg['cleanup.policy'].value}"
    md = admin(broker).list_topics(changelogs[0], timeout=10).topics[changelogs[0]]
    assert len(md.partitions) == 3, "the changelog topic must have the input's partition count"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "log_level": 3})
    try:
        got = c.committed([TopicPartition(tin, p) for p in range(3)], timeout=10)
    finally:
        c.close()
    assert [tp.offset for tp in got] == [40, 40, 20], f"committed offsets {got}"


@pytest.mark.broker_settings(**FAST_GROUPS)
def test_quix_exactly_once_running_count(broker, quix_python, tmp_path):
    tin, tout = setup_topics(broker)
    group = unique("quixg")
    spec = {"bootstrap": broker.bootstrap, "group": group, "input": tin, "output": tout,
            "state_dir": str(tmp_path), "txn_id": unique("quix-tx"), "count": N_INPUT, "timeout": 40,
            "commit_every": 20}
    rc, events, err = finish(start_app(quix_python, spec), 90)
    assert rc == 0, f"the Quix application failed (rc={rc}):\n{err[-4000:]}"
    assert events and events[-1].get("done") == N_INPUT, f"events {events}\n{err[-3000:]}"
    rows = read_output(broker, tout)
    finals = check_counts(rows)
    assert finals == {k: 20 for k in KEYS}
    # nothing aborted in a clean run
    assert len(read_output(broker, tout, committed=False)) == N_INPUT
    check_changelog_and_offsets(broker, tin, group)


@pytest.mark.broker_settings(**FAST_GROUPS)
def test_quix_exactly_once_survives_crash(broker, quix_python, tmp_path):
    tin, tout = setup_topics(broker)
    group, txn_id = unique("quixg"), unique("quix-tx")
    base = {"bootstrap": broker.bootstrap, "group": group, "input": tin, "output": tout, "txn_id": txn_id,
            "commit_every": 10, "commit_interval": 30.0}
    d1, d2 = tmp_path / "state1", tmp_path / "state2"
    d1.mkdir()
    d2.mkdir()
    rc, events, err = finish(start_app(quix_python, {**base, "state_dir": str(d1), "die_after": 45}), 90)
    assert rc == 3 and any("died_after" in e for e in events), f"first run rc={rc} {events}\n{err[-3000:]}"
    committed_before = len(read_output(broker, tout))
    assert 0 < committed_before < 45, f"{committed_before} outputs committed before the crash"
    # a new incarnation on another (empty) state dir: the state comes back from the changelog
    t0 = time.monotonic()
    rc, events, err = finish(start_app(quix_python, {**base, "state_dir": str(d2), "timeout": 4}), 90)
    assert rc == 0, f"second run failed (rc={rc}):\n{err[-4000:]}"
    assert time.monotonic() - t0 < 60
    rows = read_output(broker, tout)
    finals = check_counts(rows)
    assert finals == {k: 20 for k in KEYS}
    uncommitted = read_output(broker, tout, committed=False)
    assert len(uncommitted) > N_INPUT, (
        "read_uncommitted shows no aborted output: the crash did not leave an open transaction with data")
    check_changelog_and_offsets(broker, tin, group)
