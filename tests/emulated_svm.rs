//! The lab on real upstream KVM: AMD SVM hosts under QEMU's emulator, nested paging on and off
//! (`kvmscope lab matrix --host svm,svm-shadow`). One boot per host runs every scenario; the
//! tests check the ground truth, kvmscope's report of the recordings, and perf kvm stat's
//! report of the same runs. Skips with a printed reason where QEMU or apt is missing (CI
//! installs them and sets KVMSCOPE_REQUIRE_KVM=1, which turns skips into failures).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use support::emulator_here;

fn kvmscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kvmscope"))
}

/// Scenarios whose perf kvm stat report is compared (one per perf event kind, and hlt for a
/// mix of exits).
const PERF: &str = "pio,mmio,msr,hlt";

struct Matrix {
    hosts: Vec<Value>,
}

impl Matrix {
    /// Every scenario run of every host: (host flavour, scenario name, its JSON).
    fn scenarios(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.hosts.iter().flat_map(|h| {
            let host = h["host"]["flavour"].as_str().unwrap();
            let runs = h["scenarios"].as_array().unwrap();
            runs.iter()
                .map(move |s| (host, s["scenario"].as_str().unwrap(), s))
        })
    }
}

fn matrix() -> Option<&'static Matrix> {
    static M: OnceLock<Option<Matrix>> = OnceLock::new();
    M.get_or_init(|| {
        if !emulator_here() {
            return None;
        }
        let dir = support::shared_out_dir("emulated_svm-matrix");
        let out = kvmscope()
            .args([
                "lab",
                "matrix",
                "--host",
                "svm,svm-shadow",
                "--count",
                "300",
                "--json",
                "--diagnose",
                "--lab-args",
                "hlt=--period 500us",
                // A deadline shorter than the emulated host takes to handle one: the guest
                // never halts between interrupts, so the storm does not depend on how loaded
                // the machine is (at 100 us a loaded run halted 181 of 300 times and fell
                // under both thresholds).
                "--lab-args",
                "timer-storm=--period 10us",
            ])
            .arg(format!("--perf={PERF}"))
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hosts: Vec<Value> = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("matrix JSON: {e}\nstderr:\n{stderr}"));
        Some(Matrix { hosts })
    })
    .as_ref()
}

fn report(trace: &Path, tids: &[u64]) -> Value {
    let tids: Vec<String> = tids.iter().map(|t| t.to_string()).collect();
    support::report_json(&[
        std::ffi::OsStr::new("--tid"),
        std::ffi::OsStr::new(&tids.join(",")),
        trace.as_os_str(),
    ])
}

#[test]
fn every_scenario_keeps_its_promises_on_svm_with_and_without_npt() {
    let Some(m) = matrix() else { return };
    assert_eq!(m.hosts.len(), 2);
    for h in &m.hosts {
        let host = h["host"]["flavour"].as_str().unwrap();
        assert!(h["host"]["kernel"]["release"]
            .as_str()
            .unwrap()
            .starts_with("6."));
        let scenarios = h["scenarios"].as_array().unwrap();
        assert_eq!(scenarios.len(), kvmscope_lab::Scenario::ALL.len(), "{host}");
        for s in scenarios {
            let name = s["scenario"].as_str().unwrap();
            assert_eq!(s["status"], 0, "{host} {name}: {}", s["error"]);
            let lab = &s["lab"];
            // Every promise that holds on this host held, and SVM's own promises are there.
            let mut svm_promises = 0;
            for v in lab["verify"].as_array().unwrap() {
                if v["applies_here"] == true {
                    assert_eq!(v["ok"], true, "{host} {name}: {v}");
                    svm_promises += usize::from(v["event"] == "kvm_exit");
                }
            }
            assert!(
                svm_promises >= 1,
                "{host} {name}: no kvm_exit promise applied"
            );
            assert_eq!(lab["host"], "svm");
        }
    }
}

