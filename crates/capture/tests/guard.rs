//! The process guard removes this process's tracefs instances on panic and on signals.
//! Each case runs in a child process (this test binary re-run with one test selected and
//! KVMSCOPE_GUARD_CHILD set), because a guard is per process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kvmscope_capture::guard::{self, OnSignal};
use kvmscope_capture::tracefs::{owner_pid, Instance};

const CHILD: &str = "KVMSCOPE_GUARD_CHILD";

fn instances_of(root: &Path, pid: u32) -> Vec<String> {
    std::fs::read_dir(root.join("instances"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| owner_pid(n) == Some(pid as i32))
        .collect()
}

/// The child side: set up an instance under the guard, then do what the parent asked.
#[test]
fn child_entry() {
    let Ok(what) = std::env::var(CHILD) else {
        return;
    };
    let root = kvmscope_capture::host::tracefs().unwrap();
    let mode = if what == "stop" {
        OnSignal::Stop {
            grace: Duration::from_millis(300),
        }
    } else {
        OnSignal::Exit
    };
    guard::install(&root, mode).unwrap();
    let inst = Instance::create(&root, "guardtest").unwrap();
    inst.enable("sched", "sched_switch").unwrap();
    println!("READY");
    match what.as_str() {
        "panic" => panic!("deliberate panic with a live instance"),
        // A panic on another thread: no Drop of the instance runs, only the panic hook.
        "panic-thread" => {
            // Wait for the parent to have seen the instance.
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            let _ = std::thread::spawn(|| panic!("deliberate panic on a worker thread")).join();
            loop {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Wait to be signalled; "stop" ignores the stop request so the grace period ends it.
        _ => loop {
            std::thread::sleep(Duration::from_millis(50));
        },
    }
}

fn run_child(what: &str, signal: Option<&str>) -> std::process::ExitStatus {
    let root = match kvmscope_capture::host::require_tracefs() {
        Some(r) => r,
        None => return std::process::ExitStatus::default(),
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD, what)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    if let Some(sig) = signal {
        while instances_of(&root, pid).is_empty() {
            assert!(
                Instant::now() < deadline,
                "child never created its instance"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let status = child.wait().unwrap();
    assert!(
        instances_of(&root, pid).is_empty(),
        "{what}/{signal:?}: the child's instance was left behind"
    );
    status
}

#[test]
fn panic_removes_the_instance() {
    let st = run_child("panic", None);
    assert!(!st.success());
}

#[test]
fn panic_on_another_thread_removes_the_instance_through_the_hook() {
    let Some(root) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD, "panic-thread")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The instance appears; after the panic the hook removes it while the process lives on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while instances_of(&root, pid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "child never created its instance"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    use std::io::Write;
    writeln!(child.stdin.take().unwrap()).unwrap();
    while !instances_of(&root, pid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "instance not removed after the panic"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process is still running"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_in_exit_mode_removes_the_instance_and_exits_143() {
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    let st = run_child("exit", Some("-TERM"));
    assert_eq!(st.code(), Some(128 + 15));
}

#[test]
fn sighup_in_exit_mode() {
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    let st = run_child("exit", Some("-HUP"));
    assert_eq!(st.code(), Some(128 + 1));
}

#[test]
fn unanswered_stop_request_ends_after_the_grace_period() {
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    let st = run_child("stop", Some("-INT"));
    assert_eq!(st.code(), Some(128 + 2));
}
