#!/usr/bin/env bash
# Instructions per event, counted by valgrind's callgrind: kvmscope report against awk's count
# of field 5 on the first SLICE_MB MB of each text kind of the corpus (bench/corpus.sh), and
# against `trace-cmd report` on each trace.dat kind.
# Unlike wall time, the count does not move with the machine's load: the same binary on the
# same input gives the same count to within 0.01% (both threads of the report summed). It moves
# with the CPU only where code picks its instructions by CPU feature (memchr's AVX2 or SSE2).
# It is the measure for A/B runs of the decoder on a shared machine. What each instruction
# costs still differs by CPU, so it does not replace bench/report.sh's wall ratios.
#
# Each tool's fixed cost (start-up, the end of the report) is taken out, so the figure is the
# cost of one more event: text is also measured on the kind's first 200 lines, and a trace.dat
# kind on two files made from the host's recorded unit (corpus/unit/HOST-v6.dat) by
# crates/tracedat/examples/repeat.rs, of about DAT_MB and twice DAT_MB MB (whole copies of the
# unit; v7 zstd: those two converted by `trace-cmd convert`), the difference taken.
#
# Usage: bench/instructions.sh [SLICE_MB] [KIND...]   (default 30 MB, every text and trace.dat kind)
#   DAT_MB      the smaller trace.dat of each pair (default 4)
#   CORPUS_DIR  where the corpus is (default ~/.cache/kvmscope/corpus)
#   KVMSCOPE    the kvmscope binary (default: target/release/kvmscope, built first)
#   PROFILE     a directory: keep kvmscope's callgrind profile of each kind there
#               (callgrind_annotate reads them)
. "$(dirname "$0")/lib.sh"
slice_mb=${1:-30}
shift || true
corpus=${CORPUS_DIR:-$HOME/.cache/kvmscope/corpus}
command -v valgrind >/dev/null || { echo "valgrind is not installed: apt-get install valgrind" >&2; exit 1; }
bench_build
[ -e "$corpus/pvm-ftrace.txt" ] || { echo "no corpus in $corpus: run bench/corpus.sh first" >&2; exit 1; }

work=$(mktemp -d /tmp/kvmscope-instructions.XXXXXX)
trap 'rm -rf "$work"' EXIT

kinds=("$@")
if [ ${#kinds[@]} -eq 0 ]; then
  for f in "$corpus"/*.txt "$corpus"/*.dat; do kinds+=("$(basename "${f%.*}")"); done
fi

# instructions CMD...: the instructions CMD executes, every thread.
instructions() {
  local n
  n=$(valgrind --tool=callgrind --callgrind-out-file="${CG_OUT:-/dev/null}" "$@" 2>&1 >/dev/null \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
  [ -n "$n" ] || { echo "callgrind counted nothing for: $*" >&2; return 1; }
  echo "$n"
}

printf '%-18s %10s %16s %18s %8s\n' kind events "peer ins/event" "kvmscope ins/event" "peer/kvmscope"
for kind in "${kinds[@]}"; do
  if [ -e "$corpus/$kind.txt" ]; then
    f=$corpus/$kind.txt
    # Whole lines only: the slice's cut-off last line is dropped.
    head -c "$((slice_mb * 1000000))" "$f" | sed '$d' > "$work/slice.txt"
    head -n 200 "$f" > "$work/start.txt"
    small=$work/start.txt big=$work/slice.txt
    peer=(awk '{c[$5]++} END {for (k in c) n++; print n}')
    peer_name="awk '{c[\$5]++}'"
  elif [ -e "$corpus/$kind.dat" ]; then
    host=${kind%%-*}
    unit=$corpus/unit/$host-v6.dat
    [ -e "$unit" ] || { echo "no $unit: run bench/corpus.sh" >&2; continue; }
    for n in 1 2; do
      nice -n 15 cargo run --release -q -p kvmscope-tracedat --example repeat -- \
        "$unit" "$work/$n.dat" "$(( n * ${DAT_MB:-4} ))" 2> "$work/repeat.log" \
        || { echo "repeating $unit failed: $(head -c 300 "$work/repeat.log")" >&2; exit 1; }
      if [ "${kind#*-}" = v7-zstd ]; then
        trace-cmd convert --file-version 7 --compression zstd -i "$work/$n.dat" -o "$work/$n.v7" \
          > /dev/null 2>&1 || { echo "trace-cmd convert failed on $work/$n.dat" >&2; continue 2; }
        mv "$work/$n.v7" "$work/$n.dat"
      fi
    done
    small=$work/1.dat big=$work/2.dat
    peer=(trace-cmd report -i)
    peer_name="trace-cmd report"
  else
    echo "no $kind.txt or $kind.dat in $corpus" >&2
    continue
  fi
  e1=$(report_events "$big")
  e0=$(report_events "$small")
  k1=$(CG_OUT=${PROFILE:+$PROFILE/$kind.callgrind} instructions "$KVMSCOPE" report "$big")
  k0=$(instructions "$KVMSCOPE" report "$small")
  p1=$(instructions "${peer[@]}" "$big")
  p0=$(instructions "${peer[@]}" "$small")
  python3 - "$kind" "$e1" "$e0" "$k1" "$k0" "$p1" "$p0" "$peer_name" <<'PY'
import sys
kind, e1, e0, k1, k0, p1, p0, peer = sys.argv[1], *map(int, sys.argv[2:8]), sys.argv[8]
n = e1 - e0
if n <= 0:
    sys.exit(f"{kind}: the two inputs have the same number of events ({e1}): raise DAT_MB")
k, p = (k1 - k0) / n, (p1 - p0) / n
print(f"{kind:<18} {n:>10} {p:>16.0f} {k:>18.0f} {p / k:>7.2f}x  ({peer})")
PY
done
