//! vPMU cost (field report 002): a guest programming performance counters makes KVM
//! reprogram host perf events on every counter MSR access, and inject PMIs. On arm64 every
//! guest access to a PMU system register (`PM*`: PMCR_EL0, PMOVSCLR_EL0, PMEVCNTRn_EL0, ...)
//! traps to KVM the same way.

use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;
use kvmscope_trace::tables::{msr_class, MsrClass};

use crate::facts::{access, Facts};
use crate::finding::{Confidence, Evidence, Finding, Fix};
use crate::rules::{Vpmu, MIN_EVENTS};

/// PMU MSR accesses + RDPMC exits per second per vCPU for a warning. `perf stat` in a guest
/// touches counters a few times per context switch and per multiplexing interval (4 ms): a few
/// hundred per second per vCPU. 1,000/s per vCPU is sampling with many events (field report 002).
pub const WARN_PER_VCPU_S: f64 = 1_000.0;
/// Critical: tens of thousands per second means perf events are recreated continuously; each
/// reprogramming takes perf_event_ctx_lock (field report 002: vCPU threads 60% in that lock).
pub const CRIT_PER_VCPU_S: f64 = 20_000.0;
/// Share of vCPU time in PMU register traps (arm64 `PM*` system registers; exit → entry) for a
/// warning, which holds on a slow host where the rate cannot reach [`WARN_PER_VCPU_S`]: a guest
/// without perf users takes none (the emulated arm64 host's `idle`, `ipi`, `wfx`: no `PM*` trap
/// at all), its `vpmu` scenario (four sampling cycle events per vCPU) spent 15-22% of vCPU time so (VHE and nVHE).
pub const WARN_SHARE_PCT: f64 = 2.0;
/// Critical: a tenth of the vCPUs' time only in PMU register traps.
pub const CRIT_SHARE_PCT: f64 = 10.0;

/// The arm64 PMU system registers KVM traps: PMCR_EL0, PMCNTENSET/CLR_EL0, PMOVSSET/CLR_EL0,
/// PMINTENSET/CLR_EL1, PMSELR_EL0, PMCCNTR_EL0, PMCCFILTR_EL0, PMEVCNTRn/PMEVTYPERn_EL0,
/// PMXEVCNTR/PMXEVTYPER_EL0, PMUSERENR_EL0, PMSWINC_EL0, PMCEIDn_EL0, PMMIR_EL1.
pub fn is_pmu_sysreg(name: &str) -> bool {
    name.starts_with("PM")
}

