//! The finding model: what a rule says, with the numbers behind it.

use std::fmt;

use serde::Serialize;

/// How bad it is. `Warning` and above make `kvmscope diagnose` exit with status 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to fix on this evidence alone.
    Info,
    /// Costs measurable host CPU or guest latency; fix it when the workload matters.
    Warning,
    /// Dominates what the host does for this VM; fix it first.
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure the rule is that it named the cause, not a coincidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// One signal, or a signal that has innocent explanations.
    Low,
    /// The main signal, above its threshold.
    Medium,
    /// The main signal and a corroborating one (same rate of a second event, a
    /// configuration fact that explains it).
    High,
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        })
    }
}

/// One key of a breakdown (an MSR, a port, a function) with its count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopRow {
    pub key: String,
    pub count: u64,
    pub per_s: f64,
}

/// One number a finding rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// Events per second of trace (and per busy vCPU thread, when per-vCPU makes sense).
    Rate {
        what: String,
        count: u64,
        per_s: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        per_vcpu_s: Option<f64>,
    },
    /// A share, percent.
    Share { what: String, pct: f64 },
    /// A plain count.
    Count { what: String, count: u64 },
    /// A duration, nanoseconds.
    Time { what: String, ns: u64 },
    /// The top keys of a breakdown, most frequent first.
    Top { what: String, rows: Vec<TopRow> },
    /// A fact from the system snapshot or the input.
    Fact { what: String, value: String },
}

impl Evidence {
    pub fn rate(what: impl Into<String>, count: u64, per_s: f64, per_vcpu_s: Option<f64>) -> Self {
        Evidence::Rate {
            what: what.into(),
            count,
            per_s,
            per_vcpu_s,
        }
    }
    pub fn share(what: impl Into<String>, pct: f64) -> Self {
        Evidence::Share {
            what: what.into(),
            pct,
        }
    }
    pub fn count(what: impl Into<String>, count: u64) -> Self {
        Evidence::Count {
            what: what.into(),
            count,
        }
    }
    pub fn fact(what: impl Into<String>, value: impl Into<String>) -> Self {
        Evidence::Fact {
            what: what.into(),
            value: value.into(),
        }
    }
}

/// An integer with thousands separators: 66,300.
pub fn int(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Pretty numbers: 66,300 / 12.5 / 0.03.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v.abs() >= 100.0 {
        let r = v.round() as i64;
        let s = r.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if r < 0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn time(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} us", ns as f64 / 1e3),
        _ => format!("{:.1} ms", ns as f64 / 1e6),
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::Rate {
                what,
                count,
                per_s,
                per_vcpu_s,
            } => {
                write!(f, "{what}: {}/s ({} events", num(*per_s), int(*count))?;
                if let Some(v) = per_vcpu_s {
                    write!(f, ", {}/s per vCPU", num(*v))?;
                }
                f.write_str(")")
            }
            Evidence::Share { what, pct } => write!(f, "{what}: {}%", num(*pct)),
            Evidence::Count { what, count } => write!(f, "{what}: {}", int(*count)),
            Evidence::Time { what, ns } => write!(f, "{what}: {}", time(*ns)),
            Evidence::Top { what, rows } => {
                write!(f, "{what}:")?;
                for (i, r) in rows.iter().enumerate() {
                    write!(
                        f,
                        "{} {} {} ({}/s)",
                        if i == 0 { "" } else { "," },
                        r.key,
                        int(r.count),
                        num(r.per_s)
                    )?;
                }
                Ok(())
            }
            Evidence::Fact { what, value } => write!(f, "{what}: {value}"),
        }
    }
}

/// One change to make, with the command that makes it when there is one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fix {
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl Fix {
    pub fn new(what: impl Into<String>) -> Self {
        Fix {
            what: what.into(),
            command: None,
        }
    }
    pub fn cmd(what: impl Into<String>, command: impl Into<String>) -> Self {
        Fix {
            what: what.into(),
            command: Some(command.into()),
        }
    }
}

/// What a rule found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule's id (`timer-storm`).
    pub rule: &'static str,
    pub title: String,
    pub severity: Severity,
    pub confidence: Confidence,
    /// How far past its warning threshold the main signal is (1.0 = at the threshold), for
    /// ranking findings of equal severity and confidence.
    pub score: f64,
    pub evidence: Vec<Evidence>,
    /// Two or three sentences naming the kernel code at work.
    pub mechanism: String,
    pub fix: Vec<Fix>,
    /// Field reports, kernel documentation, commits.
    pub references: Vec<String>,
}

impl Finding {
    /// A finding with severity from `value` against `warn`/`crit` thresholds (`Info` below
    /// `warn`), score `value / warn`.
    pub fn graded(
        rule: &'static str,
        title: impl Into<String>,
        value: f64,
        warn: f64,
        crit: f64,
    ) -> Self {
        let severity = if value >= crit {
            Severity::Critical
        } else if value >= warn {
            Severity::Warning
        } else {
            Severity::Info
        };
        Finding {
            rule,
            title: title.into(),
            severity,
            confidence: Confidence::Medium,
            score: if warn > 0.0 { value / warn } else { 0.0 },
            evidence: Vec::new(),
            mechanism: String::new(),
            fix: Vec::new(),
            references: Vec::new(),
        }
    }
}
