//! The kvmscope lab: a tiny VMM that runs small KVM guests whose behaviour is known exactly,
//! so that what the host shows (tracepoints, binary stats, stacks) can be checked against a
//! ground truth.
//!
//! ```no_run
//! use kvmscope_lab::{run, Scenario, ScenarioSpec};
//! let outcome = run(&ScenarioSpec::new(Scenario::Pio).count(10_000))?;
//! println!("{} OUTs in {:?} from tids {:?}", outcome.ops, outcome.elapsed, outcome.vcpu_tids);
//! for e in &outcome.ground_truth.expectations {
//!     println!("{}:{} {:?} {}", e.system, e.event, e.filter, e.count);
//! }
//! # Ok::<(), kvmscope_lab::LabError>(())
//! ```
//!
//! Guests run in 64-bit long mode only (identity-mapped page tables set up by the VMM), with
//! the in-kernel irqchip and every LAPIC in x2APIC mode. Each vCPU runs on its own thread;
//! [`run_with`] reports the thread ids before any guest code runs, so a tracer can filter on
//! them. Which privilege level each scenario uses, and why, is in `docs/lab.md`.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod emulated;
mod error;
mod layout;
mod memory;
mod program;
mod scenario;
pub mod stats;
mod truth;
mod vm;
pub mod workload;

use std::time::Duration;

use serde::Serialize;

pub use error::LabError;
pub use layout::{MAX_ROOTS, MAX_VCPUS, MMIO_GPA};
pub use program::{DONE_PORT, FAULT_PORT};
pub use scenario::{Length, Scenario, ScenarioInfo, ScenarioSpec, MSR_TSC_DEADLINE};
pub use stats::{StatDelta, StatsFile, StatsSnapshot};
pub use truth::{
    field_value, Count, Expectation, GroundTruth, HostKind, HostScope, Privilege, StatExpectation,
};
pub use vm::Threads;

/// KVM binary stats of one VM: the VM's own and each vCPU's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmStats {
    /// Per-VM statistics.
    pub vm: StatsSnapshot,
    /// Per-vCPU statistics, by vCPU index.
    pub vcpus: Vec<StatsSnapshot>,
}

/// Userspace exits the VMM handled for one vCPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VmmExits {
    /// KVM_EXIT_IO writes by port (the lab's done port included).
    pub io_out: Vec<(u16, u64)>,
    /// KVM_EXIT_MMIO writes.
    pub mmio_write: u64,
    /// KVM_EXIT_MMIO reads.
    pub mmio_read: u64,
    /// KVM_EXIT_HLT.
    pub hlt: u64,
    /// KVM_RUN interrupted by the VMM's stop signal.
    pub intr: u64,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// What was run.
    pub spec: ScenarioSpec,
    /// KVM flavour of this host.
    pub host: HostKind,
    /// Process id of the VMM (this process).
    pub pid: i32,
    /// Thread id of each vCPU thread.
    pub vcpu_tids: Vec<i32>,
    /// Operations done (all vCPUs; for `ipi`, round trips).
    pub ops: u64,
    /// Operations per vCPU (r15 at the end).
    pub ops_per_vcpu: Vec<u64>,
    /// From releasing the vCPUs to the last one ending.
    pub elapsed: Duration,
    /// KVM binary stats before the guest ran (None where the host has no KVM_GET_STATS_FD).
    pub stats_before: Option<VmStats>,
    /// KVM binary stats after.
    pub stats_after: Option<VmStats>,
    /// Why there are no stats, if there are none.
    pub stats_unavailable: Option<String>,
    /// Userspace exits per vCPU.
    pub vmm_exits: Vec<VmmExits>,
    /// What the host should have shown.
    pub ground_truth: GroundTruth,
}

impl RunOutcome {
    /// Change of a per-vCPU statistic summed over all vCPUs (None without stats, or when the
    /// host does not have that statistic).
    pub fn vcpu_stat_delta(&self, name: &str) -> Option<i128> {
        let (b, a) = (self.stats_before.as_ref()?, self.stats_after.as_ref()?);
        let mut sum = 0i128;
        for (b, a) in b.vcpus.iter().zip(&a.vcpus) {
            sum += i128::from(a.get(name)?) - i128::from(b.get(name)?);
        }
        Some(sum)
    }

    /// Checks the binary-stats promises that hold on `host`: (name, promised, seen, ok).
    pub fn check_stats(&self, host: HostKind) -> Vec<(&'static str, Count, Option<i128>, bool)> {
        self.ground_truth
            .stats
            .iter()
            .filter(|s| host.covers(s.host))
            .map(|s| {
                let seen = self.vcpu_stat_delta(s.name);
                let ok = seen.is_some_and(|d| u64::try_from(d).is_ok_and(|d| s.delta.contains(d)));
                (s.name, s.delta, seen, ok)
            })
            .collect()
    }

    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.ops as f64 / s
        } else {
            0.0
        }
    }
}

