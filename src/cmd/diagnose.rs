//! `kvmscope diagnose [FILE...]`: name the pathology, show the evidence, give the fix.
//!
//! With files: reads them into one report (text traces and trace.dat; a trace.dat made by
//! `kvmscope record` carries the traced machine's system snapshot, which enables the
//! configuration checks) and runs every rule. Without files: records this machine for
//! `--live` (default 5 s) through a private tracefs instance, host and guest events, with
//! the live system snapshot; `--lab SCENARIO` runs a lab guest meanwhile and diagnoses it.
//! Exit status: 0 nothing at warning level or above, 1 findings at warning or above, 2 errors.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kvmscope_analysis::timeline::Timeline;
use kvmscope_analysis::{EventFilter, InputSide, InputSummary, Report, ReportBuilder};
use kvmscope_capture::recorder::{self, EventSel, RecordOptions, Recorder};
use kvmscope_diagnose::Snapshot;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when nothing at warning level or above was found, 1 when \
something was, 2 on errors. Rules and thresholds: docs/rules.md."
)]
pub struct Args {
    /// Captures to diagnose: trace.dat (kvmscope record, trace-cmd), ftrace text, `trace-cmd
    /// report` or `perf script` output. None: record this machine live.
    pub files: Vec<PathBuf>,
    /// Print the diagnosis as JSON.
    #[arg(long)]
    pub json: bool,
    /// Record this machine for this long, then diagnose (e.g. 5s, 500ms, 1m). The default
    /// without files.
    #[arg(long, value_parser = super::args::duration)]
    pub live: Option<Duration>,
    /// Run this lab guest (see `kvmscope lab list`) while recording, and diagnose it alone.
    #[arg(long, value_name = "SCENARIO")]
    pub lab: Option<String>,
    /// With --lab: the scenario's --roots / --period / --msr settings, as in `lab run`.
    #[arg(long, hide = true)]
    pub roots: Option<u32>,
    #[arg(long, hide = true, value_parser = super::args::duration)]
    pub period: Option<Duration>,
    #[arg(long, hide = true, value_parser = parse_u32_auto)]
    pub msr: Option<u32>,
    /// The system snapshot of the traced machine (JSON: `kvmscope record`'s sidecar or a
    /// SystemSnapshot), for text captures that carry none.
    #[arg(long, value_name = "FILE")]
    pub system: Option<PathBuf>,
    /// Keep the live recording in this trace.dat file.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only events of these processes (VMs), by pid.
    #[arg(short = 'p', long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Only events of these threads (vCPU threads), by thread id.
    #[arg(short = 't', long = "tid", value_delimiter = ',')]
    pub tids: Vec<u32>,
    /// Per-CPU ring-buffer size in KiB for live recording.
    #[arg(long, default_value_t = 65536)]
    pub buffer_kb: u64,
    /// No progress line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Also write a self-contained HTML page (findings, plots, every table) to this file.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
    /// With --html: embed a flame graph of these stacks (`perf script` output or folded stacks).
    #[arg(long, value_name = "FILE", requires = "html")]
    pub stacks: Option<PathBuf>,
}