#[test]
fn the_report_of_each_recording_shows_the_promised_exits_ports_msrs_and_gpas() {
    let Some(m) = matrix() else { return };
    let mut checked = 0;
    for (host, name, s) in m.scenarios() {
        let lab = &s["lab"];
        let tids = support::vcpu_tids(lab);
        let trace = PathBuf::from(s["trace"].as_str().unwrap());
        let r = report(&trace, &tids);
        assert_eq!(r["partial"], false, "{host} {name}");
        for v in lab["verify"].as_array().unwrap() {
            if v["applies_here"] != true {
                continue;
            }
            let event = v["event"].as_str().unwrap();
            if let Some(got) = support::reported(&r, event, v["filter"].as_str()) {
                let p = &v["promised"];
                assert!(
                    (p["min"].as_u64().unwrap()..=p["max"].as_u64().unwrap()).contains(&got),
                    "{host} {name}: the report of {} says {got} for {event} {}, the truth {p}",
                    trace.display(),
                    v["filter"]
                );
                checked += 1;
            }
        }
    }
    // Exit reasons, ports, MSRs, GPAs and userspace exits of every scenario on both hosts.
    assert!(
        checked >= 40,
        "only {checked} promises compared with the report"
    );
}

/// `trace-cmd report`'s text of each recording, as users paste it, reports what the
/// trace.dat reports: the exits by reason and the events by name.
#[test]
fn trace_cmd_text_of_each_recording_reports_as_the_trace_dat() {
    let Some(m) = matrix() else { return };
    if !kvmscope_capture::host::require_tool("trace-cmd", "apt-get install trace-cmd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (host, name, s) in m.scenarios() {
        let trace = PathBuf::from(s["trace"].as_str().unwrap());
        let out = Command::new("trace-cmd")
            .arg("report")
            .arg("-i")
            .arg(&trace)
            .output()
            .unwrap();
        assert!(out.status.success(), "trace-cmd report {}", trace.display());
        let text = dir.path().join(format!("{host}-{name}.txt"));
        std::fs::write(&text, &out.stdout).unwrap();
        let (from_text, from_dat) = (
            support::report_json(&[text.as_os_str()]),
            support::report_json(&[trace.as_os_str()]),
        );
        for part in [&["exits", "rows"][..], &["overview", "by_name"][..]] {
            let pick = |v: &Value| {
                let rows = part.iter().fold(v, |v, k| &v[k]).clone();
                // Latencies differ in the last digits: text has microseconds, the file ns.
                match rows {
                    Value::Array(rows) => rows
                        .into_iter()
                        .map(|r| match r.get("reason") {
                            Some(reason) => serde_json::json!([reason, r["count"]]),
                            None => r,
                        })
                        .collect::<Vec<_>>(),
                    // A missing section is not an empty one: it must not compare equal.
                    other => panic!("{host} {name}: {part:?} is {other}, not a list"),
                }
            };
            assert!(!pick(&from_dat).is_empty(), "{host} {name}: no {part:?}");
            assert_eq!(
                pick(&from_text),
                pick(&from_dat),
                "{host} {name}: {part:?} of trace-cmd's text vs of {}",
                trace.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} recordings compared");
}

#[test]
fn kvmscope_report_equals_perf_kvm_stat_report() {
    let Some(m) = matrix() else { return };
    if !kvmscope_capture::host::require_tool("perf", "apt-get install linux-perf") {
        return;
    }
    for (host, name, s) in m.scenarios() {
        let keys = s["perf"].as_array().unwrap();
        if !PERF.split(',').any(|p| p == name) {
            assert!(keys.is_empty());
            continue;
        }
        let kinds: Vec<&str> = keys.iter().map(|k| k["event"].as_str().unwrap()).collect();
        let want = match name {
            "pio" => "ioport",
            "mmio" => "mmio",
            _ => "msr",
        };
        assert!(
            kinds.contains(&"vmexit") && kinds.contains(&want),
            "{host} {name}: {kinds:?}"
        );
        for k in keys {
            let what = format!("{host} {name} {} {}: {k}", k["event"], k["key"]);
            assert_eq!(k["script_samples_equal"], true, "{what}");
            assert_eq!(k["script_times_equal"], true, "{what}");
            assert_eq!(k["trace_samples_equal"], true, "{what}");
        }
    }
}

/// The pathology each scenario reproduces, as diagnose names it, on each SVM host (`None`:
/// healthy there). With nested paging CR3 writes do not exit and there are no shadow roots to
/// churn. `hlt` asks for a timer every 500 us: the emulated host cannot deliver one every 2 ms
/// as PVM does (each arm-halt-wake round costs it about 3 ms), and gets 400-600 wake-ups a
/// second, a halt-wakeups pathology and not yet a timer storm. `ipi` is not checked here
/// (issue 12 covers IPI attribution).
fn pathology(scenario: &str, host: &str) -> Option<&'static str> {
    match scenario {
        "pagefault" => Some("fault-storm"),
        "pio" | "mmio" => Some("userspace-io"),
        "msr" | "timer-storm" => Some("timer-storm"),
        "hlt" => Some("halt-wakeups"),
        "cr3" if host == "svm-shadow" => Some("shadow-root-churn"),
        _ => None,
    }
}

#[test]
fn diagnose_names_each_pathology_first_on_svm_with_and_without_npt_and_idle_stays_quiet() {
    let Some(m) = matrix() else { return };
    let mut named = 0;
    for (host, name, s) in m.scenarios() {
        if name == "ipi" {
            continue;
        }
        let findings = s["diagnosis"]
            .as_array()
            .expect("--diagnose gives a diagnosis");
        let warned: Vec<&Value> = findings
            .iter()
            .filter(|f| f["severity"] != "info")
            .collect();
        match pathology(name, host) {
            Some(rule) => {
                let top = findings
                    .first()
                    .unwrap_or_else(|| panic!("{host} {name}: no finding, expected {rule}: {s:#}"));
                // hlt's wake-ups are driven by its own timer: when the emulated host is
                // loaded, the deadline writes alone take a tenth of the vCPU's time and
                // timer-storm leads, with halt-wakeups reported as its consequence (cause
                // over symptom, docs/rules.md). Either way both are named.
                let timer_caused_halts = name == "hlt"
                    && top["rule"] == "timer-storm"
                    && findings.iter().any(|f| f["rule"] == "halt-wakeups");
                if !timer_caused_halts {
                    assert_eq!(top["rule"], rule, "{host} {name}: {findings:#?}");
                }
                assert_ne!(top["severity"], "info", "{host} {name}: {findings:#?}");
                // Cost-driven rules grade by the share of vCPU time, which holds on a host
                // 100x slower: the title says it. The timer storms (`msr`, `timer-storm`
                // at a 10 us period) pass both thresholds here, and the finding is graded
                // by whichever is further past its own (which one depends on the machine's
                // load): either title is right for them.
                let title = top["title"].as_str().unwrap();
                if top["rule"] == "timer-storm" {
                    assert!(
                        title.contains("% of vCPU time") || title.contains("/s per vCPU"),
                        "{host} {name}: {title}"
                    );
                } else if top["rule"] != "halt-wakeups" {
                    assert!(title.contains("% of vCPU time"), "{host} {name}: {title}");
                }
                named += 1;
            }
            None => assert!(warned.is_empty(), "{host} {name}: {warned:#?}"),
        }
    }
    assert_eq!(named, 13, "pathologies named across both hosts");
}

#[test]
fn a_missing_emulator_is_named_with_its_install_command() {
    let out = kvmscope()
        .args([
            "lab", "run", "pio", "--count", "10", "--host", "svm", "--out",
        ])
        .arg(tempfile::tempdir().unwrap().path())
        .env("KVMSCOPE_QEMU", "/nonexistent/qemu-system-x86_64")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "/nonexistent/qemu-system-x86_64 is missing: install it with `apt-get install"
        ),
        "{err}"
    );
}

