//! Measures the events per guest action of every scenario on this host (the table in
//! docs/lab.md). Ignored by default: it enables every kvm and kvmmmu event.
//!
//! `cargo test -p kvmscope-lab --test measure -- --ignored --nocapture`
//! (`KVMSCOPE_LAB_MEASURE=pio,cr3` limits the scenarios.)

mod support;

use std::collections::BTreeMap;

use kvmscope_lab::{Scenario, ScenarioSpec};

/// Groups an event by name plus the fields that tell its kinds apart.
fn key(s: &support::Seen) -> String {
    let f = |n: &str| support::field(&s.payload, n).map(|v| format!("{n}={v:#x}"));
    let extra = match s.name.as_str() {
        "kvm_pio" => f("port"),
        "kvm_msr" => f("ecx").map(|e| format!("{e} {}", f("write").unwrap_or_default())),
        "kvm_userspace_exit" => f("reason"),
        "kvm_mmio" => f("type"),
        "kvm_emulate_insn" => f("failed"),
        "kvm_mmu_get_page" => f("created"),
        "kvm_apic_accept_irq" => f("vec"),
        "kvm_eoi" => f("vector"),
        "kvm_vcpu_wakeup" => f("waited"),
        _ => None,
    };
    match extra {
        Some(x) => format!("{} {x}", s.name),
        None => s.name.clone(),
    }
}

fn counts(spec: &ScenarioSpec) -> Option<(BTreeMap<String, u64>, u64)> {
    let events = vec![
        ("kvm".to_string(), "*".to_string()),
        ("kvmmmu".to_string(), "*".to_string()),
    ];
    let _ = events;
    let all: Vec<(String, String)> = ["kvm", "kvmmmu"]
        .iter()
        .flat_map(|sys| {
            std::fs::read_dir(format!("/sys/kernel/tracing/events/{sys}"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|d| d.path().is_dir())
                .map(move |d| {
                    (
                        sys.to_string(),
                        d.file_name().to_string_lossy().into_owned(),
                    )
                })
        })
        .collect();
    let t = support::traced_run(spec, &all)?;
    let mut m = BTreeMap::new();
    if std::env::var_os("KVMSCOPE_LAB_DUMP").is_some() {
        let mut shown = std::collections::BTreeSet::new();
        for s in &t.events {
            if shown.insert(key(s)) {
                println!("  sample {}: {}", s.name, s.payload);
            }
        }
    }
    for s in &t.events {
        *m.entry(key(s)).or_insert(0) += 1;
    }
    Some((m, t.outcome.ops))
}

#[test]
#[ignore = "measurement for docs/lab.md; enables every kvm/kvmmmu event"]
fn measure_events_per_action() {
    let only = std::env::var("KVMSCOPE_LAB_MEASURE").ok();
    println!(
        "kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    for s in Scenario::ALL {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|x| x == s.name()))
        {
            continue;
        }
        let small = ScenarioSpec::new(s);
        let (a_spec, b_spec) = match s {
            Scenario::Idle => (
                small
                    .clone()
                    .duration(std::time::Duration::from_millis(200)),
                small
                    .clone()
                    .duration(std::time::Duration::from_millis(400)),
            ),
            Scenario::Compute => (
                small.clone().count(1_000_000),
                small.clone().count(2_000_000),
            ),
            Scenario::Cr3 => (small.clone().count(500), small.clone().count(1000)),
            _ => (small.clone().count(200), small.clone().count(400)),
        };
        let Some((a, na)) = counts(&a_spec) else {
            return;
        };
        let Some((b, nb)) = counts(&b_spec) else {
            return;
        };
        println!("\n== {} ({} ops vs {} ops)", s.name(), na, nb);
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let (ca, cb) = (
                a.get(k).copied().unwrap_or(0),
                b.get(k).copied().unwrap_or(0),
            );
            let per = if nb > na {
                (cb as f64 - ca as f64) / (nb - na) as f64
            } else {
                0.0
            };
            let fixed = ca as f64 - per * na as f64;
            println!("{k:<48} {ca:>8} {cb:>8}   per op {per:>7.3}  fixed {fixed:>8.1}");
        }
    }
}
