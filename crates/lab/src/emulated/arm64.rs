//! Scenarios on an emulated arm64 host ([`Flavour::Arm64`](super::Flavour::Arm64) and
//! `Arm64Nvhe`). kvmscope is an x86_64 program and cannot run there, so each job records with
//! tracefs from the shell (`ktrace`: a private instance, the binary per-CPU pages, the
//! format files and tables kept as files) and the caller assembles a trace.dat outside
//! (`kvmscope_tracedat::assemble`).
//!
//! The guest is a nested 2-vCPU Linux (the host's own kernel Image and a small busybox
//! initramfs) under Debian's arm64 `qemu-system-aarch64` with `-accel kvm -cpu host`. Its
//! init reads the scenario from its command line, records its own side (ipi, csd, irq,
//! timer), saves `/proc/interrupts` before and after (the ground truth: the IPIs it sent) and
//! brings everything back through its own virtio disk. The host records the kvm, ipi, csd,
//! timer and irq events between the guest's start and end markers only, so the guest's boot
//! is not in the trace.
//!
//! A job's directory:
//!
//! ```text
//! host-trace/        the host's tracefs copy (assemble into trace.dat)
//! host-snap/         the host's /proc and /sys files (kvmscope_system::collect_from)
//! guest-console.log  the guest's console and the VMM's messages
//! guest/trace/       the guest's tracefs copy (assemble into guest-trace.dat)
//! guest/snap-start/  the guest's /proc and /sys files at the start
//! guest/interrupts.before, guest/interrupts.after
//! guest/result       what the scenario's own loop counted (e.g. round trips)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{a64, cpio, elf, packages, Job, Tree};
use crate::LabError;
use packages::io_err;

/// Marker the guest prints when its scenario is about to start (the host starts recording).
pub const GUEST_START: &str = "@@kvmscope-guest:start";
/// Marker the guest prints when its scenario ended (the host stops recording).
pub const GUEST_END: &str = "@@kvmscope-guest:end";

/// One scenario the nested guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Its name (`kvmscope lab run NAME --host arm64`).
    pub name: &'static str,
    /// What it does and what its ground truth promises.
    pub describe: &'static str,
    /// Extra guest kernel command-line words.
    pub guest_cmdline: &'static str,
}

/// Every arm64 scenario.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "ipi",
        describe: "two tasks pinned to vCPU 0 and 1 ping-pong over fifos (a shell loop) and over pipes (a static arm64 program, far faster): remote wake-ups, reschedule and sched_ttwu_pending IPIs, while a third on vCPU 0 toggles a tracepoint (kernel text patching: function-call IPIs to do_nothing via kick_all_cpus_sync); every guest IPI is an ICC_SGI1R_EL1 write trapped by the host",
        guest_cmdline: "",
    },
    Scenario {
        name: "wfx",
        describe: "both vCPUs sleep in 2-3 ms usleep loops: WFI traps and the host's wake-ups (kvm_vcpu_wakeup, halt polling)",
        guest_cmdline: "",
    },
    Scenario {
        name: "timer-storm",
        describe: "guest with nohz=off and three 50 us clock_nanosleep loops on each vCPU (a static arm64 program: a shell loop is too slow under emulation): the virtual timer (CNTV) re-armed all the time",
        guest_cmdline: "nohz=off",
    },
    Scenario {
        name: "isolation",
        describe: "guest with nohz_full=1 isolcpus=1 rcu_nocbs=1 and kernel.timer_migration=1 (field report 004): a 1 ms sleep loop on the isolated vCPU 1, whose timer migrates to vCPU 0 and wakes vCPU 1 by IPI",
        guest_cmdline: "nohz_full=1 isolcpus=1 rcu_nocbs=1",
    },
    Scenario {
        name: "isolation-tm0",
        describe: "as isolation, with kernel.timer_migration=0",
        guest_cmdline: "nohz_full=1 isolcpus=1 rcu_nocbs=1",
    },
    Scenario {
        name: "vpmu",
        describe: "field report 002's vPMU case: one pmustorm (a static arm64 program) pinned to each vCPU opens six sampling hardware perf events (cycles, instructions, branches, 3x cycles; period 10,000: the four cycles open, QEMU's emulated PMU has no instructions or branches event) and spins, so the guest's PMU interrupts fire and its counters are reprogrammed all the time; every guest PMU register access (PMOVSCLR_EL0, PMEVCNTRn_EL0, PMCR_EL0, ...) traps to the host",
        guest_cmdline: "",
    },
    Scenario {
        name: "idle",
        describe: "an idle guest: it only sleeps",
        guest_cmdline: "",
    },
];

