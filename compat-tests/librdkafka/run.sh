#!/usr/bin/env bash
# Runs librdkafka's own regression test suite (librdkafka 2.12.1, from the rdkafka-sys 4.10.0
# crate) against a real Strand broker.
#
#   run.sh [--full]            every test in one mode; records results/<mode>.tsv and re-renders
#                              docs/compatibility.md from every results/*.tsv; exits 0 (reports only)
#   run.sh --full --all-modes  the same for the modes classic, idempotent and consumer, in sequence
#   run.sh --ci                the fixed subset in ci-tests.txt (each entry in its own mode);
#                              exits non-zero if any does not pass
#   run.sh --tests 0001,0004   just these test numbers (debugging; nothing recorded)
# mode options (default: "classic"):
#   -P, --idempotent           pass -P to the test runner (every producer enable.idempotence=true)
#                              -> mode "idempotent"
#   --consumer-protocol        TEST_CONSUMER_GROUP_PROTOCOL=consumer: the test framework's consumers
#                              use group.protocol=consumer (KIP-848) -> mode "consumer"
#   --cluster N                each test against its own cluster: an etcd (Debian's etcd-server)
#                              and N brokers (node ids 1..N), all of them in metadata.broker.list
#                              -> the mode gets "+clusterN" (e.g. "classic+cluster3")
# other options:
#   --jobs N                   run N tests at a time, each against its own broker (default: 2 with
#                              --ci, 1 otherwise); with N > 1 the longest tests (per results/) go first
#   --timeout SECS             per-test wall-clock limit (default: 120 cluster, 240 other categories)
#   --no-quick                 run without -Q (quick mode skips every non-quick subtest; debugging)
#   --no-build                 use the existing target/release/strand (or $STRAND_BIN) as is
#   --keep                     keep broker data dirs
#
# Each test number runs as its own `test-runner` process (TESTS=NNNN, -Q -E -L, broker mode,
# TEST_KAFKA_VERSION=4.0.0, TEST_NO_ACLS=1) against a freshly started broker (its own port and
# data dir), so a hang or a broker crash only costs that one test.
# Logs: compat-tests/.work/librdkafka-runs/<time>-<what>-<mode>/.
# Test categories (what each test needs from the broker) are in tests.tsv, made by classify.py.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MODE=full TESTS_ARG="" IDEMP=0 CPROTO=0 TMOUT="" BUILD=1 KEEP=0 QUICK=1 ALL_MODES=0 JOBS="" CLUSTER=0
ARGS=("$@")
while (($#)); do
  case "$1" in
    --full) MODE=full ;;
    --ci) MODE=ci ;;
    --tests) MODE=tests; TESTS_ARG="${2:?--tests needs a list}"; shift ;;
    --tests=*) MODE=tests; TESTS_ARG="${1#*=}" ;;
    -P|--idempotent) IDEMP=1 ;;
    --consumer-protocol) CPROTO=1 ;;
    --all-modes) ALL_MODES=1 ;;
    --timeout) TMOUT="${2:?}"; shift ;;
    --jobs) JOBS="${2:?}"; shift ;;
    --jobs=*) JOBS="${1#*=}" ;;
    --cluster) CLUSTER="${2:?--cluster needs a broker count}"; shift ;;
    --no-quick) QUICK=0 ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# Run mode: how the test runner is configured (see mode_flags). One per --full record.
RMODE=classic
((IDEMP && CPROTO)) && RMODE=idempotent+consumer
((IDEMP && !CPROTO)) && RMODE=idempotent
((!IDEMP && CPROTO)) && RMODE=consumer
[[ "$CLUSTER" =~ ^[0-9]+$ ]] || { echo "run.sh: --cluster needs a number" >&2; exit 2; }
((CLUSTER > 0)) && RMODE+="+cluster$CLUSTER"
mode_opts() {  # $1 mode -> run.sh options
  case "$1" in classic) ;; idempotent) echo "-P" ;; consumer) echo "--consumer-protocol" ;;
    idempotent+consumer) echo "-P --consumer-protocol" ;; *) return 1 ;; esac
}

