//! `kvmscope flamegraph`: folded stacks or `perf script` text to an SVG flame graph with
//! KVM-aware colours, a differential graph of two profiles, and the KVM attribution table.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use kvmscope_stacks::flame::{render, render_diff, FlameOptions};
use kvmscope_stacks::folded::{self, InputKind, Stack};
use kvmscope_stacks::{collapse_reader, Attribution, Options};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folded stacks or `perf script` output (detected); `-` or nothing reads standard input.
    pub input: Option<PathBuf>,
    /// Sample every CPU for this long (cpu-clock with kernel callchains through
    /// perf_event_open) instead of reading INPUT, e.g. `5s`, `500ms`.
    #[arg(long, value_name = "DURATION", value_parser = super::args::duration, conflicts_with = "input")]
    pub record: Option<std::time::Duration>,
    /// Samples per second per CPU for --record.
    #[arg(long, default_value_t = 999, requires = "record")]
    pub frequency: u64,
    /// With --record: also write the folded stacks here.
    #[arg(long, value_name = "FILE", requires = "record")]
    pub folded: Option<PathBuf>,
    /// Write the SVG here (default: standard output, unless --attribution alone is asked).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Draw the difference from this earlier profile to INPUT (red: more now, blue: less).
    #[arg(long, value_name = "BEFORE")]
    pub diff: Option<PathBuf>,
    /// With --diff: scale the earlier profile to the same total first.
    #[arg(long, requires = "diff")]
    pub normalize: bool,
    /// Print the KVM attribution table (where host CPU went) to standard output.
    #[arg(long)]
    pub attribution: bool,
    /// Print the attribution as JSON (implies --attribution).
    #[arg(long)]
    pub json: bool,
    /// Title of the graph.
    #[arg(long, default_value = "kvmscope flame graph")]
    pub title: String,
    /// Width in pixels.
    #[arg(long, default_value_t = 1200)]
    pub width: usize,
    /// inferno's usual colours instead of the KVM roles.
    #[arg(long)]
    pub plain_colours: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stacks = match args.record {
        Some(d) => record(d, args.frequency, args.folded.as_deref())?,
        None => read_stacks(args.input.as_deref())?,
    };
    let table = args.attribution || args.json;
    if table {
        let a = Attribution::from_stacks(&stacks);
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &a).context("cannot write JSON")?;
            writeln!(out)?;
        } else {
            out.write_all(a.to_text().as_bytes())?;
        }
        out.flush()?;
    }
    if table && args.output.is_none() {
        return Ok(ExitCode::SUCCESS);
    }
    let opts = FlameOptions {
        title: args.title.clone(),
        kvm_colours: !args.plain_colours,
        width: Some(args.width),
        ..FlameOptions::default()
    };
    let mut svg = Vec::new();
    match &args.diff {
        Some(before) => {
            let before = read_stacks(Some(before))?;
            render_diff(&before, &stacks, args.normalize, &opts, &mut svg)?;
        }
        None => render(&stacks, &opts, &mut svg)?,
    }
    match &args.output {
        Some(path) => std::fs::write(path, &svg)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&svg)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads folded stacks, or collapses `perf script` text (with kernel annotations, which the
/// colours and the attribution use and the SVG does not show).
pub fn read_stacks(input: Option<&Path>) -> anyhow::Result<Vec<Stack>> {
    let (name, reader): (String, Box<dyn Read>) = match input {
        Some(p) if p.as_os_str() != "-" => (
            p.display().to_string(),
            Box::new(
                std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
            ),
        ),
        _ => ("<stdin>".into(), Box::new(std::io::stdin().lock())),
    };
    let mut reader = reader;
    let mut head = vec![0u8; 64 << 10];
    let mut n = 0;
    while n < head.len() {
        let k = reader
            .read(&mut head[n..])
            .with_context(|| format!("cannot read {name}"))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    head.truncate(n);
    let kind = folded::detect(&head);
    let whole = std::io::Cursor::new(head).chain(reader);
    match kind {
        InputKind::Folded => {
            let mut text = Vec::new();
            { whole }
                .read_to_end(&mut text)
                .with_context(|| format!("cannot read {name}"))?;
            folded::parse(&text).with_context(|| format!("cannot read folded stacks from {name}"))
        }
        InputKind::PerfScript => {
            let opts = Options {
                kernel: true,
                ..Options::default()
            };
            let c = collapse_reader(whole, &opts, super::collapse::default_threads())
                .with_context(|| format!("cannot read perf script text from {name}"))?;
            super::collapse::warn_skipped(&c, input);
            Ok(folded::from_collapsed(&c))
        }
    }
}

/// Samples the whole system and returns its folded stacks.
fn record(
    duration: std::time::Duration,
    frequency: u64,
    folded_out: Option<&Path>,
) -> anyhow::Result<Vec<Stack>> {
    use kvmscope_capture::perf_sample::{sample_system, SampleConfig};
    let cfg = SampleConfig {
        frequency,
        ..SampleConfig::default()
    };
    let p = sample_system(duration, &cfg).context("cannot sample the system's stacks")?;
    eprintln!(
        "kvmscope: {} samples ({} in guest mode, {} records lost) in {:?}",
        p.samples, p.guest_samples, p.lost, duration
    );
    let stacks: Vec<Stack> = p
        .stacks
        .into_iter()
        .map(|(frames, weight)| Stack { frames, weight })
        .collect();
    if let Some(path) = folded_out {
        let mut text = String::new();
        for s in &stacks {
            text.push_str(&format!("{} {}\n", s.frames, s.weight));
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(stacks)
}
