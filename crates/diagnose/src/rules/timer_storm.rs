//! Guest timer storm (field report 003): the guest programs its LAPIC timer (a write of
//! IA32_TSC_DEADLINE, MSR 0x6e0) thousands of times a second, each write an exit, typically a
//! tick or hrtimer re-armed from its own interrupt (`nohz=off`, a periodic hrtimer).

use kvmscope_analysis::guest::MSR_TSC_DEADLINE;
use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;

use crate::facts::{Facts, MSR_EXITS};
use crate::finding::{Confidence, Evidence, Finding, Fix};
use crate::rules::{TimerStorm, MIN_EVENTS};

/// TSC-deadline writes per second per vCPU (or per guest CPU) for a warning. A HZ=1000 guest
/// that never stops its tick writes at most ~1,000/s per CPU; an idle NO_HZ guest a few
/// hundred (field report 003's healthy guest: 452 kvm_msr/s for the whole VM). Twice the
/// fastest tick is past anything a healthy guest does.
pub const WARN_PER_VCPU_S: f64 = 2_000.0;
/// Critical: field report 003's storm was 33,000/s; the lab's timer-storm 10,000/s here.
pub const CRIT_PER_VCPU_S: f64 = 10_000.0;
/// Share of vCPU time in the MSR exits that wrote the TSC deadline, for a warning. The write
/// rate is the guest's choice, but a host too slow to keep up caps it: then the storm shows as
/// time. A HZ=1000 guest costs ~0.2% at 2 us per exit, ~6% on a host 30x slower.
pub const WARN_SHARE_PCT: f64 = 10.0;
/// Guest hrtimer expiries per second on its busiest CPU, as a multiple of its tick (CONFIG_HZ),
/// for a warning where the timer is re-armed without exits (arm64's CNTV_CVAL_EL0, x86 guests
/// traced from the inside only): a guest whose tick never stops expires HZ timers a second per
/// CPU plus its tasks' few; twice the tick is a timer re-armed faster than the tick itself. A
/// multiple of the guest's own tick, not a rate of this host: on the emulated arm64 host,
/// where each wake-up takes ~1 ms, the lab's timer storm reaches 3-4x, an idle guest 0.1x.
pub const WARN_TICKS: f64 = 2.0;
/// Critical: eight timers per tick (field report 003's storm was 33,000/s at HZ=1000).
pub const CRIT_TICKS: f64 = 8.0;
/// Critical: a third of the vCPU's time re-arming its timer (the lab's WRMSR loop: ~60% on
/// emulated SVM).
pub const CRIT_SHARE_PCT: f64 = 30.0;

