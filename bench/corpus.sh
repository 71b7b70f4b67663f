#!/usr/bin/env bash
# The benchmark corpus: one file per input kind users have, made from real captures and
# repeated to about SIZE_MB MB (default 1000), in $CORPUS_DIR (default ~/.cache/kvmscope/corpus,
# outside the checkout: never committed).
#
# Sources (all real recordings, nothing synthesised):
#   pvm      the lab captures of this machine (tests/fixtures/host: ftrace `trace` files with
#            the flags and tgid columns, `perf script`) and the trace.dat fixture of `kvmscope
#            record` (v6); `trace-cmd report` of the v6 file is the trace-cmd text.
#   svm      `kvmscope lab matrix --host svm --perf` (upstream kvm_amd under QEMU TCG, every
#            scenario, ~1 min with a warm ~/.cache/kvmscope): each scenario's trace.dat and
#            `perf script`, concatenated.
#   arm64    `kvmscope lab run ipi --host arm64` (upstream arm64 KVM, a 2-vCPU Linux guest under
#            qemu-system-aarch64 on the emulated host, ~1 min): the host's trace.dat.
# Text kinds per host: `trace-cmd report` output, and ftrace `trace`-file text with the flags
# column (`comm-tid [cpu] flags ts: name: fields`): `trace-cmd report` gives the full comm,
# CPU and time, `trace-cmd report -l` the same records' flags (its latency format truncates
# comms to 8 bytes), and the two are merged line by line into the kernel's `trace` layout.
# trace.dat kinds: each host's file as recorded (v6), its pages repeated to about TRACEDAT_MB
# MB (crates/tracedat/examples/repeat.rs), and `trace-cmd convert --file-version 7
# --compression zstd` of that file.
#
# Repetition: each copy of a unit (text lines; a trace.dat's ring-buffer pages) is shifted by
# the unit's time span plus one second, so time keeps increasing (pairing, pacing gaps and the
# timeline see a longer trace, not a loop).
#
# Usage: bench/corpus.sh [SIZE_MB]    (prints the corpus files, one per line)
#   SRC_DIR      where the emulated-host runs are kept (default $CORPUS_DIR/src); delete it to
#                record again.
#   KVMSCOPE     the kvmscope binary (default: target/release/kvmscope, built first).
#   TRACEDAT_MB  the size of the trace.dat v6 kinds (default 200).
. "$(dirname "$0")/lib.sh"
size_mb=${1:-1000}
corpus=${CORPUS_DIR:-$HOME/.cache/kvmscope/corpus}
src=${SRC_DIR:-$corpus/src}
mkdir -p "$corpus" "$src"
bench_build

# 1. The emulated hosts' recordings (once; kept in $src).
if [ ! -e "$src/svm/done" ]; then
  echo "recording: lab matrix --host svm --perf (about a minute)" >&2
  rm -rf "$src/svm"
  "$KVMSCOPE" lab matrix --host svm --perf --out "$src/svm" > "$src/svm.log" 2>&1
  touch "$src/svm/done"
fi
if [ ! -e "$src/arm64/done" ]; then
  echo "recording: lab run ipi --host arm64 (about a minute)" >&2
  rm -rf "$src/arm64"
  "$KVMSCOPE" lab run ipi --host arm64 --out "$src/arm64" > "$src/arm64.log" 2>&1
  touch "$src/arm64/done"
fi

# 2. One unit per kind (real lines), in $corpus/unit.
unit=$corpus/unit
mkdir -p "$unit"
svm_dats=$(find "$src/svm" -name trace.dat | sort)
[ -n "$svm_dats" ] || { echo "no trace.dat under $src/svm (see $src/svm.log)" >&2; exit 1; }
arm64_dat=$(find "$src/arm64" -name trace.dat | sort | head -1)
[ -n "$arm64_dat" ] || { echo "no trace.dat under $src/arm64 (see $src/arm64.log)" >&2; exit 1; }

# The captures only, not the .lab.txt / .report.txt notes beside them.
for f in tests/fixtures/host/pvm-*.txt; do
  case $f in *.lab.txt | *.report.txt) ;; *) cat "$f" ;; esac
done > "$unit/pvm-ftrace.txt"
cp tests/fixtures/host/perf-script-pio.perfscript "$unit/pvm-perf-script.txt"
cp tests/fixtures/tracedat/kvmscope-record-lab-v6.dat "$unit/pvm-v6.dat"
trace-cmd report -i "$unit/pvm-v6.dat" 2>/dev/null > "$unit/pvm-trace-cmd.txt"

