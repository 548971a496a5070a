"""Admin and config APIs through confluent-kafka's AdminClient and kafka-python's
KafkaAdminClient: CreatePartitions, DescribeConfigs (sources, synonyms, documentation),
AlterConfigs, IncrementalAlterConfigs, DeleteRecords, DescribeCluster, DescribeLogDirs, with
their error cases, and config changes that change what the broker does."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    OffsetSpec,
)

import kwire
from helpers import admin, create_topic, produce_and_wait, producer, unique, wait_topic


def result(futures: dict, timeout: float = 20):
    """The single future's result of an AdminClient call."""
    (f,) = futures.values()
    return f.result(timeout)


def error_code(fn) -> int:
    with pytest.raises(KafkaException) as e:
        fn()
    return e.value.args[0].code()


def topic_configs(broker, name: str, **kw) -> dict:
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    return result(admin(broker).describe_configs([res], **kw))


def low_high(broker, name: str, partition: int = 0) -> tuple[int, int]:
    a = admin(broker)
    tp = TopicPartition(name, partition)
    lo = a.list_offsets({tp: OffsetSpec.earliest()})[tp].result(10).offset
    hi = a.list_offsets({tp: OffsetSpec.latest()})[tp].result(10).offset
    return lo, hi


# -- CreatePartitions --------------------------------------------------------


def test_create_partitions_grows_topic(broker):
    name = create_topic(broker, unique(), partitions=1)
    result(admin(broker).create_partitions([NewPartitions(name, 3)], operation_timeout=10))
    md = wait_topic(broker, name, 3)
    assert sorted(md.partitions) == [0, 1, 2]
    # The new partitions take writes.
    reports = produce_and_wait(producer(broker), name, [{"value": b"x", "partition": 2}])
    assert reports[0][0] is None and reports[0][2] == 2


def test_create_partitions_errors(broker):
    a = admin(broker)
    name = create_topic(broker, unique(), partitions=2)
    assert error_code(lambda: result(a.create_partitions([NewPartitions(name, 1)]))) == \
        KafkaError.INVALID_PARTITIONS
    assert error_code(lambda: result(a.create_partitions([NewPartitions(name, 2)]))) == \
        KafkaError.INVALID_PARTITIONS
    assert error_code(lambda: result(a.create_partitions([NewPartitions(unique("missing"), 4)]))) == \
        KafkaError.UNKNOWN_TOPIC_OR_PART
    assert error_code(lambda: result(
        a.create_partitions([NewPartitions(name, 3, replica_assignment=[[7]])]))) == \
        KafkaError.INVALID_REPLICA_ASSIGNMENT
    # validate_only changes nothing.
    result(a.create_partitions([NewPartitions(name, 5)], validate_only=True))
    assert len(a.list_topics(name, timeout=10).topics[name].partitions) == 2


def test_create_partitions_survive_restart(broker):
    name = create_topic(broker, unique(), partitions=1)
    result(admin(broker).create_partitions([NewPartitions(name, 4)]))
    broker.restart()
    del broker._admin_client
    wait_topic(broker, name, 4)


# -- DescribeConfigs -----------------------------------------------------------


