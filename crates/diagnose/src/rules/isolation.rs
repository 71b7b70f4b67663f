//! CPU isolation health (field report 004, 003): nohz_full CPUs whose tick still runs, timer
//! migration moving timers onto them, isolation parameters missing or ignored, `nohz=off`.

use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;

use crate::facts::Facts;
use crate::finding::{Confidence, Evidence, Finding, Fix, Severity};
use crate::rules::{Isolation, MIN_EVENTS};

/// Local timer interrupts per second on a nohz_full CPU that say its tick runs: a stopped
/// tick fires only for real timers; at HZ/2 or more (here 125/s at HZ=250) it is ticking.
pub const TICKING_FRACTION_OF_HZ: f64 = 0.5;

pub fn check(f: &Facts, report: &Report, system: Option<&SystemSnapshot>) -> Vec<Finding> {
    let Some(s) = system else {
        return Vec::new();
    };
    let iso = s.isolation_summary();
    let mut problems: Vec<(Severity, String)> = Vec::new();
    let mut woken_by_ipi = false;
    let mut evidence = Vec::new();
    let mut fix = Vec::new();
    let nohz_full: Vec<u32> = iso
        .nohz_full
        .clone()
        .filter(|v| !v.is_empty())
        .or_else(|| iso.cmdline.as_ref().and_then(|c| c.nohz_full.clone()))
        .unwrap_or_default();
    if !nohz_full.is_empty() {
        evidence.push(Evidence::fact("nohz_full CPUs", cpus(&nohz_full)));
    }
    if iso.nohz_full_ignored {
        problems.push((Severity::Warning, "nohz_full= is on the command line but this kernel ignored it (no CONFIG_NO_HZ_FULL or a bad CPU list)".into()));
        fix.push(Fix::cmd(
            "use a kernel built with CONFIG_NO_HZ_FULL=y, and check the CPU list",
            "zgrep NO_HZ_FULL /proc/config.gz; cat /sys/devices/system/cpu/nohz_full",
        ));
    }
    if let Some(e) = &iso.cmdline_error {
        problems.push((
            Severity::Warning,
            format!("a CPU list on the command line does not parse: {e}"),
        ));
    }
    if iso.timer_migration_with_nohz_full {
        problems.push((Severity::Warning, "kernel.timer_migration=1 with nohz_full CPUs: timers started on housekeeping CPUs migrate onto the isolated ones and keep their tick alive (field report 004)".into()));
        evidence.push(Evidence::fact("kernel.timer_migration", "1"));
        fix.push(Fix::cmd("stop timer migration", "sysctl -w kernel.timer_migration=0   # persist: echo kernel.timer_migration=0 > /etc/sysctl.d/90-isolation.conf"));
    }
    if !iso.nohz_full_tick_running.is_empty() {
        problems.push((
            Severity::Warning,
            format!(
                "the tick was running on nohz_full CPU(s) {} when /proc/timer_list was read",
                cpus(&iso.nohz_full_tick_running)
            ),
        ));
        fix.push(Fix::cmd("see which timer keeps the tick alive on the isolated CPU", "grep -A20 'cpu: N' /proc/timer_list; cat /sys/kernel/tracing/per_cpu/cpuN/trace_pipe with timer:* enabled"));
    }
    if !nohz_full.is_empty() {
        let c = iso.cmdline.as_ref();
        let has_isol = c.is_some_and(|c| c.isolcpus.is_some())
            || iso.isolated.as_ref().is_some_and(|v| !v.is_empty());
        let has_rcu = c.is_some_and(|c| c.rcu_nocbs.is_some());
        if !has_isol {
            problems.push((Severity::Warning, "nohz_full without isolcpus: the scheduler still balances tasks onto the tick-less CPUs".into()));
        }
        if !has_rcu {
            problems.push((Severity::Info, "nohz_full without rcu_nocbs on the command line (kernels since 5.x imply it for nohz_full CPUs; older ones do not)".into()));
        }
        if !has_isol || !has_rcu {
            fix.push(Fix::new(format!(
                "isolate the same CPUs fully: kernel cmdline isolcpus=domain,managed_irq,{l} nohz_full={l} rcu_nocbs={l} (field report 004)",
                l = cpus(&nohz_full)
            )));
        }
        // Guest events: IPIs into nohz_full CPUs from other CPUs. A task sleeping on an
        // isolated CPU whose timer migrated to a housekeeping CPU is woken by an IPI from
        // there (field report 004: "IPIs wake the idle CPU, not arch_timer").
        if let Some(g) = report.guest.as_ref().filter(|g| !g.host_side) {
            for &cpu in &nohz_full {
                let rows = g
                    .ipi
                    .sent
                    .iter()
                    .filter(|r| r.target_cpu == cpu && r.sender_cpu != cpu);
                let n: u64 = rows.clone().map(|r| r.sent).sum();
                if n < MIN_EVENTS {
                    continue;
                }
                woken_by_ipi = true;
                let mut by = std::collections::BTreeMap::<String, u64>::new();
                for r in rows {
                    let key = if r.function.is_empty() {
                        format!("from CPU {} {}", r.sender_cpu, r.kind)
                    } else {
                        format!("from CPU {} {} ({})", r.sender_cpu, r.function, r.kind)
                    };
                    *by.entry(key).or_default() += r.sent;
                }
                evidence.push(f.guest_rate(
                    format!("guest: IPIs into nohz_full CPU {cpu} from other CPUs"),
                    n,
                ));
                evidence.push(f.top_evidence(
                    format!("guest: IPIs into nohz_full CPU {cpu}, by sender and function"),
                    by.into_iter().collect(),
                    5,
                ));
                problems.push((
                    if iso.timer_migration_with_nohz_full {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    format!(
                        "nohz_full CPU {cpu} was interrupted {n} times by IPIs from other CPUs ({:.1}/s){}",
                        f.per_s(n),
                        if iso.timer_migration_with_nohz_full {
                            ": with timer migration on, its tasks' timers fire on a housekeeping CPU, which wakes it by IPI"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        // Guest events: local timer interrupts on nohz_full CPUs.
        if let (Some(g), Some(hz)) = (&report.guest, iso.hz) {
            for r in &g.timers.local_timer {
                if nohz_full.contains(&r.cpu) && f.duration_s >= 0.5 {
                    let rate = f.per_s(r.interrupts);
                    if rate >= TICKING_FRACTION_OF_HZ * f64::from(hz) {
                        problems.push((Severity::Warning, format!("nohz_full CPU {} took {rate:.0} local timer interrupts/s (HZ={hz}): its tick did not stop", r.cpu)));
                    }
                }
            }
        }
    }
    if iso.nohz_off {
        problems.push((Severity::Warning, "nohz=off on the command line: no CPU ever stops its tick; in a guest every tick is a timer exit (field report 003)".into()));
        fix.push(Fix::cmd(
            "remove nohz=off",
            "grubby --update-kernel=ALL --remove-args=nohz",
        ));
    }
    if woken_by_ipi && !iso.timer_migration_with_nohz_full {
        fix.push(Fix::cmd(
            "see what wakes the isolated CPU from elsewhere (the function each IPI runs, and who sent it)",
            "perf record -e ipi:ipi_send_cpu,ipi:ipi_send_cpumask,csd:csd_function_entry -a -g sleep 5",
        ));
    }
    if problems.is_empty() {
        return Vec::new();
    }
    let severity = problems.iter().map(|p| p.0).max().unwrap_or(Severity::Info);
    for (sev, p) in &problems {
        evidence.push(Evidence::fact(format!("problem ({sev})"), p.clone()));
    }
    if let Some(hz) = iso.hz {
        evidence.push(Evidence::fact("CONFIG_HZ", hz.to_string()));
    }
    let n = problems.iter().filter(|p| p.0 >= Severity::Warning).count();
    vec![Finding {
        rule: Isolation::ID,
        title: if woken_by_ipi && iso.timer_migration_with_nohz_full {
            format!(
                "CPU isolation failure: nohz_full CPU(s) {} woken by IPIs from other CPUs, with kernel.timer_migration=1 ({} problem(s))",
                cpus(&nohz_full),
                problems.len()
            )
        } else {
            format!("CPU isolation: {} problem(s) with tick and isolation settings", problems.len())
        },
        severity,
        confidence: Confidence::High,
        score: n as f64,
        evidence,
        mechanism: "A nohz_full CPU stops its tick only while one task runs and no timer is due on it \
            (tick_nohz_full_update_tick / can_stop_full_tick in kernel/time/tick-sched.c). With \
            kernel.timer_migration=1, get_target_base/switch_hrtimer_base and the timer wheel's migration move \
            timers armed elsewhere onto idle CPUs, so isolated CPUs get woken by timers and IPIs; without \
            isolcpus the scheduler places other tasks there, and without rcu_nocbs RCU callbacks run there."
            .into(),
        fix,
        references: vec![
            "case 004 in kvmscope's docs/field-reports.md (arm64 real-time guest: SGI1R traps, IPI attribution, timer migration)".into(),
            "Documentation/timers/no_hz.rst".into(),
            "Documentation/admin-guide/kernel-parameters.txt (isolcpus, nohz_full, rcu_nocbs)".into(),
            "Documentation/admin-guide/sysctl/kernel.rst (timer_migration)".into(),
        ],
    }]
}

fn cpus(v: &[u32]) -> String {
    // Compact ranges: 1-3,5.
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", v[i], v[j])
        } else {
            v[i].to_string()
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::{fixture, flat_snapshot, only, pvm_snapshot, says};
    use crate::Rule;

    #[test]
    fn fires_on_field_report_004_guest_settings() {
        let sys = flat_snapshot("diagnose/fr004-guest");
        let f = only(&Isolation, &fixture("idle.txt"), Some(&sys));
        assert_eq!(f.severity, Severity::Warning, "{f:#?}");
        says(&f, "timer_migration");
    }

    #[test]
    fn fires_on_field_report_003_nohz_off() {
        let sys = flat_snapshot("diagnose/fr003-guest");
        let f = only(&Isolation, &fixture("idle.txt"), Some(&sys));
        says(&f, "nohz=off");
    }

    #[test]
    fn stays_quiet_on_this_machine_and_without_a_snapshot() {
        let sys = pvm_snapshot();
        assert!(Isolation.check(&fixture("idle.txt"), Some(&sys)).is_empty());
        assert!(Isolation.check(&fixture("idle.txt"), None).is_empty());
    }
}
