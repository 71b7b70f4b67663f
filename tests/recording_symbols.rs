//! Recordings that travel (issue 15): the function names of pointer fields (hrtimer
//! functions, csd functions, IPI callbacks and callsites) come from the trace.dat itself.
//!
//! - A recording made here with the Recorder (v6 and v7/zstd), read by `kvmscope report` in a
//!   mount namespace where /proc/kallsyms is empty, names the hrtimer, csd and IPI functions
//!   exactly as the kernel's own text output of the same events does (a second private
//!   instance traced alongside, read from its `trace` file), and counts no unresolved pointer.
//! - trace-cmd report names them from our file (see also crates/capture/tests/recorder.rs).
//! - Our reader names them from a file trace-cmd recorded (v7, zstd, two instances: the
//!   buffers merge in time order).
//!
//! The workloads are the lab's IPI storm (TLB shootdowns of a spinning thread's CPU) and a
//! train of sleeps (hrtimer_wakeup); only the workload's threads are compared.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kvmscope_capture::recorder::{parse_events, KallsymsMode, RecordOptions, Recorder};
use kvmscope_capture::tracefs::Instance;
use kvmscope_tracedat::file::Version;
use serde_json::Value;

const EVENTS: &[(&str, &str)] = &[
    ("timer", "hrtimer_start"),
    ("timer", "hrtimer_expire_entry"),
    ("timer", "hrtimer_expire_exit"),
    ("ipi", "ipi_send_cpu"),
    ("ipi", "ipi_send_cpumask"),
    ("csd", "csd_queue_cpu"),
    ("csd", "csd_function_entry"),
];

/// `kvmscope report --json ARGS` with /proc/kallsyms hidden (bind-mounted /dev/null in a
/// private mount namespace): whatever it names, it names from the file.
fn report_without_kallsyms(args: &[String]) -> Value {
    let mut cmd = String::from("mount --bind /dev/null /proc/kallsyms && [ ! -s /proc/kallsyms ] && exec \"$0\" report --json");
    for (i, _) in args.iter().enumerate() {
        cmd.push_str(&format!(" \"${}\"", i + 1));
    }
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &cmd, env!("CARGO_BIN_EXE_kvmscope")])
        .args(args)
        .output()
        .expect("run unshare");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn can_hide_kallsyms() -> bool {
    let ok = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind /dev/null /proc/kallsyms && [ ! -s /proc/kallsyms ]",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("KVMSCOPE_REQUIRE_KVM").is_none(),
            "cannot hide /proc/kallsyms in a mount namespace (unshare -m, as root)"
        );
        eprintln!(
            "SKIPPED: cannot hide /proc/kallsyms in a mount namespace (needs root and unshare)"
        );
    }
    ok
}

/// The function-naming parts of a report: hrtimers by function, IPIs sent by function, csd
/// functions.
fn named(report: &Value) -> Value {
    let g = &report["guest"];
    serde_json::json!({
        "hrtimers": g["timers"]["hrtimers"],
        "ipi_sent": g["ipi"]["sent"],
        "csd_functions": g["ipi"]["csd_functions"],
    })
}

fn functions(v: &Value, table: &str) -> Vec<String> {
    v[table]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["function"].as_str().unwrap().to_string())
        .collect()
}

