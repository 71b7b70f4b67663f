//! End to end on this machine's kernel: a lab guest does N known actions while a private
//! tracefs instance records the kvm events; `kvmscope report --tid <vCPU threads> --json` on that
//! trace must count exactly what the lab's ground truth promises for this host.

use std::ffi::OsStr;

use kvmscope_capture::tracefs::Instance;
use kvmscope_lab::{HostKind, Length, Scenario, ScenarioSpec};
use serde_json::Value;

mod support;
use support::reported;

/// Runs `scenario` with `count` operations under a private instance with the `kvm` events and
/// returns (ground truth, report JSON filtered to the guest's vCPU threads).
fn traced_report(scenario: &str, count: u64) -> Option<(kvmscope_lab::RunOutcome, Value)> {
    if !kvmscope_capture::host::require_kvm() {
        return None;
    }
    let tracefs = kvmscope_capture::host::require_tracefs()?;
    let inst = Instance::create(&tracefs, "report-lab").unwrap();
    inst.set_buffer_size_kb(16384).unwrap();
    std::fs::write(inst.path().join("options/record-tgid"), "1").unwrap();
    inst.enable_system("kvm").unwrap();
    let mut spec = ScenarioSpec::new(Scenario::from_name(scenario).unwrap());
    spec.length = Length::Count(count);
    let outcome = kvmscope_lab::run(&spec).unwrap();
    inst.set_tracing_on(false).unwrap();
    let text = inst.trace_text().unwrap();
    drop(inst);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{scenario}.txt"));
    std::fs::write(&path, text).unwrap();
    // The promises are about the vCPU threads (the VMM's main thread also touches KVM while
    // it sets the VM up), so the report is filtered to them.
    let tids: Vec<String> = outcome.vcpu_tids.iter().map(|t| t.to_string()).collect();
    let tids = tids.join(",");
    let args = [OsStr::new("--tid"), OsStr::new(&tids), path.as_os_str()];
    let report = support::report_json(&args);
    Some((outcome, report))
}

fn check(scenario: &str, count: u64) {
    let Some((outcome, report)) = traced_report(scenario, count) else {
        return;
    };
    assert_eq!(
        report["partial"], false,
        "{scenario}: events were lost; raise the buffer"
    );
    let host = HostKind::detect();
    let mut checked = 0;
    let mut table = String::new();
    let mut ok = true;
    for e in &outcome.ground_truth.expectations {
        if e.system != "kvm" || !host.covers(e.host) {
            continue;
        }
        let Some(n) = reported(&report, e.event, e.filter.as_deref()) else {
            continue;
        };
        checked += 1;
        let good = e.count.contains(n);
        ok &= good;
        table.push_str(&format!(
            "{} {} [{}] promised {} reported {n}\n",
            if good { "ok  " } else { "FAIL" },
            e.event,
            e.filter.as_deref().unwrap_or(""),
            e.count
        ));
    }
    eprintln!("{scenario} --count {count}:\n{table}");
    assert!(checked > 0, "{scenario}: no promise could be checked");
    assert!(
        ok,
        "{scenario}: report disagrees with the ground truth:\n{table}"
    );
}

#[test]
fn report_counts_pio_guest_exactly() {
    check("pio", 5000);
}

#[test]
fn report_counts_mmio_guest_exactly() {
    check("mmio", 3000);
}

#[test]
fn report_counts_msr_guest_exactly() {
    check("msr", 3000);
}

#[test]
fn report_counts_cpuid_guest_exactly() {
    check("cpuid", 3000);
}

#[test]
fn report_counts_pagefault_guest_exactly() {
    check("pagefault", 2048);
}

#[test]
fn report_counts_hlt_guest_exactly() {
    check("hlt", 300);
}

#[test]
fn report_names_the_guest_vm_by_its_pid() {
    let Some((outcome, report)) = traced_report("pio", 100) else {
        return;
    };
    let vms = report["overview"]["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 1, "only the guest's threads are kept: {vms:?}");
    assert_eq!(vms[0]["pid"].as_u64(), Some(outcome.pid as u64));
}
