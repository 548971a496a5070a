#!/usr/bin/env python3
"""Classify every test of librdkafka's test suite by what it needs from the broker.

Usage: classify.py LIBRDKAFKA_SRC_DIR > tests.tsv

Reads tests/test.c (the test table: name, flags, scenario) and each test's source. For C tests,
the main_<name>() function and the same-file functions it calls (transitively) are scanned, so
that e.g. 0031_get_offsets and 0031_get_offsets_mock, which share a file, are told apart; C++
tests are scanned whole. Categories:

  run, must pass:        basic, groups, idempotence (idempotent + transactional producer), admin
  run, expected to fail: cluster (several brokers / replication factor > 1)
  not run:               local, java, security (SSL/SASL/ACLs/SCRAM), sockem, known-issue, manual

A test whose source matches several needs gets the first of cluster, idempotence, groups, admin,
security as its category (a transactional test that also consumes is "idempotence", a consumer
test that also adds partitions is "groups"); the reason lists every matched symbol.
Hand-reviewed corrections are in OVERRIDES.
"""
import os
import re
import sys

# --- hand-reviewed corrections (test name -> (category, reason)) ---------------------------
OVERRIDES = {
    # Java tools (kafka-*.sh, the Java verifiable producer/consumer, kafka-acls)
    "0052_msg_timestamps": ("java", "needs Java kafka tools (KAFKA_PATH)"),
    "0077_compaction": ("java", "needs Java kafka tools (kafka-configs.sh) and log compaction"),
    "0098_consumer_txn": ("java", "needs the Java TransactionProducerCli"),
    "0109_auto_create_topics": ("java", "needs Java kafka tools (kafka-acls.sh)"),
    "0115_producer_auth": ("java", "needs Java kafka tools (kafka-acls.sh)"),
    "0119_consumer_auth": ("java", "needs Java kafka tools (kafka-acls.sh)"),
    # Security
    "0097_ssl_verify": ("security", "SSL listener"),
    "0126_oauthbearer_oidc": ("security", "SASL/OAUTHBEARER OIDC endpoint"),
    "0135_sasl_credentials": ("security", "SASL"),
    "0142_reauthentication": ("security", "SASL re-authentication (KIP-368)"),
    # Broker tests that start an rd_kafka_mock cluster instead of using the broker
    "0139_offset_validation_mock": ("local", "local: not a broker test (rd_kafka_mock cluster)"),
    "0150_telemetry_mock": ("local", "local: not a broker test (rd_kafka_mock cluster)"),
    # 0019 lists groups through the ListGroups API (rd_kafka_list_groups)
    "0019_list_groups": ("groups", "ListGroups/DescribeGroups (rd_kafka_list_groups) + subscribe"),
    # 0014 runs its legacy consumer twice: offset.store.method=file and =broker (OffsetCommit/Fetch)
    "0014_reconsume_191": ("groups", "legacy consumer with offset.store.method=broker: OffsetCommit/OffsetFetch"),
    # 0081 tests every Admin API. Its ACL subtests (CreateAcls/DescribeAcls/DeleteAcls, run
    # before most others) and SCRAM-credential subtests skip themselves under run.sh's
    # TEST_NO_ACLS (local patch, see prepare.sh), so the rest of the test must pass.
    "0081_admin": ("admin", "every Admin API: topics, partitions, configs, DeleteRecords, groups, "
                   "group offsets, DescribeTopics/Cluster, ListOffsets (ACL/SCRAM subtests skipped: "
                   "TEST_NO_ACLS)"),
    # Need a multi-broker cluster (run anyway: expected to fail on a single broker)
    "0101_fetch_from_follower": ("cluster", "fetch from follower: needs >= 2 brokers with racks (and subscribe)"),
}

JAVA = {"0052", "0077", "0098", "0109", "0115", "0119"}

def _lits(*names):
    """Literal symbols -> (label, regex) pairs."""
    return [(n, re.escape(n)) for n in names]


# category -> [(label, regex)] ; matched against the test's (comment-stripped) source
NEEDS = [
    ("cluster", [
        ("topic with replication factor >= 2",
         r"create_topic_wait_exists\(\s*[^,;]+,\s*[^,;]+,\s*[^,;]+,\s*[2-9]\s*,"
         r"|\bcreate_topic\(\s*[^,;]+,\s*[^,;]+,\s*[^,;]+,\s*[2-9]\s*\)"),
    ]),
    ("idempotence", _lits(
        "rd_kafka_init_transactions", "transactional.id", "rd_kafka_begin_transaction",
        "rd_kafka_send_offsets_to_transaction", "init_transactions(") + [
        ("enable.idempotence=true", r"enable\.idempotence\",(?!\s*\"false\")"),
    ]),
    ("groups", _lits(
        "rd_kafka_subscribe", "test_consumer_subscribe", "rd_kafka_commit", "rd_kafka_committed",
        "test_consumer_commit", "rd_kafka_list_groups", "test_consume_msgs_easy",
        "rd_kafka_consumer_group_metadata", "test_consumer_assign", "KafkaConsumer::create",
        "->subscribe(", "commitSync", "commitAsync", "group.instance.id", "rd_kafka_DeleteGroups",
        "test_DeleteGroups_simple", "rd_kafka_ListConsumerGroups", "rd_kafka_DescribeConsumerGroups",
        "rd_kafka_ListConsumerGroupOffsets", "rd_kafka_AlterConsumerGroupOffsets",
        "rd_kafka_DeleteConsumerGroupOffsets", "test_DeleteConsumerGroupOffsets_simple",
        "rd_kafka_offsets_store") + [
        ("test_create_consumer(group)", r"test_create_consumer\((?!\s*NULL)"),
        ("offset.store.method=broker", r"offset\.store\.method\",\s*\"broker"),
    ]),
    ("admin", _lits(
        "rd_kafka_CreatePartitions", "test_CreatePartitions_simple", "test_create_partitions",
        "rd_kafka_DescribeConfigs", "rd_kafka_AlterConfigs", "rd_kafka_IncrementalAlterConfigs",
        "test_AlterConfigs_simple", "test_IncrementalAlterConfigs_simple", "rd_kafka_DeleteRecords",
        "test_DeleteRecords_simple",
        "rd_kafka_DescribeCluster", "rd_kafka_DescribeTopics", "rd_kafka_ElectLeaders",
        "rd_kafka_ListOffsets")),
    ("security", _lits(
        "rd_kafka_CreateAcls", "rd_kafka_DescribeAcls", "rd_kafka_DeleteAcls", "test_CreateAcls_simple",
        "test_DeleteAcls_simple", "rd_kafka_DescribeUserScramCredentials",
        "rd_kafka_AlterUserScramCredentials")),
]
MOCK = ["rd_kafka_mock_cluster_new", "test_mock_cluster_new", "mock_cluster"]

