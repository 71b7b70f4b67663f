#!/usr/bin/env bash
# Recording and reading speed: kvmscope record vs perf record, kvmscope's trace.dat reader vs
# trace-cmd report. Not a test: numbers go to docs/PERFORMANCE.md ("Record").
#
# Usage: bench/record.sh [SECONDS] [BUFFER_KB] [LAB ARGS...]
#   SECONDS    how long the lab load runs (default 5)
#   BUFFER_KB  per-CPU ring buffer for both tools (default 4096; perf gets the same in pages)
#   LAB ARGS   the load, as for `kvmscope lab run` (default: msr, a CPL0 guest emulated
#              instruction by instruction: ~22 kvm + kvmmmu events per WRMSR)
#
# Both recorders run at the same time on the same lab load, the same events (kvm:* and
# kvmmmu:*) on all CPUs, so they are offered exactly the same events: any difference in the
# counts is loss. Reported per tool: events, events lost (the kernel's counters), the
# recorder's own CPU time per million events, and file bytes per event. Other KVM users on
# the machine add events to both equally.
#
# trace-cmd record cannot run under kernel lockdown (it must write the global tracing files),
# so it is not compared here. Needs root, /dev/kvm, tracefs, perf, trace-cmd, bc, GNU time.
. "$(dirname "$0")/lib.sh"
SECS=${1:-5}
BUF_KB=${2:-4096}
shift 2 2>/dev/null || shift $#
LAB=("$@")
[ ${#LAB[@]} -gt 0 ] || LAB=(msr)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ -z "${SKIP_BUILD:-}" ]; then
  bench_build --bin kvmscope -p kvmscope
  nice -n 15 cargo build --release -p kvmscope-tracedat --example tracedat_count --quiet
fi
K=${KVMSCOPE:-$CARGO_TARGET_DIR/release/kvmscope}
COUNT=$CARGO_TARGET_DIR/release/examples/tracedat_count
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
TIME=/usr/bin/time

echo "load: kvmscope lab run ${LAB[*]} --duration ${SECS}s; buffer ${BUF_KB} KiB per CPU; $(nproc) CPUs; $(uname -r)"

REC_SECS=$((SECS + 4))
$TIME -f "%U %S" -o "$W/k.time" "$K" record --quiet --json --events kvm,mmu --buffer-kb "$BUF_KB" \
  --duration "$REC_SECS" -o "$W/k.dat" >"$W/k.json" 2>/dev/null &
K_PID=$!
$TIME -f "%U %S" -o "$W/p.time" perf record -q -e 'kvm:*' -e 'kvmmmu:*' -a -m $((BUF_KB / 4)) \
  -o "$W/p.data" -- sleep "$REC_SECS" >/dev/null 2>&1 &
P_PID=$!
sleep 2
"$K" lab run "${LAB[@]}" --duration "${SECS}s" --json >"$W/lab.json"
wait $K_PID $P_PID

ops=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ops"])' "$W/lab.json")
k_events=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"])' "$W/k.json")
k_lost=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(d["lost_events_per_cpu"]))' "$W/k.json")
p_stats=$(perf report --stats -i "$W/p.data" 2>/dev/null)
# The first block is the aggregate; per-event blocks follow.
p_events=$(awk '/ SAMPLE events:/ {print $3; exit}' <<<"$p_stats")
p_lost=$(awk '/stats:/ {n++} n == 1 && /LOST(_SAMPLES)? events:/ {s += $3} END {print s + 0}' <<<"$p_stats")
echo "perf's loss counters:"; grep -i lost <<<"$p_stats" | head -5 || echo "  (none)"
cpu() { awk '{print $1 + $2}' "$1"; }
per_m() { echo "scale=3; $1 * 1000000 / $2" | bc -l; }
tids=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["vcpu_tids"])))' "$W/lab.json")
k_guest=$("$COUNT" --tids "$tids" "$W/k.dat" | awk '/^events of tids/ {print $NF}')
p_guest=$(perf script -F tid -i "$W/p.data" 2>/dev/null | awk -v t=",$tids," 'index(t, "," $1 ",") {n++} END {print n + 0}')
printf '\nguest ops: %s (%s/s); events of the guest vCPU threads (tids %s): kvmscope %s, perf %s\n' \
  "$ops" "$((ops / SECS))" "$tids" "$k_guest" "$p_guest"
printf '%-16s %12s %12s %10s %16s %12s\n' tool events "events/s" lost "CPU s/M events" "bytes/event"
row() { printf '%-16s %12s %12.0f %10s %16s %12.1f\n' "$1" "$2" "$(echo "$2 / $SECS" | bc -l)" "$3" "$(per_m "$4" "$2")" "$(echo "$5 / $2" | bc -l)"; }
row "kvmscope record" "$k_events" "$k_lost" "$(cpu "$W/k.time")" "$(stat -c %s "$W/k.dat")"
row "perf record" "$p_events" "$p_lost" "$(cpu "$W/p.time")" "$(stat -c %s "$W/p.data")"

echo
"$COUNT" "$W/k.dat"
start=$(date +%s.%N)
trace-cmd report -i "$W/k.dat" >/dev/null 2>&1
end=$(date +%s.%N)
t=$(echo "$end - $start" | bc -l)
printf 'trace-cmd report\t%s events\t%.3f s\t%.0f events/s\n' "$k_events" "$t" "$(echo "$k_events / $t" | bc -l)"
