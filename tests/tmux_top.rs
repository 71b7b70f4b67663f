//! `kvmscope top` in a real terminal: tmux runs it in a shell, the test presses keys
//! (x, p, o, q), reads the screen with capture-pane, and checks that the terminal is sane
//! (`stty -a` shows echo and icanon) after `q` and after SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(test: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            if kvmscope_capture::host::required_by_env() {
                panic!("tmux is required (KVMSCOPE_REQUIRE_KVM=1) but not installed");
            }
            eprintln!("SKIPPED: tmux is not installed");
            return None;
        }
        let socket = format!("kvmscope-top-{test}-{}", std::process::id());
        let t = Tmux { socket };
        let ok = t
            .cmd(&[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "top",
                "-x",
                "100",
                "-y",
                "40",
            ])
            .arg("env")
            .args(["PS1=$ ", "TERM=xterm-256color", "sh"])
            .status()
            .expect("tmux new-session")
            .success();
        assert!(ok, "tmux new-session failed");
        Some(t)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-L").arg(&self.socket).args(args);
        c
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status().expect("send-keys").success());
    }

    fn line(&self, text: &str) {
        self.keys(&["-l", text]);
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "top"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `ok` (no timing assumption: the limit only stops a
    /// broken run from hanging forever).
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(120) {
                panic!("screen never showed {what}:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}

fn sane(stty: &str) -> bool {
    let words: Vec<&str> = stty.split_whitespace().collect();
    words.contains(&"echo") && words.contains(&"icanon") && !words.contains(&"-echo")
}

fn check_stty(t: &Tmux, marker: &str) {
    t.line(&format!("stty -a; echo {marker}"));
    let s = t.wait_for(marker, |s| s.lines().any(|l| l.trim() == marker));
    assert!(sane(&s), "terminal not restored (stty -a):\n{s}");
}

#[test]
fn keys_screens_and_terminal_restored() {
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    let Some(t) = Tmux::start("keys") else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_kvmscope");
    t.wait_for("the shell prompt", |s| s.contains('$'));
    t.line(&format!("{bin} top --interval 300ms; echo TOP-EXIT-$?"));
    let s = t.wait_for("the title", |s| s.contains("kvm statistics - summary"));
    assert!(
        s.contains(" Event ") && s.contains("CurAvg/s") && s.contains(" Total"),
        "{s}"
    );
    assert!(s.contains("drill-down off"), "{s}");

    t.keys(&["x"]);
    t.wait_for("drill-down on", |s| s.contains("drill-down on"));
    t.keys(&["p"]);
    t.wait_for("the guest prompt", |s| {
        s.contains("Show guest (name or PID")
    });
    t.keys(&["Escape"]);
    t.wait_for("the prompt closed", |s| !s.contains("Show guest"));
    t.keys(&["o"]);
    let s = t.wait_for("sort by Total", |s| s.contains("sort Total"));
    assert!(s.contains("kvm_"), "kvm events listed:\n{s}");
    t.keys(&["h"]);
    t.wait_for("the help screen", |s| {
        s.contains("kvmscope top - keys") && s.contains("toggle drill-down")
    });
    t.keys(&["q"]);
    t.wait_for("back to events", |s| s.contains("kvm statistics - summary"));
    t.keys(&["v"]);
    t.wait_for("the per-CPU view", |s| {
        s.contains("per CPU") && s.contains("cpu 0")
    });
    t.keys(&["q"]);
    t.keys(&["q"]);
    let s = t.wait_for("exit status", |s| {
        s.lines().any(|l| l.starts_with("TOP-EXIT-"))
    });
    assert!(
        s.lines().any(|l| l.trim() == "TOP-EXIT-0"),
        "top failed:\n{s}"
    );
    check_stty(&t, "STTY-AFTER-Q");

    // SIGTERM: the pid is written by the shell that execs top.
    let pidfile =
        std::env::temp_dir().join(format!("kvmscope-top-tmux-{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pidfile);
    t.line(&format!(
        "sh -c 'echo $$ > {}; exec {bin} top --interval 300ms'; echo TOP-TERM-$?",
        pidfile.display()
    ));
    t.wait_for("the title again", |s| {
        s.contains("kvm statistics - summary")
    });
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let _ = std::fs::remove_file(&pidfile);
    kvmscope_capture::guard::signal_process(pid as u32, 15).expect("SIGTERM to our top");
    let s = t.wait_for("exit after SIGTERM", |s| {
        s.lines().any(|l| l.starts_with("TOP-TERM-"))
    });
    assert!(
        s.lines().any(|l| l.trim() == "TOP-TERM-0"),
        "top did not stop cleanly on SIGTERM:\n{s}"
    );
    check_stty(&t, "STTY-AFTER-TERM");
}

/// The VM list (b) finds a running lab guest by its VM descriptor, Enter counts only its
/// threads, x shows its port row, v its vCPU thread.
#[test]
fn vm_list_per_vm_drilldown_and_vcpu_view() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    if kvmscope_capture::host::require_tracefs().is_none() {
        return;
    }
    let Some(t) = Tmux::start("vms") else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_kvmscope");
    struct Guest(std::process::Child);
    impl Drop for Guest {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guest = Guest(
        Command::new(bin)
            .args(["lab", "run", "pio", "--duration", "120s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start a lab guest"),
    );
    let pid = guest.0.id();
    // Wait until the guest holds its VM descriptor and runs its vCPU thread.
    let start = Instant::now();
    while !std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten().any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "kvmscope-vcpu0")
            })
        })
        .unwrap_or(false)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the lab guest never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t.wait_for("the shell prompt", |s| s.contains('$'));
    t.line(&format!("{bin} top --interval 300ms; echo TOP-EXIT-$?"));
    t.wait_for("the title", |s| s.contains("kvm statistics - summary"));
    t.keys(&["b"]);
    let row = format!(" {pid} ");
    let s = t.wait_for("the lab guest in the VM list", |s| {
        s.contains("kvm statistics - virtual machines") && s.contains(&row)
    });
    // Select the guest's line and count only its threads.
    let line = s
        .lines()
        .skip_while(|l| !l.contains("PID"))
        .skip(1)
        .position(|l| l.contains(&row))
        .expect("the guest's line");
    for _ in 0..line {
        t.keys(&["Down"]);
    }
    t.keys(&["Enter"]);
    let title = format!("kvm statistics - pid {pid} (kvmscope)");
    t.wait_for("the per-VM title", |s| s.contains(&title));
    t.keys(&["x"]);
    let s = t.wait_for("the port's drill-down row", |s| {
        s.contains("   kvm_pio(0x3f8)")
    });
    assert!(
        s.contains(" kvm_pio ") && s.contains("drill-down on"),
        "{s}"
    );
    t.keys(&["v"]);
    t.wait_for("the vCPU thread", |s| {
        s.contains("per vCPU thread") && s.contains("kvmscope-vcpu0")
    });
    t.keys(&["q"]);
    t.keys(&["q"]);
    let s = t.wait_for("exit status", |s| {
        s.lines().any(|l| l.starts_with("TOP-EXIT-"))
    });
    assert!(
        s.lines().any(|l| l.trim() == "TOP-EXIT-0"),
        "top failed:\n{s}"
    );
    drop(guest);
}