[ -n "$JOBS" ] || { JOBS=1; [ "$MODE" = ci ] && JOBS=2; }
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --jobs needs a positive number" >&2; exit 2; }
CMDLINE="compat-tests/librdkafka/run.sh --$MODE${TESTS_ARG:+ $TESTS_ARG}$( ((IDEMP)) && echo ' -P')$( ((CPROTO)) && echo ' --consumer-protocol')${TMOUT:+ --timeout $TMOUT}$( ((QUICK)) || echo ' --no-quick')$( ((JOBS > 1)) && echo " --jobs $JOBS")$( ((CLUSTER)) && echo " --cluster $CLUSTER")"

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
# What the binary was built from (recorded by --full). With --no-build it may be older than HEAD.
if [ -z "${STRAND_REV:-}" ]; then
  STRAND_REV="$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
  [ -n "$(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] && STRAND_REV+="+local changes"
  ((BUILD)) && [ -z "${STRAND_BIN:-}" ] || STRAND_REV+=" (--no-build: binary of $(date -u -r "$STRAND" '+%Y-%m-%d %H:%M UTC'))"
fi
# Every test of a run uses a copy of the binary: another build may replace target/release/strand
# while the suite runs (this is a shared machine).
snapshot_strand() {  # $1 destination
  cp "$STRAND" "$1" || die "could not copy $STRAND to $1"
  STRAND="$1"
}

if ((ALL_MODES)); then
  [ "$MODE" = full ] || die "--all-modes goes with --full"
  rest=()
  for a in "${ARGS[@]}"; do case "$a" in --all-modes|-P|--idempotent|--consumer-protocol|--no-build) ;; *) rest+=("$a") ;; esac; done
  mkdir -p "$REPO/compat-tests/.work"
  snap="$REPO/compat-tests/.work/strand-all-modes.$$"
  snapshot_strand "$snap"
  trap 'rm -f "$snap"' EXIT
  for m in classic idempotent consumer; do
    # shellcheck disable=SC2046
    STRAND_BIN="$snap" STRAND_REV="$STRAND_REV" STRAND_SNAPSHOT=1 "$0" "${rest[@]}" $(mode_opts "$m") || exit $?
  done
  exit 0
fi

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
must_pass() { case "${CAT[$1]}" in basic|groups|idempotence|admin) return 0 ;; *) return 1 ;; esac; }

SELECT=()   # "test-entry-name mode quick(1|0)" to consider
case "$MODE" in
  full) for n in "${ORDER[@]}"; do SELECT+=("$n $RMODE $QUICK"); done ;;
  ci)  # ci-tests.txt: "name [mode] [noquick] [cluster|single]" (mode: classic, idempotent or consumer; default classic)
    while read -r n rest; do
      m=classic q=$QUICK c=0 one=0
      for w in $rest; do
        if [ "$w" = noquick ]; then q=0
        elif [ "$w" = cluster ]; then c=1
        elif [ "$w" = single ]; then one=1
        elif mode_opts "$w" >/dev/null; then m="$w"
        else die "ci-tests.txt: unknown word '$w' for $n (a mode, noquick, cluster or single)"; fi
      done
      # "cluster" entries need replicas: only with --cluster; "single" ones only without.
      if ((c && !CLUSTER)) || ((one && CLUSTER)); then continue; fi
      SELECT+=("$n $m $q")
    done < <(grep -v '^\s*#' "$HERE/ci-tests.txt" | sed 's/#.*//' | awk 'NF') ;;
  tests) for n in "${ORDER[@]}"; do [[ ",$TESTS_ARG," == *",${n:0:4},"* ]] && SELECT+=("$n $RMODE $QUICK"); done ;;
