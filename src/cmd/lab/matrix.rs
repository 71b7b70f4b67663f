//! `kvmscope lab matrix`: every scenario on every emulated host, one boot per host, with what
//! each host's trace showed against the ground truth, and (with `--perf`) perf kvm stat's
//! report of the same runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use kvmscope_analysis::EventFilter;
use kvmscope_lab::emulated::{self, Flavour, HostConfig, HostRun, Job};
use kvmscope_lab::Scenario;
use serde::Serialize;

use super::emulated::{banner, lab_job, progress_done, progress_printer, this_kvmscope};

#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    /// Emulated hosts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "svm,svm-shadow", value_parser = super::host_name_parser)]
    pub host: Vec<Flavour>,
    /// Scenarios, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub scenario: Vec<String>,
    /// Operations per scenario (default: each scenario's own, at most 2,000; `compute`
    /// 10,000,000; `idle` runs 1 s).
    #[arg(long)]
    pub count: Option<u64>,
    /// Also record scenarios with `perf kvm stat record` (this machine's perf, carried in)
    /// around kvmscope's own recording, keep perf's reports (vmexit, ioport, mmio, msr) and
    /// `perf script` beside the trace.dat, and compare: all scenarios, or those listed
    /// (`--perf=pio,msr`).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_missing_value = "all", require_equals = true)]
    pub perf: Option<Vec<String>>,
    /// Extra `lab run` arguments for one scenario, `SCENARIO=ARGS` (repeatable), e.g.
    /// `--lab-args 'hlt=--period 2ms'`.
    #[arg(long = "lab-args", value_name = "SCENARIO=ARGS")]
    pub lab_args: Vec<String>,
    /// Also diagnose each recording (its guest's vCPU threads, with the emulated host's system
    /// snapshot), as `kvmscope diagnose` would: the top finding per scenario.
    #[arg(long)]
    pub diagnose: bool,
    /// Seconds each arm64 scenario's guest runs (arm64 hosts only).
    #[arg(long, default_value_t = 10)]
    pub guest_secs: u32,
    /// Where the outputs go (one directory per host, one per scenario inside).
    #[arg(long, default_value = "kvmscope-lab-matrix")]
    pub out: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// perf kvm stat's event kinds (`--event=`) kept per scenario.
pub const PERF_EVENTS: &[&str] = &["vmexit", "ioport", "mmio", "msr"];

/// One scenario's result on one host.
#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    /// Exit status of `kvmscope lab run` inside (0 ok, 1 a promise broken, 2 failed).
    pub status: i32,
    /// Its JSON (`kvmscope lab run --json`), when it ran.
    pub lab: Option<serde_json::Value>,
    /// Its error output when it failed.
    pub error: Option<String>,
    /// kvmscope's recording.
    pub trace: PathBuf,
    /// Exits by reason on the guest's vCPU threads, from the recording.
    pub exits: Vec<(String, u64)>,
    /// Promises that hold on this host, and how many of them held.
    pub promises: usize,
    pub promises_kept: usize,
    /// Wall time of the scenario's job here.
    pub secs: f64,
    /// perf kvm stat's report against kvmscope's, key by key (with `--perf`).
    pub perf: Vec<super::perf_kvm::KeyCompare>,
    /// kvmscope diagnose's findings on the recording (with `--diagnose`), ranked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Vec<FindingBrief>>,
}

/// One finding of a scenario's diagnosis.
#[derive(Debug, Serialize)]
pub struct FindingBrief {
    pub rule: &'static str,
    pub severity: kvmscope_diagnose::Severity,
    pub title: String,
}

#[derive(Debug, Serialize)]
pub struct HostResult {
    pub host: HostRun,
    pub scenarios: Vec<ScenarioResult>,
}

fn default_count(s: Scenario) -> Option<u64> {
    match s {
        Scenario::Idle => None,
        Scenario::Compute => Some(10_000_000),
        _ => Some(s.info().default_count.min(2000)),
    }
}

/// The lab arguments for scenario `s` in a matrix.
fn lab_args(s: Scenario, count: Option<u64>) -> Vec<String> {
    let mut a = vec![s.name().to_string()];
    match count.or_else(|| default_count(s)) {
        Some(n) if s != Scenario::Idle => a.extend(["--count".into(), n.to_string()]),
        _ => a.extend(["--duration".into(), "1s".into()]),
    }
    if s == Scenario::Cr3 {
        // More roots than the current root and KVM's three prev_roots hold: every switch
        // misses (field report 001).
        a.extend(["--roots".into(), "6".into()]);
    }
    a
}

/// The job for one scenario: kvmscope's recording and verification, and with `perf`, perf kvm
/// stat recording the same run around it.
fn job(s: Scenario, count: Option<u64>, extra: &[String], perf: bool) -> Job {
    let mut args = lab_args(s, count);
    args.extend(extra.iter().cloned());
    let mut j = lab_job(s.name(), &args);
    if perf {
        let inner = j.script.trim_end();
        let mut script = format!("perf kvm stat record -q -o perf.data -- {inner}\nrc=$?\n");
        for e in PERF_EVENTS {
            script.push_str(&format!(
                "perf kvm -i perf.data stat report --event={e} > perf-{e}.txt 2>&1\n"
            ));
        }
        script
            .push_str("perf script --ns -i perf.data > perf.script 2> perf-script.err\nexit $rc\n");
        j.script = script;
    }
    j
}