pub fn check(f: &Facts, report: &Report, system: Option<&SystemSnapshot>) -> Vec<Finding> {
    let arch = Arch::of(f, report);
    let mut evidence = Vec::new();
    let mut corroborated = false;

    // Host side: kvm_msr writes of 0x6e0 on the vCPU threads.
    let (host_writes, _) = f.msr_accesses(|m, w| w && m == MSR_TSC_DEADLINE);
    let host_rate = if host_writes >= MIN_EVENTS {
        f.norm(host_writes)
    } else {
        0.0
    };
    if host_writes >= MIN_EVENTS {
        evidence.push(f.rate(
            "host: kvm_msr writes of IA32_TSC_DEADLINE (0x6e0)",
            host_writes,
        ));
        let t = &report.interrupts.timer;
        let hv = t.hv_timer_on + t.hv_timer_off;
        let lapic = t.lapic_early + t.lapic_late;
        evidence.extend(f.rates([
            ("host: kvm_hv_timer_state (LAPIC timer re-armed)", hv),
            (
                "host: kvm_wait_lapic_expire (timer interrupts delivered)",
                lapic,
            ),
        ]));
        let same =
            |n: u64| n as f64 >= 0.5 * host_writes as f64 && n as f64 <= 2.0 * host_writes as f64;
        corroborated |= same(hv) || same(lapic);
        let all_msr: u64 = report.accesses.msr.iter().map(|r| r.count).sum();
        evidence.push(Evidence::share(
            "host: share of kvm_msr that are TSC-deadline writes",
            crate::facts::pct(host_writes as f64, all_msr as f64),
        ));
        let exits = f.exits_total();
        if exits > 0 {
            let msr_exits = f.exits_named(&["MSR_WRITE", "msr", "WRMSR"]);
            evidence.push(f.rate("host: all VM exits", exits));
            evidence.push(Evidence::share(
                "host: MSR-write exits among all exits",
                crate::facts::pct(msr_exits as f64, exits as f64),
            ));
        }
    }

    // Guest side: msr:write_msr of 0x6e0, hrtimers, local timer interrupts.
    let mut guest_rate = 0.0;
    let mut top_fn = None;
    // Only a guest's own events: a kernel that runs KVM writing its own TSC deadline is a
    // host, not a VM with a timer storm.
    if let Some(g) = report.guest.as_ref().filter(|g| !g.host_side) {
        let writes = g.msr.tsc_deadline_writes(None);
        // The busiest CPU: a storm on one CPU of a large guest must not be averaged away.
        let busiest = g
            .msr
            .rows
            .iter()
            .filter(|r| r.msr == MSR_TSC_DEADLINE)
            .max_by(|a, b| a.writes.cmp(&b.writes).then(b.cpu.cmp(&a.cpu)));
        if let (true, Some(top)) = (writes >= MIN_EVENTS, busiest) {
            guest_rate = f.per_s(top.writes);
            evidence.push(f.guest_rate(
                "guest: msr:write_msr of IA32_TSC_DEADLINE, all CPUs",
                writes,
            ));
            evidence.push(f.guest_rate(
                format!(
                    "guest: msr:write_msr of IA32_TSC_DEADLINE on CPU {} (the busiest)",
                    top.cpu
                ),
                top.writes,
            ));
            // Busiest CPU's top hrtimer function and whether it re-arms itself.
            let mut fns: Vec<(String, u64, u64)> = Vec::new();
            for r in &g.timers.hrtimers {
                match fns.iter_mut().find(|(n, _, _)| *n == r.function) {
                    Some(e) => {
                        e.1 += r.expiries;
                        e.2 += r.rearmed_from_own_interrupt();
                    }
                    None => fns.push((
                        r.function.clone(),
                        r.expiries,
                        r.rearmed_from_own_interrupt(),
                    )),
                }
            }
            fns.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let expiries: u64 = fns.iter().map(|x| x.1).sum();
            if expiries > 0 {
                evidence.push(f.guest_rate("guest: hrtimer expiries", expiries));
                evidence.push(f.top_evidence(
                    "guest: hrtimer expiries by function",
                    fns.iter().map(|(n, e, _)| (n.clone(), *e)).collect(),
                    5,
                ));
            }
            if let Some((name, exp, rearmed)) = fns.first() {
                if *exp > 0 {
                    evidence.push(Evidence::share(
                        format!("guest: expiries of {name} re-armed from its own interrupt"),
                        crate::facts::pct(*rearmed as f64, *exp as f64),
                    ));
                    corroborated |= *rearmed * 2 >= *exp;
                    top_fn = Some(name.clone());
                }
            }
            let lt: u64 = g.timers.local_timer.iter().map(|r| r.interrupts).sum();
            if lt > 0 {
                evidence.push(f.guest_rate("guest: local timer interrupts", lt));
            }
        }
    }

    // Without TSC-deadline writes (arm64 re-arms CNTV_CVAL_EL0 without an exit): the guest's
    // own hrtimer expiries on its busiest CPU, against its tick.
    if host_writes < MIN_EVENTS && guest_rate == 0.0 {
        if let Some(t) = ticks(report, system, f) {
            if t.multiple >= WARN_TICKS {
                let updates = f.named("kvm:kvm_timer_update_irq");
                if updates >= MIN_EVENTS {
                    evidence.push(f.rate(
                        "host: kvm_timer_update_irq (arm64 virtual/physical timer interrupt level changes)",
                        updates,
                    ));
                }
                evidence.push(f.guest_rate(
                    format!("guest: hrtimer expiries on CPU {} (the busiest)", t.cpu),
                    t.expiries,
                ));
                evidence.push(Evidence::fact(
                    "guest: expiries per tick on that CPU",
                    format!("{:.1} (CONFIG_HZ={})", t.multiple, t.hz),
                ));
                evidence.push(f.top_evidence(
                    "guest: hrtimer expiries by function",
                    t.by_function.clone(),
                    5,
                ));
                let top_fn = t.by_function.first().map(|r| r.0.clone());
                let mut finding = Finding::graded(
                    TimerStorm::ID,
                    format!(
                        "Guest timer storm: {}/s timer expiries on guest CPU {}, {:.1}x its tick (HZ={})",
                        crate::finding::num(f.per_s(t.expiries)),
                        t.cpu,
                        t.multiple,
                        t.hz
                    ),
                    t.multiple,
                    WARN_TICKS,
                    CRIT_TICKS,
                );
                return finish(&mut finding, arch, evidence, corroborated, top_fn, system);
            }
        }
    }

    // With paired exits: the time of the MSR exits, scaled by the share of kvm_msr that are
    // TSC-deadline writes.
    let all_msr: u64 = report.accesses.msr.iter().map(|r| r.count).sum();
    let deadline_part = if host_writes >= MIN_EVENTS && all_msr > 0 {
        host_writes as f64 / all_msr as f64
    } else {
        0.0
    };
    let share = f
        .exit_share(&MSR_EXITS, |r| {
            (r.latency.total_ns as f64 * deadline_part) as u64
        })
        .filter(|s| s.pct > 0.0);
    if let Some(s) = share {
        evidence.insert(0, s.evidence("TSC-deadline MSR-write exits"));
    }
    let value = host_rate.max(guest_rate);
    // Graded by whichever of rate and share is further past its warning threshold.
    if let Some(s) = share.filter(|s| s.pct / WARN_SHARE_PCT > value / WARN_PER_VCPU_S) {
        if s.pct < WARN_SHARE_PCT {
            return Vec::new();
        }
        let mut finding = Finding::graded(
            TimerStorm::ID,
            format!(
                "Guest timer storm: {:.0}% of vCPU time writing IA32_TSC_DEADLINE ({}/s per vCPU)",
                s.pct,
                crate::finding::num(host_rate)
            ),
            s.pct,
            WARN_SHARE_PCT,
            CRIT_SHARE_PCT,
        );
        return finish(&mut finding, arch, evidence, corroborated, top_fn, system);
    }
    if value < WARN_PER_VCPU_S {
        return Vec::new();
    }
    let mut finding = Finding::graded(
        TimerStorm::ID,
        if host_rate >= WARN_PER_VCPU_S {
            format!(
                "Guest timer storm: IA32_TSC_DEADLINE written {}/s per vCPU",
                crate::finding::num(host_rate)
            )
        } else {
            format!(
                "Guest timer storm: IA32_TSC_DEADLINE written {}/s on the busiest guest CPU",
                crate::finding::num(guest_rate)
            )
        },
        value,
        WARN_PER_VCPU_S,
        CRIT_PER_VCPU_S,
    );
    finish(&mut finding, arch, evidence, corroborated, top_fn, system)
}

