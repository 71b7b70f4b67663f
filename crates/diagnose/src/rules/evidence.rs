//! Incomplete evidence: lost events, cut-off or unreadable input, a capture too short or
//! without KVM activity. The other rules' silence means little then; this rule says so.

use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;

use crate::facts::Facts;
use crate::finding::{Confidence, Evidence, Finding, Fix, Severity};
use crate::rules::IncompleteEvidence;

/// A capture shorter than this gives rates that one burst can dominate: 0.2 s holds 50 ticks of
/// a HZ=250 guest and ~2,000 exits of the lab's slowest storm.
pub const MIN_DURATION_S: f64 = 0.2;
/// Fewer events than this in the whole capture is an excerpt, not a recording: no rule can reach
/// its 50-event minimum on more than a couple of signals.
pub const MIN_TOTAL_EVENTS: u64 = 200;
/// Unreadable lines above this share make the counts unreliable.
pub const MAX_UNREADABLE_PCT: f64 = 1.0;

pub fn check(f: &Facts, report: &Report, _system: Option<&SystemSnapshot>) -> Vec<Finding> {
    let mut problems: Vec<(Severity, String)> = Vec::new();
    let mut evidence = Vec::new();
    let mut fix = Vec::new();
    let lost: u64 = report.inputs.iter().map(|i| i.lost_total).sum();
    if lost > 0 {
        problems.push((
            Severity::Warning,
            format!(
                "{lost} events were lost (the ring buffer was full): every count is a lower bound"
            ),
        ));
        evidence.push(Evidence::count("lost events", lost));
        fix.push(Fix::cmd(
            "record with larger per-CPU buffers or fewer events",
            "kvmscope record --buffer-kb 65536 -e kvm ...",
        ));
    }
    for i in &report.inputs {
        if let Some(at) = i.read.truncated_at {
            problems.push((
                Severity::Warning,
                format!("{} is cut off at byte {at}", i.path),
            ));
        }
        let bad = i.read.unknown_lines + i.read.undecoded;
        if bad > 0 && crate::facts::pct(bad as f64, i.read.lines.max(1) as f64) > MAX_UNREADABLE_PCT
        {
            problems.push((
                Severity::Warning,
                format!(
                    "{}: {bad} of {} lines could not be read",
                    i.path, i.read.lines
                ),
            ));
        }
    }
    if f.kvm_events == 0 && f.guest_events == 0 {
        problems.push((Severity::Info, "no KVM activity: the capture holds no kvm/kvmmmu events and no guest-side msr/timer/ipi events (no VM ran, or the events were not enabled)".into()));
        fix.push(Fix::cmd(
            "record while the VM is busy, with the kvm events enabled",
            "kvmscope diagnose --live 10s   # or --lab timer-storm to see a known pathology",
        ));
    } else if report.overview.events < MIN_TOTAL_EVENTS {
        problems.push((
            Severity::Info,
            format!(
                "only {} events: too few for any rate to mean much",
                report.overview.events
            ),
        ));
        fix.push(Fix::cmd(
            "record for a few seconds while the VM is busy",
            "kvmscope diagnose --live 5s",
        ));
    } else if f.duration_s < MIN_DURATION_S {
        problems.push((
            Severity::Info,
            format!(
                "the capture spans only {:.3} s: rates are extrapolated from a short burst",
                f.duration_s
            ),
        ));
        fix.push(Fix::cmd(
            "record for a few seconds",
            "kvmscope diagnose --live 5s",
        ));
    }
    if problems.is_empty() {
        return Vec::new();
    }
    evidence.push(Evidence::fact(
        "capture span",
        format!("{:.3} s", f.duration_s),
    ));
    evidence.push(Evidence::count("events", report.overview.events));
    for (sev, p) in &problems {
        evidence.push(Evidence::fact(format!("problem ({sev})"), p.clone()));
    }
    let severity = problems.iter().map(|p| p.0).max().unwrap_or(Severity::Info);
    // Lost, cut-off or unreadable input is partial data; a short or small capture is complete
    // but thin.
    let title = if severity > Severity::Info {
        "Incomplete evidence: the findings (and their absence) rest on partial data"
    } else {
        "Thin evidence: the findings (and their absence) rest on a short or small capture"
    };
    vec![Finding {
        rule: IncompleteEvidence::ID,
        title: title.into(),
        severity,
        confidence: Confidence::High,
        // Ranked after pathologies of the same severity.
        score: 0.0,
        evidence,
        mechanism: if lost > 0 {
            "Tracepoints write into per-CPU ring buffers; when the reader falls behind, the kernel drops \
             events (ring_buffer_lock_reserve fails, counted in per_cpu/cpuN/stats as overrun/dropped). Rates \
             and shares computed from what remains are lower bounds, and a rule that stays quiet may have \
             missed its signal."
        } else {
            "Every rate here is a count divided by the capture's span (first to last event). A short or \
             sparse capture shows a burst, not the VM's steady behaviour, and a rule that stays quiet may \
             simply not have seen its signal."
        }
        .into(),
        fix,
        references: vec!["Documentation/trace/ftrace.rst (buffer_size_kb, per_cpu/cpuN/stats)".into()],
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::{fixture, says};
    use crate::Rule;

    #[test]
    fn fires_on_a_capture_that_overflowed_its_buffer() {
        // 64 KiB per CPU in overwrite mode: 2,446 of 40,001 events kept.
        let r = fixture("msr-overflowed.txt");
        let v = IncompleteEvidence.check(&r, None);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].severity, Severity::Warning, "{v:#?}");
        says(&v[0], "lost events: 37,555");
        assert!(v[0].title.contains("partial data"), "{}", v[0].title);
    }

    #[test]
    fn fires_on_short_captures_at_info_only() {
        let v = IncompleteEvidence.check(&fixture("timer-storm.txt"), None);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].severity, Severity::Info);
        // Complete but short: not called partial.
        assert!(v[0].title.starts_with("Thin evidence"), "{}", v[0].title);
    }

    #[test]
    fn fires_when_there_is_no_kvm_activity() {
        let r = fixture("system/traces/guest-storms.trace");
        // guest-side events count as activity; an empty report does not.
        assert!(IncompleteEvidence
            .check(&r, None)
            .iter()
            .all(|f| !f.title.is_empty()));
        let mut empty = r.clone();
        empty.overview.by_name.clear();
        let v = IncompleteEvidence.check(&empty, None);
        says(&v[0], "no KVM activity");
    }

    #[test]
    fn stays_quiet_on_a_long_complete_capture() {
        assert!(IncompleteEvidence
            .check(&fixture("hlt-2ms.txt"), None)
            .is_empty());
    }
}
