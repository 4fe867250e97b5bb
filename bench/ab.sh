#!/usr/bin/env bash
# Alternated A/B of two proxies on the allowed-throughput shape (64 HTTP/1.1
# keep-alive connections over CONNECT + TLS to the stand-in, 1 KiB answers).
#
#   bench/ab.sh A B        A, B: a `sudomode` binary, or `null` (null-proxy)
#
# On a shared VM one figure moves by ±20 % between consecutive runs, more than
# most changes are worth. This runs A and B in turns (A B, then B A, ...) and
# reports each pair and the medians, so a drift in the machine's speed falls
# on both sides. Per run: req/s, the proxy's CPU per request (utime + stime
# from /proc/PID/stat), the whole machine's busy CPU per request (/proc/stat:
# the generator and the stand-in included), minor page faults per request, and
# the proxy's context switches per request (all its threads, voluntary and
# involuntary, /proc/PID/task/*/status): a thread woken for every message shows
# there first (bench/PROFILE.md, stop 41).
#
# Settings (environment):
#   AB_ROUNDS [6]            pairs
#   AB_SECONDS [8]           measured seconds per run (after a 2 s warm-up)
#   AB_CONNECTIONS [64]
#   AB_DURABILITY [strict]   audit.durability of the SudoMode runs
# Uses target/release/{loadgen,stand-in,null-proxy} (`cargo build --release -p sudomode-bench`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# Usage: the comment block above, up to `set`.
[ $# -eq 2 ] || { sed -n '2,/^set -euo pipefail$/{/^#/p}' "$0" >&2; exit 2; }
ROUNDS=${AB_ROUNDS:-6}
SECS=${AB_SECONDS:-8}
CONNS=${AB_CONNECTIONS:-64}
DURABILITY=${AB_DURABILITY:-strict}
HOSTS=0
for b in loadgen stand-in null-proxy; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p sudomode-bench" >&2; exit 2; }
done
for side in "$1" "$2"; do
  [ "$side" = null ] || [ -x "$side" ] || { echo "$side: not an executable (or \`null\`)" >&2; exit 2; }
done

log() { printf '[ab %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
TMP=$(mktemp -d /tmp/sudomode-ab.XXXXXX)
UP_PID=
SM_PID=
cleanup() {
  stop_sudomode
  [ -n "$UP_PID" ] && kill "$UP_PID" 2>/dev/null && wait "$UP_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export SUDOMODE_ADMIN_TOKEN="ab-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

"$BIN/stand-in" --ca-out "$TMP/standin-ca.pem" --max-seconds 7200 >"$TMP/standin.out" 2>"$TMP/standin.err" &
UP_PID=$!
UP_PORT=$(wait_line "$TMP/standin.out" '^port: ' 20 | awk '{print $2}')
UP_CA=$TMP/standin-ca.pem

# start_side NAME BINARY: the proxy in SM_PID, its address in SM_PROXY, its CA in SM_CA.
start_side() {
  if [ "$2" = null ]; then
    SM_DIR=$TMP/sm-$1
    mkdir -p "$SM_DIR"
    "$BIN/null-proxy" --ca-out "$SM_DIR/ca.pem" --upstream-ca "$UP_CA" \
      --resolve "bench.local:443=127.0.0.1:$UP_PORT" >"$SM_DIR/stdout" 2>"$SM_DIR/stderr" &
    SM_PID=$!
    SM_PROXY=$(wait_line "$SM_DIR/stdout" '^proxy: ' 20 | awk '{print $2}')
    SM_CA=$SM_DIR/ca.pem
  else
    SM_BINARY=$2 start_sudomode "$1" "$DURABILITY" ALLOW
    SM_CA=$SM_DIR/certs/ca.pem
  fi
}

busy_ticks() { awk 'NR == 1 {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
switches() { cat "/proc/$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }

# run_side LABEL BINARY ROUND: one measured run, one JSON line on stdout.
run_side() {
  start_side "$1-$3" "$2"
  local lg=("$BIN/loadgen" run --http 1 --url https://bench.local/ --proxy "$SM_PROXY" --ca "$SM_CA" --connections "$CONNS")
  "${lg[@]}" --duration 2 --warmup 0 >/dev/null 2>&1
  local s0 m0 s1 m1 x0 x1
  s0=$(awk '{print $10, $14 + $15}' "/proc/$SM_PID/stat")
  m0=$(busy_ticks)
  x0=$(switches "$SM_PID")
  "${lg[@]}" --duration "$SECS" --warmup 0 >"$TMP/run.json" 2>"$TMP/run.err" || {
    log "$1 round $3 failed: $(tail -n 3 "$TMP/run.err" | tr '\n' ' ')"
    stop_sudomode
    return 1
  }
  s1=$(awk '{print $10, $14 + $15}' "/proc/$SM_PID/stat")
  m1=$(busy_ticks)
  x1=$(switches "$SM_PID")
  stop_sudomode
  python3 - "$1" "$3" "$TMP/run.json" "$s0" "$s1" "$m0" "$m1" "$(getconf CLK_TCK)" "$x0" "$x1" <<'PY'
import json, sys
side, rnd, path, s0, s1, m0, m1, hz, x0, x1 = sys.argv[1:]
d = json.load(open(path))
n = d["requests"]
(f0, c0), (f1, c1) = (map(int, s0.split()), map(int, s1.split()))
us = lambda ticks: round(ticks / int(hz) / n * 1e6, 1)
print(json.dumps({"side": side, "round": int(rnd), "rps": round(d["rps"]), "proxy_cpu_us": us(c1 - c0),
                  "machine_cpu_us": us(int(m1) - int(m0)), "faults": round((f1 - f0) / n, 2),
                  "switches": round((int(x1) - int(x0)) / n, 2)}))
PY
}

log "A = $1, B = $2; $ROUNDS pairs of ${SECS}s, $CONNS connections, $DURABILITY"
alternate "$1" "$2" "$ROUNDS" "$TMP/runs.jsonl"
python3 "$ROOT/bench/ab_summary.py" "$TMP/runs.jsonl" --keys rps proxy_cpu_us machine_cpu_us faults switches \
  --ratios rps proxy_cpu_us
