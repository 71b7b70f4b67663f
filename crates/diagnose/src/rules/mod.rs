//! One file per rule: its `check` (the findings, from the report's [`Facts`]) and its
//! thresholds as constants with why in a comment and in `docs/rules.md`, and a "fires" and a
//! "stays quiet" test on real captures. Each rule's type, id and summary are declared once, in
//! the `rules!` table below.

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

use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;

use crate::facts::{Facts, Share};
use crate::finding::{Evidence, Finding};
use crate::Rule;

/// Declares the rules, each once: its type, the module whose `check` finds its findings, its
/// flags, id and one-line summary; and [`ALL`], in this order. Each type gets an `ID` const and
/// one `impl Rule` that gives `check` the report's [`Facts`]. Flags: `guest`, the rule reads the
/// guest's configuration ([`Rule::reads_guest_config`]); `graded`, the rule grades by cost with
/// a `THRESHOLDS` const made of its module's `WARN_`/`CRIT_` `SHARE_PCT` and `PER_VCPU_S`.
macro_rules! rules {
    (@guest guest) => { true };
    (@guest $($other:ident)?) => { false };
    (@flag guest $name:ident $m:ident) => {};
    (@flag graded $name:ident $m:ident) => {
        impl $name {
            #[doc = concat!("The `", stringify!($m), "` constants as [`Thresholds`].")]
            pub const THRESHOLDS: Thresholds = Thresholds {
                share_pct: ($m::WARN_SHARE_PCT, $m::CRIT_SHARE_PCT),
                per_vcpu_s: ($m::WARN_PER_VCPU_S, $m::CRIT_PER_VCPU_S),
            };

            /// [`Grade::cost`] by these thresholds.
            pub fn grade(f: &Facts, events: u64, share: Option<Share>) -> Option<Grade> {
                Grade::cost(f, events, share, &Self::THRESHOLDS)
            }
        }
    };
    ($($m:ident::$name:ident($($flag:ident),*): $id:literal, $summary:literal;)*) => {
        $(
            #[doc = concat!("`", $id, "` (`rules/", stringify!($m), ".rs`): ", $summary, ".")]
            #[derive(Debug)]
            pub struct $name;

            impl $name {
                /// The rule's id.
                pub const ID: &'static str = $id;
            }

            impl Rule for $name {
                fn id(&self) -> &'static str {
                    Self::ID
                }
                fn summary(&self) -> &'static str {
                    $summary
                }
                fn check(&self, report: &Report, system: Option<&SystemSnapshot>) -> Vec<Finding> {
                    $m::check(&Facts::new(report), report, system)
                }
                fn reads_guest_config(&self) -> bool {
                    false $(|| rules!(@guest $flag))*
                }
            }

            $(rules!(@flag $flag $name $m);)*
        )*

        /// Every rule, in documentation order.
        pub static ALL: &[&dyn Rule] = &[$(&$name),*];
    };
}

rules! {
    timer_storm::TimerStorm(guest): "timer-storm", "guest LAPIC timer (IA32_TSC_DEADLINE) re-programmed thousands of times a second";
    fault_storm::FaultStorm(graded): "fault-storm", "guest page faults / EPT violations / NPFs that KVM fixes at a high rate";
    root_churn::RootChurn(graded): "shadow-root-churn", "shadow MMU roots reloaded on guest CR3 switches (prev_roots misses), unsync/sync/zap storms";
    vpmu::Vpmu(): "vpmu-cost", "guest PMU counter MSR and RDPMC exits at a high rate";
    ipi_storm::IpiStorm(): "ipi-storm", "inter-processor interrupts between vCPUs at a high rate (ICR writes, kvm_apic_ipi; guest ipi/csd by function)";
    halt::Halt(): "halt-wakeups", "vCPUs halting (HLT, WFI/WFE) and woken at a high rate; halt-polling success and waste";
    isolation::Isolation(guest): "isolation", "nohz_full/isolcpus/rcu_nocbs set up wrong: ticks on isolated CPUs, timer migration on, parameters ignored";
    userspace_io::UserspaceIo(graded): "userspace-io", "port IO / MMIO exits to the VMM for device emulation at a high rate";
    evidence::IncompleteEvidence(): "incomplete-evidence", "lost events, cut-off or unreadable input, too short a capture, no KVM activity";
}

/// Fewest events of the main signal before a rule says anything: below this a rate is noise.
pub const MIN_EVENTS: u64 = 50;

/// The grade of a cost-driven signal (faults, root reloads, exits to the VMM): the share of
/// vCPU time it took where that was measured (paired exits, or the pacing estimate without
/// pairs), which holds on a host 100x slower or faster; its rate per vCPU only where neither
/// exists (a trace of counts alone).
#[derive(Debug, Clone, Copy)]
pub struct Grade {
    /// The signal's events per second per vCPU (per second where no vCPU thread is known).
    pub rate: f64,
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
    /// The grade of `events` of a rule's main signal that took `share` of vCPU time: `None`
    /// below [`MIN_EVENTS`] or below the warning threshold of whichever signal applies.
    pub fn cost(f: &Facts, events: u64, share: Option<Share>, t: &Thresholds) -> Option<Grade> {
        if events < MIN_EVENTS {
            return None;
        }
        Grade::of(share, f.norm(events), t)
    }

    /// `None` below the warning threshold of whichever signal applies.
    pub fn of(share: Option<Share>, rate: f64, t: &Thresholds) -> Option<Grade> {
        let (value, (warn, crit)) = match share {
            Some(s) => (s.pct, t.share_pct),
            None => (rate, t.per_vcpu_s),
        };
        let g = Grade {
            rate,
            value,
            warn,
            crit,
            share,
        };
        (g.value >= g.warn).then_some(g)
    }

    /// The evidence a finding graded so opens with: the share of vCPU time `what` took.
    pub fn evidence(&self, what: &str) -> Vec<Evidence> {
        self.share.iter().map(|s| s.evidence(what)).collect()
    }

    /// A finding graded so, titled `what: <share> of vCPU time (<rate>/s per vCPU)`.
    pub fn finding(&self, rule: &'static str, what: &str) -> Finding {
        let rate = crate::finding::num(self.rate);
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
