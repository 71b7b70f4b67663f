#!/usr/bin/env bash
# Collapse throughput: kvmscope vs inferno-collapse-perf vs FlameGraph's stackcollapse-perf.pl
# on the same large `perf script` file, in one run. Prints MB/s, ratios and peak RSS.
#
# usage: bench/collapse.sh [PERF_SCRIPT_FILE]
#
#   PERF_SCRIPT_FILE  perf script text to collapse. Without it, one is made: `perf record
#                     -F 999 -a -g` on this machine for $RECORD_SECS seconds (default 60) while
#                     `kvmscope lab` guests run, then the text is repeated up to $TARGET_MB
#                     (default 1000) MB in $BENCH_DIR (default /tmp/kvmscope-bench). Not committed.
#   FLAMEGRAPH_DIR    a checkout of FlameGraph (github.com/brendangregg/FlameGraph, e.g.
#                     `git clone --depth 1 https://github.com/brendangregg/FlameGraph`); the Perl
#                     script is skipped when it is not set.
#   THREADS           kvmscope parser threads (default: its own default, 2 on 2+ CPUs).
#
# inferno-collapse-perf is installed with `cargo install inferno` when missing. Each tool reads
# the file once from a warm page cache; output goes to files that are compared afterwards.
. "$(dirname "$0")/lib.sh"

BENCH_DIR=${BENCH_DIR:-/tmp/kvmscope-bench}
TARGET_MB=${TARGET_MB:-1000}
RECORD_SECS=${RECORD_SECS:-60}
mkdir -p "$BENCH_DIR"

bench_build

if ! command -v inferno-collapse-perf >/dev/null; then
  echo "installing inferno (cargo install inferno)..." >&2
  cargo install --quiet inferno
fi
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install -y time" >&2; exit 1; }

INPUT=${1:-}
if [ -z "$INPUT" ]; then
  INPUT=$BENCH_DIR/perf-script-${TARGET_MB}MB.txt
  if [ ! -s "$INPUT" ]; then
    command -v perf >/dev/null || { echo "needs perf: apt-get install -y linux-perf" >&2; exit 1; }
    echo "recording ${RECORD_SECS}s of system-wide stacks (perf record -F 999 -a -g)..." >&2
    ( end=$((SECONDS + RECORD_SECS))
      while [ $SECONDS -lt $end ]; do
        "$KVMSCOPE" lab run msr --duration 2s >/dev/null 2>&1 || sleep 1
      done ) &
    loop=$!
    perf record -q -F 999 -a -g -o "$BENCH_DIR/perf.data" -- sleep "$RECORD_SECS"
    wait "$loop" || true
    perf script -i "$BENCH_DIR/perf.data" > "$BENCH_DIR/one.txt" 2>/dev/null
    : > "$INPUT"
    while [ "$(stat -c %s "$INPUT")" -lt $((TARGET_MB * 1000 * 1000)) ]; do
      cat "$BENCH_DIR/one.txt" >> "$INPUT"
    done
  fi
fi

bytes=$(stat -c %s "$INPUT")
cat "$INPUT" > /dev/null   # warm the page cache
echo "input: $INPUT ($((bytes / 1000000)) MB), $(nproc) CPUs, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-26s %9s %9s %9s %10s\n' tool seconds "MB/s" "user s" "peak RSS"

declare -A SECS
run() { # name, output file, command...
  local name=$1 out=$2; shift 2
  local secs user rss
  read -r secs user _ rss < <(timed "$out" "$@")
  SECS[$name]=$secs
  printf '%-26s %9.2f %9.0f %9.2f %8d MB\n' "$name" "$secs" \
    "$(echo "$bytes / 1000000 / $secs" | bc -l)" "$user" $((rss / 1024))
}

run "wc -l" /dev/null wc -l "$INPUT"
run kvmscope "$BENCH_DIR/kvmscope.folded" "$KVMSCOPE" collapse ${THREADS:+--threads $THREADS} "$INPUT"
run inferno-collapse-perf "$BENCH_DIR/inferno.folded" inferno-collapse-perf "$INPUT"
if [ -n "${FLAMEGRAPH_DIR:-}" ]; then
  run stackcollapse-perf.pl "$BENCH_DIR/perl.folded" perl "$FLAMEGRAPH_DIR/stackcollapse-perf.pl" "$INPUT"
else
  echo "stackcollapse-perf.pl: skipped (set FLAMEGRAPH_DIR to a FlameGraph checkout)"
fi

ratio() { echo "$1 / $2" | bc -l | xargs printf '%.1f'; }
echo "kvmscope vs inferno-collapse-perf: $(ratio "${SECS[inferno-collapse-perf]}" "${SECS[kvmscope]}")x"
if [ -n "${SECS[stackcollapse-perf.pl]:-}" ]; then
  echo "kvmscope vs stackcollapse-perf.pl: $(ratio "${SECS[stackcollapse-perf.pl]}" "${SECS[kvmscope]}")x"
  if cmp -s "$BENCH_DIR/kvmscope.folded" "$BENCH_DIR/perl.folded"; then
    echo "kvmscope output is byte-identical to stackcollapse-perf.pl"
  else
    echo "WARNING: kvmscope output differs from stackcollapse-perf.pl" >&2
    exit 1
  fi
fi
