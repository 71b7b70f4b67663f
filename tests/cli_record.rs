//! `kvmscope record` against the real kernel: exact event counts from lab guests, trace-cmd
//! reading our files, our reader on trace-cmd's files, and cleanup after signals.
//!
//! These tests change tracing state (instances, and `trace-cmd extract` drains the top-level
//! buffer), so they run one at a time (SERIAL). Each lab guest uses its own I/O port, and
//! what is counted is filtered on that port.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kvmscope_capture::tracefs::Instance;
use kvmscope_tracedat::file::{count_events, FileAt, Merger, TraceDat};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn kvmscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kvmscope"))
}

fn have_trace_cmd() -> bool {
    kvmscope_capture::host::require_tool("trace-cmd", "apt-get install trace-cmd")
}

/// The global tracing state kvmscope must never change.
fn global_state(root: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for f in [
        "set_event",
        "tracing_on",
        "buffer_size_kb",
        "current_tracer",
        "trace_clock",
    ] {
        let v = kvmscope_capture::tracefs::read_file(&root.join(f)).unwrap_or_default();
        m.insert(f.to_string(), v);
    }
    m
}

fn instances_of(root: &Path, pid: u32) -> Vec<String> {
    std::fs::read_dir(root.join("instances"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| kvmscope_capture::tracefs::owner_pid(n) == Some(pid as i32))
        .collect()
}

/// Waits until the recorder child has its instance set up and recording.
fn wait_recording(root: &Path, child: &mut Child) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("kvmscope record exited early: {st}");
        }
        if let Some(name) = instances_of(root, child.id()).first() {
            let dir = root.join("instances").join(name);
            // A new instance starts with tracing_on = 1; kvmscope turns it off, enables the
            // events, then turns it on: events enabled + on means recording.
            let on = std::fs::read_to_string(dir.join("tracing_on")).unwrap_or_default();
            let enabled = std::fs::read_to_string(dir.join("set_event")).unwrap_or_default();
            if on.trim() == "1" && !enabled.trim().is_empty() {
                return dir;
            }
        }
        assert!(Instant::now() < deadline, "recording never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn run_pio(port: u16, count: u64) {
    let mut spec = kvmscope_lab::ScenarioSpec::new(kvmscope_lab::Scenario::Pio).count(count);
    spec.port = port;
    let out = kvmscope_lab::run(&spec).expect("lab pio guest");
    assert_eq!(out.ops, count);
}

