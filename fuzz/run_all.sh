#!/bin/sh
# Runs every target for the given seconds each (default 120), one at a time.
cd "$(dirname "$0")"
T=${1:-120}
for t in ${TARGETS:-mapper sql normalize decompress form_json_args policy_load policy_decide store_roundtrip}; do
  echo "== $t ($T s)"
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O --debug-assertions "$t" -- -max_total_time="$T" -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -25
done
