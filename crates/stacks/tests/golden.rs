//! Golden files for the flame graph SVG (KVM colours and differential) and the attribution
//! JSON, from the capture recorded on this project's machine (tests/fixtures/stacks).
//! `KVMSCOPE_BLESS=1 cargo test -p kvmscope-stacks --test golden` rewrites them.

use std::path::{Path, PathBuf};

use kvmscope_stacks::flame::{render, render_diff, FlameOptions};
use kvmscope_stacks::folded::{self, Stack};
use kvmscope_stacks::kvm::Category;
use kvmscope_stacks::{collapse_reader, Attribution, Options};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/stacks")
}

fn stacks_of(perf_script: &[u8]) -> Vec<Stack> {
    let opts = Options {
        kernel: true,
        ..Options::default()
    };
    folded::from_collapsed(&collapse_reader(perf_script, &opts, 1).unwrap())
}

fn capture() -> Vec<u8> {
    std::fs::read(fixtures().join("kvm-lab-perf-script.txt")).unwrap()
}

fn check(name: &str, got: &[u8]) {
    let path = fixtures().join(name);
    if std::env::var_os("KVMSCOPE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (bless with KVMSCOPE_BLESS=1)", path.display()));
    assert!(
        got == want.as_slice(),
        "{name} differs from the golden file (bless with KVMSCOPE_BLESS=1 if intended)"
    );
}

#[test]
fn svg_with_kvm_colours_is_golden() {
    let stacks = stacks_of(&capture());
    let mut svg = Vec::new();
    render(&stacks, &FlameOptions::default(), &mut svg).unwrap();
    let text = String::from_utf8(svg.clone()).unwrap();
    // Emulation (purple) and halt (blue) frames of the lab guest are coloured by role.
    assert!(
        text.contains("fill=\"rgb(145,30,180)\""),
        "no emulation colour"
    );
    assert!(text.contains("fill=\"rgb(67,99,216)\""), "no halt colour");
    let mut again = Vec::new();
    render(&stacks, &FlameOptions::default(), &mut again).unwrap();
    assert!(svg == again, "rendering is not deterministic");
    check("kvm-lab.svg", &svg);
}

#[test]
fn differential_svg_is_golden() {
    // Two real profiles: the first and second half of the capture.
    let data = capture();
    let mid = data.len() / 2;
    let cut = mid + memchr_blank(&data[mid..]);
    let before = stacks_of(&data[..cut]);
    let after = stacks_of(&data[cut..]);
    let mut svg = Vec::new();
    render_diff(&before, &after, true, &FlameOptions::default(), &mut svg).unwrap();
    check("kvm-lab-diff.svg", &svg);
}

fn memchr_blank(d: &[u8]) -> usize {
    d.windows(2).position(|w| w == b"\n\n").unwrap() + 2
}

#[test]
fn attribution_is_golden_and_finds_the_emulation() {
    let a = Attribution::from_stacks(&stacks_of(&capture()));
    // The lab guests run at CPL0 here, so their time is instruction emulation.
    assert!(a.share(Category::Emulation) > 0.2, "{}", a.to_text());
    assert_eq!(a.exit_handlers[0].name, "pvm_emulate_insn_scrubbed");
    assert!(a
        .vcpu_threads
        .iter()
        .any(|t| t.starts_with("kvmscope-vcpu")));
    let sum: f64 = a.categories.iter().map(|c| c.share).sum();
    assert!((sum - 1.0).abs() < 1e-9);
    let mut json = serde_json::to_vec_pretty(&a).unwrap();
    json.push(b'\n');
    check("kvm-lab-attribution.json", &json);
}

#[test]
fn folded_input_gives_the_same_svg_as_perf_script() {
    let text = std::fs::read(fixtures().join("kvm-lab-collapsed-all.txt")).unwrap();
    let from_folded = folded::parse(&text).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    render(&from_folded, &FlameOptions::default(), &mut a).unwrap();
    render(&stacks_of(&capture()), &FlameOptions::default(), &mut b).unwrap();
    assert!(a == b);
}
