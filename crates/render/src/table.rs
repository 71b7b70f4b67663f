//! A minimal column-aligned table: right-aligned numbers, left-aligned first column.

use std::fmt::Write;

#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns aligned left (by default only the first).
    left: Vec<bool>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        let mut left = vec![false; header.len()];
        if let Some(first) = left.first_mut() {
            *first = true;
        }
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
            left,
        }
    }

    pub fn left(mut self, col: usize) -> Self {
        if let Some(l) = self.left.get_mut(col) {
            *l = true;
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, out: &mut String, indent: &str) {
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |out: &mut String, cells: &[String]| {
            out.push_str(indent);
            for (i, c) in cells.iter().enumerate().take(cols) {
                if i > 0 {
                    out.push_str("  ");
                }
                let pad = width[i].saturating_sub(c.chars().count());
                if self.left[i] {
                    out.push_str(c);
                    if i + 1 < cols {
                        out.extend(std::iter::repeat_n(' ', pad));
                    }
                } else {
                    out.extend(std::iter::repeat_n(' ', pad));
                    out.push_str(c);
                }
            }
            let trimmed = out.trim_end_matches(' ').len();
            out.truncate(trimmed);
            out.push('\n');
        };
        line(out, &self.header);
        for row in &self.rows {
            line(out, row);
        }
    }
}

/// Microseconds with two decimals, as perf kvm stat prints latencies.
pub fn us(ns: impl Into<f64>) -> String {
    format!("{:.2}us", ns.into() / 1000.0)
}

pub fn pct(v: f64) -> String {
    format!("{v:.2}%")
}

/// A rate per second over `duration_ns`, or `-` when the duration is zero.
pub fn rate(count: u64, duration_ns: u64) -> String {
    if duration_ns == 0 {
        return "-".into();
    }
    let r = count as f64 * 1e9 / duration_ns as f64;
    if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

pub fn heading(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n{title}\n");
}
