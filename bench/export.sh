#!/usr/bin/env bash
# Export speed and size: `kvmscope export --format perfetto|chrome-json` against `trace-cmd
# report` text on the same trace.dat, and `report --html` (page size, time) on a large text
# trace. Prints events/s, bytes per event and the ratios.
#
# 1. A lab guest (pio + msr) runs while a private tracefs instance records the kvm events;
#    `trace-cmd extract -B <instance>` writes the trace.dat.
# 2. On that trace.dat: `trace-cmd report` (text), `kvmscope export` to Perfetto and to
#    Chrome JSON are timed; output bytes per event.
# 3. `trace-cmd report` text of a trace.dat with real SVM exits (the emulated SVM host's
#    capture, $SVM_DAT) is repeated to about $SIZE_MB MB, timestamps shifted by 100 s per
#    repetition, and `export` and `report --html` are timed on it (the page size must not
#    grow with the input).
#
# Needs root, /dev/kvm, tracefs, trace-cmd. Usage: bench/export.sh [SIZE_MB]
. "$(dirname "$0")/lib.sh"
size_mb=${1:-1000}
work=${BENCH_DIR:-$(mktemp -d /tmp/kvmscope-bench.XXXXXX)}
bench_build

if [ ! -s "$work/run.dat" ]; then
  t=/sys/kernel/tracing
  mount_tracefs
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
  "$KVMSCOPE" lab run pio --count 100000 > /dev/null
  "$KVMSCOPE" lab run msr --count 100000 > /dev/null
  echo 0 > "$t/instances/$inst/events/enable"
  trace-cmd extract -B "$inst" -o "$work/run.dat" > /dev/null 2>&1
  cleanup
  trap - EXIT
fi

size() { stat -c %s "$1"; }

read -r tc_s _ _ tc_kb < <(timed "$work/run.txt" trace-cmd report -i "$work/run.dat")
events=$(grep -c ': kvm' "$work/run.txt" || true)
read -r pf_s _ _ pf_kb < <(timed /dev/null "$KVMSCOPE" export -q "$work/run.dat" -o "$work/run.pftrace")
read -r cj_s _ _ cj_kb < <(timed /dev/null "$KVMSCOPE" export -q --format chrome-json "$work/run.dat" -o "$work/run.json")

# A large text input with exits: `trace-cmd report` of a trace.dat with real SVM exits
# ($SVM_DAT, default the emulated SVM host's pio capture in tests/fixtures), repeated with
# each repetition's timestamps moved past the previous one's.
svm_dat=${SVM_DAT:-tests/fixtures/tracedat/svm-emulated-pio.dat}
trace-cmd report -i "$svm_dat" 2>/dev/null | grep -v '^cpus=' > "$work/unit.txt"
unit_bytes=$(size "$work/unit.txt")
reps=$(( size_mb * 1000000 / unit_bytes + 1 ))
awk -v reps="$reps" '
  { line[NR] = $0 }
  END {
    for (r = 0; r < reps; r++)
      for (i = 1; i <= NR; i++) {
        $0 = line[i]
        for (f = 1; f <= NF; f++)
          if ($f ~ /^[0-9]+\.[0-9]+:$/) { $f = sprintf("%.6f:", $f + r * 100); break }
        print
      }
  }' "$work/unit.txt" > "$work/big.txt"
cat "$work/big.txt" > /dev/null # warm the page cache
read -r bp_s _ _ bp_kb < <(timed /dev/null "$KVMSCOPE" export -q "$work/big.txt" -o "$work/big.pftrace")
read -r bh_s _ _ bh_kb < <(timed /dev/null "$KVMSCOPE" report "$work/big.txt" --html "$work/big.html")
big_events=$("$KVMSCOPE" report --json "$work/big.txt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["overview"]["events"])')

python3 - "$events" "$tc_s" "$tc_kb" "$(size "$work/run.txt")" "$pf_s" "$pf_kb" "$(size "$work/run.pftrace")" \
  "$cj_s" "$cj_kb" "$(size "$work/run.json")" "$(size "$work/run.dat")" \
  "$(size "$work/big.txt")" "$big_events" "$bp_s" "$bp_kb" "$(size "$work/big.pftrace")" "$bh_s" "$bh_kb" "$(size "$work/big.html")" <<'PY'
import sys
a = sys.argv[1:]
ev = int(a[0]); tc_s, tc_kb, tc_b = float(a[1]), int(a[2]), int(a[3])
pf_s, pf_kb, pf_b = float(a[4]), int(a[5]), int(a[6])
cj_s, cj_kb, cj_b = float(a[7]), int(a[8]), int(a[9])
dat_b = int(a[10])
big_b, big_ev = int(a[11]), int(a[12])
bp_s, bp_kb, bp_b = float(a[13]), int(a[14]), int(a[15])
bh_s, bh_kb, bh_b = float(a[16]), int(a[17]), int(a[18])
m = lambda s: max(s, 1e-3)
print(f"trace.dat: {ev} kvm events, {dat_b/ev:.1f} bytes/event in the trace.dat")
print(f"{'tool (on the trace.dat)':<34}{'M events/s':>12}{'bytes/event':>13}{'peak RSS':>11}")
print(f"{'trace-cmd report (text)':<34}{ev/m(tc_s)/1e6:>12.2f}{tc_b/ev:>13.1f}{tc_kb/1024:>9.1f}MB")
print(f"{'kvmscope export --format perfetto':<34}{ev/m(pf_s)/1e6:>12.2f}{pf_b/ev:>13.1f}{pf_kb/1024:>9.1f}MB")
print(f"{'kvmscope export --format chrome-json':<34}{ev/m(cj_s)/1e6:>12.2f}{cj_b/ev:>13.1f}{cj_kb/1024:>9.1f}MB")
print(f"ratios: perfetto export {(ev/m(pf_s))/(ev/m(tc_s)):.1f}x trace-cmd report's events/s, {pf_b/tc_b:.2f}x its bytes")
print(f"text with SVM exits {big_b/1e6:.0f} MB, {big_ev} events:")
print(f"  export --format perfetto: {bp_s:.2f} s, {big_ev/m(bp_s)/1e6:.2f} M events/s, {bp_b/big_ev:.1f} bytes/event, peak RSS {bp_kb/1024:.1f} MB")
print(f"  report --html: {bh_s:.2f} s, page {bh_b/1e3:.0f} kB, peak RSS {bh_kb/1024:.1f} MB")
PY
