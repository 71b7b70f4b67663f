//! `collect()` on this machine: whatever exists is read and parsed, what does not is listed.

#[test]
fn collect_reads_the_live_system() {
    let snap = kvmscope_system::collect();
    // /proc exists on every Linux system the tests run on.
    assert!(snap.kernel_release.is_some(), "{:?}", snap.absent);
    let irq = snap.interrupts.as_ref().expect("/proc/interrupts parses");
    assert!(!irq.cpus.is_empty());
    assert!(snap.softirqs.is_some(), "{:?}", snap.absent);
    assert!(snap.cmdline.is_some());
    assert!(snap.cpuinfo.is_some());
    // Every absent entry says why; nothing that exists failed to parse.
    for a in &snap.absent {
        assert!(!a.reason.is_empty());
        assert!(
            a.reason == "not present"
                || a.reason.contains("denied")
                || a.reason.contains("no kernel configuration"),
            "{} could not be read or parsed: {}",
            a.path,
            a.reason
        );
    }
    // The snapshot survives a JSON round trip unchanged.
    let json = serde_json::to_string(&snap).unwrap();
    let back: kvmscope_system::SystemSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
}

#[test]
fn collect_from_a_copy_records_missing_files() {
    let dir = std::env::temp_dir().join(format!("kvmscope-system-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("proc/sys/kernel")).unwrap();
    std::fs::write(dir.join("proc/sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
    std::fs::write(
        dir.join("proc/interrupts"),
        "CPU0\nLOC: 5 Local timer interrupts\n",
    )
    .unwrap();
    std::fs::write(dir.join("proc/softirqs"), "not a softirqs file\n").unwrap();
    let snap = kvmscope_system::collect_from(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(snap.kernel_release.as_deref(), Some("6.1.0-test"));
    assert_eq!(
        snap.interrupts.unwrap().line("LOC").unwrap().counts,
        vec![5]
    );
    assert!(snap.softirqs.is_none());
    let why = |p: &str| {
        snap.absent
            .iter()
            .find(|a| a.path == p)
            .map(|a| a.reason.clone())
    };
    assert!(why("/proc/softirqs").unwrap().contains("line 1"));
    assert_eq!(why("/proc/timer_list").as_deref(), Some("not present"));
    assert_eq!(
        why("/sys/devices/system/cpu/nohz_full").as_deref(),
        Some("not present")
    );
    assert!(snap.kvm_params.modules.is_empty());
}

#[test]
fn isolation_summary_of_a_field_report_004_system() {
    let dir = std::env::temp_dir().join(format!("kvmscope-system-iso-{}", std::process::id()));
    let w = |p: &str, t: &str| {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    };
    w(
        "proc/cmdline",
        "BOOT_IMAGE=/vmlinuz isolcpus=domain,managed_irq,1-3 nohz_full=1-3 rcu_nocbs=1-3\n",
    );
    w("sys/devices/system/cpu/isolated", "1-3\n");
    w("sys/devices/system/cpu/nohz_full", "1-3\n");
    w("proc/sys/kernel/timer_migration", "1\n");
    w(
        "boot/config-6.6.0-rt",
        "CONFIG_HZ=1000\nCONFIG_NO_HZ_FULL=y\n",
    );
    w("proc/sys/kernel/osrelease", "6.6.0-rt\n");
    let mut tl = String::from("Timer List Version: v0.9\nnow at 1000 nsecs\n\n");
    for (cpu, stopped) in [(0, 0), (1, 1), (2, 0), (3, 1)] {
        tl.push_str(&format!(
            "cpu: {cpu}\n clock 0:\nactive timers:\n #0: <00>, tick_sched_timer, S:01\n # expires at 2000-2000 nsecs [in 1000 to 1000 nsecs]\n  .nohz_mode      : 2\n  .tick_stopped   : {stopped}\njiffies: 1\n\n"
        ));
    }
    for cpu in 0..4 {
        tl.push_str(&format!("Tick Device: mode:     1\nPer CPU device: {cpu}\nClock Event Device: arch_sys_timer\n event_handler:  hrtimer_interrupt\n\n"));
    }
    w("proc/timer_list", &tl);
    let snap = kvmscope_system::collect_from(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(snap.config_source.as_deref(), Some("/boot/config-6.6.0-rt"));
    let s = snap.isolation_summary();
    assert_eq!(s.hz, Some(1000));
    assert!(!s.nohz_off && !s.nohz_full_ignored);
    assert!(s.timer_migration_with_nohz_full);
    assert_eq!(s.nohz_full_tick_running, vec![2]);
    assert_eq!(s.isolated_cpu_ticks.len(), 3);
    assert_eq!(s.cmdline.unwrap().rcu_nocbs, Some(vec![1, 2, 3]));
    // This machine: no isolation, HZ from its config.
    let live = kvmscope_system::collect().isolation_summary();
    assert!(live.nohz_full_tick_running.is_empty());
}

#[test]
fn isolation_summary_of_a_field_report_003_system() {
    let dir = std::env::temp_dir().join(format!("kvmscope-system-nohz-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("proc")).unwrap();
    std::fs::write(
        dir.join("proc/cmdline"),
        "root=/dev/vda nohz=off nohz_full=1\n",
    )
    .unwrap();
    let snap = kvmscope_system::collect_from(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let s = snap.isolation_summary();
    assert!(s.nohz_off);
    // No config and no sysfs file: nothing says nohz_full was ignored.
    assert!(!s.nohz_full_ignored);
}

/// A lab VM running in this process is found with its vCPU threads.
#[test]
fn collect_finds_a_running_lab_vm() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let mut seen = None;
    let spec = kvmscope_lab::ScenarioSpec::new(kvmscope_lab::Scenario::Pio).count(10);
    let out = kvmscope_lab::run_with(&spec, |threads| {
        seen = Some((threads.vcpu_tids.clone(), kvmscope_system::collect().vms));
    })
    .unwrap();
    let (tids, vms) = seen.unwrap();
    let me = vms
        .iter()
        .find(|v| v.pid == std::process::id())
        .unwrap_or_else(|| {
            panic!(
                "this process (pid {}) holds a VM: {vms:?}",
                std::process::id()
            )
        });
    assert!(me.vm_fds >= 1);
    let found: Vec<i32> = me.vcpu_threads.iter().map(|&(t, _)| t as i32).collect();
    for t in &tids {
        assert!(
            found.contains(t),
            "vCPU thread {t} not found in {:?}",
            me.vcpu_threads
        );
    }
    assert_eq!(out.vcpu_tids, tids);
    // After the run the VM is gone.
    assert!(kvmscope_system::collect()
        .vms
        .iter()
        .all(|v| v.pid != std::process::id()));
}
