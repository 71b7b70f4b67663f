//! Text decoding as a two-stage pipeline, without unsafe code or shared buffers:
//!
//! 1. a worker thread reads, checks UTF-8 once per chunk, splits the lines and their common
//!    columns and keeps the statistics; each event line is appended to a batch string with
//!    its columns as offsets into it (other lines never leave this thread);
//! 2. the caller's thread rebuilds each header by slicing, decodes the payload and runs the
//!    sink.
//!
//! Batches travel over a bounded channel (memory stays bounded) and their buffers come back
//! to the worker for reuse.

use std::io::Read;
use std::sync::mpsc;

use super::{emit, line, split_lines, take_line, LineIn, NameCache, TextStats};
use crate::event::Event;
use crate::DecodeError;

/// Bytes of text per batch.
pub(super) const BATCH: usize = 256 * 1024;
/// Batches in flight.
const DEPTH: usize = 4;

/// A column: `len` bytes at `start` in the batch string, or, when `start` is [`CONSTANT`], the
/// line parser's constant number `len` (for lines that do not print the column).
#[derive(Debug, Clone, Copy)]
struct Part {
    start: u32,
    len: u32,
}

const CONSTANT: u32 = u32::MAX;

impl Part {
    #[inline]
    fn of(line: &str, part: &str, base: usize) -> Part {
        let off = (part.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
        if !part.is_empty() && off <= line.len() && off + part.len() <= line.len() {
            return Part {
                start: (base + off) as u32,
                len: part.len() as u32,
            };
        }
        let k = line::CONSTANTS.iter().position(|c| *c == part).unwrap_or(0);
        Part {
            start: CONSTANT,
            len: k as u32,
        }
    }

    #[inline]
    fn get<'a>(&self, text: &'a str) -> &'a str {
        if self.start == CONSTANT {
            line::CONSTANTS[self.len as usize]
        } else {
            let s = self.start as usize;
            &text[s..s + self.len as usize]
        }
    }
}

/// One event line of a batch: its columns as offsets into the batch string.
#[derive(Debug, Clone, Copy)]
struct RawEvent {
    line_no: u64,
    ts_ns: u64,
    text: Part,
    comm: Part,
    system: Part,
    name: Part,
    payload: Part,
    tid: u32,
    tgid: Option<u32>,
    cpu: u32,
}

#[derive(Debug, Default)]
struct Batch {
    text: String,
    events: Vec<RawEvent>,
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
    (r.text.get(text), h)
}

pub(super) fn decode<R: Read + Send>(
    input: R,
    mut sink: impl FnMut(&Event<'_>),
    batch_bytes: usize,
) -> Result<TextStats, DecodeError> {
    let (batch_tx, batch_rx) = mpsc::sync_channel::<Batch>(DEPTH);
    let (reuse_tx, reuse_rx) = mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || -> (Result<(), DecodeError>, TextStats) {
            let mut stats = TextStats::default();
            let mut batch = Batch::default();
            let mut closed = false;
            let result = split_lines(input, |raw, offset, unterminated| {
                let lossy;
                let line = match raw {
                    Ok(text) => LineIn::Text(text),
                    Err(bytes) => {
                        lossy = String::from_utf8_lossy(bytes);
                        LineIn::Invalid {
                            lossy: &lossy,
                            len: bytes.len(),
                        }
                    }
                };
                let Some((text, h)) = take_line(line, offset, unterminated, &mut stats) else {
                    return;
                };
                if closed {
                    return;
                }
                let base = batch.text.len();
                batch.text.push_str(text);
                batch.events.push(RawEvent {
                    line_no: stats.lines,
                    ts_ns: h.ts_ns,
                    text: Part {
                        start: base as u32,
                        len: text.len() as u32,
                    },
                    comm: Part::of(text, h.comm, base),
                    system: Part::of(text, h.system, base),
                    name: Part::of(text, h.name, base),
                    payload: Part::of(text, h.payload, base),
                    tid: h.tid,
                    tgid: h.tgid,
                    cpu: h.cpu,
                });
                if batch.text.len() >= batch_bytes {
                    let next = reuse_rx.try_recv().unwrap_or_default();
                    // A closed channel means the caller stopped; the rest is only counted.
                    closed = batch_tx.send(std::mem::replace(&mut batch, next)).is_err();
                }
            });
            if !batch.events.is_empty() && !closed {
                let _ = batch_tx.send(batch);
            }
            (result, stats)
        });
        let mut undecoded = TextStats::default();
        let mut names = NameCache::default();
        for mut batch in batch_rx {
            for raw in &batch.events {
                let (text, h) = rebuild(&batch.text, raw);
                emit(h, text, raw.line_no, &mut undecoded, &mut names, &mut sink);
            }
            batch.text.clear();
            batch.events.clear();
            let _ = reuse_tx.send(batch);
        }
        let (result, mut stats) = match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        result?;
        stats.undecoded = undecoded.undecoded;
        stats.undecoded_examples = undecoded.undecoded_examples;
        Ok(stats)
    })
}
