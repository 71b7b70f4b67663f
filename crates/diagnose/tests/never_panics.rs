//! Diagnosis and its renderers never panic, whatever the report: reports built from real
//! captures cut at arbitrary points, with lines dropped, timestamps collapsed (zero duration)
//! or shuffled, several captures mixed, with or without a system snapshot.

use kvmscope_analysis::{InputSummary, ReportBuilder};
use proptest::prelude::*;

fn lines() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/diagnose");
    let mut out = Vec::new();
    for name in [
        "timer-storm.txt",
        "ipi.txt",
        "cr3-6-roots.txt",
        "pio.txt",
        "msr-pmu.txt",
        "pagefault.txt",
        "msr-overflowed.txt",
    ] {
        let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        out.extend(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    out
}

fn report(text: &str, lost: u64) -> kvmscope_analysis::Report {
    let mut b = ReportBuilder::new();
    let stats = kvmscope_trace::text::decode(text.as_bytes(), |ev| b.observe(ev)).unwrap();
    b.finish(vec![InputSummary {
        lost_total: lost,
        ..InputSummary::text("p", stats)
    }])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn diagnose_never_panics(
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..400),
        cut in any::<prop::sample::Index>(),
        same_ts in any::<bool>(),
        lost in 0u64..3,
        snapshot in any::<bool>(),
    ) {
        let all = lines();
        let mut text = String::new();
        for p in &picks {
            let mut l = p.get(&all).clone();
            if same_ts {
                if let Some(i) = l.find(": ") {
                    // Collapse every timestamp to one value: a zero-length capture.
                    let start = l[..i].rfind(' ').map_or(0, |s| s + 1);
                    l.replace_range(start..i, "100.000000");
                }
            }
            text.push_str(&l);
            text.push('\n');
        }
        let end = if text.is_empty() { 0 } else { cut.index(text.len()) };
        let end = (0..=end).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let r = report(&text[..end], lost);
        let sys = kvmscope_system::SystemSnapshot::default();
        let d = kvmscope_diagnose::diagnose(&r, snapshot.then_some(&sys));
        let _ = kvmscope_diagnose::render::text(&d);
        kvmscope_diagnose::render::json(&d).unwrap();
        let c = kvmscope_diagnose::diff::compare(("a", &r, None), ("b", &report(&text, 0), Some(&sys)));
        let _ = kvmscope_diagnose::diff::text(&c, 5);
        for f in &d.findings {
            prop_assert!(f.score.is_finite());
        }
    }
}