/// Records the workload with the Recorder into `dat` (as `version`) and, alongside, into a
/// second private instance whose kernel-formatted text goes to `txt`. Both are filtered in
/// the kernel on the workload's threads, set before the workload's first operation, so both
/// hold exactly the same events. Returns the workload's thread ids.
fn record_both(tracefs: &Path, dat: &Path, txt: &Path, version: Version) -> Option<Vec<u32>> {
    let cpus = kvmscope_lab::workload::allowed_cpus().unwrap();
    if cpus.len() < 2 {
        eprintln!("SKIPPED: the IPI storm needs two CPUs, this process may use {cpus:?}");
        return None;
    }
    // A train of sleeps on a thread of our own (hrtimer_wakeup), started on a signal.
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let sleeper = std::thread::spawn(move || {
        tid_tx.send(kvmscope_lab::workload::current_tid()).unwrap();
        if go_rx.recv().is_ok() {
            for _ in 0..50 {
                std::thread::sleep(Duration::from_micros(300));
            }
        }
    });
    let sleeper_tid = tid_rx.recv().unwrap();
    let live = Instance::create(tracefs, "symtext").unwrap();
    live.set_buffer_size_kb(8 * 1024).unwrap();
    let spec: Vec<String> = EVENTS.iter().map(|(s, e)| format!("{s}:{e}")).collect();
    let mut rec = None;
    let mut tids = Vec::new();
    let storm =
        kvmscope_lab::workload::IpiStorm::new(kvmscope_lab::workload::IpiMethod::Munmap, 300);
    kvmscope_lab::workload::ipi_storm(&storm, |threads| {
        tids = threads.tids();
        tids.push(sleeper_tid);
        let filter = tids
            .iter()
            .map(|t| format!("common_pid == {t}"))
            .collect::<Vec<_>>()
            .join(" || ");
        // Enabling a tracepoint patches kernel text, which sends IPIs (do_sync_core) and
        // runs them on the spinner's CPU: both instances get their events first, with
        // tracing off, then tracing goes on in both (a flag, nothing patched).
        for (s, e) in EVENTS {
            live.set_filter(s, e, &filter).unwrap();
            live.enable(s, e).unwrap();
        }
        let opts = RecordOptions {
            events: parse_events(&spec.join(",")).unwrap(),
            filters: vec![(None, filter.clone())],
            buffer_kb: Some(8 * 1024),
            subbuf_kb: None,
            kallsyms: KallsymsMode::Referenced,
            version,
        };
        rec = Some(Recorder::start(tracefs, opts, dat).unwrap());
        live.set_tracing_on(true).unwrap();
        go_tx.send(()).unwrap();
    })
    .unwrap();
    sleeper.join().unwrap();
    // Both off before the recorder's finish disables its events (text patching again).
    let rec = rec.unwrap();
    rec.instance().unwrap().set_tracing_on(false).unwrap();
    live.set_tracing_on(false).unwrap();
    let p = rec.finish(None).unwrap();
    std::fs::write(txt, live.trace_text().unwrap()).unwrap();
    live.remove().unwrap();
    assert_eq!(p.lost_total(), 0, "the recording lost events");
    Some(tids)
}

/// Whether the file's rows are the text instance's, count for count, but for at most
/// [`SETUP_IPIS`] more in the file. The file's tracing goes on inside `Recorder::start`, the
/// text instance's only after it returns, and this thread (one of the traced ones) finishes
/// `start` in between: a buffer it frees there can send a flush_tlb_func IPI to the spinner
/// that only the file sees (seen once under a full parallel test run: 279 against 278).
fn same_but_setup_ipis(file: &[Value], text: &[Value]) -> bool {
    fn counts(v: &Value) -> (Value, Vec<u64>) {
        match v {
            Value::Object(m) => {
                let mut rest = serde_json::Map::new();
                let mut n = Vec::new();
                for (k, x) in m {
                    match x.as_u64() {
                        Some(c) if k != "sender_cpu" && k != "target_cpu" && k != "cpu" => {
                            n.push(c)
                        }
                        _ => {
                            rest.insert(k.clone(), x.clone());
                        }
                    }
                }
                (Value::Object(rest), n)
            }
            v => (v.clone(), Vec::new()),
        }
    }
    file.len() == text.len()
        && file.iter().zip(text).all(|(a, b)| {
            let ((ka, na), (kb, nb)) = (counts(a), counts(b));
            ka == kb
                && na.len() == nb.len()
                && na
                    .iter()
                    .zip(&nb)
                    .all(|(x, y)| x >= y && x - y <= SETUP_IPIS)
        })
}

/// See [`same_but_setup_ipis`].
const SETUP_IPIS: u64 = 2;

/// The recordings run one at a time: each one's enabling of tracepoints would show up in
/// the other's (text patching IPIs), and their storms would share the CPUs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check_recording(version: Version) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(tracefs) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    if !can_hide_kallsyms() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dat = dir.path().join("storm.dat");
    let txt = dir.path().join("storm.txt");
    let Some(tids) = record_both(&tracefs, &dat, &txt, version) else {
        return;
    };
    let tid_arg = tids
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let ours =
        report_without_kallsyms(&[dat.display().to_string(), "--tid".into(), tid_arg.clone()]);
    let live = support::report_json(&[txt.display().to_string(), "--tid".into(), tid_arg.clone()]);
    let (o, l) = (named(&ours), named(&live));
    // The kernel's text names every function; so must the file.
    for (v, who) in [(&o, "file"), (&l, "kernel")] {
        for table in ["hrtimers", "ipi_sent", "csd_functions"] {
            let names = functions(v, table);
            assert!(
                !names.is_empty() && names.iter().all(|n| !n.starts_with("0x") || n == "0x0"),
                "{who} {table}: {names:?}"
            );
        }
    }
    // The workload's own functions, row for row (counts too): a timer tick may fall into
    // the microseconds between the two instances' tracing switches, and any tracing
    // elsewhere on the machine sends do_sync_core IPIs at any time; the workload cannot.
    for (table, f) in [
        ("hrtimers", "hrtimer_wakeup"),
        ("ipi_sent", "flush_tlb_func"),
        ("csd_functions", "flush_tlb_func"),
    ] {
        let rows = |v: &Value| -> Vec<Value> {
            v[table]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["function"] == f)
                .filter(|r| table != "hrtimers" || r["starts"] != 0)
                // Expiries run in whatever thread the interrupt hits (a spinner, also for
                // other processes' sleeps): only the starts are the workload's own.
                .map(|r| match table {
                    "hrtimers" => serde_json::json!([r["function"], r["cpu"], r["starts"]]),
                    _ => r.clone(),
                })
                .collect()
        };
        // (flush_tlb_func runs on the driver's CPU for every munmap; whether an IPI is sent
        // depends on the spinner's vCPU running at that moment: PV TLB flush skips it
        // otherwise.)
        if table != "ipi_sent" {
            assert!(
                !rows(&l).is_empty(),
                "kernel text has no {f} in {table}: {l}"
            );
        }
        let (fo, lo) = (rows(&o), rows(&l));
        assert!(
            same_but_setup_ipis(&fo, &lo),
            "{table} {f}: the file's rows differ from the kernel's\n file: {fo:?}\n text: {lo:?}"
        );
    }
    assert!(
        ours["inputs"][0].get("unresolved_pointers").is_none(),
        "{}",
        ours["inputs"][0]
    );
    // trace-cmd names them from our file too.
    if !kvmscope_capture::host::require_tool("trace-cmd", "apt-get install trace-cmd") {
        return;
    }
    let out = Command::new("trace-cmd")
        .args(["report", "-i"])
        .arg(&dat)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for f in functions(&o, "csd_functions") {
        assert!(
            text.contains(&format!("func={f}")),
            "trace-cmd report does not name {f}"
        );
    }
    assert!(text.contains("function=hrtimer_wakeup"));
}

