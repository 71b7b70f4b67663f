//! Batch output, pure functions of the model: kvm_stat's summary table (`--once`), log lines
//! with a banner every 20 rows (`--log`), CSV (`--csv`) and JSON lines (`--json`).

use std::fmt::Write as _;

use crate::model::{Model, Row, View};

/// Label column width, as kvm_stat.
pub const LABEL_WIDTH: usize = 40;
/// Log rows between two banners.
pub const BANNER_EVERY: usize = 20;

/// The table header line.
pub fn header() -> String {
    format!(
        " {:<w$} {:>10} {:>6} {:>8}",
        "Event",
        "Total",
        "%Total",
        "CurAvg/s",
        w = LABEL_WIDTH
    )
}

/// One table line (children indented two spaces).
pub fn row_line(r: &Row) -> String {
    let label = if r.parent.is_some() {
        format!("  {}", r.name)
    } else {
        r.name.clone()
    };
    format!(
        " {:<w$} {:>10} {:>6.1} {:>8.0}",
        label,
        r.total,
        r.pct,
        r.rate,
        w = LABEL_WIDTH
    )
}

/// The Total line.
pub fn total_line(total: u64, rate: f64) -> String {
    format!(
        " {:<w$} {:>10} {:>6} {:>8.0}",
        "Total",
        total,
        "",
        rate,
        w = LABEL_WIDTH
    )
}

/// The summary as kvm_stat prints it: title, blank line, header, rows, Total.
pub fn summary(model: &Model, view: &View) -> String {
    let rows = model.rows(view);
    let (t, r) = model.total(&rows);
    let mut s = String::new();
    let _ = writeln!(s, "{}\n", model.title());
    let _ = writeln!(s, "{}", header());
    for row in &rows {
        let _ = writeln!(s, "{}", row_line(row));
    }
    let _ = writeln!(s, "{}", total_line(t, r));
    s
}

