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