#[test]
fn a_guest_that_faults_inside_the_host_is_a_clear_error() {
    if !emulator_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // An MSR no CPU has: WRMSR raises #GP in the guest.
    let out = kvmscope()
        .args([
            "lab",
            "run",
            "msr",
            "--msr",
            "0x12345678",
            "--count",
            "10",
            "--host",
            "svm",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("inside the emulated svm host"), "{err}");
    assert!(err.contains("guest exception 13 (#GP)"), "{err}");
    assert!(dir.path().join("console.log").exists());
    assert_no_emulator_left(dir.path());
}

/// No QEMU started for `out` is still running.
fn assert_no_emulator_left(out: &Path) {
    let me = out.display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !(cmdline.contains("qemu-system") && cmdline.contains(&me)),
            "an emulator is left behind: {cmdline}"
        );
    }
}

fn host_config(limit_secs: u64) -> kvmscope_lab::emulated::HostConfig {
    use kvmscope_lab::emulated::{Flavour, HostConfig};
    let mut c = HostConfig::new(Flavour::Svm, env!("CARGO_BIN_EXE_kvmscope"));
    c.time_limit = std::time::Duration::from_secs(limit_secs);
    c.retries = 0;
    c
}

fn job(script: &str) -> kvmscope_lab::emulated::Job {
    kvmscope_lab::emulated::Job {
        name: "j".into(),
        script: script.into(),
    }
}

