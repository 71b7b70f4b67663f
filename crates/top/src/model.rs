//! The live model: cumulative counts, per-interval rates, the rows shown (sorted, filtered,
//! with drill-down children) and the per-target (vCPU thread or CPU) breakdown. Plain data,
//! no I/O: the TUI and the batch renderers draw from it.

use std::collections::VecDeque;

use crate::catalog::{Key, Mode};

/// How many rates each row remembers for its sparkline.
pub const HISTORY: usize = 240;

/// Sort order (`o` toggles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum SortBy {
    /// By CurAvg/s, then Total (kvm_stat's default).
    #[default]
    Rate,
    /// By Total, then CurAvg/s.
    Total,
}

/// What the user chose to see.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Show drill-down children (`x`).
    pub drilldown: bool,
    /// Sort order (`o`).
    pub sort: SortBy,
    /// Only events whose name matches (`f`).
    pub filter: Option<regex::Regex>,
    /// Hide events with zero Total and zero CurAvg/s (`-z`).
    pub skip_zero: bool,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    /// Index of the counter.
    #[serde(skip)]
    pub key: usize,
    /// `kvm_exit` or `kvm_exit(HLT)`.
    pub name: String,
    /// The parent's name for a child.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Since start (or the last reset).
    pub total: u64,
    /// Share of all parents' totals; for a child, share of its parent's total.
    pub pct: f64,
    /// Events in the last interval.
    pub delta: u64,
    /// Events per second in the last interval.
    pub rate: f64,
}

/// Counts of one target (a vCPU thread or a CPU).
#[derive(Debug, Clone)]
struct TargetState {
    label: String,
    base: Vec<u64>,
    prev: Vec<u64>,
    cur: Vec<u64>,
}

/// One line of the per-vCPU (per-CPU) view.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TargetRow {
    /// `tid 1234 CPU 0/KVM` or `cpu 3`.
    pub label: String,
    /// Sum over the shown parent events since start.
    pub total: u64,
    /// Sum over the shown parent events per second.
    pub rate: f64,
    /// The selected event since start.
    pub event_total: u64,
    /// The selected event per second.
    pub event_rate: f64,
}

/// The model.
#[derive(Debug, Clone)]
pub struct Model {
    pub mode: Mode,
    /// What is counted: `summary`, or `pid 1234 (web1)`.
    pub scope: String,
    keys: Vec<Key>,
    base: Vec<u64>,
    prev: Vec<u64>,
    cur: Vec<u64>,
    /// Length of the last interval in seconds (0 before the second sample).
    pub interval: f64,
    /// Samples taken.
    pub samples: u64,
    history: Vec<VecDeque<f64>>,
    targets: Vec<TargetState>,
}

impl Model {
    /// A model for these counters; `first` is the first reading (the baseline).
    pub fn new(mode: Mode, scope: impl Into<String>, keys: Vec<Key>, first: &[u64]) -> Model {
        let n = keys.len();
        let first = fit(first, n);
        Model {
            mode,
            scope: scope.into(),
            keys,
            base: first.clone(),
            prev: first.clone(),
            cur: first,
            interval: 0.0,
            samples: 0,
            history: vec![VecDeque::new(); n],
            targets: Vec::new(),
        }
    }

    /// The window title, kvm_stat's for host mode.
    pub fn title(&self) -> String {
        match self.mode {
            Mode::Host => format!("kvm statistics - {}", self.scope),
            Mode::Guest => format!("guest statistics - {}", self.scope),
        }
    }

    /// The counter keys.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Takes a new reading, `secs` after the previous one. `per_target` gives each target's
    /// counts (label, counts in key order); targets seen for the first time start at their
    /// reading.
    pub fn update(&mut self, counts: &[u64], per_target: &[(String, Vec<u64>)], secs: f64) {
        let n = self.keys.len();
        self.prev = std::mem::replace(&mut self.cur, fit(counts, n));
        // A counter set that was rebuilt may restart lower: never go backwards.
        for i in 0..n {
            if self.cur[i] < self.prev[i] {
                let d = self.prev[i] - self.cur[i];
                self.base[i] = self.base[i].saturating_sub(d);
                self.prev[i] = self.cur[i];
            }
        }
        self.interval = secs;
        self.samples += 1;
        for i in 0..n {
            let r = self.rate_of(i);
            let h = &mut self.history[i];
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(r);
        }
        for (label, c) in per_target {
            let c = fit(c, n);
            match self.targets.iter_mut().find(|t| &t.label == label) {
                Some(t) => t.prev = std::mem::replace(&mut t.cur, c),
                None => self.targets.push(TargetState {
                    label: label.clone(),
                    base: c.clone(),
                    prev: c.clone(),
                    cur: c,
                }),
            }
        }
    }