/// The busiest guest CPU's hrtimer expiries against its tick.
struct Ticks {
    cpu: u32,
    expiries: u64,
    hz: u32,
    multiple: f64,
    by_function: Vec<(String, u64)>,
}

/// Needs a guest's own timer events, its CONFIG_HZ (from its snapshot) and half a second of
/// trace.
fn ticks(report: &Report, system: Option<&SystemSnapshot>, f: &Facts<'_>) -> Option<Ticks> {
    let g = report.guest.as_ref().filter(|g| !g.host_side)?;
    let hz = system?.isolation_summary().hz?;
    if hz == 0 || f.duration_s < 0.5 {
        return None;
    }
    let mut per_cpu = std::collections::BTreeMap::<u32, u64>::new();
    for r in &g.timers.hrtimers {
        *per_cpu.entry(r.cpu).or_default() += r.expiries;
    }
    let (cpu, expiries) = per_cpu
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(c, n)| (*c, *n))?;
    if expiries < MIN_EVENTS {
        return None;
    }
    let mut by_function: Vec<(String, u64)> = g
        .timers
        .hrtimers
        .iter()
        .filter(|r| r.cpu == cpu && r.expiries > 0)
        .map(|r| (r.function.clone(), r.expiries))
        .collect();
    by_function.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Some(Ticks {
        cpu,
        expiries,
        hz,
        multiple: f.per_s(expiries) / f64::from(hz),
        by_function,
    })
}

