#!/usr/bin/env python3
"""Helpers for run.sh.

  report.py parse LOG RC TIMEOUT NAME...   -> one line per NAME: name<TAB>status<TAB>detail
  report.py render TESTS.tsv CI-TESTS.txt OUT.md RECORD.tsv...

parse: reads a test-runner log (stdout+stderr) and the runner's exit code (124 = killed by our
timeout) and decides pass / fail / skip for each expected test entry. A test that "passed" in
0.000s without running a single subtest only had non-quick subtests, which quick mode (-Q)
skips: that is reported as a skip, not a pass.

render: docs/compatibility.md from the per-mode records (results/<mode>.tsv written by
run.sh --full: '# key: value' header lines, then test<TAB>category<TAB>result<TAB>detail).
"""
import re
import sys
from collections import Counter, OrderedDict

ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOTES_BEGIN = "<!-- hand-written notes: begin (kept by run.sh --full) -->"
NOTES_END = "<!-- hand-written notes: end -->"
STATUS = {"PASSED": "pass", "FAILED": "fail", "SKIPPED": "skip", "RUNNING": "fail", "DNS": "fail"}


def clean(s):
    return ANSI.sub("", s).replace("\t", " ").strip()


def subtests_ran(lines, name):
    """True if the log shows a subtest of NAME passing or being skipped ('[ sub: PASS (' lines)."""
    pat = re.compile(r"^\[%s\s*/.*\[ .*: (PASS \(|SKIP: )" % re.escape(name))
    return any(pat.search(ln) for ln in lines)


def parse(log, rc, tmout, names):
    text = ANSI.sub("", open(log, errors="replace").read())
    lines = text.splitlines()
    summary = {}
    for ln in lines:
        m = re.match(r"^\|\s*(\d{4}_\w+)\s*\|\s*(\w+)\s*\|\s*([\d.]+)s\s*\|\s*(.*)$", ln)
        if m:
            summary[m.group(1)] = (m.group(2), m.group(3), m.group(4).strip())
    # First failure message per test: '### Test "NAME (subtest)" failed at file:line:func() at date: ###' + next line
    failures = {}
    for i, ln in enumerate(lines):
        m = re.search(r'### Test "(\d{4}_\w+)(?: \((.*?)\))?" failed at (\S+?)\(\) at .*?###', ln)
        if m and m.group(1) not in failures:
            msg = lines[i + 1].strip() if i + 1 < len(lines) else ""
            sub = (" [%s]" % m.group(2)) if m.group(2) else ""
            failures[m.group(1)] = "%s%s: %s" % (m.group(3), sub, msg)
    crash = ""
    for ln in lines:
        if re.search(r"Assertion .* failed|Segmentation fault|Aborted|AddressSanitizer", ln):
            crash = clean(ln)
            break
    out = []
    for name in names:
        if rc == 124:
            st, d = summary.get(name, ("RUNNING", "", ""))[0], ""
            if st in ("PASSED", "SKIPPED"):
                out.append((name, STATUS[st], summary[name][2]))
                continue
            d = "timeout: killed after %ss" % tmout
            if name in failures:
                d += "; " + failures[name]
            out.append((name, "fail", d))
        elif name in summary:
            st, dur, extra = summary[name]
            status = STATUS.get(st, "fail")
            if status == "pass" and float(dur) < 0.0005 and not subtests_ran(lines, name):
                status, d = "skip", "quick mode (-Q): every subtest is non-quick, nothing ran"
            elif status == "fail":
                d = failures.get(name) or extra or ("state %s" % st)
            elif status == "skip":
                d = "skipped by the test: " + (extra or "?")
            else:
                d = "%ss" % dur
            out.append((name, status, d))
        elif name in failures:  # the runner aborted before printing its summary
            out.append((name, "fail", failures[name]))
        else:
            d = "no result in test-runner output (exit code %s)" % rc
            if crash:
                d += ": " + crash
            out.append((name, "fail", d))
    for name, st, d in out:
        print("%s\t%s\t%s" % (name, st, clean(d)[:600]))