/// The scenario called `name`.
pub fn scenario(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// `ktrace start NAME BUFFER_KB SYSTEM...` / `ktrace stop NAME DIR [nokallsyms]`: a private
/// tracefs instance recorded into files. The binary pages are read after tracing stopped (the
/// buffer must hold the whole run); `trace_pipe_raw` blocks when empty, so each reader is
/// stopped once the CPU's `entries:` reaches 0.
pub const KTRACE: &str = r#"#!/bin/sh
T=/sys/kernel/tracing
N=$2
I=$T/instances/$N
# every live thread's own name and process, into $1_comms and $1_tgids: saved_cmdlines only
# knows threads that emitted events (a VMM's main thread often did not)
tasks() {
  : > "$1_comms"; : > "$1_tgids"
  for t in /proc/[0-9]*/task/[0-9]*; do
    read -r c < "$t/comm" 2>/dev/null || continue
    p=${t%/task/*}
    echo "${t##*/} $c" >> "$1_comms"
    echo "${t##*/} ${p#/proc/}" >> "$1_tgids"
  done
}
case "$1" in
start)
  mkdir "$I" || exit 1
  echo "$3" > "$I/buffer_size_kb"
  echo 8192 > "$T/saved_cmdlines_size" 2>/dev/null
  echo 1 > "$T/options/record-tgid" 2>/dev/null
  echo 1 > "$I/options/record-tgid" 2>/dev/null
  shift 3
  echo "$@" > "/tmp/.ktrace-$N.systems"
  for s in "$@"; do
    if [ -d "$I/events/$s" ]; then echo 1 > "$I/events/$s/enable"; else echo "ktrace: no event system $s" >&2; fi
  done
  # debug-register bookkeeping: four of every six kvm events per exit, no information here
  for e in kvm_arm_setup_debug kvm_arm_set_dreg32 kvm_arm_clear_debug; do
    [ -d "$I/events/kvm/$e" ] && echo 0 > "$I/events/kvm/$e/enable"
  done
  # kvm_sys_access names its register by a kernel pointer: a small text copy of the same
  # event gives the names (sysreg_names), the assembler maps the pointers to them
  case " $* " in *" kvm "*)
    if [ -d "$T/events/kvm/kvm_sys_access" ] && mkdir "$I-sysreg"; then
      echo 1024 > "$I-sysreg/buffer_size_kb"
      echo 1 > "$I-sysreg/events/kvm/kvm_sys_access/enable"
    fi ;;
  esac
  tasks "/tmp/.ktrace-$N.task"
  echo 1 > "$I/tracing_on"
  ;;
