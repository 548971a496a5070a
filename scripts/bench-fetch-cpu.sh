#!/usr/bin/env bash
# Broker CPU spent serving fetches: fills a topic with 1 GiB of 1 KiB messages (8 partitions,
# acks=1), then reads it from the beginning RUNS times with librdkafka's rdkafka_performance
# (non-group consumer) and prints, per run, the broker's CPU time (user + system, from
# /proc/<pid>/stat) and the wall time. On one machine the consumer, not the broker, limits
# the wall time, so the broker's CPU per GiB is the figure that shows what a fetch costs it.
#
#   scripts/bench-fetch-cpu.sh [--runs N] [--no-build]
#
# Needs rdkafka_performance as built by scripts/bench.sh (compat-tests/.work); STRAND_BIN
# overrides the broker binary.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS=3 BUILD=1
while (($#)); do
  case "$1" in
    --runs) RUNS="$2"; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n "2,12p" "$0"; exit 0 ;;
    *) echo "bench-fetch-cpu.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
if ((BUILD)); then
  cargo build --release --manifest-path "$REPO/Cargo.toml" >&2
fi
BIN="${STRAND_BIN:-$REPO/target/release/strand}"
PERF="$REPO/compat-tests/.work/rdkafka-src/vendor/rdkafka-sys/librdkafka/examples/rdkafka_performance"
[[ -x "$PERF" ]] || { echo "rdkafka_performance not built: run scripts/bench.sh once" >&2; exit 1; }
DATA="$(mktemp -d /tmp/strand-fetch-cpu.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" --set num.partitions=8 >"$DATA.log" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA" "$DATA.log"; }
trap cleanup EXIT
for _ in $(seq 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  sleep 0.1
done
"$PERF" -P -b "127.0.0.1:$PORT" -t fill -c 1048576 -s 1024 -a 1 -q >/dev/null 2>&1
sleep 1
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ="$(getconf CLK_TCK)"
for i in $(seq "$RUNS"); do
  c0="$(ticks)" t0="$(date +%s%N)"
  "$PERF" -C -b "127.0.0.1:$PORT" -t fill -p 0 -p 1 -p 2 -p 3 -p 4 -p 5 -p 6 -p 7 \
    -o beginning -c 1048576 -q >/dev/null 2>&1
  c1="$(ticks)" t1="$(date +%s%N)"
  awk -v c="$((c1 - c0))" -v hz="$HZ" -v ns="$((t1 - t0))" -v i="$i" \
    'BEGIN { printf "run %d: 1 GiB fetched, broker CPU %.2f s, wall %.2f s\n", i, c / hz, ns / 1e9 }'
done