/// Runs one job that must fail on the emulated SVM host within `limit_secs`, with an error of
/// the kind `is_kind` accepts whose text says each of `says`; then no emulator process may be
/// left. `None` (skipped) where no emulator can run; else the run's directory.
fn fails_cleanly(
    limit_secs: u64,
    script: &str,
    is_kind: fn(&kvmscope_lab::LabError) -> bool,
    says: &[&str],
) -> Option<tempfile::TempDir> {
    if !emulator_here() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let err = kvmscope_lab::emulated::run(
        &host_config(limit_secs),
        &[job(script)],
        dir.path(),
        &mut |_| {},
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(is_kind(&err), "{text}");
    for s in says {
        assert!(text.contains(s), "{text}");
    }
    assert_no_emulator_left(dir.path());
    Some(dir)
}

#[test]
fn a_kernel_panic_is_reported_with_the_console_and_nothing_is_left() {
    let crashed = |e: &_| matches!(e, kvmscope_lab::LabError::HostCrashed { .. });
    let says = ["during job 1 of 1 (j)", "Kernel panic"];
    if let Some(dir) = fails_cleanly(600, "echo c > /proc/sysrq-trigger\n", crashed, &says) {
        assert!(dir.path().join("console.log").exists());
    }
}

#[test]
fn a_hung_host_is_stopped_at_its_time_limit() {
    let hung = |e: &_| matches!(e, kvmscope_lab::LabError::HostHung { .. });
    fails_cleanly(
        45,
        "echo waiting; sleep 3600\n",
        hung,
        &["did not finish within 45s"],
    );
}

/// `kvmscope top --debugfs` (kvm_stat -d) inside the emulated host, where debugfs is readable,
/// against the tracepoints of the same run: a pio guest whose VM is held after its work so
/// that debugfs still sums it when top reads.
#[test]
fn top_reads_kvm_debugfs_statistics_equal_to_the_tracepoint_counts() {
    if !emulator_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = "kvmscope top --debugfs --once -i 4s --json > top.json 2> top.err &\n\
                  sleep 0.5\n\
                  kvmscope record -q -e kvm -o trace.dat -- kvmscope lab run pio --count 1000 --hold 5s --save-json lab.json > /dev/null\n\
                  wait\n";
    let run =
        kvmscope_lab::emulated::run(&host_config(300), &[job(script)], dir.path(), &mut |_| {})
            .unwrap();
    let out = &run.jobs[0].dir;
    let read = |n: &str| std::fs::read_to_string(out.join(n)).unwrap_or_default();
    assert_eq!(
        run.jobs[0].status,
        0,
        "{}{}",
        read("stderr"),
        read("top.err")
    );
    let top: Value = serde_json::from_str(read("top.json").trim())
        .unwrap_or_else(|e| panic!("top.json: {e}: {}{}", read("top.json"), read("top.err")));
    assert_eq!(top["scope"], "summary (debugfs)");
    let stat = |name: &str| -> u64 {
        top["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {top:#}"))["total"]
            .as_u64()
            .unwrap()
    };
    let lab: Value = serde_json::from_str(&read("lab.json")).unwrap();
    let tids = support::vcpu_tids(&lab);
    let r = report(&out.join("trace.dat"), &tids);
    let exits = &r["exits"];
    let io = exits["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["reason"] == "io")
        .unwrap()["count"]
        .as_u64()
        .unwrap();
    assert!(io > 1000, "the guest's 1,000 OUTs and its done port: {io}");
    assert_eq!(stat("io_exits"), io, "debugfs io_exits vs kvm_exit(io)");
    assert_eq!(
        stat("exits"),
        exits["total"].as_u64().unwrap(),
        "debugfs exits vs kvm_exit"
    );
}
