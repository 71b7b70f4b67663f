//! `kvmscope lab` from the command line: list, run with text and JSON output, and one-line
//! errors for a bad scenario, a missing /dev/kvm and a /dev/kvm the user may not open.

use std::process::{Command, Output};

fn kvmscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kvmscope"))
}

fn run(args: &[&str]) -> Output {
    kvmscope().args(args).output().expect("run kvmscope")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Error output must be exactly one line, no panic.
fn assert_one_line_error(o: &Output, needle: &str) {
    assert!(!o.status.success(), "expected failure: {}", stdout(o));
    let e = stderr(o);
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e:?}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.contains(needle), "{needle:?} not in {e:?}");
}

#[test]
fn list_names_every_scenario() {
    let o = run(&["lab", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for name in [
        "pio",
        "mmio",
        "msr",
        "timer-storm",
        "hlt",
        "pagefault",
        "cr3",
        "cpuid",
        "ipi",
        "idle",
        "compute",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{text}"
        );
    }
    let o = run(&["lab", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(11));
    assert_eq!(v[0]["name"], "pio");
    assert_eq!(v[0]["privilege"], "cpl3");
}

#[test]
fn unknown_scenario_is_one_line_with_the_choices() {
    let o = run(&["lab", "run", "nosuch"]);
    assert_one_line_error(&o, "unknown scenario `nosuch`");
    assert!(stderr(&o).contains("timer-storm"));
    let o = run(&["lab", "run", "idle", "--count", "5"]);
    assert_one_line_error(&o, "use --duration");
}

#[test]
fn run_pio_json_has_ground_truth_rate_and_stats() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let o = run(&["lab", "run", "pio", "--count", "2000", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["ops"], 2000);
    assert!(v["ops_per_sec"].as_f64().is_some_and(|r| r > 0.0));
    let pio = v["ground_truth"]["expectations"]
        .as_array()
        .expect("expectations")
        .iter()
        .find(|e| e["event"] == "kvm_pio")
        .expect("kvm_pio promised");
    assert_eq!(pio["filter"], "rw == 1 && port == 0x3f8");
    assert_eq!(pio["count"]["min"], 2000);
    assert_eq!(pio["count"]["max"], 2000);
    assert_eq!(v["vcpu_tids"].as_array().map(Vec::len), Some(1));
    if v["stats_before"].is_object() {
        let checks = v["stat_checks"].as_array().expect("stat checks");
        assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
        let exits = v["stats_after"]["vcpus"][0]["stats"]
            .as_array()
            .expect("vcpu stats")
            .iter()
            .find(|s| s[0]["name"] == "exits")
            .map(|s| s[1][0].as_u64().unwrap_or(0));
        assert!(exits.is_some_and(|n| n >= 2000), "exits {exits:?}");
    }
}

#[test]
fn run_text_shows_truth_rate_and_stat_deltas() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let o = run(&["lab", "run", "cr3", "--count", "500", "--roots", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = stdout(&o);
    assert!(t.contains("ground truth"), "{t}");
    assert!(t.contains("kvmmmu:kvm_mmu_get_page"), "{t}");
    assert!(t.contains("ops/s"), "{t}");
    assert!(t.contains("KVM binary stats"), "{t}");
}

#[test]
fn no_permission_on_dev_kvm_is_one_line_with_the_fix() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    // Only root can drop to `nobody` here.
    let is_root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let kvm_world_rw = std::fs::metadata("/dev/kvm")
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o006 == 0o006)
        .unwrap_or(true);
    if !is_root || kvm_world_rw || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: needs root, setpriv, and a /dev/kvm that `nobody` cannot open");
        return;
    }
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_kvmscope"))
        .args(["lab", "run", "pio", "--count", "10"])
        .output()
        .expect("setpriv");
    if stderr(&o).starts_with("setpriv:") {
        eprintln!(
            "SKIPPED: `nobody` cannot execute the test binary here: {}",
            stderr(&o)
        );
        return;
    }
    assert_one_line_error(&o, "permission denied");
    assert!(stderr(&o).contains("kvm` group"), "{}", stderr(&o));
}

#[test]
fn missing_dev_kvm_is_one_line_with_the_fix() {
    // A private mount namespace with an empty /dev: /dev/kvm does not exist there.
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none /dev && exec {} lab run pio --count 10",
            env!("CARGO_BIN_EXE_kvmscope")
        ))
        .output();
    let Ok(o) = o else {
        eprintln!("SKIPPED: unshare not available");
        return;
    };
    let e = stderr(&o);
    if e.contains("unshare:") || e.contains("mount:") {
        eprintln!("SKIPPED: cannot make a private mount namespace here: {e}");
        return;
    }
    assert_one_line_error(&o, "/dev/kvm does not exist");
    assert!(e.contains("modprobe"), "{e}");
}

#[test]
fn verify_traces_the_run_and_compares_with_the_ground_truth() {
    if !kvmscope_capture::host::require_kvm() || kvmscope_capture::host::require_tracefs().is_none()
    {
        return;
    }
    let o = run(&[
        "lab", "run", "mmio", "--count", "1000", "--vcpus", "2", "--verify", "--json",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let checks = v["verify"].as_array().expect("verify");
    assert!(!checks.is_empty());
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    let mmio = checks
        .iter()
        .find(|c| c["event"] == "kvm_mmio")
        .expect("kvm_mmio checked");
    assert_eq!(mmio["seen"], 2000);
    let o = run(&[
        "lab", "run", "cr3", "--count", "100", "--roots", "4", "--verify",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("SEEN"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("DIFF"), "{}", stdout(&o));
}

#[test]
fn arm64_hosts_take_their_own_scenarios_and_refuse_others_before_booting() {
    let o = run(&["lab", "run", "pio", "--host", "arm64"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("unknown arm64 scenario `pio`") && e.contains("timer-storm"),
        "{e}"
    );
    let o = run(&["lab", "matrix", "--host", "arm64,svm"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("matrix of their own"), "{}", stderr(&o));
    let o = run(&["lab", "list"]);
    let text = stdout(&o);
    for name in ["wfx", "isolation-tm0"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{text}"
        );
    }
}