/// Runs a scenario to its end.
pub fn run(spec: &ScenarioSpec) -> Result<RunOutcome, LabError> {
    run_with(spec, |_| {})
}

const KVM_CAP_BINARY_STATS_FD: libc::c_ulong = 203;

/// Runs a scenario; `ready` is called with the VMM's pid and the vCPU thread ids after the
/// VM is built and its threads exist, but before any guest instruction runs (arm a tracer
/// filtered on them there).
pub fn run_with(
    spec: &ScenarioSpec,
    mut ready: impl FnMut(&Threads),
) -> Result<RunOutcome, LabError> {
    use std::os::fd::AsRawFd;

    let plan = scenario::plan(spec)?;
    let mut vm = vm::Vm::new(&plan.vm, &plan.program, &plan.starts)?;
    if plan.vm.timer_vector.is_some() {
        let khz = vm.tsc_khz.ok_or(LabError::MissingCapability {
            cap: "GET_TSC_KHZ",
            what: "the guest TSC frequency",
            fix: "timer scenarios need it; pick another scenario on this host",
        })?;
        let ticks = (spec.period.as_nanos() * u128::from(khz) / 1_000_000)
            .clamp(1, u128::from(u32::MAX)) as u64;
        for v in &vm.vcpus {
            let mut r = v.get_regs().map_err(|e| LabError::kvm("KVM_GET_REGS", e))?;
            r.r13 = ticks;
            v.set_regs(&r)
                .map_err(|e| LabError::kvm("KVM_SET_REGS", e))?;
        }
    }

    let stats_files = if vm.vm.check_extension_raw(KVM_CAP_BINARY_STATS_FD) > 0 {
        let vmf = stats::StatsFile::open(vm.vm.as_raw_fd(), "VM")?;
        let vcf = vm
            .vcpus
            .iter()
            .enumerate()
            .map(|(i, v)| stats::StatsFile::open(v.as_raw_fd(), &format!("vCPU {i}")))
            .collect::<Result<Vec<_>, _>>()?;
        Some((vmf, vcf))
    } else {
        None
    };
    let read_stats = |f: &Option<(stats::StatsFile, Vec<stats::StatsFile>)>| -> Result<Option<VmStats>, LabError> {
        match f {
            None => Ok(None),
            Some((vmf, vcf)) => Ok(Some(VmStats {
                vm: vmf.read()?,
                vcpus: vcf.iter().map(|f| f.read()).collect::<Result<_, _>>()?,
            })),
        }
    };
    let stats_before = read_stats(&stats_files)?;
    let mut threads = None;
    let stop_after = match spec.length {
        Length::Duration(d) => Some(d),
        Length::Count(_) => None,
    };
    // A duration run is stopped by the VMM, so its timeout only guards the stopping itself.
    let timeout = match stop_after {
        Some(d) => spec.timeout.max(d + Duration::from_secs(30)),
        None => spec.timeout,
    };
    let (ends, elapsed) = vm.run(stop_after, timeout, &mut |t: &Threads| {
        threads = Some(t.clone());
        ready(t);
    })?;
    let stats_after = read_stats(&stats_files)?;
    if !spec.hold.is_zero() {
        std::thread::sleep(spec.hold);
    }
    drop(stats_files);
    drop(vm);

    let threads = threads.unwrap_or(Threads {
        pid: std::process::id() as i32,
        vcpu_tids: Vec::new(),
    });
    let ops_per_vcpu: Vec<u64> = ends.iter().map(|e| e.regs.r15).collect();
    let ground_truth = scenario::ground_truth(spec, &ops_per_vcpu);
    let vmm_exits = ends
        .iter()
        .map(|e| VmmExits {
            io_out: e.exits.io_out.iter().map(|(p, n)| (*p, *n)).collect(),
            mmio_write: e.exits.mmio_write,
            mmio_read: e.exits.mmio_read,
            hlt: e.exits.hlt,
            intr: e.exits.intr,
        })
        .collect();
    Ok(RunOutcome {
        spec: spec.clone(),
        host: HostKind::detect(),
        pid: threads.pid,
        vcpu_tids: threads.vcpu_tids,
        ops: ground_truth.ops,
        ops_per_vcpu,
        elapsed,
        stats_unavailable: stats_before
            .is_none()
            .then(|| "this kernel has no KVM_CAP_BINARY_STATS_FD (needs Linux 5.14+)".to_string()),
        stats_before,
        stats_after,
        vmm_exits,
        ground_truth,
    })
}

/// Checks that this host can run lab guests at all: /dev/kvm opens and speaks API 12.
pub fn check_host() -> Result<HostKind, LabError> {
    let kvm = vm::open_kvm()?;
    if kvm.get_api_version() != 12 {
        return Err(LabError::MissingCapability {
            cap: "API_VERSION",
            what: "KVM API version 12",
            fix: "this kernel's KVM is not supported by kvmscope",
        });
    }
    Ok(HostKind::detect())
}
