#!/usr/bin/env bash
# SudoMode benchmark (SPEC §14): the one documented command.
#
#   bench/run.sh                      # full run, writes BENCHMARKS.md
#   BENCH_SECONDS=3 bench/run.sh      # short trial
#
# Everything runs on loopback, is bounded in time and count, and stops by
# itself. Side by side in one run: direct to a stand-in HTTPS upstream,
# through SudoMode (audit.durability strict, then batched), and through
# mitmdump, with the same load generator (crates/bench, `loadgen`), and the
# 64-connection figure again with an independent one (oha). Then the audit
# store alone: `storefill` fills a store with 1M requests (bytes per request,
# filtered pages, verify/export throughput, restart).
#
# Environment knobs (defaults in brackets):
#   BENCH_SECONDS [10]      measured seconds per load run (after BENCH_WARMUP [1])
#   BENCH_HOSTS [50]        distinct never-seen hosts for the first-request test
#   BENCH_HOLD_COUNT [10000] requests held at once for the hold/approve test (lowered, with a
#                           warning, to what the open-files limit lets SudoMode serve)
#   BENCH_OUT [BENCHMARKS.md at the repo root]  where the report goes
#   BENCH_NOTE []           a line of text put at the top of the report
#   BENCH_SKIP_BUILD [0]    1: reuse target/release binaries as they are
#   BENCH_SKIP_MITM [0]     1: no mitmdump comparison (else mitmdump from PATH, or mitmproxy
#                           11.0.2 installed into target/bench-venv when missing)
#   BENCH_SKIP_NULL [0]     1: no null-proxy runs (the ceiling of any intercepting proxy here)
#   BENCH_SKIP_HOLD [0]     1: no 10,000-held test
#   BENCH_SKIP_DECIDE [0]   1: no `cargo bench -p sudomode-policy --bench decide`
#   BENCH_ROTATION_ROUNDS [3]   rounds of the 64-connection load in rotation (0: none)
#   BENCH_ROTATION_SECONDS [5]  seconds per subject and generator in each round
#   BENCH_SKIP_OHA [0]      1: no oha runs (else oha from PATH or ~/.cargo/bin; installed with
#                           `cargo install oha --locked` when missing)
#   BENCH_FILL_REQUESTS [1000000]  requests for `storefill`; 0 skips it
#   BENCH_KEEP [0]          1: keep the temporary directory (configs, logs, raw JSON)
#   BENCH_BASELINE_BIN []   a `sudomode` binary built from the baseline (e.g. main): it gets the same
#                           strict and batched runs (and the held test) in the same run, reported
#                           side by side as "baseline"
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
SECS=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP:-1}
HOSTS=${BENCH_HOSTS:-50}
HOLD_COUNT=${BENCH_HOLD_COUNT:-10000}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
# The command as given (BENCH_* settings except the free-text note), for the report.
CMDLINE=
while IFS='=' read -r k v; do
  case $k in BENCH_NOTE | BENCH_OUT | BENCH_KEEP) continue ;; esac
  CMDLINE+="$k=$(printf '%q' "$v") "
done < <(env | grep -E '^BENCH_[A-Z_]+=' | sort)
CMDLINE+="bench/run.sh"

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# 10,000 held connections need 10,000 fds in the proxy, the same in the
# load generator, and more for the upstream side.
want_fds=65536
if ! ulimit -n "$want_fds" 2>/dev/null; then
  hard=$(ulimit -Hn)
  ulimit -n "$hard" 2>/dev/null || true
fi
log "open files limit: $(ulimit -n)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((HOLD_COUNT + 2000)) ]; then
  log "WARNING: open files limit $(ulimit -n) is low for $HOLD_COUNT held connections"
