//! `kvmscope record`: capture KVM (and guest-side) trace events into a trace.dat file through
//! a private tracefs instance, with a live status line. `trace-cmd report` and KernelShark
//! open the file; `kvmscope report` reads it.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kvmscope_capture::guard::{self, OnSignal};
use kvmscope_capture::recorder::{self, KallsymsMode, RecordOptions, Recorder};
use kvmscope_tracedat::file::Version;

fn parse_version(s: &str) -> Result<Version, String> {
    Version::parse(s).ok_or_else(|| format!("unknown trace.dat format {s:?}: v6 or v7"))
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Event presets: kvm (default), mmu, timers, ipi, guest, all; or a list such as \
kvm:kvm_pio,kvm:kvm_mmio,msr:* (system:event, system:* or a preset, comma-separated).\n\
Filters: --filter 'kvm:kvm_pio:port == 0x3f8' applies to one event; --filter 'common_pid == 1234' \
to every selected event; filters for the same event are combined with &&, and so is --pid. Stop with Ctrl-C, --duration, or when COMMAND exits."
)]
pub struct Args {
    /// The trace.dat file to write.
    #[arg(short, long, default_value = "trace.dat")]
    pub output: PathBuf,
    /// Stop after this long (e.g. 10s, 500ms, 2m; a bare number is seconds).
    #[arg(short, long, value_parser = super::args::duration)]
    pub duration: Option<Duration>,
    /// Events to record: a preset or a comma-separated list of system:event.
    #[arg(short, long, default_value = "kvm")]
    pub events: String,
    /// A kernel filter: `system:event:EXPR` for one event, or `EXPR` for all selected events.
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Only events of the threads of these processes (e.g. a QEMU pid: its vCPU threads);
    /// repeatable. Threads started later are not included.
    #[arg(short, long)]
    pub pid: Vec<u32>,
    /// Per-CPU ring-buffer size in KiB (of the private instance only). Larger buffers ride
    /// out longer bursts without losing events.
    #[arg(long, default_value_t = 4096)]
    pub buffer_kb: u64,
    /// Store all of /proc/kallsyms, as trace-cmd does (~5 MB more). Without it the file keeps
    /// the symbols the recorded pointer fields name (hrtimer and csd functions, IPI
    /// callbacks and callsites), so reports on another machine name them.
    #[arg(long)]
    pub kallsyms: bool,
    /// trace.dat version: v6 (any trace-cmd, KernelShark) or v7 (zstd-compressed, as
    /// `trace-cmd record --file-version 7 --compression zstd` writes; trace-cmd 3.0+).
    #[arg(long, default_value = "v6", value_parser = parse_version)]
    pub format: Version,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No live status line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Run this command and record until it exits.
    #[arg(last = true)]
    pub command: Vec<String>,
}

fn parse_filters(specs: &[String]) -> Vec<(Option<(String, String)>, String)> {
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    specs
        .iter()
        .map(|f| {
            if let Some((sys, rest)) = f.split_once(':') {
                if let Some((ev, expr)) = rest.split_once(':') {
                    if ident(sys.trim()) && ident(ev.trim()) {
                        return (
                            Some((sys.trim().to_string(), ev.trim().to_string())),
                            expr.trim().to_string(),
                        );
                    }
                }
            }
            (None, f.trim().to_string())
        })
        .collect()
}

