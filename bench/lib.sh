# Shell helpers shared by bench/run.sh and bench/postgres.sh (sourced).

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
