//! Test helpers: real captures from `tests/fixtures/` decoded into reports.

use std::path::PathBuf;

use kvmscope_analysis::{InputSummary, Report, ReportBuilder};
use kvmscope_system::SystemSnapshot;

use crate::{Finding, Rule, Severity};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A report over `tests/fixtures/diagnose/<name>`, or over `tests/fixtures/<path>` when
/// `name` contains a slash.
pub fn fixture(name: &str) -> Report {
    let path = if name.contains('/') {
        fixtures().join(name)
    } else {
        fixtures().join("diagnose").join(name)
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut b = ReportBuilder::new();
    let stats = kvmscope_trace::text::decode(&bytes[..], |ev| b.observe(ev)).unwrap();
    b.finish(vec![InputSummary::text(name, stats)])
}

/// A snapshot from a folder of flat files named as in `tests/fixtures/system/` (`cmdline`,
/// `config`, `kvm_params`, `isolated`, `nohz_full`, `timer_migration`, `timer_list`).
pub fn flat_snapshot(dir: &str) -> SystemSnapshot {
    use kvmscope_system::*;
    let d = fixtures().join(dir);
    let read = |f: &str| std::fs::read_to_string(d.join(f)).ok();
    let mut s = SystemSnapshot {
        cmdline: read("cmdline").map(|t| cmdline::parse(&t)),
        config: read("config").map(|t| kconfig::parse(&t).unwrap()),
        ..SystemSnapshot::default()
    };
    if let Some(t) = read("kvm_params") {
        s.kvm_params = kvm_params::KvmParams::parse_listing(&t).unwrap();
    }
    s.isolation.isolated = read("isolated").map(|t| cpulist::parse("isolated", &t).unwrap());
    s.isolation.nohz_full = read("nohz_full").map(|t| cpulist::parse("nohz_full", &t).unwrap());
    s.isolation.timer_migration =
        read("timer_migration").map(|t| parse_timer_migration(&t).unwrap());
    s.timer_list = read("timer_list").map(|t| timer_list::parse(&t).unwrap());
    s
}

/// This project's machine (`tests/fixtures/system/x86_64-6.18-pvm/`).
pub fn pvm_snapshot() -> SystemSnapshot {
    flat_snapshot("system/x86_64-6.18-pvm")
}

/// Exactly one finding of `rule`.
pub fn only(rule: &dyn Rule, report: &Report, system: Option<&SystemSnapshot>) -> Finding {
    let mut v = rule.check(report, system);
    assert_eq!(v.len(), 1, "{}: {v:#?}", rule.id());
    v.remove(0)
}

/// Exactly one finding of `rule`, at warning level or above.
pub fn fires(rule: &dyn Rule, report: &Report, system: Option<&SystemSnapshot>) -> Finding {
    let f = only(rule, report, system);
    assert!(f.severity >= Severity::Warning, "{f:#?}");
    f
}

/// Asserts that some evidence of `f` says `text`.
pub fn says(f: &Finding, text: &str) {
    assert!(
        f.evidence.iter().any(|e| e.to_string().contains(text)),
        "no evidence says {text:?}: {f:#?}"
    );
}

/// Asserts that `rule` finds nothing in any of these captures (as for [`fixture`]).
pub fn quiet(rule: &dyn Rule, captures: &[&str]) {
    for name in captures {
        assert!(rule.check(&fixture(name), None).is_empty(), "{name}");
    }
}
