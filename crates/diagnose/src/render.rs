//! Renderers: pure functions from a [`Diagnosis`] to text.

use std::fmt::Write;

use crate::finding::{int, Severity};
use crate::{DiagnoseError, Diagnosis};

/// Pretty JSON (deterministic: fields in declaration order, findings ranked).
pub fn json(d: &Diagnosis) -> Result<String, DiagnoseError> {
    let mut s = serde_json::to_string_pretty(d).map_err(DiagnoseError::Json)?;
    s.push('\n');
    Ok(s)
}

fn wrap(out: &mut String, indent: &str, text: &str, width: usize) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > width {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}{line}");
    }
}

/// The terminal report: a summary line, then each finding with its evidence, mechanism, fix
/// and references.
pub fn text(d: &Diagnosis) -> String {
    let mut out = String::new();
    let count = |s: Severity| d.findings.iter().filter(|f| f.severity == s).count();
    let _ = writeln!(
        out,
        "kvmscope diagnose: {} finding(s): {} critical, {} warning, {} info; {:.3} s of trace, {} events ({} KVM, {} guest-side), {} busy vCPU thread(s){}",
        d.findings.len(),
        count(Severity::Critical),
        count(Severity::Warning),
        count(Severity::Info),
        d.duration_s,
        int(d.events),
        int(d.kvm_events),
        int(d.guest_events),
        d.vcpu_threads,
        if d.system_snapshot { "; system snapshot of the traced machine used" } else { "; no system snapshot (configuration checks skipped)" }
    );
    if !d.has_warning() {
        let _ = writeln!(
            out,
            "\nNothing at warning level or above: no known pathology in this capture."
        );
    }
    for (i, f) in d.findings.iter().enumerate() {
        let _ = writeln!(
            out,
            "\n{}. [{}] {}\n   rule {} · confidence {}",
            i + 1,
            f.severity.as_str().to_uppercase(),
            f.title,
            f.rule,
            f.confidence
        );
        let _ = writeln!(out, "   evidence:");
        for e in &f.evidence {
            wrap(&mut out, "     ", &format!("- {e}"), 110);
        }
        let _ = writeln!(out, "   mechanism:");
        wrap(&mut out, "     ", &f.mechanism, 110);
        let _ = writeln!(out, "   fix:");
        for x in &f.fix {
            wrap(&mut out, "     ", &format!("- {}", x.what), 110);
            if let Some(c) = &x.command {
                let _ = writeln!(out, "         $ {c}");
            }
        }
        let _ = writeln!(out, "   references:");
        for r in &f.references {
            let _ = writeln!(out, "     - {r}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::fixture;

    #[test]
    fn text_and_json_show_the_top_finding() {
        let d = crate::diagnose(&fixture("timer-storm.txt"), None);
        let t = text(&d);
        assert!(
            t.contains("1. [CRITICAL] Guest timer storm")
                || t.contains("1. [WARNING] Guest timer storm"),
            "{t}"
        );
        let j: serde_json::Value = serde_json::from_str(&json(&d).unwrap()).unwrap();
        assert_eq!(j["findings"][0]["rule"], "timer-storm");
        assert!(j["findings"][0]["evidence"][0]["per_s"].as_f64().unwrap() > 1000.0);
    }

    #[test]
    fn healthy_capture_says_nothing_found() {
        let d = crate::diagnose(&fixture("compute.txt"), None);
        assert!(!d.has_warning(), "{d:#?}");
        assert!(text(&d).contains("Nothing at warning level"));
    }
}