def test_describe_topic_configs_sources_and_synonyms(broker):
    name = create_topic(broker, unique(), config={"retention.ms": "3600000"})
    cfg = topic_configs(broker, name)
    ret = cfg["retention.ms"]
    assert ret.value == "3600000"
    assert ret.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    seg = cfg["segment.bytes"]
    assert seg.value == "1073741824"
    assert seg.source == ConfigSource.DEFAULT_CONFIG.value
    assert not seg.is_read_only and not seg.is_sensitive
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["max.message.bytes"].value == "1048588"
    assert "delete.retention.ms" in cfg and "min.insync.replicas" in cfg

    # librdkafka always asks for synonyms.
    syn = ret.synonyms
    names = [(s, e.source) for s, e in syn.items()]
    assert names[0] == ("retention.ms", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert ("log.retention.hours", ConfigSource.DEFAULT_CONFIG.value) in names


@pytest.mark.broker_settings(**{"log.retention.ms": "7200000", "num.partitions": "2"})
def test_describe_configs_static_broker_settings(broker):
    name = create_topic(broker, unique())
    ret = topic_configs(broker, name)["retention.ms"]
    assert ret.value == "7200000"
    assert ret.source == ConfigSource.STATIC_BROKER_CONFIG.value

    res = ConfigResource(ConfigResource.Type.BROKER, "0")
    cfg = result(admin(broker).describe_configs([res]))
    assert cfg["num.partitions"].value == "2"
    assert cfg["num.partitions"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert cfg["num.partitions"].is_read_only
    assert cfg["delete.topic.enable"].source == ConfigSource.DEFAULT_CONFIG.value
    assert cfg["log.retention.hours"].value == "168"


def test_describe_configs_errors(broker):
    name = create_topic(broker, unique())
    a = admin(broker)
    missing = ConfigResource(ConfigResource.Type.TOPIC, unique("missing"))
    assert error_code(lambda: result(a.describe_configs([missing]))) == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert name in a.list_topics(timeout=10).topics


# -- AlterConfigs / IncrementalAlterConfigs ---------------------------------------


def test_alter_configs_replaces_all_overrides(broker):
    name = create_topic(broker, unique(), config={"retention.ms": "3600000"})
    res = ConfigResource(ConfigResource.Type.TOPIC, name, set_config={"segment.ms": "600000"})
    result(admin(broker).alter_configs([res]))
    cfg = topic_configs(broker, name)
    assert cfg["segment.ms"].value == "600000"
    assert cfg["segment.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Legacy AlterConfigs resets what it does not name.
    assert cfg["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value


def test_alter_configs_errors(broker):
    a = admin(broker)
    name = create_topic(broker, unique())
    bad = ConfigResource(ConfigResource.Type.TOPIC, name, set_config={"retention.ms": "soon"})
    assert error_code(lambda: result(a.alter_configs([bad]))) == KafkaError.INVALID_CONFIG
    unknown = ConfigResource(ConfigResource.Type.TOPIC, name, set_config={"no.such.config": "1"})
    assert error_code(lambda: result(a.alter_configs([unknown]))) == KafkaError.INVALID_CONFIG
    missing = ConfigResource(ConfigResource.Type.TOPIC, unique("missing"), set_config={"retention.ms": "1"})
    assert error_code(lambda: result(a.alter_configs([missing]))) == KafkaError.UNKNOWN_TOPIC_OR_PART
    static = ConfigResource(ConfigResource.Type.BROKER, "0", set_config={"num.partitions": "5"})
    assert error_code(lambda: result(a.alter_configs([static]))) == KafkaError.INVALID_REQUEST
    # validate_only: valid, but nothing changes.
    ok = ConfigResource(ConfigResource.Type.TOPIC, name, set_config={"retention.ms": "1000"})
    result(a.alter_configs([ok], validate_only=True))
    assert topic_configs(broker, name)["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value


def test_alter_configs_refuses_broker_configs_strand_does_not_enforce(broker):
    """A Kafka dynamic broker config Strand has no feature behind is refused with INVALID_CONFIG
    instead of being stored without effect; Strand's own settings stay read-only."""
    a = admin(broker)
    res = ConfigResource(ConfigResource.Type.BROKER, "0",
                         set_config={"sasl.kerberos.min.time.before.relogin": "58000"})
    assert error_code(lambda: result(a.alter_configs([res]))) == KafkaError.INVALID_CONFIG
    cfg = result(a.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "0")]))
    assert "sasl.kerberos.min.time.before.relogin" not in cfg
    assert cfg["num.partitions"].is_read_only and cfg["listeners"].is_read_only
    assert not cfg["log.retention.ms"].is_read_only


def test_dynamic_broker_configs_take_effect_and_survive_restart(broker):
    """IncrementalAlterConfigs on the cluster default ("") and on this broker ("0"): the topic
    defaults change at once for topics without an override, DescribeConfigs shows the dynamic
    sources, and a restart keeps them."""
    a = admin(broker)
    plain = create_topic(broker, unique())
    own = create_topic(broker, unique(), config={"max.message.bytes": "100000"})
    # confluent-kafka and kafka-python refuse an empty resource name: the cluster default
    # resource gets a hand-framed AlterConfigs v0 (replaces the resource's configs).
    def cluster_default(**configs):
        body = kwire.array([kwire.i8(4) + kwire.string("") + kwire.array(
            [kwire.string(k) + kwire.string(v) for k, v in configs.items()])]) + kwire.i8(0)
        r = kwire.roundtrip(broker.address, kwire.request(33, 0, 7, body))
        r.i32()  # throttle
        assert r.i32() == 1
        code = r.i16()
        assert code == 0, (code, r.string())
        d = result(admin(broker).describe_configs([ConfigResource(ConfigResource.Type.BROKER, "0")]))
        return {k: v.value for k, v in d.items()
                if v.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value}

    assert cluster_default(**{"message.max.bytes": "2000"}) == {"message.max.bytes": "2000"}
    mine = ConfigResource(
        ConfigResource.Type.BROKER, "0",
        incremental_configs=[ConfigEntry("log.retention.ms", "3600000",
                                         incremental_operation=AlterConfigOpType.SET)])
    result(a.incremental_alter_configs([mine]))

    p = producer(broker)
    big = {"value": b"x" * 5000}
    (err, *_), = produce_and_wait(p, plain, [big])
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    (err, *_), = produce_and_wait(p, own, [big])
    assert err is None, "the topic's own override wins over the dynamic default"

    def check():
        cfg = topic_configs(broker, plain)
        assert cfg["max.message.bytes"].value == "2000"
        assert cfg["max.message.bytes"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
        assert cfg["retention.ms"].value == "3600000"
        assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        b = result(admin(broker).describe_configs([ConfigResource(ConfigResource.Type.BROKER, "0")]))
        assert b["log.retention.ms"].value == "3600000"
        assert b["log.retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert b["message.max.bytes"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value

    check()
    broker.restart()
    check()
    (err, *_), = produce_and_wait(producer(broker), plain, [big])
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE

    # Legacy AlterConfigs replaces the resource's configs: the default value is back.
    assert cluster_default() == {}
    assert topic_configs(broker, plain)["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    (err, *_), = produce_and_wait(producer(broker), plain, [big])
    assert err is None
    bad = ConfigResource(ConfigResource.Type.BROKER, "0", set_config={"log.segment.bytes": "1"})
    assert error_code(lambda: result(admin(broker).alter_configs([bad]))) == KafkaError.INVALID_CONFIG


def incremental(broker, name, *entries):
    res = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=list(entries))
    return result(admin(broker).incremental_alter_configs([res]))


def test_incremental_alter_configs_set_delete_append_subtract(broker):
    name = create_topic(broker, unique(), config={"retention.ms": "3600000"})
    incremental(
        broker, name,
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    )
    cfg = topic_configs(broker, name)
    assert cfg["segment.bytes"].value == "1048576"
    assert cfg["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert cfg["cleanup.policy"].value == "delete,compact"
    incremental(broker, name,
                ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT))
    cfg = topic_configs(broker, name)
    assert cfg["cleanup.policy"].value == "compact"
    # Untouched configs keep their overrides.
    assert cfg["segment.bytes"].value == "1048576"


def test_incremental_alter_configs_errors(broker):
    name = create_topic(broker, unique())
    assert error_code(lambda: incremental(
        broker, name, ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND))) \
        == KafkaError.INVALID_CONFIG
    assert error_code(lambda: incremental(
        broker, name, ConfigEntry("min.insync.replicas", "0", incremental_operation=AlterConfigOpType.SET))) \
        == KafkaError.INVALID_CONFIG
    assert error_code(lambda: incremental(
        broker, unique("missing"), ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.SET))) \
        == KafkaError.UNKNOWN_TOPIC_OR_PART


def old_records(n: int, size: int = 200):
    ts = (int(time.time()) - 3 * 86400) * 1000  # three days ago
    return [{"value": b"v" * size, "timestamp": ts + i} for i in range(n)]


def test_lowered_retention_deletes_old_segments(broker):
    name = create_topic(broker, unique(), config={"segment.bytes": "1024"})
    p = producer(broker, **{"linger.ms": 0, "batch.num.messages": 1})
    produce_and_wait(p, name, old_records(30))
    lo, hi = low_high(broker, name)
    assert (lo, hi) == (0, 30)
    incremental(broker, name,
                ConfigEntry("retention.ms", "86400000", incremental_operation=AlterConfigOpType.SET))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and low_high(broker, name)[0] == 0:
        time.sleep(0.1)
    lo, hi = low_high(broker, name)
    assert hi == 30
    assert lo == 30, "every segment was older than retention.ms: log start offset moves to the end"
    # New records are kept.
    produce_and_wait(p, name, [{"value": b"fresh"}])
    assert low_high(broker, name) == (30, 31)


def test_lowered_max_message_bytes_rejects_large_batches(broker):
    name = create_topic(broker, unique())
    p = producer(broker, **{"linger.ms": 0})
    r = produce_and_wait(p, name, [{"value": b"x" * 5000}])
    assert r[0][0] is None
    incremental(broker, name,
                ConfigEntry("max.message.bytes", "1000", incremental_operation=AlterConfigOpType.SET))
    p2 = producer(broker, **{"linger.ms": 0, "message.send.max.retries": 0})
    r = produce_and_wait(p2, name, [{"value": b"x" * 5000}])
    assert r[0][0] is not None and r[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    r = produce_and_wait(p2, name, [{"value": b"small"}])
    assert r[0][0] is None


def test_config_changes_survive_restart(broker):
    name = create_topic(broker, unique())
    incremental(broker, name,
                ConfigEntry("retention.bytes", "123456789", incremental_operation=AlterConfigOpType.SET))
    broker.restart()
    del broker._admin_client
    wait_topic(broker, name)
    assert topic_configs(broker, name)["retention.bytes"].value == "123456789"


# -- DeleteRecords -----------------------------------------------------------------


def test_delete_records(broker):
    name = create_topic(broker, unique())
    produce_and_wait(producer(broker), name, [{"value": str(i).encode()} for i in range(10)])
    a = admin(broker)
    res = result(a.delete_records([TopicPartition(name, 0, 6)]))
    assert res.low_watermark == 6
    assert low_high(broker, name) == (6, 10)
    # OFFSET_END (-1) deletes everything.
    res = result(a.delete_records([TopicPartition(name, 0, -1)]))
    assert res.low_watermark == 10
    assert error_code(lambda: result(a.delete_records([TopicPartition(name, 0, 50)]))) == \
        KafkaError.OFFSET_OUT_OF_RANGE


def test_delete_records_on_compacted_topic_is_policy_violation(broker):
    name = create_topic(broker, unique(), config={"cleanup.policy": "compact"})
    produce_and_wait(producer(broker), name, [{"key": b"k", "value": b"v"}])
    a = admin(broker)
    assert error_code(lambda: result(a.delete_records([TopicPartition(name, 0, 1)]))) == \
        KafkaError.POLICY_VIOLATION


# -- DescribeCluster ---------------------------------------------------------------


def test_describe_cluster(broker):
    d = admin(broker).describe_cluster(include_authorized_operations=True).result(10)
    assert d.controller.id == 0
    assert [(n.id, n.host, n.port) for n in d.nodes] == [(0, "127.0.0.1", broker.port)]
    assert len(d.cluster_id) == 22
    assert d.authorized_operations


# -- kafka-python -----------------------------------------------------------------


@pytest.fixture
def kp_admin(broker):
    from kafka import KafkaAdminClient

    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    yield a
    a.close()


def test_kafka_python_partitions_configs_records(broker, kp_admin):
    from kafka import TopicPartition as KTP
    from kafka.admin import ConfigResource as KCR, ConfigResourceType, NewPartitions as KNP
    from kafka.errors import InvalidPartitionsError

    name = create_topic(broker, unique(), partitions=1)
    kp_admin.create_partitions({name: KNP(total_count=2)})
    wait_topic(broker, name, 2)
    with pytest.raises(InvalidPartitionsError):
        kp_admin.create_partitions({name: KNP(total_count=1)})

    kp_admin.alter_configs([KCR(ConfigResourceType.TOPIC, name, configs={"retention.ms": "7200000"})])
    described = kp_admin.describe_configs([KCR(ConfigResourceType.TOPIC, name)], include_synonyms=True)
    text = repr(described)
    assert "retention.ms" in text and "7200000" in text

    produce_and_wait(producer(broker), name, [{"value": b"x", "partition": 0} for _ in range(5)])
    out = kp_admin.delete_records({KTP(name, 0): 3})
    assert "3" in repr(out)
    assert low_high(broker, name) == (3, 5)


def test_kafka_python_cluster_and_log_dirs(broker, kp_admin):
    name = create_topic(broker, unique(), partitions=2)
    produce_and_wait(producer(broker), name, [{"value": b"y" * 100, "partition": 1}])
    cluster = kp_admin.describe_cluster()
    assert cluster["controller_id"] == 0
    assert [b["broker_id"] for b in cluster["brokers"]] == [0]
    dirs = kp_admin.describe_log_dirs()
    (entry,) = dirs
    (log_dir,) = entry["log_dirs"]
    assert log_dir["error_code"] == 0
    topics = {t["name"]: t for t in log_dir["topics"]}
    sizes = {p["partition_index"]: p["partition_size"] for p in topics[name]["partitions"]}
    assert sizes[1] > 100 and sizes[0] == 0
