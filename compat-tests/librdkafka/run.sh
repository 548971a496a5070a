#!/usr/bin/env bash
# Runs librdkafka's own regression test suite (librdkafka 2.12.1, from the rdkafka-sys 4.10.0
# crate) against a real Strand broker.
#
#   run.sh [--full]            every test; writes docs/compatibility.md; exits 0 (reports only)
#   run.sh --ci                the fixed subset in ci-tests.txt; exits non-zero if any fails
#   run.sh --tests 0001,0004   just these test numbers (debugging; no docs written)
# options:
#   -P, --idempotent           pass -P to the test runner (every producer enable.idempotence=true)
#   --timeout SECS             per-test wall-clock limit (default: 240 basic, 120 other categories)
#   --no-build                 use the existing target/release/strand (or $STRAND_BIN) as is
#   --keep                     keep broker data dirs
#
# Each test number runs as its own `test-runner` process (TESTS=NNNN, -Q -E -L, broker mode,
# TEST_KAFKA_VERSION=4.0.0) against a freshly started broker (its own port and data dir), so a
# hang or a broker crash only costs that one test. Logs: compat-tests/.work/librdkafka-runs/<time>/.
# Test categories (what each test needs from the broker) are in tests.tsv, made by classify.py.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MODE=full TESTS_ARG="" IDEMP="" TMOUT="" BUILD=1 KEEP=0
while (($#)); do
  case "$1" in
    --full) MODE=full ;;
    --ci) MODE=ci ;;
    --tests) MODE=tests; TESTS_ARG="${2:?--tests needs a list}"; shift ;;
    --tests=*) MODE=tests; TESTS_ARG="${1#*=}" ;;
    -P|--idempotent) IDEMP="-P" ;;
    --timeout) TMOUT="${2:?}"; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
CMDLINE="compat-tests/librdkafka/run.sh --$MODE${TESTS_ARG:+ $TESTS_ARG}${IDEMP:+ -P}${TMOUT:+ --timeout $TMOUT}"

T0=$(date +%s)
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is required"
command -v timeout >/dev/null || die "timeout (coreutils) is required"

# --- librdkafka source + test-runner (cached in compat-tests/.work) ----------------------
SRC="$("$HERE/prepare.sh" tests | tail -n1)" || die "could not prepare librdkafka (see above)"
[ -x "$SRC/tests/test-runner" ] || die "no test-runner in $SRC/tests"
RDK_VERSION="$(sed -n 's/^#define RD_KAFKA_VERSION *0x\(..\)\(..\)\(..\).*/\1 \2 \3/p' "$SRC/src/rdkafka.h" |
  { read -r a b c; printf '%d.%d.%d' "0x$a" "0x$b" "0x$c"; })"

# --- strand -------------------------------------------------------------------------------
STRAND="${STRAND_BIN:-$REPO/target/release/strand}"
if ((BUILD)) && [ -z "${STRAND_BIN:-}" ]; then
  log "cargo build --release (strand)"
  if ! (cd "$REPO" && cargo build --release -q --bin strand); then
    [ -x "$STRAND" ] || die "cargo build --release failed and there is no $STRAND"
    log "WARNING: cargo build --release failed; using the existing $STRAND"
  fi
fi
[ -x "$STRAND" ] || die "$STRAND not found (build it: cargo build --release)"

# --- what to run --------------------------------------------------------------------------
TSV="$HERE/tests.tsv"
[ -f "$TSV" ] || die "$TSV missing (generate: $HERE/classify.py $SRC > $TSV)"
declare -A CAT REASON SCEN
ORDER=()
while IFS=$'\t' read -r name cat scen reason; do
  [[ "$name" == \#* || -z "$name" ]] && continue
  CAT[$name]=$cat; REASON[$name]=$reason; SCEN[$name]=$scen; ORDER+=("$name")
done <"$TSV"
# Sanity: every test in the source's table is classified.
missing="$(grep -o '_TEST([0-9]\{4\}_[A-Za-z0-9_]*' "$SRC/tests/test.c" | sed 's/_TEST(//' | sort -u |
  while read -r n; do [ -n "${CAT[$n]+x}" ] || echo "$n"; done)"
[ -z "$missing" ] || log "WARNING: not in tests.tsv (re-run classify.py): $missing"

runnable() { case "${CAT[$1]}" in basic|groups|idempotence|admin|cluster) return 0 ;; *) return 1 ;; esac; }

