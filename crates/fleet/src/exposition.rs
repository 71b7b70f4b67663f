//! The Prometheus text exposition format, version 0.0.4: `# HELP`, `# TYPE`, then one line
//! per sample, label values escaped (`\\`, `\"`, `\n`), histograms as cumulative `_bucket`
//! lines with `le`, `_sum` and `_count`. Families are written in the order given; samples
//! of one family must be contiguous, which [`Family`] guarantees by construction.

use std::fmt::Write;

/// A metric type of the exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Label pairs of one sample, in the order written.
pub type Labels = Vec<(&'static str, String)>;

/// One histogram: cumulative counts per upper bound (`le`), plus sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// (upper bound, cumulative count), ascending; `+Inf` is added from `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observed values, when known (the line is left out otherwise).
    pub sum: Option<f64>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Scalar(f64),
    Histogram(Histogram),
}

/// One metric family: name, help, type, samples.
#[derive(Debug, Clone)]
pub struct Family {
    name: String,
    help: String,
    kind: Kind,
    samples: Vec<(Labels, Value)>,
}

impl Family {
    /// A family; `name` must match `[a-zA-Z_:][a-zA-Z0-9_:]*` (see [`metric_name`]).
    pub fn new(name: impl Into<String>, kind: Kind, help: impl Into<String>) -> Family {
        Family {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a counter or gauge sample.
    pub fn push(&mut self, labels: Labels, value: f64) {
        self.samples.push((labels, Value::Scalar(value)));
    }

    /// Adds a histogram sample.
    pub fn push_histogram(&mut self, labels: Labels, h: Histogram) {
        self.samples.push((labels, Value::Histogram(h)));
    }

    /// Number of samples (series; a histogram counts once).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when the family has no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The family's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A metric or label name made valid: characters outside `[a-zA-Z0-9_]` become `_`, and a
/// leading digit gets a `_` in front.
pub fn metric_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn number(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn labels(ls: &Labels, extra: Option<(&str, &str)>, out: &mut String) {
    if ls.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in ls.iter().map(|(k, v)| (*k, v.as_str())).chain(extra) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label(v, out);
        out.push('"');
    }
    out.push('}');
}

/// Writes the families in the text format (families without samples are left out).
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.is_empty()) {
        out.push_str("# HELP ");
        out.push_str(&f.name);
        out.push(' ');
        escape_help(&f.help, &mut out);
        out.push_str("\n# TYPE ");
        out.push_str(&f.name);
        out.push(' ');
        out.push_str(f.kind.as_str());
        out.push('\n');
        for (ls, v) in &f.samples {
            match v {
                Value::Scalar(x) => {
                    out.push_str(&f.name);
                    labels(ls, None, &mut out);
                    out.push(' ');
                    number(*x, &mut out);
                    out.push('\n');
                }
                Value::Histogram(h) => {
                    let mut le = String::new();
                    for (bound, n) in h
                        .buckets
                        .iter()
                        .copied()
                        .chain(std::iter::once((f64::INFINITY, h.count)))
                    {
                        le.clear();
                        number(bound, &mut le);
                        out.push_str(&f.name);
                        out.push_str("_bucket");
                        labels(ls, Some(("le", &le)), &mut out);
                        out.push(' ');
                        number(n as f64, &mut out);
                        out.push('\n');
                    }
                    for (suffix, x) in [("_sum", h.sum), ("_count", Some(h.count as f64))] {
                        let Some(x) = x else {
                            continue;
                        };
                        out.push_str(&f.name);
                        out.push_str(suffix);
                        labels(ls, None, &mut out);
                        out.push(' ');
                        number(x, &mut out);
                        out.push('\n');
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_escaping() {
        let mut c = Family::new("kvmscope_pio_total", Kind::Counter, "Port IO.\nper port");
        c.push(
            vec![("vm", "a\"b\\c\nd".into()), ("port", "0x3f8".into())],
            5.0,
        );
        let mut g = Family::new("kvmscope_up", Kind::Gauge, "up");
        g.push(vec![], 1.0);
        g.push(vec![("x", "y".into())], 0.25);
        let empty = Family::new("kvmscope_none", Kind::Gauge, "nothing");
        let text = render(&[c, empty, g]);
        assert_eq!(
            text,
            "# HELP kvmscope_pio_total Port IO.\\nper port\n# TYPE kvmscope_pio_total counter\n\
             kvmscope_pio_total{vm=\"a\\\"b\\\\c\\nd\",port=\"0x3f8\"} 5\n\
             # HELP kvmscope_up up\n# TYPE kvmscope_up gauge\nkvmscope_up 1\nkvmscope_up{x=\"y\"} 0.25\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf() {
        let mut h = Family::new("halt_poll_seconds", Kind::Histogram, "h");
        h.push_histogram(
            vec![("vm", "v".into())],
            Histogram {
                buckets: vec![(0.5, 1), (1.0, 3)],
                sum: Some(2.5),
                count: 4,
            },
        );
        let text = render(&[h]);
        assert!(text.contains("halt_poll_seconds_bucket{vm=\"v\",le=\"0.5\"} 1\n"));
        assert!(text.contains("halt_poll_seconds_bucket{vm=\"v\",le=\"1\"} 3\n"));
        assert!(text.contains("halt_poll_seconds_bucket{vm=\"v\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("halt_poll_seconds_sum{vm=\"v\"} 2.5\n"));
        assert!(text.contains("halt_poll_seconds_count{vm=\"v\"} 4\n"));
    }

    #[test]
    fn names_are_made_valid() {
        assert_eq!(metric_name("halt_poll_success_ns"), "halt_poll_success_ns");
        assert_eq!(metric_name("a-b.c"), "a_b_c");
        assert_eq!(metric_name("9x"), "_9x");
    }
}
