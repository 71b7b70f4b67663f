//! `kvmscope collapse`: `perf script` text to folded stacks, byte-identical to FlameGraph's
//! `stackcollapse-perf.pl` with the same options.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kvmscope_stacks::{collapse_reader, Collapsed, Options};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `perf script` output to read; `-` or nothing reads standard input.
    pub input: Option<PathBuf>,
    /// Include the PID with process names (`comm-PID`).
    #[arg(long)]
    pub pid: bool,
    /// Include PID and TID with process names (`comm-PID/TID`).
    #[arg(long)]
    pub tid: bool,
    /// Annotate kernel functions with `_[k]`.
    #[arg(long)]
    pub kernel: bool,
    /// Annotate JIT functions (`/tmp/perf-N.map`) with `_[j]`.
    #[arg(long)]
    pub jit: bool,
    /// All annotations (`--kernel --jit`).
    #[arg(long)]
    pub all: bool,
    /// Include raw addresses where symbols cannot be found.
    #[arg(long)]
    pub addrs: bool,
    /// Keep only samples of this event (default: the first event in the input).
    #[arg(long, value_name = "EVENT")]
    pub event_filter: Option<String>,
    /// Parser threads (default: 2 when the machine has 2 or more CPUs).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Write the folded stacks here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl Args {
    /// The collapse options these flags select.
    pub fn options(&self) -> Options {
        let opts = Options {
            pid: self.pid,
            tid: self.tid,
            kernel: self.kernel,
            jit: self.jit,
            addrs: self.addrs,
            event_filter: self.event_filter.as_ref().map(|e| e.as_bytes().to_vec()),
        };
        if self.all {
            opts.all()
        } else {
            opts
        }
    }
}

/// Parser threads to use by default.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = args.options();
    let threads = args.threads.unwrap_or_else(default_threads).max(1);
    let collapsed = collapse_input(args.input.as_deref(), &opts, threads)?;
    warn_skipped(&collapsed, args.input.as_deref());
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            collapsed
                .write_folded(std::io::BufWriter::with_capacity(1 << 16, file))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            let stdout = std::io::stdout().lock();
            collapsed
                .write_folded(std::io::BufWriter::with_capacity(1 << 16, stdout))
                .context("cannot write folded stacks to standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Collapses a file, or standard input for `None` / `-`.
pub fn collapse_input(
    input: Option<&std::path::Path>,
    opts: &Options,
    threads: usize,
) -> anyhow::Result<Collapsed> {
    match input {
        Some(path) if path.as_os_str() != "-" => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open perf script file {}", path.display()))?;
            collapse_reader(file, opts, threads)
                .with_context(|| format!("cannot read {}", path.display()))
        }
        _ => collapse_reader(std::io::stdin().lock(), opts, threads)
            .context("cannot read perf script text from standard input"),
    }
}

/// Tells on standard error what the reference script would have warned about.
pub fn warn_skipped(c: &Collapsed, input: Option<&std::path::Path>) {
    let name = match input {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "<stdin>".to_string(),
    };
    let mut err = std::io::stderr().lock();
    for u in &c.unrecognized {
        let _ = writeln!(
            err,
            "kvmscope: {name}:{}: unrecognized line skipped: {}",
            u.line, u.text
        );
    }
    let more = c.unrecognized_count - c.unrecognized.len() as u64;
    if more > 0 {
        let _ = writeln!(
            err,
            "kvmscope: {name}: {more} more unrecognized lines skipped"
        );
    }
    if let Some(ev) = &c.filtered_for {
        let _ = writeln!(
            err,
            "kvmscope: {name}: several event types; kept only `{}` (choose with --event-filter)",
            String::from_utf8_lossy(ev)
        );
    }
}