fi
# SudoMode serves at most three quarters of (open files - 256) agent
# connections (a quarter stays for upstream sockets; `proxy::fd_budget`): more
# agents than that would wait in the listen queue until the test times out.
if [ "$(ulimit -n)" != unlimited ]; then
  usable=$(($(ulimit -n) - 256))
  fit=$(( (usable - usable / 4) / 100 * 100 ))
  if [ "$fit" -lt "$HOLD_COUNT" ]; then
    log "WARNING: with open files limit $(ulimit -n) SudoMode serves fewer than $HOLD_COUNT agent connections: holding $fit"
    HOLD_COUNT=$fit
  fi
fi

TMP=$(mktemp -d /tmp/sudomode-bench.XXXXXX)
RES=$TMP/results
mkdir -p "$RES"
# Processes this script started and has not stopped yet (only these are killed).
UP_PID=
SM_PID=
MITM_PID=
ROT_PIDS=()
cleanup() {
  local p
  for p in $UP_PID $SM_PID $MITM_PID $NULL_PID ${ROT_PIDS[@]+"${ROT_PIDS[@]}"}; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building release binaries (cargo build --release -p sudomode -p sudomode-bench)"
  cargo build --release -p sudomode -p sudomode-bench
fi
for b in sudomode loadgen stand-in storefill null-proxy; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (run without BENCH_SKIP_BUILD)" >&2; exit 2; }
done

# ---------------------------------------------------------------- machine
{
  echo "{"
  echo "\"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
  echo "\"nproc\": $(nproc),"
  echo "\"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/"/\\"/g')\","
  echo "\"mem_total_kib\": $(awk '/MemTotal/ {print $2}' /proc/meminfo),"
  echo "\"kernel\": \"$(uname -r)\","
  echo "\"rustc\": \"$(rustc -V 2>/dev/null || echo unknown)\","
  echo "\"commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')\","
  echo "\"nofile\": $(ulimit -n),"
  echo "\"loadavg_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\","
  echo "\"seconds\": $SECS, \"warmup\": $WARMUP, \"hosts\": $HOSTS, \"hold_count\": $HOLD_COUNT,"
  echo "\"command\": \"$CMDLINE\""
  echo "}"
} >"$RES/machine.json"

# --------------------------------------------------------------- stand-in
"$BIN/stand-in" --ca-out "$TMP/standin-ca.pem" --max-seconds 7200 >"$TMP/standin.out" 2>"$TMP/standin.err" &
UP_PID=$!
UP_PORT=$(wait_line "$TMP/standin.out" '^port: ' 20 | awk '{print $2}') || { cat "$TMP/standin.err" >&2; exit 1; }
log "stand-in upstream on 127.0.0.1:$UP_PORT"
UP_CA=$TMP/standin-ca.pem

LOAD_TIMEOUT=$(awk -v s="$SECS" -v w="$WARMUP" 'BEGIN {printf "%d", s + w + 60}')

# loadgen run, bounded; NAME then loadgen args.
lg() {
  local name=$1
  shift
  log "  $name"
  if ! timeout "$LOAD_TIMEOUT" "$BIN/loadgen" "$@" >"$RES/$name.json" 2>"$RES/$name.err"; then
    log "  $name FAILED: $(tail -n 3 "$RES/$name.err" | tr '\n' ' ')"
    failed_json "$RES/$name.err" "$RES/$name.json"
  fi
}

# The three load shapes, against one route (extra loadgen args in "$@"). With
# SHAPE_PID set, the CPU that process spends in the 64-connection run (warm-up
# included) goes to PREFIX.h1_c64.cpu.json.
shapes() { # prefix args...
  local p=$1
  shift
  lg "$p.h1_c1" run --http 1 --connections 1 --duration "$SECS" --warmup "$WARMUP" --label "$p h1 c1" "$@"
  local t0 w0
  [ -n "${SHAPE_PID:-}" ] && t0=$(cpu_ticks "$SHAPE_PID") && w0=$(date +%s.%N)
  lg "$p.h1_c64" run --http 1 --connections 64 --duration "$SECS" --warmup "$WARMUP" --label "$p h1 c64" "$@"
  if [ -n "${SHAPE_PID:-}" ]; then
    awk -v a="$t0" -v b="$(cpu_ticks "$SHAPE_PID")" -v hz="$(getconf CLK_TCK)" -v w0="$w0" -v w1="$(date +%s.%N)" \
      'BEGIN {printf "{\"cpu_s\": %.2f, \"wall_s\": %.2f}\n", (b - a) / hz, w1 - w0}' >"$RES/$p.h1_c64.cpu.json"
  fi
  lg "$p.h2_c1s64" run --http 2 --connections 1 --streams 64 --duration "$SECS" --warmup "$WARMUP" --label "$p h2 1x64" "$@"
}

# ------------------------------------------------------------------- oha
OHA=
if [ "${BENCH_SKIP_OHA:-0}" != 1 ]; then
  OHA=$(command -v oha || true)
  [ -z "$OHA" ] && [ -x "$HOME/.cargo/bin/oha" ] && OHA=$HOME/.cargo/bin/oha
  if [ -z "$OHA" ]; then
    log "oha missing: cargo install oha --locked"
    cargo install oha --locked >&2 || log "installing oha failed"
    [ -x "$HOME/.cargo/bin/oha" ] && OHA=$HOME/.cargo/bin/oha
  fi
fi
# The peers' versions go in the report: the mitmdump ratio moves with mitmproxy's own speed.
[ -n "$OHA" ] && "$OHA" --version 2>/dev/null | head -n1 | tr -d '\n' | json_string >"$RES/oha_version.json" || true

# oha, 64 connections, HTTP/1.1, for SECS (RUN_SECS if set) after a warm-up run; NAME then oha args.
# --no-pre-lookup: oha resolves the URL's host at start even when it goes
# through a proxy (-x); bench.local resolves only inside SudoMode.
oha_run() {
  local name=$1
  shift
  [ -n "$OHA" ] || return 0
  log "  $name (oha)"
  timeout "$LOAD_TIMEOUT" "$OHA" --no-tui --no-pre-lookup -z "${WARMUP}s" -c 64 --http-version 1.1 "$@" >/dev/null 2>&1 || true
  if ! timeout "$LOAD_TIMEOUT" "$OHA" --no-tui --no-pre-lookup --output-format json -z "${RUN_SECS:-$SECS}s" -c 64 --http-version 1.1 "$@" \
    >"$RES/$name.oha.json" 2>"$RES/$name.oha.err"; then
    log "  $name (oha) FAILED: $(tail -n 3 "$RES/$name.oha.err" | tr '\n' ' ')"
    failed_json "$RES/$name.oha.err" "$RES/$name.oha.json"
  fi
}

# ------------------------------------------------------------------ fsync
# fsync latency depends on what else the disk is doing, so it is measured at
# the start and again right before the strict 1-connection run (the baseline
# of the "added latency" target).
log "fsync on the store's disk ($TMP)"
"$BIN/loadgen" fsync --dir "$TMP" --count 300 >"$RES/fsync_start.json"

# ----------------------------------------------------------------- direct
log "direct to the stand-in"
shapes direct --url https://bench.local/ --connect "127.0.0.1:$UP_PORT" --ca "$UP_CA"
lg direct.first first --url https://bench.local/ --connect "127.0.0.1:$UP_PORT" --ca "$UP_CA" --hosts "$HOSTS" --label direct
oha_run direct --insecure "https://127.0.0.1:$UP_PORT/"

# ------------------------------------------------------------- null proxy
# The ceiling of any intercepting proxy on this stack and machine: null-proxy
# (crates/bench) answers CONNECT, terminates TLS and forwards as SudoMode does,
# and does nothing else (no policy, no audit).
NULL_PID=
if [ "${BENCH_SKIP_NULL:-0}" != 1 ]; then
  "$BIN/null-proxy" --ca-out "$TMP/null-ca.pem" --upstream-ca "$UP_CA" \
    --resolve "bench.local:443=127.0.0.1:$UP_PORT" --max-seconds 3600 >"$TMP/null.out" 2>"$TMP/null.err" &
  NULL_PID=$!
  if NULL_PROXY=$(wait_line "$TMP/null.out" '^proxy: ' 20 | awk '{print $2}'); then
    log "through null-proxy $NULL_PROXY (no policy, no audit)"
    SHAPE_PID=$NULL_PID shapes null --url https://bench.local/ --proxy "$NULL_PROXY" --ca "$TMP/null-ca.pem"
    oha_run null --insecure -x "$NULL_PROXY" https://bench.local/
  else
    log "null-proxy did not start: $(tail -n 3 "$TMP/null.err" | tr '\n' ' ')"
  fi
  kill "$NULL_PID" 2>/dev/null || true
  wait "$NULL_PID" 2>/dev/null || true
  NULL_PID=
fi

# --------------------------------------------------------------- SudoMode
ADMIN_TOKEN="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export SUDOMODE_ADMIN_TOKEN=$ADMIN_TOKEN
SM_PROXY=
SM_DASH=
SM_DIR=
SM_BINARY=$BIN/sudomode
BASE_BIN=${BENCH_BASELINE_BIN:-}
if [ -n "$BASE_BIN" ] && [ ! -x "$BASE_BIN" ]; then
  echo "BENCH_BASELINE_BIN=$BASE_BIN is not an executable" >&2
  exit 2
fi

# Store size after a load run, per decided request (all of them GETs).
disk_json() { # store-file metrics-file -> {"bytes":..,"apparent":..,"requests":..}
  local bytes apparent reqs
  bytes=$(du -B1 "$1" 2>/dev/null | cut -f1)
  apparent=$(stat -c %s "$1" 2>/dev/null)
  reqs=$(awk '/^sudomode_requests_total/ {s += $2} END {print s + 0}' "$2" 2>/dev/null)
  echo "{\"bytes\": ${bytes:-0}, \"apparent\": ${apparent:-0}, \"requests\": ${reqs:-0}}"
}

rss_json() { # pid -> {"rss_kib":..,"hwm_kib":..}
  awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} END {printf "{\"rss_kib\": %d, \"hwm_kib\": %d}\n", r, h}' "/proc/$1/status" 2>/dev/null || echo '{}'
}

