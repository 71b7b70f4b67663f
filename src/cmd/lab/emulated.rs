//! `kvmscope lab run SCENARIO --host svm|svm-shadow`: the same run on an emulated KVM host
//! (upstream KVM under QEMU's emulator), recorded there, with the trace.dat brought back.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use kvmscope_lab::emulated::{self, Flavour, HostConfig, HostRun, Job, Progress};
use kvmscope_lab::{Length, ScenarioSpec};

use super::RunArgs;

/// The `kvmscope lab run` arguments that describe the run itself, to repeat inside.
fn inner_args(r: &RunArgs) -> Vec<String> {
    let mut a = vec![r.scenario.clone()];
    let mut opt = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            a.push(format!("--{name}"));
            a.push(v);
        }
    };
    opt("count", r.count.map(|n| n.to_string()));
    opt(
        "duration",
        r.duration.map(|d| format!("{}ms", d.as_millis())),
    );
    opt("vcpus", r.vcpus.map(|n| n.to_string()));
    opt("port", r.port.map(|n| format!("{n:#x}")));
    opt("msr", r.msr.map(|n| format!("{n:#x}")));
    opt("msr-value", r.msr_value.map(|n| format!("{n:#x}")));
    opt("roots", r.roots.map(|n| n.to_string()));
    opt("period", r.period.map(|d| format!("{}us", d.as_micros())));
    opt("cpl", r.cpl.map(|n| n.to_string()));
    opt("timeout", r.timeout.map(|d| format!("{}ms", d.as_millis())));
    if r.all_stats {
        a.push("--all-stats".into());
    }
    a
}

/// Single-quotes a word for sh.
fn quote(w: &str) -> String {
    format!("'{}'", w.replace('\'', r"'\''"))
}

/// The job that runs one lab scenario inside the host: recorded whole (kvm and kvmmmu events)
/// into `trace.dat`, verified against its ground truth in a private instance, the result in
/// `lab.json` and the text report on stdout.
pub fn lab_job(name: &str, lab_args: &[String]) -> Job {
    let args: Vec<String> = lab_args.iter().map(|a| quote(a)).collect();
    Job {
        name: name.to_string(),
        script: format!(
            "kvmscope record -q -e kvm,mmu -o trace.dat -- kvmscope lab run {} --verify --save-json lab.json\n",
            args.join(" ")
        ),
    }
}

/// A progress display for the emulated host on stderr: a live line on a terminal, a line
/// per stage otherwise.
pub fn progress_printer(flavour: Flavour) -> impl FnMut(Progress<'_>) {
    let live = std::io::stderr().is_terminal();
    let mut last = String::new();
    move |p: Progress<'_>| {
        let (stage, secs) = match p {
            Progress::Preparing(what) => (what.to_string(), None),
            Progress::Booting(t) => ("booting the emulated kernel".to_string(), Some(t)),
            Progress::Job {
                index,
                total,
                name,
                elapsed,
            } => (format!("job {}/{total}: {name}", index + 1), Some(elapsed)),
            Progress::Saving => ("reading the outputs".to_string(), None),
        };
        let mut err = std::io::stderr().lock();
        if live {
            let t = secs.map_or(String::new(), |t| format!(" {:.0} s", t.as_secs_f64()));
            let _ = write!(err, "\r\x1b[K[{}] {stage}{t}", flavour.name());
            let _ = err.flush();
        } else if stage != last {
            let _ = writeln!(err, "[{}] {stage}", flavour.name());
        }
        last = stage;
    }
}

/// Ends a live progress line.
pub fn progress_done() {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[K");
    }
}

/// The kvmscope to carry into an emulated host: this very executable.
pub fn this_kvmscope() -> anyhow::Result<PathBuf> {
    std::env::current_exe()
        .context("cannot find this kvmscope executable to carry into the emulated host")
}

/// Lines describing the host, for the top of a report.
pub fn banner(h: &HostRun) -> String {
    let mut s = format!(
        "emulated host  {}: {}\n               kernel {} (Debian {} {}), {}, {} CPU(s), {} MiB\n               booted in {:.1} s, whole run {:.1} s (emulated time inside: rates and latencies are not this machine's)\n",
        h.flavour.name(),
        h.flavour.describe(),
        h.kernel.release,
        h.kernel.package,
        h.kernel.version,
        h.qemu,
        h.cpus,
        h.memory_mib,
        h.boot_secs,
        h.wall_secs
    );
    if h.attempts > 1 {
        s.push_str(&format!(
            "               the emulated kernel crashed and was booted again: {}\n",
            h.crashes.join("; ")
        ));
    }
    if h.oopses > 0 {
        s.push_str(&format!(
            "               WARNING: the emulated kernel oopsed {} time(s) (see console.log)\n",
            h.oopses
        ));
    }
    s
}

pub fn run(r: &RunArgs, spec: &ScenarioSpec, flavour: Flavour) -> anyhow::Result<ExitCode> {
    let out = r.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "kvmscope-lab-{}-{}",
            flavour.name(),
            spec.scenario.name()
        ))
    });
    let job = lab_job(spec.scenario.name(), &inner_args(r));
    let mut config = HostConfig::new(flavour, this_kvmscope()?);
    let run_for = match spec.length {
        Length::Duration(d) => d,
        Length::Count(_) => Duration::ZERO,
    };
    config.time_limit = Duration::from_secs(300) + spec.timeout.max(run_for) * 2;
    let host = emulated::run(&config, &[job], &out, &mut progress_printer(flavour));
    progress_done();
    let host = host.with_context(|| {
        format!(
            "lab scenario `{}` on the emulated {} host failed",
            spec.scenario,
            flavour.name()
        )
    })?;
    let j = &host.jobs[0];
    let text = |name: &str| std::fs::read_to_string(j.dir.join(name)).unwrap_or_default();
    if !(0..=1).contains(&j.status) {
        bail!(
            "lab scenario `{}` failed inside the emulated {} host (exit status {}):\n{}\n(console: {})",
            spec.scenario,
            flavour.name(),
            j.status,
            text("stderr").trim_end(),
            out.join("console.log").display()
        );
    }
    let lab: serde_json::Value = serde_json::from_str(&text("lab.json")).with_context(|| {
        format!(
            "the emulated host left no readable {}",
            j.dir.join("lab.json").display()
        )
    })?;
    let trace = j.dir.join("trace.dat");
    let mut stdout = std::io::stdout().lock();
    if r.json {
        let v = serde_json::json!({
            "emulated_host": host,
            "lab": lab,
            "trace": trace,
        });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        write!(stdout, "{}", banner(&host))?;
        writeln!(
            stdout,
            "saved          {} (read it with `kvmscope report {0}`), lab.json beside it, console.log in {}\n",
            trace.display(),
            out.display()
        )?;
        write!(stdout, "{}", text("stdout"))?;
    }
    Ok(if j.status == 1 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_repeats_the_run_recorded_and_verified() {
        let j = lab_job("pio", &["pio".into(), "--count".into(), "1000".into()]);
        assert_eq!(
            j.script,
            "kvmscope record -q -e kvm,mmu -o trace.dat -- kvmscope lab run 'pio' '--count' '1000' --verify --save-json lab.json\n"
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