pub fn check(f: &Facts, report: &Report, system: Option<&SystemSnapshot>) -> Vec<Finding> {
    let (msrs, top) = f.msr_accesses(|m, _| msr_class(m) == MsrClass::Pmu);
    let rdpmc = f.exits_named(&["RDPMC", "rdpmc"]);
    // arm64: PMU system-register traps (kvm_sys_access), and the time they took.
    let pm_rows: Vec<_> = report
        .accesses
        .sysreg
        .iter()
        .filter(|r| is_pmu_sysreg(&r.name))
        .collect();
    let pm: u64 = pm_rows.iter().map(|r| r.count).sum();
    let pm_ns: u64 = pm_rows.iter().map(|r| r.latency.total_ns).sum();
    let total = msrs + rdpmc + pm;
    if total < MIN_EVENTS {
        return Vec::new();
    }
    let value = f.norm(total);
    let share = (pm >= MIN_EVENTS)
        .then(|| f.paired_share(pm_ns))
        .flatten()
        .filter(|s| s.pct > 0.0);
    let by_share = share
        .filter(|s| s.pct >= WARN_SHARE_PCT && s.pct / WARN_SHARE_PCT > value / WARN_PER_VCPU_S);
    if value < WARN_PER_VCPU_S && by_share.is_none() {
        return Vec::new();
    }
    let arm = pm > msrs + rdpmc;
    let mut evidence = Vec::new();
    if msrs > 0 || !arm {
        evidence.push(f.rate("PMU MSR accesses (kvm_msr)", msrs));
        evidence.push(Evidence::Top {
            what: "PMU MSRs".into(),
            rows: top,
        });
    }
    evidence.extend(f.rates([("RDPMC exits", rdpmc)]));
    if pm > 0 {
        evidence.push(f.rate(
            "PMU system-register traps (kvm_sys_access PM*: SYS64 exits)",
            pm,
        ));
        if let Some(s) = share {
            evidence.push(s.evidence("PMU system-register traps"));
        }
        let rows = pm_rows.iter();
        let rows = rows.map(|r| (format!("{} {}", access(r.write), r.name), r.count));
        evidence.push(f.top_evidence("PMU system registers", rows.collect(), 6));
    }
    // NMIs the LAPIC accepted (PMIs are delivered as NMI through LVTPC) per PMU exit.
    evidence.extend(f.share_of_exits("PMU exits among all exits", total));
    if let Some(s) = system {
        if let Some(v) = s.kvm_params.get("kvm", "enable_pmu") {
            evidence.push(Evidence::fact("kvm.enable_pmu", v));
        }
    }
    let mut finding = match by_share {
        Some(s) => Finding::graded(
            Vpmu::ID,
            format!(
                "vPMU cost: {:.1}% of vCPU time trapping the guest's PMU register accesses ({}/s per vCPU)",
                s.pct,
                crate::finding::num(value)
            ),
            s.pct,
            WARN_SHARE_PCT,
            CRIT_SHARE_PCT,
        ),
        None => Finding::graded(
            Vpmu::ID,
            format!(
                "vPMU cost: {}/s per vCPU PMU counter accesses trap to KVM",
                crate::finding::num(value)
            ),
            value,
            WARN_PER_VCPU_S,
            CRIT_PER_VCPU_S,
        ),
    };
    finding.confidence = if msrs > 0 || pm > 0 {
        Confidence::High
    } else {
        Confidence::Medium
    };
    finding.evidence = evidence;
    finding.mechanism = "Guest writes of event selectors and counters exit to KVM's vPMU (kvm_pmu_set_msr → \
        intel_pmu_set_msr / amd_pmu_set_msr), which reprograms a host perf event per counter \
        (reprogram_counter → pmc_reprogram_counter → perf_event_create_kernel_counter), taking the perf event \
        context lock (perf_event_ctx_lock). Counter overflows come back as PMIs injected through the LVTPC \
        (kvm_pmu_deliver_pmi); before commit \"KVM: x86: Synthesize at most one PMI per VM-exit\" a single exit \
        could inject two (field report 002)."
        .into();
    finding.fix = vec![
        Fix::cmd(
            "if the guest does not need a PMU, turn the vPMU off for this VM",
            "qemu ... -cpu host,pmu=off   # libvirt: <features><pmu state='off'/></features>; host-wide: modprobe kvm enable_pmu=0",
        ),
        Fix::new(
            "if it does, sample fewer events at once in the guest (each extra event multiplexes and reprograms \
             counters) and use a longer period (perf record -c / -F lower)",
        ),
        Fix::new(
            "use a host kernel with \"KVM: x86: Synthesize at most one PMI per VM-exit\" and \"KVM: x86: Mask \
             LVTPC when handling a PMI\" (Linux 6.6+)",
        ),
        Fix::cmd(
            "look for host time in perf_event_ctx_lock on the vCPU threads",
            "kvmscope flamegraph --record -d 10 -o host.svg",
        ),
    ];
    finding.references = vec![
        "case 002 in kvmscope's docs/field-reports.md; https://lore.kernel.org/all/20230901185646.2823254-1-jmattson@google.com/ (KVM: x86: Synthesize at most one PMI per VM-exit)".into(),
        "https://lore.kernel.org/all/20230901185646.2823254-1-jmattson@google.com/".into(),
        "arch/x86/kvm/pmu.c reprogram_counter, kvm_pmu_deliver_pmi".into(),
    ];
    if arm {
        finding.mechanism = "KVM on arm64 traps every guest access to a PMU system register (MDCR_EL2.TPM: a SYS64 \
            exit, traced as kvm_handle_sys_reg / kvm_sys_access) and emulates it in arch/arm64/kvm/sys_regs.c \
            (access_pmcr, access_pmcnten, access_pmovs, access_pmu_evcntr, access_pmu_evtyper ...). Each guest \
            counter is backed by a host perf event (arch/arm64/kvm/pmu-emul.c kvm_pmu_create_perf_event → \
            perf_event_create_kernel_counter), released and created again when the guest writes its event type \
            (PMEVTYPERn_EL0, PMCCFILTR_EL0) and enabled or disabled on PMCNTENSET/CLR_EL0 writes (host perf cross \
            calls: csd remote_function). A host event's overflow (kvm_pmu_perf_overflow) raises the guest's PMU \
            interrupt (PPI 23), whose handler reads and clears PMOVSCLR_EL0, stops and restarts the PMU (PMCR_EL0) \
            and writes each overflowed counter again; the guest's perf also disables and enables each counter \
            (PMCNTENCLR/SET, PMINTENCLR/SET) whenever it schedules a task's events in or out, throttles or \
            unthrottles them (the emulated arm64 host's `vpmu` lab scenario: ~50 traps per guest PMU \
            interrupt, PMCNTENCLR_EL0 writes the most frequent)."
            .into();
        finding.fix = vec![
            Fix::cmd(
                "if the guest does not need a PMU, give the VM none",
                "qemu-system-aarch64 ... -cpu host,pmu=off   # libvirt: <features><pmu state='off'/></features>",
            ),
            Fix::new(
                "if it does, sample fewer events at once in the guest and with a longer period (perf record -c / -F \
                 lower); the guest kernel lowers kernel.perf_event_max_sample_rate on its own when its PMU \
                 interrupts take too long (\"perf: interrupt took too long\" in its dmesg)",
            ),
            Fix::cmd(
                "look for host time in perf event creation and the perf cross calls on the vCPU threads",
                "kvmscope flamegraph --record -d 10 -o host.svg",
            ),
        ];
        finding.references = vec![
            "case 002 in kvmscope's docs/field-reports.md (the x86 case of the same cost)".into(),
            "arch/arm64/kvm/pmu-emul.c kvm_pmu_create_perf_event, kvm_pmu_perf_overflow; arch/arm64/kvm/sys_regs.c access_pmu_evcntr".into(),
        ];
    }
    vec![finding]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::{fires, fixture, only, quiet, says};
    use crate::Rule;
    use crate::Severity;

    #[test]
    fn fires_on_lab_guest_writing_a_pmu_counter() {
        let f = fires(&Vpmu, &fixture("msr-pmu.txt"), None);
        says(&f, "0xc1");
    }

    /// `n` SYS64 traps of `reg` on each of two vCPU threads over 1 s, each `trap_us` from
    /// kvm_exit to kvm_entry, in the kernel's print formats.
    fn arm64_traps(reg: &str, enc: &str, n: u64, trap_us: u64) -> Report {
        use kvmscope_analysis::{InputSummary, ReportBuilder};
        let mut t = String::new();
        for i in 0..n {
            for (tid, cpu) in [(300, 0), (301, 1)] {
                let ts = 1_000_000 + i * 1_000_000 / n + cpu * 7;
                let at =
                    |us: u64| format!("{}.{:06}", (ts + us) / 1_000_000, (ts + us) % 1_000_000);
                t.push_str(&format!(
                    "CPU {cpu}/KVM-{tid} [00{cpu}] ..... {}: kvm_exit: TRAP: HSR_EC: 0x0018 (SYS64), PC: 0x0000ffff80001000\n\
                     CPU {cpu}/KVM-{tid} [00{cpu}] ..... {}: kvm_handle_sys_reg: HSR 0x62300000\n\
                     CPU {cpu}/KVM-{tid} [00{cpu}] ..... {}: kvm_sys_access: PC: ffff80001000 write to {enc} SYS_{reg}\n\
                     CPU {cpu}/KVM-{tid} [00{cpu}] d.... {}: kvm_entry: PC: 0x0000ffff80001004\n",
                    at(0),
                    at(1),
                    at(1),
                    at(trap_us),
                ));
            }
        }
        let mut b = ReportBuilder::new();
        let stats = kvmscope_trace::text::decode(t.as_bytes(), |ev| b.observe(ev)).unwrap();
        b.finish(vec![InputSummary::text("arm64", stats)])
    }

    #[test]
    fn counts_arm64_pmu_register_traps_by_their_share_of_vcpu_time() {
        // 200 PMOVSCLR_EL0 writes per vCPU in a second, 200 us each: 4% of vCPU time at 200/s
        // per vCPU, far below the rate threshold.
        let r = arm64_traps("PMOVSCLR_EL0", "(3,3,9,12,3)", 200, 200);
        let f = only(&Vpmu, &r, None);
        assert_eq!(f.severity, Severity::Warning, "{f:#?}");
        assert!(f.title.contains("% of vCPU time"), "{}", f.title);
        let text: Vec<String> = f.evidence.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter().any(|e| e.contains("write PMOVSCLR_EL0")),
            "{text:#?}"
        );
        assert!(!text.iter().any(|e| e.contains("kvm_msr")), "{text:#?}");
        assert!(f.mechanism.contains("MDCR_EL2.TPM"));
        assert!(f.fix[0].command.as_deref().unwrap().contains("pmu=off"));
        // Short traps at the same rate: 0.2% of vCPU time, nothing to say.
        assert!(Vpmu
            .check(&arm64_traps("PMOVSCLR_EL0", "(3,3,9,12,3)", 200, 10), None)
            .is_empty());
        // Not a PMU register: another rule's business.
        assert!(Vpmu
            .check(
                &arm64_traps("ICC_SGI1R_EL1", "(3,0,12,11,5)", 200, 200),
                None
            )
            .is_empty());
    }

    #[test]
    fn stays_quiet_without_pmu_accesses() {
        quiet(
            &Vpmu,
            &["idle.txt", "compute.txt", "msr-tsc-deadline.txt", "ipi.txt"],
        );
    }
}
