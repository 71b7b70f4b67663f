#!/usr/bin/env bash
# Decode+report throughput: kvmscope vs `trace-cmd report` and an awk count of event names,
# on the same real capture. Prints MB/s, events/s, peak RSS and the ratios.
#
# 1. A lab guest (pio + msr) runs while a private tracefs instance records the kvm events.
# 2. `trace-cmd extract -B <instance>` writes the trace.dat; `trace-cmd report` on it is timed
#    (events/s) and its text output is the input for the others.
# 3. That text is repeated to about $SIZE_MB MB (real lines; timestamps repeat, which no
#    counter here cares about) and kvmscope report and awk are timed on it.
#
# Needs root, /dev/kvm, tracefs, trace-cmd. Usage: bench/report.sh [SIZE_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-1000}
work=${BENCH_DIR:-$(mktemp -d /tmp/kvmscope-bench.XXXXXX)}
cargo build --release -q
kvmscope=$PWD/target/release/kvmscope
[ -n "${CARGO_TARGET_DIR:-}" ] && kvmscope=$CARGO_TARGET_DIR/release/kvmscope

t=/sys/kernel/tracing
mountpoint -q "$t" || mount -t tracefs nodev "$t"
inst=kvmscope-bench-$$
mkdir "$t/instances/$inst"
cleanup() {
  [ -d "$t/instances/$inst" ] || return 0
  echo 0 > "$t/instances/$inst/events/enable"
  rmdir "$t/instances/$inst"
}
trap cleanup EXIT
echo 262144 > "$t/instances/$inst/buffer_size_kb"
echo 1 > "$t/instances/$inst/events/kvm/enable"
"$kvmscope" lab run pio --count 200000 > /dev/null
"$kvmscope" lab run msr --count 200000 > /dev/null
echo 0 > "$t/instances/$inst/events/enable"
trace-cmd extract -B "$inst" -o "$work/run.dat" > /dev/null 2>&1
cleanup
trap - EXIT

secs() { /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/out" 2>/dev/null; cat "$work/time"; }

read -r tc_s tc_kb < <(secs trace-cmd report -i "$work/run.dat")
mv "$work/out" "$work/run.txt"
events=$(grep -c ': kvm_' "$work/run.txt" || true)
run_bytes=$(stat -c %s "$work/run.txt")
reps=$(( size_mb * 1000000 / run_bytes + 1 ))
: > "$work/big.txt"
for _ in $(seq "$reps"); do cat "$work/run.txt" >> "$work/big.txt"; done
big_bytes=$(stat -c %s "$work/big.txt")
big_events=$(( events * reps ))
cat "$work/big.txt" > /dev/null # warm the page cache

read -r ks_s ks_kb < <(secs "$kvmscope" report "$work/big.txt")
read -r awk_s awk_kb < <(secs awk '{c[$5]++} END {for (k in c) print k, c[k]}' "$work/big.txt")

python3 - "$events" "$tc_s" "$tc_kb" "$big_bytes" "$big_events" "$ks_s" "$ks_kb" "$awk_s" "$awk_kb" <<'PY'
import sys
ev, tc_s, tc_kb, big_b, big_ev, ks_s, ks_kb, awk_s, awk_kb = sys.argv[1:]
ev, big_b, big_ev = int(ev), int(big_b), int(big_ev)
tc_s, ks_s, awk_s = (max(float(x), 1e-3) for x in (tc_s, ks_s, awk_s))
mb = big_b / 1e6
print(f"input: {ev} kvm events recorded from lab guests; text repeated to {mb:.0f} MB, {big_ev} events")
print(f"{'tool':<26}{'MB/s':>10}{'M events/s':>12}{'peak RSS':>12}")
print(f"{'trace-cmd report (.dat)':<26}{'-':>10}{ev/tc_s/1e6:>12.2f}{int(tc_kb)/1024:>10.1f}MB")
print(f"{'awk count of names':<26}{mb/awk_s:>10.0f}{big_ev/awk_s/1e6:>12.2f}{int(awk_kb)/1024:>10.1f}MB")
print(f"{'kvmscope report':<26}{mb/ks_s:>10.0f}{big_ev/ks_s/1e6:>12.2f}{int(ks_kb)/1024:>10.1f}MB")
print(f"ratios: kvmscope/awk {awk_s/ks_s:.2f}x (MB/s); kvmscope/trace-cmd {(big_ev/ks_s)/(ev/tc_s):.1f}x (events/s)")
PY
