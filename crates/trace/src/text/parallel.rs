//! Text decoding as a three-stage pipeline, without unsafe code or shared buffers:
//!
//! 1. the splitter reads, checks UTF-8 once per chunk, and copies lines into a batch string;
//! 2. the column parser splits each line's common columns and keeps the statistics, recording
//!    each event's columns as ranges into the batch;
//! 3. the caller's thread rebuilds each header by slicing, decodes the payload and runs the
//!    sink.
//!
//! The stages take roughly 15/50/35% of the work, so on two CPUs the pipeline keeps both busy.
//! Batches travel over bounded channels (memory stays bounded) and their strings come back to
//! the splitter for reuse.

use std::io::Read;
use std::ops::Range;
use std::sync::mpsc;

use super::{emit, line, split_lines, take_line, LineIn, NameCache, TextStats};
use crate::event::Event;
use crate::DecodeError;

/// Bytes of text per batch.
pub(super) const BATCH: usize = 256 * 1024;
/// Batches in flight between two stages.
const DEPTH: usize = 4;

/// A line as the splitter saw it.
#[derive(Debug, Clone)]
struct RawText {
    text: Range<usize>,
    offset: u64,
    unterminated: bool,
    /// Not UTF-8: `text` holds its lossy form, `len` its length in the input.
    invalid_len: Option<usize>,
}

#[derive(Debug, Default)]
struct Lines {
    text: String,
    lines: Vec<RawText>,
}

/// One event line of a batch: where its columns are in the batch string.
#[derive(Debug, Clone)]
struct RawEvent {
    line_no: u64,
    text: Range<usize>,
    comm: Part,
    system: Part,
    name: Part,
    payload: Part,
    tid: u32,
    tgid: Option<u32>,
    cpu: u32,
    ts_ns: u64,
}

#[derive(Debug, Default)]
struct Events {
    text: String,
    events: Vec<RawEvent>,
}

/// A column is a slice of the line, or one of the constants the line parser supplies for
/// lines that do not print it (function-tracer lines, traces without a system).
#[derive(Debug, Clone)]
enum Part {
    InLine(Range<usize>),
    Constant(&'static str),
}

impl Part {
    fn of(whole: &str, part: &str, base: usize) -> Part {
        match range_in(whole, part, base) {
            Some(r) if !part.is_empty() => Part::InLine(r),
            _ => Part::Constant(
                line::CONSTANTS
                    .iter()
                    .find(|c| **c == part)
                    .copied()
                    .unwrap_or(""),
            ),
        }
    }

    fn get<'a>(&self, text: &'a str) -> &'a str {
        match self {
            Part::InLine(range) => &text[range.clone()],
            Part::Constant(s) => s,
        }
    }
}

/// The range of `part` within `whole`, shifted by `base`; `None` when `part` is not a slice of
/// `whole`.
fn range_in(whole: &str, part: &str, base: usize) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then(|| base + start..base + start + part.len())
}

fn rebuild<'a>(text: &'a str, r: &RawEvent) -> (&'a str, line::Header<'a>) {
    let h = line::Header {
        comm: r.comm.get(text),
        tid: r.tid,
        tgid: r.tgid,
        cpu: r.cpu,
        ts_ns: r.ts_ns,
        system: r.system.get(text),
        name: r.name.get(text),
        payload: r.payload.get(text),
    };
    (&text[r.text.clone()], h)
}

/// Stage 2: columns and statistics for one batch of lines.
fn parse_columns(batch: Lines, stats: &mut TextStats) -> Events {
    let mut events = Vec::with_capacity(batch.lines.len());
    for raw in &batch.lines {
        let whole = &batch.text[raw.text.clone()];
        let line = match raw.invalid_len {
            None => LineIn::Text(whole),
            Some(len) => LineIn::Invalid { lossy: whole, len },
        };
        let Some((text, h)) = take_line(line, raw.offset, raw.unterminated, stats) else {
            continue;
        };
        let base = raw.text.start;
        events.push(RawEvent {
            line_no: stats.lines,
            text: base..base + text.len(),
            comm: Part::of(whole, h.comm, base),
            system: Part::of(whole, h.system, base),
            name: Part::of(whole, h.name, base),
            payload: Part::of(whole, h.payload, base),
            tid: h.tid,
            tgid: h.tgid,
            cpu: h.cpu,
            ts_ns: h.ts_ns,
        });
    }
    Events {
        text: batch.text,
        events,
    }
}

pub(super) fn decode<R: Read + Send>(
    input: R,
    mut sink: impl FnMut(&Event<'_>),
    batch_bytes: usize,
) -> Result<TextStats, DecodeError> {
    let (lines_tx, lines_rx) = mpsc::sync_channel::<Lines>(DEPTH);
    let (events_tx, events_rx) = mpsc::sync_channel::<Events>(DEPTH);
    let (reuse_tx, reuse_rx) = mpsc::channel::<String>();
    std::thread::scope(|scope| {
        let splitter = scope.spawn(move || -> Result<(), DecodeError> {
            let mut batch = Lines::default();
            let result = split_lines(input, |line, offset, unterminated| {
                let start = batch.text.len();
                let invalid_len = match line {
                    Ok(text) => {
                        batch.text.push_str(text);
                        None
                    }
                    Err(bytes) => {
                        batch.text.push_str(&String::from_utf8_lossy(bytes));
                        Some(bytes.len())
                    }
                };
                batch.lines.push(RawText {
                    text: start..batch.text.len(),
                    offset,
                    unterminated,
                    invalid_len,
                });
                if batch.text.len() >= batch_bytes {
                    let next = Lines {
                        text: reuse_rx.try_recv().unwrap_or_default(),
                        lines: Vec::with_capacity(batch.lines.len()),
                    };
                    // A closed channel means a later stage stopped; the rest is dropped.
                    let _ = lines_tx.send(std::mem::replace(&mut batch, next));
                }
            });
            if !batch.lines.is_empty() {
                let _ = lines_tx.send(batch);
            }
            result
        });
        let parser = scope.spawn(move || -> TextStats {
            let mut stats = TextStats::default();
            for batch in lines_rx {
                if events_tx.send(parse_columns(batch, &mut stats)).is_err() {
                    break;
                }
            }
            stats
        });
        let mut undecoded = TextStats::default();
        let mut names = NameCache::default();
        for mut batch in events_rx {
            for raw in &batch.events {
                let (text, h) = rebuild(&batch.text, raw);
                emit(h, text, raw.line_no, &mut undecoded, &mut names, &mut sink);
            }
            batch.text.clear();
            let _ = reuse_tx.send(batch.text);
        }
        let mut stats = match parser.join() {
            Ok(stats) => stats,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match splitter.join() {
            Ok(result) => result?,
            Err(panic) => std::panic::resume_unwind(panic),
        }
        stats.undecoded = undecoded.undecoded;
        stats.undecoded_examples = undecoded.undecoded_examples;
        Ok(stats)
    })
}
