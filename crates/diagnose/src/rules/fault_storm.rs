//! Paging fault storm (field report 000): guest memory accesses that KVM must fix up, as EPT
//! violations / NPFs under two-dimensional paging or as shadow-page-table faults.

use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;
use kvmscope_trace::MmuKind;

use crate::facts::Facts;
use crate::finding::{Confidence, Evidence, Finding, Fix};
use crate::rules::{paging_mode, FaultStorm};

/// Faults KVM fixed per second per vCPU for a warning. After boot a guest whose memory is
/// populated takes few: a guest touching fresh memory at 5,000 pages/s per vCPU moves 20 MB/s
/// of new 4 KiB pages per vCPU, which is a populating or thrashing guest, not a steady one.
pub const WARN_PER_VCPU_S: f64 = 5_000.0;
/// Critical: at tens of microseconds each (10 us here on PVM, more under contention), 50,000
/// faults/s is half a CPU or more spent in the MMU per vCPU (the lab's pagefault: 96,000/s).
pub const CRIT_PER_VCPU_S: f64 = 50_000.0;
/// Share of vCPU time spent fixing faults (exit → entry of the fault exits that were not MMIO)
/// for a warning: a tenth of the guest's time in the MMU is a tenth of its speed gone,
/// whatever the host's speed.
pub const WARN_SHARE_PCT: f64 = 10.0;
/// Critical: 40% of the vCPU's time (the lab's pagefault: 50-75% on emulated SVM).
pub const CRIT_SHARE_PCT: f64 = 40.0;

