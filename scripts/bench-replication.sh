#!/usr/bin/env bash
# Replication on one machine: a real etcd and three strand brokers on 127.0.0.1, and librdkafka's
# own load generator (examples/rdkafka_performance, as scripts/bench.sh builds it) on the same
# box. A topic with replication factor 3 and min.insync.replicas=2, acks=all, idempotent:
# throughput of 1 KiB messages; latency p50/p99 at 20 MB/s (linger.ms 1, 0 and 5: one
# librdkafka producer pacing itself without spinning, examples/produce_latency.rs); and the time a
# follower 1 GiB behind (stopped while it was produced) takes to be back in every ISR.
#
#   scripts/bench-replication.sh [--partitions N] [--messages N] [--latency-seconds N]
#                                [--catchup-mb N] [--steps throughput,latency,catchup]
#                                [--no-build]
#
# Needs etcd (apt install etcd-server) and the compat-tests venv (.venv with confluent-kafka;
# scripts/install-test-deps.sh). STRAND_BIN overrides the broker binary.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=1 ARGS=()
while (($#)); do
  case "$1" in
    --partitions|--messages|--latency-seconds|--catchup-mb|--steps) ARGS+=("$1" "$2"); shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n "2,13p" "$0"; exit 0 ;;
    *) echo "bench-replication.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
if ((BUILD)) && [ -z "${STRAND_BIN:-}" ]; then
  cargo build --release -q --bin strand --manifest-path "$REPO/Cargo.toml" >&2
fi
if ((BUILD)) || [ ! -x "$REPO/target/release/examples/produce_latency" ]; then
  cargo build --release -q --example produce_latency --manifest-path "$REPO/Cargo.toml" >&2
fi
export LATENCY="$REPO/target/release/examples/produce_latency"
SRC="$("$REPO/compat-tests/librdkafka/prepare.sh" perf | tail -n1)"
export PERF="$SRC/examples/rdkafka_performance"
[ -x "$PERF" ] || { echo "bench-replication.sh: $PERF missing" >&2; exit 1; }
export STRAND_BIN="${STRAND_BIN:-$REPO/target/release/strand}"
exec "$REPO/.venv/bin/python" -u "$REPO/scripts/bench/replication.py" "${ARGS[@]}"
