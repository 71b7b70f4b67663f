//! Failures end cleanly: a clear error, no panic, every vCPU thread joined and every fd closed.
//! One test function, so that no other test's threads or fds blur the counts.

use std::time::Duration;

use kvmscope_lab::{LabError, Scenario, ScenarioSpec};

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// (fds, threads) once they stop changing: a joined thread can linger in /proc/self/task for
/// a moment after pthread_join returns (the kernel clears its tid before it is reaped).
fn settled(want: (usize, usize)) -> (usize, usize) {
    let mut now = (fds(), threads());
    for _ in 0..200 {
        if now == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        now = (fds(), threads());
    }
    now
}

#[test]
fn errors_are_clear_and_release_threads_and_fds() {
    // Invalid settings are refused before anything is created.
    let e = kvmscope_lab::run(&ScenarioSpec::new(Scenario::Idle).count(5)).unwrap_err();
    assert!(matches!(e, LabError::InvalidSpec(_)), "{e}");
    assert!(e.to_string().contains("--duration"), "{e}");
    let e = kvmscope_lab::run(&ScenarioSpec::new(Scenario::Ipi).vcpus(3)).unwrap_err();
    assert!(e.to_string().contains("exactly 2 vCPUs"), "{e}");

    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    // Warm up once so lazily created process-wide state (signal handler) is not counted.
    kvmscope_lab::run(&ScenarioSpec::new(Scenario::Pio).count(10)).expect("pio runs");
    let (fds0, threads0) = (fds(), threads());

    // A WRMSR the host refuses: the guest takes #GP, which the lab reports with its RIP.
    let mut spec = ScenarioSpec::new(Scenario::Msr).count(10);
    spec.msr = 0x4b56_4d99; // unused in KVM's paravirtual MSR range
    let e = kvmscope_lab::run(&spec).unwrap_err();
    match &e {
        LabError::GuestFault { vector, .. } => assert_eq!(*vector, 13, "{e}"),
        other => panic!("expected a #GP, got {other}"),
    }
    assert!(e.to_string().contains("#GP"), "{e}");
    assert_eq!(
        settled((fds0, threads0)),
        (fds0, threads0),
        "after a guest fault"
    );

    // A guest that never finishes: stopped at the timeout, on two vCPUs.
    let mut spec = ScenarioSpec::new(Scenario::Hlt).count(10).vcpus(2);
    spec.period = Duration::from_secs(3600);
    spec.timeout = Duration::from_millis(300);
    let e = kvmscope_lab::run(&spec).unwrap_err();
    assert!(matches!(e, LabError::Timeout(..)), "{e}");
    assert_eq!(
        settled((fds0, threads0)),
        (fds0, threads0),
        "after a timeout"
    );

    // A panicking `ready` callback releases the waiting vCPU threads and propagates.
    let r = std::panic::catch_unwind(|| {
        kvmscope_lab::run_with(&ScenarioSpec::new(Scenario::Pio).count(10).vcpus(2), |_| {
            panic!("tracer setup failed")
        })
    });
    assert!(r.is_err(), "the callback's panic propagates");
    assert_eq!(
        settled((fds0, threads0)),
        (fds0, threads0),
        "after a panicking callback"
    );

    // Duration mode stops sleeping vCPUs with a signal, and counts what they did.
    let o = kvmscope_lab::run(
        &ScenarioSpec::new(Scenario::Idle)
            .duration(Duration::from_millis(100))
            .vcpus(3),
    )
    .expect("idle runs");
    assert_eq!(o.vcpu_tids.len(), 3);
    assert_eq!(o.ops, 0);
    assert_eq!(
        settled((fds0, threads0)),
        (fds0, threads0),
        "after a duration run"
    );

    // Duration mode on a busy guest: ops counted from the guest's own counter.
    let o =
        kvmscope_lab::run(&ScenarioSpec::new(Scenario::Cpuid).duration(Duration::from_millis(200)))
            .expect("cpuid runs");
    assert!(o.ops > 0, "cpuid did nothing in 200 ms");
    assert_eq!(o.ground_truth.ops, o.ops);
    assert_eq!(
        settled((fds0, threads0)),
        (fds0, threads0),
        "after a busy duration run"
    );
}