    /// `r`: totals start again from now.
    pub fn reset(&mut self) {
        self.base = self.cur.clone();
        for t in &mut self.targets {
            t.base = t.cur.clone();
        }
        for h in &mut self.history {
            h.clear();
        }
    }

    fn total_of(&self, i: usize) -> u64 {
        self.cur[i].saturating_sub(self.base[i])
    }

    fn delta_of(&self, i: usize) -> u64 {
        self.cur[i].saturating_sub(self.prev[i])
    }

    fn rate_of(&self, i: usize) -> f64 {
        if self.interval > 0.0 {
            self.delta_of(i) as f64 / self.interval
        } else {
            0.0
        }
    }

    fn shown_parent(&self, i: usize, view: &View) -> bool {
        self.keys[i].parent.is_none()
            && view
                .filter
                .as_ref()
                .is_none_or(|re| re.is_match(&self.keys[i].name))
    }

    fn cmp(&self, view: &View, a: usize, b: usize) -> std::cmp::Ordering {
        let (ra, rb) = (self.rate_of(a), self.rate_of(b));
        let (ta, tb) = (self.total_of(a), self.total_of(b));
        let by_rate = rb.total_cmp(&ra);
        let by_total = tb.cmp(&ta);
        let first = match view.sort {
            SortBy::Rate => by_rate.then(by_total),
            SortBy::Total => by_total.then(by_rate),
        };
        first.then_with(|| self.keys[a].name.cmp(&self.keys[b].name))
    }

    /// The rows to show: parents sorted by CurAvg/s then Total (or the reverse), each
    /// followed by its non-zero children when drilling down.
    pub fn rows(&self, view: &View) -> Vec<Row> {
        let n = self.keys.len();
        let mut parents: Vec<usize> = (0..n).filter(|&i| self.shown_parent(i, view)).collect();
        if view.skip_zero {
            parents.retain(|&i| self.total_of(i) > 0 || self.delta_of(i) > 0);
        }
        parents.sort_by(|&a, &b| self.cmp(view, a, b));
        let all: u64 = parents.iter().map(|&i| self.total_of(i)).sum();
        let mut out = Vec::new();
        for p in parents {
            out.push(self.row(p, all, None));
            if view.drilldown {
                let mut kids: Vec<usize> = (0..n)
                    .filter(|&c| self.keys[c].parent == Some(p))
                    .filter(|&c| self.total_of(c) > 0 || self.delta_of(c) > 0)
                    .collect();
                kids.sort_by(|&a, &b| self.cmp(view, a, b));
                let ptotal = self.total_of(p);
                for c in kids {
                    out.push(self.row(c, ptotal, Some(self.keys[p].name.clone())));
                }
            }
        }
        out
    }

    fn row(&self, i: usize, of: u64, parent: Option<String>) -> Row {
        let total = self.total_of(i);
        Row {
            key: i,
            name: self.keys[i].name.clone(),
            parent,
            total,
            pct: if of > 0 {
                total as f64 * 100.0 / of as f64
            } else {
                0.0
            },
            delta: self.delta_of(i),
            rate: self.rate_of(i),
        }
    }

    /// The Total line: (sum of the shown parents' totals, sum of their rates).
    pub fn total(&self, rows: &[Row]) -> (u64, f64) {
        rows.iter()
            .filter(|r| r.parent.is_none())
            .fold((0, 0.0), |(t, r), row| (t + row.total, r + row.rate))
    }

