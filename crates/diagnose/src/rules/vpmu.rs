//! vPMU cost (field report 002): a guest programming performance counters makes KVM
//! reprogram host perf events on every counter MSR access, and inject PMIs.

use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;
use kvmscope_trace::tables::{msr_class, MsrClass};

use crate::facts::Facts;
use crate::finding::{Confidence, Evidence, Finding, Fix};
use crate::rules::MIN_EVENTS;
use crate::Rule;

/// PMU MSR accesses + RDPMC exits per second per vCPU for a warning. `perf stat` in a guest
/// touches counters a few times per context switch and per multiplexing interval (4 ms): a few
/// hundred per second per vCPU. 1,000/s per vCPU is sampling with many events (field report 002).
pub const WARN_PER_VCPU_S: f64 = 1_000.0;
/// Critical: tens of thousands per second means perf events are recreated continuously; each
/// reprogramming takes perf_event_ctx_lock (field report 002: vCPU threads 60% in that lock).
pub const CRIT_PER_VCPU_S: f64 = 20_000.0;

#[derive(Debug)]
pub struct Vpmu;

impl Rule for Vpmu {
    fn id(&self) -> &'static str {
        "vpmu-cost"
    }
    fn summary(&self) -> &'static str {
        "guest PMU counter MSR and RDPMC exits at a high rate"
    }

    fn check(&self, report: &Report, system: Option<&SystemSnapshot>) -> Vec<Finding> {
        let f = Facts::new(report);
        let (msrs, top) = f.msr_accesses(|m, _| msr_class(m) == MsrClass::Pmu);
        let rdpmc = f.exits_named(&["RDPMC", "rdpmc"]);
        let total = msrs + rdpmc;
        if total < MIN_EVENTS {
            return Vec::new();
        }
        let value = f.norm(total);
        if value < WARN_PER_VCPU_S {
            return Vec::new();
        }
        let mut evidence = vec![f.rate("PMU MSR accesses (kvm_msr)", msrs)];
        evidence.push(Evidence::Top {
            what: "PMU MSRs".into(),
            rows: top,
        });
        if rdpmc > 0 {
            evidence.push(f.rate("RDPMC exits", rdpmc));
        }
        // NMIs the LAPIC accepted (PMIs are delivered as NMI through LVTPC) per PMU exit.
        let exits = f.exits_total();
        if exits > 0 {
            evidence.push(Evidence::share(
                "PMU exits among all exits",
                crate::facts::pct(total as f64, exits as f64),
            ));
        }
        if let Some(s) = system {
            if let Some(v) = s.kvm_params.get("kvm", "enable_pmu") {
                evidence.push(Evidence::fact("kvm.enable_pmu", v));
            }
        }
        let mut finding = Finding::graded(
            self.id(),
            format!(
                "vPMU cost: {}/s per vCPU PMU counter accesses trap to KVM",
                crate::finding::num(value)
            ),
            value,
            WARN_PER_VCPU_S,
            CRIT_PER_VCPU_S,
        );
        finding.confidence = if msrs > 0 {
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
        vec![finding]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::{fixture, only};
    use crate::Severity;

    #[test]
    fn fires_on_lab_guest_writing_a_pmu_counter() {
        let f = only(&Vpmu, &fixture("msr-pmu.txt"), None);
        assert!(f.severity >= Severity::Warning, "{f:#?}");
        assert!(
            f.evidence.iter().any(|e| e.to_string().contains("0xc1")),
            "{f:#?}"
        );
    }

    #[test]
    fn stays_quiet_without_pmu_accesses() {
        for name in ["idle.txt", "compute.txt", "msr-tsc-deadline.txt", "ipi.txt"] {
            assert!(Vpmu.check(&fixture(name), None).is_empty(), "{name}");
        }
    }
}