FLAG_CATS = [("TEST_F_MANUAL", "manual", "manual test (not part of the suite)"),
             ("TEST_F_KNOWN_ISSUE", "known-issue", "flagged TEST_F_KNOWN_ISSUE upstream (skipped by the runner)"),
             ("TEST_F_LOCAL", "local", "local: not a broker test"),
             ("TEST_F_SOCKEM", "sockem", "needs socket emulation (sockem), skipped with -E")]


def parse_table(test_c):
    body = test_c[test_c.index("struct test tests[] = {"):]
    body = body[:body.index("{NULL}")]
    entries = []
    for m in re.finditer(r"_TEST\((\d{4}_\w+),(.*?)\)\s*,\s*(?=_TEST\(|/\*|#|$)", body, re.S):
        name, rest = m.group(1), m.group(2)
        flags = set(re.findall(r"TEST_F_[A-Z_0-9]+", rest))
        if "TEST_F_KNOWN_ISSUE_WIN32" in flags or "TEST_F_KNOWN_ISSUE_OSX" in flags:
            flags -= {"TEST_F_KNOWN_ISSUE_WIN32", "TEST_F_KNOWN_ISSUE_OSX"}  # Linux: no issue
        sc = re.search(r'\.scenario\s*=\s*"([^"]+)"', rest)
        entries.append((name, flags, sc.group(1) if sc else "default"))
    return entries


def strip_comments(s):
    s = re.sub(r"/\*.*?\*/", " ", s, flags=re.S)
    return re.sub(r"//[^\n]*", " ", s)


def c_functions(src):
    """Top-level function name -> body text (column-0 definitions, brace matched)."""
    funcs = {}
    for m in re.finditer(r"^(?:[A-Za-z_][\w \t\*]*\n?)?[ \t\*]*([A-Za-z_]\w*)\s*\([^;{]*?\)\s*\{", src, re.M):
        name, i, depth = m.group(1), m.end(), 1
        while depth and i < len(src):
            c = src[i]
            depth += (c == "{") - (c == "}")
            i += 1
        if name not in ("if", "for", "while", "switch"):
            funcs[name] = src[m.start():i]
    return funcs


def closure_text(funcs, root):
    seen, todo, out = set(), [root], []
    while todo:
        f = todo.pop()
        if f in seen or f not in funcs:
            continue
        seen.add(f)
        out.append(funcs[f])
        for callee in re.findall(r"\b([A-Za-z_]\w*)\s*\(", funcs[f]):
            if callee in funcs and callee not in seen:
                todo.append(callee)
    return "\n".join(out)


def main():
    src_dir = sys.argv[1]
    tdir = os.path.join(src_dir, "tests")
    test_c = open(os.path.join(tdir, "test.c")).read()
    files = {}
    for fn in sorted(os.listdir(tdir)):
        if re.match(r"^\d{4}-.*\.(c|cpp)$", fn):
            files[fn] = strip_comments(open(os.path.join(tdir, fn), errors="replace").read())
    print("# test\tcategory\tscenario\treason  (generated by classify.py; see OVERRIDES there)")
    for name, flags, scenario in parse_table(test_c):
        num = name[:4]
        cat = reason = None
        for flag, c, r in FLAG_CATS:
            if flag in flags:
                cat, reason = c, r
                break
        if name in OVERRIDES and cat not in ("manual", "known-issue"):
            cat, reason = OVERRIDES[name]
        elif cat is None and num in JAVA:
            cat, reason = "java", "needs Java kafka tools"
        if cat is None:
            text = None
            for fn, s in files.items():
                if re.search(r"\bmain_%s\s*\(" % re.escape(name), s):
                    text = closure_text(c_functions(s), "main_" + name) if fn.endswith(".c") else s
                    if not text:
                        text = s
                    break
            if text is None:
                cat, reason = "basic", "(source not found)"
            elif any(p in text for p in MOCK):
                cat, reason = "local", "local: not a broker test (rd_kafka_mock cluster)"
            else:
                hits = [(c, [lbl for lbl, rx in pats if re.search(rx, text)]) for c, pats in NEEDS]
                hits = [(c, ps) for c, ps in hits if ps]
                if hits:
                    cat = hits[0][0]
                    reason = "; ".join("%s: %s" % (c, ", ".join(ps)) for c, ps in hits)
                else:
                    cat, reason = "basic", "produce/consume/metadata/topic admin only"
        print("%s\t%s\t%s\t%s" % (name, cat, scenario, reason))


if __name__ == "__main__":
    main()
