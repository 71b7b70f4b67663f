//! Text decoding as a two-stage pipeline, without unsafe code or shared buffers:
//!
//! 1. a worker thread reads a chunk of whole lines into an owned buffer, checks it as UTF-8
//!    once, splits the lines and their common columns, interns the event names and keeps the
//!    statistics; the chunk's text is then handed over as it is (moved, not copied), with each
//!    event line's columns as offsets into it (other lines are skipped by offset) and its
//!    name as the interned id;
//! 2. the caller's thread rebuilds each header by slicing, looks the name and its payload
//!    decoder up by index (the names first seen in a batch travel with it), decodes the
//!    payload and runs the sink.
//!
//! Batches travel over a bounded channel (memory stays bounded) and their buffers come back
//! to the worker for reuse, so no buffer is allocated or cleared per chunk.

use std::io::Read;
use std::sync::mpsc;

use super::{
    assemble_with, line, note_undecoded, payload, take_line, LineIn, NameCache, Splitter, TextStats,
};
use crate::event::Event;
use crate::names::{NameId, NameRef};
use crate::DecodeError;

/// Bytes read per chunk (one batch per chunk).
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

/// One event line of a batch: its columns as offsets into the batch string (48 bytes).
#[derive(Debug, Clone, Copy)]
struct RawEvent {
    line_no: u64,
    ts_ns: u64,
    text: Part,
    /// The task column, split into comm, tid and tgid on the caller's thread (which balances
    /// the two threads' work).
    task: Part,
    payload: Part,
    cpu: u32,
    /// The worker's id of `(system, name)`.
    name: NameId,
}

/// An interned name as the caller's thread sees it: what [`NameCache`] resolved it to.
#[derive(Debug)]
struct Name {
    system: Box<str>,
    name: Box<str>,
    decoder: payload::Decoder,
}

#[derive(Debug, Default)]
struct Batch {
    text: String,
    events: Vec<RawEvent>,
    /// The names first seen since the previous batch, in id order.
    names: Vec<Name>,
}

impl RawEvent {
    /// The event of `text`, a line that starts at byte `at` of its batch's text.
    #[inline(always)]
    fn new(
        line_no: u64,
        text: &str,
        h: &line::EventColumns<'_>,
        at: usize,
        name: NameId,
    ) -> RawEvent {
        RawEvent {
            line_no,
            ts_ns: h.ts_ns,
            text: Part {
                start: at as u32,
                len: text.len() as u32,
            },
            task: Part::of(text, h.task, at),
            payload: Part::of(text, h.payload, at),
            cpu: h.cpu,
            name,
        }
    }
}

#[inline(always)]
fn rebuild<'a>(text: &'a str, r: &RawEvent, name: &'a Name) -> (&'a str, line::Header<'a>) {
    let columns = line::EventColumns {
        task: r.task.get(text),
        cpu: r.cpu,
        ts_ns: r.ts_ns,
        system: &name.system,
        name: &name.name,
        payload: r.payload.get(text),
    };
    (r.text.get(text), columns.header())
}

pub(super) fn decode<R: Read + Send>(
    input: R,
    mut sink: impl FnMut(&Event<'_>),
    batch_bytes: usize,
) -> Result<TextStats, DecodeError> {
    let (batch_tx, batch_rx) = mpsc::sync_channel::<Batch>(DEPTH);
    let (reuse_tx, reuse_rx) = mpsc::channel::<Batch>();
    let mut names = NameCache::default();
    let table = names.table;
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || -> (Result<(), DecodeError>, TextStats) {
            let mut stats = TextStats::default();
            let mut split = Splitter::new(input, batch_bytes);
            let mut closed = false;
            let mut events: Vec<RawEvent> = Vec::new();
            let mut names_sent = 0;
            let result = loop {
                let chunk = match split.next_chunk() {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                // Event lines of the chunk's own text are sent with the text itself, by
                // offset; the others (lines checked one by one, the unterminated last line)
                // are copied into `side`, sent after it.
                let (own_start, own_len) = match &chunk.text {
                    Ok(t) => (t.as_ptr() as usize, t.len()),
                    Err(_) => (0, 0),
                };
                let mut side = Batch::default();
                split.lines += chunk.for_each_line(&mut |raw, offset, unterminated| {
                    let mut lossy = None;
                    let line = LineIn::of(raw, &mut lossy);
                    let Some((text, h)) =
                        take_line(line, offset, unterminated, &mut stats, line::parse_columns)
                    else {
                        return;
                    };
                    if closed {
                        return;
                    }
                    let (name, _) = names.resolve(h.system, h.name);
                    let at = (text.as_ptr() as usize).wrapping_sub(own_start);
                    if own_len > 0 && at < own_len {
                        events.push(RawEvent::new(stats.lines, text, &h, at, name));
                    } else {
                        let base = side.text.len();
                        side.text.push_str(text);
                        side.events
                            .push(RawEvent::new(stats.lines, text, &h, base, name));
                    }
                });
                if closed {
                    split.recycle(chunk.into_buffer());
                    continue;
                }
                let own = Batch {
                    text: chunk.text.unwrap_or_default(),
                    events: std::mem::take(&mut events),
                    names: Vec::new(),
                };
                for mut batch in [own, side] {
                    if batch.events.is_empty() {
                        split.recycle(batch.text.into_bytes());
                        continue;
                    }
                    while names_sent < names.names.len() {
                        let (system, name, (known, decoder)) =
                            names.names.get(names_sent as NameId);
                        batch.names.push(Name {
                            system: known.unwrap_or(system).into(),
                            name: name.into(),
                            decoder,
                        });
                        names_sent += 1;
                    }
                    // A closed channel means the caller stopped; the rest is only counted.
                    if batch_tx.send(batch).is_err() {
                        closed = true;
                        break;
                    }
                }
                while let Ok(back) = reuse_rx.try_recv() {
                    if events.capacity() < back.events.capacity() {
                        events = back.events;
                    }
                    split.recycle(back.text.into_bytes());
                }
            };
            (result, stats)
        });
        let mut undecoded = TextStats::default();
        let mut names: Vec<Name> = Vec::new();
        for mut batch in batch_rx {
            names.append(&mut batch.names);
            for raw in &batch.events {
                let Some(name) = names.get(raw.name as usize) else {
                    continue;
                };
                let (text, h) = rebuild(&batch.text, raw, name);
                let (ev, failed) =
                    assemble_with(h, h.system, name.decoder, NameRef::new(table, raw.name));
                if failed {
                    note_undecoded(&mut undecoded, raw.line_no, text);
                }
                sink(&ev);
            }
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