esac
((${#SELECT[@]})) || die "no tests selected"

RUN_DIR="$REPO/compat-tests/.work/librdkafka-runs/$(date +%Y%m%d-%H%M%S)-$MODE$([ "$MODE" = ci ] || echo "-$RMODE")"
mkdir -p "$RUN_DIR"
RESULTS="$RUN_DIR/results.tsv"
echo "# test	mode	category	result	detail" >"$RESULTS"
if [ -z "${STRAND_SNAPSHOT:-}" ]; then
  snapshot_strand "$RUN_DIR/strand"
  trap 'rm -f "$RUN_DIR/strand"' EXIT
fi
log "librdkafka $RDK_VERSION, strand $STRAND, logs in $RUN_DIR"

# --- broker lifecycle ---------------------------------------------------------------------
BPID="" BPORT="" BDATA="" BLOG="" BPORTS=""  # BPID: every process of the broker (or cluster)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listening() {  # $1 pid, $2 port: 0 once it listens, 1 if it exited or after 15 s
  local i
  for i in $(seq 1 150); do
    if ! kill -0 "$1" 2>/dev/null; then wait "$1" 2>/dev/null; return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
start_one() {  # $1 data dir, $2 log, rest: extra settings -> BPORT, appends to BPID
  local dir="$1" logf="$2" try pid
  shift 2
  for try in 1 2 3; do  # a broker that exits at once may have lost its port to a parallel one
    BPORT="$(free_port)"
    "$STRAND" serve --listen "127.0.0.1:$BPORT" --data-dir "$dir" "$@" 2>>"$logf" >/dev/null &
    pid=$!
    if wait_listening "$pid" "$BPORT"; then BPID+="$pid "; return 0; fi
    kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1; }
  done
  return 1
}
start_broker() {  # $1 scenario, $2 log file
  local autocreate=true i ep pp settings
  [ "$1" = noautocreate ] && autocreate=false
  BDATA="$(mktemp -d "$RUN_DIR/data.XXXX")"; BLOG="$2"; BPID="" BPORTS=""
  settings=(--set num.partitions=4 --set "auto.create.topics.enable=$autocreate")
  if ((CLUSTER == 0)); then
    start_one "$BDATA" "$BLOG" "${settings[@]}" || return 1
    BPORTS="$BPORT"
    return 0
  fi
  ep="$(free_port)" pp="$(free_port)"
  etcd --name e0 --data-dir "$BDATA/etcd" --listen-client-urls "http://127.0.0.1:$ep" \
    --advertise-client-urls "http://127.0.0.1:$ep" --listen-peer-urls "http://127.0.0.1:$pp" \
    --initial-advertise-peer-urls "http://127.0.0.1:$pp" --initial-cluster "e0=http://127.0.0.1:$pp" \
    >"$BLOG.etcd" 2>&1 &
  BPID="$! "
  wait_listening "${BPID% }" "$ep" || return 1
  for i in $(seq 1 "$CLUSTER"); do
    # One rack per broker, named as 0101_fetch_from_follower expects (KIP-392).
    start_one "$BDATA/b$i" "$BLOG" "${settings[@]}" --set "node.id=$i" \
      --set "etcd.endpoints=127.0.0.1:$ep" --set "broker.rack=RACK$i" \
      --set "replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector" \
      || return 1
    BPORTS+="${BPORTS:+ }$BPORT"
  done
  # A broker listens before it registers, and learns of the others through the etcd watch:
  # wait until each one names all of them (a test's first CreateTopics with replication factor
  # 3 would otherwise find too few brokers registered, as Kafka's would just after start).
  local p n
  for p in $BPORTS; do
    for i in $(seq 1 150); do
      n="$("$STRAND" cluster status -b "127.0.0.1:$p" --json 2>/dev/null | grep -c '"id":')" || true
      ((n >= CLUSTER)) && break
      sleep 0.1
    done
    ((n >= CLUSTER)) || return 1
  done
  return 0
}
brokers_alive() { local p; for p in $BPID; do kill -0 "$p" 2>/dev/null || return 1; done; }
stop_broker() {
  [ -n "$BPID" ] || return 0
  local p i pids
  read -ra pids <<<"$BPID"
  # brokers first (newest first), etcd last
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    p="${pids[$i]}"
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null
      local j
      for j in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$p" 2>/dev/null && { log "broker did not stop on SIGTERM in 10s: SIGKILL"; kill -KILL "$p" 2>/dev/null; }
    fi
    wait "$p" 2>/dev/null
  done
  BPID=""
  ((KEEP)) || rm -rf "$BDATA"
}
# Each test runs in a subshell (run_group) that owns its broker; the main shell stops them.
trap 'kill -TERM $(jobs -rp) 2>/dev/null; wait; exit 130' INT TERM

broker_tail() {  # last warnings/errors (or lines) of the broker's stderr, one line
  local f="$1" t
  t="$(grep -aiE 'panic|error|warn' "$f" | tail -n 5)"
  [ -n "$t" ] || t="$(tail -n 3 "$f")"
  printf '%s' "$t" | sed 's/\x1b\[[0-9;]*m//g' | tr '\n\t' '  ' | cut -c1-500
}

# --- run ------------------------------------------------------------------------------------
# Group runnable entries by (test number, scenario, mode): one test-runner process each.
declare -A GROUP_NAMES
GROUP_ORDER=()
for e in "${SELECT[@]}"; do
  read -r n m q <<<"$e"
  [ -n "${CAT[$n]+x}" ] || { log "unknown test '$n' (not in tests.tsv)"; continue; }
  if ! runnable "$n"; then
    printf '%s\t%s\t%s\tskip\t%s\n' "$n" "$m" "${CAT[$n]}" "${REASON[$n]}" >>"$RESULTS"
    continue
  fi
  sc="${SCEN[$n]%%,*}"
  key="${n:0:4} $sc $m $q"
  [ -n "${GROUP_NAMES[$key]+x}" ] || GROUP_ORDER+=("$key")
  GROUP_NAMES[$key]="${GROUP_NAMES[$key]:-} $n"
done

# Expected duration of each group (from the records of earlier --full runs): with --jobs > 1 the
# longest start first, so that they do not end up last.
declare -A EXPECT
if ((JOBS > 1)); then
  for rec in "$HERE"/results/*.tsv; do
    [ -f "$rec" ] || continue
    rm_="$(sed -n 's/^# mode: //p' "$rec")"
    while IFS=$'\t' read -r n _ st d; do
      [[ "$n" == \#* ]] && continue
      [[ "$d" =~ ^([0-9]+)(\.[0-9]+)?s$ ]] && EXPECT["${n:0:4} $rm_"]=$(( ${EXPECT["${n:0:4} $rm_"]:-0} + ${BASH_REMATCH[1]} ))
    done <"$rec"
  done
  mapfile -t GROUP_ORDER < <(for key in "${GROUP_ORDER[@]}"; do
    read -r num sc m q <<<"$key"; printf '%s\t%s\n' "${EXPECT["$num $m"]:-$( ((q)) && echo 30 || echo 90)}" "$key"; done |
    sort -s -t$'\t' -k1,1nr | cut -f2)
fi

run_group() {  # $1 "num scenario mode", $2 file for the result lines; run in a subshell
  local num sc m q names n tm rflags renv tag tlog blog conf t1 rc dt alive st d TPID=""
  trap 'stop_broker' EXIT
  trap '[ -n "$TPID" ] && kill -TERM "$TPID" 2>/dev/null; stop_broker; exit 130' INT TERM
  read -r num sc m q <<<"$1"
  read -ra names <<<"${GROUP_NAMES[$1]}"
  tm="$TMOUT"
  if [ -z "$tm" ]; then
    tm=120
    for n in "${names[@]}"; do must_pass "$n" && tm=240; done
  fi
  # test-runner flags and environment of mode $m
  rflags=(-E -L -s "$sc") renv=(TEST_NO_ACLS=1)
  ((q)) && rflags+=(-Q)
  [[ "$m" == idempotent* ]] && rflags+=(-P)
  [[ "$m" == *consumer ]] && renv+=(TEST_CONSUMER_GROUP_PROTOCOL=consumer)
  tag="$num-$sc$([ "$MODE" = ci ] && echo "-$m")$( ((q)) || echo "-noquick")"
  ((q)) || m+="/noquick"  # as shown in results and logs
  tlog="$RUN_DIR/test-$tag.log" blog="$RUN_DIR/broker-$tag.log"
  if ! start_broker "$sc" "$blog"; then
    d="broker failed to start: $(broker_tail "$blog")"
    for n in "${names[@]}"; do printf '%s\t%s\t%s\tfail\t%s\n' "$n" "$m" "${CAT[$n]}" "$d" >>"$2"; done
    log "$(printf '%-40s %-10s %s' "${names[*]}" "$m" "$d")"
    return
  fi
  conf="$RUN_DIR/test-$tag.conf"
  local list
  list="$(for p in $BPORTS; do printf '127.0.0.1:%s,' "$p"; done)"; list="${list%,}"
  printf 'metadata.broker.list=%s\n' "$list" >"$conf"
  ((JOBS > 1)) || printf 'metadata.broker.list=%s\n' "$list" >"$SRC/tests/test.conf"  # for manual reruns
  t1=$(date +%s)
  # in the background and waited for, so that a TERM/INT trap runs at once
  (cd "$SRC/tests" && exec env TESTS="$num" TEST_KAFKA_VERSION=4.0.0 RDKAFKA_TEST_CONF="$conf" "${renv[@]}" \
    LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    timeout -k 10 "$tm" ./test-runner "${rflags[@]}") >"$tlog" 2>&1 </dev/null &
  TPID=$!
  wait "$TPID" 2>/dev/null
  rc=$?
  TPID=""
  dt=$(( $(date +%s) - t1 ))
  alive=1; brokers_alive || alive=0
  while IFS=$'\t' read -r n st d; do
    if ((!alive)); then
      st=fail; d="broker died during the test: $(broker_tail "$blog") | test: $d"
    fi
    if [ "$st" = fail ] && ! must_pass "$n"; then d="expected (${REASON[$n]}): $d"; fi
    if [ "$st" = fail ] && must_pass "$n" && ((alive)); then d="$d | broker stderr: $(broker_tail "$blog")"; fi
    if [ "$st" = fail ] && must_pass "$n"; then  # for the summary: what the test said last
      { echo "--- $n ($m): last lines of $tlog"; tail -n 30 "$tlog" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-300
        echo "--- broker: last lines of $blog"; tail -n 15 "$blog" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-300
      } >"$RUN_DIR/tail.$tag.$n"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$m" "${CAT[$n]}" "$st" "$d" >>"$2"
    log "$(printf '%-40s %-10s %-11s %-4s %4ss  %s' "$n" "$m" "${CAT[$n]}" "$st" "$dt" "${d:0:150}")"
  done < <(python3 "$HERE/report.py" parse "$tlog" "$rc" "$tm" "${names[@]}")
  stop_broker
}

((JOBS > 1)) && log "running ${#GROUP_ORDER[@]} test processes, $JOBS at a time"
gi=0
for key in "${GROUP_ORDER[@]}"; do
  gi=$((gi + 1))
  while (($(jobs -rp | wc -l) >= JOBS)); do wait -n; done
  (run_group "$key" "$RUN_DIR/res.$gi") &  # in the background even for --jobs 1: traps run at once
done
wait
for i in $(seq 1 "$gi"); do
  f="$RUN_DIR/res.$i"; [ -f "$f" ] && cat "$f" >>"$RESULTS" && rm -f "$f"
done
PASSES=$(awk -F'\t' 'NR>1 && $4=="pass"' "$RESULTS" | wc -l)

# Keep results in tests.tsv order (stable: modes keep their run order).
{ head -n1 "$RESULTS"; awk -F'\t' 'NR==FNR{if($1!~/^#/)o[$1]=NR;next} FNR>1{print o[$1]"\t"$0}' "$TSV" "$RESULTS" |
  sort -s -n -k1,1 | cut -f2-; } >"$RESULTS.sorted" && mv "$RESULTS.sorted" "$RESULTS"

DUR=$(( $(date +%s) - T0 ))
log "done in ${DUR}s: $(awk -F'\t' 'NR>1{c[$4]++} END{printf "%d pass, %d fail, %d skip", c["pass"], c["fail"], c["skip"]}' "$RESULTS")"
awk -F'\t' 'NR>1 && $4=="fail" && $3!="cluster"{print "  FAIL (" $2 ", " $3 "): " $1 ": " $5}' "$RESULTS" >&2

if [ "$MODE" = full ]; then
  # The record of this mode (committed), then the page from the records of every mode.
  REC_DIR="$HERE/results" REC="$HERE/results/$RMODE.tsv"
  mkdir -p "$REC_DIR"
  {
    printf '# mode: %s\n' "$RMODE"
    printf '# date: %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf '# command: %s\n' "$CMDLINE"
    printf '# wall time: %s\n' "$DUR"
    printf '# strand: %s\n' "$STRAND_REV"
    printf '# librdkafka: %s\n' "$RDK_VERSION"
    awk -F'\t' -v OFS='\t' 'NR>1{print $1, $3, $4, $5}' "$RESULTS"
  } >"$REC.tmp" && mv "$REC.tmp" "$REC"
  log "recorded $REC"
  python3 "$HERE/report.py" render "$TSV" "$HERE/ci-tests.txt" "$REPO/docs/compatibility.md" "$REC_DIR"/*.tsv &&
    log "wrote docs/compatibility.md"
  exit 0
fi
if [ "$MODE" = ci ]; then
  for f in "$RUN_DIR"/tail.*; do [ -f "$f" ] && cat "$f" >&2; done
  awk -F'\t' 'NR>1 && $4!="pass"{print "  NOT PASSED (" $2 "): " $1 ": " $4 " " $5}' "$RESULTS" >&2
  nf=$(awk -F'\t' 'NR>1 && $4!="pass"' "$RESULTS" | wc -l)
  if ((nf)); then log "CI subset: $nf test(s) did not pass (in ${DUR}s)"; exit 1; fi
  log "CI subset: all ${PASSES} passed in ${DUR}s"
fi
exit 0
