#!/usr/bin/env bash
# Consumer-group rebalance timings of Strand with librdkafka's defaults (confluent-kafka from
# .venv, which bundles librdkafka): see scripts/bench/groups.py for what is measured.
#
#   scripts/bench-groups.sh [--runs N] [--no-docs] [--out FILE]
#
#   --runs N    runs per scenario (default 3)
#   --no-docs   only print; do not update the group section of docs/performance.md
#   --out FILE  the markdown file whose group section is (re)written (default docs/performance.md);
#               only the text between the "bench-groups" markers is touched
#
# The broker is target/release/strand (or $STRAND_BIN), built first if missing or older than
# src/. It runs on a free 127.0.0.1 port with a temporary data dir and default group settings
# (group.initial.rebalance.delay.ms=3000), and is stopped on exit.
# Exit status: 0 if every target is met, 1 if one is missed, 2 on errors.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS=3 DOCS=1 OUT="$REPO/docs/performance.md"
while (($#)); do
  case "$1" in
    --runs) RUNS="$2"; shift ;;
    --no-docs) DOCS=0 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n "2,16p" "$0"; exit 0 ;;
    *) echo "bench-groups.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench-groups.sh: error: %s\n' "$*" >&2; exit 2; }

PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || { log "no .venv: running scripts/install-test-deps.sh"; bash "$REPO/scripts/install-test-deps.sh" || die "install-test-deps.sh failed"; }
"$PY" -c 'import confluent_kafka' 2>/dev/null || die "confluent-kafka missing in .venv (scripts/install-test-deps.sh)"

STRAND="${STRAND_BIN:-$REPO/target/release/strand}"
case "$STRAND" in /*) ;; *) STRAND="$REPO/$STRAND" ;; esac
if [ -z "${STRAND_BIN:-}" ] && { [ ! -x "$STRAND" ] || [ -n "$(find "$REPO/src" -newer "$STRAND" -print -quit)" ]; }; then
  log "cargo build --release"
  (cd "$REPO" && cargo build --release -q --bin strand) || die "cargo build --release failed"
fi
[ -x "$STRAND" ] || die "$STRAND missing (cargo build --release)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-groups.XXXXXX")"
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

# STRAND_* variables are broker settings: start from a clean slate (default group settings).
env $(env | sed -n 's/^\(STRAND_[A-Za-z0-9_]*\)=.*/-u \1/p') RUST_LOG="${RUST_LOG:-warn}" \
  "$STRAND" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/strand.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 200); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$BROKER_PID" 2>/dev/null || { cat "$WORK/strand.log" >&2; die "strand exited"; }
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || die "strand is not listening on $PORT"
log "$("$STRAND" --version 2>/dev/null | head -1) on 127.0.0.1:$PORT (pid $BROKER_PID)"

T0=$(date +%s)
"$PY" "$REPO/scripts/bench/groups.py" --bootstrap "127.0.0.1:$PORT" --runs "$RUNS" --json "$WORK/groups.json"
RC=$?
((RC <= 1)) || { tail -50 "$WORK/strand.log" >&2; die "groups.py failed (exit $RC)"; }
if grep -qiE "panick|ERROR" "$WORK/strand.log"; then
  log "broker log has errors:"; grep -iE "panick|ERROR" "$WORK/strand.log" | head -20 >&2
fi
log "done in $(( $(date +%s) - T0 ))s"

if ((DOCS)); then
  "$PY" - "$WORK/groups.json" "$OUT" "$RUNS" "$(nproc)" <<'PY' || die "could not update $OUT"
import json, os, sys
res, out, runs, cpus = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
BEGIN, END = "<!-- BEGIN bench-groups (scripts/bench-groups.sh writes this section) -->", "<!-- END bench-groups -->"
rows = []
for name, s in res["scenarios"].items():
    extra = ""
    if "consuming_s_median" in s:
        extra = f" (all consuming: median {s['consuming_s_median']:.2f} s)"
    rows.append(f"| {s['label']}{extra} | {s['min_s']:.2f} | {s['median_s']:.2f} | {s['max_s']:.2f} "
                f"| ≤ {s['target_s']:.1f} | {'met' if s['ok'] else '**missed**'} |")
section = "\n".join([
    BEGIN,
    "## Consumer group rebalances",
    "",
    f"`scripts/bench-groups.sh --runs {runs}`: a release strand with default group settings "
    "(`group.initial.rebalance.delay.ms=3000`) and confluent-kafka consumers with librdkafka "
    f"{res['librdkafka']}'s defaults (`session.timeout.ms=45000`, `heartbeat.interval.ms=3000`, "
    "`range,roundrobin`), a producer writing to every partition every 10 ms; "
    f"{runs} runs per scenario on {cpus} cores. Seconds:",
    "",
    "| scenario | min | median | max | target | |",
    "|---|---:|---:|---:|---:|---|",
    *rows,
    "",
    "Targets: first member ≤ `group.initial.rebalance.delay.ms` + 0.5 s; second member and the "
    "10-member leave ≤ `heartbeat.interval.ms` + 1 s (existing members learn of a rebalance at "
    "their next heartbeat; the broker completes it as soon as every known member has rejoined, "
    "never by waiting out a session timeout). The second member subscribes, and the member of the "
    "10-member group (20 partitions) leaves with `close()` (LeaveGroup), at a random phase of the "
    "existing members' 3 s heartbeat cycle, so a run takes about 0-3 s plus the rejoin.",
    END,
])
text = open(out).read() if os.path.exists(out) else ""
if BEGIN in text and END in text:
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    text = head + section + tail
else:
    text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + section + "\n"
open(out, "w").write(text)
print(f"updated the group section of {out}", file=sys.stderr)
PY
fi
exit $RC
