#!/usr/bin/env bash
# Parquet/Arrow export speed, bytes per event and peak memory (docs/PERFORMANCE.md, "Export
# (Parquet)"). Not a test (tests/export_duckdb.rs checks flat memory on a 40 MB input).
#
# 1. Records a real trace.dat of a lab guest (`kvmscope record -e all -- kvmscope lab run
#    SCENARIO`), exports it, and compares the Parquet tables' bytes per event with the
#    trace.dat's.
# 2. Turns that recording into text (`trace-cmd report`), repeats the text up to SIZE_MB
#    (default 1024: a 1 GB input), exports it to Parquet and to Arrow with peak RSS (VmHWM,
#    from the summary line) and time, and times `kvmscope report` on the same input.
#
# usage: bench/export-parquet.sh [SIZE_MB] [SECS] [SCENARIO]   (defaults: 1024, 3, timer-storm)
# Needs root, /dev/kvm, tracefs, trace-cmd; writes into a temp dir (about 2x SIZE_MB).
. "$(dirname "$0")/lib.sh"
SIZE_MB=${1:-1024}
SECS=${2:-3}
SCENARIO=${3:-timer-storm}
bench_build
T=$(mktemp -d /var/tmp/kvmscope-export-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT

echo "== recording $SCENARIO for ${SECS}s"
"$KVMSCOPE" record -q -e all -o "$T/rec.dat" -- "$KVMSCOPE" lab run "$SCENARIO" --duration "${SECS}s" >/dev/null
"$KVMSCOPE" export "$T/rec.dat" --format parquet -o "$T/rec.parquet" 2>"$T/rec.log"
cat "$T/rec.log"
events=$(sed -n 's/^kvmscope export: \([0-9]*\) events.*/\1/p' "$T/rec.log")
dat=$(stat -c %s "$T/rec.dat")
pq=$(stat -c %s "$T/rec.parquet")
pqx=$(stat -c %s "$T/rec.exits.parquet")
printf 'trace.dat %d bytes = %.1f B/event; events.parquet %d bytes = %.1f B/event (%.1f%% of trace.dat); exits.parquet %d bytes\n' \
  "$dat" "$(echo "$dat / $events" | bc -l)" "$pq" "$(echo "$pq / $events" | bc -l)" "$(echo "100 * $pq / $dat" | bc -l)" "$pqx"

echo "== text input of ${SIZE_MB} MB (trace-cmd report of the recording, repeated)"
trace-cmd report -i "$T/rec.dat" 2>/dev/null | grep -v '^cpus=\|^CPU [0-9]* is empty' >"$T/one.txt"
one=$(stat -c %s "$T/one.txt")
reps=$(( (SIZE_MB * 1024 * 1024 + one - 1) / one ))
for ((i = 0; i < reps; i++)); do cat "$T/one.txt"; done >"$T/big.txt"
rm -f "$T/one.txt" "$T/rec.dat"
ls -l "$T/big.txt"
for f in parquet arrow; do
  "$KVMSCOPE" export "$T/big.txt" --format "$f" -o "$T/big.$f"
  ls -l "$T/big.$f" "$T/big.exits.$f"
  rm -f "$T/big.$f" "$T/big.exits.$f"
done
echo "== kvmscope report on the same input"
/usr/bin/time -f '%e s, peak RSS %M kB' "$KVMSCOPE" report "$T/big.txt" >/dev/null
