//! Halt and WFx (field report 004): vCPUs that halt (HLT, WFI/WFE) and are woken thousands of
//! times a second, each sleep a host schedule and each wake a latency the guest feels.

use kvmscope_analysis::guest::MSR_TSC_DEADLINE;
use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;

use crate::facts::Facts;
use crate::finding::{Confidence, Evidence, Finding, Fix, Severity};
use crate::rules::{ipi_storm, timer_storm, Halt, MIN_EVENTS};

/// Wake-ups after a real sleep per second per vCPU for a warning. A NO_HZ idle guest wakes a
/// few dozen times a second; a periodic HZ=250 tick 250 times. Past 300/s per vCPU the guest
/// wakes more often than any idle tick would make it, and each wake pays the host's
/// schedule-in latency (here a median of tens of microseconds).
pub const WARN_PER_VCPU_S: f64 = 300.0;
/// Critical: 5,000 sleeps/s per vCPU is a wake every 200 us: the guest spends its time
/// going to sleep and waking.
pub const CRIT_PER_VCPU_S: f64 = 5_000.0;

pub fn check(f: &Facts, report: &Report, system: Option<&SystemSnapshot>) -> Vec<Finding> {
    let h = &report.interrupts.halt;
    let waited = h.waited.samples;
    let polled = h.polled.samples;
    let hlt_exits = f.exits_named(&["HLT", "hlt", "WFx"]) + f.named("kvm:kvm_wfx_arm64");
    let user_hlt = f.userspace_exits(5);
    let sleeps = if waited + polled > 0 {
        waited
    } else {
        hlt_exits + user_hlt
    };
    if sleeps < MIN_EVENTS {
        return Vec::new();
    }
    let value = f.norm(sleeps);
    if value < WARN_PER_VCPU_S {
        return Vec::new();
    }
    let mut evidence = Vec::new();
    if waited + polled > 0 {
        evidence.push(f.rate(
            "kvm_vcpu_wakeup after sleeping (halt-polling missed)",
            waited,
        ));
        evidence.extend(f.rates([("kvm_vcpu_wakeup caught by halt-polling", polled)]));
        evidence.push(Evidence::share("halt-polling success", h.poll_success_pct));
        evidence.push(Evidence::Time {
            what: "median time asleep before a wake-up".into(),
            ns: h.waited.p50_ns,
        });
        if h.poll_grow + h.poll_shrink > 0 {
            evidence.push(Evidence::count("halt_poll_ns grown", h.poll_grow));
            evidence.push(Evidence::count("halt_poll_ns shrunk", h.poll_shrink));
        }
    }
    evidence.extend(f.rates([
        ("HLT / WFx exits", hlt_exits),
        ("KVM_EXIT_HLT to the VMM (no in-kernel irqchip)", user_hlt),
    ]));
    if let Some(v) = system.and_then(|s| s.kvm_params.get("kvm", "halt_poll_ns")) {
        evidence.push(Evidence::fact("kvm.halt_poll_ns (host)", v));
        if waited > 0 && polled * 10 < waited {
            if let Ok(ns) = v.parse::<u64>() {
                evidence.push(Evidence::Time {
                    what: "host CPU spent polling in vain, at most (failed polls x halt_poll_ns) per second".into(),
                    ns: (f.per_s(waited) * ns as f64) as u64,
                });
            }
        }
    }
    // The wake-ups are a symptom when a timer or IPI storm explains them: name the cause.
    let (tsc, _) = f.msr_accesses(|m, w| w && m == MSR_TSC_DEADLINE);
    let ipis: u64 = report.interrupts.ipis.iter().map(|(_, _, n)| n).sum();
    let cause = if f.norm(tsc) >= timer_storm::WARN_PER_VCPU_S {
        Some("timer-storm")
    } else if f.norm(ipis) >= ipi_storm::WARN_PER_VCPU_S {
        Some("ipi-storm")
    } else {
        None
    };
    let mut finding = Finding::graded(
        Halt::ID,
        format!(
            "vCPUs halt and are woken {}/s per vCPU",
            crate::finding::num(value)
        ),
        value,
        WARN_PER_VCPU_S,
        CRIT_PER_VCPU_S,
    );
    if let Some(c) = cause {
        finding.severity = Severity::Info;
        finding
            .title
            .push_str(&format!(" (a consequence of the {c} finding)"));
        evidence.push(Evidence::fact(
            "what wakes them",
            format!("see the {c} finding: fix that first"),
        ));
    }
    finding.confidence = if waited + polled > 0 {
        Confidence::High
    } else {
        Confidence::Medium
    };
    finding.evidence = evidence;
    finding.mechanism = "A halting vCPU (HLT exit on x86; WFI/WFE trap on arm64 when HCR_EL2.TWI/TWE are set) \
        enters kvm_vcpu_halt: it polls for up to halt_poll_ns (adapted by halt_poll_ns_grow/shrink, traced as \
        kvm_halt_poll_ns), then sleeps in kvm_vcpu_block until kvm_vcpu_kick wakes it (kvm_vcpu_wakeup: `poll` \
        when polling caught the event, `wait` when the thread slept). Each sleep is a host context switch and \
        each wake the host's scheduling latency added to the guest's interrupt latency (field report 004: WFI \
        traps prolonged by vCPU kicks)."
        .into();
    finding.fix = vec![
        Fix::cmd(
            "latency-sensitive guest: poll inside the guest before halting (cpuidle-haltpoll), so short idle periods never exit",
            "guest cmdline: cpuidle_haltpoll.force=1 haltpoll.guest_halt_poll_ns=200000   # or modprobe cpuidle-haltpoll",
        ),
        Fix::cmd(
            "host: let KVM poll long enough to catch the wake-ups (costs host CPU while the vCPU is idle)",
            "echo 200000 > /sys/module/kvm/parameters/halt_poll_ns   # per VM: KVM_CAP_HALT_POLL",
        ),
        Fix::new(
            "dedicated, pinned vCPUs: do not exit on idle at all: guest idle=poll, or on x86 QEMU -overcommit \
             cpu-pm=on (HLT/MWAIT passthrough); on arm64 kvm-arm.wfi_trap_policy=notrap kvm-arm.wfe_trap_policy=notrap \
             (field report 004)",
        ),
        Fix::new("fewer wake-up sources in the guest: timers (see timer-storm), IPIs (see ipi-storm), device interrupts"),
    ];
    finding.references = vec![
        "case 004 in kvmscope's docs/field-reports.md (arm64 real-time guest: SGI1R traps, IPI attribution, timer migration)".into(),
        "Documentation/virt/kvm/halt-polling.rst".into(),
        "Documentation/virt/guest-halt-polling.rst".into(),
        "virt/kvm/kvm_main.c kvm_vcpu_halt, kvm_vcpu_block".into(),
    ];
    vec![finding]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::{fires, fixture, only, pvm_snapshot, quiet};

    #[test]
    fn fires_on_lab_hlt_every_2ms() {
        let sys = pvm_snapshot();
        fires(&Halt, &fixture("hlt-2ms.txt"), Some(&sys));
    }

    #[test]
    fn names_the_timer_storm_as_the_cause() {
        let f = only(&Halt, &fixture("timer-storm.txt"), None);
        assert_eq!(f.severity, Severity::Info, "{f:#?}");
        assert!(f.title.contains("timer-storm"));
    }

    #[test]
    fn stays_quiet_on_healthy_captures() {
        quiet(
            &Halt,
            &["idle.txt", "compute.txt", "pio.txt", "pagefault.txt"],
        );
    }
}
