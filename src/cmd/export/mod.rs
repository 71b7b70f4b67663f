//! `kvmscope export FILE... --format F -o OUT`: the trace in a form other tools open.
//! Timelines (`perfetto`, `chrome-json`: `timeline.rs`) and tables (`parquet`, `arrow`:
//! `columnar.rs`); both stream with flat memory. docs/export.md.

mod columnar;
mod timeline;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Perfetto's protobuf trace (open it in Perfetto UI).
    Perfetto,
    /// Chrome's JSON trace event format (chrome://tracing, Perfetto UI, speedscope...).
    ChromeJson,
    /// Apache Parquet (DuckDB, Spark, Trino, pandas), snappy-compressed: events and paired
    /// exits as two tables.
    Parquet,
    /// Arrow IPC file (Feather v2): the same two tables.
    Arrow,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trace files: trace.dat, ftrace text, `trace-cmd report` or `perf script` output; `-`
    /// reads standard input. Read as one event stream in the order given.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "perfetto")]
    pub format: Format,
    /// Output file (`-`: standard output, timelines only). For parquet/arrow the events table;
    /// the exits table goes beside it (`OUT.parquet` → `OUT.exits.parquet`) unless --exits
    /// names it.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// parquet/arrow: where the paired-exits table goes.
    #[arg(long)]
    pub exits: Option<PathBuf>,
    /// Timelines: width of the windows the exits-per-second counters are counted in.
    #[arg(long, default_value = "10ms", value_parser = super::args::duration)]
    pub counter_window: Duration,
    /// Only events of these processes (VMs), by pid.
    #[arg(short = 'p', long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Only events of these threads (vCPU threads), by thread id.
    #[arg(short = 't', long = "tid", value_delimiter = ',')]
    pub tids: Vec<u32>,
    /// No summary line on standard error.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.format {
        Format::Perfetto | Format::ChromeJson => timeline::run(args),
        Format::Parquet | Format::Arrow => {
            if args.output.as_os_str() == "-" {
                anyhow::bail!("--format parquet/arrow writes two files: give -o OUT.parquet");
            }
            columnar::run(args)
        }
    }
}
