//! `kvmscope lab`: run real KVM guests whose behaviour is known exactly, and show what the
//! host should see (ground truth), how fast the guest went, and what KVM's own binary stats
//! counted.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use kvmscope_lab::{HostKind, Length, RunOutcome, Scenario, ScenarioSpec};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// List the scenarios: what each guest does, its privilege level, which field report it
    /// reproduces.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one scenario and print its ground truth, the achieved rate and KVM's binary stats.
    Run(Box<RunArgs>),
    /// Run every scenario on emulated KVM hosts (one boot per host) and show, per host, the
    /// exits each scenario's trace shows and whether its ground truth held.
    Matrix(matrix::MatrixArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario name (see `kvmscope lab list`).
    pub scenario: String,
    /// Operations per vCPU (exact ground truth). Default: the scenario's own.
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Run for this long instead (e.g. `2s`, `500ms`).
    #[arg(long, value_parser = super::args::duration)]
    pub duration: Option<Duration>,
    /// Number of vCPUs, each on its own thread running the program (`ipi` needs 2).
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// Port for `pio` (decimal or 0x hex).
    #[arg(long, value_parser = super::args::number)]
    pub port: Option<u64>,
    /// MSR for `msr` (default IA32_TSC_DEADLINE, 0x6e0).
    #[arg(long, value_parser = super::args::number)]
    pub msr: Option<u64>,
    /// Value `msr` writes to MSRs other than IA32_TSC_DEADLINE.
    #[arg(long, value_parser = super::args::number)]
    pub msr_value: Option<u64>,
    /// Page-table roots for `cr3` (<= 4 fit KVM's root cache, >= 5 do not).
    #[arg(long)]
    pub roots: Option<u32>,
    /// Timer period for `timer-storm` and `hlt` (e.g. `30us`).
    #[arg(long, value_parser = super::args::duration)]
    pub period: Option<Duration>,
    /// Run the measured code at CPL 0 or 3 instead of the scenario's own level (pio, mmio,
    /// cpuid, compute), to compare how this host handles each.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub cpl: Option<u8>,
    /// Give up after this long (e.g. `60s`).
    #[arg(long, value_parser = super::args::duration)]
    pub timeout: Option<Duration>,
    /// Keep the VM this long after the guest finished (e.g. `3s`), so that readers of KVM's
    /// statistics from outside (`kvm_stat -d`, `kvmscope top --debugfs`) still see it.
    #[arg(long, value_parser = super::args::duration)]
    pub hold: Option<Duration>,
    /// Trace the run in a private tracefs instance (events filtered on this VM's vCPU
    /// threads) and compare what the host showed with the ground truth; exit status 1 when a
    /// promise that holds on this host is broken.
    #[arg(long)]
    pub verify: bool,
    /// Show every binary statistic, not only those that changed.
    #[arg(long)]
    pub all_stats: bool,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run on an emulated KVM host instead of this machine: `svm` (kvm_amd with nested
    /// paging) or `svm-shadow` (npt=0), booted under QEMU's emulator with a Debian kernel
    /// fetched into the cache; records the run there and brings the trace.dat back.
    #[arg(long, value_parser = host_name_parser)]
    pub host: Option<kvmscope_lab::emulated::Flavour>,
    /// Where `--host` runs leave their outputs (trace.dat, lab.json, console.log).
    /// Default: ./kvmscope-lab-HOST-SCENARIO.
    #[arg(long, requires = "host")]
    pub out: Option<std::path::PathBuf>,
    /// Also write the JSON result to this file (the text still goes to stdout).
    #[arg(long, hide = true)]
    pub save_json: Option<std::path::PathBuf>,
}

fn host_name_parser(s: &str) -> Result<kvmscope_lab::emulated::Flavour, String> {
    use kvmscope_lab::emulated::Flavour;
    if s == "local" || s == "this" {
        return Err("leave --host out to run on this machine".into());
    }
    Flavour::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Flavour::ALL.iter().map(|f| f.name()).collect();
        format!(
            "unknown host `{s}`; the emulated hosts are: {}",
            names.join(", ")
        )
    })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::List { json } => list(json),
        LabCommand::Run(r) => run_scenario(*r),
        LabCommand::Matrix(m) => matrix::run(m),
    }
}