/// `common_pid == T || ...` over every thread of the given processes.
fn pid_filter(pids: &[u32]) -> anyhow::Result<String> {
    let mut tids = Vec::new();
    for pid in pids {
        let dir = format!("/proc/{pid}/task");
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("process {pid} not found ({dir})"))?;
        for e in entries.flatten() {
            if let Some(t) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) {
                tids.push(t);
            }
        }
    }
    tids.sort_unstable();
    Ok(tids
        .iter()
        .map(|t| format!("common_pid == {t}"))
        .collect::<Vec<_>>()
        .join(" || "))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.duration.is_some() && !args.command.is_empty() {
        bail!("use either --duration or -- COMMAND, not both");
    }
    let root = kvmscope_capture::host::tracefs().context("cannot use tracefs")?;
    let g = guard::install(
        &root,
        OnSignal::Stop {
            grace: Duration::from_secs(10),
        },
    )
    .context("cannot install the cleanup guard")?;
    if let Some(e) = &g.stale_error {
        eprintln!("kvmscope: warning: {e}");
    }
    for p in &g.removed_stale {
        eprintln!(
            "kvmscope: removed stale instance {} left by a killed run",
            p.display()
        );
    }
    let mut filters = parse_filters(&args.filter);
    if !args.pid.is_empty() {
        filters.push((None, pid_filter(&args.pid)?));
    }
    let options = RecordOptions {
        events: recorder::parse_events(&args.events)?,
        filters,
        buffer_kb: Some(args.buffer_kb),
        subbuf_kb: None,
        kallsyms: if args.kallsyms {
            KallsymsMode::All
        } else {
            KallsymsMode::Referenced
        },
        version: args.format,
    };
    let system_start = recorder::collect_system();
    let mut rec = Recorder::start(&root, options, &args.output)
        .with_context(|| format!("cannot start recording into {}", args.output.display()))?;
    for n in &rec.notes {
        eprintln!("kvmscope: {n}");
    }
    let mut child = match args.command.split_first() {
        Some((prog, rest)) => Some(
            std::process::Command::new(prog)
                .args(rest)
                .spawn()
                .with_context(|| format!("cannot run {prog:?}"))?,
        ),
        None => None,
    };
    let live = !args.quiet && std::io::stderr().is_terminal();
    if !args.quiet {
        eprintln!(
            "kvmscope: recording {} event(s) into {}{}",
            rec.enabled_events().len(),
            args.output.display(),
            if args.command.is_empty() && args.duration.is_none() {
                " (Ctrl-C to stop)"
            } else {
                ""
            }
        );
    }
    let ncpu = rec.progress().lost_known.len() as u64;
    let started = Instant::now();
    let mut last_tick = started;
    let mut last_events = 0u64;
    let mut child_status = None;
    loop {
        let pages = rec.poll().context("reading the ring buffers")?;
        if guard::stop_requested().is_some() {
            break;
        }
        if let Some(d) = args.duration {
            if started.elapsed() >= d {
                break;
            }
        }
        if let Some(c) = child.as_mut() {
            if let Some(st) = c.try_wait().context("waiting for the command")? {
                child_status = Some(st);
                break;
            }
        }
        let now = Instant::now();
        if live && now.duration_since(last_tick) >= Duration::from_secs(1) {
            rec.refresh_kernel_stats();
            let p = rec.progress();
            let rate =
                (p.events - last_events) as f64 / now.duration_since(last_tick).as_secs_f64();
            eprint!(
                "\r\x1b[K{:>7.1} s  {:>12} events  {:>10.0} events/s  {:>8.1} MiB  lost {}{}",
                started.elapsed().as_secs_f64(),
                p.events,
                rate,
                p.bytes as f64 / (1 << 20) as f64,
                p.lost_total(),
                if p.lost_pages() > 0 {
                    format!(" (+{} pages with unknown loss)", p.lost_pages())
                } else {
                    String::new()
                }
            );
            let _ = std::io::stderr().flush();
            last_tick = now;
            last_events = p.events;
        }
        // Few pages means the buffers are nearly empty: sleep in poll(2) until one is a
        // quarter full (or 100 ms pass, for the status line and the stop checks).
        if pages <= ncpu {
            rec.wait(Duration::from_millis(100))
                .context("waiting for the ring buffers")?;
        }
    }
    if guard::stop_requested().is_some() {
        // We are finishing: writing a large file may outlast the grace period.
        guard::acknowledge_stop();
    }
    if live {
        eprintln!();
    }
    if let Some(mut c) = child.take() {
        if child_status.is_none() {
            // Stopped by a signal or the duration: pass the stop on to the command.
            let sig = guard::stop_requested().unwrap_or(SIGTERM);
            let _ = guard::signal_process(c.id(), sig);
            child_status = c.wait().ok();
        }
    }
    let system_end = recorder::collect_system();
    let sidecar = recorder::system_sidecar(&system_start, &system_end);
    let elapsed = started.elapsed();
    let progress = rec
        .finish(Some(sidecar))
        .context("finishing the recording")?;
    print_summary(&args, &progress, elapsed)?;
    if progress.lost_total() > 0 || progress.lost_pages() > 0 {
        eprintln!(
            "kvmscope: WARNING: events were lost (the reader fell behind): try a larger --buffer-kb or fewer events"
        );
    }
    Ok(match child_status.and_then(|s| s.code()) {
        Some(code) if code != 0 => ExitCode::from(code.clamp(1, 255) as u8),
        _ => ExitCode::SUCCESS,
    })
}

const SIGTERM: i32 = 15;

fn print_summary(args: &Args, p: &recorder::Progress, elapsed: Duration) -> anyhow::Result<()> {
    let names = recorder::event_names(p);
    if args.json {
        let doc = serde_json::json!({
            "output": args.output,
            "events": p.events,
            "bytes": p.bytes,
            "pages": p.pages,
            "by_event": names,
            "lost_events_per_cpu": p.lost_per_cpu(),
            "lost_in_pages_per_cpu": p.lost_known,
            "pages_with_unknown_loss_per_cpu": p.lost_unknown_pages,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    eprintln!(
        "kvmscope: {} events ({} KiB of pages) in {:.1} s written to {}",
        p.events,
        p.bytes / 1024,
        elapsed.as_secs_f64(),
        args.output.display()
    );
    for (name, n) in &names {
        eprintln!("  {n:>12}  {name}");
    }
    for (cpu, (k, u)) in p
        .lost_per_cpu()
        .iter()
        .zip(&p.lost_unknown_pages)
        .enumerate()
    {
        if *k > 0 || *u > 0 {
            eprintln!(
                "  cpu {cpu}: lost {k} events{}",
                if *u > 0 {
                    format!(", {u} pages with an unknown loss")
                } else {
                    String::new()
                }
            );
        }
    }
    if p.lost_total() == 0 && p.lost_pages() == 0 {
        eprintln!("  lost events: 0");
    }
    Ok(())
}