MODE_ORDER = ["classic", "idempotent", "consumer", "idempotent+consumer", "classic+cluster3",
              "idempotent+cluster3", "consumer+cluster3"]
MODE_LABEL = {"classic": "classic", "idempotent": "-P", "consumer": "consumer",
              "classic+cluster3": "3 brokers", "idempotent+cluster3": "-P, 3 brokers",
              "consumer+cluster3": "consumer, 3 brokers",
              "idempotent+consumer": "-P consumer"}
MODE_MEANING = {
    "classic": "default: classic consumer group protocol, producers as each test configures them",
    "idempotent": "`-P`: the test runner makes every producer idempotent (`enable.idempotence=true`)",
    "consumer": "`--consumer-protocol`: `TEST_CONSUMER_GROUP_PROTOCOL=consumer`, the test framework's "
                "consumers use the KIP-848 protocol (`group.protocol=consumer`; ConsumerGroupHeartbeat)",
    "idempotent+consumer": "`-P --consumer-protocol`",
    "classic+cluster3": "`--cluster 3`: classic mode against a cluster of etcd and three brokers "
                        "(group and transaction coordinators and partition leaders spread over them; "
                        "topics with the replication factor each test asks for, racks RACK1-3 and "
                        "the rack-aware replica selector)",
    "idempotent+cluster3": "`-P --cluster 3`: idempotent mode against the 3-broker cluster",
    "consumer+cluster3": "`--consumer-protocol --cluster 3`: KIP-848 consumers against the 3-broker "
                         "cluster",
}
CATEGORIES = OrderedDict([
    ("basic", ("produce / consume / metadata / topic admin only", "must pass")),
    ("groups", ("consumer groups: subscribe / commit / KafkaConsumer / group admin (FindCoordinator, "
                "JoinGroup, SyncGroup, Heartbeat, ConsumerGroupHeartbeat, OffsetCommit, OffsetFetch, ...)",
                "must pass")),
    ("idempotence", ("idempotent and transactional producer (InitProducerId, AddPartitionsToTxn, "
                     "AddOffsetsToTxn, EndTxn, TxnOffsetCommit, read_committed)", "must pass")),
    ("admin", ("Admin APIs beyond Create/DeleteTopics: CreatePartitions, Describe/Alter/"
               "IncrementalAlterConfigs, DeleteRecords, DescribeCluster, DescribeTopics, ListOffsets, "
               "group admin (0081's ACL/SCRAM subtests are skipped: TEST_NO_ACLS)", "must pass")),
    ("cluster", ("needs replication (topics with replication factor 2 or 3, follower fetching): "
                 "they fail against one broker", "must pass against 3 brokers")),
    ("local", ("not a broker test (no broker, or an rd_kafka_mock cluster)", "not run")),
    ("sockem", ("needs librdkafka's socket emulation (`-E` excludes it)", "not run")),
    ("security", ("SSL / SASL / OAUTHBEARER listeners, ACLs, SCRAM credentials: Strand has none", "not run")),
    ("java", ("needs the Java Kafka tools (kafka-*.sh, Java clients)", "not run")),
    ("known-issue", ("flagged TEST_F_KNOWN_ISSUE upstream", "not run")),
    ("manual", ("manual tests", "not run")),
])


def read_record(path):
    meta, res = {}, OrderedDict()
    for ln in open(path):
        ln = ln.rstrip("\n")
        if ln.startswith("#"):
            k, _, v = ln[1:].partition(":")
            meta[k.strip()] = v.strip()
            continue
        if not ln.strip():
            continue
        name, cat, status, detail = (ln.split("\t") + ["", "", ""])[:4]
        res[name] = (status, detail)
    return meta, res


