"""The admin CLI (`strand topics ...`, `strand cluster status`) against a real broker process:
tables and `--json` output, changes visible to a Kafka client, sentence errors, exit codes."""

from __future__ import annotations

import json
import subprocess

from helpers import admin, create_topic, unique, wait_topic


def strand(strand_bin, broker, *args, check=True):
    cmd = [str(strand_bin), *args, "--bootstrap-server", broker.bootstrap, "--timeout", "10"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    if check:
        assert p.returncode == 0, f"{cmd} exited {p.returncode}: {p.stderr}"
    return p


def test_topics_create_list_describe_delete(strand_bin, broker):
    name = unique()
    out = strand(strand_bin, broker, "topics", "create", name, "--partitions", "3",
                 "--config", "retention.ms=3600000").stdout
    assert f"Topic '{name}' created." in out
    md = wait_topic(broker, name, 3)
    assert len(md.partitions) == 3

    listed = strand(strand_bin, broker, "topics", "list").stdout.splitlines()
    assert listed[0].split() == ["TOPIC", "PARTITIONS", "REPLICATION"]
    assert [name, "3", "1"] in [line.split() for line in listed[1:]]
    as_json = json.loads(strand(strand_bin, broker, "topics", "list", "--json").stdout)
    assert {"name": name, "partitions": 3, "replication_factor": 1, "internal": False} in as_json

    text = strand(strand_bin, broker, "topics", "describe", name).stdout
    assert f"Topic: {name}" in text and "PartitionCount: 3" in text and "retention.ms=3600000" in text
    (d,) = json.loads(strand(strand_bin, broker, "topics", "describe", name, "--json").stdout)
    assert d["configs"] == {"retention.ms": "3600000"}
    assert [p["partition"] for p in d["partitions"]] == [0, 1, 2]
    assert all(p["leader"] == 0 and p["isr"] == [0] for p in d["partitions"])

    assert f"Topic '{name}' deleted." in strand(strand_bin, broker, "topics", "delete", name).stdout
    assert name not in admin(broker).list_topics(timeout=10).topics


def test_topics_alter_partitions_and_configs(strand_bin, broker):
    name = create_topic(broker, unique(), partitions=1, config={"retention.ms": "3600000"})
    strand(strand_bin, broker, "topics", "alter", name, "--partitions", "4",
           "--config", "segment.bytes=1048576", "--delete-config", "retention.ms")
    wait_topic(broker, name, 4)
    (d,) = json.loads(strand(strand_bin, broker, "topics", "describe", name, "--json").stdout)
    assert d["configs"] == {"segment.bytes": "1048576"}
    assert len(d["partitions"]) == 4


def test_errors_are_sentences_with_nonzero_exit(strand_bin, broker):
    name = create_topic(broker, unique())
    p = strand(strand_bin, broker, "topics", "create", name, check=False)
    assert p.returncode == 1
    assert p.stderr.startswith(f"error: cannot create topic '{name}'")
    assert "TOPIC_ALREADY_EXISTS" in p.stderr
    assert strand(strand_bin, broker, "topics", "create", name, "--if-not-exists").returncode == 0

    p = strand(strand_bin, broker, "topics", "alter", name, "--partitions", "1", check=False)
    assert p.returncode == 1 and "INVALID_PARTITIONS" in p.stderr

    p = strand(strand_bin, broker, "topics", "alter", name, "--config", "retention.ms=soon", check=False)
    assert p.returncode == 1 and "INVALID_CONFIG" in p.stderr

    missing = unique("missing")
    p = strand(strand_bin, broker, "topics", "delete", missing, check=False)
    assert p.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in p.stderr
    assert strand(strand_bin, broker, "topics", "delete", missing, "--if-exists").returncode == 0

    p = strand(strand_bin, broker, "topics", "describe", missing, check=False)
    assert p.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in p.stderr

    p = strand(strand_bin, broker, "topics", "create", "x", "--config", "novalue", check=False)
    assert p.returncode == 1 and "KEY=VALUE" in p.stderr


def test_unreachable_broker(strand_bin, broker):
    p = subprocess.run([str(strand_bin), "topics", "list", "-b", "127.0.0.1:1", "--timeout", "3"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert p.stderr.startswith("error: cannot connect to 127.0.0.1:1")
    assert "panicked" not in p.stderr


def test_cluster_status(strand_bin, broker):
    create_topic(broker, unique(), partitions=2)
    text = strand(strand_bin, broker, "cluster", "status").stdout
    assert "Controller:   0" in text
    assert f"127.0.0.1:{broker.port}" in text
    s = json.loads(strand(strand_bin, broker, "cluster", "status", "--json").stdout)
    assert s["controller_id"] == 0
    assert s["brokers"] == [{"id": 0, "host": "127.0.0.1", "port": broker.port, "rack": None}]
    assert s["partitions"] >= 2 and s["under_replicated_partitions"] == 0 and s["offline_partitions"] == 0
    assert len(s["cluster_id"]) == 22
