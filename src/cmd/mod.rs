//! One module per subcommand; each has `Args` (its options) and `run`.

mod args;
pub mod collapse;
pub mod diagnose;
pub mod diff;
pub mod export;
pub mod exporter;
pub mod flamegraph;
pub mod html;
pub mod input;
pub mod lab;
pub mod record;
pub mod report;
pub mod top;

use std::process::ExitCode;

use crate::cli::Command;

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Report(args) => report::run(args),
        Command::Diagnose(args) => diagnose::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Export(args) => export::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Record(args) => record::run(args),
        Command::Collapse(args) => collapse::run(args),
        Command::Flamegraph(args) => flamegraph::run(args),
        Command::Top(args) => top::run(args),
        Command::Exporter(args) => exporter::run(args),
    }
}
