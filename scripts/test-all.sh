#!/usr/bin/env bash
# Installs everything and runs the whole suite: formatting, lints, unit tests,
# release build, the Python compatibility suite and (when present) the
# librdkafka suite. Stops at the first failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

START=$(date +%s)
CURRENT="setup"
step() {
  CURRENT="$1"
  printf '\n=============== [%4ss] %s ===============\n' "$(($(date +%s) - START))" "$1"
}
on_exit() {
  rc=$?
  if [ $rc -ne 0 ]; then
    printf '\n*** FAILED at step: %s (exit %s) after %ss ***\n' "$CURRENT" "$rc" "$(($(date +%s) - START))"
  else
    printf '\n*** ALL STEPS PASSED in %ss ***\n' "$(($(date +%s) - START))"
  fi
}
trap on_exit EXIT

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "install test dependencies"
bash scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test

step "cargo build --release"
cargo build --release

step "compat-tests (pytest)"
# Not exported: strand reads STRAND_<KEY> variables as settings and rejects
# unknown ones, so STRAND_BIN must not leak into brokers started by others.
STRAND_BIN="$REPO/target/release/strand" .venv/bin/python -m pytest compat-tests -ra --durations=15

step "chaos: a short fault run against a 3-broker cluster (strand verify)"
# One seeded run of every fault kind (replay: scripts/chaos.sh --runs 1 --seed 104 --duration 30).
bash scripts/chaos.sh --no-build --runs 1 --seed 104 --duration 30

if [ -f compat-tests/librdkafka/run.sh ]; then
  step "librdkafka test suite"
  bash compat-tests/librdkafka/run.sh --ci
  step "librdkafka test suite against a 3-broker cluster (etcd)"
  bash compat-tests/librdkafka/run.sh --ci --no-build --cluster 3
else
  echo "(compat-tests/librdkafka/run.sh not present: skipped)"
fi
CURRENT="done"
