//! Diagnosis: rules that read a [`Report`] (and the capture's [`SystemSnapshot`] when one came
//! with it) and name the pathology, with the numbers that show it, the kernel mechanism at
//! work, and what to change. One file per rule under `rules/`; `docs/rules.md` lists them with
//! their thresholds and why.
//!
//! Nothing here does I/O: [`diagnose`] is a pure function of a report and a snapshot, and the
//! renderers ([`render::text`], [`render::json`]) are pure functions of a [`Diagnosis`].

pub mod diff;
pub mod facts;
pub mod finding;
pub mod render;
pub mod rules;

use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;
use serde::Serialize;

pub use facts::Facts;
pub use finding::{Confidence, Evidence, Finding, Fix, Severity, TopRow};
pub use kvmscope_system::SystemSnapshot as Snapshot;

/// What can go wrong here (only rendering: rules never fail, they stay quiet).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiagnoseError {
    #[error("cannot serialise the diagnosis as JSON")]
    Json(#[source] serde_json::Error),
}

/// A diagnosis rule: reads the report (and the capture's system snapshot, when there is one)
/// and returns the findings it can support with numbers; none when it sees nothing wrong.
pub trait Rule: Sync {
    /// Stable id, e.g. `timer-storm`.
    fn id(&self) -> &'static str;
    /// One line: what this rule looks for.
    fn summary(&self) -> &'static str;
    /// The findings.
    fn check(&self, report: &Report, system: Option<&SystemSnapshot>) -> Vec<Finding>;
    /// Whether the rule checks a guest's configuration (its command line, sysctls): then it
    /// reads the guest's snapshot where a guest recording came with the host's.
    fn reads_guest_config(&self) -> bool {
        false
    }
}

/// Every rule, in the order `docs/rules.md` lists them.
pub fn all_rules() -> Vec<&'static dyn Rule> {
    rules::ALL.to_vec()
}

/// The result: findings ranked (most severe and most certain first), plus what the capture
/// held, so a reader knows what the absence of findings means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    /// Seconds of trace the rates are computed over.
    pub duration_s: f64,
    /// Events analysed.
    pub events: u64,
    /// KVM (host-side) events among them.
    pub kvm_events: u64,
    /// Guest-side events (msr, timer, ipi, csd, irq_vectors) among them.
    pub guest_events: u64,
    /// vCPU threads seen (busy ones: those with at least 5% of the busiest one's events).
    pub vcpu_threads: u32,
    /// Whether a system snapshot of the traced machine was available.
    pub system_snapshot: bool,
    /// Ranked findings.
    pub findings: Vec<Finding>,
}

impl Diagnosis {
    /// The most severe finding's severity (`None` when there are no findings).
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Whether anything at warning level or above was found (the exit status).
    pub fn has_warning(&self) -> bool {
        self.worst().is_some_and(|s| s >= Severity::Warning)
    }
}

/// Runs every rule and ranks the findings.
pub fn diagnose(report: &Report, system: Option<&SystemSnapshot>) -> Diagnosis {
    diagnose_sides(report, system, None)
}

/// [`diagnose`] over a host's and a guest's recordings read together: rules of the guest's
/// configuration read the guest's snapshot, the others the host's (each falls back on the
/// other's where one is missing).
pub fn diagnose_sides(
    report: &Report,
    host: Option<&SystemSnapshot>,
    guest: Option<&SystemSnapshot>,
) -> Diagnosis {
    let facts = Facts::new(report);
    let system = host.or(guest);
    let mut findings: Vec<Finding> = rules::ALL
        .iter()
        .flat_map(|r| {
            let sys = if r.reads_guest_config() {
                guest.or(host)
            } else {
                system
            };
            r.check(report, sys)
        })
        .collect();
    rank(&mut findings);
    Diagnosis {
        duration_s: facts.duration_s,
        events: report.overview.events,
        kvm_events: facts.kvm_events,
        guest_events: facts.guest_events,
        vcpu_threads: facts.vcpus,
        system_snapshot: system.is_some(),
        findings,
    }
}

/// Severity first, then confidence, then how far past its threshold the finding is, then
/// rule id (for a stable order).
pub fn rank(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.confidence.cmp(&a.confidence))
            .then(b.score.total_cmp(&a.score))
            .then(a.rule.cmp(b.rule))
    });
}
