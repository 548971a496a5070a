#!/usr/bin/env bash
# Runs Strand's cargo-fuzz targets (fuzz/fuzz_targets/) and prints the executions per target.
#
#   scripts/fuzz.sh [--seconds N] [--targets request,produce_batches,segment_recovery]
#                   [--sanitizer none|address] [--no-build]
#
# --seconds N  run each target N seconds (default 60)
# --sanitizer  none (default: ~10x the executions per second; the broker is safe Rust apart from
#              src/alloc.rs) or address (AddressSanitizer, for unsafe code and C dependencies)
# Needs the nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz: installed here when
# missing. Not part of the CI suite (scripts/test-all.sh): `cargo test` drives the same seams
# (src/fuzzing.rs) with seeded mutations (tests/it/fuzz_smoke.rs). Corpora grow in
# fuzz/corpus/<target> (not in git); a crash is written to fuzz/artifacts/<target>/ and fails
# the run: turn it into a regression test (tests/it/protocol_errors.rs and the like) before
# fixing it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO/fuzz"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
SECONDS_EACH=60
TARGETS="request,produce_batches,segment_recovery"
BUILD=1
SAN=none
while (($#)); do
  case "$1" in
    --seconds) SECONDS_EACH="$2"; shift ;;
    --targets) TARGETS="$2"; shift ;;
    --sanitizer) SAN="$2"; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
# Leak detection is off: the broker's statics (registry, metrics) are intentionally never freed.
FUZZ_FLAGS=(--release --debug-assertions -s "$SAN")
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz.sh: installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
if ((BUILD)); then
  cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"
fi
total=0
IFS=, read -r -a list <<<"$TARGETS"
for t in "${list[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="$(mktemp)"
  set +e
  cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -detect_leaks=0 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^Done \([0-9]*\) runs in.*/\1/p' "$log" | tail -n1)
  if [ "$rc" -ne 0 ] || [ -z "$runs" ]; then
    tail -n 60 "$log"
    echo "fuzz.sh: target $t FAILED (exit $rc); see fuzz/artifacts/$t/" >&2
    exit 1
  fi
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' "$log" | tail -n1)
  printf 'fuzz %-18s %12s executions in %ss, coverage %s, corpus %s inputs\n' \
    "$t" "$runs" "$SECONDS_EACH" "${cov:-?}" "$(ls "corpus/$t" | wc -l)"
  total=$((total + runs))
  rm -f "$log"
done
printf 'fuzz total %s executions, 0 crashes\n' "$total"
