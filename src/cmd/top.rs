//! `kvmscope top`: live KVM event counts, kvm_stat done better. Counting happens in the
//! kernel (perf_event_open tracepoint counters, one per CPU per event, or per thread of one
//! VM); this command only reads the counters once per interval.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use kvmscope_capture::guard::{self, OnSignal};
use kvmscope_top::catalog::{self, Catalog, Extra, Mode, Vendor};
use kvmscope_top::live::{Collector, Scope, TopError};
use kvmscope_top::model::{Model, View};
use kvmscope_top::{render, vms};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one interval's statistics and exit (like `kvm_stat -1`).
    #[arg(short = '1', long)]
    pub once: bool,
    /// Print one timestamped row per interval, with a banner every 20 rows (like `kvm_stat -l`).
    #[arg(short = 'l', long)]
    pub log: bool,
    /// CSV instead of aligned text (per interval; with --once, one line per event).
    #[arg(short = 'c', long)]
    pub csv: bool,
    /// One JSON object per interval (JSON lines).
    #[arg(long)]
    pub json: bool,
    /// Skip events (and log rows) that are all zeros.
    #[arg(short = 'z', long = "skip-zero-records")]
    pub skip_zero: bool,
    /// Refresh interval (`3s`, `500ms`, or seconds).
    #[arg(short = 'i', long, default_value = "3s", value_parser = super::args::duration)]
    pub interval: Duration,
    /// Stop after this long (batch modes and the TUI).
    #[arg(long, value_parser = super::args::duration)]
    pub duration: Option<Duration>,
    /// Count only the threads of this VM process (per-VM and per-vCPU view).
    #[arg(short = 'p', long, conflicts_with = "vm")]
    pub pid: Option<i32>,
    /// Count only the VM with this guest name (QEMU -name, Firecracker --id, ...).
    #[arg(short = 'g', long)]
    pub vm: Option<String>,
    /// Guest-side mode: this machine's own timer, MSR-write and IPI events (chosen
    /// automatically when the kernel has no KVM events).
    #[arg(long)]
    pub guest: bool,
    /// Only events whose name matches this regular expression (like `kvm_stat -f`).
    #[arg(short = 'f', long)]
    pub fields: Option<String>,
    /// Count and show the drill-down children (kvm_exit per exit reason, kvm_userspace_exit per
    /// reason, kvm_pio per port, kvm_msr per MSR). Off by default in host mode, as in
    /// kvm_stat: each child is one more kernel filter run on every hit of its parent. Always
    /// on in guest mode (write_msr per MSR, csd_function_entry per function).
    #[arg(short = 'x', long)]
    pub drilldown: bool,
    /// Extra port for kvm_pio's drill-down (repeatable; decimal or 0x hex).
    #[arg(long, value_parser = super::args::number)]
    pub port: Vec<u64>,
    /// Extra MSR for kvm_msr's / write_msr's drill-down (repeatable).
    #[arg(long, value_parser = super::args::number)]
    pub msr: Vec<u64>,
    /// Read KVM's own statistics from debugfs (/sys/kernel/debug/kvm, as `kvm_stat -d`)
    /// instead of counting tracepoints: free per event, but only where debugfs is readable
    /// (not under kernel lockdown); with --pid, one VM and its vCPUs. Batch modes only.
    #[arg(short = 'd', long)]
    pub debugfs: bool,
    /// Where KVM's debugfs directory is (tests).
    #[arg(long, hide = true, default_value = kvmscope_top::debugfs::ROOT)]
    pub debugfs_root: std::path::PathBuf,
}

/// What a batch run reads each interval.
enum Source {
    Tracepoints(Box<Collector>),
    Debugfs(kvmscope_top::debugfs::Debugfs),
}

impl Source {
    fn read(&mut self) -> anyhow::Result<kvmscope_top::live::Sample> {
        Ok(match self {
            Source::Tracepoints(c) => {
                c.rescan()?;
                c.read()?
            }
            Source::Debugfs(d) => d.read()?,
        })
    }
}

fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    render::utc(secs)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    use kvmscope_capture::counters::{has_perfmon, permission_advice, Target};
    if args.debugfs {
        return debugfs_run(&args);
    }
    // Without privileges tracefs is unreadable (mode 0700) and host::tracefs would blame the
    // mount: say what is really missing.
    if !has_perfmon() && std::fs::read_dir(kvmscope_capture::host::TRACEFS).is_err() {
        bail!(
            "kvmscope top counts kernel tracepoints and reads their ids from tracefs: {}",
            permission_advice(&Target::Cpu(0))
        );
    }
    let tracefs = kvmscope_capture::host::tracefs().map_err(TopError::from)?;
    let _guard = guard::install(
        &tracefs,
        OnSignal::Stop {
            grace: Duration::from_secs(2),
        },
    )
    .context("cannot install the signal handlers")?;
    let extra = Extra {
        ports: args.port.iter().map(|&p| p as u16).collect(),
        msrs: args.msr.iter().map(|&m| m as u32).collect(),
    };
    let mode = if args.guest || !catalog::has_kvm_events(&tracefs) {
        Mode::Guest
    } else {
        Mode::Host
    };
    let mut cat: Catalog = match mode {
        Mode::Host => catalog::host(&tracefs, Vendor::detect(), &extra),
        Mode::Guest => catalog::guest(&tracefs, &extra),
    };
    let filter = match &args.fields {
        Some(f) => Some(
            kvmscope_top::regex::Regex::new(f)
                .with_context(|| format!("bad --fields regex {f:?}"))?,
        ),
        None => None,
    };
    if let Some(re) = &filter {
        cat.retain(|n| re.is_match(n));
    }
    if cat.events.is_empty() {
        bail!(TopError::NoEvents {
            tracefs: tracefs.clone(),
            why: match (mode, &args.fields) {
                (_, Some(f)) => format!("no event matches --fields {f:?}"),
                (Mode::Host, None) => "the kvm module is not loaded".into(),
                (Mode::Guest, None) => "this kernel has none of the guest-side events (msr, timer, irq_vectors, ipi, csd)".into(),
            },
        });
    }
    let scope = match (&args.pid, &args.vm) {
        (Some(pid), _) => {
            Scope::Vm(vms::describe(*pid).ok_or_else(|| TopError::NoSuchVm(pid.to_string()))?)
        }
        (None, Some(name)) => {
            Scope::Vm(vms::find(name).ok_or_else(|| TopError::NoSuchVm(name.clone()))?)
        }
        (None, None) => Scope::System,
    };
    let view = View {
        // Guest mode's children are few and are its point (TSC-deadline writes per second,
        // csd functions): shown from the start there.
        drilldown: args.drilldown || mode == Mode::Guest,
        sort: Default::default(),
        filter: None,
        skip_zero: args.skip_zero,
    };
    let batch = args.once || args.log || args.csv || args.json;
    if !batch && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return crate::cmd::top::tui(args, tracefs, cat, scope, view);
    }
    batch_run(&args, &tracefs, &cat, &scope, view)
}

fn open(
    tracefs: &std::path::Path,
    cat: &Catalog,
    scope: &Scope,
    drilldown: bool,
) -> anyhow::Result<Collector> {
    let col = Collector::open(tracefs, cat, scope, drilldown)?;
    if let Some(note) = col.fd_note() {
        eprintln!("kvmscope top: {note}");
    }
    Ok(col)
}

fn debugfs_run(args: &Args) -> anyhow::Result<ExitCode> {
    if !(args.once || args.log || args.csv || args.json) {
        bail!("--debugfs works with --once, --log, --csv or --json; the TUI counts tracepoints (leave out --debugfs)");
    }
    if args.vm.is_some() || args.guest || args.drilldown || args.fields.is_some() {
        bail!("--debugfs takes --pid to choose a VM; --vm, --guest, --drilldown and --fields count tracepoints");
    }
    // No tracefs instance is made here; the guard still turns Ctrl-C/SIGTERM into a clean stop.
    let _guard = guard::install(
        std::path::Path::new(kvmscope_capture::host::TRACEFS),
        OnSignal::Stop {
            grace: Duration::from_secs(2),
        },
    )
    .context("cannot install the signal handlers")?;
    let d = kvmscope_top::debugfs::Debugfs::open(&args.debugfs_root, args.pid)?;
    let scope = match args.pid {
        Some(pid) => format!("pid {pid} (debugfs)"),
        None => "summary (debugfs)".to_string(),
    };
    let keys = d.keys();
    let mut source = Source::Debugfs(d);
    let first = source.read()?;
    eprintln!(
        "kvmscope top: reading {} KVM statistics from {}; interval {:?}",
        keys.len(),
        args.debugfs_root.display(),
        args.interval
    );
    let view = View {
        skip_zero: args.skip_zero,
        ..View::default()
    };
    batch_loop(args, source, first, Mode::Host, &scope, keys, view)
}