/// Evidence from the snapshot, mechanism, fixes and references: the same whichever signal
/// graded the finding.
fn finish(
    finding: &mut Finding,
    arch: Arch,
    mut evidence: Vec<Evidence>,
    mut corroborated: bool,
    top_fn: Option<String>,
    system: Option<&SystemSnapshot>,
) -> Vec<Finding> {
    if let Some(s) = system {
        let iso = s.isolation_summary();
        if iso.nohz_off {
            evidence.push(Evidence::fact(
                "kernel command line",
                "nohz=off: the tick never stops",
            ));
            corroborated = true;
            finding.fix.push(Fix::cmd(
                "remove nohz=off from the guest kernel command line (the cause in field report 003)",
                "grubby --update-kernel=ALL --remove-args=nohz   # or edit GRUB_CMDLINE_LINUX, update-grub, reboot",
            ));
        }
        if let Some(hz) = iso.hz {
            evidence.push(Evidence::fact("CONFIG_HZ", hz.to_string()));
        }
        if let Some(t) = s.config.as_ref().map(|c| c.tick()) {
            evidence.push(Evidence::fact(
                "tick mode",
                if t.hz_periodic {
                    "HZ_PERIODIC (the tick never stops)"
                } else if t.no_hz_full {
                    "NO_HZ_FULL"
                } else if t.no_hz_idle {
                    "NO_HZ_IDLE"
                } else {
                    "unknown"
                },
            ));
        }
    }
    finding.confidence = if corroborated {
        Confidence::High
    } else {
        Confidence::Medium
    };
    finding.evidence = evidence;
    // The mechanism and the sources are the trace's architecture's; both when it does not say
    // (a guest's own recording).
    let x86 = "Every write of IA32_TSC_DEADLINE (MSR 0x6e0) by a guest exits to KVM, which handles it in \
        handle_fastpath_set_msr_irqoff / kvm_set_lapic_tscdeadline_msr and re-arms the vCPU's emulated LAPIC timer \
        (an hrtimer or the VMX preemption timer: kvm_hv_timer_state).";
    let arm64 = "An arm64 guest re-arms its virtual timer (CNTV_CVAL_EL0) without a trap; each expiry is an \
        interrupt KVM injects (kvm_timer_update_irq): an exit when the vCPU runs, a wake-up from WFI \
        (kvm_bg_timer_expire, kvm_vcpu_wakeup) when it sleeps.";
    let storm = "When the guest's tick (tick_sched_timer under nohz=off) or another hrtimer is re-armed from its \
        own interrupt, each expiry costs an injected interrupt, an EOI and a new deadline, at the timer's \
        frequency even when the guest is idle, so host CPUs never rest (field report 003: 66,300 exits/s \
        against 645/s).";
    finding.mechanism = match arch {
        Arch::X86 => format!("{x86} {storm}"),
        Arch::Arm64 => format!("{arm64} {storm}"),
        Arch::Unknown => format!("{x86} {storm} {arm64}"),
    };
    finding.fix.push(Fix::cmd(
        "inside the guest, find the timer that re-arms itself: its function and rate",
        "kvmscope diagnose --live 5s   # in the guest; or: perf stat -e timer:hrtimer_expire_entry -a sleep 1",
    ));
    if let Some(name) = top_fn {
        finding.fix.push(Fix::new(format!(
            "the busiest guest hrtimer is {name}: if it is tick_sched_timer the tick never stops (nohz=off, \
             CONFIG_HZ_PERIODIC, or a busy CPU); if it is hrtimer_wakeup a task sleeps in a short loop \
             (raise its period or its timer slack: prctl(PR_SET_TIMERSLACK))"
        )));
    }
    finding.fix.push(Fix::cmd(
        "check the guest kernel's tick settings",
        "grep -o 'nohz[^ ]*' /proc/cmdline; zgrep -E 'CONFIG_(HZ|NO_HZ)' /proc/config.gz",
    ));
    finding.references = vec![
        "case 003 in kvmscope's docs/field-reports.md (a nohz=off guest holding host CPUs at top frequency)".into(),
        "Documentation/timers/no_hz.rst".into(),
    ];
    if arch != Arch::Arm64 {
        finding.references.push(
            "arch/x86/kvm/x86.c handle_fastpath_set_msr_irqoff; arch/x86/kvm/lapic.c kvm_set_lapic_tscdeadline_msr"
                .into(),
        );
    }
    if arch != Arch::X86 {
        finding
            .references
            .push("arch/arm64/kvm/arch_timer.c kvm_timer_update_irq, kvm_bg_timer_expire".into());
    }
    vec![finding.clone()]
}

