//! `kvmscope diff A B`: two captures side by side, rates per second normalised by each one's
//! duration, the largest changes first, and the findings present in only one of them (field
//! report 003 compared two guest kernels exactly so).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use kvmscope_analysis::EventFilter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The first capture (the baseline): trace.dat, ftrace text, `trace-cmd report` or `perf script`.
    pub a: PathBuf,
    /// The second capture.
    pub b: PathBuf,
    /// Print the comparison as JSON (every rate, not only the top ones).
    #[arg(long)]
    pub json: bool,
    /// How many rates to show.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Only events of these processes (VMs), by pid, in both captures.
    #[arg(short = 'p', long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Only events of these threads, by thread id, in both captures.
    #[arg(short = 't', long = "tid", value_delimiter = ',')]
    pub tids: Vec<u32>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let filter = EventFilter {
        pids: args.pids.clone(),
        tids: args.tids.clone(),
    };
    let (ra, sa) = crate::cmd::diagnose::from_files(std::slice::from_ref(&args.a), &filter)?;
    let (rb, sb) = crate::cmd::diagnose::from_files(std::slice::from_ref(&args.b), &filter)?;
    let (na, nb) = (args.a.display().to_string(), args.b.display().to_string());
    let c = kvmscope_diagnose::diff::compare((&na, &ra, sa.as_ref()), (&nb, &rb, sb.as_ref()));
    let text = if args.json {
        kvmscope_diagnose::diff::json(&c)?
    } else {
        kvmscope_diagnose::diff::text(&c, args.top)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
