//! Numbers every rule needs, computed once from a report: the trace's duration, the busy vCPU
//! threads, counts by event name, rates.

use kvmscope_analysis::exits::ExitRow;
use kvmscope_analysis::Report;
use kvmscope_trace::MmuKind;

use crate::finding::{Evidence, TopRow};

/// How an access is named in breakdowns: `write` or `read`.
pub fn access(write: bool) -> &'static str {
    if write {
        "write"
    } else {
        "read"
    }
}

/// Systems of guest-side events (what a kernel running inside a VM shows about itself).
pub const GUEST_SYSTEMS: [&str; 6] = ["msr", "timer", "ipi", "csd", "irq_vectors", "tlb"];

/// Exit reasons (as kvm_exit prints them on VMX, SVM and arm64) that fix guest page faults:
/// EPT violations and misconfigurations, NPFs, intercepted #PF (shadow paging: SVM `PF excp`,
/// VMX `EXCEPTION_NMI`) and stage-2 aborts. The MMIO ones among them are told apart by the
/// device access KVM emulated during the exit.
pub const FAULT_EXITS: [&str; 7] = [
    "EPT_VIOLATION",
    "EPT_MISCONFIG",
    "EXCEPTION_NMI",
    "npf",
    "PF excp",
    "DABT_LOW",
    "IABT_LOW",
];
/// Port IO exits.
pub const PIO_EXITS: [&str; 2] = ["IO_INSTRUCTION", "io"];
/// Guest CR3 writes that exit (shadow paging only: with EPT/NPT CR3 loads do not exit).
pub const CR3_EXITS: [&str; 2] = ["CR_ACCESS", "write_cr3"];
/// MSR access exits (SVM's `msr` is reads and writes alike).
pub const MSR_EXITS: [&str; 4] = ["MSR_WRITE", "MSR_WRITE_IMM", "MSR_READ", "msr"];

/// A repeat gap longer than this is not the cost of a round trip: no host we know takes a
/// millisecond per exit (PVM here 25-80 us, emulated SVM 40-130 us, bare metal 1-20 us), so
/// such an event is paced by the guest, not by what handling it costs.
pub const MAX_ROUND_TRIP_NS: u64 = 1_000_000;

/// The share of vCPU time a kind of exit took, and how it was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    pub pct: f64,
    pub how: ShareHow,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ShareHow {
    /// Exit → entry time of the paired exits (VMX, SVM, arm64 traces).
    Paired,
    /// No pairs (PVM): count × the event's fastest repeat on its thread in this capture.
    Pacing { cost_ns: u64 },
}

impl Share {
    /// The share as evidence, saying how it was measured.
    pub fn evidence(&self, what: &str) -> Evidence {
        match self.how {
            ShareHow::Paired => Evidence::share(
                format!("share of vCPU time: {what} (exit → entry, over the busy vCPU threads' time)"),
                self.pct,
            ),
            ShareHow::Pacing { cost_ns } => Evidence::share(
                format!(
                    "share of vCPU time: {what}, estimated as count × {:.1} us, the event's fastest repeat on a vCPU thread in this capture (no exit/entry pairs here)",
                    cost_ns as f64 / 1e3
                ),
                self.pct,
            ),
        }
    }
}

/// Derived numbers over one report.
#[derive(Debug, Clone)]
pub struct Facts<'r> {
    pub report: &'r Report,
    /// Trace time from the first to the last event, seconds.
    pub duration_s: f64,
    /// Busy vCPU threads: threads with VM exits (or, in traces without exits, KVM events), at
    /// least 5% of the busiest one's.
    pub vcpus: u32,
    pub kvm_events: u64,
    pub guest_events: u64,
    /// The busy vCPU threads' time: the sum of each one's span (first to last KVM event).
    pub vcpu_time_ns: u64,
}

impl<'r> Facts<'r> {
    pub fn new(report: &'r Report) -> Facts<'r> {
        // vCPU threads are those with VM exits where the trace has them (a VMM thread that set
        // the VM up has KVM events but no exits), else those with KVM events (PVM).
        let all = report.overview.vms.iter().flat_map(|vm| vm.vcpus.iter());
        let with_exits = all.clone().any(|v| v.exits > 0);
        let threads: Vec<(u64, u64)> = all
            .map(|v| {
                (
                    if with_exits { v.exits } else { v.kvm_events },
                    v.last_ts_ns.saturating_sub(v.first_ts_ns),
                )
            })
            .collect();
        let busiest = threads.iter().map(|t| t.0).max().unwrap_or(0);
        let busy = threads.iter().filter(|&&(n, _)| n > 0 && n * 20 >= busiest);
        let vcpus = busy.clone().count() as u32;
        let vcpu_time_ns = busy.map(|t| t.1).sum();
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
            vcpu_time_ns,
        }
    }

