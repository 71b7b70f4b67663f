//! Two captures side by side (field report 003 compared two guest kernels with kvm_stat this
//! way): event rates per second normalised by each capture's duration, the largest changes
//! first, and the findings that appear in only one of them.

use std::collections::BTreeMap;
use std::fmt::Write;

use kvmscope_analysis::Report;
use kvmscope_system::SystemSnapshot;
use serde::Serialize;

use crate::facts::Facts;
use crate::finding::{int, num, Severity};
use crate::{diagnose, DiagnoseError};

/// One capture's side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub name: String,
    pub duration_s: f64,
    pub events: u64,
    pub vcpu_threads: u32,
}

/// One rate in both captures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffRow {
    /// `event kvm:kvm_msr`, `exit MSR_WRITE`, `msr write 0x6e0`, `port out 0x3f8`,
    /// `userspace KVM_EXIT_IO`.
    pub key: String,
    pub a_count: u64,
    pub b_count: u64,
    pub a_per_s: f64,
    pub b_per_s: f64,
    /// `b_per_s - a_per_s`.
    pub change_per_s: f64,
    /// `b_per_s / a_per_s` (`None` when A has none).
    pub ratio: Option<f64>,
}

/// A finding's presence on each side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingDiff {
    pub rule: &'static str,
    pub title: String,
    pub a: Option<Severity>,
    pub b: Option<Severity>,
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub a: Side,
    pub b: Side,
    /// Largest absolute change per second first.
    pub rates: Vec<DiffRow>,
    /// Findings at warning or above on either side, with their severity on both.
    pub findings: Vec<FindingDiff>,
}

fn rates(r: &Report) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for (name, n) in &r.overview.by_name {
        m.insert(format!("event {name}"), *n);
    }
    if let Some(e) = &r.exits {
        for row in &e.rows {
            *m.entry(format!("exit {}", row.reason)).or_default() += row.count;
        }
    }
    for row in &r.accesses.msr {
        let name = row.msr.name.map_or(String::new(), |n| format!(" {n}"));
        *m.entry(format!(
            "msr {} {:#x}{name}",
            if row.write { "write" } else { "read" },
            row.msr.msr
        ))
        .or_default() += row.count;
    }
    for row in &r.accesses.pio {
        *m.entry(format!(
            "port {} {:#x}",
            if row.write { "out" } else { "in" },
            row.port
        ))
        .or_default() += row.count;
    }
    for row in &r.overview.userspace_exits {
        *m.entry(format!("userspace {}", row.name)).or_default() += row.count;
    }
    if let Some(g) = &r.guest {
        for row in &g.msr.rows {
            *m.entry(format!("guest write_msr {:#x}", row.msr))
                .or_default() += row.writes;
        }
        let mut fns: BTreeMap<String, u64> = BTreeMap::new();
        for row in &g.timers.hrtimers {
            *fns.entry(format!("guest hrtimer expiries {}", row.function))
                .or_default() += row.expiries;
        }
        m.extend(fns);
    }
    m
}