fn batch_run(
    args: &Args,
    tracefs: &std::path::Path,
    cat: &Catalog,
    scope: &Scope,
    view: View,
) -> anyhow::Result<ExitCode> {
    let col = open(tracefs, cat, scope, view.drilldown)?;
    // The base reading comes before the banner: callers start their load when they see it.
    let (len, targets) = (col.len(), col.targets());
    let mut source = Source::Tracepoints(Box::new(col));
    let first = source.read()?;
    eprintln!(
        "kvmscope top: counting {} counters ({} events{}) on {} {}; interval {:?}",
        len,
        if view.drilldown {
            cat.keys().len()
        } else {
            cat.events.len()
        },
        if view.drilldown {
            " with drill-down children"
        } else {
            ""
        },
        targets,
        match scope {
            Scope::System => "CPUs",
            Scope::Vm(_) => "threads",
        },
        args.interval
    );
    batch_loop(
        args,
        source,
        first,
        cat.mode,
        &scope.describe(),
        cat.keys(),
        view,
    )
}

/// Reads `source` every interval and prints as the batch mode asks.
fn batch_loop(
    args: &Args,
    mut source: Source,
    first: kvmscope_top::live::Sample,
    mode: Mode,
    scope: &str,
    keys: Vec<kvmscope_top::catalog::Key>,
    view: View,
) -> anyhow::Result<ExitCode> {
    let mut model = Model::new(mode, scope, keys, &first.counts);
    model.update(&first.counts, &first.per_target, 0.0);
    let mut out = std::io::stdout().lock();
    let start = Instant::now();
    let mut last = Instant::now();
    let cols_view = view.clone();
    let cols = render::log_columns(&model, &cols_view);
    let mut printed = 0usize;
    loop {
        let stopped = guard::wait_stop(args.interval);
        let s = source.read()?;
        let secs = last.elapsed().as_secs_f64();
        last = Instant::now();
        model.update(&s.counts, &s.per_target, secs);
        let time = now_utc();
        let r = if args.once {
            if args.json {
                writeln!(out, "{}", render::json_line(&model, &view, &time))
            } else if args.csv {
                write!(out, "{}", render::summary_csv(&model, &view))
            } else {
                write!(out, "{}", render::summary(&model, &view))
            }
        } else if args.json {
            writeln!(out, "{}", render::json_line(&model, &view, &time))
        } else if args.csv {
            let mut r = Ok(());
            if printed == 0 {
                r = writeln!(out, "{}", render::csv_banner(&model, &cols));
            }
            if let Some(row) = render::csv_row(&model, &cols, &time, args.skip_zero) {
                printed += 1;
                r = r.and_then(|_| writeln!(out, "{row}"));
            }
            r
        } else {
            let mut r = Ok(());
            if let Some(row) = render::log_row(&model, &cols, &time, args.skip_zero) {
                if printed.is_multiple_of(render::BANNER_EVERY) {
                    r = writeln!(out, "{}", render::log_banner(&model, &cols));
                }
                printed += 1;
                r = r.and_then(|_| writeln!(out, "{row}"));
            }
            r
        };
        match r.and_then(|_| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            other => other.context("cannot write to stdout")?,
        }
        if args.once || stopped || args.duration.is_some_and(|d| start.elapsed() >= d) {
            // Closing the counters takes a kernel grace period per tracepoint (seconds):
            // that is not a hang, so the signal guard must not cut it short.
            guard::acknowledge_stop();
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tui(
    args: Args,
    tracefs: std::path::PathBuf,
    cat: Catalog,
    scope: Scope,
    view: View,
) -> anyhow::Result<ExitCode> {
    let opts = kvmscope_top::tui::Options {
        tracefs,
        catalog: cat,
        scope,
        view,
        interval: args.interval,
        duration: args.duration,
    };
    kvmscope_top::tui::run(opts, || guard::stop_requested().is_some())?;
    Ok(ExitCode::SUCCESS)
}
