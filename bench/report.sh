#!/usr/bin/env bash
# Decode+report throughput per input kind: kvmscope report vs an awk count of event names on
# the same text file, and kvmscope report vs `trace-cmd report` on the same trace.dat. Prints,
# per kind, MB/s, M events/s, wall and CPU seconds, peak RSS and the ratios.
#
# The corpus (bench/corpus.sh: PVM lab ftrace / trace-cmd / perf script text, SVM and arm64
# emulated-host ftrace / trace-cmd / perf script text, each repeated to SIZE_MB MB with
# shifted timestamps; trace.dat v6 and v7 zstd of each host) is made first when missing.
#
# Usage: bench/report.sh [SIZE_MB] [KIND...]     (default 1000 MB, every kind)
#   CORPUS_DIR  where the corpus is (default ~/.cache/kvmscope/corpus)
#   RUNS        runs per tool and file, the fastest wall time is kept (default 3)
#   KVMSCOPE    the kvmscope binary to time (default: target/release/kvmscope, built first)
. "$(dirname "$0")/lib.sh"
size_mb=${1:-1000}
shift || true
corpus=${CORPUS_DIR:-$HOME/.cache/kvmscope/corpus}
bench_build

# (Re)make the corpus when a text file is missing or of another size.
probe=$corpus/pvm-ftrace.txt
if [ ! -e "$probe" ] || [ $(( $(stat -c %s "$probe") / 1000000 )) -lt $(( size_mb * 95 / 100 )) ] \
   || [ $(( $(stat -c %s "$probe") / 1000000 )) -gt $(( size_mb * 105 / 100 + 10 )) ]; then
  KVMSCOPE=$KVMSCOPE bench/corpus.sh "$size_mb" > /dev/null
fi

kinds=("$@")
if [ ${#kinds[@]} -eq 0 ]; then
  for f in "$corpus"/*.txt "$corpus"/*.dat; do kinds+=("$(basename "${f%.*}")"); done
fi

# The CPU model: ratios move with it (awk and kvmscope do not slow alike on another CPU).
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs (${cpu_model:-unknown model}); $(uname -r)"
printf '%-20s %-22s %9s %9s %8s %8s %9s\n' kind tool MB/s "M ev/s" wall cpu "peak RSS"
for kind in "${kinds[@]}"; do
  if [ -e "$corpus/$kind.txt" ]; then
    f=$corpus/$kind.txt
    cat "$f" > /dev/null # warm the page cache
    bytes=$(stat -c %s "$f")
    events=$(report_events "$f")
    read -r ks ksc ksm < <(best_of "$KVMSCOPE" report "$f")
    # Two awk baselines: the issue's `awk '{c[$5]++}'` (field 5 is the event name of
    # trace-cmd text and of ftrace text whose comms have no blank; elsewhere it is another
    # column, for ftrace text with "CPU 0/KVM" comms the timestamp, which makes awk's table
    # grow), and a count of the real event names, `awk -F': ' '{c[$2]++}'`, faster here.
    read -r aw awc awm < <(best_of awk '{c[$5]++} END {for (k in c) n++; print n}' "$f")
    read -r an anc anm < <(best_of awk -F': ' '{c[$2]++} END {for (k in c) n++; print n}' "$f")
    python3 - "$kind" "$bytes" "$events" "$ks" "$ksc" "$ksm" "$aw" "$awc" "$awm" "$an" "$anc" "$anm" <<'PY'
import sys
kind, b, ev, ks, ksc, ksm, aw, awc, awm, an, anc, anm = sys.argv[1:]
b, ev = int(b), int(ev)
ks, ksc, aw, awc, an, anc = (max(float(x), 1e-3) for x in (ks, ksc, aw, awc, an, anc))
row = lambda tool, s, c, m: print(f"{kind:<20} {tool:<22} {b/s/1e6:>9.0f} {ev/s/1e6:>9.2f} {s:>7.3f}s {c:>7.2f}s {int(m)/1024:>7.1f}MB")
row("awk '{c[$5]++}'", aw, awc, awm)
row("awk -F': ' '{c[$2]++}'", an, anc, anm)
row("kvmscope report", ks, ksc, ksm)
print(f"{kind:<20} {'ratio':<22} kvmscope/awk-\$5 {aw/ks:.2f}x wall {awc/ksc:.2f}x CPU; kvmscope/awk-names {an/ks:.2f}x wall {anc/ksc:.2f}x CPU; {b/ks/1e9:.2f} GB/s")
PY
  elif [ -e "$corpus/$kind.dat" ]; then
    f=$corpus/$kind.dat
    bytes=$(stat -c %s "$f")
    events=$(report_events "$f")
    read -r ks ksc ksm < <(best_of "$KVMSCOPE" report "$f")
    read -r tc tcc tcm < <(best_of trace-cmd report -i "$f")
    python3 - "$kind" "$bytes" "$events" "$ks" "$ksc" "$ksm" "$tc" "$tcc" "$tcm" <<'PY'
import sys
kind, b, ev, ks, ksc, ksm, tc, tcc, tcm = sys.argv[1:]
b, ev = int(b), int(ev)
ks, ksc, tc, tcc = (max(float(x), 1e-3) for x in (ks, ksc, tc, tcc))
row = lambda tool, s, c, m: print(f"{kind:<20} {tool:<22} {b/s/1e6:>9.0f} {ev/s/1e6:>9.2f} {s:>7.3f}s {c:>7.2f}s {int(m)/1024:>7.1f}MB")
row("trace-cmd report", tc, tcc, tcm)
row("kvmscope report", ks, ksc, ksm)
print(f"{kind:<20} {'ratio':<22} kvmscope/trace-cmd {tc/ks:.1f}x events/s ({ev} events; whole command, startup included)")
PY
  else
    echo "no $kind.txt or $kind.dat in $corpus" >&2
  fi
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
