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
