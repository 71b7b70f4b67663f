//! perf kvm stat as the oracle: its report of a recording, side by side with kvmscope's
//! report of the same recording (`perf script --ns` of perf's own perf.data) and of
//! kvmscope's own trace.dat of the same run.
//!
//! perf counts an exit (or an MMIO/PIO/MSR access) when its handling ends (the next
//! `kvm_entry` on the vCPU thread), so its Samples are kvmscope's *paired* samples; an exit
//! with no entry after it (the vCPU's last exit, when the VMM ends the VM) is in kvmscope's
//! exit count but not in perf's. perf prints times in microseconds with two decimals.

use std::path::Path;

use kvmscope_analysis::{EventFilter, Report, ReportBuilder};
use serde::Serialize;

/// One row of `perf kvm stat report`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfRow {
    pub key: String,
    pub samples: u64,
    pub min_us: f64,
    pub max_us: f64,
    pub avg_us: f64,
}

/// The rows of a `perf kvm stat report` text (any `--event`): the lines after the header
/// (`... Samples  Samples%  Time%  Min Time  Max Time  Avg time`) up to `Total Samples`.
/// Keys may contain spaces (`PF excp`): the numbers are read from the right.
pub fn parse_report(text: &str) -> Vec<PerfRow> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.contains("Samples%") && line.contains("Avg time") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if line.trim_start().starts_with("Total Samples") {
            break;
        }
        // key SAMPLES PCT% PCT% MINus MAXus AVGus ( +- X% )
        let Some(line) = line.split(" ( +-").next() else {
            continue;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 7 {
            continue;
        }
        let n = words.len();
        let us = |w: &str| w.strip_suffix("us").and_then(|v| v.parse::<f64>().ok());
        let (Some(avg), Some(max), Some(min), Ok(samples)) = (
            us(words[n - 1]),
            us(words[n - 2]),
            us(words[n - 3]),
            words[n - 6].parse::<u64>(),
        ) else {
            continue;
        };
        rows.push(PerfRow {
            key: words[..n - 6].join(" "),
            samples,
            min_us: min,
            max_us: max,
            avg_us: avg,
        });
    }
    rows
}

/// kvmscope's figures for one key, in perf's units.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ours {
    /// Paired (handled) samples: what perf counts.
    pub samples: u64,
    /// All events of the key, paired or not.
    pub events: u64,
    pub min_us: f64,
    pub max_us: f64,
    pub avg_us: f64,
}

