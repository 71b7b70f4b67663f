//! `kvmscope collapse` against FlameGraph's `stackcollapse-perf.pl`: exact bytes on the shared
//! corpus (`../shared/corpus/flamegraph` beside the repository, see its README) for no option
//! and each of `--pid --tid --kernel --jit --all --addrs`, and on a capture from this
//! project's machine (`tests/fixtures/stacks`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::run_ok;

const MODES: [&str; 7] = ["default", "pid", "tid", "kernel", "jit", "all", "addrs"];

fn kvmscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kvmscope"))
}

/// An attribution (`flamegraph --json`) of a lab guest found its vCPU thread.
fn assert_lab_vcpu_thread(a: &Value) {
    let threads: Vec<&str> = a["vcpu_threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(
        threads.iter().any(|t| t.starts_with("kvmscope-vcpu")),
        "no lab vCPU thread in {threads:?}"
    );
}

/// The share of host CPU time an attribution gives `category`.
fn share(a: &Value, category: &str) -> f64 {
    let categories = a["categories"].as_array().unwrap();
    let c = categories.iter().find(|c| c["category"] == category);
    c.and_then(|c| c["share"].as_f64()).unwrap()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shared corpus, or `None` (after saying why) when it is absent and absence is allowed.
fn corpus() -> Option<PathBuf> {
    let dir = repo().join("../shared/corpus/flamegraph");
    if dir.join("results").is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "FlameGraph corpus not found at {}: put the project's shared/ folder beside the repository",
        dir.display()
    );
    if std::env::var_os("KVMSCOPE_REQUIRE_KVM").is_some_and(|v| v == "1") {
        panic!("{msg} (KVMSCOPE_REQUIRE_KVM=1: not skipping)");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

fn collapse(input: &Path, mode: &str, threads: usize) -> Vec<u8> {
    let mut cmd = kvmscope();
    cmd.arg("collapse").arg(input);
    if mode != "default" {
        cmd.arg(format!("--{mode}"));
    }
    cmd.arg("--threads").arg(threads.to_string());
    let out = cmd.output().expect("run kvmscope");
    assert!(
        out.status.success(),
        "kvmscope collapse --{mode} {} failed: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Index and text of the first differing line, for a readable failure.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let g: Vec<&[u8]> = got.split(|&b| b == b'\n').collect();
    let w: Vec<&[u8]> = want.split(|&b| b == b'\n').collect();
    for i in 0..g.len().max(w.len()) {
        let (a, b) = (g.get(i), w.get(i));
        if a != b {
            return format!(
                "line {}:\n  got:  {}\n  want: {}",
                i + 1,
                a.map_or("<none>".into(), |l| String::from_utf8_lossy(l)),
                b.map_or("<none>".into(), |l| String::from_utf8_lossy(l))
            );
        }
    }
    "no line differs (length?)".into()
}

#[test]
fn corpus_matches_stackcollapse_perf_byte_for_byte() {
    let Some(dir) = corpus() else { return };
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 13, "corpus looks incomplete: {inputs:?}");
    let mut checked = 0;
    let mut failures = Vec::new();
    for input in &inputs {
        let stem = input.file_stem().unwrap().to_string_lossy();
        for mode in MODES {
            let want_path = dir.join(format!("results/{stem}-collapsed-{mode}.txt"));
            let want = std::fs::read(&want_path)
                .unwrap_or_else(|e| panic!("missing expected {}: {e}", want_path.display()));
            let got = collapse(input, mode, 1);
            if got != want {
                failures.push(format!(
                    "{stem} --{mode}: {}",
                    first_difference(&got, &want)
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, inputs.len() * MODES.len());
}

#[test]
fn two_threads_give_the_same_bytes() {
    let Some(dir) = corpus() else { return };
    for input in [
        "perf-vertx-stacks-01.txt",
        "perf-cycles-instructions-01.txt",
    ] {
        let input = dir.join(input);
        let stem = input.file_stem().unwrap().to_string_lossy().into_owned();
        let want =
            std::fs::read(dir.join(format!("results/{stem}-collapsed-default.txt"))).unwrap();
        assert!(
            collapse(&input, "default", 2) == want,
            "{stem} with 2 threads"
        );
    }
}

#[test]
fn capture_from_this_machine_matches_golden() {
    let fixtures = repo().join("tests/fixtures/stacks");
    for (input, mode, golden) in [
        (
            "kvm-lab-perf-script.txt",
            "default",
            "kvm-lab-collapsed-default.txt",
        ),
        (
            "kvm-lab-perf-script.txt",
            "tid",
            "kvm-lab-collapsed-tid.txt",
        ),
        (
            "kvm-lab-perf-script.txt",
            "all",
            "kvm-lab-collapsed-all.txt",
        ),
    ] {
        let want = std::fs::read(fixtures.join(golden)).unwrap();
        for threads in [1, 2] {
            let got = collapse(&fixtures.join(input), mode, threads);
            assert!(
                got == want,
                "{input} --{mode} ({threads} threads) differs from {golden}: {}",
                first_difference(&got, &want)
            );
        }
    }
}

#[test]
fn reads_standard_input_and_reports_unrecognized_lines_with_line_numbers() {
    use std::io::Write;
    use std::process::Stdio;
    let input = b"a.out 12 [000] 1.0: cpu-clock:\n\tffff f1+0x3 ([kernel.kallsyms])\n  garbage\n\tffff main (/a.out)\n\nvcpu 7 [001] 2.0: cpu-clock:\n\n";
    let mut child = kvmscope()
        .args(["collapse", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a.out;main;f1 1\nvcpu 1\n",
        "a sample without stack lines folds to the bare process name"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("<stdin>:3: unrecognized line"), "{err}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = kvmscope()
        .args(["collapse", "/nonexistent/perf.txt"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open perf script file /nonexistent/perf.txt"),
        "{err}"
    );
}

#[test]
fn flamegraph_svg_attribution_and_diff_from_the_cli() {
    let fixtures = repo().join("tests/fixtures/stacks");
    let input = fixtures.join("kvm-lab-perf-script.txt");
    let dir = std::env::temp_dir().join(format!("kvmscope-flame-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("out.svg");
    run_ok(kvmscope().arg("flamegraph").arg(&input).arg("-o").arg(&svg));
    assert_eq!(
        std::fs::read(&svg).unwrap(),
        std::fs::read(fixtures.join("kvm-lab.svg")).unwrap(),
        "CLI SVG differs from the library golden"
    );

    let folded = fixtures.join("kvm-lab-collapsed-all.txt");
    let out = run_ok(kvmscope().args(["flamegraph", "--json"]).arg(&folded));
    assert_eq!(
        out.stdout,
        std::fs::read(fixtures.join("kvm-lab-attribution.json")).unwrap(),
        "attribution from folded input differs from the golden JSON"
    );

    let out = run_ok(kvmscope().args(["flamegraph", "--attribution"]).arg(&input));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("emulation") && text.contains("pvm_emulate_insn_scrubbed"),
        "{text}"
    );

    let diff = dir.join("diff.svg");
    run_ok(
        kvmscope()
            .arg("flamegraph")
            .arg(&folded)
            .arg("--diff")
            .arg(&input)
            .arg("-o")
            .arg(&diff),
    );
    let d = std::fs::read_to_string(&diff).unwrap();
    assert!(d.contains("<svg") && d.contains("differential"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Acceptance: sample this machine with `perf record -a -g` while a lab guest runs (CPL0
/// WRMSR loop: every guest instruction is emulated on this host's kvm_pvm), then find the
/// vCPU thread and its KVM frames in the attribution.
#[test]
fn perf_sampling_of_a_lab_guest_is_attributed_to_kvm() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let have_perf = Command::new("perf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_perf {
        let msg = "perf not found: apt-get install -y linux-perf";
        if std::env::var_os("KVMSCOPE_REQUIRE_KVM").is_some_and(|v| v == "1") {
            panic!("{msg} (KVMSCOPE_REQUIRE_KVM=1: not skipping)");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("kvmscope-perf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("perf.data");
    run_ok(
        Command::new("perf")
            .args(["record", "-q", "-F", "499", "-a", "-g", "-o"])
            .arg(&data)
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_kvmscope"))
            .args(["lab", "run", "msr", "--duration", "1500ms"]),
    );
    let script = run_ok(Command::new("perf").args(["script", "-i"]).arg(&data));
    let text = dir.join("perf.txt");
    std::fs::write(&text, &script.stdout).unwrap();
    let out = run_ok(kvmscope().args(["flamegraph", "--json"]).arg(&text));
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_lab_vcpu_thread(&a);
    assert!(share(&a, "emulation") > 0.0, "no emulation: {a:#}");
    assert!(
        !a["exit_handlers"].as_array().unwrap().is_empty(),
        "no exit handler: {a:#}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Acceptance: kvmscope's own sampler (perf_event_open, cpu-clock, kernel callchains) on
/// this machine while lab guests run: one at CPL3 (runs natively: guest-mode samples) and
/// one at CPL0 (every instruction emulated by kvm_pvm), then the attribution finds the vCPU
/// thread, guest time and the emulation.
#[test]
fn own_sampler_attributes_a_lab_guest() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_kvmscope");
    let mut guest = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{bin} lab run compute --duration 2s >/dev/null && {bin} lab run msr --duration 2s >/dev/null"
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = kvmscope()
        .args([
            "flamegraph",
            "--record",
            "3500ms",
            "--frequency",
            "499",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(guest.wait().unwrap().success(), "lab guests failed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_lab_vcpu_thread(&a);
    assert!(share(&a, "guest") > 0.0, "no guest time: {a:#}");
    assert!(share(&a, "emulation") > 0.0, "no emulation: {a:#}");
}

/// Differential check against the reference itself when it is at hand
/// (`FLAMEGRAPH_DIR=<FlameGraph checkout>`): pseudo-random perf-script-like inputs, including
/// odd lines and mutated bytes, through `stackcollapse-perf.pl` and `kvmscope collapse` with
/// every option. Skipped (with a message) without FLAMEGRAPH_DIR: CI has no FlameGraph.
#[test]
fn random_inputs_match_the_perl_script_when_available() {
    let Some(dir) = std::env::var_os("FLAMEGRAPH_DIR") else {
        eprintln!("SKIPPED: set FLAMEGRAPH_DIR to a FlameGraph checkout to compare with stackcollapse-perf.pl");
        return;
    };
    let script = PathBuf::from(dir).join("stackcollapse-perf.pl");
    assert!(script.is_file(), "{} not found", script.display());
    let pieces: [&[u8]; 29] = [
        b"swapper     0 [000] 158665.570607: cpu-clock:\n",
        b"java 24636/25607 [001] 1.5: 100 cycles:\n",
        b"java 24636/0 [001] 1.5: 7 instructions:\n",
        b"V8 WorkerThread 25607 4794564.109216: 104345 cycles:\n",
        b"a  1 x\n",
        b"x 00 [0] 1: 00 cycles:\n",
        b"perf 123 [000] 1.0: 1 sched:sched_switch: prev_comm=a\n",
        b"\tffffffff8103ce3b native_safe_halt+0x1b ([kernel.kallsyms])\n",
        b"\t7f722d142778 Ljava/io/PrintStream;::print (/tmp/perf-19982.map)\n",
        b"\t7f0 [unknown] (/usr/lib/libc.so.6)\n",
        b"\t7f0 [unknown] ([unknown])\n",
        b"\t7f0 a->b->c (/x)\n",
        b"\t7f0 ->a-> (/x)\n",
        b"\t7f0 net/http.(*Client).Do (/go)\n",
        b"\t7f0 foo(int, char) (/usr/bin/x)\n",
        b"\t7f0 (anonymous namespace)::f(int) (/x)\n",
        b"\t7f0 it's \"q\";x (/x vmlinux)\n",
        b"\tabc (x)\n",
        b"\t 12 (y) (z) w)\n",
        b"\t7f0 +0x12 (/x)\n",
        b"\t7f0 (deleted) (/x)\n",
        b"\n",
        b"\n",
        b"# comment\n",
        b"junk line\n",
        b"\r\n",
        b"  \n",
        b"\t7f0 foo_[i] ([kernel.kallsyms])\n",
        b"\t7f0 x_[j] (/tmp/perf-1.map)\n",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let dir = std::env::temp_dir().join(format!("kvmscope-perl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.txt");
    let mut failures = Vec::new();
    for case in 0..150 {
        let mut text: Vec<u8> = (0..next(120))
            .flat_map(|_| pieces[next(pieces.len())].to_vec())
            .collect();
        if next(3) == 0 && !text.is_empty() {
            for _ in 0..1 + next(5) {
                let at = next(text.len());
                let bytes = b" \t:/()[]+-x0123456789\n;>";
                text[at] = bytes[next(bytes.len())];
            }
        }
        std::fs::write(&input, &text).unwrap();
        for mode in MODES {
            let mut perl = Command::new("perl");
            perl.arg(&script);
            if mode != "default" {
                perl.arg(format!("--{mode}"));
            }
            let want = perl.arg(&input).output().unwrap().stdout;
            if collapse(&input, mode, 1) != want {
                failures.push(format!(
                    "case {case} --{mode}: {}",
                    String::from_utf8_lossy(&text)
                ));
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        failures.is_empty(),
        "{} differ, first:\n{}",
        failures.len(),
        failures[0]
    );
}
