//! `kvmscope report FILE...`: read recorded traces and report like `perf kvm stat report`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kvmscope_analysis::{EventFilter as Filter, InputSummary, ReportBuilder};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trace files: ftrace text (`trace`, `trace_pipe`), `trace-cmd report` output or
    /// `perf script` output; `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only events of these processes (VMs), by pid; needs a trace that records the pid of each
    /// thread (ftrace `options/record-tgid`, `perf script -F pid,tid`, `kvmscope record`).
    #[arg(short = 'p', long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Only events of these threads (vCPU threads), by thread id.
    #[arg(short = 't', long = "tid", value_delimiter = ',')]
    pub tids: Vec<u32>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut builder = ReportBuilder::new();
    let mut inputs = Vec::new();
    let filter = Filter {
        pids: args.pids.clone(),
        tids: args.tids.clone(),
    };
    for path in &args.files {
        inputs.push(read_into(path, &filter, &mut builder)?);
    }
    let report = builder.finish(inputs);
    let text = if args.json {
        kvmscope_render::json::render(&report)
    } else {
        kvmscope_render::text::render(&report)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Decodes one input into the builder, keeping the events `filter` keeps, and says what it held.
pub fn read_into(
    path: &Path,
    filter: &Filter,
    builder: &mut ReportBuilder,
) -> anyhow::Result<InputSummary> {
    super::input::for_each_event(path, |ev| {
        if filter.keeps(ev) {
            builder.observe(ev);
        }
    })
}