# sudomode_runs PREFIX DURABILITY: every load shape through the binary in SM_BINARY.
sudomode_runs() {
  local p=$1 durability=$2
  log "through SudoMode ($p), audit.durability: $durability"
  if start_sudomode "$p" "$durability" ALLOW; then
    SM_CA=$SM_DIR/certs/ca.pem
    if [ "$p" = sudomode_strict ]; then
      log "  fsync again, right before the strict runs"
      "$BIN/loadgen" fsync --dir "$SM_DIR/data" --count 300 >"$RES/fsync.json"
    fi
    rss_json "$SM_PID" >"$RES/$p.rss_idle.json"
    SHAPE_PID=$SM_PID shapes "$p" --url https://bench.local/ --proxy "$SM_PROXY" --ca "$SM_CA"
    oha_run "$p" --insecure -x "$SM_PROXY" https://bench.local/
    # RSS once the load is over (a second to settle), against idle.
    sleep 1
    rss_json "$SM_PID" >"$RES/$p.rss_after.json"
    lg "$p.first" first --url https://bench.local/ --proxy "$SM_PROXY" --ca "$SM_CA" --hosts "$HOSTS" --label "$p"
    rss_json "$SM_PID" >"$RES/$p.rss.json"
    curl -s --max-time 5 "$SM_DASH/metrics" >"$RES/$p.metrics.txt" 2>/dev/null || true
    disk_json "$SM_DIR/data/sudomode.redb" "$RES/$p.metrics.txt" >"$RES/$p.disk.json"
    stop_sudomode
  else
    echo '{"failed": true, "error": "SudoMode did not start"}' >"$RES/$p.start.json"
  fi
}

