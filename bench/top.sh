#!/usr/bin/env bash
# Overhead of `kvmscope top`: the lab guest's action rate (OUTs per second by a `pio` guest,
# each one a kvm_pio, a kvm_userspace_exit, a kvm_emulate_insn and two kvm_fpu events) with
# nothing counting, with `kvmscope top` counting (default: every kvm event; and -x, with the
# drill-down children: exit reasons, userspace-exit reasons, hot ports and MSRs), and with `perf stat -a -I 1000 -e 'kvm:*'` (kvm_stat's
# mechanism). Rounds alternate the configurations so that drift hits them alike; the median
# of each is printed with its slowdown against the baseline.
#
# The rate is guest actions per CPU-second of the lab process (user + system time, from
# getrusage of the child): counting costs CPU time in the kernel on the vCPU thread, and
# this measure does not move when other processes compete for the CPUs, as wall-clock
# rates do on a shared machine. Set RATE=wall for actions per wall-clock second.
#
# usage: bench/top.sh [ROUNDS] [SECS] [SCENARIO]   (defaults: 5 rounds of 5 s, pio)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-5}
SECS=${2:-5}
SCENARIO=${3:-pio}

cargo build --release --quiet
KVMSCOPE=${CARGO_TARGET_DIR:-target}/release/kvmscope
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

rate() {
  python3 - "$KVMSCOPE" "$SCENARIO" "$SECS" "${RATE:-cpu}" <<'PY'
import json, resource, subprocess, sys
exe, scenario, secs, how = sys.argv[1:5]
out = subprocess.run([exe, "lab", "run", scenario, "--duration", secs + "s", "--json"],
                     check=True, capture_output=True).stdout
r = json.loads(out)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = ru.ru_utime + ru.ru_stime
print(round(r["ops_per_sec"] if how == "wall" else r["ops"] / cpu))
PY
}

# Runs the guest while "$@" counts in the background; prints the guest's rate.
rate_under() {
  "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep 1.5 # let the counters open
  local r
  r=$(rate)
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "$r"
}

declare -A results
configs=(none top top-x perf-stat)
for ((i = 1; i <= ROUNDS; i++)); do
  for c in "${configs[@]}"; do
    case $c in
      none) r=$(rate) ;;
      top) r=$(rate_under "$KVMSCOPE" top --log --interval 1s) ;;
      top-x) r=$(rate_under "$KVMSCOPE" top --log --interval 1s -x) ;;
      perf-stat) r=$(rate_under perf stat -a -I 1000 -e 'kvm:*') ;;
    esac
    results[$c]="${results[$c]:-} $r"
    echo "round $i $c: $r ops/s" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(echo "${results[none]}" | median)
printf '%-18s %12s %9s   %s\n' config "median ops/${RATE:-cpu}-s" slowdown "all rounds"
for c in "${configs[@]}"; do
  m=$(echo "${results[$c]}" | median)
  printf '%-18s %12s %8.2f%%  %s\n' "$c" "$m" "$(echo "100 * ($base - $m) / $base" | bc -l)" "${results[$c]}"
done