/// Compares `a` with `b` (each with the system snapshot of the machine it was taken on).
pub fn compare(
    a: (&str, &Report, Option<&SystemSnapshot>),
    b: (&str, &Report, Option<&SystemSnapshot>),
) -> Comparison {
    let fa = Facts::new(a.1);
    let fb = Facts::new(b.1);
    let ra = rates(a.1);
    let rb = rates(b.1);
    let mut keys: Vec<&String> = ra.keys().chain(rb.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows: Vec<DiffRow> = keys
        .into_iter()
        .map(|k| {
            let ac = ra.get(k).copied().unwrap_or(0);
            let bc = rb.get(k).copied().unwrap_or(0);
            let (ap, bp) = (fa.per_s(ac), fb.per_s(bc));
            DiffRow {
                key: k.clone(),
                a_count: ac,
                b_count: bc,
                a_per_s: ap,
                b_per_s: bp,
                change_per_s: bp - ap,
                ratio: (ap > 0.0).then(|| bp / ap),
            }
        })
        .collect();
    rows.sort_by(|x, y| {
        y.change_per_s
            .abs()
            .total_cmp(&x.change_per_s.abs())
            .then_with(|| x.key.cmp(&y.key))
    });
    let da = diagnose(a.1, a.2);
    let db = diagnose(b.1, b.2);
    let mut findings: BTreeMap<&'static str, FindingDiff> = BTreeMap::new();
    for (side, d) in [(0, &da), (1, &db)] {
        for f in &d.findings {
            let e = findings.entry(f.rule).or_insert_with(|| FindingDiff {
                rule: f.rule,
                title: f.title.clone(),
                a: None,
                b: None,
            });
            if side == 0 {
                e.a = Some(f.severity);
            } else {
                e.b = Some(f.severity);
                e.title = f.title.clone();
            }
        }
    }
    let mut findings: Vec<FindingDiff> = findings
        .into_values()
        .filter(|f| f.a.max(f.b) >= Some(Severity::Warning))
        .collect();
    // Findings in only one capture first, then changed severity, then the rest.
    findings.sort_by_key(|f| (f.a.is_some() && f.b.is_some(), f.a == f.b, f.rule));
    Comparison {
        a: Side {
            name: a.0.into(),
            duration_s: fa.duration_s,
            events: a.1.overview.events,
            vcpu_threads: fa.vcpus,
        },
        b: Side {
            name: b.0.into(),
            duration_s: fb.duration_s,
            events: b.1.overview.events,
            vcpu_threads: fb.vcpus,
        },
        rates: rows,
        findings,
    }
}

/// Pretty JSON.
pub fn json(c: &Comparison) -> Result<String, DiagnoseError> {
    let mut s = serde_json::to_string_pretty(c).map_err(DiagnoseError::Json)?;
    s.push('\n');
    Ok(s)
}

/// A side-by-side table of the `top` largest changes, then the findings.
pub fn text(c: &Comparison, top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A: {} ({:.3} s, {} events, {} busy vCPU thread(s))",
        c.a.name,
        c.a.duration_s,
        int(c.a.events),
        c.a.vcpu_threads
    );
    let _ = writeln!(
        out,
        "B: {} ({:.3} s, {} events, {} busy vCPU thread(s))",
        c.b.name,
        c.b.duration_s,
        int(c.b.events),
        c.b.vcpu_threads
    );
    let _ = writeln!(out, "\nrates per second, largest changes first\n");
    let w = c
        .rates
        .iter()
        .take(top)
        .map(|r| r.key.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "  {:<w$}  {:>12}  {:>12}  {:>13}  {:>8}",
        "WHAT", "A/s", "B/s", "CHANGE/s", "B/A"
    );
    for r in c.rates.iter().take(top) {
        let _ = writeln!(
            out,
            "  {:<w$}  {:>12}  {:>12}  {:>13}  {:>8}",
            r.key,
            num(r.a_per_s),
            num(r.b_per_s),
            format!(
                "{}{}",
                if r.change_per_s >= 0.0 { "+" } else { "" },
                num(r.change_per_s)
            ),
            r.ratio
                .map_or("new".to_string(), |x| format!("{}x", num(x)))
        );
    }
    if c.rates.len() > top {
        let _ = writeln!(
            out,
            "  ... {} more (--top N, or --json for all)",
            c.rates.len() - top
        );
    }
    let _ = writeln!(out, "\nfindings at warning or above");
    if c.findings.is_empty() {
        let _ = writeln!(out, "  none in either capture");
    }
    let sev = |s: Option<Severity>| s.map_or("-", Severity::as_str);
    for f in &c.findings {
        let what = match (f.a, f.b) {
            (Some(_), None) => "only in A",
            (None, Some(_)) => "only in B",
            (a, b) if a != b => "changed",
            _ => "in both",
        };
        let _ = writeln!(
            out,
            "  {:<10} {:<20} A {:<8} B {:<8} {}",
            what,
            f.rule,
            sev(f.a),
            sev(f.b),
            f.title
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testutil::fixture;

    #[test]
    fn timer_storm_against_slow_timer() {
        let a = fixture("timer-storm.txt");
        let b = fixture("hlt-2ms.txt");
        let c = compare(("storm", &a, None), ("slow", &b, None));
        let top = &c.rates[0];
        assert!(top.change_per_s < 0.0, "{top:#?}");
        assert!(
            top.key.contains("kvm_msr")
                || top.key.contains("0x6e0")
                || top.key.contains("wakeup")
                || top.key.contains("hv_timer"),
            "{top:#?}"
        );
        let t = c.findings.iter().find(|f| f.rule == "timer-storm").unwrap();
        assert!(t.a.is_some() && t.b.is_none());
        let h = c
            .findings
            .iter()
            .find(|f| f.rule == "halt-wakeups")
            .unwrap();
        assert_eq!((h.a, h.b), (Some(Severity::Info), Some(Severity::Warning)));
        assert!(text(&c, 10).contains("only in A"));
    }

    #[test]
    fn a_capture_against_itself_changes_nothing() {
        let a = fixture("ipi.txt");
        let c = compare(("a", &a, None), ("a", &a, None));
        assert!(c.rates.iter().all(|r| r.change_per_s == 0.0));
        assert!(c.findings.iter().all(|f| f.a == f.b));
    }
}
