//! trace.dat input: `kvmscope report` on a recording (ours, v6; trace-cmd's, v7 with zstd)
//! gives the same report as our text decoder on `trace-cmd report`'s output for the same file
//! — two independent decoders (binary fields vs printed text) must agree.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn report(args: &[&str]) -> Value {
    support::report_json(args)
}

fn trace_cmd_available() -> bool {
    kvmscope_capture::host::require_tool("trace-cmd", "apt-get install trace-cmd")
}

#[test]
fn tracedat_reports_equal_text_reports_of_trace_cmd() {
    if !trace_cmd_available() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tracedat");
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "kvmscope-record-lab-v6.dat",
        "trace-cmd-extract-lab-v7-zstd.dat",
    ] {
        let dat = dir.join(name);
        let text = support::run_ok(Command::new("trace-cmd").arg("report").arg("-i").arg(&dat));
        let txt = tmp.path().join(format!("{name}.txt"));
        std::fs::write(&txt, &text.stdout).unwrap();

        let binary = report(&[dat.to_str().unwrap()]);
        let printed = report(&[txt.to_str().unwrap()]);
        assert_eq!(
            binary["inputs"][0]["events"], printed["inputs"][0]["events"],
            "{name}: event count"
        );
        assert_eq!(
            printed["inputs"][0]["unknown_lines"], 0,
            "{name}: {}",
            printed["inputs"][0]
        );
        for section in [
            &["overview", "by_name"][..],
            &["overview", "userspace_exits"],
            &["accesses", "pio"],
            &["accesses", "mmio"],
            &["mmu"],
            &["interrupts"],
        ] {
            let pick = |v: &Value| section.iter().fold(v.clone(), |v, k| v[*k].clone());
            assert_eq!(
                pick(&binary),
                pick(&printed),
                "{name}: {section:?} differs between trace.dat and trace-cmd report text"
            );
        }
        // MSR rows: trace-cmd prints the last value as text, we read it from the record; both
        // must agree too, and count what the lab guest did (100 TSC-deadline writes).
        assert_eq!(
            binary["accesses"]["msr"], printed["accesses"]["msr"],
            "{name}: msr rows"
        );
        assert_eq!(binary["accesses"]["msr"][0]["count"], 100, "{name}");
        assert_eq!(binary["accesses"]["pio"][0]["count"], 100, "{name}");
        assert_eq!(binary["accesses"]["mmio"][0]["count"], 100, "{name}");
    }
}

#[test]
fn corrupt_tracedat_is_an_error_with_an_offset() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tracedat");
    let bytes = std::fs::read(dir.join("kvmscope-record-lab-v6.dat")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.dat");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kvmscope"))
        .args(["report"])
        .arg(&cut)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a cut trace.dat must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cut.dat") && err.contains("offset"),
        "error must name the file and an offset: {err}"
    );
}

/// `kvmscope record -- kvmscope lab run pio`, then `report --pid <guest>` on the recording:
/// exactly the guest's OUTs, and its vCPU thread grouped under its process (the recording
/// keeps each thread's process, noted by the kernel at event time).
#[test]
fn record_then_report_by_pid_counts_the_guest_exactly() {
    if !kvmscope_capture::host::require_kvm() || kvmscope_capture::host::require_tracefs().is_none()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dat = tmp.path().join("pio.dat");
    let exe = env!("CARGO_BIN_EXE_kvmscope");
    let out = support::run_ok(
        Command::new(exe)
            .args(["record", "-q", "-o"])
            .arg(&dat)
            .args(["--", exe, "lab", "run", "pio", "--count", "700", "--json"]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The lab's JSON document comes first; anything record prints after it is ignored.
    let lab: Value = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .next()
        .unwrap()
        .unwrap();
    let pid = lab["pid"].as_u64().expect("lab JSON has the pid");
    let r = report(&["--pid", &pid.to_string(), dat.to_str().unwrap()]);
    let pio: Vec<&Value> = r["accesses"]["pio"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["port"] == 0x3f8)
        .collect();
    assert_eq!(pio.len(), 1, "{}", r["accesses"]);
    assert_eq!(pio[0]["count"], 700);
    let vms = r["overview"]["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 1, "only the guest's process: {vms:?}");
    assert_eq!(vms[0]["pid"].as_u64(), Some(pid));
    let tids = support::vcpu_tids(&lab);
    let threads: Vec<u64> = vms[0]["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["tid"].as_u64().unwrap())
        .collect();
    for t in tids {
        assert!(
            threads.contains(&t),
            "vCPU thread {t} grouped under pid {pid}: {threads:?}"
        );
    }
}