/// Which architecture the trace is of: its VM exits, and what only one architecture has (MSR
/// accesses, host or guest side, on x86; system-register traps and timer-level changes on
/// arm64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    X86,
    Arm64,
    /// Neither, or both (merged inputs).
    Unknown,
}

impl Arch {
    fn of(f: &Facts, report: &Report) -> Arch {
        use kvmscope_trace::Isa;
        let isas = || {
            report
                .exits
                .iter()
                .flat_map(|e| e.rows.iter().map(|r| r.isa))
        };
        let guest_msr = report
            .guest
            .as_ref()
            .is_some_and(|g| !g.host_side && !g.msr.rows.is_empty());
        let x86 = isas().any(|i| matches!(i, Isa::Vmx | Isa::Svm))
            || !report.accesses.msr.is_empty()
            || guest_msr;
        let arm64 = isas().any(|i| i == Isa::Arm64)
            || !report.accesses.sysreg.is_empty()
            || f.named("kvm:kvm_timer_update_irq") > 0;
        match (x86, arm64) {
            (true, false) => Arch::X86,
            (false, true) => Arch::Arm64,
            _ => Arch::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::{fires, fixture, only, quiet};
    use crate::Severity;

    #[test]
    fn fires_on_lab_timer_storm() {
        let f = fires(&TimerStorm, &fixture("timer-storm.txt"), None);
        assert_eq!(
            f.confidence,
            Confidence::High,
            "hv_timer_state at the same rate"
        );
        // An x86 trace (kvm_msr writes): the x86 mechanism and sources only.
        assert!(f.mechanism.contains("IA32_TSC_DEADLINE"), "{}", f.mechanism);
        assert!(!f.mechanism.contains("arm64"), "{}", f.mechanism);
        assert!(
            f.references.iter().all(|r| !r.contains("arch/arm64")),
            "{:?}",
            f.references
        );
        assert!(!f.mechanism.contains("  "), "{}", f.mechanism);
    }

    #[test]
    fn fires_on_lab_msr_tsc_deadline_loop() {
        let f = only(&TimerStorm, &fixture("msr-tsc-deadline.txt"), None);
        assert_eq!(f.severity, Severity::Critical, "{f:#?}");
    }

    #[test]
    fn fires_on_a_real_guest_side_timer_storm() {
        // This machine's own kernel (a guest) with a thread sleeping 500 us in a loop on CPU 1:
        // the guest-side events alone (msr:write_msr, timer:*), no KVM events.
        let f = fires(
            &TimerStorm,
            &fixture("system/traces/guest-storms.trace"),
            None,
        );
        let t: Vec<String> = f.evidence.iter().map(|e| e.to_string()).collect();
        assert!(
            t.iter().any(|e| e.contains("on CPU 1 (the busiest)")),
            "{t:#?}"
        );
        assert!(t.iter().any(|e| e.contains("hrtimer_wakeup")), "{t:#?}");
        // The guest wrote the x86 TSC-deadline MSR: an x86 guest.
        assert!(!f.mechanism.contains("arm64"), "{}", f.mechanism);
    }

    #[test]
    fn stays_quiet_on_healthy_and_slow_timers() {
        quiet(
            &TimerStorm,
            &[
                "idle.txt",
                "compute.txt",
                "hlt-2ms.txt",
                "pio.txt",
                "ipi.txt",
            ],
        );
    }
}
