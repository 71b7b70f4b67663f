//! Acceptance: every scenario, run under a private tracefs instance, shows exactly the events
//! its ground truth promises on this VM's vCPU threads, and the VM's binary stats move
//! consistently. Needs /dev/kvm and tracefs (skips, or fails under KVMSCOPE_REQUIRE_KVM=1).

mod support;

use kvmscope_lab::{RunOutcome, Scenario, ScenarioSpec};

/// Runs `spec` traced, asserts the ground truth, returns the outcome for stat checks.
fn assert_ground_truth(spec: ScenarioSpec) -> Option<RunOutcome> {
    // The events to enable: those the spec's promise names.
    let truth_events = support::events_of(&spec.expected().expectations, &[]);
    let t = support::traced_run(&spec, &truth_events)?;
    let (table, ok) = t.check();
    println!(
        "{} ops={} tids={:?}\n{table}",
        spec.scenario, t.outcome.ops, t.outcome.vcpu_tids
    );
    assert!(ok, "{} broke its ground truth:\n{table}", spec.scenario);
    if t.outcome.stats_before.is_some() {
        let checks = t.outcome.check_stats(kvmscope_lab::HostKind::detect());
        for (name, promised, seen, ok) in &checks {
            println!(
                "{} stat {name} promised {promised} seen {seen:?}",
                if *ok { "ok  " } else { "FAIL" }
            );
        }
        assert!(
            checks.iter().all(|c| c.3),
            "{}: binary stats inconsistent: {checks:?}",
            spec.scenario
        );
    } else {
        println!(
            "no binary stats on this host: {:?}",
            t.outcome.stats_unavailable
        );
    }
    Some(t.outcome)
}

#[test]
fn pio_10000_outs_give_exactly_10000_kvm_pio_on_port_0x3f8() {
    let Some(o) = assert_ground_truth(ScenarioSpec::new(Scenario::Pio).count(10_000)) else {
        return;
    };
    assert_eq!(o.ops, 10_000);
    assert_eq!(o.vmm_exits[0].io_out, vec![(0x3f8, 10_000)]);
}

#[test]
fn pio_on_two_vcpus_counts_per_thread() {
    let Some(o) = assert_ground_truth(ScenarioSpec::new(Scenario::Pio).count(3_000).vcpus(2))
    else {
        return;
    };
    assert_eq!(o.ops_per_vcpu, vec![3_000, 3_000]);
    assert_eq!(o.vcpu_tids.len(), 2);
}

#[test]
fn mmio_stores_exit_as_mmio() {
    assert_ground_truth(ScenarioSpec::new(Scenario::Mmio).count(5_000));
}

#[test]
fn msr_tsc_deadline_writes() {
    assert_ground_truth(ScenarioSpec::new(Scenario::Msr).count(5_000));
}

#[test]
fn msr_chosen_msr_writes() {
    let mut spec = ScenarioSpec::new(Scenario::Msr).count(2_000);
    spec.msr = 0x8b; // IA32_BIOS_SIGN_ID: writes are accepted and ignored
    assert_ground_truth(spec);
}

#[test]
fn timer_storm_rearms_from_its_own_interrupt() {
    assert_ground_truth(ScenarioSpec::new(Scenario::TimerStorm).count(1_000));
}

#[test]
fn hlt_cycles_wake_on_the_timer() {
    assert_ground_truth(ScenarioSpec::new(Scenario::Hlt).count(500));
}

#[test]
fn pagefault_first_touches() {
    assert_ground_truth(ScenarioSpec::new(Scenario::Pagefault).count(2_000));
}

#[test]
fn cr3_five_roots_miss_the_root_cache() {
    let mut spec = ScenarioSpec::new(Scenario::Cr3).count(2_000);
    spec.roots = 5;
    assert_ground_truth(spec);
}

#[test]
fn cr3_four_roots_hit_the_root_cache() {
    let mut spec = ScenarioSpec::new(Scenario::Cr3).count(2_000);
    spec.roots = 4;
    assert_ground_truth(spec);
}

#[test]
fn cpuid_exits() {
    assert_ground_truth(ScenarioSpec::new(Scenario::Cpuid).count(5_000));
}

#[test]
fn ipi_ping_pong() {
    assert_ground_truth(ScenarioSpec::new(Scenario::Ipi).count(500));
}

#[test]
fn idle_is_quiet() {
    assert_ground_truth(
        ScenarioSpec::new(Scenario::Idle).duration(std::time::Duration::from_millis(300)),
    );
}

#[test]
fn compute_never_exits() {
    assert_ground_truth(ScenarioSpec::new(Scenario::Compute).count(50_000_000));
}

/// `run_with` hands out the vCPU tids before any guest instruction runs: a kernel filter on
/// those tids, set in the callback, sees every OUT and nothing else.
#[test]
fn run_with_reports_tids_before_the_guest_runs() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let Some(root) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    let inst = kvmscope_capture::tracefs::Instance::create(&root, "labtest").expect("instance");
    inst.set_buffer_size_kb(1024).expect("buffer");
    let spec = ScenarioSpec::new(Scenario::Pio).count(2_000).vcpus(2);
    let outcome = kvmscope_lab::run_with(&spec, |t| {
        let tids: Vec<String> = t
            .vcpu_tids
            .iter()
            .map(|tid| format!("common_pid == {tid}"))
            .collect();
        let filter = format!("({}) && port == 0x3f8", tids.join(" || "));
        inst.set_filter("kvm", "kvm_pio", &filter).expect("filter");
        inst.enable("kvm", "kvm_pio").expect("enable");
    })
    .expect("pio runs");
    inst.set_tracing_on(false).expect("off");
    let bytes = std::fs::read(inst.path().join("trace")).expect("trace");
    let text = String::from_utf8_lossy(&bytes);
    let n = text.lines().filter(|l| l.contains(" kvm_pio: ")).count();
    assert_eq!(n, 4_000, "kernel-filtered kvm_pio lines");
    assert_eq!(outcome.vcpu_tids.len(), 2);
    assert_eq!(outcome.pid, std::process::id() as i32);
}

#[test]
fn pio_at_cpl0_still_gives_exact_kvm_pio() {
    let mut spec = ScenarioSpec::new(Scenario::Pio).count(2_000);
    spec.cpl = Some(kvmscope_lab::Privilege::Cpl0);
    assert_ground_truth(spec);
}

/// On PVM CPUID at CPL3 is not intercepted (it runs natively); VMX/SVM intercept it always.
/// The promise says which host shows what, and this checks the one that applies here.
#[test]
fn cpuid_at_cpl3_depends_on_the_host() {
    let mut spec = ScenarioSpec::new(Scenario::Cpuid).count(2_000);
    spec.cpl = Some(kvmscope_lab::Privilege::Cpl3);
    assert_ground_truth(spec);
}

#[test]
fn cpl_override_is_refused_where_the_action_needs_one_level() {
    let mut spec = ScenarioSpec::new(Scenario::Msr);
    spec.cpl = Some(kvmscope_lab::Privilege::Cpl3);
    let e = kvmscope_lab::run(&spec).unwrap_err();
    assert!(e.to_string().contains("need CPL0"), "{e}");
}
