//! `--format parquet|arrow`: every event of the inputs as one
//! row of a table with typed columns, and the exits paired with their entries as a second
//! table (`OUT.exits.parquet` beside `OUT.parquet`), streamed in row groups so memory stays
//! flat whatever the input size. Schemas and queries: docs/export.md.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use kvmscope_analysis::EventFilter;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use kvmscope_columnar::{Format as Columnar, Writer};

use super::{Args, Format};

/// `out.parquet` → `out.exits.parquet`; `out` → `out.exits`.
pub fn exits_path(output: &Path) -> PathBuf {
    match (output.file_stem(), output.extension()) {
        (Some(stem), Some(ext)) => {
            let mut name = stem.to_os_string();
            name.push(".exits.");
            name.push(ext);
            output.with_file_name(name)
        }
        _ => {
            let mut name = output.as_os_str().to_os_string();
            name.push(".exits");
            PathBuf::from(name)
        }
    }
}

fn create(path: &Path) -> anyhow::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(
        1 << 20,
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    ))
}

/// This process's peak resident set (VmHWM), in kB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let exits = args
        .exits
        .clone()
        .unwrap_or_else(|| exits_path(&args.output));
    if exits == args.output {
        bail!(
            "the exits table cannot go to the events table's file {}",
            exits.display()
        );
    }
    let format = match args.format {
        Format::Parquet => Columnar::Parquet,
        Format::Arrow => Columnar::Arrow,
        Format::Perfetto | Format::ChromeJson => {
            unreachable!("timeline formats go to export::timeline")
        }
    };
    let filter = EventFilter {
        pids: args.pids.clone(),
        tids: args.tids.clone(),
    };
    let started = Instant::now();
    let mut ev_out = create(&args.output)?;
    let mut ex_out = create(&exits)?;
    let mut writer = Writer::new(format, &mut ev_out, &mut ex_out)?;
    let mut failed = None;
    let mut bytes = 0u64;
    for path in &args.files {
        let summary = crate::cmd::input::for_each_event(path, |ev| {
            if failed.is_none() && filter.keeps(ev) {
                if let Err(e) = writer.push(ev) {
                    failed = Some(e);
                }
            }
        })?;
        bytes += std::fs::metadata(path).map_or(summary.read.bytes, |m| m.len());
        if let Some(e) = failed.take() {
            return Err(e).with_context(|| format!("exporting {}", path.display()));
        }
        if summary.read.truncated_at.is_some()
            || summary.lost_total > 0
            || summary.read.unknown_lines > 0
        {
            eprintln!(
                "kvmscope export: {}: {}{}{}",
                path.display(),
                summary
                    .read
                    .truncated_at
                    .map(|o| format!("cut off at byte {o}; "))
                    .unwrap_or_default(),
                if summary.lost_total > 0 {
                    format!("{} events lost while recording; ", summary.lost_total)
                } else {
                    String::new()
                },
                if summary.read.unknown_lines > 0 {
                    format!(
                        "{} lines that are not trace events skipped",
                        summary.read.unknown_lines
                    )
                } else {
                    String::new()
                },
            );
        }
    }
    let written = writer.finish()?;
    for (w, p) in [(&mut ev_out, &args.output), (&mut ex_out, &exits)] {
        w.flush()
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if !args.quiet {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "kvmscope export: {} events ({} row groups) into {} ({} bytes, {:.1} bytes/event), {} paired exits into {}; {:.2} s, {:.1} MB/s of input; peak RSS {} kB",
            written.events,
            written.event_row_groups,
            args.output.display(),
            size(&args.output),
            size(&args.output) as f64 / written.events.max(1) as f64,
            written.exits,
            exits.display(),
            secs,
            bytes as f64 / 1e6 / secs.max(1e-9),
            peak_rss_kb().map_or("?".into(), |k| k.to_string()),
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_beside_the_events() {
        assert_eq!(
            exits_path(Path::new("/t/out.parquet")),
            PathBuf::from("/t/out.exits.parquet")
        );
        assert_eq!(exits_path(Path::new("out")), PathBuf::from("out.exits"));
        assert_eq!(
            exits_path(Path::new("a.b.arrow")),
            PathBuf::from("a.b.exits.arrow")
        );
    }
}
