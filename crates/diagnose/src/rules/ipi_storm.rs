//! IPI storm (field report 004): vCPUs interrupting each other thousands of times a second,
//! each IPI an exit on the sender and a kick (often a wake-up) of the target.

use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;

use crate::facts::Facts;
use crate::finding::{Confidence, Evidence, Finding, Fix};
use crate::rules::{IpiStorm, MIN_EVENTS};

/// x2APIC ICR.
pub const MSR_X2APIC_ICR: u32 = 0x830;
/// xAPIC ICR (low) in the default APIC page.
pub const XAPIC_ICR_GPA: u64 = 0xfee0_0300;

/// IPIs sent per second per vCPU for a warning. A busy healthy guest sends reschedule and
/// function-call IPIs in the hundreds per second per CPU (this machine idles at a few dozen);
/// 2,000/s per vCPU is an IPI every 500 us on every vCPU, each costing an exit and a kick.
pub const WARN_PER_VCPU_S: f64 = 2_000.0;
/// Critical: the lab's ping-pong is ~10,000/s per vCPU here; at that rate IPIs are the VM's
/// main host cost.
pub const CRIT_PER_VCPU_S: f64 = 20_000.0;

/// Share of vCPU time in the exits that sent IPIs (ICC_SGI1R_EL1 traps on arm64, x2APIC ICR
/// writes on x86; exit → entry), for a warning. It counts the senders' traps only (each IPI
/// also costs its target a kick or a wake-up), so it holds on hosts of any speed: an idle
/// 2-vCPU guest spends 0.4-0.5% of its vCPU time so on the emulated arm64 host, the lab's
/// ping-pong 3%; on bare metal (1-3 us a trap) 2% is 7,000-20,000 IPIs/s per vCPU.
pub const WARN_SHARE_PCT: f64 = 2.0;
/// Critical: a tenth of the vCPUs' time only in sending IPIs.
pub const CRIT_SHARE_PCT: f64 = 10.0;
/// Share of all exits that are the guest's IPI sends, for a warning when their traps also take
/// [`MIX_MIN_SHARE_PCT`] of vCPU time: one exit in five sending an IPI is a guest whose work is
/// IPI-bound, on any host speed (the emulated arm64 host's `ipi`: 23-32% of exits; its
/// `idle` 12%, `wfx` 8-9%, `timer-storm` under 2%).
pub const WARN_EXIT_MIX_PCT: f64 = 20.0;
/// With [`WARN_EXIT_MIX_PCT`]: the traps' share of vCPU time that makes the mix matter (an idle
/// guest's few exits can be a fifth IPIs at a negligible cost: 0.25-0.3% on the emulated host).
pub const MIX_MIN_SHARE_PCT: f64 = 1.0;
/// GICv3 system registers whose writes send SGIs (IPIs) from an arm64 guest.
pub const SGI_REGISTERS: [&str; 3] = ["ICC_SGI1R_EL1", "ICC_ASGI1R_EL1", "ICC_SGI0R_EL1"];

/// Functions whose IPIs field report 004 traced to a cause, with what to do.
const KNOWN: [(&str, &str); 4] = [
    ("do_nothing", "kick_all_cpus_sync() (BPF JIT, module load, text patching; in field report 004 a crashing service dumping core)"),
    ("tlb_remove_table_smp_sync", "freeing page tables (munmap, madvise(DONTNEED)) waits for every CPU's lockless walkers"),
    ("flush_tlb_func", "TLB shootdowns from munmap/mprotect/page migration in a multi-threaded process"),
    ("sched_ttwu_pending", "remote wake-ups queued to the target CPU (wake-up IPIs between vCPUs)"),
];

