//! Every input kvmscope reads (ftrace text, `trace-cmd report`, `perf script`, trace.dat, `-`
//! for standard input), detected by its first bytes and streamed into one event sink. Every
//! subcommand that reads recorded traces goes through here.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use kvmscope_analysis::InputSummary;
use kvmscope_trace::text::TextStats;
use kvmscope_trace::Event;

/// Decodes one input, calling `sink` with every event in order, and says what it held.
pub fn for_each_event(
    path: &Path,
    mut sink: impl FnMut(&Event<'_>),
) -> anyhow::Result<InputSummary> {
    let shown = path.display().to_string();
    let mut input: Box<dyn Read + Send> = if shown == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open {shown}"))?)
    };
    let mut magic = [0u8; 10];
    let n = read_prefix(&mut input, &mut magic).with_context(|| format!("cannot read {shown}"))?;
    let magic = &magic[..n];
    if kvmscope_tracedat::events::is_tracedat(magic) {
        if shown == "-" {
            bail!("a trace.dat file cannot be read from standard input: give its path");
        }
        return read_tracedat(path, sink);
    }
    if magic.starts_with(b"PERFILE2") {
        bail!("{shown} is a perf.data file: run `perf script -i {shown} > trace.txt` and report on trace.txt");
    }
    let total = std::fs::metadata(path)
        .map(|m| m.len())
        .ok()
        .filter(|_| shown != "-");
    let chained = Progress::new(
        std::io::Cursor::new(magic.to_vec()).chain(input),
        &shown,
        total,
    );
    let stats = kvmscope_trace::text::decode(chained, &mut sink)
        .with_context(|| format!("cannot decode {shown}"))?;
    if stats.events == 0 && stats.unknown_lines > 0 {
        let first = stats
            .unknown_examples
            .first()
            .map(|(l, t)| format!(" (line {l}: {t:?})"))
            .unwrap_or_default();
        bail!("{shown} is not a trace kvmscope can read: none of its {} lines is a trace event{first}. Expected ftrace text, `trace-cmd report` or `perf script` output", stats.lines);
    }
    Ok(InputSummary::text(shown, stats))
}

fn read_tracedat(path: &Path, sink: impl FnMut(&Event<'_>)) -> anyhow::Result<InputSummary> {
    let shown = path.display().to_string();
    let dat = kvmscope_tracedat::events::for_each_event(path, sink)
        .with_context(|| format!("cannot read trace.dat {shown}"))?;
    let mut lost: Vec<(u32, u64)> = dat
        .lost
        .iter()
        .filter(|l| l.1 > 0)
        .map(|l| (l.0, l.1))
        .collect();
    lost.sort_unstable();
    let unknown_pages = dat.lost_unknown_pages();
    Ok(InputSummary {
        path: shown,
        format: format!(
            "trace.dat v{}{}",
            dat.version,
            dat.compression
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ),
        // A binary file has no lines; its size is what was read.
        read: TextStats {
            bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
            events: dat.events,
            lost,
            ..TextStats::default()
        },
        unresolved_pointers: dat.unresolved_pointers,
        lost_total: dat.lost_total() + unknown_pages,
    })
}

/// Shows how far the reading has got on stderr, when stderr is a terminal and the input is
/// large; the line is erased when done.
struct Progress<R> {
    inner: R,
    name: String,
    total: Option<u64>,
    done: u64,
    last: std::time::Instant,
    shown: bool,
}

impl<R> Progress<R> {
    fn new(inner: R, name: &str, total: Option<u64>) -> Self {
        use std::io::IsTerminal;
        let big = total.is_none_or(|t| t > 64 << 20);
        Progress {
            inner,
            name: name.to_string(),
            total,
            done: 0,
            last: std::time::Instant::now(),
            shown: !(big && std::io::stderr().is_terminal()),
        }
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if !self.shown && self.last.elapsed() > std::time::Duration::from_millis(250) {
            self.last = std::time::Instant::now();
            let mb = self.done as f64 / 1e6;
            let line = match self.total {
                Some(t) if t > 0 => format!(
                    "{}: {:.0}% ({mb:.0} of {:.0} MB)",
                    self.name,
                    100.0 * self.done as f64 / t as f64,
                    t as f64 / 1e6
                ),
                _ => format!("{}: {mb:.0} MB", self.name),
            };
            eprint!("\r{line}\x1b[K");
        }
        if n == 0 && !self.shown {
            eprint!("\r\x1b[K");
            self.shown = true;
        }
        Ok(n)
    }
}

fn read_prefix(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
