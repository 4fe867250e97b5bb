#!/usr/bin/env bash
# Alternated A/B of two `sudomode` builds as a pair of replicas on one
# PostgreSQL (the shape of bench/postgres.sh: strict, allowed HTTPS, HTTP/1.1
# keep-alive, 32 connections to each replica at once, 1 KiB answers).
#
#   bench/ab-postgres.sh A B        A, B: `sudomode` binaries
#
# Each run gets a fresh database on one throwaway cluster (Debian's
# postgresql, as root; fsync on), so neither side inherits the other's
# tables, and starts right after a CHECKPOINT. Runs go A B, then B A, ...; a drift in the VM's speed falls on both
# sides. Prints the pair's req/s per run, the medians, and B/A per pair.
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
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] || { echo "no PostgreSQL: apt-get install postgresql" >&2; exit 2; }

log() { printf '[ab-pg %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
TMP=$(mktemp -d /tmp/sudomode-ab-pg.XXXXXX)
PIDS=()
PG_DATA=$TMP/pg/data
stop_pids() {
  local p
  for p in "$@"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}
cleanup() {
  stop_pids "${PIDS[@]}"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export SUDOMODE_ADMIN_TOKEN="ab-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

chmod 711 "$TMP" # the server runs as user postgres and must reach its directory
mkdir -p "$TMP/pg"
chown postgres "$TMP/pg"
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -l "$TMP/pg/log" \
  -o "-p $PG_PORT -k $TMP/pg -c listen_addresses=127.0.0.1" start >/dev/null
SERVER="postgres://postgres@127.0.0.1:$PG_PORT"

"$BIN/stand-in" --ca-out "$TMP/standin-ca.pem" --max-seconds 7200 >"$TMP/standin.out" 2>"$TMP/standin.err" &
PIDS+=($!)
UP_PORT=$(wait_line "$TMP/standin.out" '^port: ' 20 | awk '{print $2}')

# replica DB NAME BINARY: starts it; its pid in REPLICA_PID, its proxy in REPLICA_PROXY.
replica() {
  local dir=$TMP/$1-$2
  mkdir -p "$dir/policies"
  cat >"$dir/sudomode.yaml" <<YAML
store:
  postgres: "$SERVER/$1"
ca:
  dir: $TMP/ca
audit:
  durability: strict
policies: [$dir/policies/]
upstream:
  ca_files: [$TMP/standin-ca.pem]
  resolve:
    "bench.local:443": "127.0.0.1:$UP_PORT"
YAML
  printf 'rules:\n  - name: allow\n    resource: "*"\n    decision: ALLOW\n' >"$dir/policies/bench.yaml"
  SUDOMODE_LOG=warn "$3" run -c "$dir/sudomode.yaml" \
    --proxy-listen 127.0.0.1:0 --dashboard-listen 127.0.0.1:0 >"$dir/stdout" 2>"$dir/stderr" &
  REPLICA_PID=$!
  PIDS+=("$REPLICA_PID")
  REPLICA_PROXY=$(wait_line "$dir/stdout" '^ *proxy: ' 60 | awk '{print $2}') || {
    tail -n 20 "$dir/stderr" >&2
    return 1
  }
}

# run_side LABEL BINARY ROUND: one measured run of the pair, one JSON line on stdout.
run_side() {
  local db pids=() proxies=() loads=() r failed=0
  db=$(echo "ab_${3}_$1" | tr 'A-Z' 'a-z') # PostgreSQL folds unquoted names
  psql -X -q -d "$SERVER/postgres" -c "CREATE DATABASE $db"
  # Every run starts right after a checkpoint: one falling inside every
  # other run (max_wal_size) would favour the second of each pair.
  psql -X -q -d "$SERVER/postgres" -c CHECKPOINT
  for r in a b; do
    replica "$db" "$r" "$2" || failed=1
    pids+=("$REPLICA_PID")
    proxies+=("$REPLICA_PROXY")
  done
  [ "$failed" = 0 ] || { stop_pids "${pids[@]}"; log "$1 round $3: a replica did not start"; return 1; }
  for r in 0 1; do
    "$BIN/loadgen" run --http 1 --connections 32 --duration "$SECS" --warmup 1 \
      --url https://bench.local/ --proxy "${proxies[$r]}" --ca "$TMP/ca/ca.pem" \
      >"$TMP/$db-$r.json" 2>"$TMP/$db-$r.err" &
    loads+=($!)
  done
  for r in "${loads[@]}"; do wait "$r" || failed=1; done
  stop_pids "${pids[@]}"
  [ "$failed" = 0 ] || { log "$1 round $3 failed: $(cat "$TMP/$db-0.err" "$TMP/$db-1.err" | tail -n 3 | tr '\n' ' ')"; return 1; }
  python3 - "$1" "$3" "$TMP/$db-0.json" "$TMP/$db-1.json" <<'PY'
import json, sys
side, rnd, a, b = sys.argv[1:]
ra, rb = (json.load(open(p))["rps"] for p in (a, b))
print(json.dumps({"side": side, "round": int(rnd), "rps": round(ra + rb), "a": round(ra), "b": round(rb)}))
PY
}

log "A = $1, B = $2; $ROUNDS pairs of ${SECS}s, two replicas × 32 connections, strict"
alternate "$1" "$2" "$ROUNDS" "$TMP/runs.jsonl"
python3 "$ROOT/bench/ab_summary.py" "$TMP/runs.jsonl" --keys rps a b --ratios rps
