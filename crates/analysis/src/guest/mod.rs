//! Guest-side analyses: what a kernel running *inside* a VM does that makes the host work —
//! MSR writes (the TSC deadline above all), hrtimers and the ones re-armed from their own
//! interrupt, local timer interrupts, IPIs by sender, target and type, the functions run
//! through IPIs, and /proc/interrupts deltas over the capture (field reports 003 and 004).
//!
//! [`Guest::observe`] takes every event; [`Guest::finish`] gives a [`GuestReport`] of plain,
//! sorted data. A [`Scope`] restricts what is attributed to "ours" (a process's threads, a
//! set of CPUs, a time window) so a test or a user can separate a workload from the rest of
//! the system.

mod ipi;
mod msr;
mod timers;

use std::collections::BTreeSet;

use kvmscope_system::interrupts::{Interrupts, InterruptsDelta};
use kvmscope_trace::Event;
use serde::Serialize;

pub use ipi::{classify_function, CsdRow, IpiReport, IpiSentRow, TlbFlushRow};
pub use msr::{MsrReport, MsrRow, MSR_TSC_DEADLINE};
pub use timers::{HrtimerRow, LocalTimerRow, ScopeDeadlineWrites, TimerReport};

/// Which events count as "ours".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// Threads whose timers, MSR writes and IPI sends are attributed to the scope (empty:
    /// none is singled out).
    pub tids: BTreeSet<u32>,
    /// CPUs to look at (`None`: all).
    pub cpus: Option<BTreeSet<u32>>,
    /// Only events with `start <= ts_ns <= end` (`None`: all).
    pub window_ns: Option<(u64, u64)>,
}

impl Scope {
    /// The whole trace.
    pub fn all() -> Scope {
        Scope::default()
    }

    /// Events of these threads singled out.
    pub fn tids(tids: impl IntoIterator<Item = u32>) -> Scope {
        Scope {
            tids: tids.into_iter().collect(),
            ..Scope::default()
        }
    }

    fn admits(&self, ev: &Event<'_>) -> bool {
        if let Some((a, b)) = self.window_ns {
            if ev.ts_ns < a || ev.ts_ns > b {
                return false;
            }
        }
        self.cpus.as_ref().is_none_or(|c| c.contains(&ev.cpu))
    }

    fn owns(&self, tid: u32) -> bool {
        self.tids.contains(&tid)
    }
}

/// All guest-side analyses over one event stream.
#[derive(Debug, Default)]
pub struct Guest {
    scope: Scope,
    first_ns: Option<u64>,
    last_ns: u64,
    events: u64,
    msr: msr::Msrs,
    timers: timers::Timers,
    ipi: ipi::Ipis,
    interrupts: Option<InterruptsDelta>,
}

/// What the guest did, as plain data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestReport {
    /// The scope the report was made with.
    pub scope: Scope,
    /// Events seen in the scope.
    pub events: u64,
    /// Trace time from the first to the last event in the scope, ns (for rates).
    pub span_ns: u64,
    /// `msr:write_msr` by MSR and CPU.
    pub msr: MsrReport,
    /// hrtimers and local timer interrupts.
    pub timers: TimerReport,
    /// IPIs sent and received, csd functions, TLB flushes.
    pub ipi: IpiReport,
    /// /proc/interrupts at the end minus at the start, when both were given.
    pub interrupts_delta: Option<InterruptsDelta>,
    /// What may make these numbers incomplete, in words.
    pub warnings: Vec<String>,
    /// The traced kernel also runs KVM (the trace has kvm/kvmmmu events): these are that
    /// host's own timers, IPIs and MSR writes, not a guest's. Set by the report builder.
    pub host_side: bool,
}

impl Guest {
    /// An analysis of everything, with `scope` deciding what is "ours".
    pub fn new(scope: Scope) -> Guest {
        Guest {
            scope,
            ..Guest::default()
        }
    }

    /// Records /proc/interrupts read at the start and at the end of the capture.
    pub fn set_interrupts(&mut self, before: &Interrupts, after: &Interrupts) {
        self.interrupts = Some(kvmscope_system::interrupts::diff(before, after));
    }

    /// Takes one event.
    pub fn observe(&mut self, ev: &Event<'_>) {
        if !self.scope.admits(ev) {
            return;
        }
        self.events += 1;
        self.first_ns.get_or_insert(ev.ts_ns);
        self.last_ns = self.last_ns.max(ev.ts_ns);
        let ours = self.scope.owns(ev.tid);
        self.msr.observe(ev, ours);
        self.timers.observe(ev, ours);
        self.ipi.observe(ev, ours);
    }

    /// The report.
    pub fn finish(&self) -> GuestReport {
        GuestReport {
            scope: self.scope.clone(),
            events: self.events,
            span_ns: self.first_ns.map_or(0, |f| self.last_ns - f),
            msr: self.msr.finish(),
            timers: self.timers.finish(),
            ipi: self.ipi.finish(),
            interrupts_delta: self.interrupts.clone(),
            warnings: self.warnings(),
            host_side: false,
        }
    }
}

impl Guest {
    fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let patching = self.ipi.text_patching_runs();
        if patching > 0 {
            w.push(format!(
                "kernel text was patched during the capture ({patching} do_sync_core/text_poke IPI runs): \
                 another tracer registering or removing probes on the same tracepoints can make \
                 events go missing for a moment; counts may be a little low"
            ));
        }
        w
    }
}

impl GuestReport {
    /// Events per second of trace time for a count over this report's span.
    pub fn rate(&self, count: u64) -> f64 {
        if self.span_ns == 0 {
            0.0
        } else {
            count as f64 * 1e9 / self.span_ns as f64
        }
    }
}
