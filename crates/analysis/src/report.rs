//! The batch report: every host-side analysis fed from one event stream, finished into plain
//! data that renderers print and `--json` serialises.

use kvmscope_trace::text::TextStats;
use kvmscope_trace::Event;
use serde::Serialize;

use crate::access::{AccessReport, Accesses};
use crate::exits::{ExitReport, Exits};
use crate::guest::{Guest, GuestReport, Scope};
use crate::interrupts::{InterruptReport, Interrupts};
use crate::mmu::{Mmu, MmuReport};
use crate::names::Class;
use crate::overview::{Overview, OverviewReport};
use crate::pacing::{Pacing, PacingRow};

/// Where the events came from and how complete they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InputSummary {
    pub path: String,
    pub format: String,
    /// What the reader counted: bytes, lines, events, what did not parse, lost events, a cut-off
    /// end (a trace.dat has no lines; its lost events come from its pages).
    #[serde(flatten)]
    pub read: TextStats,
    /// Every event known lost: per-CPU losses, ring-buffer overwrites, unreadable pages.
    pub lost_total: u64,
    /// trace.dat: non-null pointer fields (hrtimer/csd functions, IPI callbacks and
    /// callsites) that the file's own kallsyms could not name, so they are shown as hex.
    #[serde(skip_serializing_if = "is_zero")]
    pub unresolved_pointers: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl InputSummary {
    /// The summary of a text input read by `kvmscope_trace::text`.
    pub fn text(path: impl Into<String>, read: TextStats) -> Self {
        InputSummary {
            path: path.into(),
            format: "text".into(),
            lost_total: read.lost_total(),
            read,
            unresolved_pointers: 0,
        }
    }

    /// A report over this input is partial: events were lost or the input was cut off.
    pub fn partial(&self) -> bool {
        self.lost_total > 0 || self.read.truncated_at.is_some()
    }
}

/// Names the JSON layout of [`Report`]; bumped on any incompatible change (docs/report-json.md).
pub const REPORT_SCHEMA: &str = "kvmscope-report/1";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// [`REPORT_SCHEMA`].
    pub schema: &'static str,
    pub inputs: Vec<InputSummary>,
    /// True when any input lost events or was cut off: counts are lower bounds.
    pub partial: bool,
    pub overview: OverviewReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exits: Option<ExitReport>,
    pub accesses: AccessReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mmu: Option<MmuReport>,
    pub interrupts: InterruptReport,
    /// How fast each kvm/kvmmmu event repeats on its thread (the per-event cost where exits
    /// are not paired).
    pub pacing: Vec<PacingRow>,
    /// Guest-side sections (msr, timer, ipi, csd, irq_vectors, tlb events of the kernel that
    /// was traced), when the trace has such events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestReport>,
}

/// Which events a report keeps: by process (VM) and by thread (vCPU). Empty lists keep all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub pids: Vec<u32>,
    pub tids: Vec<u32>,
}

impl EventFilter {
    /// A pid matches the event's thread group, or the thread itself (a process's main thread
    /// has tid == pid, and traces without thread groups print only tids).
    #[inline]
    pub fn keeps(&self, ev: &Event<'_>) -> bool {
        (self.pids.is_empty()
            || ev.tgid.is_some_and(|p| self.pids.contains(&p))
            || self.pids.contains(&ev.tid))
            && (self.tids.is_empty() || self.tids.contains(&ev.tid))
    }
}

/// Feeds every analysis; call [`ReportBuilder::observe`] per event in time order per thread.
#[derive(Debug, Default)]
pub struct ReportBuilder {
    overview: Overview,
    exits: Exits,
    accesses: Accesses,
    mmu: Mmu,
    interrupts: Interrupts,
    pacing: Pacing,
    guest: Guest,
    guest_events: u64,
    /// What the current input is, when its reader could tell (see [`ReportBuilder::set_input`]).
    input: InputSide,
    /// Guest-system events from inputs known to be guests.
    guest_input_events: u64,
    /// Leave a host kernel's own ipi/csd/timer events out of the guest analysis (a guest's
    /// recording is among the inputs, and its events are the guest side).
    skip_host_kernel: bool,
}

/// Which kernel an input was recorded on, as its contents say: a kernel whose recording
/// enabled KVM's events (and so has KVM loaded) is a host.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum InputSide {
    #[default]
    Unknown,
    Host,
    Guest,
}

impl ReportBuilder {
    pub fn new() -> Self {
        Self {
            guest: Guest::new(Scope::all()),
            ..Self::default()
        }
    }

    pub fn observe(&mut self, ev: &Event<'_>) {
        // The system is classified once per event name (the overview interns names), not
        // compared here per event.
        let (id, class) = self.overview.observe(ev);
        match class {
            Class::Kvm => {
                self.exits.observe(ev);
                self.accesses.observe(ev);
                self.mmu.observe(ev);
                self.interrupts.observe(ev);
                self.pacing.observe_id(ev, id);
            }
            Class::KvmMmu => {
                self.mmu.observe(ev);
                self.pacing.observe_id(ev, id);
            }
            Class::Guest => {
                if self.skip_host_kernel && self.input == InputSide::Host {
                    return;
                }
                self.guest_events += 1;
                self.guest_input_events += u64::from(self.input == InputSide::Guest);
                self.guest.observe(ev);
            }
            Class::Other => {}
        }
    }

    /// Says which kernel the next input was recorded on, and whether a guest's own recording
    /// is among the inputs: then the host kernel's own ipi/csd/timer events stay out of the
    /// guest analysis, which is the guest's.
    pub fn set_input(&mut self, side: InputSide, guest_among_inputs: bool) {
        self.input = side;
        self.skip_host_kernel = guest_among_inputs;
    }

    pub fn finish(&self, inputs: Vec<InputSummary>) -> Report {
        Report {
            schema: REPORT_SCHEMA,
            partial: inputs.iter().any(InputSummary::partial),
            inputs,
            overview: self.overview.finish(),
            exits: (!self.exits.is_empty()).then(|| self.exits.finish()),
            accesses: self.accesses.finish(),
            mmu: (!self.mmu.is_empty()).then(|| self.mmu.finish()),
            interrupts: self.interrupts.finish(),
            pacing: self.pacing.finish(),
            guest: (self.guest_events > 0).then(|| {
                let mut g = self.guest.finish();
                // A kernel that runs KVM is a host: its ipi/csd/timer events are its own. Where
                // an input was known to be a guest's, its events are the guest side.
                g.host_side = self.guest_input_events == 0 && self.overview.kvm_events() > 0;
                g
            }),
        }
    }
}
