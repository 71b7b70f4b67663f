//! `--format perfetto|chrome-json`: the trace as a timeline
//! for Perfetto UI (or any tool reading Chrome's JSON): a track per VM and vCPU thread, a
//! slice per exit, nested slices for the VMM and MMIO/PIO/MSR handling, instants for
//! interrupts, IPIs and wake-ups, exits/s counters. Streams: memory stays flat on any input.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use kvmscope_analysis::EventFilter;
use kvmscope_export::chrome::ChromeSink;
use kvmscope_export::perfetto::PerfettoSink;
use kvmscope_export::{ExportStats, Exporter, Sink};

use super::{Args, Format};

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let out: Box<dyn Write> = if args.output.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            File::create(&args.output)
                .with_context(|| format!("cannot create {}", args.output.display()))?,
        )
    };
    let out = BufWriter::with_capacity(1 << 20, out);
    let window = (args.counter_window.as_nanos() as u64).max(1);
    let started = Instant::now();
    let done = match args.format {
        Format::Perfetto => export(&args, Exporter::new(PerfettoSink::new(out), window))
            .map(|(sink, stats)| (stats, sink.bytes)),
        Format::ChromeJson => export(&args, Exporter::new(ChromeSink::new(out), window))
            .map(|(sink, stats)| (stats, sink.bytes)),
        Format::Parquet | Format::Arrow => unreachable!("columnar formats go to export::columnar"),
    };
    let (stats, bytes) = match done {
        Ok(x) => x,
        Err(e) => {
            // No half-written timeline left behind.
            if args.output.as_os_str() != "-" {
                let _ = std::fs::remove_file(&args.output);
            }
            return Err(e);
        }
    };
    if !args.quiet {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "kvmscope export: {} events read in {:.2} s ({:.0} events/s), {} exported ({} exit slices, {} nested, {} instants, {} counter values), {} bytes ({:.1} per exported event){}",
            stats.events,
            secs,
            stats.events as f64 / secs.max(1e-9),
            stats.events - stats.skipped,
            stats.exits,
            stats.nested,
            stats.instants,
            stats.counter_values,
            bytes,
            bytes as f64 / (stats.events - stats.skipped).max(1) as f64,
            if stats.clamped > 0 {
                format!("; {} events earlier than their thread's previous one were placed at its time", stats.clamped)
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn export<S: Sink>(args: &Args, mut ex: Exporter<S>) -> anyhow::Result<(S, ExportStats)> {
    let filter = EventFilter {
        pids: args.pids.clone(),
        tids: args.tids.clone(),
    };
    for path in &args.files {
        let mut err = None;
        crate::cmd::input::for_each_event(path, |ev| {
            if err.is_none() && filter.keeps(ev) {
                if let Err(e) = ex.observe(ev) {
                    err = Some(e);
                }
            }
        })?;
        if let Some(e) = err {
            return Err(e).with_context(|| format!("cannot write {}", args.output.display()));
        }
    }
    ex.finish()
        .with_context(|| format!("cannot write {}", args.output.display()))
}
