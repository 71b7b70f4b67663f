//! `kvmscope report FILE...`: read recorded traces and report like `perf kvm stat report`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kvmscope_analysis::timeline::Timeline;
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
    /// Also write a self-contained HTML page (the report with plots) to this file.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
    /// With --html: embed a flame graph of these stacks (`perf script` output or folded stacks).
    #[arg(long, value_name = "FILE", requires = "html")]
    pub stacks: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut builder = ReportBuilder::new();
    let mut inputs = Vec::new();
    let filter = Filter {
        pids: args.pids.clone(),
        tids: args.tids.clone(),
    };
    let mut timeline = args.html.as_ref().map(|_| Timeline::new());
    for path in &args.files {
        inputs.push(read_into_with(
            path,
            &filter,
            &mut builder,
            timeline.as_mut(),
        )?);
    }
    let report = builder.finish(inputs);
    if let (Some(out), Some(t)) = (&args.html, &timeline) {
        super::html::write(
            out,
            &super::html::PageArgs {
                title: "kvmscope report".into(),
                report: &report,
                timeline: t,
                diagnosis: None,
                stacks: args.stacks.as_deref(),
                notes: Vec::new(),
            },
        )?;
    }
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
    read_into_with(path, filter, builder, None)
}

/// [`read_into`], also counting the kept events into a timeline (for `--html`).
pub fn read_into_with(
    path: &Path,
    filter: &Filter,
    builder: &mut ReportBuilder,
    mut timeline: Option<&mut Timeline>,
) -> anyhow::Result<InputSummary> {
    super::input::for_each_event(path, |ev| {
        if filter.keeps(ev) {
            builder.observe(ev);
            if let Some(t) = timeline.as_deref_mut() {
                t.observe(ev);
            }
        }
    })
}
