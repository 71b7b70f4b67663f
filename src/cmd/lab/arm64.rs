//! `kvmscope lab run SCENARIO --host arm64|arm64-nvhe` and `lab matrix --host arm64`: a nested
//! Linux guest runs the scenario under upstream arm64 KVM on QEMU's emulated Armv8. The host
//! side (and the guest's own side) are recorded with tracefs from the shell inside and
//! assembled into trace.dat files here; the guest's /proc/interrupts before and after is the
//! ground truth.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use kvmscope_lab::emulated::arm64::{self, IpiDeltas, Scenario};
use kvmscope_lab::emulated::{self, Flavour, HostConfig, HostRun, JobResult};
use kvmscope_tracedat::assemble::assemble_from_dir;
use kvmscope_tracedat::file::{for_each_record, TraceDat};
use serde::Serialize;

use super::emulated::{banner, progress_done, progress_printer, this_kvmscope};

/// ICC_SGI1R_EL1's encoding (Op0, Op1, CRn, CRm, Op2): a guest IPI.
pub const SGI1R: [u64; 5] = [3, 0, 12, 11, 5];

/// What the host's trace of one scenario shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostCounts {
    /// kvm_exit by exception class (the name the kernel's format gives `esr_ec`).
    pub exits: BTreeMap<String, u64>,
    /// kvm_sys_access writes of ICC_SGI1R_EL1, per thread name.
    pub sgi1r_writes: BTreeMap<String, u64>,
    /// Events per `system:event`.
    pub events: BTreeMap<String, u64>,
}

impl HostCounts {
    pub fn exits_total(&self) -> u64 {
        self.exits.values().sum()
    }

    pub fn sgi1r_total(&self) -> u64 {
        self.sgi1r_writes.values().sum()
    }
}

/// One scenario's outcome.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub scenario: String,
    /// Exit status of its job (0 ok).
    pub status: i32,
    pub error: Option<String>,
    /// The host's recording.
    pub trace: PathBuf,
    /// The guest's recording (its ipi, csd, irq and timer events), when it came back.
    pub guest_trace: Option<PathBuf>,
    pub host: HostCounts,
    /// IPIs the guest's kernel counted during the scenario (its /proc/interrupts).
    pub guest_ipis: IpiDeltas,
    /// The guest's local timer (arch_timer, CNTV) interrupts per vCPU during the scenario.
    pub guest_timer_irqs: Vec<u64>,
    /// What the scenario's own loops counted.
    pub results: BTreeMap<String, u64>,
    /// Wall time of its job here.
    pub secs: f64,
}

/// Counts exits by class, SGI1R writes per thread and events by name in a trace.dat.
pub fn count(path: &Path) -> anyhow::Result<HostCounts> {
    let (td, file) =
        TraceDat::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut c = HostCounts::default();
    for_each_record(&td, &file, |r, fmt| {
        let Some(f) = fmt else {
            return std::ops::ControlFlow::Continue(());
        };
        *c.events.entry(f.full_name()).or_default() += 1;
        if f.system == "kvm" && f.name == "kvm_exit" {
            // `ret` says why the guest stopped: an interrupt (IRQ: esr_ec means nothing
            // then), an SError, or a trap whose class is esr_ec.
            let kind = f.symbol(r.data, "ret").unwrap_or_else(|| "?".into());
            let class = if kind == "TRAP" {
                f.symbol(r.data, "esr_ec").unwrap_or_else(|| {
                    format!("EC {:#x}", f.u64(r.data, "esr_ec").unwrap_or(u64::MAX))
                })
            } else {
                kind
            };
            *c.exits.entry(class).or_default() += 1;
        } else if f.system == "kvm" && f.name == "kvm_sys_access" {
            let enc = ["Op0", "Op1", "CRn", "CRm", "Op2"].map(|n| f.u64(r.data, n).unwrap_or(99));
            if enc == SGI1R && f.u64(r.data, "is_write") == Some(1) {
                let comm = td
                    .cmdlines
                    .get(&r.common_pid)
                    .cloned()
                    .unwrap_or_else(|| format!("pid {}", r.common_pid));
                *c.sgi1r_writes.entry(comm).or_default() += 1;
            }
        }
        std::ops::ControlFlow::Continue(())
    })
    .with_context(|| format!("cannot read the records of {}", path.display()))?;
    Ok(c)
}

