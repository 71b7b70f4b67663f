#!/usr/bin/env bash
# Overhead of `kvmscope top`: the lab guest's action rate (OUTs per second by a `pio` guest,
# each one a kvm_pio, a kvm_userspace_exit, a kvm_emulate_insn and two kvm_fpu events) with
# nothing counting, with `kvmscope top` counting (default: every kvm event; and -x, with the
# drill-down children: exit reasons, userspace-exit reasons, hot ports and MSRs), and with `perf stat -a -I 1000 -e 'kvm:*'` (kvm_stat's
# mechanism). Rounds alternate the configurations so that drift hits them alike; the median
# of each is printed with its slowdown against the baseline.
#
# The rate is guest actions per CPU-second of the lab process (user + system time, from
# getrusage of the child): counting costs CPU time in the kernel on the vCPU thread, and
# this measure does not move when other processes compete for the CPUs, as wall-clock
# rates do on a shared machine. Set RATE=wall for actions per wall-clock second.
#
# usage: bench/top.sh [ROUNDS] [SECS] [SCENARIO]   (defaults: 5 rounds of 5 s, pio)
. "$(dirname "$0")/lib.sh"

ROUNDS=${1:-5}
SECS=${2:-5}
SCENARIO=${3:-pio}

bench_build
mount_tracefs

measure() {
  case $1 in
    none) lab_rate "$SCENARIO" "$SECS" ;;
    top) rate_under INT "$SCENARIO" "$SECS" "$KVMSCOPE" top --log --interval 1s ;;
    top-x) rate_under INT "$SCENARIO" "$SECS" "$KVMSCOPE" top --log --interval 1s -x ;;
    perf-stat) rate_under INT "$SCENARIO" "$SECS" perf stat -a -I 1000 -e 'kvm:*' ;;
  esac
}

alternate_rounds "$ROUNDS" none top top-x perf-stat
