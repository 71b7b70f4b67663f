//! The command line: one subcommand per job. Each subcommand's options live beside its code
//! in `cmd/<name>.rs`.

use clap::{Parser, Subcommand};

use crate::cmd;

#[derive(Debug, Parser)]
#[command(
    name = "kvmscope",
    version,
    about = "Find out why KVM virtual machines are slow, and what to change"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report on recorded traces (ftrace text, trace-cmd report, perf script, trace.dat), like `perf kvm stat report`.
    Report(cmd::report::Args),
    /// Name the pathology in a capture (or live, or in a lab guest), show the evidence, give the fix.
    Diagnose(cmd::diagnose::Args),
    /// Compare two captures: rates per second side by side, largest changes first, findings in only one.
    Diff(cmd::diff::Args),
    /// Export a trace as a timeline (Perfetto protobuf, Chrome JSON: a slice per exit on each vCPU thread) or as tables (Parquet, Arrow: a row per event, and the paired exits).
    Export(cmd::export::Args),
    /// Run real KVM guests that reproduce known pathologies (the built-in lab).
    Lab(cmd::lab::Args),
    /// Record KVM trace events into a trace.dat file through a private tracefs instance.
    Record(cmd::record::Args),
    /// Fold `perf script` stacks into FlameGraph's collapsed format.
    Collapse(cmd::collapse::Args),
    /// Draw an SVG flame graph with KVM-aware colours (or a differential one), and attribute host CPU to KVM's parts.
    Flamegraph(cmd::flamegraph::Args),
    /// Live KVM event counts (kvm_stat done better): drill-down, per-VM and per-vCPU views, guest-side mode, batch output.
    Top(cmd::top::Args),
    /// Prometheus exporter: exit reasons, ports, MSRs per VM and vCPU as labels, findings of a rolling diagnosis as gauges.
    Exporter(cmd::exporter::Args),
}
