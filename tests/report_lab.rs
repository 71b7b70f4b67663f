//! End to end on this machine's kernel: a lab guest does N known actions while a private
//! tracefs instance records the kvm events; `kvmscope report --tid <vCPU threads> --json` on that
//! trace must count exactly what the lab's ground truth promises for this host.

use std::collections::BTreeMap;
use std::process::Command;

use kvmscope_capture::tracefs::Instance;
use kvmscope_lab::{HostKind, Length, Scenario, ScenarioSpec};
use serde_json::Value;

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
    let out = Command::new(env!("CARGO_BIN_EXE_kvmscope"))
        .args(["report", "--json", "--tid", &tids])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((outcome, serde_json::from_slice(&out.stdout).unwrap()))
}

/// `field == value && ...` as (field, value) pairs.
fn conditions(filter: &str) -> BTreeMap<&str, u64> {
    filter
        .split("&&")
        .map(|c| {
            let (f, v) = c.split_once("==").expect("only == filters");
            let v = v.trim();
            let v = v.strip_prefix("0x").map_or_else(
                || v.parse().unwrap(),
                |h| u64::from_str_radix(h, 16).unwrap(),
            );
            (f.trim(), v)
        })
        .collect()
}

/// What the report says for one promised event (and filter), or None when the report has no
/// breakdown for it.
fn reported(report: &Value, event: &str, filter: Option<&str>) -> Option<u64> {
    let sum = |rows: &Value, keep: &dyn Fn(&Value) -> bool| -> u64 {
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| keep(r))
            .map(|r| r["count"].as_u64().unwrap())
            .sum()
    };
    let Some(filter) = filter else {
        let by_name = report["overview"]["by_name"].as_array().unwrap();
        let full = format!("kvm:{event}");
        return Some(
            by_name
                .iter()
                .find(|p| p[0] == full.as_str())
                .map_or(0, |p| p[1].as_u64().unwrap()),
        );
    };
    let c = conditions(filter);
    let is = |r: &Value, key: &str, field: &str| {
        c.get(field).is_none_or(|&v| r[key].as_u64() == Some(v))
    };
    let is_write = |r: &Value, field: &str, write_value: u64| {
        c.get(field)
            .is_none_or(|&v| r["write"].as_bool() == Some(v == write_value))
    };
    let a = &report["accesses"];
    match event {
        "kvm_pio" => Some(sum(&a["pio"], &|r| {
            is(r, "port", "port") && is_write(r, "rw", 1)
        })),
        "kvm_msr" => Some(sum(&a["msr"], &|r| {
            is(r, "msr", "ecx") && is_write(r, "write", 1)
        })),
        "kvm_mmio" => Some(sum(&a["mmio"], &|r| {
            is(r, "gpa", "gpa") && is_write(r, "type", 2)
        })),
        "kvm_userspace_exit" => Some(sum(&report["overview"]["userspace_exits"], &|r| {
            is(r, "reason", "reason")
        })),
        _ => None,
    }
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
