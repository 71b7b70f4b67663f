//! The /proc and /sys parsers of `kvmscope_system` (interrupts, softirqs, timer_list,
//! cmdline, kernel config, cpu lists, KVM parameters, cpuinfo, timer_migration, a VMM's
//! command line), all on the same text, then the snapshot they make through every diagnosis
//! rule over reports of real captures (an IPI storm, a timer storm, HLT wake-ups: the rules
//! that read the snapshot). After the first NUL byte comes a second reading, for the interval diffs.

use kvmscope_system::{
    cmdline, cpuinfo, cpulist, interrupts, kconfig, kvm_params::KvmParams, parse_timer_migration,
    softirqs, timer_list, vms, SystemSnapshot,
};

/// One input.
pub fn run(data: &[u8]) {
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let text = String::from_utf8_lossy(&data[..cut]);
    let after = String::from_utf8_lossy(data.get(cut + 1..).unwrap_or(&[]));
    let mut snap = SystemSnapshot::default();

    let cmd = cmdline::parse(&text);
    let _ = (cmd.timing(), cmd.has("nohz"), cmd.get("isolcpus"));
    snap.cmdline = Some(cmd);
    if let Ok(c) = kconfig::parse(&text) {
        let _ = c.tick();
        snap.config = Some(c);
    }
    if let Ok(p) = KvmParams::parse_listing(&text) {
        let _ = p.tdp();
        snap.kvm_params = p;
    }
    if let Ok(c) = cpuinfo::parse(&text) {
        let _ = c.virt();
        snap.cpuinfo = Some(c);
    }
    if let Ok(cpus) = cpulist::parse("/sys/devices/system/cpu/isolated", &text) {
        let _ = cpulist::format(&cpus);
        snap.isolation.nohz_full = Some(cpus.clone());
        snap.isolation.isolated = Some(cpus);
    }
    snap.isolation.timer_migration = parse_timer_migration(&text).ok();
    if let Ok(i) = interrupts::parse(&text) {
        let _ = (i.count("LOC", 0), i.line("LOC").map(|l| l.total()));
        if let Ok(j) = interrupts::parse(&after) {
            let d = interrupts::diff(&i, &j);
            let _ = d.ipi_total(interrupts::IpiKind::Reschedule, Some(&[0, 1]));
        }
        snap.interrupts = Some(i);
    }
    if let Ok(s) = softirqs::parse(&text) {
        if let Ok(t) = softirqs::parse(&after) {
            let _ = s.diff(&t);
        }
        snap.softirqs = Some(s);
    }
    let _ = timer_list::parse_hex_mask(&text);
    if let Ok(t) = timer_list::parse(&text) {
        let _ = t.summary();
        snap.timer_list = Some(t);
    }
    let _ = vms::qemu_name(&data[..cut]);
    let _ = snap.isolation_summary();
    for r in super::real_reports() {
        let _ = kvmscope_diagnose::diagnose(r, Some(&snap));
    }
}
