#!/usr/bin/env bash
# Runs fuzz targets one after the other, each for SECONDS (wall clock), seeded from
# tests/fixtures (fuzz/seed.sh), at the lowest CPU priority, and prints per target: CPU
# seconds, executions, coverage, corpus size and crashes. Exits 1 if any target crashed,
# timed out or ran out of memory; the inputs are under fuzz/artifacts/<target>/.
#
#   fuzz/run.sh SECONDS [TARGET...]        (default: every target in fuzz/fuzz_targets)
#
# Environment: FUZZ_BIN (the built targets; default fuzz/target/x86_64-unknown-linux-gnu/
# release), FUZZ_CORPUS (default fuzz/corpus), FUZZ_LOG (per-target logs; default
# fuzz/logs), FUZZ_BUILD=0 to skip `cargo fuzz build`, FUZZ_ARGS (more libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
bin=${FUZZ_BIN:-fuzz/target/$(rustc -vV | sed -n "s/^host: //p")/release}
corpus=${FUZZ_CORPUS:-fuzz/corpus}
logs=${FUZZ_LOG:-fuzz/logs}
if [ "${FUZZ_BUILD:-1}" != 0 ]; then
  nice -n 15 cargo fuzz build -s none
fi
fuzz/seed.sh "$corpus" >/dev/null
mkdir -p "$logs"

# Text inputs are cut to 4 KiB pieces by the seeding; trace.dat files are whole (up to 512 KiB).
max_len() {
  case $1 in
    tracedat|tracedat_events) echo 600000 ;;
    system_proc|snapshot_json|format) echo 32768 ;;
    http_request) echo 9000 ;;
    *) echo 8192 ;;
  esac
}

failed=0
printf '| target | wall s | CPU s | executions | exec/s | coverage (edges) | corpus | peak RSS MB | crashes |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t" "fuzz/artifacts/$t"
  log=$logs/$t.log
  start=$(date +%s)
  # CPU time (user + system) of this target's run alone, from bash's `time`.
  set +e
  cpu=$( { TIMEFORMAT='%U %S'; time nice -n 19 "$bin/$t" "$corpus/$t" \
      -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=1536 \
      -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" ${FUZZ_ARGS:-} >"$log" 2>&1; } 2>&1 )
  rc=$?
  set -e
  wall=$(( $(date +%s) - start ))
  cpu_s=$(awk '{ printf "%.0f", $1 + $2 }' <<<"$cpu")
  execs=$(grep -a -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{ print $2 }' | tail -1)
  rate=$(grep -a -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | awk '{ print $2 }' | tail -1)
  cov=$(grep -a -o 'cov: [0-9]*' "$log" | tail -1 | awk '{ print $2 }')
  rss=$(grep -a -o 'stat::peak_rss_mb: *[0-9]*' "$log" | awk '{ print $2 }' | tail -1)
  corp=$(grep -a -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | awk '{ print $2 }')
  crashes=$(grep -a -c -E '^==[0-9]+== ERROR: libFuzzer|^SUMMARY: libFuzzer' "$log" || true)
  if [ "$rc" != 0 ]; then
    failed=1
    crashes="$crashes (exit $rc: $(grep -a -m1 -o -E 'panicked at [^ ]*|ERROR: libFuzzer: [a-z -]*' "$log" | head -1))"
  fi
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$wall" "$cpu_s" "${execs:-?}" \
    "${rate:-?}" "${cov:-?}" "${corp:-?}" "${rss:-?}" "$crashes"
done
if [ "$failed" = 1 ]; then
  echo "fuzzing found crashes: see fuzz/artifacts/ and $logs/" >&2
  exit 1
fi
