//! Shadow MMU root churn and unsync/zap storms (field report 001): with shadow paging every
//! guest CR3 switch that misses KVM's small root cache reloads a shadow root.

use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;
use kvmscope_trace::MmuKind;

use crate::facts::Facts;
use crate::facts::CR3_EXITS;
use crate::finding::{Confidence, Evidence, Finding, Fix};
use crate::rules::{paging_mode, RootChurn, MIN_EVENTS};

/// Root (re)loads per second per vCPU for a warning. Field report 001: an idle guest ~0/s, a
/// guest building a kernel >100/s for the whole VM; 500/s per vCPU is well past that, a guest
/// switching among more address spaces than the root cache holds.
pub const WARN_PER_VCPU_S: f64 = 500.0;
/// Critical: each reload walks and syncs the root's unsync children; the lab's `cr3 --roots 6`
/// does 160,000/s here.
pub const CRIT_PER_VCPU_S: f64 = 10_000.0;
/// Share of vCPU time in CR3-write exits that missed the root cache, for a warning: a tenth of
/// the guest's time switching address spaces is far past a healthy guest's (well under 1%).
pub const WARN_SHARE_PCT: f64 = 10.0;
/// Critical: a third of the vCPU's time (the lab's `cr3 --roots 6`: ~65% on emulated SVM).
pub const CRIT_SHARE_PCT: f64 = 30.0;

pub fn check(f: &Facts, report: &Report, system: Option<&SystemSnapshot>) -> Vec<Finding> {
    let Some(mmu) = &report.mmu else {
        return Vec::new();
    };
    let (new, existing) = mmu
        .root_loads
        .iter()
        .fold((0, 0), |(n, e), (_, c)| (n + c.new, e + c.existing));
    let loads = new + existing;
    let sync = f.mmu(MmuKind::SyncPage);
    let unsync = f.mmu(MmuKind::Unsync);
    let zap = f.mmu(MmuKind::PrepareZap) + f.mmu(MmuKind::ZapPage);
    // Root loads are the main signal; a sync/zap storm without root loads counts at half
    // weight (each is cheaper than a root reload, which also syncs).
    let churn = loads.max((sync + zap) / 2);
    // The CR3-write exits that missed the cache: all of their time, scaled by the share of
    // them that reloaded a root.
    let cr3_exits = f.exits_named(&CR3_EXITS);
    let missed = if cr3_exits > 0 {
        (loads as f64 / cr3_exits as f64).min(1.0)
    } else {
        0.0
    };
    let share = f
        .exit_share(&CR3_EXITS, |r| (r.latency.total_ns as f64 * missed) as u64)
        .or_else(|| f.estimated_share("kvmmmu:kvm_mmu_get_page", loads));
    let Some(grade) = RootChurn::grade(f, churn, share) else {
        return Vec::new();
    };
    let mut evidence = grade.evidence("CR3 writes that reloaded a shadow root");
    evidence.push(f.rate("root-level kvm_mmu_get_page (shadow root loads)", loads));
    if cr3_exits > 0 {
        evidence.push(f.rate("CR3-write exits (CR_ACCESS / write_cr3)", cr3_exits));
    }
    evidence.push(Evidence::count("  of which new roots built", new));
    evidence.push(Evidence::count(
        "  of which existing roots found after a prev_roots cache miss",
        existing,
    ));
    let per_thread: Vec<(String, u64)> = mmu
        .root_loads
        .iter()
        .map(|(t, c)| (format!("tid {t}"), c.new + c.existing))
        .collect();
    if per_thread.len() > 1 {
        evidence.push(f.top_evidence("root loads by vCPU thread", per_thread, 8));
    }
    if mmu.cr3_writes > 0 {
        evidence.push(f.rate("CR3 writes (kvm_cr)", mmu.cr3_writes));
        evidence.push(Evidence::share(
            "CR3 writes that missed the root cache",
            crate::facts::pct(loads as f64, mmu.cr3_writes as f64),
        ));
    }
    evidence.extend(f.rates([
        ("kvm_mmu_sync_page", sync),
        ("kvm_mmu_unsync_page", unsync),
        ("kvm_mmu_prepare_zap_page / zap", zap),
    ]));
    let mode = paging_mode(system);
    if let Some(m) = mode {
        evidence.push(Evidence::fact(
            "paging mode (from the host's KVM parameters)",
            m,
        ));
    }
    let mut finding = grade.finding(RootChurn::ID, "Shadow MMU root churn");
    finding.confidence = if loads >= MIN_EVENTS {
        Confidence::High
    } else {
        Confidence::Medium
    };
    finding.evidence = evidence;
    finding.mechanism = "With shadow paging a guest MOV CR3 makes KVM switch shadow roots: kvm_mmu_new_pgd looks \
        the new CR3 up in mmu->prev_roots (the current root plus KVM_MMU_NUM_PREV_ROOTS = 3 cached ones); on a miss \
        the root is freed from the cache and kvm_mmu_load → mmu_alloc_shadow_roots → kvm_mmu_get_page finds it in \
        the hash (existing) or builds it (new), then kvm_mmu_sync_roots walks its unsync children \
        (mmu_sync_children, mmu_zap_unsync_children) under mmu_lock. A guest switching among more than four \
        address spaces pays this on every switch (field report 001)."
        .into();
    finding.fix = vec![
        Fix::cmd(
            "use two-dimensional paging: with EPT/NPT guest CR3 writes do not exit and there are no shadow roots",
            "cat /sys/module/kvm_intel/parameters/ept /sys/module/kvm_amd/parameters/npt   # Y; else modprobe kvm_intel ept=1 / kvm_amd npt=1",
        ),
        Fix::new(
            "on shadow-only hosts (PVM, nested without EPT): fewer address spaces switching on each vCPU: fewer \
             runnable processes per vCPU, pin busy processes to their own vCPUs (taskset), prefer threads over \
             processes in the guest workload",
        ),
        Fix::cmd(
            "watch root loads per vCPU per second while changing the workload",
            "kvmscope diagnose --live 5s",
        ),
    ];
    finding.references = vec![
        "case 001 in kvmscope's docs/field-reports.md (shadow MMU root reloads per second)".into(),
        "Documentation/virt/kvm/x86/mmu.rst (shadow pages, unsync, root cache)".into(),
        "arch/x86/kvm/mmu/mmu.c kvm_mmu_new_pgd, cached_root_find_and_keep_current, kvm_mmu_load"
            .into(),
    ];
    vec![finding]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::{fixture, only, pvm_snapshot, quiet};
    use crate::Severity;

    #[test]
    fn fires_on_lab_cr3_with_six_roots() {
        let sys = pvm_snapshot();
        let f = only(&RootChurn, &fixture("cr3-6-roots.txt"), Some(&sys));
        assert_eq!(f.severity, Severity::Critical, "{f:#?}");
    }

    #[test]
    fn stays_quiet_when_roots_fit_the_cache_and_on_healthy_captures() {
        quiet(
            &RootChurn,
            &[
                "cr3-4-roots.txt",
                "idle.txt",
                "compute.txt",
                "pagefault.txt",
                "timer-storm.txt",
            ],
        );
    }
}
