#!/usr/bin/env bash
# SudoMode on PostgreSQL (SPEC §14, §15): two replicas on one local
# PostgreSQL against one replica on redb, side by side in one run, strict
# durability, allowed HTTPS (HTTP/1.1 keep-alive, 64 connections, 1 KiB
# answers); then the release latency of a call held on replica A and
# approved through replica B. Writes the "PostgreSQL" section of
# BENCHMARKS.md (between its markers; the rest of the file is left alone).
#
#   bench/postgres.sh                       # full run
#   BENCH_SECONDS=3 BENCH_RELEASE_COUNT=50 bench/postgres.sh
#
# Knobs: BENCH_SECONDS [10], BENCH_WARMUP [1], BENCH_RELEASE_COUNT [200],
# BENCH_POSTGRES [a throwaway cluster of Debian's postgresql on a free
# loopback port, as root], BENCH_SKIP_BUILD [0], BENCH_OUT [BENCHMARKS.md],
# BENCH_KEEP [0]. Everything runs on loopback, bounded in time and count.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
SECS=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP:-1}
RELEASES=${BENCH_RELEASE_COUNT:-200}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
PY=${BENCH_PYTHON:-python3}
CMDLINE="$(env | grep -E '^BENCH_(SECONDS|WARMUP|RELEASE_COUNT|SKIP_BUILD)=' | sort | tr '\n' ' ')bench/postgres.sh"

log() { printf '[bench-pg %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d /tmp/sudomode-bench-pg.XXXXXX)
RES=$TMP/results
mkdir -p "$RES"
PIDS=()
cleanup() {
  stop_pids "${PIDS[@]}"
  stop_postgres
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building release binaries"
  cargo build --release -p sudomode -p sudomode-bench
fi

# ------------------------------------------------------------- PostgreSQL
if [ -n "${BENCH_POSTGRES:-}" ]; then
  DB_URL=$BENCH_POSTGRES
else
  start_postgres "$TMP"
  DB_URL="$PG_SERVER/postgres"
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
fi

# --------------------------------------------------------------- upstream
"$BIN/stand-in" --ca-out "$TMP/standin-ca.pem" --max-seconds 3600 >"$TMP/standin.out" 2>"$TMP/standin.err" &
PIDS+=($!)
UP_PORT=$(wait_line "$TMP/standin.out" '^port: ' 20 | awk '{print $2}')
UP_CA=$TMP/standin-ca.pem
export SUDOMODE_ADMIN_TOKEN="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

# ------------------------------------------------------- one redb replica
log "one replica on redb, 64 connections"
start_replica redb "store:
  path: $TMP/sm-redb/data/sudomode.redb"
run_load redb "$PROXY_redb" 64
stop_all_replicas

# ------------------------------------------- two replicas on PostgreSQL
log "two replicas on PostgreSQL, 32 connections each at once"
PG_STORE='store:
  postgres: "${env:SUDOMODE_DATABASE_URL}"'
start_replica a "$PG_STORE"
start_replica b "$PG_STORE"
run_load pg_a "$PROXY_a" 32 &
load_a=$!
run_load pg_b "$PROXY_b" 32
wait "$load_a"

log "release latency: held on A, approved through B ($RELEASES calls)"
timeout 900 "$PY" "$ROOT/bench/release_latency.py" --proxy "$PROXY_a" --ca "$TMP/ca/ca.pem" \
  --approve-api "$DASH_b" --token "$SUDOMODE_ADMIN_TOKEN" --count "$RELEASES" \
  >"$RES/release.json" 2>"$RES/release.err" || echo '{"failed": true}' >"$RES/release.json"
stop_all_replicas

# ------------------------------------------------------------------ report
"$PY" - "$RES" "$OUT" "$CMDLINE" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, pathlib, sys
res, out, cmd, nproc, load = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
j = lambda n: json.loads((res / f"{n}.json").read_text() or "{}")
redb, a, b, rel = j("redb"), j("pg_a"), j("pg_b"), j("release")
rps = lambda r: r.get("rps") or 0
lat = lambda r, k: (r.get("latency", {}).get(f"{k}_us") or 0) / 1000.0 or None
both = rps(a) + rps(b)
ratio = both / rps(redb) if rps(redb) else 0
fmt = lambda v: "—" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}")
lines = [
    "<!-- postgres:begin -->",
    "## PostgreSQL: two replicas on one database (SPEC §14, §15)",
    "",
    f"Command: `{cmd}` — {nproc} cores, load average at the end {load}. Allowed HTTPS through",
    "SudoMode (HTTP/1.1 keep-alive, 1 KiB answers), `audit.durability: strict`, PostgreSQL 15 on",
    "loopback with its default durability (fsync on), everything on the same machine.",
    "",
    "| run | connections | req/s | p50 ms | p99 ms |",
    "|---|---|---|---|---|",
    f"| one replica, redb | 64 | {fmt(rps(redb))} | {fmt(lat(redb,'p50'))} | {fmt(lat(redb,'p99'))} |",
    f"| replica A, PostgreSQL | 32 | {fmt(rps(a))} | {fmt(lat(a,'p50'))} | {fmt(lat(a,'p99'))} |",
    f"| replica B, PostgreSQL | 32 | {fmt(rps(b))} | {fmt(lat(b,'p50'))} | {fmt(lat(b,'p99'))} |",
    f"| **A + B together** | 64 | **{fmt(both)}** | | |",
    "",
    f"Two replicas on PostgreSQL together: **{ratio:.2f}×** one redb replica (target: at least 0.5×).",
    "",
    f"Release latency of a cross-replica approval (call held on A, approved through B's API, until the",
    f"agent has the upstream's answer; {rel.get('samples', 0)} calls one after another, {rel.get('failures', 0)} failed):",
    f"p50 **{fmt(rel.get('p50_ms'))} ms**, p99 **{fmt(rel.get('p99_ms'))} ms**, max {fmt(rel.get('max_ms'))} ms (target: p99 under 1,000 ms).",
    "",
    "<details><summary>raw</summary>",
    "",
    "```json",
    json.dumps({"redb": redb, "pg_a": a, "pg_b": b, "release": rel}, indent=1),
    "```",
    "</details>",
    "<!-- postgres:end -->",
]
section = "\n".join(lines) + "\n"
text = out.read_text() if out.exists() else ""
begin, end = "<!-- postgres:begin -->", "<!-- postgres:end -->"
if begin in text and end in text:
    text = text[: text.index(begin)] + section.rstrip("\n") + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n" + section
out.write_text(text)
print(section)
PY
log "wrote the PostgreSQL section of $OUT"
