//! What the kernel says about itself, as plain data: `/proc/interrupts`, `/proc/softirqs`,
//! `/proc/timer_list`, the command line, the tick and preemption configuration, CPU
//! isolation, `kernel.timer_migration`, KVM module parameters, CPU flags and the processes
//! that run VMs. [`SystemSnapshot::isolation_summary`] gathers the isolation and tick facts
//! that field reports 003 (`nohz=off`) and 004 (timer migration onto nohz_full CPUs) needed.
//!
//! Every parser takes text and returns typed data or an [`Error`] with the line that could
//! not be read; none does I/O or panics. [`collect`] reads the live files (a missing file is
//! recorded in [`SystemSnapshot::absent`], not an error) into a [`SystemSnapshot`] that a
//! capture keeps beside its events and `diagnose` checks.

pub mod cmdline;
pub mod cpuinfo;
pub mod cpulist;
mod error;
pub mod interrupts;
pub mod kconfig;
pub mod kvm_params;
pub mod snapshot;
pub mod softirqs;
pub mod timer_list;
pub mod vms;

pub use error::Error;
pub use snapshot::{collect, collect_from, Absent, Isolation, SystemSnapshot};

/// Parses the `kernel.timer_migration` sysctl (`/proc/sys/kernel/timer_migration`).
pub fn parse_timer_migration(text: &str) -> Result<bool, Error> {
    match text.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(Error::Parse {
            file: "/proc/sys/kernel/timer_migration",
            line: 1,
            offset: 0,
            problem: format!("expected 0 or 1, found {other:?}"),
        }),
    }
}