for durability in strict batched; do
  SM_BINARY=$BIN/sudomode
  sudomode_runs "sudomode_$durability" "$durability"
  if [ -n "$BASE_BIN" ]; then
    SM_BINARY=$BASE_BIN
    sudomode_runs "baseline_$durability" "$durability"
    SM_BINARY=$BIN/sudomode
  fi
done

# ---------------------------------------------------- 10,000 held requests
# hold_run RESULT-NAME: the held test through the binary in SM_BINARY.
hold_run() {
  local out=$1
  log "hold/approve ($out): $HOLD_COUNT requests held at once"
  # max_pending_per_agent lifts the per-agent cap so one agent can hold them all.
  if start_sudomode "$out" strict REQUIRE_APPROVAL "  max_pending_per_agent: $((HOLD_COUNT * 2))" ||
    start_sudomode "${out}2" strict REQUIRE_APPROVAL; then
    local hold_timeout=$((120 + HOLD_COUNT / 50))
    log "  hold (bounded to ${hold_timeout}s)"
    if ! timeout $((hold_timeout + 30)) "$BIN/loadgen" hold --url https://bench.local/hold --proxy "$SM_PROXY" \
      --ca "$SM_DIR/certs/ca.pem" --dashboard "$SM_DASH" --count "$HOLD_COUNT" --approve-concurrency 64 \
      --pid "$SM_PID" --timeout "$hold_timeout" >"$RES/$out.json" 2>"$RES/$out.err"; then
      log "  hold FAILED: $(tail -n 3 "$RES/$out.err" | tr '\n' ' ')"
      failed_json "$RES/$out.err" "$RES/$out.json"
    fi
    stop_sudomode
  fi
}