pub fn check(f: &Facts, report: &Report, system: Option<&SystemSnapshot>) -> Vec<Finding> {
    let pf = report.mmu.as_ref().map_or(0, |m| m.page_faults.total);
    let tdp_exits = f.exits_named(&["EPT_VIOLATION", "npf", "DABT_LOW", "IABT_LOW"]);
    let exc_pf = f.exits_named(&["EXCEPTION_NMI", "PF excp"]);
    let requested = f.mmu(MmuKind::SptePrequested);
    let set_spte = f.mmu(MmuKind::SetSpte);
    let fast = f.mmu(MmuKind::FastPageFault);
    // One fault fixed = one kvm_page_fault (VMX/SVM), else one spte request (every host
    // with kvmmmu events, PVM included).
    let faults = pf.max(tdp_exits).max(exc_pf).max(requested);
    let Some(grade) = FaultStorm::grade(f, faults, f.fault_share(requested)) else {
        return Vec::new();
    };
    let mut evidence = grade.evidence("fixing page faults (MMIO faults left out)");
    if pf > 0 {
        evidence.push(f.rate("kvm_page_fault", pf));
        let p = report
            .mmu
            .as_ref()
            .map(|m| m.page_faults)
            .unwrap_or_default();
        evidence.push(Evidence::share(
            "of which writes",
            crate::facts::pct(p.write as f64, pf as f64),
        ));
        evidence.push(Evidence::share(
            "of which on present pages (protection, not missing)",
            crate::facts::pct(p.present as f64, pf as f64),
        ));
    }
    let new_pages = report.mmu.as_ref().map_or(0, |m| {
        m.events
            .iter()
            .filter(|(k, _)| *k == MmuKind::GetPage)
            .map(|(_, n)| *n)
            .sum::<u64>()
    });
    evidence.extend(f.rates([
        ("EPT violation / NPF / stage-2 abort exits", tdp_exits),
        (
            "#PF exception exits (shadow paging intercepts guest #PF)",
            exc_pf,
        ),
        (
            "kvmmmu:kvm_mmu_spte_requested (a missing SPTE built)",
            requested,
        ),
        ("kvmmmu:kvm_mmu_set_spte", set_spte),
        ("kvmmmu:fast_page_fault (fixed without the MMU lock)", fast),
        (
            "kvmmmu:kvm_mmu_get_page (shadow/TDP page tables looked up or built)",
            new_pages,
        ),
    ]));
    let mode = paging_mode(system);
    if let Some(m) = mode {
        evidence.push(Evidence::fact(
            "paging mode (from the host's KVM parameters)",
            m,
        ));
    }
    let mut finding = grade.finding(FaultStorm::ID, "Paging fault storm");
    finding.confidence = if pf > 0 || requested > 0 {
        Confidence::High
    } else {
        Confidence::Medium
    };
    finding.evidence = evidence;
    let shadow = mode.is_some_and(|m| m.starts_with("shadow"));
    finding.mechanism = if shadow {
        "With shadow paging KVM intercepts the guest's page faults: kvm_mmu_page_fault runs the shadow fault \
         handler (FNAME(page_fault) in arch/x86/kvm/mmu/paging_tmpl.h), which walks the guest's page tables \
         (FNAME(walk_addr)) and builds the shadow PTE (mmu_set_spte, kvm_mmu_spte_requested/kvm_mmu_set_spte), \
         taking mmu_lock. Every first touch of a page, and every guest page-table change KVM write-protects, \
         costs such a fault."
            .into()
    } else {
        "Under two-dimensional paging a guest access to memory with no EPT/NPT entry exits (EPT_VIOLATION, npf) \
         to kvm_mmu_page_fault → kvm_tdp_page_fault, which faults the host page in (__kvm_faultin_pfn, \
         possibly from swap or a fresh allocation) and maps it (kvm_tdp_mmu_map). A steady stream means guest \
         memory keeps being unmapped on the host side (overcommit, swapping, KSM, ballooning, THP splits, \
         dirty logging) or the guest keeps touching new memory; without TDP (npt_enabled/tdp_enabled off) \
         every guest #PF exits (field report 000: tdp_page_fault under pf_interception)."
            .into()
    };
    if shadow {
        finding.fix.push(Fix::cmd(
            "run the VM on a host with EPT/NPT enabled (shadow paging makes every first touch and guest page-table write a fault)",
            "cat /sys/module/kvm_intel/parameters/ept /sys/module/kvm_amd/parameters/npt   # Y; else: modprobe -r kvm_intel && modprobe kvm_intel ept=1",
        ));
    }
    finding.fix.extend([
        Fix::cmd(
            "back guest memory with huge pages and pre-fault it, so the host maps it once in 2 MiB/1 GiB pieces",
            "echo 2048 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages; qemu ... -object memory-backend-file,id=m0,mem-path=/dev/hugepages,size=8G,prealloc=on -numa node,memdev=m0   # or -mem-prealloc",
        ),
        Fix::cmd(
            "check for host memory overcommit: swapping, KSM merging, ballooning",
            "grep -E 'pswp(in|out)' /proc/vmstat; cat /sys/kernel/mm/ksm/pages_sharing; echo 0 > /sys/kernel/mm/ksm/run",
        ),
        Fix::cmd(
            "make transparent huge pages available to the VMM when hugetlbfs is not used",
            "echo always > /sys/kernel/mm/transparent_hugepage/enabled   # or madvise, with QEMU's default madvise",
        ),
    ]);
    finding.references = vec![
        "case 000 in kvmscope's docs/field-reports.md (CI VMs slowed by the MMU fault path)".into(),
        "Documentation/virt/kvm/x86/mmu.rst".into(),
        "arch/x86/kvm/mmu/mmu.c kvm_mmu_page_fault; arch/x86/kvm/mmu/paging_tmpl.h FNAME(page_fault)".into(),
    ];
    vec![finding]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::{fires, fixture, pvm_snapshot, quiet, says};
    use crate::Rule;

    #[test]
    fn fires_on_lab_pagefault_with_shadow_paging_named() {
        let sys = pvm_snapshot();
        let f = fires(&FaultStorm, &fixture("pagefault.txt"), Some(&sys));
        assert!(f.mechanism.contains("shadow"), "{}", f.mechanism);
        says(&f, "kvm_pvm");
    }

    #[test]
    fn fires_on_public_svm_npf_trace() {
        let r = fixture("public/svm-mid-layout-npf.txt");
        let v = FaultStorm.check(&r, None);
        // A short public excerpt: the rule must at least not mistake it for something else;
        // when it fires it names the NPF exits.
        for f in v {
            says(&f, "NPF");
        }
    }

    #[test]
    fn stays_quiet_on_healthy_captures() {
        quiet(
            &FaultStorm,
            &[
                "idle.txt",
                "compute.txt",
                "cr3-6-roots.txt",
                "timer-storm.txt",
                "pio.txt",
            ],
        );
    }
}