/// kvm_pio records of `port` in a trace.dat, as `(rw, port, size, count, val)` in time order.
fn pio_records(path: &Path, port: u16) -> Vec<(u64, u64, u64, u64, u64)> {
    let f = FileAt::open(path).unwrap();
    let td = TraceDat::parse(&f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fmt = td
        .formats
        .by_name("kvm", "kvm_pio")
        .expect("kvm_pio format")
        .clone();
    let mut out = Vec::new();
    for b in td.data_buffers() {
        let mut m = Merger::new(&td, b, &f).unwrap();
        while let Some(r) = m.next_record().unwrap() {
            if r.id != fmt.id {
                continue;
            }
            let g = |n| fmt.u64(r.data, n).unwrap();
            if g("port") == port as u64 {
                out.push((g("rw"), g("port"), g("size"), g("count"), g("val")));
            }
        }
    }
    out
}

/// The same, from `trace-cmd report` text.
fn trace_cmd_pio(path: &Path, port: u16) -> Vec<(u64, u64, u64, u64, u64)> {
    let out = Command::new("trace-cmd")
        .args(["report", "-i"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trace-cmd report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut v = Vec::new();
    for line in text.lines().filter(|l| l.contains(" kvm_pio:")) {
        // "... kvm_pio: pio_write at 0x2f8 size 1 count 1 val 0x0 "
        let rest = line.split(" kvm_pio:").nth(1).unwrap().trim();
        let w: Vec<&str> = rest.split_whitespace().collect();
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
        let rec = (
            u64::from(w[0] == "pio_write"),
            hex(w[2]),
            w[4].parse().unwrap(),
            w[6].parse().unwrap(),
            hex(w[8]),
        );
        if rec.1 == port as u64 {
            v.push(rec);
        }
    }
    v
}

#[test]
fn record_counts_exactly_the_guest_outs_and_trace_cmd_agrees() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let Some(root) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    let _s = serial();
    let before = global_state(&root);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pio.dat");
    const PORT: u16 = 0x2f8;
    const N: u64 = 2000;
    let mut child = kvmscope()
        .args([
            "record",
            "--quiet",
            "--json",
            "--events",
            "kvm:kvm_pio,kvm:kvm_userspace_exit",
        ])
        .args(["--filter", &format!("kvm:kvm_pio:port == {PORT:#x}")])
        .arg("-o")
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_recording(&root, &mut child);
    let pid = child.id();
    run_pio(PORT, N);
    signal(&child, "-INT");
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["by_event"]["kvm:kvm_pio"], N, "{summary:#}");
    assert_eq!(
        summary["lost_events_per_cpu"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        0
    );

    // Our reader, on our file.
    let ours = pio_records(&out, PORT);
    assert_eq!(ours.len() as u64, N);
    assert!(ours.iter().all(|r| r.0 == 1 && r.1 == PORT as u64));
    // The sidecar is there, with the system snapshot.
    let f = FileAt::open(&out).unwrap();
    let td = TraceDat::parse(&f).unwrap();
    let side: serde_json::Value = serde_json::from_str(td.kvmscope_json().unwrap()).unwrap();
    assert_eq!(side["format"], "kvmscope-sidecar");
    assert!(side["system"]["kernel_release"].is_string(), "{side}");
    assert!(side["lost_events"].is_array());

    // trace-cmd lists the same events with the same fields.
    if have_trace_cmd() {
        assert_eq!(trace_cmd_pio(&out, PORT), ours);
    }
    assert!(instances_of(&root, pid).is_empty());
    assert_eq!(global_state(&root), before);
}

#[test]
fn we_read_trace_cmd_extract_files_v7_zstd_and_v6() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let Some(root) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    if !have_trace_cmd() {
        return;
    }
    let _s = serial();
    const PORT: u16 = 0x2e8;
    const N: u64 = 1500;
    let inst = Instance::create(&root, "test").unwrap();
    inst.set_filter("kvm", "kvm_pio", &format!("port == {PORT:#x}"))
        .unwrap();
    inst.enable("kvm", "kvm_pio").unwrap();
    run_pio(PORT, N);
    inst.set_tracing_on(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v7 = dir.path().join("extract-v7.dat");
    let st = Command::new("trace-cmd")
        .args(["extract", "-B", inst.name(), "-o"])
        .arg(&v7)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    drop(inst); // trace-cmd extract may already have removed it
    let f = FileAt::open(&v7).unwrap();
    let td = TraceDat::parse(&f).unwrap();
    assert_eq!(td.version, 7);
    assert_eq!(td.compression.as_deref(), Some("zstd"));
    assert_eq!(pio_records(&v7, PORT).len() as u64, N);
    assert_eq!(trace_cmd_pio(&v7, PORT), pio_records(&v7, PORT));

    let v6 = dir.path().join("extract-v6.dat");
    let st = Command::new("trace-cmd")
        .args(["convert", "--file-version", "6", "-i"])
        .arg(&v7)
        .arg("-o")
        .arg(&v6)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let f6 = FileAt::open(&v6).unwrap();
    let td6 = TraceDat::parse(&f6).unwrap();
    assert_eq!(td6.version, 6);
    let (c6, _) = count_events(&td6, &f6).unwrap();
    let (c7, _) = count_events(&td, &f).unwrap();
    assert_eq!(c6, c7);
    assert_eq!(pio_records(&v6, PORT).len() as u64, N);
}

fn signal_leaves_nothing_behind(sig: &str) {
    let Some(root) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    let _s = serial();
    let before = global_state(&root);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sig.dat");
    let mut child = kvmscope()
        .args([
            "record",
            "--quiet",
            "--events",
            "all",
            "--duration",
            "600s",
            "-o",
        ])
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_recording(&root, &mut child);
    signal(&child, sig);
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if sig == "-KILL" {
        assert!(!output.status.success());
        // SIGKILL cannot be caught: the instance stays until the next run removes it.
        assert_eq!(instances_of(&root, pid).len(), 1);
        let next = kvmscope()
            .args([
                "record",
                "--quiet",
                "--events",
                "kvm:kvm_pio",
                "--duration",
                "100ms",
                "-o",
            ])
            .arg(dir.path().join("next.dat"))
            .output()
            .unwrap();
        assert!(
            next.status.success(),
            "{}",
            String::from_utf8_lossy(&next.stderr)
        );
        assert!(String::from_utf8_lossy(&next.stderr).contains("removed stale instance"));
    } else {
        // A first signal stops the recording cleanly: the file is complete.
        assert!(
            output.status.success(),
            "{sig}: {:?} {stderr}",
            output.status
        );
        let f = FileAt::open(&out).unwrap();
        let td = TraceDat::parse(&f).unwrap();
        count_events(&td, &f).unwrap();
    }
    assert!(
        instances_of(&root, pid).is_empty(),
        "{sig}: instance left behind"
    );
    assert!(!dir.path().join("sig.dat.kvmscope-cpu0.tmp").exists());
    assert_eq!(
        global_state(&root),
        before,
        "{sig} changed global tracing state"
    );
}

#[test]
fn sigint_cleans_up() {
    signal_leaves_nothing_behind("-INT");
}

#[test]
fn sigterm_cleans_up() {
    signal_leaves_nothing_behind("-TERM");
}

#[test]
fn sighup_cleans_up() {
    signal_leaves_nothing_behind("-HUP");
}

#[test]
fn sigkill_then_next_run_cleans_up() {
    signal_leaves_nothing_behind("-KILL");
}

#[test]
fn command_mode_records_until_the_command_exits_and_returns_its_status() {
    let Some(root) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmd.dat");
    let st = kvmscope()
        .args(["record", "--quiet", "--events", "guest", "-o"])
        .arg(&out)
        .args(["--", "sh", "-c", "sleep 0.2; exit 3"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(3));
    let f = FileAt::open(&out).unwrap();
    TraceDat::parse(&f).unwrap();
    assert!(std::fs::read_dir(root.join("instances"))
        .unwrap()
        .flatten()
        .all(|e| !e
            .file_name()
            .to_string_lossy()
            .starts_with("kvmscope-record-")
            || kvmscope_capture::tracefs::owner_pid(&e.file_name().to_string_lossy())
                .is_some_and(|p| p as u32 != std::process::id())));
}

#[test]
fn bad_event_and_filter_are_explained() {
    let Some(_root) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = kvmscope()
        .args([
            "record",
            "--events",
            "kvm:no_such_event",
            "--duration",
            "1s",
            "-o",
        ])
        .arg(dir.path().join("x.dat"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("kvm:no_such_event") && e.contains("available_events"),
        "{e}"
    );
    let out = kvmscope()
        .args([
            "record",
            "--events",
            "kvm:kvm_pio",
            "--filter",
            "kvm:kvm_pio:nonsense ==",
            "--duration",
            "1s",
            "-o",
        ])
        .arg(dir.path().join("y.dat"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("rejected filter"), "{e}");
    assert!(!dir.path().join("y.dat").exists());
}

/// Runs a lab scenario in this process and returns its vCPU thread ids.
fn run_lab(spec: &kvmscope_lab::ScenarioSpec) -> Vec<i32> {
    let out = kvmscope_lab::run(spec).expect("lab guest");
    out.vcpu_tids
}

#[test]
fn record_lab_pio_msr_mmio_gives_exactly_n_events_per_guest() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let Some(root) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lab.dat");
    const N: u64 = 500;
    // The default preset: every kvm event, no filter. Other KVM users may run at the same
    // time, so what is counted is what this process's vCPU threads did.
    // A CPL0 guest is emulated instruction by instruction (hundreds of thousands of
    // kvm_emulate_insn/kvmmmu events per second): a roomy buffer keeps a busy shared machine
    // from losing any.
    let mut child = kvmscope()
        .args(["record", "--quiet", "--buffer-kb", "32768", "-o"])
        .arg(&out)
        .spawn()
        .unwrap();
    wait_recording(&root, &mut child);
    use kvmscope_lab::{Scenario, ScenarioSpec};
    let mut pio = ScenarioSpec::new(Scenario::Pio).count(N);
    pio.port = 0x2f0;
    let pio_tids = run_lab(&pio);
    let msr_tids = run_lab(&ScenarioSpec::new(Scenario::Msr).count(N));
    let mmio_tids = run_lab(&ScenarioSpec::new(Scenario::Mmio).count(N));
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());

    let f = FileAt::open(&out).unwrap();
    let td = TraceDat::parse(&f).unwrap();
    let fmt = |e: &str| td.formats.by_name("kvm", e).unwrap().clone();
    let (pio_f, msr_f, mmio_f) = (fmt("kvm_pio"), fmt("kvm_msr"), fmt("kvm_mmio"));
    let (mut pios, mut msrs, mut mmios) = (0u64, 0u64, 0u64);
    let mut m = Merger::new(&td, &td.buffers[0], &f).unwrap();
    while let Some(r) = m.next_record().unwrap() {
        let tid = r.common_pid;
        if r.id == pio_f.id && pio_tids.contains(&tid) && pio_f.u64(r.data, "port") == Some(0x2f0) {
            pios += 1;
        } else if r.id == msr_f.id
            && msr_tids.contains(&tid)
            && msr_f.u64(r.data, "ecx") == Some(0x6e0)
            && msr_f.u64(r.data, "write") == Some(1)
        {
            msrs += 1;
        } else if r.id == mmio_f.id
            && mmio_tids.contains(&tid)
            && mmio_f.u64(r.data, "gpa") == Some(kvmscope_lab::MMIO_GPA)
            && mmio_f.symbol(r.data, "type").as_deref() == Some("write")
        {
            mmios += 1;
        }
    }
    assert_eq!((pios, msrs, mmios), (N, N, N));
    assert!(m
        .lost_events()
        .iter()
        .all(|l| l.known == 0 && l.unknown_pages == 0));
}

#[test]
fn running_vms_lists_a_lab_guest_with_its_vcpus() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let mut seen = Vec::new();
    let spec = kvmscope_lab::ScenarioSpec::new(kvmscope_lab::Scenario::Pio)
        .count(10)
        .vcpus(2);
    kvmscope_lab::run_with(&spec, |_threads| {
        seen = kvmscope_capture::recorder::running_vms(Path::new("/proc"));
    })
    .unwrap();
    let me = std::process::id() as i32;
    let vm = seen
        .iter()
        .find(|v| v.pid == me)
        .expect("this process holds a VM");
    assert_eq!(vm.vcpus, 2, "{seen:?}");
}

#[test]
fn filters_for_one_event_are_anded_and_pid_becomes_a_thread_filter() {
    let Some(root) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let mut child = kvmscope()
        .args(["record", "--quiet", "--events", "kvm:kvm_pio,kvm:kvm_msr"])
        .args([
            "--filter",
            "kvm:kvm_pio:port == 0x3f8",
            "--filter",
            "kvm:kvm_pio:rw == 1",
        ])
        .args(["--pid", &me.to_string(), "-o"])
        .arg(dir.path().join("f.dat"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let inst = wait_recording(&root, &mut child);
    // One large read: tracefs filter files give their text on the first read only.
    let read = |e: &str| {
        kvmscope_capture::tracefs::read_file(&inst.join("events/kvm").join(e).join("filter"))
            .unwrap()
    };
    let pio = read("kvm_pio");
    let msr = read("kvm_msr");
    signal(&child, "-INT");
    assert!(child.wait().unwrap().success());
    assert!(
        pio.contains("port == 0x3f8") && pio.contains("rw == 1") && pio.contains("&&"),
        "{pio}"
    );
    assert!(pio.contains(&format!("common_pid == {me}")), "{pio}");
    assert!(
        !msr.contains("port") && msr.contains(&format!("common_pid == {me}")),
        "{msr}"
    );
}