SELECT=()   # test entry names to consider
case "$MODE" in
  full) SELECT=("${ORDER[@]}") ;;
  ci) mapfile -t SELECT < <(grep -v '^\s*#' "$HERE/ci-tests.txt" | awk 'NF{print $1}') ;;
  tests) for n in "${ORDER[@]}"; do [[ ",$TESTS_ARG," == *",${n:0:4},"* ]] && SELECT+=("$n"); done ;;
esac
((${#SELECT[@]})) || die "no tests selected"

RUN_DIR="$REPO/compat-tests/.work/librdkafka-runs/$(date +%Y%m%d-%H%M%S)-$MODE"
mkdir -p "$RUN_DIR"
RESULTS="$RUN_DIR/results.tsv"
echo "# test	category	result	detail" >"$RESULTS"
log "librdkafka $RDK_VERSION, strand $STRAND, logs in $RUN_DIR"

# --- broker lifecycle ---------------------------------------------------------------------
BPID="" BPORT="" BDATA="" BLOG=""
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_broker() {  # $1 scenario, $2 log file
  local autocreate=true
  [ "$1" = noautocreate ] && autocreate=false
  BPORT="$(free_port)"; BDATA="$(mktemp -d "$RUN_DIR/data.XXXX")"; BLOG="$2"
  "$STRAND" serve --listen "127.0.0.1:$BPORT" --data-dir "$BDATA" \
    --set num.partitions=4 --set "auto.create.topics.enable=$autocreate" 2>"$BLOG" >/dev/null &
  BPID=$!
  local i
  for i in $(seq 1 150); do
    if ! kill -0 "$BPID" 2>/dev/null; then BPID=""; return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
stop_broker() {
  [ -n "$BPID" ] || return 0
  if kill -0 "$BPID" 2>/dev/null; then
    kill -TERM "$BPID" 2>/dev/null
    local i
    for i in $(seq 1 100); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$BPID" 2>/dev/null && { log "broker did not stop on SIGTERM in 10s: SIGKILL"; kill -KILL "$BPID" 2>/dev/null; }
  fi
  wait "$BPID" 2>/dev/null
  BPID=""
  ((KEEP)) || rm -rf "$BDATA"
}
trap 'stop_broker' EXIT
trap 'stop_broker; exit 130' INT TERM

broker_tail() {  # last warnings/errors (or lines) of the broker's stderr, one line
  local f="$1" t
  t="$(grep -aiE 'panic|error|warn' "$f" | tail -n 5)"
  [ -n "$t" ] || t="$(tail -n 3 "$f")"
  printf '%s' "$t" | sed 's/\x1b\[[0-9;]*m//g' | tr '\n\t' '  ' | cut -c1-500
}

# --- run ------------------------------------------------------------------------------------
# Group runnable entries by (test number, scenario): one test-runner process each.
declare -A GROUP_NAMES
GROUP_ORDER=()
for n in "${SELECT[@]}"; do
  [ -n "${CAT[$n]+x}" ] || { log "unknown test '$n' (not in tests.tsv)"; continue; }
  if ! runnable "$n"; then
    printf '%s\t%s\tskip\t%s\n' "$n" "${CAT[$n]}" "${REASON[$n]}" >>"$RESULTS"
    continue
  fi
  sc="${SCEN[$n]%%,*}"
  key="${n:0:4} $sc"
  [ -n "${GROUP_NAMES[$key]+x}" ] || GROUP_ORDER+=("$key")
  GROUP_NAMES[$key]="${GROUP_NAMES[$key]:-} $n"
done

FAILS=0 PASSES=0
for key in "${GROUP_ORDER[@]}"; do
  read -r num sc <<<"$key"
  read -ra names <<<"${GROUP_NAMES[$key]}"
  tm="$TMOUT"
  if [ -z "$tm" ]; then
    tm=120
    for n in "${names[@]}"; do [ "${CAT[$n]}" = basic ] && tm=240; done
  fi
  tlog="$RUN_DIR/test-$num-$sc.log" blog="$RUN_DIR/broker-$num-$sc.log"
  if ! start_broker "$sc" "$blog"; then
    d="broker failed to start: $(broker_tail "$blog")"
    for n in "${names[@]}"; do printf '%s\t%s\tfail\t%s\n' "$n" "${CAT[$n]}" "$d" >>"$RESULTS"; done
    FAILS=$((FAILS + ${#names[@]})); stop_broker; continue
  fi
  conf="$RUN_DIR/test-$sc.conf"
  printf 'metadata.broker.list=127.0.0.1:%s\n' "$BPORT" >"$conf"
  printf 'metadata.broker.list=127.0.0.1:%s\n' "$BPORT" >"$SRC/tests/test.conf"  # for manual reruns
  t1=$(date +%s)
  { (cd "$SRC/tests" && exec env TESTS="$num" TEST_KAFKA_VERSION=4.0.0 RDKAFKA_TEST_CONF="$conf" \
    LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    timeout -k 10 "$tm" ./test-runner -Q -E -L -s "$sc" $IDEMP) >"$tlog" 2>&1 </dev/null; } 2>/dev/null
  rc=$?
  dt=$(( $(date +%s) - t1 ))
  alive=1; kill -0 "$BPID" 2>/dev/null || alive=0
  while IFS=$'\t' read -r n st d; do
    if ((!alive)); then
      st=fail; d="broker died during the test: $(broker_tail "$blog") | test: $d"
    fi
    if [ "$st" = fail ] && [ "${CAT[$n]}" != basic ]; then d="expected (${REASON[$n]}): $d"; fi
    if [ "$st" = fail ] && [ "${CAT[$n]}" = basic ] && ((alive)); then d="$d | broker stderr: $(broker_tail "$blog")"; fi
    printf '%s\t%s\t%s\t%s\n' "$n" "${CAT[$n]}" "$st" "$d" >>"$RESULTS"
    case "$st" in fail) FAILS=$((FAILS + 1)) ;; pass) PASSES=$((PASSES + 1)) ;; esac
    log "$(printf '%-45s %-12s %-4s %4ss  %s' "$n" "${CAT[$n]}" "$st" "$dt" "${d:0:150}")"
  done < <(python3 "$HERE/report.py" parse "$tlog" "$rc" "$tm" "${names[@]}")
  stop_broker
done

# Keep results in tests.tsv order.
{ head -n1 "$RESULTS"; awk -F'\t' 'NR==FNR{if($1!~/^#/)o[$1]=NR;next} FNR>1{print o[$1]"\t"$0}' "$TSV" "$RESULTS" |
  sort -n -k1,1 | cut -f2-; } >"$RESULTS.sorted" && mv "$RESULTS.sorted" "$RESULTS"

DUR=$(( $(date +%s) - T0 ))
log "done in ${DUR}s: $(awk -F'\t' 'NR>1{c[$3]++} END{printf "%d pass, %d fail, %d skip", c["pass"], c["fail"], c["skip"]}' "$RESULTS")"
awk -F'\t' 'NR>1 && $3=="fail" && $2=="basic"{print "  FAIL (basic): " $1 ": " $4}' "$RESULTS" >&2

if [ "$MODE" = full ]; then
  python3 "$HERE/report.py" render "$RESULTS" "$REPO/docs/compatibility.md" "$RDK_VERSION" "$CMDLINE" "$DUR" &&
    log "wrote docs/compatibility.md"
  exit 0
fi
if [ "$MODE" = ci ]; then
  nf=$(awk -F'\t' 'NR>1 && $3!="pass"' "$RESULTS" | wc -l)
  if ((nf)); then log "CI subset: $nf test(s) did not pass"; exit 1; fi
  log "CI subset: all ${PASSES} passed"
fi
exit 0