/// A system snapshot from the /proc and /sys copies under `dir`, as the arm64 machine's.
fn snapshot(dir: &Path) -> serde_json::Value {
    let mut s = kvmscope_system::snapshot::collect_from(dir);
    s.arch = "aarch64".into();
    serde_json::to_value(s).unwrap_or_default()
}

/// Assembles a job's recordings and reads its ground truth.
fn outcome(j: &JobResult, flavour: Flavour) -> anyhow::Result<Outcome> {
    let dir = &j.dir;
    let text = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_default();
    let guest_ipis = arm64::ipi_deltas(
        &text("guest/interrupts.before"),
        &text("guest/interrupts.after"),
    );
    let results = arm64::results(&text("guest/result"));
    let guest_timer_irqs = arm64::timer_deltas(
        &text("guest/interrupts.before"),
        &text("guest/interrupts.after"),
    );
    let trace = dir.join("trace.dat");
    let mut error = (j.status != 0).then(|| text("stderr").trim_end().to_string());
    let mut host = HostCounts::default();
    if dir.join("host-trace/header_page").exists() {
        let mut side = serde_json::json!({
            "system": snapshot(&dir.join("host-snap")),
            "emulated_host": flavour.name(),
            "scenario": j.name,
            "guest_ipis": guest_ipis,
        });
        if let Some(o) = side.as_object_mut() {
            o.insert("vms".into(), serde_json::json!([]));
        }
        assemble_from_dir(&dir.join("host-trace"), &trace, Some(side))
            .with_context(|| format!("cannot assemble {}", trace.display()))?;
        host = count(&trace)?;
    } else if error.is_none() {
        error = Some("the host recorded nothing".into());
    }
    let guest_dir = dir.join("guest/trace");
    let host_syms = std::fs::read(dir.join("host-trace/kallsyms")).unwrap_or_default();
    if arm64::same_kernel_text(&text("guest/text-base"), &host_syms) {
        let _ = std::fs::write(guest_dir.join("kallsyms"), &host_syms);
    }
    let guest_trace = if guest_dir.join("header_page").exists() {
        let p = dir.join("guest-trace.dat");
        let mut end = kvmscope_system::snapshot::collect_from(&dir.join("guest/snap-end"));
        end.arch = "aarch64".into();
        let side = serde_json::json!({
            "system": snapshot(&dir.join("guest/snap-start")),
            "interrupts_end": end.interrupts,
            "softirqs_end": end.softirqs,
            "scenario": j.name,
            "side": "guest",
        });
        assemble_from_dir(&guest_dir, &p, Some(side))
            .with_context(|| format!("cannot assemble {}", p.display()))?;
        Some(p)
    } else {
        None
    };
    let o = Outcome {
        scenario: j.name.clone(),
        status: j.status,
        error,
        trace,
        guest_trace,
        host,
        guest_ipis,
        guest_timer_irqs,
        results,
        secs: j.secs,
    };
    std::fs::write(dir.join("arm64.json"), serde_json::to_vec_pretty(&o)?)
        .with_context(|| format!("cannot write {}", dir.join("arm64.json").display()))?;
    Ok(o)
}

/// The arm64 scenarios called `names` (all when empty).
pub fn scenarios(names: &[String]) -> anyhow::Result<Vec<&'static Scenario>> {
    if names.is_empty() {
        return Ok(arm64::SCENARIOS.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            arm64::scenario(n).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown arm64 scenario `{n}`; they are: {}",
                    arm64::SCENARIOS
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        })
        .collect()
}

