# Shell helpers shared by bench/run.sh, bench/ab.sh and bench/postgres.sh (sourced).

# wait_line FILE REGEX SECONDS: prints the first line of FILE matching REGEX
# once it appears; fails after SECONDS.
wait_line() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# cpu_ticks PID...: the processes' utime + stime together, in clock ticks
# (one that has gone counts 0).
cpu_ticks() {
  local p t=0 f
  for p in "$@"; do
    f=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || f=0
    t=$((t + ${f:-0}))
  done
  echo "$t"
}

# cpu_snapshot PID...: a `pid ticks` line per process, for cpu_since.
cpu_snapshot() {
  local p
  for p in "$@"; do echo "$p $(cpu_ticks "$p")"; done
}

# cpu_since SNAPSHOT PID...: the ticks the processes used since SNAPSHOT (a
# file of cpu_snapshot), each counted from 0 if it started since; one that
# has ended since counts nothing (a total would subtract its whole life).
cpu_since() {
  local snap=$1
  shift
  cpu_snapshot "$@" | awk 'FILENAME == ARGV[1] {t0[$1] = $2; next} $2 > t0[$1] {n += $2 - t0[$1]} END {print n + 0}' "$snap" -
}

# json_string: standard input as one JSON string.
json_string() { python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))'; }

# failed_json ERR OUT: OUT records a failed run, with the last lines of ERR.
failed_json() { echo "{\"failed\": true, \"error\": $(tail -n 3 "$1" | json_string)}" >"$2"; }

# A SudoMode on the stand-in (`SM_BINARY`; store, CA and policy under
# $TMP/sm-NAME; `HOSTS` more names resolved to it), one rule for every call.
# Needs TMP, UP_CA, UP_PORT, HOSTS and a `log` function.
# start_sudomode NAME DURABILITY DECISION [extra yaml lines for hold:]
start_sudomode() {
  local name=$1 durability=$2 decision=$3 hold_extra=${4:-}
  SM_DIR=$TMP/sm-$name
  mkdir -p "$SM_DIR/policies"
  {
    echo "store:"
    echo "  path: $SM_DIR/data/sudomode.redb"
    echo "ca:"
    echo "  dir: $SM_DIR/certs"
    echo "audit:"
    echo "  durability: $durability"
    echo "policies: [$SM_DIR/policies/]"
    if [ -n "$hold_extra" ]; then
      echo "hold:"
      echo "$hold_extra"
    fi
    echo "upstream:"
    echo "  ca_files: [$UP_CA]"
    echo "  resolve:"
    echo "    \"bench.local:443\": \"127.0.0.1:$UP_PORT\""
    local i
    for ((i = 0; i < HOSTS; i++)); do
      echo "    \"h$i.bench.local:443\": \"127.0.0.1:$UP_PORT\""
    done
  } >"$SM_DIR/sudomode.yaml"
  printf 'rules:\n  - name: bench_%s\n    resource: "*"\n    decision: %s\n' "$decision" "$decision" >"$SM_DIR/policies/bench.yaml"
  SUDOMODE_LOG=${SUDOMODE_LOG:-warn} "$SM_BINARY" run -c "$SM_DIR/sudomode.yaml" \
    --proxy-listen 127.0.0.1:0 --dashboard-listen 127.0.0.1:0 >"$SM_DIR/stdout" 2>"$SM_DIR/stderr" &
  SM_PID=$!
  SM_PROXY=$(wait_line "$SM_DIR/stdout" '^ *proxy: ' 30 | awk '{print $2}') || {
    log "SudoMode ($name) did not start:"
    tail -n 20 "$SM_DIR/stderr" >&2
    stop_sudomode
    return 1
  }
  SM_DASH=$(wait_line "$SM_DIR/stdout" '^ *dashboard: ' 5 | awk '{print $2}')
  log "SudoMode $name: proxy $SM_PROXY dashboard $SM_DASH (pid $SM_PID)"
}

stop_sudomode() {
  [ -n "$SM_PID" ] || return 0
  kill -TERM "$SM_PID" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$SM_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SM_PID" 2>/dev/null || true
  wait "$SM_PID" 2>/dev/null || true
  SM_PID=
}

# alternate BIN_A BIN_B ROUNDS RUNS: calls the caller's `run_side SIDE BINARY
# ROUND` (one JSON line on stdout) for A and B in turns, A B then B A, ..., so
# a drift in the machine's speed falls on both; each line is appended to RUNS
# and shown. Not in a pipeline: what run_side starts stays this shell's child,
# so the caller's exit trap stops it.
alternate() {
  local r s bin order
  : >"$4"
  for ((r = 1; r <= $3; r++)); do
    order=(A B)
    [ $((r % 2)) -eq 0 ] && order=(B A)
    for s in "${order[@]}"; do
      bin=$1
      [ "$s" = B ] && bin=$2
      run_side "$s" "$bin" "$r" >>"$4" && tail -n 1 "$4"
    done
  done
}