stop)
  D=$3
  echo 0 > "$I/tracing_on"
  mkdir -p "$D/events"
  # the threads alive now, then those alive at start (the assembler keeps a thread's first
  # line): read first, while the traced VMM still runs, as the rest of stop takes seconds
  # under emulation and the guest may exit meanwhile
  tasks "$D/task"
  cat "/tmp/.ktrace-$N.task_comms" >> "$D/task_comms" 2>/dev/null
  cat "/tmp/.ktrace-$N.task_tgids" >> "$D/task_tgids" 2>/dev/null
  rm -f "/tmp/.ktrace-$N.task_comms" "/tmp/.ktrace-$N.task_tgids"
  if [ -d "$I-sysreg" ]; then
    echo 0 > "$I-sysreg/tracing_on"
    sed -n 's/.*PC: [0-9a-f]* \([^ ]*\) (\([0-9,]*\)).*/\2 \1/p' "$I-sysreg/trace" | sort -u > "$D/sysreg_names"
    rmdir "$I-sysreg"
  fi
  pids=
  for c in "$I"/per_cpu/cpu*; do
    n=${c##*/cpu}
    cat "$c/trace_pipe_raw" > "$D/cpu$n.raw" &
    pids="$pids $!"
  done
  for c in "$I"/per_cpu/cpu*; do
    k=0
    while [ $k -lt 600 ]; do
      left=0
      while read -r key val; do [ "$key" = entries: ] && left=$val; done < "$c/stats"
      [ "$left" = 0 ] && break
      sleep 0.1; k=$((k+1))
    done
  done
  sleep 0.2
  kill $pids 2>/dev/null
  wait
  for c in "$I"/per_cpu/cpu*; do cat "$c/stats" > "$D/stats.cpu${c##*/cpu}"; done
  cat "$T/events/header_page" > "$D/header_page"
  cat "$T/events/header_event" > "$D/header_event"
  # the format files of the enabled events, one cat per system (SYSTEM.all: concatenated)
  read -r systems < "/tmp/.ktrace-$N.systems"
  for s in $systems; do
    [ -d "$I/events/$s" ] || continue
    list=
    for e in "$I/events/$s"/*/; do
      read -r v < "$e/enable"; [ "$v" = 1 ] && list="$list ${e}format"
    done
    [ -n "$list" ] && cat $list > "$D/events/$s.all"
  done
  cat "$T"/events/ftrace/*/format > "$D/events/ftrace.all" 2>/dev/null
  cat "$I/trace_clock" > "$D/trace_clock"
  cat "$T/saved_cmdlines" > "$D/saved_cmdlines"
  cat "$T/saved_tgids" > "$D/saved_tgids" 2>/dev/null
  cat "$T/printk_formats" > "$D/printk_formats" 2>/dev/null
  # /proc/kallsyms is slow to generate under emulation: once per boot
  if [ "$4" != nokallsyms ]; then
    [ -s /tmp/.ktrace-kallsyms ] || cat /proc/kallsyms > /tmp/.ktrace-kallsyms
    cp /tmp/.ktrace-kallsyms "$D/kallsyms"
  fi
  uname -a > "$D/uname"
  rm -f "/tmp/.ktrace-$N.systems"
  rmdir "$I"
  ;;
*) echo "usage: ktrace start NAME BUFFER_KB SYSTEM... | ktrace stop NAME DIR [nokallsyms]" >&2; exit 2 ;;
esac
"#;

