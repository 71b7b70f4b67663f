#!/usr/bin/env bash
# Seeds the fuzz corpora from tests/fixtures: fuzz/corpus/<target>/ (gitignored; libFuzzer adds
# what it finds there). Large text fixtures are cut into line-aligned pieces of about 4 KiB,
# since libFuzzer mutates small inputs faster; binary trace.dat files are kept whole and their
# ring-buffer pages, format files and JSON sidecars are carved out for the narrower targets.
# Idempotent: files are named by content, so running it again adds nothing new.
# Usage: fuzz/seed.sh [corpus-dir]   (default: fuzz/corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
fx=tests/fixtures
out=${1:-fuzz/corpus}
export LC_ALL=C
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# add TARGET FILE...: copy each file into the target's corpus under its checksum.
add() {
  local t=$1; shift
  mkdir -p "$out/$t"
  local f
  for f in "$@"; do
    [ -s "$f" ] || continue
    cp "$f" "$out/$t/$(cksum <"$f" | tr ' ' '-')"
  done
}

# pieces SRC MAX: the first MAX line-aligned ~4 KiB pieces of SRC, as files in a fresh dir.
pieces() {
  local d=$tmp/p$RANDOM$RANDOM
  mkdir -p "$d"
  split -C 4096 -a 3 "$1" "$d/x"
  ls "$d"/x* | head -n "$2"
}

text=( "$fx"/public/*.txt "$fx"/diagnose/*.txt "$fx"/host/*.txt "$fx"/host/*.perfscript
       "$fx"/system/traces/guest-storms.trace )
traces=()
for f in "${text[@]}"; do
  case $f in *.lab.txt|*.report.txt) continue ;; esac
  traces+=("$f")
done

# Text traces: small files whole, big ones in pieces (the first ones hold the headers).
for f in "${traces[@]}"; do
  mapfile -t p < <(pieces "$f" 6)
  add text_decode "${p[@]}"
  add pipeline "${p[@]}"
done
# One line per event name (up to 3 of each): the line decoder's corpus.
awk '{ n = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[a-z_0-9]+(:[a-z_0-9]+)?:$/ && $(i-1) ~ /[0-9]:$/) { n = $i; break } }
     n && seen[n]++ < 3 { f = sprintf("%s/line%05d", dir, NR + 100000 * FNR % 7); print > f; close(f) }' \
     dir="$tmp" "${traces[@]}"
add text_line "$tmp"/line*

# trace.dat files whole, for both trace.dat targets.
add tracedat "$fx"/tracedat/*.dat
add tracedat_events "$fx"/tracedat/*.dat

# Ring-buffer pages: the 4 KiB-aligned blocks of the uncompressed files that are not empty.
for f in "$fx"/tracedat/kvmscope-record-lab-v6.dat "$fx"/tracedat/svm-emulated-pio.dat; do
  split -b 4096 -a 4 "$f" "$tmp/page-$(basename "$f")-"
done
for p in "$tmp"/page-*; do
  if [ "$(tr -d '\0' <"$p" | head -c 64 | wc -c)" -lt 16 ]; then rm -f "$p"; fi
done
mapfile -t pages < <(ls "$tmp"/page-* | awk 'NR % 3 == 1' | head -n 80)
add ringbuf "${pages[@]}"

# Format files and header_page/header_event texts, as stored (NUL-separated) in trace.dat.
i=0
for f in "$fx"/tracedat/kvmscope-record-lab-v6.dat "$fx"/tracedat/svm-emulated-pio.dat; do
  while IFS= read -r -d '' chunk; do
    case $chunk in *"print fmt:"*|*"field:"*) ;; *) continue ;; esac
    i=$((i + 1))
    [ $i -le 150 ] || break
    printf '%s' "$chunk" | tr -cd '[:print:]\t\n' | sed -n '/name:\|field\|type_len/,$p' >"$tmp/fmt$i"
  done <"$f"
done
add format "$fx"/tracedat/kvm_exit.format "$tmp"/fmt*

# perf script stacks, behind a first byte of options (0: none; 0x05: --pid --kernel; 0x5e:
# --tid --jit --addrs, block size 56).
for f in "$fx"/stacks/kvm-lab-perf-script.txt "$fx"/host/perf-script-pio.perfscript \
         "$fx"/public/perf-script-*.txt; do
  mapfile -t p < <(pieces "$f" 4)
  for q in "${p[@]}"; do
    for flags in '\x00' '\x05' '\x5e'; do
      { printf "$flags"; cat "$q"; } >"$q.$RANDOM"
    done
    add stacks_collapse "$q".*
  done
done

# Folded stacks: pieces, and pairs of pieces (before, form feed, after) for the diff.
mapfile -t a < <(pieces "$fx"/stacks/kvm-lab-collapsed-default.txt 3)
mapfile -t b < <(pieces "$fx"/stacks/kvm-lab-collapsed-tid.txt 3)
mapfile -t c < <(pieces "$fx"/stacks/kvm-lab-collapsed-all.txt 3)
add stacks_folded "${a[@]}" "${b[@]}" "${c[@]}"
for j in 0 1 2; do
  { head -c 1500 "${a[$j]}"; printf '\f'; head -c 1500 "${c[$j]}"; } >"$tmp/diff$j"
done
add stacks_folded "$tmp"/diff*

# /proc and /sys files of the system fixtures; interrupts with their second reading.
sys=()
for f in "$fx"/system/*/* "$fx"/diagnose/fr00*/*; do
  case $f in *.json|*/README.md|*.trace) continue ;; esac
  sys+=("$f")
done
add system_proc "${sys[@]}"
for d in "$fx"/system/*/; do
  if [ -f "$d/interrupts.after" ]; then
    { cat "$d/interrupts"; printf '\0'; cat "$d/interrupts.after"; } >"$tmp/irq-pair"
    add system_proc "$tmp/irq-pair"
  fi
done

# System snapshots: the JSON sidecars of kvmscope's own trace.dat files.
i=0
for f in "$fx"/tracedat/*.dat; do
  tr '\0' '\n' <"$f" | grep -a '"system"' | sed 's/^[^{]*{/{/' >"$tmp/snap$i" || true
  i=$((i + 1))
done
printf '{"system":{}}' >"$tmp/snap-empty"
add snapshot_json "$tmp"/snap*

# HTTP requests as a Prometheus scraper and curl send them.
printf 'GET /metrics HTTP/1.1\r\nHost: localhost:9477\r\nUser-Agent: Prometheus/2.45.0\r\nAccept: text/plain;version=0.0.4\r\n\r\n' >"$tmp/req1"
printf 'HEAD /metrics?x=1 HTTP/1.0\n\n' >"$tmp/req2"
printf 'POST / HTTP/1.1\r\n\r\n' >"$tmp/req3"
add http_request "$tmp"/req*

for t in "$out"/*/; do
  printf '%-16s %4d seeds %8d bytes\n' "$(basename "$t")" "$(find "$t" -type f | wc -l)" \
    "$(find "$t" -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }')"
done
