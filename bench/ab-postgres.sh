#!/usr/bin/env bash
# Alternated A/B of two `sudomode` builds as a pair of replicas on one
# PostgreSQL (the shape of bench/postgres.sh: strict, allowed HTTPS, HTTP/1.1
# keep-alive, 32 connections to each replica at once, 1 KiB answers).
#
#   bench/ab-postgres.sh A B        A, B: `sudomode` binaries
#
# Each run gets a fresh database on one throwaway cluster (Debian's
# postgresql, as root; fsync on), so neither side inherits the other's
# tables, and starts right after a CHECKPOINT. Runs go A B, then B A, ...;
# a drift in the VM's speed falls on both sides. Prints per run the pair's
# req/s and the CPU per request of PostgreSQL (all its processes) and of the
# two replicas over the measured seconds, the medians, and B/A per pair.
#
# Settings (environment):
#   AB_ROUNDS [4]     pairs
#   AB_SECONDS [8]    measured seconds per run (after a 1 s warm-up)
# Uses target/release/{loadgen,stand-in} (`cargo build --release -p sudomode-bench`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
[ $# -eq 2 ] || { sed -n '2,/^set -euo pipefail$/{/^#/p}' "$0" >&2; exit 2; }
ROUNDS=${AB_ROUNDS:-4}
SECS=${AB_SECONDS:-8}
for b in loadgen stand-in; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p sudomode-bench" >&2; exit 2; }
done
for side in "$1" "$2"; do
  [ -x "$side" ] || { echo "$side: not an executable" >&2; exit 2; }
done

log() { printf '[ab-pg %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
TMP=$(mktemp -d /tmp/sudomode-ab-pg.XXXXXX)
RES=$TMP
WARMUP=1
PIDS=()
cleanup() {
  stop_pids "${PIDS[@]}"
  stop_postgres
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export SUDOMODE_ADMIN_TOKEN="ab-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

start_postgres "$TMP"
"$BIN/stand-in" --ca-out "$TMP/standin-ca.pem" --max-seconds 7200 >"$TMP/standin.out" 2>"$TMP/standin.err" &
PIDS+=($!)
UP_PORT=$(wait_line "$TMP/standin.out" '^port: ' 20 | awk '{print $2}')
UP_CA=$TMP/standin-ca.pem
PG_STORE='store:
  postgres: "${env:SUDOMODE_DATABASE_URL}"'

# run_side LABEL BINARY ROUND: one measured run of the pair, one JSON line on stdout.
run_side() {
  local db
  db=$(echo "ab_${3}_$1" | tr 'A-Z' 'a-z') # PostgreSQL folds unquoted names
  psql -X -q -d "$PG_SERVER/postgres" -c "CREATE DATABASE $db"
  # Every run starts right after a checkpoint: one falling inside every
  # other run (max_wal_size) would favour the second of each pair.
  psql -X -q -d "$PG_SERVER/postgres" -c CHECKPOINT
  DB_URL=$PG_SERVER/$db
  SM_BINARY=$2 start_replica a "$PG_STORE"
  SM_BINARY=$2 start_replica b "$PG_STORE"
  run_load "$db-a" "$PROXY_a" 32 &
  local load_a=$!
  run_load "$db-b" "$PROXY_b" 32 &
  local load_b=$!
  # CPU over the measured seconds: PostgreSQL's (every server process) and
  # the two replicas'.
  sleep "$WARMUP"
  local pg sm
  cpu_snapshot $(postgres_pids) >"$TMP/pg.cpu"
  cpu_snapshot "${PIDS[@]:1}" >"$TMP/sm.cpu"
  wait "$load_a" "$load_b"
  pg=$(cpu_since "$TMP/pg.cpu" $(postgres_pids))
  sm=$(cpu_since "$TMP/sm.cpu" "${PIDS[@]:1}")
  stop_all_replicas
  python3 - "$1" "$3" "$RES/$db-a.json" "$RES/$db-b.json" "$pg" "$sm" "$(getconf CLK_TCK)" <<'PY'
import json, sys
side, rnd, a, b, pg, sm, hz = sys.argv[1:]
da, db = (json.load(open(p)) for p in (a, b))
ra, rb = da.get("rps", 0), db.get("rps", 0)
n = da.get("requests", 0) + db.get("requests", 0)
us = lambda ticks: round(int(ticks) / int(hz) / n * 1e6, 1) if n else 0
print(json.dumps({"side": side, "round": int(rnd), "rps": round(ra + rb), "a": round(ra), "b": round(rb),
                  "pg_cpu_us": us(pg), "replicas_cpu_us": us(sm)}))
PY
}

log "A = $1, B = $2; $ROUNDS pairs of ${SECS}s, two replicas × 32 connections, strict"
alternate "$1" "$2" "$ROUNDS" "$TMP/runs.jsonl"
python3 "$ROOT/bench/ab_summary.py" "$TMP/runs.jsonl" --keys rps a b pg_cpu_us replicas_cpu_us --ratios rps pg_cpu_us replicas_cpu_us
