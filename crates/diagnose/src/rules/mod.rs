//! One file per rule. Each states its thresholds as constants with why in a comment and in
//! `docs/rules.md`, and has a "fires" and a "stays quiet" test on real captures.

pub mod evidence;
pub mod fault_storm;
pub mod halt;
pub mod ipi_storm;
pub mod isolation;
pub mod root_churn;
pub mod timer_storm;
pub mod userspace_io;
pub mod vpmu;

#[cfg(test)]
pub(crate) mod testutil;

use kvmscope_system::SystemSnapshot;

use crate::facts::Share;
use crate::finding::Finding;
use crate::Rule;

/// Every rule, in documentation order.
pub static ALL: [&dyn Rule; 9] = [
    &timer_storm::TimerStorm,
    &fault_storm::FaultStorm,
    &root_churn::RootChurn,
    &vpmu::Vpmu,
    &ipi_storm::IpiStorm,
    &halt::Halt,
    &isolation::Isolation,
    &userspace_io::UserspaceIo,
    &evidence::IncompleteEvidence,
];

/// Fewest events of the main signal before a rule says anything: below this a rate is noise.
pub const MIN_EVENTS: u64 = 50;

/// The grade of a cost-driven signal (faults, root reloads, exits to the VMM): the share of
/// vCPU time it took where that was measured (paired exits, or the pacing estimate without
/// pairs), which holds on a host 100x slower or faster; its rate per vCPU only where neither
/// exists (a trace of counts alone).
#[derive(Debug, Clone, Copy)]
pub struct Grade {
    pub value: f64,
    pub warn: f64,
    pub crit: f64,
    pub share: Option<Share>,
}

/// A cost-driven rule's (warning, critical) thresholds on each signal.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Percent of vCPU time.
    pub share_pct: (f64, f64),
    /// Events per second per vCPU, where no share can be measured.
    pub per_vcpu_s: (f64, f64),
}

impl Grade {
    /// `None` below the warning threshold of whichever signal applies.
    pub fn of(share: Option<Share>, rate: f64, t: &Thresholds) -> Option<Grade> {
        let (value, (warn, crit)) = match share {
            Some(s) => (s.pct, t.share_pct),
            None => (rate, t.per_vcpu_s),
        };
        let g = Grade {
            value,
            warn,
            crit,
            share,
        };
        (g.value >= g.warn).then_some(g)
    }

    /// A finding graded so, titled `what: <share> of vCPU time (<rate>/s per vCPU)`.
    pub fn finding(&self, rule: &'static str, what: &str, rate: f64) -> Finding {
        let rate = crate::finding::num(rate);
        let title = match self.share {
            Some(s) => format!("{what}: {:.0}% of vCPU time ({rate}/s per vCPU)", s.pct),
            None => format!("{what}: {rate}/s per vCPU"),
        };
        Finding::graded(rule, title, self.value, self.warn, self.crit)
    }
}

/// Whether the snapshot says this host does shadow paging (PVM, or EPT/NPT off), TDP, or
/// cannot tell.
pub fn paging_mode(system: Option<&SystemSnapshot>) -> Option<&'static str> {
    let s = system?;
    if s.kvm_params.modules.contains_key("kvm_pvm") {
        return Some("shadow paging (kvm_pvm: PVM always shadows guest page tables)");
    }
    match s.kvm_params.tdp() {
        Some(true) => Some(if s.kvm_params.get_bool("kvm", "tdp_mmu") == Some(true) {
            "TDP (EPT/NPT on, TDP MMU)"
        } else {
            "TDP (EPT/NPT on, legacy MMU)"
        }),
        Some(false) => Some("shadow paging (EPT/NPT off: kvm_intel.ept=0 or kvm_amd.npt=0)"),
        None => None,
    }
}
