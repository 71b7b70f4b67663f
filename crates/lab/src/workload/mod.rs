//! Workload generators: ordinary processes (no VM) that make the kernel do a known amount of
//! timer or IPI work, so guest-side analyses can be checked against what really happened.
//!
//! - [`timer_storm`]: one thread re-arming a short timer (`clock_nanosleep` or a periodic
//!   `timerfd`), counting its own expiries — field report 003 seen from inside the guest.
//! - [`ipi_storm`]: threads of one process spinning on the other CPUs while a driver thread
//!   changes the address space (`munmap`, `mprotect`) or calls `membarrier`, so the kernel
//!   sends TLB-shootdown or function-call IPIs — field report 004.
//!
//! Every generator stops by itself (a bounded operation count, and a time limit as a
//! backstop), reports the thread ids it used *before* it starts (so a tracer can filter on
//! them) and returns its own count of operations.

mod ipi;
mod sys;
mod timer;

use std::io;
use std::time::Duration;

pub use ipi::{ipi_storm, IpiMethod, IpiStorm, IpiStormOutcome};
pub use timer::{timer_storm, TimerMethod, TimerStorm, TimerStormOutcome};

/// The threads a generator is about to use, given to the caller before any work starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadThreads {
    /// Process id.
    pub pid: u32,
    /// Thread doing the counted operations.
    pub driver_tid: u32,
    /// CPU the driver is pinned to, if pinned.
    pub driver_cpu: Option<usize>,
    /// Helper threads (IPI storm spinners) and the CPU each is pinned to.
    pub helpers: Vec<(u32, usize)>,
}

impl WorkloadThreads {
    /// All thread ids (driver first).
    pub fn tids(&self) -> Vec<u32> {
        std::iter::once(self.driver_tid)
            .chain(self.helpers.iter().map(|&(t, _)| t))
            .collect()
    }
}

/// Why a workload could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// A system call failed.
    #[error("{call} failed in the {workload} workload")]
    Syscall {
        /// The workload.
        workload: &'static str,
        /// The call, e.g. `timerfd_settime`.
        call: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The spec asks for something that cannot be done.
    #[error("invalid {workload} workload: {why}")]
    Invalid {
        /// The workload.
        workload: &'static str,
        /// What is wrong and what to change.
        why: String,
    },
    /// The CPU to pin to is not in this process's allowed set.
    #[error("CPU {cpu} is not available to this process (allowed: {allowed:?}); pick another with the workload's cpu option")]
    CpuUnavailable {
        /// The CPU asked for.
        cpu: usize,
        /// The CPUs this process may run on.
        allowed: Vec<usize>,
    },
    /// A worker thread panicked or could not be started.
    #[error("a {workload} worker thread failed: {why}")]
    Thread {
        /// The workload.
        workload: &'static str,
        /// What happened.
        why: String,
    },
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Result<Vec<usize>, WorkloadError> {
    sys::allowed_cpus().map_err(|source| WorkloadError::Syscall {
        workload: "setup",
        call: "sched_getaffinity",
        source,
    })
}

/// The time limit a generator applies on top of its operation count: a generous multiple of
/// the expected duration, so a starved machine still ends the run.
fn backstop(expected: Duration) -> Duration {
    expected.saturating_mul(20).max(Duration::from_secs(10))
}

/// Pins the calling thread to `cpu` (for tests and demos that add their own threads).
pub fn pin(cpu: usize) -> Result<(), WorkloadError> {
    sys::pin_to(cpu).map_err(|source| WorkloadError::Syscall {
        workload: "setup",
        call: "sched_setaffinity",
        source,
    })
}

/// The calling thread's id.
pub fn current_tid() -> u32 {
    sys::gettid()
}
