//! Two-thread text decoding without unsafe code or shared buffers: a reader thread splits the
//! input into lines and their common columns, copying the event lines into a batch string
//! and recording each column as a range; the caller's thread rebuilds each header from its
//! batch by slicing, decodes the payload and runs the sink. Batches travel over a bounded
//! channel (memory stays bounded) and their buffers come back for reuse.

use std::io::Read;
use std::ops::Range;
use std::sync::mpsc;

use super::{emit, line, line_header, split_lines, TextStats};
use crate::event::Event;
use crate::DecodeError;

/// Bytes of event text per batch.
pub(super) const BATCH: usize = 256 * 1024;
/// Batches in flight: bounds memory to about `DEPTH * BATCH` plus the reader's chunk.
const DEPTH: usize = 8;

/// One event line of a batch: where its columns are in the batch string.
#[derive(Debug, Clone)]
struct RawLine {
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

#[derive(Debug, Default)]
struct Batch {
    text: String,
    lines: Vec<RawLine>,
}

/// The range of `part` within `whole`, shifted by `base`; `None` when `part` is not a slice of
/// `whole`.
fn range_in(whole: &str, part: &str, base: usize) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then(|| base + start..base + start + part.len())
}

fn rebuild<'a>(text: &'a str, r: &RawLine) -> (&'a str, line::Header<'a>) {
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

pub(super) fn decode<R: Read + Send>(
    input: R,
    mut sink: impl FnMut(&Event<'_>),
    batch_bytes: usize,
) -> Result<TextStats, DecodeError> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(DEPTH);
    let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<TextStats, DecodeError> {
            let mut stats = TextStats::default();
            let mut batch = Batch::default();
            let result = split_lines(input, &mut stats, |line, offset, stats| {
                let Some((text, h)) = line_header(line, offset, stats) else {
                    return;
                };
                let base = batch.text.len();
                batch.text.push_str(text);
                batch.lines.push(RawLine {
                    line_no: stats.lines,
                    text: base..base + text.len(),
                    comm: Part::of(text, h.comm, base),
                    system: Part::of(text, h.system, base),
                    name: Part::of(text, h.name, base),
                    payload: Part::of(text, h.payload, base),
                    tid: h.tid,
                    tgid: h.tgid,
                    cpu: h.cpu,
                    ts_ns: h.ts_ns,
                });
                if batch.text.len() >= batch_bytes {
                    let next = empty_rx.try_recv().unwrap_or_default();
                    // A closed channel means the consumer stopped; the rest is dropped.
                    let _ = full_tx.send(std::mem::replace(&mut batch, next));
                }
            });
            if !batch.lines.is_empty() {
                let _ = full_tx.send(batch);
            }
            drop(full_tx);
            result.map(|()| stats)
        });
        let mut undecoded = TextStats::default();
        for mut batch in full_rx {
            for raw in &batch.lines {
                let (text, h) = rebuild(&batch.text, raw);
                emit(h, text, raw.line_no, &mut undecoded, &mut sink);
            }
            batch.text.clear();
            batch.lines.clear();
            let _ = empty_tx.send(batch);
        }
        let mut stats = match reader.join() {
            Ok(r) => r?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        stats.undecoded = undecoded.undecoded;
        stats.undecoded_examples = undecoded.undecoded_examples;
        Ok(stats)
    })
}
