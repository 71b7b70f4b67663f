# Shared by the bench/*.sh scripts (sourced, not run): the kvmscope binary, tracefs, timing a
# command, the events a report read, and the lab guest's rate under a counting tool. Sourcing it moves to the checkout's
# root and sets `set -euo pipefail`.
#
#   KVMSCOPE  the kvmscope binary to run; when unset, `bench_build` builds the release binary
#             and sets it (target/release/kvmscope, or under $CARGO_TARGET_DIR).
#   RUNS      how many runs `best_of` keeps the fastest of (default 3).
#   RATE      `lab_rate`: cpu (default, guest actions per CPU-second of the lab process) or
#             wall (actions per wall-clock second).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# bench_build [CARGO BUILD ARGS...]: unless $KVMSCOPE is set, `cargo build --release --quiet`
# with these arguments (at nice 15: the build is not what is timed), and $KVMSCOPE set to the
# binary's absolute path.
bench_build() {
  if [ -n "${KVMSCOPE:-}" ]; then
    return 0
  fi
  nice -n 15 cargo build --release --quiet "$@"
  KVMSCOPE=$(realpath "${CARGO_TARGET_DIR:-target}/release/kvmscope")
}

# mount_tracefs: mounts tracefs at /sys/kernel/tracing unless it is mounted.
mount_tracefs() {
  mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
}

# timed OUT CMD...: runs CMD once, its standard output to OUT; prints "wall_s user_s sys_s
# peak_rss_kb": CPU and memory from GNU time, the wall from the clock around it, to the
# millisecond (GNU time's %e has 10 ms steps: 2% of a half-second run). Fails, with the start
# of CMD's standard error, when CMD fails.
timed() {
  local out=$1 time err t0 t1 u s m
  shift
  time=$(mktemp)
  err=$(mktemp)
  t0=$(date +%s%N)
  if ! /usr/bin/time -f "%U %S %M" -o "$time" "$@" > "$out" 2> "$err"; then
    echo "failed: $* ($(head -c 300 "$err"))" >&2
    rm -f "$time" "$err"
    return 1
  fi
  t1=$(date +%s%N)
  read -r u s m < "$time"
  printf '%d.%03d %s %s %s\n' $(( (t1 - t0) / 1000000000 )) $(( (t1 - t0) / 1000000 % 1000 )) "$u" "$s" "$m"
  rm -f "$time" "$err"
}

# best_of CMD...: "wall_s cpu_s peak_rss_kb" of the fastest of $RUNS runs (output discarded).
best_of() {
  local best="" e u s m
  for _ in $(seq "${RUNS:-3}"); do
    read -r e u s m < <(timed /dev/null "$@")
    if [ -z "$best" ] || (( $(echo "$e < ${best%% *}" | bc) )); then
      best="$e $(echo "$u + $s" | bc) $m"
    fi
  done
  echo "$best"
}

# report_events FILE: the events `kvmscope report` read from FILE (its first input's count).
report_events() {
  "$KVMSCOPE" report --json "$1" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["inputs"][0]["events"])'
}

# lab_rate SCENARIO SECS: runs `kvmscope lab run SCENARIO` for SECS seconds; prints its rate
# (see RATE above). CPU time does not move when other processes compete for the CPUs, as
# wall-clock rates do on a shared machine; counting costs CPU time on the vCPU thread.
lab_rate() {
  python3 - "$KVMSCOPE" "$1" "$2" "${RATE:-cpu}" <<'PY'
import json, resource, subprocess, sys
exe, scenario, secs, how = sys.argv[1:5]
out = subprocess.run([exe, "lab", "run", scenario, "--duration", secs + "s", "--json"],
                     check=True, capture_output=True).stdout
r = json.loads(out)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = ru.ru_utime + ru.ru_stime
print(round(r["ops_per_sec"] if how == "wall" else r["ops"] / cpu))
PY
}

# rate_under SIGNAL SCENARIO SECS CMD...: runs the lab guest while CMD counts in the background
# (given 1.5 s to open its counters, stopped with SIGNAL afterwards); prints the guest's rate.
# With $SCRAPE_URL set, that URL is fetched once a second while CMD runs.
rate_under() {
  local signal=$1 scenario=$2 secs=$3
  shift 3
  "$@" >/dev/null 2>&1 &
  local pid=$! scraper=""
  sleep 1.5 # let the counters open
  if [ -n "${SCRAPE_URL:-}" ]; then
    (while kill -0 "$pid" 2>/dev/null; do
       curl -s -o /dev/null "$SCRAPE_URL" || true
       sleep 1
     done) &
    scraper=$!
  fi
  local r
  r=$(lab_rate "$scenario" "$secs")
  kill -"$signal" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -z "$scraper" ] || wait "$scraper" 2>/dev/null || true
  echo "$r"
}

# alternate_rounds ROUNDS CONFIG...: ROUNDS times, `measure CONFIG` (a function of the calling
# script that prints one rate) for each configuration in turn, so that drift hits them alike;
# then the median of each with its slowdown against the first configuration.
alternate_rounds() {
  local rounds=$1 i c r m base
  shift
  local -A results=()
  for ((i = 1; i <= rounds; i++)); do
    for c in "$@"; do
      r=$(measure "$c")
      results[$c]="${results[$c]:-} $r"
      echo "round $i $c: $r ops/s" >&2
    done
  done
  base=$(echo "${results[$1]}" | median)
  printf '%-18s %12s %9s   %s\n' config "median ops/${RATE:-cpu}-s" slowdown "all rounds"
  for c in "$@"; do
    m=$(echo "${results[$c]}" | median)
    printf '%-18s %12s %8.2f%%  %s\n' "$c" "$m" "$(echo "100 * ($base - $m) / $base" | bc -l)" "${results[$c]}"
  done
}

# median: the median of the numbers on standard input (blank-separated).
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