#[test]
fn v6_recording_names_functions_without_proc_kallsyms() {
    check_recording(Version::V6);
}

#[test]
fn v7_zstd_recording_names_functions_without_proc_kallsyms() {
    check_recording(Version::V7Zstd);
}

/// trace-cmd's own v7/zstd file, two instances (hrtimer events in one, csd/IPI in the
/// other): our reader names the functions from the file's kallsyms and merges the two
/// buffers in time order.
#[test]
fn trace_cmd_v7_file_with_two_buffers_is_named_and_merged() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(tracefs) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    if !kvmscope_capture::host::require_tool("trace-cmd", "apt-get install trace-cmd")
        || !can_hide_kallsyms()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dat = dir.path().join("tc.dat");
    // `trace-cmd record` is refused here (it cannot enable ftrace); `extract` of two private
    // instances is what trace-cmd can do (it removes them itself).
    let a = Instance::create(&tracefs, "tca").unwrap();
    a.enable("timer", "hrtimer_start").unwrap();
    a.enable("timer", "hrtimer_expire_entry").unwrap();
    let b = Instance::create(&tracefs, "tcb").unwrap();
    b.enable("csd", "csd_function_entry").unwrap();
    b.enable("ipi", "ipi_send_cpumask").unwrap();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(2));
    }
    if kvmscope_lab::workload::allowed_cpus().unwrap().len() > 1 {
        let storm =
            kvmscope_lab::workload::IpiStorm::new(kvmscope_lab::workload::IpiMethod::Munmap, 50);
        kvmscope_lab::workload::ipi_storm(&storm, |_| {}).unwrap();
    }
    let out = Command::new("trace-cmd")
        .args(["extract", "-o"])
        .arg(&dat)
        .args(["-B", a.name(), "-B", b.name()])
        .output()
        .unwrap();
    let (a, b) = (a.name().to_string(), b.name().to_string());
    assert!(
        out.status.success(),
        "trace-cmd extract: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (td, f) = kvmscope_tracedat::file::TraceDat::open(&dat).unwrap();
    assert_eq!((td.version, td.compression.as_deref()), (7, Some("zstd")));
    assert!(td.kallsyms.len() > 1000, "trace-cmd keeps all of kallsyms");
    let names: Vec<&str> = td.buffers.iter().map(|b| b.name.as_str()).collect();
    assert!(
        names.contains(&a.as_str()) && names.contains(&b.as_str()),
        "{names:?}"
    );
    let mut m = kvmscope_tracedat::file::BufferMerger::new(&td, &f).unwrap();
    let (mut last, mut from) = (0u64, std::collections::BTreeSet::new());
    while let Some((i, r)) = m.next_record().unwrap() {
        assert!(r.ts_ns >= last, "{} after {last}", r.ts_ns);
        last = r.ts_ns;
        from.insert(i);
    }
    assert_eq!(from.len(), 2, "records from both buffers");
    let report = report_without_kallsyms(&[dat.display().to_string()]);
    let hr = functions(&named(&report), "hrtimers");
    assert!(hr.contains(&"hrtimer_wakeup".to_string()), "{hr:?}");
    assert!(hr.iter().all(|f| !f.starts_with("0x")), "{hr:?}");
    assert!(report["inputs"][0].get("unresolved_pointers").is_none());
}