fn scenarios(names: &[String]) -> anyhow::Result<Vec<Scenario>> {
    if names.is_empty() {
        return Ok(Scenario::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            Scenario::from_name(n).ok_or_else(|| {
                let all: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                anyhow::anyhow!(
                    "unknown scenario `{n}`; the scenarios are: {}",
                    all.join(", ")
                )
            })
        })
        .collect()
}

/// The report of a recording on the vCPU threads `tids`, with the snapshot it carries.
fn report_of(
    trace: &Path,
    tids: &[u32],
) -> anyhow::Result<(
    kvmscope_analysis::Report,
    Option<kvmscope_diagnose::Snapshot>,
)> {
    let filter = EventFilter {
        pids: Vec::new(),
        tids: tids.to_vec(),
    };
    crate::cmd::diagnose::from_files(&[trace.to_path_buf()], &filter)
}

fn result_of(
    job: &emulated::JobResult,
    host: Flavour,
    diagnose: bool,
) -> anyhow::Result<ScenarioResult> {
    let read = |n: &str| std::fs::read_to_string(job.dir.join(n)).unwrap_or_default();
    let lab: Option<serde_json::Value> = serde_json::from_str(&read("lab.json")).ok();
    let trace = job.dir.join("trace.dat");
    let (mut promises, mut kept) = (0, 0);
    let mut exits = Vec::new();
    let mut diagnosis = None;
    if let Some(l) = &lab {
        for v in l["verify"].as_array().into_iter().flatten() {
            if v["applies_here"].as_bool() == Some(true) {
                promises += 1;
                kept += usize::from(v["ok"].as_bool() == Some(true));
            }
        }
        let tids: Vec<u32> = l["vcpu_tids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_u64().map(|t| t as u32))
            .collect();
        if trace.exists() {
            let (report, system) = report_of(&trace, &tids).with_context(|| {
                format!("reading {} from the {} host", trace.display(), host.name())
            })?;
            if diagnose {
                let d = kvmscope_diagnose::diagnose(&report, system.as_ref());
                diagnosis = Some(
                    d.findings
                        .into_iter()
                        .map(|f| FindingBrief {
                            rule: f.rule,
                            severity: f.severity,
                            title: f.title,
                        })
                        .collect(),
                );
            }
            exits = report
                .exits
                .map(|e| e.rows.into_iter().map(|r| (r.reason, r.count)).collect())
                .unwrap_or_default();
        }
    }
    let perf = super::perf_kvm::compare(&job.dir, PERF_EVENTS)
        .with_context(|| format!("comparing with perf kvm stat in {}", job.dir.display()))?;
    Ok(ScenarioResult {
        perf,
        scenario: job.name.clone(),
        status: job.status,
        error: (lab.is_none() || job.status > 1).then(|| read("stderr").trim_end().to_string()),
        lab,
        trace,
        exits,
        promises,
        promises_kept: kept,
        secs: job.secs,
        diagnosis,
    })
}

/// `--lab-args` as (scenario, its extra arguments).
fn extra_args(given: &[String]) -> anyhow::Result<Vec<(Scenario, Vec<String>)>> {
    given
        .iter()
        .map(|g| {
            let (name, args) = g.split_once('=').with_context(|| {
                format!("--lab-args `{g}`: write SCENARIO=ARGS, e.g. 'hlt=--period 2ms'")
            })?;
            let s = scenarios(&[name.trim().to_string()])?[0];
            Ok((s, args.split_whitespace().map(str::to_string).collect()))
        })
        .collect()
}

pub fn run(a: MatrixArgs) -> anyhow::Result<ExitCode> {
    if a.host.is_empty() {
        bail!("give at least one --host");
    }
    if a.host.iter().any(|f| f.is_arm64()) {
        if !a.host.iter().all(|f| f.is_arm64()) {
            bail!("arm64 hosts run other scenarios (`kvmscope lab matrix --host arm64,arm64-nvhe`): give them in a matrix of their own");
        }
        return arm64_matrix(&a);
    }
    let list = scenarios(&a.scenario)?;
    let perf_for = |s: Scenario| {
        a.perf
            .as_ref()
            .is_some_and(|l| l.iter().any(|n| n == "all" || n == s.name()))
    };
    let extra = extra_args(&a.lab_args)?;
    let extra_for = |s: Scenario| -> Vec<String> {
        extra
            .iter()
            .filter(|(e, _)| *e == s)
            .flat_map(|(_, a)| a.iter().cloned())
            .collect()
    };
    let jobs: Vec<Job> = list
        .iter()
        .map(|s| job(*s, a.count, &extra_for(*s), perf_for(*s)))
        .collect();
    let mut results = Vec::new();
    for flavour in &a.host {
        let mut config = HostConfig::new(*flavour, this_kvmscope()?);
        config.perf = list.iter().any(|s| perf_for(*s));
        config.time_limit = Duration::from_secs(300 + 60 * jobs.len() as u64);
        let out = a.out.join(flavour.name());
        let host = emulated::run(&config, &jobs, &out, &mut progress_printer(*flavour));
        progress_done();
        let host = host.with_context(|| format!("the emulated {} host failed", flavour.name()))?;
        let scenarios = host
            .jobs
            .iter()
            .map(|j| result_of(j, *flavour, a.diagnose))
            .collect::<anyhow::Result<Vec<_>>>()?;
        results.push(HostResult { host, scenarios });
    }
    let broken = results
        .iter()
        .flat_map(|h| &h.scenarios)
        .any(|s| s.status != 0 || s.promises_kept != s.promises);
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&results)?)?;
    } else {
        write!(out, "{}", render(&results))?;
    }
    Ok(if broken {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The arm64 scenarios (`super::arm64`) on each arm64 host, one boot per host.
fn arm64_matrix(a: &MatrixArgs) -> anyhow::Result<ExitCode> {
    let list = super::arm64::scenarios(&a.scenario)?;
    let secs = a.guest_secs.clamp(1, 600);
    let mut all = Vec::new();
    for flavour in &a.host {
        let out = a.out.join(flavour.name());
        all.push(super::arm64::run_all(*flavour, &list, secs, &out)?);
    }
    let mut code = ExitCode::SUCCESS;
    for (host, outcomes) in &all {
        if a.json {
            continue;
        }
        code = super::arm64::print(host, outcomes, false)?;
        println!();
    }
    if a.json {
        let v: Vec<_> = all
            .iter()
            .map(|(h, o)| serde_json::json!({"emulated_host": h, "scenarios": o}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(code)
}

fn render(results: &[HostResult]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for h in results {
        let _ = writeln!(s, "{}", banner(&h.host));
        let _ = writeln!(
            s,
            "  {:<12} {:>9} {:>9}  {:>7}  EXITS ON THE GUEST'S vCPU THREADS (kvm_exit by reason)",
            "SCENARIO", "OPS", "PROMISES", "WALL"
        );
        for r in &h.scenarios {
            let ops = r
                .lab
                .as_ref()
                .and_then(|l| l["ops"].as_u64())
                .map_or("-".to_string(), |n| n.to_string());
            let kept = if r.status > 1 || r.lab.is_none() {
                "FAILED".to_string()
            } else if r.promises_kept == r.promises {
                format!("ok {}/{}", r.promises_kept, r.promises)
            } else {
                format!("DIFF {}/{}", r.promises_kept, r.promises)
            };
            let exits: Vec<String> = r.exits.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(
                s,
                "  {:<12} {:>9} {:>9}  {:>5.1} s  {}",
                r.scenario,
                ops,
                kept,
                r.secs,
                if exits.is_empty() {
                    "-".to_string()
                } else {
                    exits.join(", ")
                }
            );
            if !r.perf.is_empty() {
                let n = r.perf.len();
                let count = |f: fn(&super::perf_kvm::KeyCompare) -> bool| {
                    r.perf.iter().filter(|k| f(k)).count()
                };
                let _ = writeln!(
                    s,
                    "      perf kvm stat: {n} keys; same samples {}/{n} and times {}/{n} from perf's recording, same samples {}/{n} from kvmscope's",
                    count(|k| k.script_samples_equal),
                    count(|k| k.script_times_equal),
                    count(|k| k.trace_samples_equal),
                );
            }
            if let Some(d) = &r.diagnosis {
                let _ = match d.first() {
                    Some(f) => writeln!(
                        s,
                        "      diagnose: [{}] {} ({})",
                        f.severity, f.title, f.rule
                    ),
                    None => writeln!(s, "      diagnose: nothing found"),
                };
            }
            if let Some(e) = &r.error {
                for l in e.lines().take(3) {
                    let _ = writeln!(s, "      {l}");
                }
            }
        }
        let _ = writeln!(s, "  outputs in {}\n", h.host.out_dir.display());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_small_and_perf_wraps_the_recording() {
        assert_eq!(lab_args(Scenario::Pio, None), ["pio", "--count", "2000"]);
        assert_eq!(
            lab_args(Scenario::Idle, Some(5)),
            ["idle", "--duration", "1s"]
        );
        assert_eq!(
            lab_args(Scenario::Cr3, Some(10)),
            ["cr3", "--count", "10", "--roots", "6"]
        );
        let j = job(Scenario::Msr, Some(100), &[], true);
        assert!(j
            .script
            .starts_with("perf kvm stat record -q -o perf.data -- kvmscope record -q"));
        assert!(j.script.contains("--event=msr > perf-msr.txt"));
        assert!(j.script.ends_with("exit $rc\n"));
    }
}
