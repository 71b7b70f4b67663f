//! Golden tests: every fixture under tests/fixtures/system/<origin>/ is parsed and the
//! result compared with `expected.json` beside it. `KVMSCOPE_BLESS=1` rewrites the goldens.
//! The origin of each fixture is named in tests/fixtures/system/README.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kvmscope_system::interrupts::{self, InterruptKind, IpiKind};
use kvmscope_system::timer_list::NohzMode;
use kvmscope_system::{
    cmdline, cpuinfo, cpulist, kconfig, kvm_params::KvmParams, softirqs, timer_list,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/system")
}

fn read(dir: &str, file: &str) -> String {
    let p = fixtures().join(dir).join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn parse_dir(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names {
        if name == "expected.json" {
            continue;
        }
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        let base = name.split('.').next().unwrap();
        let v = match base {
            "interrupts" => serde_json::to_value(interrupts::parse(&text).unwrap()),
            "softirqs" => serde_json::to_value(softirqs::parse(&text).unwrap()),
            "timer_list" => {
                let t = timer_list::parse(&text).unwrap();
                serde_json::to_value((t.summary(), t))
            }
            "cmdline" => {
                let c = cmdline::parse(&text);
                serde_json::to_value((c.timing().unwrap(), c))
            }
            "cpuinfo" => {
                let c = cpuinfo::parse(&text).unwrap();
                serde_json::to_value((c.virt(), c))
            }
            "config" => {
                let c = kconfig::parse(&text).unwrap();
                serde_json::to_value((c.tick(), c))
            }
            "isolated" | "nohz_full" => {
                serde_json::to_value(cpulist::parse("cpulist", &text).unwrap())
            }
            "timer_migration" => {
                serde_json::to_value(kvmscope_system::parse_timer_migration(&text).unwrap())
            }
            "kvm_params" => serde_json::to_value(KvmParams::parse_listing(&text).unwrap()),
            "osrelease" | "version" => serde_json::to_value(text.trim()),
            other => panic!("fixture {} has no parser: add one here or rename it", other),
        }
        .unwrap();
        out.insert(name, v);
    }
    out
}

#[test]
fn every_fixture_matches_its_golden() {
    let bless = std::env::var_os("KVMSCOPE_BLESS").is_some_and(|v| v == "1");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.ends_with("traces"))
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "fixture directories missing: {dirs:?}");
    for dir in dirs {
        let got = serde_json::to_string_pretty(&parse_dir(&dir)).unwrap() + "\n";
        let golden = dir.join("expected.json");
        if bless {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with KVMSCOPE_BLESS=1 to create it)",
                golden.display()
            )
        });
        assert!(
            got == want,
            "{} differs from the parse of its fixtures; check the change, then KVMSCOPE_BLESS=1",
            golden.display()
        );
    }
}