/// Default live recording length.
pub const DEFAULT_LIVE: Duration = Duration::from_secs(5);

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let filter = EventFilter {
        pids: args.pids.clone(),
        tids: args.tids.clone(),
    };
    let mut timeline = args.html.as_ref().map(|_| Timeline::new());
    let mut guest_system = None;
    let (report, system, live_note) = if args.files.is_empty() {
        let (report, system, note) = live(&args, filter, timeline.as_mut())?;
        (report, Some(system), note)
    } else {
        if args.live.is_some() || args.lab.is_some() {
            bail!("give capture files or --live/--lab, not both");
        }
        let (report, sides) = from_files_sides(&args.files, &filter, timeline.as_mut())?;
        guest_system = sides.guest;
        (report, sides.host, None)
    };
    let system = match &args.system {
        Some(p) => Some(read_snapshot(p)?),
        None => system,
    };
    let diagnosis =
        kvmscope_diagnose::diagnose_sides(&report, system.as_ref(), guest_system.as_ref());
    if let (Some(out), Some(t)) = (&args.html, &timeline) {
        crate::cmd::html::write(
            out,
            &crate::cmd::html::PageArgs {
                title: "kvmscope diagnose".into(),
                report: &report,
                timeline: t,
                diagnosis: Some(&diagnosis),
                stacks: args.stacks.as_deref(),
                notes: live_note
                    .iter()
                    .flat_map(|n| n.lines())
                    .map(str::to_string)
                    .collect(),
            },
        )?;
    }
    let text = if args.json {
        kvmscope_diagnose::render::json(&diagnosis)?
    } else {
        let mut t = kvmscope_diagnose::render::text(&diagnosis);
        if let Some(n) = live_note {
            t.insert_str(0, &format!("{n}\n"));
        }
        t
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(if diagnosis.has_warning() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads capture files into one report, with the system snapshot the first trace.dat carries.
pub fn from_files(
    files: &[PathBuf],
    filter: &EventFilter,
) -> anyhow::Result<(Report, Option<Snapshot>)> {
    from_files_with(files, filter, None)
}

/// [`from_files`], also counting the kept events into a timeline (for `--html`).
pub fn from_files_with(
    files: &[PathBuf],
    filter: &EventFilter,
    timeline: Option<&mut Timeline>,
) -> anyhow::Result<(Report, Option<Snapshot>)> {
    let (report, sides) = from_files_sides(files, filter, timeline)?;
    Ok((report, sides.host.or(sides.guest)))
}

/// The system snapshots that came with the inputs: the host's (or the only machine's) and, when
/// a guest's own recording was among them, the guest's.
#[derive(Debug, Default)]
pub struct Sides {
    pub host: Option<Snapshot>,
    pub guest: Option<Snapshot>,
}

/// What a capture's metadata says before its events are read: which kernel it was recorded on
/// and the system snapshot kept in it (a kvmscope trace.dat's sidecar JSON). A trace.dat whose
/// recorded event formats include KVM's exits was made on a kernel that runs KVM (a host); one
/// without is a guest's (or a machine's without KVM). Text captures do not say.
struct InputMeta {
    side: InputSide,
    sidecar: Option<String>,
}

fn input_meta(path: &Path) -> InputMeta {
    match kvmscope_tracedat::file::TraceDat::open(path) {
        Ok((td, _)) => InputMeta {
            side: if td.formats.by_name("kvm", "kvm_exit").is_some() {
                InputSide::Host
            } else {
                InputSide::Guest
            },
            sidecar: td.kvmscope_json().map(str::to_owned),
        },
        Err(_) => InputMeta {
            side: InputSide::Unknown,
            sidecar: None,
        },
    }
}

/// Reads capture files into one report and keeps each side's snapshot: a host's and a guest's
/// recordings read together (e.g. `trace.dat guest-trace.dat` from an emulated arm64 host) give
/// the guest analysis the guest's events only, and the guest's snapshot to its rules.
pub fn from_files_sides(
    files: &[PathBuf],
    filter: &EventFilter,
    mut timeline: Option<&mut Timeline>,
) -> anyhow::Result<(Report, Sides)> {
    let mut builder = ReportBuilder::new();
    let mut inputs: Vec<InputSummary> = Vec::new();
    let metas: Vec<InputMeta> = files.iter().map(|p| input_meta(p)).collect();
    let has = |side| metas.iter().any(|m| m.side == side);
    let mixed = has(InputSide::Guest) && has(InputSide::Host);
    let mut snaps = Sides::default();
    for (path, meta) in files.iter().zip(&metas) {
        builder.set_input(meta.side, mixed);
        inputs.push(crate::cmd::report::read_into_with(
            path,
            filter,
            &mut builder,
            timeline.as_deref_mut(),
        )?);
        let Some(json) = &meta.sidecar else {
            continue;
        };
        let slot = if meta.side == InputSide::Guest && mixed {
            &mut snaps.guest
        } else {
            &mut snaps.host
        };
        if slot.is_none() {
            *slot =
                Some(snapshot_from_json(json).with_context(|| {
                    format!("the system snapshot stored in {}", path.display())
                })?);
        }
    }
    Ok((builder.finish(inputs), snaps))
}

fn snapshot_from_json(json: &str) -> anyhow::Result<Snapshot> {
    let v: serde_json::Value = serde_json::from_str(json).context("not JSON")?;
    let inner = v.get("system").cloned().unwrap_or(v);
    serde_json::from_value(inner).context("not a kvmscope system snapshot")
}

fn read_snapshot(path: &Path) -> anyhow::Result<Snapshot> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the system snapshot {}", path.display()))?;
    snapshot_from_json(&text).with_context(|| format!("in {}", path.display()))
}

/// The events a live diagnosis records: every event a rule reads, without PVM's
/// per-instruction emulation events (kvm_emulate_insn, kvm_fpu, kvm_mmu_pagetable_walk,
/// kvm_mmu_paging_element), which would multiply the volume by ten and no rule reads.
pub const LIVE_EVENTS: &[&str] = &[
    "kvm:kvm_exit",
    "kvm:kvm_entry",
    "kvm:kvm_msr",
    "kvm:kvm_pio",
    "kvm:kvm_mmio",
    "kvm:kvm_userspace_exit",
    "kvm:kvm_hv_timer_state",
    "kvm:kvm_wait_lapic_expire",
    "kvm:kvm_apic_accept_irq",
    "kvm:kvm_apic_ipi",
    "kvm:kvm_vcpu_wakeup",
    "kvm:kvm_halt_poll_ns",
    "kvm:kvm_page_fault",
    "kvm:kvm_cr",
    "kvm:kvm_inj_virq",
    "kvm:kvm_wfx_arm64",
    "kvmmmu:kvm_mmu_get_page",
    "kvmmmu:kvm_mmu_sync_page",
    "kvmmmu:kvm_mmu_unsync_page",
    "kvmmmu:kvm_mmu_prepare_zap_page",
    "kvmmmu:kvm_mmu_spte_requested",
    "kvmmmu:kvm_mmu_set_spte",
    "kvmmmu:fast_page_fault",
    "msr:write_msr",
    "timer:hrtimer_start",
    "timer:hrtimer_expire_entry",
    "timer:hrtimer_expire_exit",
    "timer:hrtimer_cancel",
    "irq_vectors:local_timer_entry",
    "irq_vectors:local_timer_exit",
    "irq_vectors:call_function_entry",
    "irq_vectors:call_function_single_entry",
    "irq_vectors:reschedule_entry",
    "ipi:ipi_send_cpu",
    "ipi:ipi_send_cpumask",
    "csd:csd_queue_cpu",
    "csd:csd_function_entry",
];

fn live_events() -> Vec<EventSel> {
    LIVE_EVENTS
        .iter()
        .map(|e| {
            let (s, n) = e.split_once(':').unwrap_or((e, ""));
            EventSel {
                system: s.into(),
                event: Some(n.into()),
                optional: true,
            }
        })
        .collect()
}

/// Records this machine (and runs a lab guest when asked), then builds the report.
fn live(
    args: &Args,
    mut filter: EventFilter,
    timeline: Option<&mut Timeline>,
) -> anyhow::Result<(Report, Snapshot, Option<String>)> {
    let duration = args.live.unwrap_or(DEFAULT_LIVE);
    let root = kvmscope_capture::host::tracefs()
        .context("cannot use tracefs (live diagnosis needs root and tracefs)")?;
    let _guard = kvmscope_capture::guard::install(
        &root,
        kvmscope_capture::guard::OnSignal::Stop {
            grace: Duration::from_secs(10),
        },
    )
    .context("cannot install the cleanup guard")?;
    let (output, keep) = match &args.output {
        Some(p) => (p.clone(), true),
        None => (
            std::env::temp_dir().join(format!("kvmscope-diagnose-{}.dat", std::process::id())),
            false,
        ),
    };
    let progress = !args.quiet && std::io::stderr().is_terminal();
    let mut filters = Vec::new();

    // With --lab the guest is built first; its threads are known before it runs a single
    // instruction, so the recording starts (kernel-filtered on them) before the guest does.
    let lab = match &args.lab {
        Some(name) => Some(LabRun::start(name, args, duration)?),
        None => None,
    };
    if let Some(l) = &lab {
        let tids: Vec<String> = l
            .threads
            .iter()
            .map(|t| format!("common_pid == {t}"))
            .collect();
        filters.push((None, tids.join(" || ")));
        filter.tids = l.threads.clone();
    }
    let system_start = recorder::collect_system();
    let options = RecordOptions {
        events: live_events(),
        filters,
        buffer_kb: Some(args.buffer_kb),
        subbuf_kb: None,
        kallsyms: recorder::KallsymsMode::Referenced,
        version: kvmscope_tracedat::file::Version::V6,
    };
    let mut rec = match Recorder::start(&root, options, &output) {
        Ok(r) => r,
        Err(e) => {
            if let Some(l) = lab {
                l.abort();
            }
            return Err(e)
                .with_context(|| format!("cannot start recording into {}", output.display()));
        }
    };
    if !args.quiet {
        eprintln!(
            "kvmscope: recording {} events for {:.1} s{} (private tracefs instance)...",
            rec.enabled_events().len(),
            duration.as_secs_f64(),
            lab.as_ref()
                .map(|l| format!(
                    " while lab guest `{}` runs (pid {}, vCPU threads {:?})",
                    l.name, l.pid, l.threads
                ))
                .unwrap_or_default()
        );
    }
    let lab = lab.map(LabRun::go);
    let started = Instant::now();
    let mut last = started;
    let ncpu = rec.progress().lost_known.len() as u64;
    loop {
        let pages = rec.poll().context("reading the ring buffers")?;
        if kvmscope_capture::guard::stop_requested().is_some() || started.elapsed() >= duration {
            break;
        }
        if progress && last.elapsed() >= Duration::from_millis(500) {
            let p = rec.progress();
            eprint!(
                "\r\x1b[K  {:>5.1} / {:.1} s  {:>10} events  lost {}",
                started.elapsed().as_secs_f64(),
                duration.as_secs_f64(),
                p.events,
                p.lost_total()
            );
            let _ = std::io::stderr().flush();
            last = Instant::now();
        }
        if pages <= ncpu {
            rec.wait(Duration::from_millis(100))
                .context("waiting for the ring buffers")?;
        }
    }
    let lab_outcome = match lab {
        Some(l) => Some(l.join()?),
        None => None,
    };
    // Drain what the guest did up to its last instruction.
    rec.poll().context("reading the ring buffers")?;
    if progress {
        eprintln!();
    }
    let system_end = recorder::collect_system();
    let sidecar = recorder::system_sidecar(&system_start, &system_end);
    let p = rec
        .finish(Some(sidecar))
        .context("finishing the recording")?;
    if !args.quiet {
        eprintln!(
            "kvmscope: {} events recorded{}{}",
            p.events,
            if p.lost_total() > 0 {
                format!(", {} lost", p.lost_total())
            } else {
                String::new()
            },
            if keep {
                format!(" into {}", output.display())
            } else {
                String::new()
            }
        );
    }
    let read = from_files_with(std::slice::from_ref(&output), &filter, timeline);
    if !keep {
        let _ = std::fs::remove_file(&output);
    }
    // Function names come from the recording's own kallsyms (see kvmscope_tracedat::events).
    let (report, _) = read?;
    let facts = kvmscope_diagnose::Facts::new(&report);
    let mut note = None;
    if facts.kvm_events == 0 {
        note = Some(format!(
            "kvmscope: saw no KVM activity in {:.1} s: no VM ran a vCPU on this machine while it was recorded{}. \
             Run it while your VMs are busy, or try `kvmscope diagnose --lab timer-storm` to see a known pathology.",
            duration.as_secs_f64(),
            if facts.guest_events > 0 { " (guest-side events of this kernel were seen and are diagnosed below)" } else { "" }
        ));
    }
    if let Some(o) = lab_outcome {
        let n = format!(
            "kvmscope: lab guest `{}` ran {} operations in {:.2} s ({:.0} ops/s); only its threads are diagnosed.",
            args.lab.as_deref().unwrap_or_default(),
            o.ops,
            o.elapsed.as_secs_f64(),
            o.ops_per_sec()
        );
        note = Some(match note {
            Some(x) => format!("{n}\n{x}"),
            None => n,
        });
    }
    Ok((report, system_start, note))
}

/// A lab guest built and waiting at the starting line, then running in its own thread.
struct LabRun {
    name: String,
    pid: i32,
    threads: Vec<u32>,
    go: std::sync::mpsc::Sender<bool>,
    handle: std::thread::JoinHandle<Result<kvmscope_lab::RunOutcome, kvmscope_lab::LabError>>,
}

struct RunningLab(
    std::thread::JoinHandle<Result<kvmscope_lab::RunOutcome, kvmscope_lab::LabError>>,
);

impl LabRun {
    fn start(name: &str, args: &Args, duration: Duration) -> anyhow::Result<LabRun> {
        use kvmscope_lab::{Scenario, ScenarioSpec};
        let Some(scenario) = Scenario::from_name(name) else {
            let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
            bail!("unknown lab scenario {name:?}: one of {}", names.join(", "));
        };
        let mut spec = if scenario == Scenario::Pagefault {
            // Each page is touched once: a count, not a duration. ~50,000 pages per second
            // asked for (about half what this machine does), at most 200,000 (800 MiB).
            ScenarioSpec::new(scenario)
                .count(((duration.as_secs_f64() * 50_000.0) as u64).clamp(4_096, 200_000))
        } else {
            ScenarioSpec::new(scenario).duration(duration)
        };
        if let Some(r) = args.roots {
            spec.roots = r;
        }
        if let Some(p) = args.period {
            spec.period = p;
        }
        if let Some(m) = args.msr {
            spec.msr = m;
        }
        spec.timeout = duration + Duration::from_secs(60);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();
        let handle = std::thread::Builder::new()
            .name("kvmscope-lab".into())
            .spawn(move || {
                kvmscope_lab::run_with(&spec, |t| {
                    let _ = ready_tx.send((t.pid, t.vcpu_tids.clone()));
                    // Wait until the recording runs (or give up: the run still ends).
                    let _ = go_rx.recv_timeout(Duration::from_secs(30));
                })
            })
            .context("cannot start the lab thread")?;
        let (pid, tids) = match ready_rx.recv() {
            Ok(x) => x,
            Err(_) => {
                // The run failed before its threads existed: report its error.
                let err = handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("the lab thread panicked"))?
                    .err();
                return Err(match err {
                    Some(e) => anyhow::Error::new(e),
                    None => anyhow::anyhow!("the lab guest ended before it started"),
                })
                .context(format!("cannot run lab scenario {name}"));
            }
        };
        Ok(LabRun {
            name: name.to_string(),
            pid,
            threads: tids.iter().map(|&t| t as u32).collect(),
            go: go_tx,
            handle,
        })
    }

    fn go(self) -> RunningLab {
        let _ = self.go.send(true);
        RunningLab(self.handle)
    }

    fn abort(self) {
        let _ = self.go.send(false);
        let _ = self.handle.join();
    }
}

impl RunningLab {
    fn join(self) -> anyhow::Result<kvmscope_lab::RunOutcome> {
        self.0
            .join()
            .map_err(|_| anyhow::anyhow!("the lab thread panicked"))?
            .context("the lab guest failed")
    }
}

fn parse_u32_auto(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("bad number {s:?}"))
}
