#!/usr/bin/env bash
# The fault harness (issue 11): runs `strand verify` against a 3-broker Strand cluster with
# etcd, every process in its own network namespace, while faults are injected at random
# (kill -9, SIGSTOP longer than the lease, isolation, controller cut from etcd, minority /
# majority splits, one-way drops, etcd kill, broker cut from etcd, packet loss, a slow link,
# a skewed wall clock, a full disk), then heals, and checks the verdict and the recovery.
#
#   scripts/chaos.sh [--runs N] [--seed S] [--duration SECS] [--workload W] [--faults K,...]
#                    [--no-build]
#
# Seeds S, S+1, ... are the runs' seeds: `--runs 1 --seed S` replays run S's fault schedule.
# Results: compat-tests/.work/chaos/results.jsonl (one JSON line per run) and a table on
# stdout; exit status 1 if any run lost, duplicated, reordered or mis-read anything, a broker
# crashed, or the cluster did not recover. Needs root; see compat-tests/chaos.py.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
BUILD=1 ARGS=()
for a in "$@"; do
  case "$a" in
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) ARGS+=("$a") ;;
  esac
done
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
((BUILD)) && cargo build --release --quiet
PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || PY=python3
STRAND_BIN="$REPO/target/release/strand" exec "$PY" compat-tests/chaos.py "${ARGS[@]}"