pub fn check(f: &Facts, report: &Report, _system: Option<&SystemSnapshot>) -> Vec<Finding> {
    let mut evidence = Vec::new();
    let (icr, _) = f.msr_accesses(|m, w| w && m == MSR_X2APIC_ICR);
    let xicr: u64 = report
        .accesses
        .mmio
        .iter()
        .filter(|r| r.write && r.gpa == XAPIC_ICR_GPA)
        .map(|r| r.count)
        .sum();
    let apic_ipi: u64 = report.interrupts.ipis.iter().map(|(_, _, n)| n).sum();
    // arm64: SGI register writes (kvm_sys_access), and the time their traps took.
    let (sgi, sgi_ns) = report
        .accesses
        .sysreg
        .iter()
        .filter(|r| r.write && SGI_REGISTERS.contains(&r.name.as_str()))
        .fold((0, 0), |(n, t), r| (n + r.count, t + r.latency.total_ns));
    let icr_ns: u64 = report
        .accesses
        .msr
        .iter()
        .filter(|r| r.write && r.msr.msr == MSR_X2APIC_ICR)
        .map(|r| r.latency.total_ns)
        .sum();
    let host = icr.max(apic_ipi).max(xicr).max(sgi);
    let share = (sgi + icr >= MIN_EVENTS)
        .then(|| f.paired_share(sgi_ns + icr_ns))
        .flatten()
        .filter(|s| s.pct > 0.0);
    let host_rate = if host >= MIN_EVENTS {
        f.norm(host)
    } else {
        0.0
    };
    if host >= MIN_EVENTS {
        if let Some(s) = share {
            evidence.push(s.evidence("traps of the guest's IPI sends (SGI register / ICR writes)"));
        }
        evidence.extend(f.rates([
            (
                "host: ICC_SGI1R_EL1 writes trapped (kvm_sys_access: one per guest IPI)",
                sgi,
            ),
            ("host: x2APIC ICR writes (kvm_msr 0x830)", icr),
            ("host: xAPIC ICR writes (MMIO 0xfee00300)", xicr),
        ]));
        if apic_ipi > 0 {
            evidence.push(f.rate("host: kvm_apic_ipi", apic_ipi));
            let by_dst: Vec<(String, u64)> = {
                let mut m = std::collections::BTreeMap::<String, u64>::new();
                for (dst, vec, n) in &report.interrupts.ipis {
                    *m.entry(format!("dst {dst} vec {vec}")).or_default() += n;
                }
                m.into_iter().collect()
            };
            evidence.push(f.top_evidence("host: IPIs by destination and vector", by_dst, 5));
        }
        let wakes = report.interrupts.halt.waited.samples + report.interrupts.halt.polled.samples;
        evidence.extend(f.rates([("host: kvm_vcpu_wakeup (halted vCPUs kicked awake)", wakes)]));
    }
    // Guest side.
    let mut guest_rate = 0.0;
    let mut named = Vec::new();
    if let Some(g) = &report.guest {
        // A kernel that runs KVM is a host: its IPIs are its own (vCPU kicks among them).
        let side = if g.host_side { "host kernel" } else { "guest" };
        let sent: u64 = g.ipi.sent.iter().map(|r| r.sent).sum();
        if sent >= MIN_EVENTS {
            // The busiest sender: a storm from one CPU must not be averaged away.
            let mut per_cpu = std::collections::BTreeMap::<u32, u64>::new();
            for r in &g.ipi.sent {
                *per_cpu.entry(r.sender_cpu).or_default() += r.sent;
            }
            let (cpu, most) = per_cpu
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map_or((0, 0), |(c, n)| (*c, *n));
            guest_rate = f.per_s(most);
            evidence.push(f.guest_rate(
                format!("{side}: IPIs sent (ipi:ipi_send_cpu/cpumask), all CPUs"),
                sent,
            ));
            evidence.push(f.guest_rate(
                format!("{side}: IPIs sent by CPU {cpu} (the busiest sender)"),
                most,
            ));
            let mut by_fn = std::collections::BTreeMap::<String, u64>::new();
            for r in &g.ipi.sent {
                let key = if r.function.is_empty() {
                    r.kind.to_string()
                } else {
                    format!("{} ({})", r.function, r.kind)
                };
                *by_fn.entry(key).or_default() += r.sent;
            }
            evidence.push(f.top_evidence(
                format!("{side}: IPIs sent by function"),
                by_fn.into_iter().collect(),
                5,
            ));
            let mut runs = std::collections::BTreeMap::<String, u64>::new();
            for r in &g.ipi.csd_functions {
                *runs.entry(r.function.clone()).or_default() += r.runs;
            }
            let total_runs: u64 = runs.values().sum();
            for (name, why) in KNOWN {
                let n = runs.get(name).copied().unwrap_or(0);
                if n > 0 && n * 4 >= total_runs {
                    named.push(format!("{name}: {why}"));
                }
            }
            if total_runs > 0 {
                evidence.push(f.top_evidence(
                    format!("{side}: functions run by IPI (csd:csd_function_entry)"),
                    runs.into_iter().collect(),
                    5,
                ));
            }
        }
    }
    let value = host_rate.max(guest_rate);
    // The exit mix: IPI sends (SGI1R / ICR writes) as a share of all exits.
    let exits = f.exits_total();
    let mix_pct =
        (exits > 0 && sgi + icr >= MIN_EVENTS).then(|| 100.0 * (sgi + icr) as f64 / exits as f64);
    if let Some(m) = mix_pct {
        evidence.push(Evidence::fact(
            "IPI sends among all exits (SGI register / ICR write traps)",
            format!("{m:.1}% of {exits} exits"),
        ));
    }
    // Graded by whichever of share and rate is further past its warning threshold: the
    // share holds on a slow host, where the rate cannot reach its threshold.
    let mut finding = match share.filter(|s| s.pct / WARN_SHARE_PCT > value / WARN_PER_VCPU_S) {
        Some(s) if s.pct >= WARN_SHARE_PCT => Finding::graded(
            IpiStorm::ID,
            format!(
                "IPI storm: {:.1}% of vCPU time trapping the guest's IPI sends ({}/s per vCPU)",
                s.pct,
                crate::finding::num(host_rate)
            ),
            s.pct,
            WARN_SHARE_PCT,
            CRIT_SHARE_PCT,
        ),
        _ if value < WARN_PER_VCPU_S
            && mix_pct.is_some_and(|m| m >= WARN_EXIT_MIX_PCT)
            && share.is_some_and(|s| s.pct >= MIX_MIN_SHARE_PCT) =>
        {
            let s = share.expect("checked above");
            let mut f = Finding::graded(
                IpiStorm::ID,
                format!(
                    "IPI storm: {:.0}% of exits are the guest's IPI sends, {:.1}% of vCPU time trapping them ({}/s per vCPU)",
                    mix_pct.unwrap_or(0.0),
                    s.pct,
                    crate::finding::num(host_rate)
                ),
                s.pct,
                MIX_MIN_SHARE_PCT,
                CRIT_SHARE_PCT,
            );
            // The mix alone never makes it critical: that takes the share or the rate.
            f.severity = f.severity.min(crate::Severity::Warning);
            f
        }
        _ if value >= WARN_PER_VCPU_S => Finding::graded(
            IpiStorm::ID,
            format!(
                "IPI storm: {}/s per vCPU inter-processor interrupts",
                crate::finding::num(value)
            ),
            value,
            WARN_PER_VCPU_S,
            CRIT_PER_VCPU_S,
        ),
        _ => return Vec::new(),
    };
    finding.confidence = if (icr > 0 || xicr > 0) && apic_ipi > 0 || sgi > 0 || !named.is_empty() {
        Confidence::High
    } else {
        Confidence::Medium
    };
    for n in &named {
        evidence.push(Evidence::fact("dominant IPI function", n.clone()));
    }
    finding.evidence = evidence;
    // arm64 when the IPI sends that trapped were SGI register writes.
    let arm64 = sgi > icr + xicr;
    finding.mechanism = if arm64 {
        "An arm64 guest sends an IPI (an SGI) by writing ICC_SGI1R_EL1; KVM traps the write (a SYS64 exit, \
         traced as kvm_sys_access / kvm_handle_sys_reg), handles it in access_gic_sgi → vgic_v3_dispatch_sgi and \
         kicks the target vCPU, waking it from WFI when it waited (kvm_vcpu_wakeup). With GICv4.1 and \
         kvm-arm.vgic_v4_enable=1 the SGI reaches the target as a vSGI without a wake-up through KVM, but the \
         sender's write still traps: the trap cannot be removed, only the IPIs (field report 004)."
    } else {
        "A guest IPI is a write of the x2APIC ICR (MSR 0x830) or the xAPIC ICR (MMIO \
        0xfee00300) that exits (on VMX first through handle_fastpath_set_msr_irqoff); KVM delivers it in \
        kvm_x2apic_icr_write → kvm_apic_send_ipi → kvm_irq_delivery_to_apic (traced as kvm_apic_ipi, then \
        kvm_apic_accept_irq) and kicks the target vCPU (kvm_vcpu_kick), waking it from halt when it slept. Without \
        posted interrupts / IPI virtualization each IPI is an exit on the sender and a host wake-up of the target \
        (field report 004: SGI1R traps on arm64 for the same reason)."
    }
    .into();
    finding.fix = vec![Fix::cmd(
        "inside the guest, attribute the IPIs to the functions they run",
        "kvmscope diagnose --live 5s   # in the guest; or: perf record -e ipi:ipi_send_cpu,csd:csd_function_entry -a -g sleep 5",
    )];
    finding.fix.push(Fix::new(
        "do_nothing (kick_all_cpus_sync): find what loads BPF programs or modules or patches text in a loop \
         (field report 004: a crashing service's coredumps; `coredumpctl list`, `systemctl --failed`)",
    ));
    finding.fix.push(Fix::new(
        "tlb_remove_table_smp_sync / flush_tlb_func: fewer munmap/mprotect/madvise in multi-threaded guest \
         processes (allocator settings such as MALLOC_ARENA_MAX, MALLOC_TRIM_THRESHOLD_; avoid mapping churn)",
    ));
    if arm64 {
        finding.fix.push(Fix::new(
            "guest: isolate the latency-critical CPUs so reschedule (IPI0) and irq-work (IPI5) IPIs stop reaching \
             them: isolcpus=domain,managed_irq,L nohz_full=L rcu_nocbs=L on the guest's command line (field report 004: \
             this cut IPI0 and IPI5; the function-call IPIs left needed their sources found)",
        ));
        finding.fix.push(Fix::new(
            "host: on GICv4.1 hardware, kvm-arm.vgic_v4_enable=1 injects SGIs directly (the target vCPU is not \
             woken through KVM; `dmesg | grep -i gicv4` shows it active), and pin the vCPU threads to isolated host CPUs",
        ));
    } else {
        finding.fix.push(Fix::cmd(
            "host: let the CPU deliver IPIs without exits where it can (APICv/IPI virtualization on Intel, AVIC on AMD)",
            "cat /sys/module/kvm_intel/parameters/enable_apicv /sys/module/kvm_intel/parameters/enable_ipiv /sys/module/kvm_amd/parameters/avic",
        ));
        finding.fix.push(Fix::new(
            "guest: keep PV IPIs on (kvm-pv-ipi CPUID feature, default in QEMU with -cpu host,kvm=on) so a multicast \
             IPI is one hypercall instead of one ICR write per target",
        ));
    }
    finding.references = vec![
        "case 004 in kvmscope's docs/field-reports.md (arm64 real-time guest: SGI1R traps, IPI attribution, timer migration)".into(),
    ];
    finding.references.extend(if arm64 {
        [
            "arch/arm64/kvm/sys_regs.c access_gic_sgi; arch/arm64/kvm/vgic/vgic-mmio-v3.c vgic_v3_dispatch_sgi",
            "Documentation/admin-guide/kernel-parameters.txt (kvm-arm.vgic_v4_enable, isolcpus, nohz_full)",
        ]
    } else {
        [
            "arch/x86/kvm/lapic.c kvm_apic_send_ipi; arch/x86/kvm/x86.c handle_fastpath_set_x2apic_icr_irqoff",
            "Documentation/virt/kvm/x86/cpuid.rst (KVM_FEATURE_PV_SEND_IPI)",
        ]
    }
    .map(String::from));
    vec![finding]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::{fires, fixture, only, quiet};
    use crate::Rule;
    use crate::Severity;

    #[test]
    fn fires_on_lab_ipi_ping_pong() {
        let f = fires(&IpiStorm, &fixture("ipi.txt"), None);
        assert_eq!(f.confidence, Confidence::High);
    }

    /// An arm64 vCPU thread exiting every millisecond for 400 ms: every `every`-th exit an
    /// ICC_SGI1R_EL1 write trapped for `sgi_us`, the others IRQ exits of 10 us.
    fn arm64_mix(every: u64, sgi_us: u64) -> kvmscope_analysis::Report {
        let mut t = String::new();
        for i in 0..400u64 {
            let ts = 1_000_000 + i * 1_000;
            let at = |us: u64| format!("{}.{:06}", (ts + us) / 1_000_000, (ts + us) % 1_000_000);
            if i % every == 0 {
                t.push_str(&format!(
                    "CPU 0/KVM-300 [000] ..... {}: kvm_exit: TRAP: HSR_EC: 0x0018 (SYS64), PC: 0x0000ffff80001000\n\
                     CPU 0/KVM-300 [000] ..... {}: kvm_sys_access: PC: ffff80001000 write to (3,0,12,11,5) SYS_ICC_SGI1R_EL1\n\
                     CPU 0/KVM-300 [000] d.... {}: kvm_entry: PC: 0x0000ffff80001004\n",
                    at(0),
                    at(1),
                    at(sgi_us)
                ));
            } else {
                t.push_str(&format!(
                    "CPU 0/KVM-300 [000] ..... {}: kvm_exit: IRQ: HSR_EC: 0x0000 (UNKNOWN), PC: 0x0000ffff80001000\n\
                     CPU 0/KVM-300 [000] d.... {}: kvm_entry: PC: 0x0000ffff80001000\n",
                    at(0),
                    at(10)
                ));
            }
        }
        let mut b = kvmscope_analysis::ReportBuilder::new();
        let stats = kvmscope_trace::text::decode(t.as_bytes(), |ev| b.observe(ev)).unwrap();
        b.finish(vec![kvmscope_analysis::InputSummary::text("arm64", stats)])
    }

    #[test]
    fn the_exit_mix_names_an_ipi_bound_guest_on_a_slow_host() {
        // A quarter of the exits send IPIs, 60 us each: 1.5% of vCPU time, 250/s, both under
        // their own thresholds; the mix makes it a warning, never more.
        let f = only(&IpiStorm, &arm64_mix(4, 60), None);
        assert_eq!(f.severity, Severity::Warning, "{f:#?}");
        assert!(f.title.contains("25% of exits"), "{}", f.title);
        assert!(f.mechanism.contains("ICC_SGI1R_EL1"), "{}", f.mechanism);
        // A tenth of the exits, or a quarter that cost nothing: quiet.
        assert!(IpiStorm.check(&arm64_mix(10, 60), None).is_empty());
        assert!(IpiStorm.check(&arm64_mix(4, 2), None).is_empty());
    }

    #[test]
    fn stays_quiet_without_ipis() {
        quiet(
            &IpiStorm,
            &[
                "idle.txt",
                "compute.txt",
                "timer-storm.txt",
                "hlt-2ms.txt",
                "pio.txt",
            ],
        );
    }
}
