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