if [ "${BENCH_SKIP_HOLD:-0}" != 1 ]; then
  SM_BINARY=$BIN/sudomode
  hold_run hold
  if [ -n "$BASE_BIN" ]; then
    SM_BINARY=$BASE_BIN
    hold_run hold_baseline
    SM_BINARY=$BIN/sudomode
  fi
else
  echo '{"skipped": true, "reason": "BENCH_SKIP_HOLD=1"}' >"$RES/hold.json"
fi

# ---------------------------------------------------------------- mitmdump
if [ "${BENCH_SKIP_MITM:-0}" != 1 ]; then
  # A mitmdump on PATH is used as it is; else mitmproxy, pinned to the version
  # earlier runs compared against, goes into the bench's own virtualenv (never
  # the system Python), reused by later runs.
  MITM_VENV=$TARGET_DIR/bench-venv
  if ! command -v mitmdump >/dev/null 2>&1; then
    if [ ! -x "$MITM_VENV/bin/mitmdump" ]; then
      log "mitmdump missing: mitmproxy 11.0.2 into $MITM_VENV"
      { python3 -m venv "$MITM_VENV" &&
        "$MITM_VENV/bin/python3" -m pip install --quiet --disable-pip-version-check \
          mitmproxy==11.0.2; } >&2 || log "installing mitmproxy failed"
    fi
    # Setting PATH also clears bash's command hash.
    [ -x "$MITM_VENV/bin/mitmdump" ] && PATH=$MITM_VENV/bin:$PATH
  fi
  if command -v mitmdump >/dev/null 2>&1; then
    MITM_PORT=$(free_port)
    mitmdump --listen-host 127.0.0.1 --listen-port "$MITM_PORT" --ssl-insecure -q >"$TMP/mitm.out" 2>"$TMP/mitm.err" &
    MITM_PID=$!
    MITM_CA=$HOME/.mitmproxy/mitmproxy-ca-cert.pem
    ok=0
    for ((i = 0; i < 300; i++)); do
      if [ -s "$MITM_CA" ] && (exec 3<>"/dev/tcp/127.0.0.1/$MITM_PORT") 2>/dev/null; then ok=1; break; fi
      sleep 0.1
    done
    if [ $ok = 1 ]; then
      mitm_version=$(mitmdump --version 2>/dev/null |
        awk -F': *' '/^(Mitmproxy|Python):/ {printf "%s%s %s", sep, $1, $2; sep = ", "}' || true)
      log "through mitmdump ($mitm_version) on 127.0.0.1:$MITM_PORT"
      printf '%s' "$mitm_version" | json_string >"$RES/mitmdump_version.json"
      # mitmdump resolves the CONNECT target itself: send it the stand-in's address
      # (the TLS name stays bench.local).
      shapes mitmdump --url https://bench.local/ --proxy "http://127.0.0.1:$MITM_PORT" \
        --connect-authority "127.0.0.1:$UP_PORT" --ca "$MITM_CA"
      oha_run mitmdump --insecure -x "http://127.0.0.1:$MITM_PORT" "https://127.0.0.1:$UP_PORT/"
      rss_json "$MITM_PID" >"$RES/mitmdump.rss.json"
    else
      log "mitmdump did not start: $(tail -n 3 "$TMP/mitm.err" | tr '\n' ' ')"
    fi
    kill "$MITM_PID" 2>/dev/null || true
    wait "$MITM_PID" 2>/dev/null || true
    MITM_PID=
  fi
