//! Numbers every rule needs, computed once from a report: the trace's duration, the busy vCPU
//! threads, counts by event name, rates.

use kvmscope_analysis::Report;
use kvmscope_trace::MmuKind;

use crate::finding::{Evidence, TopRow};

/// Systems of guest-side events (what a kernel running inside a VM shows about itself).
pub const GUEST_SYSTEMS: [&str; 6] = ["msr", "timer", "ipi", "csd", "irq_vectors", "tlb"];

/// Derived numbers over one report.
#[derive(Debug, Clone)]
pub struct Facts<'r> {
    pub report: &'r Report,
    /// Trace time from the first to the last event, seconds.
    pub duration_s: f64,
    /// Busy vCPU threads: threads with KVM events, at least 5% of the busiest one's.
    pub vcpus: u32,
    pub kvm_events: u64,
    pub guest_events: u64,
}

impl<'r> Facts<'r> {
    pub fn new(report: &'r Report) -> Facts<'r> {
        let threads: Vec<u64> = report
            .overview
            .vms
            .iter()
            .flat_map(|vm| vm.vcpus.iter().map(|v| v.kvm_events))
            .collect();
        let busiest = threads.iter().copied().max().unwrap_or(0);
        let vcpus = threads
            .iter()
            .filter(|&&n| n > 0 && n * 20 >= busiest)
            .count() as u32;
        let mut kvm_events = 0;
        let mut guest_events = 0;
        for (name, n) in &report.overview.by_name {
            let system = name.split_once(':').map_or("", |(s, _)| s);
            if system == "kvm" || system == "kvmmmu" {
                kvm_events += n;
            } else if GUEST_SYSTEMS.contains(&system) {
                guest_events += n;
            }
        }
        Facts {
            report,
            duration_s: report.overview.duration_ns as f64 / 1e9,
            vcpus,
            kvm_events,
            guest_events,
        }
    }

    /// Events named `system:name` in the trace.
    pub fn named(&self, full: &str) -> u64 {
        self.report
            .overview
            .by_name
            .iter()
            .find(|(n, _)| n == full)
            .map_or(0, |(_, c)| *c)
    }

    /// Per second of trace (0 for an empty trace).
    pub fn per_s(&self, n: u64) -> f64 {
        if self.duration_s > 0.0 {
            n as f64 / self.duration_s
        } else {
            0.0
        }
    }

    /// Per second per busy vCPU thread (`None` when the trace shows no vCPU thread).
    pub fn per_vcpu_s(&self, n: u64) -> Option<f64> {
        (self.vcpus > 0).then(|| self.per_s(n) / f64::from(self.vcpus))
    }

    /// Per second per vCPU when vCPU threads are known, else per second.
    pub fn norm(&self, n: u64) -> f64 {
        self.per_vcpu_s(n).unwrap_or_else(|| self.per_s(n))
    }

    /// A rate as evidence.
    pub fn rate(&self, what: impl Into<String>, n: u64) -> Evidence {
        Evidence::rate(what, n, self.per_s(n), self.per_vcpu_s(n))
    }

    /// A rate of guest-side events (per second only: guest CPUs are not vCPU threads here).
    pub fn guest_rate(&self, what: impl Into<String>, n: u64) -> Evidence {
        Evidence::rate(what, n, self.per_s(n), None)
    }

    /// A top-N breakdown row.
    pub fn top_row(&self, key: impl Into<String>, count: u64) -> TopRow {
        TopRow {
            key: key.into(),
            count,
            per_s: self.per_s(count),
        }
    }

    /// `kvm_msr` accesses (host side) matching `keep(msr, write)`, with the top MSRs.
    pub fn msr_accesses(&self, keep: impl Fn(u32, bool) -> bool) -> (u64, Vec<TopRow>) {
        let mut rows: Vec<(String, u64)> = Vec::new();
        let mut total = 0;
        for r in &self.report.accesses.msr {
            if keep(r.msr.msr, r.write) {
                total += r.count;
                let name = r.msr.name.map_or(String::new(), |n| format!(" {n}"));
                rows.push((
                    format!(
                        "{} {:#x}{name}",
                        if r.write { "write" } else { "read" },
                        r.msr.msr
                    ),
                    r.count,
                ));
            }
        }
        (total, self.top(rows, 5))
    }

    /// Sorted, cut to `n` rows.
    pub fn top(&self, mut rows: Vec<(String, u64)>, n: usize) -> Vec<TopRow> {
        rows.retain(|r| r.1 > 0);
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(n);
        rows.into_iter().map(|(k, c)| self.top_row(k, c)).collect()
    }

    /// `kvm_exit`s whose reason name is one of `names` (case-insensitive).
    pub fn exits_named(&self, names: &[&str]) -> u64 {
        self.report.exits.as_ref().map_or(0, |e| {
            e.rows
                .iter()
                .filter(|r| names.iter().any(|n| r.reason.eq_ignore_ascii_case(n)))
                .map(|r| r.count)
                .sum()
        })
    }

    /// All `kvm_exit`s.
    pub fn exits_total(&self) -> u64 {
        self.report.exits.as_ref().map_or(0, |e| e.total)
    }

    /// `kvm_userspace_exit`s with this reason number (2 IO, 6 MMIO, 5 HLT...).
    pub fn userspace_exits(&self, reason: u32) -> u64 {
        self.report
            .overview
            .userspace_exits
            .iter()
            .filter(|r| r.reason == reason && r.errno.is_none())
            .map(|r| r.count)
            .sum()
    }

    /// kvmmmu events of one kind.
    pub fn mmu(&self, kind: MmuKind) -> u64 {
        self.report.mmu.as_ref().map_or(0, |m| {
            m.events
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| *n)
                .sum()
        })
    }
}

/// `v / of` in percent (0 when `of` is 0).
pub fn pct(v: f64, of: f64) -> f64 {
    if of > 0.0 {
        100.0 * v / of
    } else {
        0.0
    }
}