/// kvmscope's rows for perf's `--event` kind, keyed as perf keys them.
pub fn ours(report: &Report, event: &str) -> Vec<(String, Ours)> {
    let o = |events: u64, l: &kvmscope_analysis::stats::LatencySummary| Ours {
        samples: l.samples,
        events,
        min_us: l.min_ns as f64 / 1e3,
        max_us: l.max_ns as f64 / 1e3,
        avg_us: l.mean_ns / 1e3,
    };
    let rw = |w: bool, write: &str, read: &str| if w { write } else { read }.to_string();
    let a = &report.accesses;
    match event {
        "vmexit" => report
            .exits
            .iter()
            .flat_map(|e| &e.rows)
            .map(|r| (r.reason.clone(), o(r.count, &r.latency)))
            .collect(),
        "ioport" => a
            .pio
            .iter()
            .map(|r| {
                let key = format!("{:#x}:{}", r.port, rw(r.write, "POUT", "PIN"));
                (key, o(r.count, &r.latency))
            })
            .collect(),
        "mmio" => a
            .mmio
            .iter()
            .map(|r| {
                (
                    format!("{:#x}:{}", r.gpa, rw(r.write, "W", "R")),
                    o(r.count, &r.latency),
                )
            })
            .collect(),
        "msr" => a
            .msr
            .iter()
            .map(|r| {
                (
                    format!("{:#x}:{}", r.msr.msr, rw(r.write, "W", "R")),
                    o(r.count, &r.latency),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// One key compared.
#[derive(Debug, Clone, Serialize)]
pub struct KeyCompare {
    pub event: String,
    pub key: String,
    pub perf: PerfRow,
    /// kvmscope on `perf script --ns` of perf's recording.
    pub script: Option<Ours>,
    /// kvmscope on its own trace.dat of the same run.
    pub trace: Option<Ours>,
    /// Same samples as perf, from perf's recording.
    pub script_samples_equal: bool,
    /// Min, max and average equal to perf's at perf's printing precision (0.01 us).
    pub script_times_equal: bool,
    /// Same samples as perf, from kvmscope's own recording.
    pub trace_samples_equal: bool,
}

/// Equal at perf's printing precision: perf rounds to 0.01 us; allow one unit for a value
/// that sits on a rounding boundary.
pub fn same_us(ours: f64, perf: f64) -> bool {
    (ours - perf).abs() <= 0.0101
}

fn report_of(path: &Path) -> anyhow::Result<Report> {
    let mut b = ReportBuilder::new();
    let input = crate::cmd::report::read_into(path, &EventFilter::default(), &mut b)?;
    Ok(b.finish(vec![input]))
}

/// Compares perf's reports in a scenario's directory (`perf-EVENT.txt`, `perf.script`) with
/// kvmscope's reports of `perf.script` and `trace.dat`. Empty when perf did not run there.
pub fn compare(dir: &Path, events: &[&str]) -> anyhow::Result<Vec<KeyCompare>> {
    let script = dir.join("perf.script");
    if !script.exists() {
        return Ok(Vec::new());
    }
    let from_script = report_of(&script)?;
    let from_trace = report_of(&dir.join("trace.dat"))?;
    let mut out = Vec::new();
    for e in events {
        let text = std::fs::read_to_string(dir.join(format!("perf-{e}.txt"))).unwrap_or_default();
        let s = ours(&from_script, e);
        let t = ours(&from_trace, e);
        for p in parse_report(&text) {
            let find =
                |v: &[(String, Ours)]| v.iter().find(|(k, _)| *k == p.key).map(|x| x.1.clone());
            let (script, trace) = (find(&s), find(&t));
            out.push(KeyCompare {
                event: e.to_string(),
                key: p.key.clone(),
                script_samples_equal: script.as_ref().is_some_and(|o| o.samples == p.samples),
                script_times_equal: script.as_ref().is_some_and(|o| {
                    same_us(o.min_us, p.min_us)
                        && same_us(o.max_us, p.max_us)
                        && same_us(o.avg_us, p.avg_us)
                }),
                trace_samples_equal: trace.as_ref().is_some_and(|o| o.samples == p.samples),
                perf: p,
                script,
                trace,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // perf 6.1's `perf kvm -i perf.data stat report --event=vmexit` on an emulated SVM host.
    const VMEXIT: &str = "\n\nAnalyze events for all VMs, all VCPUs:\n\n             VM-EXIT    Samples  Samples%     Time%    Min Time    Max Time         Avg time \n\n                  io        300    98.68%    82.34%     58.24us   2914.55us    111.08us ( +-  13.40% )\n             PF excp          3     0.99%     9.74%    236.77us   3296.55us   1313.59us ( +-  75.57% )\n\nTotal Samples:304, Total events handled time:40471.48us.\n";

    #[test]
    fn reads_perf_kvm_stat_tables() {
        let rows = parse_report(VMEXIT);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            PerfRow {
                key: "io".into(),
                samples: 300,
                min_us: 58.24,
                max_us: 2914.55,
                avg_us: 111.08
            }
        );
        assert_eq!(rows[1].key, "PF excp");
        let io = "      IO Port Access    Samples  Samples%     Time%    Min Time    Max Time         Avg time \n          0x3f8:POUT        300   100.00%   100.00%     42.63us   2329.42us     79.58us ( +-  14.02% )\nTotal Samples:300\n";
        assert_eq!(parse_report(io)[0].key, "0x3f8:POUT");
        assert!(parse_report("").is_empty());
        assert!(parse_report("Samples% Avg time\n x y z\n a 1 2 3 4 5 6\n").is_empty());
    }

    #[test]
    fn compares_at_perfs_precision() {
        assert!(same_us(111.075, 111.08));
        assert!(same_us(58.24, 58.25));
        assert!(!same_us(58.00, 58.24));
    }
}
