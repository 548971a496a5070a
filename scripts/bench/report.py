#!/usr/bin/env python3
"""Helpers for scripts/bench.sh.

  report.py produce LOG            -> msgs<TAB>bytes<TAB>ms<TAB>msgs_s<TAB>mb_s<TAB>failed   (last summary)
  report.py consume LOG            -> msgs<TAB>bytes<TAB>ms<TAB>msgs_s<TAB>mb_s
  report.py latency FILE [SKIP]    -> p50_ms<TAB>p99_ms<TAB>count  (latencies in us, one per line; drop the first SKIP)
  report.py render RESULTS.tsv OUT.md HEADER_INFO_FILE
"""
import re
import sys

PROD = re.compile(r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset -?\d+, (\d+) failed\) "
                  r"in (\d+)ms: (\d+) msgs/s and ([\d.]+) MB/s")
CONS = re.compile(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([\d.]+) MB/s\)")


def last(rx, path):
    m = None
    for ln in open(path, errors="replace"):
        mm = rx.search(ln)
        if mm:
            m = mm
    return m


def produce(path):
    m = last(PROD, path)
    if not m:
        print("0\t0\t0\t0\t0\t-1")
        return
    msgs, byts, dr, failed, ms, rate, mbs = m.groups()
    print("\t".join([dr, byts, ms, rate, mbs, failed]))


def consume(path):
    m = last(CONS, path)
    if not m:
        print("0\t0\t0\t0\t0")
        return
    print("\t".join(m.groups()))


def latency(path, skip=0):
    v = [int(x) for x in open(path) if x.strip().isdigit()]
    v = sorted(v[skip:] if len(v) > 2 * skip else v)
    if not v:
        print("-\t-\t0")
        return
    p = lambda q: v[min(len(v) - 1, int(q * len(v)))] / 1000.0
    print("%.2f\t%.2f\t%d" % (p(0.50), p(0.99), len(v)))


def fmt_int(x):
    try:
        return "{:,}".format(int(float(x)))
    except ValueError:
        return x


def render(results, out, info):
    rows = [ln.rstrip("\n").split("\t") for ln in open(results) if ln.strip() and not ln.startswith("#")]
    # broker kind size parts acks codec msgs bytes ms msgs_s mb_s p50 p99 note cmd latcmd
    brokers = []
    for r in rows:
        if r[0] not in brokers:
            brokers.append(r[0])
    ref = [b for b in brokers if b != "strand"]
    o = [open(info).read().rstrip() + "\n"]
    o.append("## Produce\n")
    hdr = "| msg size | partitions | acks | compression | msgs/s | MB/s | p50 ms | p99 ms |"
    sep = "|---:|---:|---|---|---:|---:|---:|---:|"
    for b in ref:
        hdr += " %s msgs/s | %s MB/s | %s p50 ms | %s p99 ms |" % (b, b, b, b)
        sep += "---:|---:|---:|---:|"
    o += [hdr, sep]
    key = lambda r: (r[2], r[3], r[4], r[5])
    byk = {}
    for r in rows:
        byk[(r[0], r[1]) + key(r)] = r
    for r in rows:
        if r[0] != "strand" or r[1] != "produce":
            continue
        size, parts, acks, codec = key(r)
        line = "| %s B | %s | %s | %s | %s | %s | %s | %s |" % (
            size, parts, "all (-1)" if acks == "-1" else acks, codec, fmt_int(r[9]), r[10], r[11], r[12])
        for b in ref:
            rr = byk.get((b, "produce") + key(r))
            line += (" %s | %s | %s | %s |" % (fmt_int(rr[9]), rr[10], rr[11], rr[12])) if rr else " - | - | - | - |"
        o.append(line + (" %s" % r[13] if r[13] else ""))
    o.append("")
    fill = max([int(r[7]) for r in rows if r[1] == "consume"] or [0])
    size = "%d GiB" % (fill >> 30) if fill >= 1 << 30 else "%d MiB" % (fill >> 20)
    o.append("## Consume (%s of 1 KiB messages, from the beginning, non-group consumer)\n" % size)
    hdr = "| partitions | msgs | msgs/s | MB/s |"
    sep = "|---:|---:|---:|---:|"
    for b in ref:
        hdr += " %s msgs/s | %s MB/s |" % (b, b)
        sep += "---:|---:|"
    o += [hdr, sep]
    for r in rows:
        if r[0] != "strand" or r[1] != "consume":
            continue
        line = "| %s | %s | %s | %s |" % (r[3], fmt_int(r[6]), fmt_int(r[9]), r[10])
        for b in ref:
            rr = byk.get((b, "consume") + key(r))
            line += (" %s | %s |" % (fmt_int(rr[9]), rr[10])) if rr else " - | - |"
        o.append(line + (" %s" % r[13] if r[13] else ""))
    o.append("")
    o.append("## Command lines (strand runs; PORT/TOPIC vary per run)\n")
    o.append("```")
    for r in rows:
        if r[0] == "strand":
            o.append(r[14])
            if len(r) > 15 and r[15]:
                o.append(r[15])
    o.append("```")
    # Keep sections other scripts maintain in the same file: <!-- BEGIN name ... --> ... <!-- END name -->
    kept = []
    try:
        prev = open(out).read()
        kept = [m.group(0) for m in re.finditer(r"<!-- BEGIN ([\w-]+)[^>]*-->.*?<!-- END \1 -->", prev, re.S)]
    except OSError:
        pass
    text = "\n".join(o) + "\n"
    for block in kept:
        text += "\n" + block + "\n"
    open(out, "w").write(text)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "produce":
        produce(sys.argv[2])
    elif cmd == "consume":
        consume(sys.argv[2])
    elif cmd == "latency":
        latency(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    elif cmd == "render":
        render(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