/// `ksnap DIR`: the /proc and /sys files of a system snapshot, copied under DIR.
pub const KSNAP: &str = r#"#!/bin/sh
d=$1
for f in /proc/sys/kernel/osrelease /proc/version /proc/cmdline /proc/cpuinfo /proc/interrupts /proc/softirqs /proc/timer_list /sys/devices/system/cpu/isolated /sys/devices/system/cpu/nohz_full /proc/sys/kernel/timer_migration /sys/module/kvm/parameters/* /boot/config-*; do
  [ -r "$f" ] || continue
  mkdir -p "$d${f%/*}"
  cat "$f" > "$d$f" 2>/dev/null
done
"#;

/// The nested guest's /init.
fn guest_init() -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tracefs nodev /sys/kernel/tracing
insmod /mods/virtio_mmio.ko
insmod /mods/virtio_blk.ko
S=idle; T=10; TM=1
for w in $(cat /proc/cmdline); do
  case "$w" in
    kvmscope.scenario=*) S=${{w#*=}} ;;
    kvmscope.secs=*) T=${{w#*=}} ;;
  esac
done
[ "$S" = isolation-tm0 ] && TM=0
n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
mkdir -p /out; cd /out
tm() {{ echo "$(cut -d' ' -f1 /proc/uptime) $1" >> /out/timing; }}
tm init
# before the snapshot, so that it shows the setting the scenario runs with
case "$S" in isolation*) echo $TM > /proc/sys/kernel/timer_migration ;; esac
ksnap snap-start
ktrace start kvmscope-guest 4096 ipi csd irq timer
loop() {{ while [ ! -e /tmp/stop ]; do "$@"; done; }}
echo "{GUEST_START} $S"
tm started
# the host starts recording now (its shell takes a second under emulation)
sleep 2
cat /proc/interrupts > interrupts.before
case "$S" in
ipi)
  mkfifo /tmp/a /tmp/b
  taskset -c 1 sh -c 'exec 3</tmp/a 4>/tmp/b; while read x <&3; do echo "$x" >&4; done' &
  taskset -c 0 sh -c 'exec 3>/tmp/a 4</tmp/b; n=0; while [ ! -e /tmp/stop ]; do echo p >&3; read r <&4; n=$((n+1)); done; echo "round_trips $n" >> /out/result' &
  taskset -c 0 sh -c 'e=/sys/kernel/tracing/events/sched/sched_process_free/enable; n=0; while [ ! -e /tmp/stop ]; do echo 1 > $e; echo 0 > $e; n=$((n+1)); usleep 20000; done; echo "tracepoint_toggles $n" >> /out/result' &
  # the same ping-pong without a shell: a static program pins itself to vCPU 0 and its child
  # to vCPU 1; every byte wakes the other side remotely (reschedule / sched_ttwu_pending IPIs)
  /bin/pingpong &
  ;;
wfx)
  taskset -c 0 sh -c 'while [ ! -e /tmp/stop ]; do usleep 2000; done' &
  taskset -c 1 sh -c 'while [ ! -e /tmp/stop ]; do usleep 3000; done' &
  ;;
timer-storm)
  # three per vCPU: each waits ~1 ms for the emulated host to wake it, so one alone cannot
  # re-arm faster than that
  for c in 0 0 0 1 1 1; do taskset -c $c /bin/sleeploop & done
  ;;
isolation|isolation-tm0)
  echo "timer_migration $(cat /proc/sys/kernel/timer_migration)" >> /out/result
  # field report 004's cyclictest: a 1 ms sleep loop on the isolated vCPU 1. Its hrtimer is
  # not pinned, so with timer migration on it is queued on a housekeeping CPU, and the wake-up
  # comes to vCPU 1 as an IPI instead of its own timer interrupt
  taskset -c 1 sh -c 'while [ ! -e /tmp/stop ]; do usleep 1000; done' &
  ;;
vpmu)
  # whether the guest has a PMU at all (the host's KVM must have one and the VMM enable it)
  echo "pmu_devices $(ls /sys/bus/event_source/devices | grep -c armv8_pmuv3)" >> /out/result
  ls /sys/bus/event_source/devices > /out/pmu-devices
  dmesg | grep -i -e perfevents -e pmu > /out/pmu-dmesg
  p=
  # niced (this busybox has renice, not nice): they take every idle cycle, yet the scenario's
  # shell still gets to stop them on time
  for c in 0 1; do taskset -c $c /bin/pmustorm > /tmp/pmu$c & p="$p $c:$!"; renice -n 19 -p $! > /dev/null; done
  # each writes its 48 bytes once all six opens returned (seconds under nested emulation)
  n=0; while [ $n -lt 50 ] && [ "$(cat /tmp/pmu0 /tmp/pmu1 | wc -c)" -lt 96 ]; do sleep 0.2; n=$((n+1)); done
  # the perf events each one holds open, and what each perf_event_open returned (the program
  # writes a descriptor or -errno per event, then spins)
  for x in $p; do
    c=${{x%%:*}}
    echo "perf_events_open_vcpu$c $(ls -l /proc/${{x#*:}}/fd 2>/dev/null | grep -c perf_event)" >> /out/result
    i=0
    for v in $(od -A n -t d8 -v /tmp/pmu$c); do
      if [ "$v" -lt 0 ]; then echo "perf_open_errno_vcpu${{c}}_event$i $((-v))"; else echo "perf_open_fd_vcpu${{c}}_event$i $v"; fi >> /out/result
      i=$((i+1))
    done
  done
  ;;
idle) ;;
*) echo "unknown scenario $S" >> /out/result ;;
esac
sleep $T
touch /tmp/stop
killall pingpong sleeploop pmustorm 2>/dev/null
wait
cat /proc/interrupts > interrupts.after
if [ "$S" = vpmu ]; then
  # the guest's PMU overflow interrupts (the arm-pmu PPI row, both vCPUs)
  pmu() {{ awk '/arm-pmu/ {{ s += $2 + $3 }} END {{ print s + 0 }}' "$1"; }}
  echo "pmu_irqs $(( $(pmu interrupts.after) - $(pmu interrupts.before) ))" >> /out/result
  echo "perf_max_sample_rate $(cat /proc/sys/kernel/perf_event_max_sample_rate)" >> /out/result
  echo "perf_throttled_msgs $(dmesg | grep -c 'interrupt took too long')" >> /out/result
  dmesg | grep -i -e perf -e pmu > /out/pmu-dmesg-end
fi
echo "{GUEST_END} $S"
tm ended
mkdir -p snap-end/proc
cat /proc/interrupts > snap-end/proc/interrupts
cat /proc/softirqs > snap-end/proc/softirqs
tm snap
# the guest runs the host's kernel without KASLR (as the host does): the host's kallsyms
# serves for both once their _text agree (generating kallsyms here would take seconds)
grep -m1 ' _text$' /proc/kallsyms > text-base
ktrace stop kvmscope-guest trace nokallsyms
tm saved
tar -cf /dev/vda .
sync
poweroff -f
"#
    )
}

/// The job running scenario `s` for `secs` seconds in a nested guest with `vcpus` vCPUs.
pub fn job(s: &Scenario, secs: u32) -> Job {
    // ~150 KiB/s per CPU of host events in the busiest scenario; the buffer holds the whole
    // run (it is read after tracing stops), with room to spare.
    // `vpmu` makes ~4x the events of the others (four kvm events per PM* register trap, ~4,000
    // traps/s): 16 MiB per CPU overran in its 6 s on nVHE.
    let per_s = if s.name == "vpmu" { 6400 } else { 1600 };
    let buffer_kb = (u64::from(secs) * per_s).clamp(16384, 131072);
    let cmdline = format!(
        "console=ttyAMA0 panic=-1 quiet nokaslr kvmscope.scenario={} kvmscope.secs={secs} {}",
        s.name, s.guest_cmdline
    );
    Job {
        name: s.name.to_string(),
        script: format!(
            r#"tm() {{ echo "$(cut -d' ' -f1 /proc/uptime) $1" >> timing; }}
tm job
ksnap host-snap
rm -f /tmp/guest.img; dd if=/dev/zero of=/tmp/guest.img bs=1M count=0 seek=64 2>/dev/null
{{ qemu-system-aarch64 -accel kvm -cpu host -M virt,gic-version=3 -smp 2 -m 256 \
    -kernel /guest/Image -initrd /guest/initrd -append '{cmdline}' \
    -nodefaults -display none -serial stdio -no-reboot -audio none \
    -name guest=kvmscope-{name},debug-threads=on \
    -drive file=/tmp/guest.img,format=raw,if=virtio < /dev/null 2>&1
  echo "@@kvmscope-vmm:exit $?"
}} | while IFS= read -r l; do
  echo "$l" >> guest-console.log
  case "$l" in
    *{GUEST_START}*) tm guest-start; ktrace start kvmscope-arm64 {buffer_kb} kvm ipi csd timer irq; tm traced ;;
    *{GUEST_END}*) tm guest-end; ktrace stop kvmscope-arm64 host-trace; tm saved ;;
    *@@kvmscope-vmm:exit*) tm vmm-exit ;;
  esac
done
mkdir -p guest
tar -xf /tmp/guest.img -C guest
rm -f /tmp/guest.img
tm guest-saved
[ -d /sys/kernel/tracing/instances/kvmscope-arm64 ] && ktrace stop kvmscope-arm64 host-trace
grep -q '@@kvmscope-vmm:exit 0' guest-console.log || {{ echo "the guest's VMM failed:" >&2; tail -n 20 guest-console.log >&2; exit 2; }}
[ -f host-trace/header_page ] || {{ echo "the guest never said it started its scenario" >&2; tail -n 20 guest-console.log >&2; exit 2; }}
"#,
            name = s.name
        ),
    }
}

/// Adds the arm64 payload to the host's initramfs: the recording scripts, the guest's VMM
/// (Debian's arm64 qemu-system-aarch64 with its interpreter and libraries), the guest's
/// kernel and initramfs.
pub(super) fn add_payload(
    t: &mut Tree,
    host_dir: &Path,
    kernel: &packages::Kernel,
    busybox: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let ioe = |e: std::io::Error| io_err("writing", Path::new("the initramfs"), e);
    t.bytes("bin/ktrace", 0o755, KTRACE.as_bytes())
        .map_err(ioe)?;
    t.bytes("bin/ksnap", 0o755, KSNAP.as_bytes()).map_err(ioe)?;
    let root = packages::guest_vmm(host_dir, "arm64", progress)?;
    for (from, at) in vmm_files(&root)? {
        t.copy(&from, &at)?;
    }
    t.copy(&kernel.image, "guest/Image")?;
    t.copy(
        &kernel.config,
        &format!("boot/config-{}", kernel.info.release),
    )?;
    let initrd = guest_initramfs(kernel, busybox).map_err(ioe)?;
    t.bytes("guest/initrd", 0o644, &initrd).map_err(ioe)?;
    Ok(())
}

/// The guest's initramfs: busybox, the scripts, virtio modules, its init.
fn guest_initramfs(kernel: &packages::Kernel, busybox: &Path) -> std::io::Result<Vec<u8>> {
    let mut w = cpio::CpioWriter::new(Vec::new());
    for d in ["bin", "dev", "proc", "sys", "tmp", "mods"] {
        w.dir(d)?;
    }
    w.file("bin/busybox", 0o755, &std::fs::read(busybox)?)?;
    w.dir("boot")?;
    w.file(
        &format!("boot/config-{}", kernel.info.release),
        0o644,
        &std::fs::read(&kernel.config)?,
    )?;
    w.file("bin/ktrace", 0o755, KTRACE.as_bytes())?;
    w.file("bin/ksnap", 0o755, KSNAP.as_bytes())?;
    w.file("bin/sleeploop", 0o755, &a64::sleep_loop(50_000))?;
    w.file("bin/pingpong", 0o755, &a64::ping_pong())?;
    w.file("bin/pmustorm", 0o755, &a64::pmu_storm(10_000))?;
    for (name, path) in &kernel.modules {
        w.file(&format!("mods/{name}.ko"), 0o644, &std::fs::read(path)?)?;
    }
    w.file("init", 0o755, guest_init().as_bytes())?;
    Ok(w.finish()?.0)
}

/// The library directories of a Debian arm64 root, searched in this order.
const LIB_DIRS: &[&str] = &["usr/lib/aarch64-linux-gnu", "lib/aarch64-linux-gnu"];

/// (file under `root`, path in the initramfs) for the VMM, its interpreter and the closure of
/// its DT_NEEDED libraries.
fn vmm_files(root: &Path) -> Result<Vec<(PathBuf, String)>, LabError> {
    let exe = "usr/bin/qemu-system-aarch64";
    let mut out = vec![(root.join(exe), exe.to_string())];
    let bytes = std::fs::read(root.join(exe)).map_err(|e| io_err("reading", &root.join(exe), e))?;
    let d = elf::dynamic(&bytes).ok_or_else(|| LabError::HostSetup {
        what: format!(
            "{} is not a 64-bit little-endian ELF",
            root.join(exe).display()
        ),
        detail: String::new(),
    })?;
    if let Some(interp) = &d.interp {
        let rel = interp.trim_start_matches('/');
        out.push((resolve(root, rel), rel.to_string()));
    }
    let mut todo: Vec<String> = d.needed;
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(dir) = LIB_DIRS.iter().find(|d| root.join(d).join(&name).exists()) else {
            return Err(LabError::MissingTool {
                tool: format!("{name} (needed by the arm64 qemu-system-aarch64)"),
                install: "remove the cached VMM root so it is fetched again".into(),
            });
        };
        let rel = format!("{dir}/{name}");
        let path = resolve(root, &rel);
        let lib = std::fs::read(&path).map_err(|e| io_err("reading", &path, e))?;
        if let Some(ld) = elf::dynamic(&lib) {
            todo.extend(ld.needed);
        }
        out.push((path, format!("usr/lib/aarch64-linux-gnu/{name}")));
    }
    Ok(out)
}

/// `rel` under `root` with symbolic links followed inside `root` (absolute targets are taken
/// relative to it, not to this machine).
fn resolve(root: &Path, rel: &str) -> PathBuf {
    let mut p = root.join(rel);
    for _ in 0..16 {
        match std::fs::read_link(&p) {
            Ok(target) if target.is_absolute() => {
                p = root.join(target.strip_prefix("/").unwrap_or(&target));
            }
            Ok(target) => {
                p = p.parent().map(|d| d.join(&target)).unwrap_or(target);
            }
            Err(_) => break,
        }
    }
    p
}

/// IPIs per kind (`IPI0`, ...) and CPU from two copies of an arm64 `/proc/interrupts`: what
/// the guest's kernel counted between them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IpiDeltas {
    /// (row, description, per-CPU counts).
    pub rows: Vec<(String, String, Vec<u64>)>,
}

impl IpiDeltas {
    /// The total of `row` (e.g. `IPI0`) over all CPUs.
    pub fn total(&self, row: &str) -> u64 {
        self.rows
            .iter()
            .filter(|r| r.0 == row)
            .flat_map(|r| r.2.iter())
            .sum()
    }

    /// All IPIs counted.
    pub fn all(&self) -> u64 {
        self.rows.iter().flat_map(|r| r.2.iter()).sum()
    }
}

fn ipi_rows(text: &str) -> BTreeMap<String, (String, Vec<u64>)> {
    let mut ncpu = 0;
    let mut rows = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            ncpu = line
                .split_whitespace()
                .filter(|w| w.starts_with("CPU"))
                .count();
            continue;
        }
        let Some((name, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        if !name.starts_with("IPI") {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let counts: Vec<u64> = words
            .iter()
            .take(ncpu)
            .map_while(|w| w.parse().ok())
            .collect();
        let desc = words[counts.len().min(words.len())..].join(" ");
        rows.insert(name.to_string(), (desc, counts));
    }
    rows
}

/// The IPI rows of `after` minus those of `before`.
pub fn ipi_deltas(before: &str, after: &str) -> IpiDeltas {
    let b = ipi_rows(before);
    let mut rows = Vec::new();
    for (name, (desc, counts)) in ipi_rows(after) {
        let old = b.get(&name).map(|r| r.1.clone()).unwrap_or_default();
        let d = counts
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(old.get(i).copied().unwrap_or(0)))
            .collect();
        rows.push((name, desc, d));
    }
    rows.sort_by_key(|r| r.0[3..].parse::<u32>().unwrap_or(u32::MAX));
    IpiDeltas { rows }
}

/// Whether the guest's `_text` line (`guest/text-base`) is the host's (`host-trace/kallsyms`):
/// then the host's symbols are the guest's too (same kernel, no KASLR on either).
pub fn same_kernel_text(guest_text_base: &str, host_kallsyms: &[u8]) -> bool {
    let g = guest_text_base.trim();
    !g.is_empty()
        && host_kallsyms
            .split(|&b| b == b'\n')
            .take(100_000)
            .any(|l| l == g.as_bytes())
}

/// The guest's local timer interrupts (the `arch_timer` row: the virtual timer, CNTV) per CPU
/// between two copies of its /proc/interrupts.
pub fn timer_deltas(before: &str, after: &str) -> Vec<u64> {
    let row = |text: &str| -> Vec<u64> {
        text.lines()
            .find(|l| l.trim_end().ends_with("arch_timer"))
            .map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .map_while(|w| w.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let b = row(before);
    row(after)
        .iter()
        .enumerate()
        .map(|(i, n)| n.saturating_sub(b.get(i).copied().unwrap_or(0)))
        .collect()
}

/// `key value` lines of a guest's `result` file.
pub fn results(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "           CPU0       CPU1       \n 11:       2000       1900     GICv3  27 Level     arch_timer\nIPI0:        49         60       Rescheduling interrupts\nIPI1:       293        252       Function call interrupts\nIPI2:         0          0       CPU stop interrupts\nErr:          0\n";
    const AFTER: &str = "           CPU0       CPU1       \n 11:       2500       2300     GICv3  27 Level     arch_timer\nIPI0:       149         65       Rescheduling interrupts\nIPI1:       300        262       Function call interrupts\nIPI2:         0          0       CPU stop interrupts\nErr:          0\n";

    #[test]
    fn counts_ipis_between_two_copies() {
        let d = ipi_deltas(BEFORE, AFTER);
        assert_eq!(d.rows[0].0, "IPI0");
        assert_eq!(d.rows[0].1, "Rescheduling interrupts");
        assert_eq!(d.rows[0].2, [100, 5]);
        assert_eq!(d.total("IPI1"), 17);
        assert_eq!(d.all(), 122);
        assert_eq!(ipi_deltas("", "garbage\n:::\nIPI9: x\n").all(), 0);
        assert_eq!(timer_deltas(BEFORE, AFTER), [500, 400]);
        assert!(timer_deltas("", "").is_empty());
    }

    #[test]
    fn jobs_record_between_the_guest_markers() {
        let j = job(scenario("timer-storm").unwrap(), 7);
        assert!(j
            .script
            .contains("kvmscope.scenario=timer-storm kvmscope.secs=7 nohz=off"));
        let start = j.script.find("ktrace start kvmscope-arm64").unwrap();
        assert!(j.script[..start].contains(GUEST_START));
        assert!(j.script.contains("-accel kvm -cpu host"));
        assert!(guest_init().contains("cat /proc/interrupts > interrupts.after"));
        assert_eq!(
            results("round_trips 12\nbad\n").get("round_trips"),
            Some(&12)
        );
        for s in SCENARIOS {
            assert!(
                guest_init().contains(&format!("{})", s.name)) || s.name.starts_with("isolation")
            );
        }
    }

    #[test]
    fn follows_links_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let lib = d.path().join("usr/lib/aarch64-linux-gnu");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libz.so.1.3"), b"x").unwrap();
        std::os::unix::fs::symlink("libz.so.1.3", lib.join("libz.so.1")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/aarch64-linux-gnu/libz.so.1", lib.join("abs"))
            .unwrap();
        assert_eq!(
            resolve(d.path(), "usr/lib/aarch64-linux-gnu/abs"),
            lib.join("libz.so.1.3")
        );
    }
}