#[test]
fn x86_interrupts_this_machine() {
    let irq = interrupts::parse(&read("x86_64-6.18-pvm", "interrupts")).unwrap();
    assert_eq!(irq.cpus, vec![0, 1]);
    for (name, kind) in [
        ("RES", InterruptKind::Ipi(IpiKind::Reschedule)),
        ("CAL", InterruptKind::Ipi(IpiKind::FunctionCall)),
        ("TLB", InterruptKind::Ipi(IpiKind::TlbShootdown)),
        ("IWI", InterruptKind::Ipi(IpiKind::IrqWork)),
        ("LOC", InterruptKind::LocalTimer),
        ("NMI", InterruptKind::Nmi),
        ("PMI", InterruptKind::Pmi),
        ("24", InterruptKind::Device),
        ("HYP", InterruptKind::Other),
    ] {
        let line = irq.line(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(line.kind, kind, "{name}");
        assert_eq!(line.counts.len(), 2, "{name}");
        assert!(!line.global);
    }
    let err = irq.line("ERR").unwrap();
    assert!(err.global);
    assert_eq!(err.counts, vec![0]);
    assert_eq!(irq.line("TLB").unwrap().description, "TLB shootdowns");
    assert_eq!(
        irq.line("36").unwrap().description,
        "PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0"
    );
}

#[test]
fn arm64_ipis_are_named_by_description() {
    let irq = interrupts::parse(&read("arm64-xen-dom0", "interrupts")).unwrap();
    let want = [
        ("IPI0", IpiKind::Reschedule, 30, 101),
        ("IPI1", IpiKind::FunctionCall, 1888, 1458),
        ("IPI2", IpiKind::CpuStop, 0, 0),
        ("IPI3", IpiKind::CpuStopCrash, 0, 0),
        ("IPI4", IpiKind::TimerBroadcast, 0, 0),
        ("IPI5", IpiKind::IrqWork, 0, 0),
        ("IPI6", IpiKind::Wakeup, 0, 0),
    ];
    for (name, kind, c0, c1) in want {
        let l = irq.line(name).unwrap();
        assert_eq!(l.kind, InterruptKind::Ipi(kind), "{name}");
        assert_eq!(l.counts, vec![c0, c1], "{name}");
    }
    assert!(irq.line("Err").unwrap().global);
    // The arm64 local timer is a device line.
    assert_eq!(
        irq.line("11").unwrap().description,
        "GICv3  27 Level     arch_timer"
    );

    // 32-bit arm numbers its IPIs differently; the descriptions still tell them apart.
    let arm = interrupts::parse(&read("armv7-4.1-zte", "interrupts")).unwrap();
    assert_eq!(
        arm.line("IPI2").unwrap().kind,
        InterruptKind::Ipi(IpiKind::Reschedule)
    );
    assert_eq!(
        arm.line("IPI4").unwrap().kind,
        InterruptKind::Ipi(IpiKind::FunctionCallSingle)
    );
    assert_eq!(
        arm.line("IPI0").unwrap().kind,
        InterruptKind::Ipi(IpiKind::Wakeup)
    );
}

#[test]
fn interrupt_deltas_per_line_and_cpu() {
    let before = interrupts::parse(&read("arm64-xen-dom0", "interrupts")).unwrap();
    let after = interrupts::parse(&read("arm64-xen-dom0", "interrupts.after")).unwrap();
    let d = interrupts::diff(&before, &after);
    assert_eq!(d.line("IPI1").unwrap().deltas, vec![625, 1054]);
    assert_eq!(d.ipi_total(IpiKind::FunctionCall, None), 625 + 1054);
    assert_eq!(d.ipi_total(IpiKind::FunctionCall, Some(&[1])), 1054);
    // IRQ 39 is new in the later snapshot; 41 is gone.
    assert_eq!(d.line("39").unwrap().deltas, vec![0, 66]);
    assert_eq!(d.removed, vec!["41".to_string()]);
    // The two dumps straddle a reboot, so some counters went down: a live interval cannot
    // reset them, so the diff takes them to have wrapped at 2^32 (32-bit kernel counters)
    // and says how many did.
    assert_eq!(d.line("IPI0").unwrap().deltas, vec![48, (1u64 << 32) - 24]);
    assert!(d.wrapped >= 3);

    // Exact per-CPU deltas on this machine's file with TLB and CAL bumped.
    let text = read("x86_64-6.18-pvm", "interrupts");
    let before = interrupts::parse(&text).unwrap();
    let mut after = before.clone();
    for l in &mut after.lines {
        match l.name.as_str() {
            "TLB" => {
                l.counts[0] += 7;
                l.counts[1] += 1000;
            }
            "CAL" => l.counts[1] += 3,
            _ => {}
        }
    }
    let d = interrupts::diff(&before, &after);
    assert_eq!(d.wrapped, 0);
    assert_eq!(d.line("TLB").unwrap().deltas, vec![7, 1000]);
    assert_eq!(d.ipi_total(IpiKind::TlbShootdown, None), 1007);
    assert_eq!(d.ipi_total(IpiKind::TlbShootdown, Some(&[0])), 7);
    assert_eq!(d.line("CAL").unwrap().total, 3);
    assert_eq!(d.lines.iter().map(|l| l.total).sum::<u64>(), 1010);

    let same = interrupts::diff(&after, &after);
    assert!(same.lines.iter().all(|l| l.total == 0));
}

#[test]
fn timer_list_this_machine() {
    let tl = timer_list::parse(&read("x86_64-6.18-pvm", "timer_list")).unwrap();
    assert_eq!(tl.version.as_deref(), Some("v0.10"));
    assert_eq!(tl.now_ns, Some(250214584218));
    assert_eq!(tl.cpus.len(), 2);
    let c0 = tl.cpu(0).unwrap();
    assert_eq!(c0.timers[0].function, "tick_nohz_handler");
    assert_eq!(c0.timers[0].expires_ns, 250216000000);
    assert_eq!(c0.timers[2].soft_expires_ns, 250383675256);
    assert_eq!(c0.timers[2].expires_ns, 250383856255);
    assert_eq!(c0.tick_stopped(), Some(false));
    assert_eq!(c0.nohz_mode(), Some(NohzMode::HighRes));
    assert_eq!(c0.functions()["hrtimer_wakeup"], 3);
    assert_eq!(c0.timers[3].function, "timerfd_tmrproc");
    let td = tl.tick_device(1).unwrap();
    assert_eq!(td.device.as_deref(), Some("lapic-deadline"));
    assert_eq!(td.event_handler(), Some("hrtimer_interrupt"));
    assert_eq!(td.device_mode(), Some(3));
    assert_eq!(td.tick_mode, 1);
    let bc = tl.tick_devices.iter().find(|d| d.cpu.is_none()).unwrap();
    let sum = tl.summary();
    assert_eq!(sum.len(), 2);
    assert_eq!(sum[1].clock_event_device.as_deref(), Some("lapic-deadline"));
    assert_eq!(sum[1].tick_mode.as_deref(), Some("oneshot"));
    assert_eq!(sum[0].nohz_mode, Some(NohzMode::HighRes));
    assert_eq!(sum[0].functions["timerfd_tmrproc"], 1);
    assert_eq!(bc.device, None);
    assert_eq!(bc.broadcast_mask, Some(vec![]));
}

#[test]
fn timer_list_old_kernels_and_arm64_excerpt() {
    let tl = timer_list::parse(&read("x86_64-3.2-ubuntu", "timer_list")).unwrap();
    assert_eq!(tl.version.as_deref(), Some("v0.6"));
    assert_eq!(tl.cpus.len(), 8);
    let c0 = tl.cpu(0).unwrap();
    assert_eq!(c0.timers[0].function, "tick_sched_timer");
    assert_eq!(
        c0.timers[0].start_site.as_deref(),
        Some("hrtimer_start_range_ns")
    );
    assert_eq!(c0.timers[0].comm.as_deref(), Some("swapper/0"));
    assert_eq!(c0.timers[0].pid, Some(0));
    assert_eq!(c0.nohz_mode(), Some(NohzMode::HighRes));
    assert_eq!(tl.cpu(2).unwrap().tick_stopped(), Some(true));
    let c4 = tl.cpu(4).unwrap();
    assert_eq!(c4.timers[1].function, "sched_rt_period_timer");
    assert_eq!(tl.tick_device(3).unwrap().device.as_deref(), Some("lapic"));
    let bc = tl.tick_devices.iter().find(|d| d.cpu.is_none()).unwrap();
    assert_eq!(bc.device.as_deref(), Some("hpet"));

    let arm = timer_list::parse(&read("armv7-4.1-zte", "timer_list")).unwrap();
    assert_eq!(arm.cpus.len(), 2);
    assert!(arm.cpus[0]
        .timers
        .iter()
        .any(|t| t.function == "sched_clock_poll"));

    let ex = timer_list::parse(&read("arm64-lkml-excerpt", "timer_list")).unwrap();
    assert_eq!(ex.tick_devices.len(), 1);
    let d = &ex.tick_devices[0];
    assert_eq!(d.cpu, Some(95));
    assert_eq!(d.device.as_deref(), Some("arch_sys_timer"));
    assert_eq!(d.event_handler(), Some("hrtimer_interrupt"));
    assert_eq!(d.fields["oneshot stopped"], "arch_timer_shutdown_phys");
    assert_eq!(d.fields["next_event"], "14951080000000");
}

#[test]
fn softirqs_all_fixtures() {
    let s = softirqs::parse(&read("x86_64-3.2-ubuntu", "softirqs")).unwrap();
    assert_eq!(s.cpus.len(), 16);
    assert_eq!(s.row("HRTIMER").unwrap().counts[0], 50908);
    let arm = softirqs::parse(&read("armv7-4.1-zte", "softirqs")).unwrap();
    assert!(arm.row("BLOCK_IOPOLL").is_some());
    let d = arm.diff(&arm);
    assert!(d.rows.iter().all(|r| r.counts.iter().all(|&c| c == 0)));
}

#[test]
fn cmdline_config_cpuinfo_this_machine() {
    let c = cmdline::parse(&read("x86_64-6.18-pvm", "cmdline"));
    assert_eq!(c.get("console"), Some(Some("ttyS0")));
    assert_eq!(c.get("quiet"), Some(None));
    assert!(c.init_args.contains(&"--firecracker-init".to_string()));
    assert_eq!(
        c.timing().unwrap().mitigations.as_deref(),
        Some("auto,no_guest_host,no_guest_guest")
    );

    let k = kconfig::parse(&read("x86_64-6.18-pvm", "config"))
        .unwrap()
        .tick();
    assert_eq!(k.hz, Some(250));
    assert!(k.no_hz_idle && !k.no_hz_full && k.high_res_timers && k.preempt_dynamic);
    assert_eq!(k.preempt.as_deref(), Some("none"));

    let v = cpuinfo::parse(&read("x86_64-6.18-pvm", "cpuinfo")).unwrap();
    assert_eq!(v.processors, 2);
    assert_eq!(v.vendor.as_deref(), Some("AuthenticAMD"));
    let f = v.virt();
    assert!(f.hypervisor && f.x2apic && f.tsc_deadline_timer && !f.svm && !f.vmx);

    let arm = cpuinfo::parse(&read("armv7-4.1-zte", "cpuinfo")).unwrap();
    assert!(arm.flags.contains("edsp"));
    assert_eq!(arm.vendor.as_deref(), Some("0x41"));

    let p = KvmParams::parse_listing(&read("x86_64-6.18-pvm", "kvm_params")).unwrap();
    assert_eq!(p.get_bool("kvm", "tdp_mmu"), Some(false));
    assert_eq!(p.get("kvm", "halt_poll_ns"), Some("200000"));
    assert_eq!(p.tdp(), None);
}

#[test]
fn isolation_parameters() {
    let c = cmdline::parse("BOOT_IMAGE=/vmlinuz isolcpus=domain,managed_irq,1-3 nohz_full=1-3 rcu_nocbs=1-3 nohz=off irqaffinity=0 idle=poll tsc=reliable clocksource=tsc");
    let t = c.timing().unwrap();
    assert_eq!(t.nohz, Some(false));
    assert_eq!(t.nohz_full, Some(vec![1, 2, 3]));
    assert_eq!(t.rcu_nocbs, Some(vec![1, 2, 3]));
    let iso = t.isolcpus.unwrap();
    assert_eq!(iso.flags, vec!["domain", "managed_irq"]);
    assert_eq!(iso.cpus, vec![1, 2, 3]);
    assert_eq!(t.irqaffinity, Some(vec![0]));
    assert_eq!(t.idle.as_deref(), Some("poll"));
    assert_eq!(t.tsc.as_deref(), Some("reliable"));
    assert_eq!(t.clocksource.as_deref(), Some("tsc"));
    assert_eq!(cpulist::parse("t", "0-3,5\n").unwrap(), vec![0, 1, 2, 3, 5]);
    assert_eq!(cpulist::parse("t", "0-7:2/4").unwrap(), vec![0, 1, 4, 5]);
    assert_eq!(cpulist::parse("t", "\n").unwrap(), Vec::<u32>::new());
    assert_eq!(cpulist::format(&[0, 1, 2, 3, 5, 7, 8]), "0-3,5,7-8");
}
