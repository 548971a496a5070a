#!/usr/bin/env bash
# Cluster mode on one machine: a real etcd and three strand brokers on 127.0.0.1, and figures
# for what etcd costs: topic creation until every broker shows the topic, a killed broker's
# departure (lease expiry) seen by the others, the controller's kill -9 until another is named
# and a killed broker's restart until its partition takes produce, a group coordinator's kill -9 until another
# broker coordinates the group and a consumer commits again, and offset commits through etcd (CONSUMERS
# consumers committing PARTITIONS partitions each, as fast as they can, for SECONDS), and FAILOVERS
# kill -9s of a replicated partition's leader under an acks=all producer (time until a record
# produced after the kill is acknowledged; every acknowledged record checked afterwards).
#
#   scripts/bench-cluster.sh [--consumers N] [--partitions N] [--seconds N] [--failovers N]
#                            [--steps metadata,controller,coordinator,failover,commits]
#                            [--committers rdkafka,wire] [--no-build]
#
# The commits are made by examples/commit_latency.rs (librdkafka consumers in one Rust process),
# built here unless --no-build finds it built.
# Needs etcd (apt install etcd-server) and the compat-tests venv (.venv with confluent-kafka;
# scripts/install-test-deps.sh). STRAND_BIN overrides the broker binary.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=1 ARGS=()
while (($#)); do
  case "$1" in
    --consumers|--partitions|--seconds|--failovers|--steps|--committers) ARGS+=("$1" "$2"); shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n "2,15p" "$0"; exit 0 ;;
    *) echo "bench-cluster.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
if ((BUILD)) && [ -z "${STRAND_BIN:-}" ]; then
  cargo build --release -q --bin strand --manifest-path "$REPO/Cargo.toml" >&2
fi
if ((BUILD)) || [ ! -x "$REPO/target/release/examples/commit_latency" ]; then
  cargo build --release -q --example commit_latency --manifest-path "$REPO/Cargo.toml" >&2
fi
export COMMIT_LATENCY="$REPO/target/release/examples/commit_latency"
export STRAND_BIN="${STRAND_BIN:-$REPO/target/release/strand}"
exec "$REPO/.venv/bin/python" -u "$REPO/scripts/bench/cluster.py" "${ARGS[@]}"