    /// The recent rates of counter `key`, oldest first.
    pub fn history(&self, key: usize) -> Vec<f64> {
        self.history
            .get(key)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    /// True when per-target counts exist.
    pub fn has_targets(&self) -> bool {
        !self.targets.is_empty()
    }

    /// The per-target view: for each target the sum over the shown parent events and the
    /// counts of `key`, sorted by rate then total then label.
    pub fn target_rows(&self, view: &View, key: Option<usize>) -> Vec<TargetRow> {
        let parents: Vec<usize> = (0..self.keys.len())
            .filter(|&i| self.shown_parent(i, view))
            .collect();
        let rate = |d: u64| {
            if self.interval > 0.0 {
                d as f64 / self.interval
            } else {
                0.0
            }
        };
        let mut out: Vec<TargetRow> = self
            .targets
            .iter()
            .map(|t| {
                let tot = |i: usize| t.cur[i].saturating_sub(t.base[i]);
                let del = |i: usize| t.cur[i].saturating_sub(t.prev[i]);
                TargetRow {
                    label: t.label.clone(),
                    total: parents.iter().map(|&i| tot(i)).sum(),
                    rate: rate(parents.iter().map(|&i| del(i)).sum()),
                    event_total: key.map_or(0, tot),
                    event_rate: key.map_or(0.0, |k| rate(del(k))),
                }
            })
            .collect();
        if view.skip_zero {
            out.retain(|r| r.total > 0 || r.rate > 0.0);
        }
        out.sort_by(|a, b| {
            b.rate
                .total_cmp(&a.rate)
                .then(b.total.cmp(&a.total))
                .then_with(|| a.label.cmp(&b.label))
        });
        out
    }
}

fn fit(v: &[u64], n: usize) -> Vec<u64> {
    let mut out = v.to_vec();
    out.resize(n, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<Key> {
        vec![
            Key {
                name: "kvm_exit".into(),
                parent: None,
            },
            Key {
                name: "kvm_exit(HLT)".into(),
                parent: Some(0),
            },
            Key {
                name: "kvm_exit(MSR_WRITE)".into(),
                parent: Some(0),
            },
            Key {
                name: "kvm_pio".into(),
                parent: None,
            },
        ]
    }

    #[test]
    fn totals_rates_and_order() {
        let mut m = Model::new(Mode::Host, "summary", keys(), &[10, 5, 5, 0]);
        m.update(&[110, 45, 65, 300], &[], 2.0);
        let v = View {
            drilldown: true,
            ..View::default()
        };
        let rows = m.rows(&v);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kvm_pio",
                "kvm_exit",
                "kvm_exit(MSR_WRITE)",
                "kvm_exit(HLT)"
            ]
        );
        assert_eq!(rows[0].total, 300);
        assert_eq!(rows[0].rate, 150.0);
        assert_eq!(rows[0].pct, 75.0);
        assert_eq!(rows[2].pct, 60.0);
        assert_eq!(m.total(&rows), (400, 200.0));
        let by_total = View {
            sort: SortBy::Total,
            ..View::default()
        };
        assert_eq!(m.rows(&by_total)[0].name, "kvm_pio");
        m.reset();
        m.update(&[110, 45, 65, 300], &[], 1.0);
        let z = View {
            skip_zero: true,
            ..View::default()
        };
        assert!(m.rows(&z).is_empty());
    }

    #[test]
    fn filter_and_targets() {
        let mut m = Model::new(Mode::Host, "pid 1", keys(), &[0; 4]);
        let t = |a: u64, b: u64| vec![("tid 1".to_string(), vec![a, 0, 0, b])];
        m.update(&[0; 4], &t(0, 0), 1.0);
        m.update(&[7, 0, 0, 3], &t(7, 3), 1.0);
        let v = View {
            filter: Some(regex::Regex::new("pio").unwrap()),
            ..View::default()
        };
        let rows = m.rows(&v);
        assert_eq!(rows.len(), 1);
        let tr = m.target_rows(&v, Some(3));
        assert_eq!(tr[0].total, 3);
        assert_eq!(tr[0].event_rate, 3.0);
        assert_eq!(m.history(3), vec![0.0, 3.0]);
    }
}
