//! Step 1 acceptance: perf_event_open tracepoint counters, attached to a lab guest's vCPU
//! threads, count exactly what the guest did (against the real kernel).

use kvmscope_capture::counters::{CounterSet, CounterSpec, Target};
use kvmscope_lab::{run_with, Scenario, ScenarioSpec, DONE_PORT};

#[test]
fn per_thread_counters_count_every_port_write() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let Some(tracefs) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    const N: u64 = 3_000;
    let specs = vec![
        CounterSpec::new("kvm", "kvm_pio"),
        CounterSpec::filtered("kvm", "kvm_pio", "port == 0x3f8"),
        CounterSpec::filtered("kvm", "kvm_pio", format!("port == {DONE_PORT:#x}")),
        CounterSpec::filtered("kvm", "kvm_userspace_exit", "reason == 2"),
        CounterSpec::new("kvm", "kvm_msr"),
    ];
    let mut set = None;
    let outcome = run_with(&ScenarioSpec::new(Scenario::Pio).count(N), |threads| {
        let targets: Vec<Target> = threads
            .vcpu_tids
            .iter()
            .map(|&t| Target::Thread(t))
            .collect();
        let mut s = CounterSet::open(&tracefs, &specs, &targets).expect("open counters");
        assert_eq!(s.read().expect("first read"), vec![0; specs.len()]);
        set = Some(s);
    })
    .expect("lab run");
    assert_eq!(outcome.ops, N);
    // The vCPU threads have exited: their counters still give the final counts.
    let counts = set.expect("counters were opened").read().expect("read");
    let done = counts[2];
    assert_eq!(counts[1], N, "kvm_pio with port == 0x3f8: {counts:?}");
    assert_eq!(done, 1, "one write to the lab's done port: {counts:?}");
    assert_eq!(counts[0], N + done, "kvm_pio: {counts:?}");
    assert_eq!(counts[3], N + done, "kvm_userspace_exit(IO): {counts:?}");
    assert_eq!(counts[4], 0, "no MSR access: {counts:?}");
}

#[test]
fn per_cpu_counters_see_the_guest_too() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let Some(tracefs) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    const N: u64 = 2_000;
    // A port no other test uses, so that system-wide counts are ours alone.
    const PORT: u16 = 0x2e9;
    let cpus = kvmscope_capture::counters::online_cpus().expect("cpus");
    let targets: Vec<Target> = cpus.iter().map(|&c| Target::Cpu(c)).collect();
    let specs = [CounterSpec::filtered(
        "kvm",
        "kvm_pio",
        format!("port == {PORT:#x}"),
    )];
    let mut set = None;
    let mut spec = ScenarioSpec::new(Scenario::Pio).count(N);
    spec.port = PORT;
    run_with(&spec, |_| {
        let s = CounterSet::open(&tracefs, &specs, &targets).expect("open counters");
        set = Some(s);
    })
    .expect("lab run");
    let mut set = set.expect("opened");
    assert_eq!(set.len(), cpus.len());
    assert_eq!(set.read().expect("read"), vec![N]);
    let each = set.read_each().expect("read each");
    assert_eq!(each.iter().map(|(_, c)| c[0]).sum::<u64>(), N);
}

#[test]
fn a_bad_filter_is_reported_with_the_event() {
    let Some(tracefs) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    let me = std::process::id() as i32;
    let specs = [CounterSpec::filtered(
        "kvm",
        "kvm_pio",
        "no_such_field == 1",
    )];
    match CounterSet::open(&tracefs, &specs, &[Target::Thread(me)]) {
        Err(e) => {
            let s = e.to_string();
            assert!(
                s.contains("no_such_field") && s.contains("kvm:kvm_pio"),
                "{s}"
            );
        }
        Ok(_) => panic!("the kernel accepted a filter on a field that does not exist"),
    }
}

/// A filtered counter opened while its event fires counts nothing before its filter is set
/// (counters open disabled and are enabled after SET_FILTER).
#[test]
fn counters_opened_on_a_running_guest_count_only_what_matches() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let Some(tracefs) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    // 40 filters that never match this guest's OUTs (to 0x3f8), opened mid-run.
    let mut specs = vec![CounterSpec::new("kvm", "kvm_pio")];
    for p in 0x1200..0x1228u32 {
        specs.push(CounterSpec::filtered(
            "kvm",
            "kvm_pio",
            format!("port == {p:#x}"),
        ));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let spec = ScenarioSpec::new(Scenario::Pio).duration(std::time::Duration::from_millis(1500));
    let mut opener = None;
    run_with(&spec, |threads| {
        let tids = threads.vcpu_tids.clone();
        let tracefs = tracefs.clone();
        let specs = specs.clone();
        let tx = tx.clone();
        opener = Some(std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let targets: Vec<Target> = tids.iter().map(|&t| Target::Thread(t)).collect();
            let mut set = CounterSet::open(&tracefs, &specs, &targets).expect("open");
            std::thread::sleep(std::time::Duration::from_millis(500));
            tx.send(set.read().expect("read")).expect("send");
        }));
    })
    .expect("lab run");
    opener.expect("spawned").join().expect("opener");
    let counts = rx.recv().expect("counts");
    assert!(counts[0] > 0, "the guest was running: {counts:?}");
    assert!(counts[1..].iter().all(|&c| c == 0), "{counts:?}");
}