fi

# ---------------------------------------------------------------- rotation
# The 64-connection figure once more, in rotation: every subject runs for a
# few seconds with loadgen, then with oha, round after round (each round
# starting one subject later), all proxies up at once. A single run per
# subject, minutes apart, moves with the VM's speed (±20 % here between
# consecutive runs); the medians of the rounds and of each round's ratios do not.
ROT_ROUNDS=${BENCH_ROTATION_ROUNDS:-3}
ROT_SECS=${BENCH_ROTATION_SECONDS:-5}
rotation() {
  local -A args oha_args
  local subjects=(direct) s
  args[direct]="--connect 127.0.0.1:$UP_PORT --ca $UP_CA"
  oha_args[direct]="--insecure https://127.0.0.1:$UP_PORT/"
  if [ "${BENCH_SKIP_NULL:-0}" != 1 ]; then
    "$BIN/null-proxy" --ca-out "$TMP/rot-null-ca.pem" --upstream-ca "$UP_CA" \
      --resolve "bench.local:443=127.0.0.1:$UP_PORT" --max-seconds 3600 >"$TMP/rot-null.out" 2>"$TMP/rot-null.err" &
    ROT_PIDS+=($!)
  fi
  if [ "${BENCH_SKIP_NULL:-0}" != 1 ] && s=$(wait_line "$TMP/rot-null.out" '^proxy: ' 20 | awk '{print $2}'); then
    subjects+=(null)
    args[null]="--proxy $s --ca $TMP/rot-null-ca.pem"
    oha_args[null]="--insecure -x $s https://bench.local/"
  fi
  local side bin mode
  for side in sudomode baseline; do
    bin=$BIN/sudomode
    [ $side = baseline ] && bin=$BASE_BIN
    [ -n "$bin" ] || continue
    for mode in strict batched; do
      SM_BINARY=$bin start_sudomode "rot_${side}_$mode" "$mode" ALLOW || continue
      ROT_PIDS+=("$SM_PID")
      SM_PID=
      subjects+=("${side}_$mode")
      args[${side}_$mode]="--proxy $SM_PROXY --ca $SM_DIR/certs/ca.pem"
      oha_args[${side}_$mode]="--insecure -x $SM_PROXY https://bench.local/"
    done
  done
  if [ "${BENCH_SKIP_MITM:-0}" != 1 ] && command -v mitmdump >/dev/null 2>&1; then
    local port ca=$HOME/.mitmproxy/mitmproxy-ca-cert.pem i
    port=$(free_port)
    mitmdump --listen-host 127.0.0.1 --listen-port "$port" --ssl-insecure -q >"$TMP/rot-mitm.out" 2>"$TMP/rot-mitm.err" &
    ROT_PIDS+=($!)
    for ((i = 0; i < 300; i++)); do
      if [ -s "$ca" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        subjects+=(mitmdump)
        args[mitmdump]="--proxy http://127.0.0.1:$port --connect-authority 127.0.0.1:$UP_PORT --ca $ca"
        oha_args[mitmdump]="--insecure -x http://127.0.0.1:$port https://127.0.0.1:$UP_PORT/"
        break
      fi
      sleep 0.1
    done
  fi
  log "rotation: ${subjects[*]}; $ROT_ROUNDS rounds of ${ROT_SECS}s each"
  local r k n=${#subjects[@]}
  for ((r = 1; r <= ROT_ROUNDS; r++)); do
    for ((k = 0; k < n; k++)); do
      s=${subjects[$(((k + r - 1) % n))]}
      # shellcheck disable=SC2086 # the stored arguments are words
      lg "rot$r.$s" run --http 1 --connections 64 --duration "$ROT_SECS" --warmup "$WARMUP" --url https://bench.local/ ${args[$s]}
      # shellcheck disable=SC2086
      RUN_SECS=$ROT_SECS oha_run "rot$r.$s" ${oha_args[$s]}
    done
  done
  for s in "${ROT_PIDS[@]}"; do
    kill "$s" 2>/dev/null || true
    wait "$s" 2>/dev/null || true
  done
  ROT_PIDS=()
  echo "{\"rounds\": $ROT_ROUNDS, \"seconds\": $ROT_SECS, \"subjects\": $(printf '%s\n' "${subjects[@]}" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().split()))')}" >"$RES/rotation.json"
}
if [ "$ROT_ROUNDS" -gt 0 ]; then
  rotation
fi

# ---------------------------------------------------------- policy decide
if [ "${BENCH_SKIP_DECIDE:-0}" != 1 ] && [ -f crates/policy/benches/decide.rs ]; then
  log "policy decide: cargo bench -p sudomode-policy --bench decide"
  rm -rf "$TARGET_DIR"/criterion/decide_1000_rules*
  if timeout 900 cargo bench -p sudomode-policy --bench decide -- --warm-up-time 1 --measurement-time 3 \
    >"$RES/decide.txt" 2>"$RES/decide.err"; then
    for d in "$TARGET_DIR"/criterion/decide_*/new; do
      [ -f "$d/estimates.json" ] && cp "$d/estimates.json" "$RES/decide.$(basename "$(dirname "$d")").json"
    done
  else
    log "decide bench failed: $(tail -n 3 "$RES/decide.err" | tr '\n' ' ')"
  fi
fi

# ------------------------------------------------------- the store alone
FILL=${BENCH_FILL_REQUESTS:-1000000}
if [ "$FILL" != 0 ]; then
  log "storefill: $FILL requests into a fresh store (bytes, filtered pages, verify, restart)"
  if ! timeout 3600 "$BIN/storefill" --requests "$FILL" --dir "$TMP" >"$RES/storefill.json" 2>"$RES/storefill.err"; then
    log "storefill FAILED: $(tail -n 3 "$RES/storefill.err" | tr '\n' ' ')"
    echo '{"failed": true}' >"$RES/storefill.json"
  fi
fi

echo "\"$(cut -d' ' -f1-3 /proc/loadavg)\"" >"$RES/loadavg_end.json"

# ------------------------------------------------------------------ report
python3 "$ROOT/bench/report.py" "$RES" >"$RES/report.md"
# The PostgreSQL section is bench/postgres.sh's (between its markers): kept as it was.
if [ -f "$OUT" ] && grep -q '^<!-- postgres:begin -->' "$OUT"; then
  echo >>"$RES/report.md"
  sed -n '/^<!-- postgres:begin -->/,/^<!-- postgres:end -->/p' "$OUT" >>"$RES/report.md"
fi
cp "$RES/report.md" "$OUT"
log "wrote $OUT"
cat "$OUT"
if [ "${BENCH_KEEP:-0}" = 1 ]; then log "raw results in $RES"; fi