# ------------------------------------------- PostgreSQL replicas (postgres.sh, ab-postgres.sh)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# postgres_pids: the processes of the cluster start_postgres made (its
# postmaster and the postmaster's children: backends, WAL writer, ...).
postgres_pids() {
  local pm
  pm=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 0
  echo "$pm"
  pgrep -P "$pm" || true
}

# stop_pids PID...: stops each process and reaps it.
stop_pids() {
  local p
  for p in "$@"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}

# start_postgres DIR: a throwaway cluster of Debian's postgresql in DIR/pg (as
# root), with its default durability (fsync on), on a free loopback port. Sets
# PG_BIN, PG_DATA, PG_PORT and PG_SERVER (its URL without a database);
# stop_postgres stops it.
start_postgres() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$PG_BIN" ] || { echo "no PostgreSQL: apt-get install postgresql (bench/postgres.sh: or set BENCH_POSTGRES)" >&2; return 2; }
  chmod 711 "$1" # the server runs as user postgres and must reach its directory
  mkdir -p "$1/pg"
  chown postgres "$1/pg"
  PG_DATA=$1/pg/data
  PG_PORT=$(free_port)
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -l "$1/pg/log" \
    -o "-p $PG_PORT -k $1/pg -c listen_addresses=127.0.0.1" start >/dev/null
  PG_SERVER="postgres://postgres@127.0.0.1:$PG_PORT"
}

stop_postgres() {
  [ -n "${PG_DATA:-}" ] || return 0
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
}

# start_replica NAME STORE_YAML: a SudoMode (`SM_BINARY`, else $BIN/sudomode)
# in $TMP/sm-NAME on the stand-in, strict, with `$DB_URL` as
# SUDOMODE_DATABASE_URL; its pid added to PIDS; sets PROXY_<NAME>, DASH_<NAME>.
# Needs BIN, TMP, UP_CA, UP_PORT, PIDS and a `log` function.
start_replica() {
  local name=$1 store=$2 dir=$TMP/sm-$1
  mkdir -p "$dir/policies"
  cat >"$dir/sudomode.yaml" <<YAML
$store
ca:
  dir: $TMP/ca
audit:
  durability: strict
policies: [$dir/policies/]
hold:
  max_pending_per_agent: 100000
upstream:
  ca_files: [$UP_CA]
  resolve:
    "bench.local:443": "127.0.0.1:$UP_PORT"
YAML
  printf 'rules:\n  - name: release\n    resource: "*"\n    action: post\n    decision: REQUIRE_APPROVAL\n  - name: allow\n    resource: "*"\n    decision: ALLOW\n' >"$dir/policies/bench.yaml"
  SUDOMODE_DATABASE_URL=${DB_URL:-} SUDOMODE_LOG=warn "${SM_BINARY:-$BIN/sudomode}" run -c "$dir/sudomode.yaml" \
    --proxy-listen 127.0.0.1:0 --dashboard-listen 127.0.0.1:0 >"$dir/stdout" 2>"$dir/stderr" &
  PIDS+=($!)
  local proxy dash
  proxy=$(wait_line "$dir/stdout" '^ *proxy: ' 60 | awk '{print $2}') || { tail -n 20 "$dir/stderr" >&2; exit 1; }
  dash=$(wait_line "$dir/stdout" '^ *dashboard: ' 5 | awk '{print $2}')
  printf -v "PROXY_$name" '%s' "$proxy"
  printf -v "DASH_$name" '%s' "$dash"
  log "replica $name: proxy $proxy dashboard $dash"
}

# stop_all_replicas: stops every process in PIDS but the first (the stand-in).
stop_all_replicas() {
  stop_pids "${PIDS[@]:1}"
  PIDS=("${PIDS[0]}")
}

# run_load NAME PROXY CONNECTIONS: the allowed load through PROXY for $SECS s
# (after $WARMUP s), its JSON in $RES/NAME.json (`{"failed": true}` if it failed).
run_load() {
  timeout $((SECS + WARMUP + 60)) "$BIN/loadgen" run --http 1 --connections "$3" --duration "$SECS" \
    --warmup "$WARMUP" --label "$1" --url https://bench.local/ --proxy "$2" --ca "$TMP/ca/ca.pem" \
    >"$RES/$1.json" 2>"$RES/$1.err" || echo '{"failed": true}' >"$RES/$1.json"
}