/// The summary as CSV: `event,parent,total,pct,rate`.
pub fn summary_csv(model: &Model, view: &View) -> String {
    let mut s = String::from("event,parent,total,pct_total,cur_avg_per_s\n");
    for r in model.rows(view) {
        let _ = writeln!(
            s,
            "{},{},{},{:.1},{:.0}",
            csv_field(&r.name),
            csv_field(r.parent.as_deref().unwrap_or("")),
            r.total,
            r.pct,
            r.rate
        );
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Log mode: the events that make the columns, fixed for a whole run (parents matching the
/// filter, plus their children when drilling down), in catalog order.
pub fn log_columns(model: &Model, view: &View) -> Vec<usize> {
    model
        .keys()
        .iter()
        .enumerate()
        .filter(|(_, k)| {
            let parent_name = match k.parent {
                None => &k.name,
                Some(p) => &model.keys()[p].name,
            };
            (k.parent.is_none() || view.drilldown)
                && view
                    .filter
                    .as_ref()
                    .is_none_or(|re| re.is_match(parent_name))
        })
        .map(|(i, _)| i)
        .collect()
}

/// A log banner: `time` then one right-aligned column per event.
pub fn log_banner(model: &Model, cols: &[usize]) -> String {
    let mut s = format!("{:<20}", "time");
    for &c in cols {
        let name = &model.keys()[c].name;
        let _ = write!(s, " {:>w$}", name, w = name.len().max(10));
    }
    s
}

/// A log row: the time and each column's events in the last interval. None when `skip_zero`
/// and every value is zero.
pub fn log_row(model: &Model, cols: &[usize], time: &str, skip_zero: bool) -> Option<String> {
    let deltas = deltas(model, cols);
    if skip_zero && deltas.iter().all(|&d| d == 0) {
        return None;
    }
    let mut s = format!("{time:<20}");
    for (&c, d) in cols.iter().zip(&deltas) {
        let w = model.keys()[c].name.len().max(10);
        let _ = write!(s, " {d:>w$}");
    }
    Some(s)
}

fn deltas(model: &Model, cols: &[usize]) -> Vec<u64> {
    let view = View {
        drilldown: true,
        ..View::default()
    };
    let rows = model.rows(&view);
    cols.iter()
        .map(|&c| rows.iter().find(|r| r.key == c).map_or(0, |r| r.delta))
        .collect()
}

/// CSV log header: `time,<event>,...`.
pub fn csv_banner(model: &Model, cols: &[usize]) -> String {
    let mut s = String::from("time");
    for &c in cols {
        let _ = write!(s, ",{}", csv_field(&model.keys()[c].name));
    }
    s
}

/// CSV log row.
pub fn csv_row(model: &Model, cols: &[usize], time: &str, skip_zero: bool) -> Option<String> {
    let deltas = deltas(model, cols);
    if skip_zero && deltas.iter().all(|&d| d == 0) {
        return None;
    }
    let mut s = time.to_string();
    for d in deltas {
        let _ = write!(s, ",{d}");
    }
    Some(s)
}

/// One JSON line for the interval that just ended.
pub fn json_line(model: &Model, view: &View, time: &str) -> String {
    let rows = model.rows(view);
    let (total, rate) = model.total(&rows);
    let v = serde_json::json!({
        "time": time,
        "mode": model.mode,
        "scope": model.scope,
        "interval_s": model.interval,
        "events": rows,
        "total": total,
        "total_rate": rate,
    });
    v.to_string()
}

/// UTC time of day and date as `2026-11-21T12:00:00Z`, from seconds since the epoch.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Key, Mode};

    fn model() -> Model {
        let keys = vec![
            Key {
                name: "kvm_exit".into(),
                parent: None,
            },
            Key {
                name: "kvm_exit(HLT)".into(),
                parent: Some(0),
            },
            Key {
                name: "kvm_pio".into(),
                parent: None,
            },
            Key {
                name: "kvm_pio(0x3f8)".into(),
                parent: Some(2),
            },
            Key {
                name: "kvm_msr".into(),
                parent: None,
            },
        ];
        let mut m = Model::new(Mode::Host, "summary", keys, &[0; 5]);
        m.update(&[13988, 6985, 1000, 1000, 0], &[], 1.0);
        m
    }

    #[test]
    fn summary_matches_kvm_stat_layout() {
        let v = View {
            drilldown: true,
            ..View::default()
        };
        let s = summary(&model(), &v);
        let expected = "\
kvm statistics - summary

 Event                                         Total %Total CurAvg/s
 kvm_exit                                      13988   93.3    13988
   kvm_exit(HLT)                                6985   49.9     6985
 kvm_pio                                        1000    6.7     1000
   kvm_pio(0x3f8)                               1000  100.0     1000
 kvm_msr                                           0    0.0        0
 Total                                         14988           14988
";
        assert_eq!(s, expected);
        let z = View {
            skip_zero: true,
            ..View::default()
        };
        assert!(!summary(&model(), &z).contains("kvm_msr"));
    }

    #[test]
    fn log_csv_json() {
        let m = model();
        let v = View::default();
        let cols = log_columns(&m, &v);
        assert_eq!(cols, vec![0, 2, 4]);
        assert_eq!(
            log_banner(&m, &cols),
            "time                   kvm_exit    kvm_pio    kvm_msr"
        );
        assert_eq!(
            log_row(&m, &cols, "2026-11-21T12:00:00Z", false).unwrap(),
            "2026-11-21T12:00:00Z      13988       1000          0"
        );
        assert_eq!(csv_banner(&m, &cols), "time,kvm_exit,kvm_pio,kvm_msr");
        assert_eq!(csv_row(&m, &cols, "t", false).unwrap(), "t,13988,1000,0");
        assert_eq!(
            summary_csv(&m, &View { skip_zero: true, drilldown: true, ..View::default() }),
            "event,parent,total,pct_total,cur_avg_per_s\nkvm_exit,,13988,93.3,13988\nkvm_exit(HLT),kvm_exit,6985,49.9,6985\nkvm_pio,,1000,6.7,1000\nkvm_pio(0x3f8),kvm_pio,1000,100.0,1000\n"
        );
        let j: serde_json::Value = serde_json::from_str(&json_line(
            &m,
            &View {
                skip_zero: true,
                ..View::default()
            },
            "t",
        ))
        .unwrap();
        assert_eq!(j["events"][1]["name"], "kvm_pio");
        assert_eq!(j["events"][1]["total"], 1000);
        assert_eq!(j["total"], 14988);
        assert_eq!(j["mode"], "host");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_262_400), "2026-11-21T12:00:00Z");
    }
}
