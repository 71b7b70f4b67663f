//! `kvmscope export` read back by Perfetto's own Python package (PyPI `perfetto`, its
//! protobuf definitions of the trace format; tests/perfetto_readback.py): on every input kind
//! and host kind, the exit slices per vCPU thread equal the exits `report --json` counts per
//! reason, timestamps are monotonic per track, the exits/s counters add up, and the Chrome
//! JSON export has the same slices. Skips with a printed reason when the venv
//! (~/.cache/kvmscope/venv, made by .ci/run) is missing; fails under KVMSCOPE_REQUIRE_KVM=1.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kvmscope")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let py = Path::new(&home).join(".cache/kvmscope/venv/bin/python");
    let ok = Command::new(&py)
        .args([
            "-c",
            "import perfetto.protos.perfetto.trace.perfetto_trace_pb2",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(py)
    } else {
        let why = format!(
            "{} cannot import perfetto (run .ci/run, or `python3 -m venv ~/.cache/kvmscope/venv && ~/.cache/kvmscope/venv/bin/pip install perfetto`)",
            py.display()
        );
        if kvmscope_capture::host::required_by_env() {
            panic!("Perfetto's Python package is required (KVMSCOPE_REQUIRE_KVM=1): {why}");
        }
        eprintln!("SKIPPED: Perfetto's Python package unavailable: {why}");
        None
    }
}

const WINDOW_NS: u64 = 1_000_000;

fn check(py: &Path, input: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let pf = dir.path().join("out.pftrace");
    let cj = dir.path().join("out.json");
    let rj = dir.path().join("report.json");
    for (fmt, out) in [("perfetto", &pf), ("chrome-json", &cj)] {
        let o = Command::new(bin())
            .args([
                "export",
                "-q",
                "--counter-window",
                "1ms",
                "--format",
                fmt,
                "-o",
            ])
            .arg(out)
            .arg(input)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "export {fmt} {}: {}",
            input.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = Command::new(bin())
        .args(["report", "--json"])
        .arg(input)
        .output()
        .unwrap();
    assert!(o.status.success());
    std::fs::write(&rj, &o.stdout).unwrap();
    let o = Command::new(py)
        .arg(root().join("tests/perfetto_readback.py"))
        .args([&pf, &cj, &rj])
        .arg(WINDOW_NS.to_string())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{}: {out}{}",
        input.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn perfetto_and_chrome_json_read_back_equal_the_report() {
    let Some(py) = python() else { return };
    let mut inputs: Vec<PathBuf> = Vec::new();
    for dir in ["public", "host"] {
        let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures").join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                (n.ends_with(".txt") || n.ends_with(".perfscript"))
                    && !n.ends_with(".lab.txt")
                    && !n.ends_with(".report.txt")
            })
            .collect();
        v.sort();
        inputs.extend(v);
    }
    inputs.push(root().join("tests/fixtures/tracedat/kvmscope-record-lab-v6.dat"));
    inputs.push(root().join("tests/fixtures/tracedat/trace-cmd-extract-lab-v7-zstd.dat"));
    inputs.push(root().join("tests/fixtures/tracedat/svm-emulated-pio.dat"));
    let mut exit_slices = 0u64;
    for input in &inputs {
        let line = check(&py, input);
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        exit_slices += v["exit_slices"].as_u64().unwrap();
        eprintln!("{}: {}", input.display(), line.trim());
    }
    assert!(inputs.len() >= 20);
    // The public VMX/SVM/arm64 traces have exits: the check above compared real slices.
    assert!(
        exit_slices > 40,
        "only {exit_slices} exit slices in all inputs"
    );
}

/// A failed export is an error (status 2) and leaves no half-written output behind.
#[test]
fn bad_input_is_an_error_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "not a trace\n").unwrap();
    let out = dir.path().join("out.pftrace");
    let o = Command::new(bin())
        .args(["export", "-o"])
        .arg(&out)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a trace kvmscope can read"));
    assert!(!out.exists());
}