def read_tests(tests_tsv):
    tests = OrderedDict()
    for ln in open(tests_tsv):
        if ln.startswith("#") or not ln.strip():
            continue
        f = ln.rstrip("\n").split("\t")
        tests[f[0]] = (f[1], f[3] if len(f) > 3 else "")
    return tests


def read_ci(ci_txt):
    ci = {}
    for ln in open(ci_txt):
        f = ln.split("#", 1)[0].split()
        if f:
            mode = next((w for w in f[1:] if w not in ("noquick", "cluster", "single")), "classic")
            if "cluster" in f[1:]:
                mode += "+cluster3"
            ci.setdefault(f[0], []).append(mode + (" noquick" if "noquick" in f[1:] else ""))
    return ci


def doc_detail(d):
    """A result detail for the page: without the broker's stderr tail (kept in results/*.tsv) and
    with the random part of test topic names elided, so that equal failures in several modes
    read as one."""
    d = d.split(" | broker stderr:", 1)[0]
    d = re.sub(r"rdkafkatest_rnd[0-9a-f]+", "rdkafkatest_rnd…", d)
    return d[:500]


def ci_label(entry):
    mode, _, nq = entry.partition(" ")
    return MODE_LABEL.get(mode, mode) + (" (no -Q)" if nq else "")


def esc(s):
    return s.replace("|", "\\|")


