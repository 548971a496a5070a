"""The Prometheus endpoint (`--metrics-listen`): scraped and parsed with prometheus_client's
text-format parser; counters move with traffic, per-partition gauges follow the log."""

from __future__ import annotations

import time
import urllib.request

from confluent_kafka import KafkaError
from confluent_kafka.admin import ConfigResource
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from helpers import admin, consume, create_topic, produce_and_wait, producer, unique


def scrape(port: int) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def wait_for(port: int, cond, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = scrape(port)
        if cond(s) or time.monotonic() > deadline:
            return s
        time.sleep(0.2)


def test_metrics_endpoint_counts_requests_bytes_and_partitions(make_broker):
    port = free_port()
    broker = make_broker({"metrics.listen": f"127.0.0.1:{port}"})
    before = scrape(port)
    name = create_topic(broker, unique(), partitions=2)
    p = producer(broker, **{"acks": "all"})
    produce_and_wait(p, name, [{"value": b"x" * 100, "partition": 1} for _ in range(20)])
    assert len(consume(broker, name, partition=1)) == 20

    s = wait_for(port, lambda s: value(s, "strand_partition_log_end_offset", topic=name, partition="1") == 20)
    # Requests per API and version, with latency histograms.
    assert value(s, "strand_requests_total", api="Produce") > value(before, "strand_requests_total", api="Produce")
    assert value(s, "strand_requests_total", api="CreateTopics") >= 1
    assert value(s, "strand_requests_total", api="Metadata") > 0
    assert value(s, "strand_request_duration_seconds_count", api="Produce") >= 1
    assert value(s, "strand_request_duration_seconds_bucket", api="Produce", le="+Inf") >= 1
    # Bytes per topic.
    assert value(s, "strand_topic_bytes_in_total", topic=name) > 2000
    assert value(s, "strand_topic_bytes_out_total", topic=name) > 2000
    # Per-partition state.
    assert value(s, "strand_partition_log_start_offset", topic=name, partition="1") == 0
    assert value(s, "strand_partition_size_bytes", topic=name, partition="1") > 2000
    assert value(s, "strand_partition_segments", topic=name, partition="0") == 1
    # Connections, fsync latency (acks=all) and purgatory gauges.
    assert value(s, "strand_connections") >= 1
    assert value(s, "strand_connections_accepted_total") >= 1
    assert value(s, "strand_log_flush_duration_seconds_count") >= 1
    assert ("strand_purgatory_size", frozenset({("operation", "fetch")})) in s


def test_metrics_count_errors_by_code(make_broker):
    port = free_port()
    broker = make_broker({"metrics.listen": f"127.0.0.1:{port}", "auto.create.topics.enable": "false"})
    a = admin(broker)
    res = ConfigResource(ConfigResource.Type.TOPIC, unique("missing"))
    try:
        a.describe_configs([res])[res].result(10)
    except Exception as e:  # noqa: BLE001
        assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    s = scrape(port)
    assert value(s, "strand_request_errors_total", api="DescribeConfigs",
                 error="UNKNOWN_TOPIC_OR_PARTITION") == 1


def test_bad_metrics_listen_is_rejected_at_start(make_broker):
    broker = make_broker({"metrics.listen": "nonsense"}, start=False)
    try:
        broker.start(timeout=5)
    except Exception as e:  # noqa: BLE001
        assert "metrics.listen" in str(e)
    else:
        raise AssertionError("broker started with metrics.listen=nonsense")
