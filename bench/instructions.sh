#!/usr/bin/env bash
# Instructions per event line, kvmscope report against awk's count of field 5, on the first
# SLICE_MB MB of each text kind of the corpus (bench/corpus.sh), counted by valgrind's callgrind.
# Unlike wall time, the count does not move with the machine's load or with which CPU it is:
# the same binary on the same input gives the same count to within 0.01% (both threads of the
# report summed). It is the measure for A/B runs of the decoder on a shared machine. What each
# instruction costs still differs by CPU, so it does not replace bench/report.sh's wall ratios.
#
# Each tool's fixed cost (start-up, the end of the report) is taken out: it is measured on the
# kind's first 200 lines and subtracted, so the figure is the cost of one more line.
#
# Usage: bench/instructions.sh [SLICE_MB] [KIND...]   (default 30 MB, every text kind)
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
  for f in "$corpus"/*.txt; do kinds+=("$(basename "${f%.txt}")"); done
fi

# instructions CMD...: the instructions CMD executes, every thread.
instructions() {
  valgrind --tool=callgrind --callgrind-out-file="${CG_OUT:-/dev/null}" "$@" 2>&1 >/dev/null \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

printf '%-18s %10s %14s %14s %9s\n' kind lines "awk ins/line" "kvmscope ins/line" "awk/kvmscope"
for kind in "${kinds[@]}"; do
  f=$corpus/$kind.txt
  [ -e "$f" ] || { echo "no $kind.txt in $corpus" >&2; continue; }
  # Whole lines only: the slice's cut-off last line is dropped.
  head -c "$((slice_mb * 1000000))" "$f" | sed '$d' > "$work/slice.txt"
  head -n 200 "$f" > "$work/start.txt"
  lines=$(wc -l < "$work/slice.txt")
  k1=$(CG_OUT=${PROFILE:+$PROFILE/$kind.callgrind} instructions "$KVMSCOPE" report "$work/slice.txt")
  k0=$(instructions "$KVMSCOPE" report "$work/start.txt")
  a1=$(instructions awk '{c[$5]++} END {for (k in c) n++; print n}' "$work/slice.txt")
  a0=$(instructions awk '{c[$5]++} END {for (k in c) n++; print n}' "$work/start.txt")
  python3 - "$kind" "$lines" "$k1" "$k0" "$a1" "$a0" <<'PY'
import sys
kind, lines, k1, k0, a1, a0 = sys.argv[1], *map(int, sys.argv[2:])
k, a = (k1 - k0) / (lines - 200), (a1 - a0) / (lines - 200)
print(f"{kind:<18} {lines:>10} {a:>14.0f} {k:>14.0f} {a / k:>8.2f}x")
PY
done