/// Boots the arm64 host once and runs `list`, each guest for `secs` seconds.
pub fn run_all(
    flavour: Flavour,
    list: &[&Scenario],
    secs: u32,
    out: &Path,
) -> anyhow::Result<(HostRun, Vec<Outcome>)> {
    let jobs: Vec<_> = list.iter().map(|s| arm64::job(s, secs)).collect();
    let mut config = HostConfig::new(flavour, this_kvmscope()?);
    config.cpus = 2;
    config.time_limit = Duration::from_secs(300 + (90 + 2 * secs as u64) * jobs.len() as u64);
    let host = emulated::run(&config, &jobs, out, &mut progress_printer(flavour));
    progress_done();
    let host = host.with_context(|| format!("the emulated {} host failed", flavour.name()))?;
    let outcomes = host
        .jobs
        .iter()
        .map(|j| outcome(j, flavour))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((host, outcomes))
}

/// The table of a run.
pub fn render(host: &HostRun, outcomes: &[Outcome]) -> String {
    let mut s = banner(host);
    let mode = std::fs::read_to_string(host.out_dir.join("kvm-mode.txt")).unwrap_or_default();
    for l in mode.lines() {
        s.push_str(&format!("               {}\n", l.trim()));
    }
    s.push('\n');
    s.push_str(&format!(
        "{:<14} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}  {:>9} {:>9} {:>13} {:>6}\n",
        "scenario",
        "exits",
        "IRQ",
        "WFx",
        "SYS64",
        "DABT",
        "IABT",
        "HVC64",
        "other",
        "SGI1R wr",
        "guest IPI",
        "guest timer",
        "secs"
    ));
    for o in outcomes {
        let e = |k: &str| o.host.exits.get(k).copied().unwrap_or(0);
        let named = e("IRQ") + e("WFx") + e("SYS64") + e("DABT_LOW") + e("IABT_LOW") + e("HVC64");
        s.push_str(&format!(
            "{:<14} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}  {:>9} {:>9} {:>13} {:>6.0}\n",
            o.scenario,
            o.host.exits_total(),
            e("IRQ"),
            e("WFx"),
            e("SYS64"),
            e("DABT_LOW"),
            e("IABT_LOW"),
            e("HVC64"),
            o.host.exits_total() - named,
            o.host.sgi1r_total(),
            o.guest_ipis.all(),
            o.guest_timer_irqs
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("/"),
            o.secs
        ));
        if let Some(err) = &o.error {
            s.push_str(&format!("  FAILED: {}\n", err.lines().next().unwrap_or("")));
        }
    }
    s.push_str(&format!(
        "\nSGI1R wr: ICC_SGI1R_EL1 writes the host trapped (kvm_sys_access); guest IPI: IPIs the guest's /proc/interrupts counted during the scenario; guest timer: its arch_timer (CNTV) interrupts per vCPU.\nhost traces: {}/SCENARIO/trace.dat (guest side: guest-trace.dat); read them with `kvmscope report` or `trace-cmd report`\n",
        host.out_dir.display()
    ));
    s
}

/// `kvmscope lab run SCENARIO --host arm64|arm64-nvhe`.
pub fn run_one(
    name: &str,
    flavour: Flavour,
    duration: Option<Duration>,
    out: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let list = scenarios(&[name.to_string()])?;
    let secs = duration.map_or(10, |d| d.as_secs().clamp(1, 600) as u32);
    let out =
        out.unwrap_or_else(|| PathBuf::from(format!("kvmscope-lab-{}-{name}", flavour.name())));
    let (host, outcomes) = run_all(flavour, &list, secs, &out)?;
    print(&host, &outcomes, json)
}

pub fn print(host: &HostRun, outcomes: &[Outcome], json: bool) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({ "emulated_host": host, "scenarios": outcomes });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        write!(stdout, "{}", render(host, outcomes))?;
    }
    if let Some(o) = outcomes.iter().find(|o| o.status != 0) {
        bail!(
            "arm64 scenario `{}` failed inside the emulated {} host: {}",
            o.scenario,
            host.flavour.name(),
            o.error.as_deref().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}
