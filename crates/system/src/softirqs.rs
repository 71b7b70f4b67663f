//! `/proc/softirqs`: per-CPU counts of each softirq (`TIMER`, `HRTIMER`, `SCHED`, `RCU`...).
//!
//! Unlike `/proc/interrupts` the header lists every *possible* CPU, online or not.

use serde::{Deserialize, Serialize};

use crate::error::{cpu_header, excerpt, numbered_lines, Error};

const FILE: &str = "/proc/softirqs";

/// A parsed `/proc/softirqs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Softirqs {
    /// CPUs of the header, in column order.
    pub cpus: Vec<u32>,
    /// One row per softirq, in file order.
    pub rows: Vec<SoftirqRow>,
}

/// One softirq and its per-CPU counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftirqRow {
    /// `HI`, `TIMER`, `NET_TX`, `NET_RX`, `BLOCK`, `IRQ_POLL`, `TASKLET`, `SCHED`, `HRTIMER`, `RCU`.
    pub name: String,
    /// One count per CPU of [`Softirqs::cpus`].
    pub counts: Vec<u64>,
}

/// Parses the text of `/proc/softirqs`.
pub fn parse(text: &str) -> Result<Softirqs, Error> {
    let mut lines = numbered_lines(text).filter(|l| !l.text.trim().is_empty());
    let cpus = cpu_header(&mut lines, FILE)?;
    let mut rows = Vec::new();
    for line in lines {
        let (name, rest) = line.text.trim_start().split_once(':').ok_or_else(|| {
            line.error(
                FILE,
                format!("expected \"NAME: counts...\", found {}", excerpt(line.text)),
            )
        })?;
        let counts = rest
            .split_whitespace()
            .map(|t| {
                t.parse::<u64>()
                    .map_err(|_| line.error(FILE, format!("count {} is not a number", excerpt(t))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if counts.len() != cpus.len() {
            return Err(line.error(
                FILE,
                format!(
                    "row {name:?} has {} counts but the header names {} CPUs",
                    counts.len(),
                    cpus.len()
                ),
            ));
        }
        rows.push(SoftirqRow {
            name: name.trim().to_string(),
            counts,
        });
    }
    Ok(Softirqs { cpus, rows })
}

impl Softirqs {
    /// The row with this name.
    pub fn row(&self, name: &str) -> Option<&SoftirqRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// Per-row, per-CPU deltas `after - self` (rows and CPUs matched by name and number;
    /// a counter that went backwards gives 0).
    pub fn diff(&self, after: &Softirqs) -> Softirqs {
        let rows = after
            .rows
            .iter()
            .map(|row| {
                let old = self.row(&row.name);
                let counts = after
                    .cpus
                    .iter()
                    .zip(&row.counts)
                    .map(|(cpu, &now)| {
                        let prev = old
                            .and_then(|o| {
                                let col = self.cpus.iter().position(|c| c == cpu)?;
                                o.counts.get(col).copied()
                            })
                            .unwrap_or(0);
                        now.saturating_sub(prev)
                    })
                    .collect();
                SoftirqRow {
                    name: row.name.clone(),
                    counts,
                }
            })
            .collect();
        Softirqs {
            cpus: after.cpus.clone(),
            rows,
        }
    }
}