# Each host's trace.dat (the largest SVM scenario stands for the SVM files), and the text.
biggest=$(ls -S $svm_dats | head -1)
cp "$biggest" "$unit/svm-v6.dat"
cp "$arm64_dat" "$unit/arm64-v6.dat"
: > "$unit/svm-trace-cmd.txt"
: > "$unit/svm-ftrace.txt"
: > "$unit/svm-perf-script.txt"
to_ftrace() { # trace.dat -> ftrace `trace` text with the flags column
  python3 - "$1" <<'PY'
import re, subprocess, sys
dat = sys.argv[1]
run = lambda *a: subprocess.run(["trace-cmd", "report", *a, "-i", dat], capture_output=True,
                               text=True, errors="replace").stdout.splitlines()
full, lat = run(), run("-l")
head = re.compile(r"^\s*(?:\S+:\s+)?(.*?)-(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+(\S+):\s*(.*)$")
lat_re = re.compile(r"^.*?-\d+\s+\d+(\S{5,6})\s+(\d+\.\d+):")
out, li = [], 0
lat = [l for l in lat if lat_re.match(l)]
for line in full:
    m = head.match(line)
    if not m:
        continue
    comm, tid, cpu, ts, name, rest = m.groups()
    # the -l line of the same record: same timestamp, in the same order
    while li < len(lat) and lat_re.match(lat[li]).group(2) != ts:
        li += 1
    flags = lat_re.match(lat[li]).group(1)[:5] if li < len(lat) else "....."
    li += 1
    out.append(f"{comm:>16}-{tid:<7} [{int(cpu):03d}] {flags} {ts:>12}: {name}: {rest}")
sys.stdout.write("# tracer: nop\n#\n" + "\n".join(out) + "\n")
PY
}
for d in $svm_dats; do
  trace-cmd report -i "$d" 2>/dev/null | grep -v '^cpus=' >> "$unit/svm-trace-cmd.txt"
  to_ftrace "$d" >> "$unit/svm-ftrace.txt"
  p=$(dirname "$d")/perf.script
  [ -e "$p" ] && cat "$p" >> "$unit/svm-perf-script.txt"
done
trace-cmd report -i "$arm64_dat" 2>/dev/null > "$unit/arm64-trace-cmd.txt"
to_ftrace "$arm64_dat" > "$unit/arm64-ftrace.txt"
[ -s "$unit/svm-perf-script.txt" ] || rm -f "$unit/svm-perf-script.txt"

# 3. Text units repeated to size_mb with shifted timestamps.
python3 - "$unit" "$corpus" "$size_mb" <<'PY'
import os, re, sys
unit, corpus, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
ts = re.compile(r"(?<=[ \]])(\d+)(\.\d+:[ \t])")
for name in sorted(os.listdir(unit)):
    if not name.endswith(".txt"):
        continue
    text = open(os.path.join(unit, name), encoding="utf-8", errors="surrogateescape").read()
    lines = text.splitlines(keepends=True)
    header = "".join(l for l in lines if l.startswith(("#", "cpus=")))
    # Split every line at its timestamp's seconds: piece, seconds, piece, seconds, ..., piece.
    parts, secs, buf = [], [], ""
    for line in lines:
        if line.startswith(("#", "cpus=")):
            continue
        m = ts.search(line)
        if m:
            parts.append(buf + line[: m.start(1)])
            secs.append(int(m.group(1)))
            buf = line[m.end(1) :]
        else:
            buf += line
    parts.append(buf)
    span = (max(secs) - min(secs) + 1) if secs else 0
    target = size_mb * 1_000_000
    out_path = os.path.join(corpus, name)
    with open(out_path, "w", encoding="utf-8", errors="surrogateescape") as out:
        out.write(header)
        written, rep = len(header), 0
        while written < target:
            shift = rep * span
            chunk = "".join([p + str(s + shift) for p, s in zip(parts, secs)]) + parts[-1]
            out.write(chunk)
            written += len(chunk)
            rep += 1
    print(out_path)
PY

# 4. Each host's trace.dat pages repeated to TRACEDAT_MB MB with shifted time, and its v7 zstd.
for h in pvm svm arm64; do
  nice -n 15 cargo run --release -q -p kvmscope-tracedat --example repeat -- \
    "$unit/$h-v6.dat" "$corpus/$h-v6.dat" "${TRACEDAT_MB:-200}"
  echo "$corpus/$h-v6.dat"
  v7=$corpus/$h-v7-zstd.dat
  rm -f "$v7"
  trace-cmd convert --file-version 7 --compression zstd -i "$corpus/$h-v6.dat" -o "$v7.tmp" \
    > /dev/null 2>&1 && mv "$v7.tmp" "$v7" && echo "$v7" \
    || echo "trace-cmd convert failed on $corpus/$h-v6.dat" >&2
done