fn list(json: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if json {
        let v: Vec<_> = Scenario::ALL.iter().map(|s| s.info()).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<12} {:<5} {:>11}  WHAT THE GUEST DOES / REPRODUCES",
        "SCENARIO", "CPL", "COUNT"
    )?;
    for s in Scenario::ALL {
        let i = s.info();
        let count = if i.default_count == 0 {
            "duration".to_string()
        } else {
            i.default_count.to_string()
        };
        writeln!(
            out,
            "{:<12} {:<5} {:>11}  {}",
            i.name,
            i.privilege.to_string(),
            count,
            i.summary
        )?;
        writeln!(out, "{:<31}  reproduces: {}", "", i.reproduces)?;
    }
    writeln!(
        out,
        "\nOn the emulated arm64 hosts (`lab run SCENARIO --host arm64|arm64-nvhe`, a nested Linux guest):"
    )?;
    for s in kvmscope_lab::emulated::arm64::SCENARIOS {
        writeln!(out, "{:<14} {}", s.name, s.describe)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn spec_of(r: &RunArgs) -> anyhow::Result<ScenarioSpec> {
    let Some(scenario) = Scenario::from_name(&r.scenario) else {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        bail!(
            "unknown scenario `{}`; the scenarios are: {}",
            r.scenario,
            names.join(", ")
        );
    };
    let mut spec = ScenarioSpec::new(scenario);
    if let Some(n) = r.count {
        spec = spec.count(n);
    }
    if let Some(d) = r.duration {
        spec = spec.duration(d);
    }
    if let Some(v) = r.vcpus {
        spec = spec.vcpus(v);
    }
    if let Some(p) = r.port {
        spec.port = u16::try_from(p).context("--port must be below 0x10000")?;
    }
    if let Some(m) = r.msr {
        spec.msr = u32::try_from(m).context("--msr must fit in 32 bits")?;
    }
    if let Some(v) = r.msr_value {
        spec.msr_value = v;
    }
    if let Some(k) = r.roots {
        spec.roots = k;
    }
    if let Some(p) = r.period {
        spec.period = p;
    }
    if let Some(c) = r.cpl {
        spec.cpl = Some(match c {
            0 => kvmscope_lab::Privilege::Cpl0,
            3 => kvmscope_lab::Privilege::Cpl3,
            _ => bail!("--cpl must be 0 or 3 (the lab uses no other rings)"),
        });
    }
    if let Some(t) = r.timeout {
        spec.timeout = t;
    }
    if let Some(h) = r.hold {
        spec.hold = h;
    }
    Ok(spec)
}

fn run_scenario(r: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(flavour) = r.host.filter(|f| f.is_arm64()) {
        return arm64::run_one(&r.scenario, flavour, r.duration, r.out.clone(), r.json);
    }
    let spec = spec_of(&r)?;
    if let Some(flavour) = r.host {
        return emulated::run(&r, &spec, flavour);
    }
    let (outcome, seen) = if r.verify {
        let (o, seen) = verify::run(&spec)?;
        (o, Some(seen))
    } else {
        let o = kvmscope_lab::run(&spec)
            .with_context(|| format!("lab scenario `{}` failed", spec.scenario))?;
        (o, None)
    };
    let host = outcome.host;
    let broken = seen.as_ref().is_some_and(|seen| {
        outcome
            .ground_truth
            .expectations
            .iter()
            .zip(seen)
            .any(|(e, n)| host.covers(e.host) && !e.count.contains(*n))
    });
    let json = || json_of(&outcome, seen.as_deref());
    if let Some(p) = &r.save_json {
        std::fs::write(p, serde_json::to_string_pretty(&json()?)? + "\n")
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    let text = if r.json {
        serde_json::to_string_pretty(&json()?)? + "\n"
    } else {
        render_text(&outcome, seen.as_deref(), r.all_stats)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(if broken {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The run as one JSON object: the outcome, its rate, the kernel, the stats checks and, when
/// traced, what was seen of each promise.
fn json_of(outcome: &RunOutcome, seen: Option<&[u64]>) -> anyhow::Result<serde_json::Value> {
    let host = outcome.host;
    let mut v = serde_json::to_value(outcome)?;
    v["elapsed_secs"] = serde_json::json!(outcome.elapsed.as_secs_f64());
    v["ops_per_sec"] = serde_json::json!(outcome.ops_per_sec());
    v["kernel"] = serde_json::json!(kernel_release());
    v["stat_checks"] = serde_json::json!(outcome
        .check_stats(host)
        .iter()
        .map(|(n, c, seen, ok)| serde_json::json!({"name": n, "promised": c, "seen": seen.map(|s| s as i64), "ok": ok}))
        .collect::<Vec<_>>());
    if let Some(seen) = seen {
        v["verify"] = serde_json::json!(outcome
            .ground_truth
            .expectations
            .iter()
            .zip(seen)
            .map(|(e, n)| serde_json::json!({
                "system": e.system,
                "event": e.event,
                "filter": e.filter,
                "promised": e.count,
                "seen": n,
                "applies_here": host.covers(e.host),
                "ok": !host.covers(e.host) || e.count.contains(*n),
            }))
            .collect::<Vec<_>>());
    }
    Ok(v)
}

mod arm64;
mod emulated;
mod matrix;
mod perf_kvm;

/// `--verify`: the run under a private tracefs instance.
mod verify {
    use anyhow::{bail, Context};
    use kvmscope_capture::tracefs::Instance;
    use kvmscope_lab::{RunOutcome, ScenarioSpec};
    use kvmscope_trace::text::line::{self, Line};

    /// Runs `spec` traced; returns the outcome and, per expectation, the events seen.
    pub fn run(spec: &ScenarioSpec) -> anyhow::Result<(RunOutcome, Vec<u64>)> {
        let root = kvmscope_capture::host::tracefs().context("--verify needs tracefs")?;
        kvmscope_capture::guard::install(&root, kvmscope_capture::guard::OnSignal::Exit)
            .context("cannot install the cleanup guard for tracing instances")?;
        let inst = Instance::create(&root, "lab").context("cannot create a tracing instance")?;
        inst.set_buffer_size_kb(16 * 1024)
            .context("cannot size the tracing buffer")?;
        let fields = inst.path().join("options/fields");
        std::fs::write(&fields, "1").with_context(|| {
            format!(
                "cannot write {} (the kernel needs the `fields` trace option, Linux 6.6+)",
                fields.display()
            )
        })?;
        let mut events: Vec<(&str, &str)> = spec
            .expected()
            .expectations
            .iter()
            .map(|e| (e.system, e.event))
            .collect();
        events.sort();
        events.dedup();
        let mut setup: anyhow::Result<()> = Ok(());
        let outcome = kvmscope_lab::run_with(spec, |t| {
            let filter = t
                .vcpu_tids
                .iter()
                .map(|tid| format!("common_pid == {tid}"))
                .collect::<Vec<_>>()
                .join(" || ");
            for (sys, ev) in &events {
                let r = inst
                    .set_filter(sys, ev, &filter)
                    .and_then(|()| inst.enable(sys, ev));
                if let Err(e) = r {
                    setup = Err(anyhow::Error::new(e).context(format!("cannot enable {sys}:{ev}")));
                    return;
                }
            }
        })
        .with_context(|| format!("lab scenario `{}` failed", spec.scenario))?;
        setup?;
        inst.set_tracing_on(false).context("cannot stop tracing")?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for cpu in 0..cpus {
            let stats = inst.cpu_stats(cpu).unwrap_or_default();
            for l in stats.lines() {
                let lost = l
                    .strip_prefix("overrun: ")
                    .or_else(|| l.strip_prefix("dropped events: "))
                    .is_some_and(|v| v.trim() != "0");
                if lost {
                    bail!(
                        "the tracing buffer overflowed on CPU {cpu} ({}): use a smaller --count",
                        l.trim()
                    );
                }
            }
        }
        // With `options/fields` char arrays are printed raw: not always UTF-8.
        let bytes = std::fs::read(inst.path().join("trace")).context("cannot read the trace")?;
        let text = String::from_utf8_lossy(&bytes);
        let tids: Vec<u32> = outcome.vcpu_tids.iter().map(|t| *t as u32).collect();
        let expectations = &outcome.ground_truth.expectations;
        let mut seen = vec![0u64; expectations.len()];
        for l in text.lines() {
            if let Line::Event(h) = line::parse(l) {
                if !tids.contains(&h.tid) {
                    continue;
                }
                for (e, n) in expectations.iter().zip(seen.iter_mut()) {
                    if e.event == h.name && e.matches_fields(h.payload) {
                        *n += 1;
                    }
                }
            }
        }
        inst.remove()
            .context("cannot remove the tracing instance")?;
        Ok((outcome, seen))
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn host_name(h: HostKind) -> &'static str {
    match h {
        HostKind::Vmx => "vmx (kvm_intel)",
        HostKind::Svm => "svm (kvm_amd)",
        HostKind::Pvm => "pvm (kvm_pvm, shadow paging)",
        _ => "unknown",
    }
}

fn render_text(o: &RunOutcome, seen: Option<&[u64]>, all_stats: bool) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let info = o.spec.scenario.info();
    let gt = &o.ground_truth;
    let _ = writeln!(s, "scenario    {}: {}", info.name, info.summary);
    let _ = writeln!(s, "reproduces  {}", info.reproduces);
    let _ = writeln!(s, "privilege   {} (see docs/lab.md)", o.spec.privilege());
    let _ = writeln!(
        s,
        "host        {}, kernel {}",
        host_name(o.host),
        kernel_release()
    );
    let length = match o.spec.length {
        Length::Count(n) => format!("--count {n}"),
        Length::Duration(d) => format!("--duration {d:?}"),
    };
    let _ = writeln!(
        s,
        "run         {} x {} on {} vCPU(s) ({length}) in {:.3} s = {:.0} ops/s",
        gt.ops,
        info.action,
        o.spec.vcpus,
        o.elapsed.as_secs_f64(),
        o.ops_per_sec()
    );
    let tids: Vec<String> = o.vcpu_tids.iter().map(|t| t.to_string()).collect();
    let _ = writeln!(s, "threads     pid {}, vCPU tids {}", o.pid, tids.join(" "));

    let _ = writeln!(s, "\nground truth: events this VM's vCPU threads must show");
    let seen_head = if seen.is_some() { "      SEEN" } else { "" };
    let _ = writeln!(
        s,
        "  {:<32} {:<44} {:>12}{seen_head}  {:<10} WHY",
        "EVENT", "FILTER", "COUNT", "HOSTS"
    );
    for (k, e) in gt.expectations.iter().enumerate() {
        let seen_col = match seen.and_then(|v| v.get(k)) {
            Some(n) if !o.host.covers(e.host) || e.count.contains(*n) => format!(" {n:>9}"),
            Some(n) => format!(" {:>9}", format!("DIFF {n}")),
            None => String::new(),
        };
        let scope = e.host.name();
        let here = if o.host.covers(e.host) {
            ""
        } else {
            " (not this host)"
        };
        let _ = writeln!(
            s,
            "  {:<32} {:<44} {:>12}{seen_col}  {:<10} {}{here}",
            format!("{}:{}", e.system, e.event),
            e.filter.as_deref().unwrap_or("-"),
            e.count.to_string(),
            scope,
            e.why
        );
    }

    match (&o.stats_before, &o.stats_after) {
        (Some(b), Some(a)) => {
            let checks = o.check_stats(o.host);
            if !checks.is_empty() {
                let _ = writeln!(s, "\nbinary stats promises (per-vCPU stats, summed)");
                for (name, promised, seen, ok) in checks {
                    let seen = seen.map_or("absent".to_string(), |d| format!("{d:+}"));
                    let promised = if promised.max == u64::MAX {
                        format!(">= {}", promised.min)
                    } else {
                        promised.to_string()
                    };
                    let _ = writeln!(
                        s,
                        "  {:<4} {:<24} promised {:<14} seen {seen}",
                        if ok { "ok" } else { "DIFF" },
                        name,
                        promised
                    );
                }
            }
            let _ = writeln!(
                s,
                "\nKVM binary stats (KVM_GET_STATS_FD){}",
                if all_stats {
                    ""
                } else {
                    ", those that changed"
                }
            );
            let _ = writeln!(
                s,
                "  {:<22} {:<28} {:>16} {:>16} {:>14}",
                "SOURCE", "STAT", "BEFORE", "AFTER", "DELTA"
            );
            let pairs = std::iter::once((&b.vm, &a.vm)).chain(b.vcpus.iter().zip(&a.vcpus));
            for (bs, as_) in pairs {
                for d in bs.deltas(as_) {
                    if all_stats || d.delta() != 0 {
                        let _ = writeln!(
                            s,
                            "  {:<22} {:<28} {:>16} {:>16} {:>+14}",
                            as_.id,
                            d.name,
                            d.before,
                            d.after,
                            d.delta()
                        );
                    }
                }
            }
        }
        _ => {
            let _ = writeln!(
                s,
                "\nKVM binary stats: unavailable ({})",
                o.stats_unavailable.as_deref().unwrap_or("unknown reason")
            );
        }
    }
    s
}
