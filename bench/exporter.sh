#!/usr/bin/env bash
# Overhead of `kvmscope exporter` on the guest it watches, measured as bench/top.sh measures
# top's: a lab guest's action rate (OUTs per CPU-second of the lab process, from getrusage of
# the child) with nothing counting, with the exporter counting every VM (scraped once a
# second, rescanning for VMs every 100 ms so that it attaches to each short-lived lab guest
# at once), with its rolling diagnosis on as well (every 5 s, 1 s windows), and with
# `kvmscope top -x` (the same counters) for reference. Rounds alternate the configurations;
# the median of each is printed with its slowdown against the baseline.
#
# usage: bench/exporter.sh [ROUNDS] [SECS] [SCENARIO]   (defaults: 5 rounds of 5 s, pio)
. "$(dirname "$0")/lib.sh"

ROUNDS=${1:-5}
SECS=${2:-5}
SCENARIO=${3:-pio}
PORT=${PORT:-19478}

bench_build
mount_tracefs

# The exporter is scraped once a second while the guest runs.
measure() {
  local listen=(--listen "127.0.0.1:$PORT" --rescan 100ms)
  case $1 in
    none) lab_rate "$SCENARIO" "$SECS" ;;
    exporter) SCRAPE_URL=http://127.0.0.1:$PORT/metrics rate_under TERM "$SCENARIO" "$SECS" \
      "$KVMSCOPE" exporter "${listen[@]}" --no-diagnosis ;;
    exporter-diag) SCRAPE_URL=http://127.0.0.1:$PORT/metrics rate_under TERM "$SCENARIO" "$SECS" \
      "$KVMSCOPE" exporter "${listen[@]}" --diagnose-every 5s --diagnose-window 1s ;;
    top-x) rate_under TERM "$SCENARIO" "$SECS" "$KVMSCOPE" top --log --interval 1s -x ;;
  esac
}

alternate_rounds "$ROUNDS" none exporter exporter-diag top-x
