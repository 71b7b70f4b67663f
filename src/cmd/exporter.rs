//! `kvmscope exporter`: a long-running Prometheus exporter. The counters are `kvmscope top`'s
//! (perf_event_open tracepoint counters with kernel filters, per vCPU thread of every VM);
//! a rolling diagnosis records a short window every `--diagnose-every` through a private
//! tracefs instance and exports its findings as gauges. SIGTERM/SIGINT/SIGHUP stop it
//! cleanly: the diagnosis's instance is removed and every counter closed before it exits.
//! Metric names: docs/exporter.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use kvmscope_analysis::EventFilter;
use kvmscope_capture::guard::{self, OnSignal};
use kvmscope_capture::recorder::{EventSel, RecordOptions, Recorder};
use kvmscope_fleet::exporter::{ActiveFinding, DiagnosisResult, Exporter, Options};
use kvmscope_fleet::http::{Response, Server};
use kvmscope_top::catalog::{self, Extra, Vendor};
use kvmscope_top::live::TopError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve /metrics on.
    #[arg(long, default_value = "127.0.0.1:9477")]
    pub listen: String,
    /// Watch only this VM process (repeatable; default: every VM on the host, found again
    /// every --rescan).
    #[arg(short = 'p', long)]
    pub pid: Vec<i32>,
    /// Extra port for kvmscope_pio_total (repeatable; decimal or 0x hex). Ports named here
    /// are exported from zero; the built-in hot ports appear at their first access.
    #[arg(long, value_parser = super::args::number)]
    pub port: Vec<u64>,
    /// Extra MSR for kvmscope_msr_total (repeatable), exported from zero.
    #[arg(long, value_parser = super::args::number)]
    pub msr: Vec<u64>,
    /// Count whole tracepoints only (kvmscope_events_total): no exit reasons, ports or MSRs.
    /// Each drill-down child is one more kernel filter run on every hit of its parent, so
    /// this costs the guest about a third as much (docs/PERFORMANCE.md, Top).
    #[arg(long, conflicts_with_all = ["port", "msr"])]
    pub no_drilldown: bool,
    /// Most counter series per scrape (the label cardinality cap); the rest of a scrape is
    /// left out and counted in kvmscope_exporter_series_dropped.
    #[arg(long, default_value_t = 20_000)]
    pub max_series: usize,
    /// How often to look for new VMs and vCPU threads.
    #[arg(long, default_value = "10s", value_parser = super::args::duration)]
    pub rescan: Duration,
    /// How long a VM that has gone stays exported.
    #[arg(long, default_value = "5m", value_parser = super::args::duration)]
    pub keep_gone: Duration,
    /// Run the rolling diagnosis this often.
    #[arg(long, default_value = "60s", value_parser = super::args::duration)]
    pub diagnose_every: Duration,
    /// No rolling diagnosis (no tracefs instance, no kvmscope_finding gauges).
    #[arg(long)]
    pub no_diagnosis: bool,
    /// How long each rolling diagnosis records.
    #[arg(long, default_value = "2s", value_parser = super::args::duration)]
    pub diagnose_window: Duration,
    /// Per-CPU ring-buffer size in KiB for the rolling diagnosis.
    #[arg(long, default_value_t = 8192)]
    pub buffer_kb: u64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    use kvmscope_capture::counters::{has_perfmon, permission_advice, Target};
    if !has_perfmon() && std::fs::read_dir(kvmscope_capture::host::TRACEFS).is_err() {
        bail!(
            "kvmscope exporter counts kernel tracepoints and reads their ids from tracefs: {}",
            permission_advice(&Target::Thread(0))
        );
    }
    let tracefs = kvmscope_capture::host::tracefs().map_err(TopError::from)?;
    let guard = guard::install(
        &tracefs,
        OnSignal::Stop {
            grace: Duration::from_secs(10),
        },
    )
    .context("cannot install the signal handlers")?;
    for p in &guard.removed_stale {
        eprintln!(
            "kvmscope exporter: removed {} left by a killed run",
            p.display()
        );
    }
    if !catalog::has_kvm_events(&tracefs) {
        bail!(TopError::NoEvents {
            tracefs: tracefs.clone(),
            why: "the kvm module is not loaded".into(),
        });
    }
    let extra = Extra {
        ports: args.port.iter().map(|&p| p as u16).collect(),
        msrs: args.msr.iter().map(|&m| m as u32).collect(),
    };
    let mut cat = catalog::host(&tracefs, Vendor::detect(), &extra);
    if args.no_drilldown {
        cat = cat.without_children();
    }
    let mut exporter = Exporter::new(
        &tracefs,
        &cat,
        &extra,
        Options {
            pids: args.pid.clone(),
            max_series: args.max_series,
            rescan: args.rescan,
            keep_gone: args.keep_gone,
        },
    );
    let server = Server::bind(&args.listen)?;
    exporter.rescan();
    for n in exporter.take_notes() {
        eprintln!("kvmscope exporter: {n}");
    }
    let addr = server
        .local_addr()
        .map_or(args.listen.clone(), |a| a.to_string());
    eprintln!(
        "kvmscope exporter: counting {} VM(s), {} counters; serving http://{addr}/metrics",
        exporter.vms(),
        exporter.counters()
    );

    // The rolling diagnosis runs on its own thread and hands results over a channel.
    let stop = Arc::new(AtomicBool::new(false));
    let threads = Arc::new(Mutex::new(exporter.vcpu_threads()));
    let (tx, rx) = mpsc::channel();
    let diag = if args.no_diagnosis {
        None
    } else {
        let stop = stop.clone();
        let threads = threads.clone();
        let root = tracefs.clone();
        let every = args.diagnose_every;
        let window = args.diagnose_window;
        let buffer_kb = args.buffer_kb;
        let watch_all = args.pid.is_empty();
        Some(
            std::thread::Builder::new()
                .name("kvmscope-diagnose".into())
                .spawn(move || {
                    let mut next = Instant::now() + every.min(Duration::from_secs(5));
                    while !stop.load(Ordering::SeqCst) {
                        if Instant::now() < next {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                        next = Instant::now() + every;
                        let tids = if watch_all {
                            None
                        } else {
                            Some(threads.lock().map(|t| t.clone()).unwrap_or_default())
                        };
                        let r = diagnose_window(&root, window, buffer_kb, tids, &stop)
                            .map_err(|e| format!("{e:#}"));
                        if tx.send(r).is_err() {
                            break;
                        }
                    }
                })
                .context("cannot start the diagnosis thread")?,
        )
    };

    while !guard::wait_stop(Duration::from_millis(20)) {
        while let Ok(d) = rx.try_recv() {
            exporter.set_diagnosis(d);
        }
        if exporter.rescan_due() {
            exporter.rescan();
            if let Ok(mut t) = threads.lock() {
                *t = exporter.vcpu_threads();
            }
        }
        server.serve_pending(|_, path| match path {
            "/metrics" => Response::ok("text/plain; version=0.0.4; charset=utf-8", exporter.scrape()),
            "/" => Response::ok(
                "text/html; charset=utf-8",
                "<html><head><title>kvmscope exporter</title></head><body><h1>kvmscope exporter</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n",
            ),
            _ => Response::error(404, "not found: the metrics are at /metrics"),
        })?;
        for n in exporter.take_notes() {
            eprintln!("kvmscope exporter: {n}");
        }
    }
    guard::acknowledge_stop();
    stop.store(true, Ordering::SeqCst);
    if let Some(t) = diag {
        let _ = t.join();
    }
    let counters = exporter.counters();
    drop(exporter);
    let left = kvmscope_capture::tracefs::live_instances();
    eprintln!(
        "kvmscope exporter: stopped ({}); closed {counters} counters, {} tracefs instance(s) left",
        guard::stop_requested().map_or("requested".into(), |s| format!("signal {s}")),
        left.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Records `window` through a private tracefs instance (kernel-filtered on `tids` when
/// given), then diagnoses it as `kvmscope diagnose` does.
fn diagnose_window(
    root: &Path,
    window: Duration,
    buffer_kb: u64,
    tids: Option<Vec<i32>>,
    stop: &AtomicBool,
) -> anyhow::Result<DiagnosisResult> {
    let started = Instant::now();
    let mut filters = Vec::new();
    let mut filter = EventFilter::default();
    if let Some(t) = &tids {
        if t.is_empty() {
            return Ok(DiagnosisResult {
                took: started.elapsed(),
                at_unix: unix_now(),
                ..Default::default()
            });
        }
        let f: Vec<String> = t.iter().map(|t| format!("common_pid == {t}")).collect();
        filters.push((None, f.join(" || ")));
        filter.tids = t.iter().map(|&t| t as u32).collect();
    }
    let output: PathBuf =
        std::env::temp_dir().join(format!("kvmscope-exporter-{}.dat", std::process::id()));
    let events = super::diagnose::LIVE_EVENTS
        .iter()
        .map(|e| {
            let (s, n) = e.split_once(':').unwrap_or((e, ""));
            EventSel {
                system: s.into(),
                event: Some(n.into()),
                optional: true,
            }
        })
        .collect();
    let options = RecordOptions {
        events,
        filters,
        buffer_kb: Some(buffer_kb),
        subbuf_kb: None,
        kallsyms: kvmscope_capture::recorder::KallsymsMode::Referenced,
        version: kvmscope_tracedat::file::Version::V6,
    };
    let system = kvmscope_capture::recorder::collect_system();
    let mut rec = Recorder::start(root, options, &output)
        .with_context(|| format!("cannot start recording into {}", output.display()))?;
    let ncpu = rec.progress().lost_known.len() as u64;
    let rec_start = Instant::now();
    while rec_start.elapsed() < window && !stop.load(Ordering::SeqCst) {
        let pages = rec.poll().context("reading the ring buffers")?;
        if pages <= ncpu {
            rec.wait(Duration::from_millis(100))
                .context("waiting for the ring buffers")?;
        }
    }
    rec.poll().context("reading the ring buffers")?;
    let system_end = kvmscope_capture::recorder::collect_system();
    let sidecar = kvmscope_capture::recorder::system_sidecar(&system, &system_end);
    let progress = rec
        .finish(Some(sidecar))
        .context("finishing the recording")?;
    let read = super::diagnose::from_files(std::slice::from_ref(&output), &filter);
    let _ = std::fs::remove_file(&output);
    let (report, _) = read?;
    let d = kvmscope_diagnose::diagnose(&report, Some(&system));
    Ok(DiagnosisResult {
        findings: d
            .findings
            .iter()
            .map(|f| ActiveFinding {
                rule: f.rule.to_string(),
                severity: f.severity.as_str().to_string(),
                score: f.score,
            })
            .collect(),
        events: progress.events,
        lost: progress.lost_total(),
        took: started.elapsed(),
        at_unix: unix_now(),
    })
}