def render(tests_tsv, ci_txt, out_md, records):
    tests = read_tests(tests_tsv)
    ci = read_ci(ci_txt)
    runs = {}
    for path in records:
        meta, res = read_record(path)
        runs[meta.get("mode", path)] = (meta, res)
    modes = [m for m in MODE_ORDER if m in runs] + sorted(m for m in runs if m not in MODE_ORDER)
    notes = None
    try:
        prev = open(out_md).read()
        if NOTES_BEGIN in prev and NOTES_END in prev:
            notes = prev.split(NOTES_BEGIN, 1)[1].split(NOTES_END, 1)[0].strip("\n")
    except OSError:
        pass
    version = next((runs[m][0].get("librdkafka") for m in modes if runs[m][0].get("librdkafka")), "?")
    o = []
    o.append("# Compatibility: librdkafka's own test suite\n")
    o.append("<!-- Generated by compat-tests/librdkafka/run.sh --full (from compat-tests/librdkafka/results/*.tsv): "
             "edit only the notes block below, the rest is overwritten. -->\n")
    o.append(NOTES_BEGIN)
    o.append(notes if notes is not None else "(Hand-written notes go here; run.sh keeps this block.)")
    o.append(NOTES_END + "\n")
    o.append("Strand runs librdkafka's regression test suite (the `tests/` directory of the librdkafka "
             "source, run by its `test-runner` in broker mode with `TEST_KAFKA_VERSION=4.0.0`, quick mode "
             "`-Q`, no socket emulation `-E`, no local-only tests `-L`) against a single Strand broker "
             "started on 127.0.0.1 (and, in the \"3 brokers\" mode, against a cluster of etcd and three "
             "brokers). Each test number runs on its own with a wall-clock timeout, against "
             "a fresh broker (or cluster). The suite is run in up to three modes (below), each recorded separately. "
             "A failure in **basic**, **groups**, **idempotence** or **admin** is a Strand bug; "
             "**cluster** tests need replication: they fail against one broker and must pass against three (whose brokers are in racks RACK1..RACK3 with the rack-aware replica selector, for 0101's KIP-392 follower fetching).\n")
    o.append("- librdkafka: **%s** (crate `rdkafka-sys` 4.10.0)" % version)
    o.append("- categories come from `compat-tests/librdkafka/tests.tsv` (generated by `classify.py` "
             "from each test's source, reviewed by hand)")
    o.append("- local change to the test suite: `prepare.sh` makes 0081_admin's ACL and SCRAM subtests "
             "skip themselves when `TEST_NO_ACLS` is set (run.sh sets it), so the rest of 0081 runs")
    o.append("- a \"pass\" that ran no subtest in 0.000s (all its subtests are non-quick) is shown as "
             "a skip (\"quick mode\")")
    o.append("- `ci` column: the modes in which the test is part of `run.sh --ci` (`ci-tests.txt`; "
             "\"no -Q\": run there without quick mode)\n")
    o.append("## Modes\n")
    o.append("| mode | column | what | date | strand | wall time | command |")
    o.append("|---|---|---|---|---|---|---|")
    for m in modes:
        meta = runs[m][0]
        try:
            dur = int(float(meta.get("wall time", "0")))
            wt = "%d min %d s" % (dur // 60, dur % 60)
        except ValueError:
            wt = meta.get("wall time", "?")
        o.append("| %s | %s | %s | %s | %s | %s | `%s` |" % (
            m, MODE_LABEL.get(m, m), MODE_MEANING.get(m, ""), meta.get("date", "?"),
            meta.get("strand", "?"), wt, meta.get("command", "?")))
    o.append("")
    o.append("## Categories\n")
    o.append("| category | needs | expectation |")
    o.append("|---|---|---|")
    for cat, (meaning, exp) in CATEGORIES.items():
        o.append("| %s | %s | %s |" % (cat, meaning, exp))
    o.append("")
    o.append("## Summary\n")
    o.append("Per mode: pass / fail / skip.\n")
    o.append("| category | " + " | ".join(MODE_LABEL.get(m, m) for m in modes) + " |")
    o.append("|---|" + "---:|" * len(modes))
    cats = list(CATEGORIES) + sorted({c for c, _ in tests.values()} - set(CATEGORIES))
    totals = {m: Counter() for m in modes}
    for cat in cats:
        names = [n for n, (c, _) in tests.items() if c == cat]
        if not names:
            continue
        cells = []
        for m in modes:
            c = Counter(runs[m][1].get(n, ("not run", ""))[0] for n in names)
            totals[m].update(c)
            f = ("**%d**" % c["fail"]) if c["fail"] and cat in ("basic", "groups", "idempotence", "admin") else str(c["fail"])
            cells.append("%d / %s / %d" % (c["pass"], f, c["skip"]) + (" (+%d not run)" % c["not run"] if c["not run"] else ""))
        o.append("| %s | %s |" % (cat, " | ".join(cells)))
    o.append("| **total** | " + " | ".join("**%d / %d / %d**" % (totals[m]["pass"], totals[m]["fail"], totals[m]["skip"])
                                        for m in modes) + " |\n")
    o.append("## Tests\n")
    o.append("| test | category | " + " | ".join(MODE_LABEL.get(m, m) for m in modes) + " | ci | detail |")
    o.append("|---|---|" + "---|" * len(modes) + "---|---|")
    for name, (cat, reason) in tests.items():
        cells, details = [], OrderedDict()
        for m in modes:
            st, d = runs[m][1].get(name, ("", ""))
            if st == "pass":
                cells.append("pass" + (" (%s)" % d if re.match(r"^[\d.]+s$", d) else ""))
            elif st == "fail":
                cells.append("**FAIL**" if cat != "cluster" else "FAIL")
            else:
                cells.append(st or "-")
            if st != "pass" and d:
                details.setdefault(doc_detail(d), []).append(MODE_LABEL.get(m, m))
        if len(details) == 1 and len(next(iter(details.values()))) == len(modes):
            detail = next(iter(details))  # the same in every mode
        else:
            detail = "<br>".join("%s: %s" % ("/".join(ms), d) for d, ms in details.items())
        o.append("| %s | %s | %s | %s | %s |" % (name, cat, " | ".join(cells),
                                                 ", ".join(ci_label(m) for m in ci.get(name, [])),
                                                 esc(detail)))
    open(out_md, "w").write("\n".join(o) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "parse":
        parse(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:])
    elif sys.argv[1] == "render":
        render(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    else:
        sys.exit("usage: report.py parse|render ...")
