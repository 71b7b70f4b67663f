//! `kvmscope top`: live counts of KVM (or guest-side) trace events, kvm_stat done better.
//!
//! - [`catalog`]: what to count (every `kvm` tracepoint, drill-down children as kernel
//!   filters; or the guest-side timer/MSR/IPI events).
//! - [`debugfs`]: KVM's own statistics in debugfs (`kvm_stat -d`), the source that costs
//!   nothing per event where the kernel lets it be read.
//! - [`live`]: the counters (perf_event_open through `kvmscope_capture::counters`), on every
//!   CPU or on one VM's threads, and the per-VM totals of the VM list.
//! - [`model`]: totals, rates, sorted rows, per-target (vCPU/CPU) breakdown; no I/O.
//! - [`render`]: batch output (`--once`, `--log`, `--csv`, `--json`), pure functions.
//! - [`tui`]: the ratatui screen and its keys.
//! - [`vms`]: running VMs and their guest names.

pub mod catalog;
pub mod debugfs;
pub mod live;
pub mod model;
pub mod render;
pub mod tui;
pub mod vms;

/// The regex crate, for filters built by callers (`View::filter`).
pub use regex;
