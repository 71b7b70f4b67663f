#!/usr/bin/env bash
# Overhead of `kvmscope exporter` on the guest it watches, measured as bench/top.sh measures
# top's: a lab guest's action rate (OUTs per CPU-second of the lab process, from getrusage of
# the child) with nothing counting, with the exporter counting every VM (scraped once a
# second, rescanning for VMs every 100 ms so that it attaches to each short-lived lab guest
# at once), with its rolling diagnosis on as well (every 5 s, 1 s windows), and with
# `kvmscope top -x` (the same counters) for reference. Rounds alternate the configurations;
# the median of each is printed with its slowdown against the baseline.
#
# usage: bench/exporter.sh [ROUNDS] [SECS] [SCENARIO]   (defaults: 5 rounds of 5 s, pio)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-5}
SECS=${2:-5}
SCENARIO=${3:-pio}
PORT=${PORT:-19478}

cargo build --release --quiet
KVMSCOPE=${CARGO_TARGET_DIR:-target}/release/kvmscope
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

rate() {
  python3 - "$KVMSCOPE" "$SCENARIO" "$SECS" <<'PY'
import json, resource, subprocess, sys
exe, scenario, secs = sys.argv[1:4]
out = subprocess.run([exe, "lab", "run", scenario, "--duration", secs + "s", "--json"],
                     check=True, capture_output=True).stdout
r = json.loads(out)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(round(r["ops"] / (ru.ru_utime + ru.ru_stime)))
PY
}

# Runs the guest while "$@" counts in the background (scraped once a second when it is the
# exporter); prints the guest's rate.
rate_under() {
  "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep 1.5 # let the counters open
  (while kill -0 "$pid" 2>/dev/null; do
     curl -s -o /dev/null "http://127.0.0.1:$PORT/metrics" || true
     sleep 1
   done) &
  local scraper=$!
  local r
  r=$(rate)
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  wait "$scraper" 2>/dev/null || true
  echo "$r"
}

declare -A results
configs=(none exporter exporter-diag top-x)
for ((i = 1; i <= ROUNDS; i++)); do
  for c in "${configs[@]}"; do
    case $c in
      none) r=$(rate) ;;
      exporter) r=$(rate_under "$KVMSCOPE" exporter --listen "127.0.0.1:$PORT" --rescan 100ms --no-diagnosis) ;;
      exporter-diag) r=$(rate_under "$KVMSCOPE" exporter --listen "127.0.0.1:$PORT" --rescan 100ms --diagnose-every 5s --diagnose-window 1s) ;;
      top-x) r=$(rate_under "$KVMSCOPE" top --log --interval 1s -x) ;;
    esac
    results[$c]="${results[$c]:-} $r"
    echo "round $i $c: $r ops/s" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(echo "${results[none]}" | median)
printf '%-18s %12s %9s   %s\n' config "median ops/cpu-s" slowdown "all rounds"
for c in "${configs[@]}"; do
  m=$(echo "${results[$c]}" | median)
  printf '%-18s %12s %8.2f%%  %s\n' "$c" "$m" "$(echo "100 * ($base - $m) / $base" | bc -l)" "${results[$c]}"
done
