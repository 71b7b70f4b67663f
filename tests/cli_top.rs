//! `kvmscope top` batch modes, end to end against the real kernel: a lab guest in this test
//! process does N port writes during one interval of `top --once --pid <this process>`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use kvmscope_lab::{run_with, Scenario, ScenarioSpec, DONE_PORT};

/// Guests of this test binary run one at a time: `--pid` counts every thread of this process.
static GUEST: Mutex<()> = Mutex::new(());

fn top(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kvmscope"));
    c.arg("top").args(args);
    c
}

/// Starts `top` and waits until it says its counters are open.
fn start_counting(args: &[&str]) -> (Child, Vec<String>) {
    let mut child = top(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kvmscope top");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(l)) => {
                let ready = l.contains("counting");
                seen.push(l);
                if ready {
                    break;
                }
            }
            _ => {
                let mut out = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                let _ = child.wait();
                panic!("top ended before counting: {seen:?} {out}");
            }
        }
    }
    // Keep draining stderr so that top never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (child, seen)
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().expect("wait for top");
    assert!(out.status.success(), "top failed: {:?}", out.status);
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs a pio guest of `n` writes to `port` in this process while `top args` counts.
fn guest_under_top(n: u64, port: u16, args: &[&str]) -> String {
    let _one = GUEST.lock().unwrap_or_else(|p| p.into_inner());
    let me = std::process::id().to_string();
    let mut full = vec!["--pid", me.as_str()];
    full.extend_from_slice(args);
    let mut spec = ScenarioSpec::new(Scenario::Pio).count(n);
    spec.port = port;
    let mut child = None;
    let outcome = run_with(&spec, |_threads| {
        // The vCPU thread exists now: top attaches to it before the guest runs.
        child = Some(start_counting(&full).0);
    })
    .expect("lab run");
    assert_eq!(outcome.ops, n);
    finish(child.expect("top started"))
}

fn value_of(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn once_reports_every_port_write_and_the_port_row() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    const N: u64 = 5_000;
    let out = guest_under_top(N, 0x3f8, &["--once", "-x", "--interval", "4s", "-z"]);
    assert!(out.starts_with("kvm statistics - pid "), "{out}");
    assert!(
        out.contains(" Event                                         Total %Total CurAvg/s"),
        "{out}"
    );
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{out}"))
            .to_string()
    };
    // N writes to 0x3f8 plus the lab's one write to its done port.
    let pio = value_of(&line("kvm_pio"));
    assert_eq!(pio[1], (N + 1).to_string(), "{out}");
    let child = line("kvm_pio(0x3f8)");
    assert!(
        child.starts_with("   kvm_pio(0x3f8)"),
        "child rows are indented: {child:?}"
    );
    assert_eq!(value_of(&child)[1], N.to_string(), "{out}");
    let exit_io = value_of(&line("kvm_userspace_exit(KVM_EXIT_IO)"));
    assert_eq!(exit_io[1], (N + 1).to_string(), "{out}");
    // -z: nothing that stayed at zero (this guest makes no MSR access).
    assert!(!out.contains(" kvm_msr "), "{out}");
    assert!(
        out.lines()
            .skip(3)
            .all(|l| value_of(l).get(1).is_some_and(|v| v != "0")),
        "{out}"
    );
    let _ = DONE_PORT;
}

#[test]
fn json_and_csv_once_count_the_guest() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    const N: u64 = 1_500;
    let out = guest_under_top(
        N,
        0x3f8,
        &["--once", "-x", "--json", "--interval", "3s", "-z"],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
    let ev = v["events"].as_array().expect("events");
    let find = |n: &str| ev.iter().find(|e| e["name"] == n).cloned();
    assert_eq!(find("kvm_pio").expect("kvm_pio")["total"], N + 1);
    let child = find("kvm_pio(0x3f8)").expect("child");
    assert_eq!(child["total"], N);
    assert_eq!(child["parent"], "kvm_pio");
    assert_eq!(v["mode"], "host");

    let out = guest_under_top(
        N,
        0x3f8,
        &["--once", "-x", "--csv", "--interval", "3s", "-z"],
    );
    assert!(
        out.starts_with("event,parent,total,pct_total,cur_avg_per_s\n"),
        "{out}"
    );
    assert!(out.contains(&format!("\nkvm_pio,,{},", N + 1)), "{out}");
    assert!(
        out.contains(&format!("\nkvm_pio(0x3f8),kvm_pio,{N},")),
        "{out}"
    );
}

#[test]
fn log_prints_a_banner_and_one_row_per_interval() {
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    let out = top(&[
        "--log",
        "--interval",
        "200ms",
        "--duration",
        "1s",
        "-f",
        "^kvm_(pio|msr)$",
    ])
    .output()
    .expect("run top");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("time ")
            && lines[0].contains("kvm_msr")
            && lines[0].contains("kvm_pio"),
        "{text}"
    );
    assert!(
        lines.len() >= 4,
        "one row per 200 ms interval for 1 s: {text}"
    );
    for l in &lines[1..] {
        assert!(
            l.contains('T') && l.contains('Z') && l.split_whitespace().count() == 3,
            "{l:?}"
        );
    }
}

#[test]
fn guest_mode_counts_this_machines_timers() {
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    let out = top(&["--guest", "--once", "--json", "--interval", "500ms"])
        .output()
        .expect("run top");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["mode"], "guest");
    let names: Vec<&str> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names.contains(&"write_msr(IA32_TSC_DEADLINE)"),
        "TSC-deadline writes have their own row: {names:?}"
    );
    for n in [
        "write_msr",
        "hrtimer_start",
        "hrtimer_expire_entry",
        "local_timer_entry",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
}

#[test]
fn errors_say_what_to_do() {
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    let out = top(&["--once", "-f", "^no_such_event$"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no event matches --fields"), "{err}");

    let out = top(&["--once", "--pid", "999999999"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no VM process matches"), "{err}");
}

#[test]
fn an_unprivileged_user_is_told_what_is_missing() {
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_kvmscope"))
        .args(["top", "--once", "--interval", "100ms"])
        .output();
    let Ok(out) = out else {
        eprintln!("SKIPPED: setpriv is not available");
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("setpriv:") {
        eprintln!("SKIPPED: setpriv cannot run the binary here: {err}");
        return;
    }
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not root and has no CAP_PERFMON"), "{err}");
    assert!(err.contains("perf_event_paranoid"), "{err}");
}

/// kvm_stat's failure on many-core hosts: more counters than the open-file limit allows.
#[test]
fn the_fd_limit_is_raised_or_the_user_is_told() {
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_kvmscope");
    let run = |ulimit: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{ulimit} 40 && exec \"$0\" top --once --interval 100ms --guest -x -z"
            ))
            .arg(bin)
            .output()
            .expect("sh")
    };
    // Soft limit low, hard limit high: raised, and said so.
    let out = run("ulimit -Sn");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("raised the open-file limit (RLIMIT_NOFILE) from 40 to"),
        "{err}"
    );
    // Hard limit low too: a clear error with the command that fixes it.
    let out = run("ulimit -n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("too few file descriptors") && err.contains("ulimit -n "),
        "{err}"
    );
}
