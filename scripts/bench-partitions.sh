#!/usr/bin/env bash
# Many partitions on one broker under a small open-files limit: creates PARTITIONS partitions
# (topics of 1,000), produces one record to each with acks=all, reads every one back, and prints
# how long each step took, the broker's open descriptors and its RSS.
#
#   scripts/bench-partitions.sh [--partitions N] [--nofile N] [--no-build]
#
#   --partitions N  partitions in total (default 50000)
#   --nofile N      `ulimit -n` of the broker (default 4096: far below one descriptor per
#                   partition, let alone three)
#   --no-build      use the existing target/release/strand (or $STRAND_BIN)
# Needs the compat-tests venv (.venv with confluent-kafka; scripts/install-test-deps.sh).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PARTITIONS=50000 NOFILE=4096 BUILD=1
while (($#)); do
  case "$1" in
    --partitions) PARTITIONS="$2"; shift ;;
    --nofile) NOFILE="$2"; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n "2,12p" "$0"; exit 0 ;;
    *) echo "bench-partitions.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
if ((BUILD)); then
  cargo build --release --manifest-path "$REPO/Cargo.toml" >&2
fi
BIN="${STRAND_BIN:-$REPO/target/release/strand}"
DATA="$(mktemp -d /tmp/strand-partitions.XXXXXX)"
PORT="$("$REPO/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
(
  ulimit -n "$NOFILE"
  exec "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" \
    --set "max.broker.partitions=$PARTITIONS" --set "num.partitions=1" \
    --set "auto.create.topics.enable=false"
) >"$DATA.log" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA" "$DATA.log"; }
trap cleanup EXIT

STRAND_PID="$PID" "$REPO/.venv/bin/python" - "$PORT" "$PARTITIONS" "$NOFILE" <<'EOF'
import os, sys, time
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

port, total, nofile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pid = os.environ["STRAND_PID"]
boot = f"127.0.0.1:{port}"

def broker_stats():
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
    return f"{fds} open descriptors, RSS {rss // 1024} MiB"

for _ in range(100):
    try:
        AdminClient({"bootstrap.servers": boot}).list_topics(timeout=1)
        break
    except Exception:
        time.sleep(0.1)
topics = []
left = total
while left > 0:
    n = min(1000, left)
    topics.append((f"p{len(topics)}", n))
    left -= n
admin = AdminClient({"bootstrap.servers": boot})
t0 = time.time()
for name, n in topics:
    for f in admin.create_topics([NewTopic(name, n, 1)], operation_timeout=60).values():
        f.result()
t_create = time.time() - t0
print(f"created {total} partitions in {t_create:.1f} s; broker: {broker_stats()}")

p = Producer({"bootstrap.servers": boot, "acks": "all", "linger.ms": 5,
              "queue.buffering.max.messages": 1000000})
t0 = time.time()
for name, n in topics:
    for i in range(n):
        p.produce(name, value=f"{name}-{i}".encode(), partition=i)
    p.poll(0)
left = p.flush(120)
assert left == 0, f"{left} records not acknowledged"
t_produce = time.time() - t0
print(f"produced 1 record to each of {total} partitions (acks=all) in {t_produce:.1f} s; broker: {broker_stats()}")

c = Consumer({"bootstrap.servers": boot, "group.id": "bench-partitions",
              "enable.auto.commit": False, "fetch.wait.max.ms": 10})
c.assign([TopicPartition(name, i, 0) for name, n in topics for i in range(n)])
seen = set()
t0 = time.time()
while len(seen) < total and time.time() - t0 < 300:
    for m in c.consume(10000, 1.0):
        if m.error():
            raise SystemExit(f"consume error: {m.error()}")
        assert m.value() == f"{m.topic()}-{m.partition()}".encode()
        seen.add((m.topic(), m.partition()))
t_consume = time.time() - t0
c.close()
assert len(seen) == total, f"read back {len(seen)} of {total}"
print(f"read every record back in {t_consume:.1f} s; broker: {broker_stats()}")
print(f"ulimit -n {nofile}: OK")
EOF