    /// Whether exits are paired with entries (VMX, SVM, arm64 traces with kvm_entry).
    pub fn paired(&self) -> bool {
        self.report.exits.as_ref().is_some_and(|e| e.paired > 0)
    }

    fn exit_rows<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = &'a ExitRow> + 'a {
        self.report
            .exits
            .iter()
            .flat_map(|e| e.rows.iter())
            .filter(move |r| names.iter().any(|n| r.reason.eq_ignore_ascii_case(n)))
    }

    /// `ns` as a share of the busy vCPU threads' time, when exits are paired.
    pub fn paired_share(&self, ns: u64) -> Option<Share> {
        (self.paired() && self.vcpu_time_ns > 0).then(|| Share {
            pct: pct(ns as f64, self.vcpu_time_ns as f64).min(100.0),
            how: ShareHow::Paired,
        })
    }

    /// Time in exits of these reasons (all of it, `part = |r| r.latency.total_ns`, or a part).
    pub fn exit_share(&self, names: &[&str], part: impl Fn(&ExitRow) -> u64) -> Option<Share> {
        self.paired_share(self.exit_rows(names).map(part).sum())
    }

    /// Time in page-fault exits that were faults, not MMIO emulation; without pairs, that of
    /// `requested` missing SPTEs built (kvm_mmu_spte_requested), estimated.
    pub fn fault_share(&self, requested: u64) -> Option<Share> {
        self.exit_share(&FAULT_EXITS, |r| {
            r.latency.total_ns.saturating_sub(r.emulated.time_ns)
        })
        .or_else(|| self.estimated_share("kvmmmu:kvm_mmu_spte_requested", requested))
    }

    /// Time in port IO and MMIO exits that went to the VMM and back; without pairs, that of
    /// `exits` kvm_userspace_exits, estimated.
    pub fn userspace_io_share(&self, exits: u64) -> Option<Share> {
        let names: Vec<&str> = PIO_EXITS.iter().chain(&FAULT_EXITS).copied().collect();
        self.exit_share(&names, |r| r.userspace.time_ns)
            .or_else(|| self.estimated_share("kvm:kvm_userspace_exit", exits))
    }

    /// Without exit/entry pairs: `n` events of `event` (`system:name`) times the event's
    /// fastest repeat on a vCPU thread in this capture, as a share of the vCPU time. `None`
    /// with pairs (use the measured share), without repeats, or when the fastest repeat is
    /// slower than [`MAX_ROUND_TRIP_NS`] (the guest paces it, not its cost).
    pub fn estimated_share(&self, event: &str, n: u64) -> Option<Share> {
        if self.paired() || self.vcpu_time_ns == 0 {
            return None;
        }
        let row = self.report.pacing.iter().find(|p| p.event == event)?;
        let cost_ns = row.p5_ns;
        if cost_ns == 0 || cost_ns > MAX_ROUND_TRIP_NS {
            return None;
        }
        Some(Share {
            pct: pct(n as f64 * cost_ns as f64, self.vcpu_time_ns as f64).min(100.0),
            how: ShareHow::Pacing { cost_ns },
        })
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

    /// The rates of those of `rows` (what, count) that happened, in order.
    pub fn rates<'a>(&self, rows: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<Evidence> {
        rows.into_iter()
            .filter(|r| r.1 > 0)
            .map(|(what, n)| self.rate(what, n))
            .collect()
    }

    /// `n` exits as a share of all VM exits (`None` in a trace without exits).
    pub fn share_of_exits(&self, what: &str, n: u64) -> Option<Evidence> {
        let exits = self.exits_total();
        (exits > 0).then(|| Evidence::share(what, pct(n as f64, exits as f64)))
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
                    format!("{} {:#x}{name}", access(r.write), r.msr.msr),
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

    /// The top `n` of a breakdown as evidence (see [`Facts::top`]).
    pub fn top_evidence(
        &self,
        what: impl Into<String>,
        rows: Vec<(String, u64)>,
        n: usize,
    ) -> Evidence {
        Evidence::Top {
            what: what.into(),
            rows: self.top(rows, n),
        }
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
