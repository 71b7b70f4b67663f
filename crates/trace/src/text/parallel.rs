//! Text decoding on two threads that share the work chunk by chunk, without unsafe code or
//! shared buffers:
//!
//! - **Parsing** a chunk: read a chunk of whole lines into an owned buffer (under the reader's
//!   lock, which numbers the chunks), check it as UTF-8 once, split the lines and their
//!   columns, intern the event names and decode the payloads. The result is a [`Batch`]: the
//!   chunk's text, moved and not copied, with each event's columns as offsets into it, its
//!   name as an id and its typed payload (whose strings are offsets too), and the chunk's own
//!   statistics (line numbers counted from the chunk's first line).
//! - **Reporting** a batch, in chunk order, on the caller's thread: rebuild each event by
//!   slicing, look its name up by index, run the sink, and add the batch's statistics to the
//!   total (shifting its line numbers).
//!
//! The worker thread only parses. The caller's thread reports, and parses the next unread
//! chunk itself whenever the worker has no batch ready, so neither thread waits while the
//! other has work: the split follows the input's mix of parsing and analysis work.
//!
//! Both threads intern names into one table behind a lock, taken only for a name a thread has
//! not seen, so an id means the same name whichever thread parsed the line. Batches travel
//! over a bounded channel (memory stays bounded) and their buffers go back to the reader for
//! reuse, so no buffer is allocated or cleared per chunk.

use std::io::Read;
use std::sync::{mpsc, Mutex, MutexGuard};

use super::{
    line, note_undecoded, payload, take_line, Chunk, LineIn, NameCache, Splitter, TextStats,
};
use crate::event::{Event, EventKind};
use crate::names::{NameId, NameRef, NameTable};
use crate::DecodeError;

/// Bytes read per chunk (one batch per chunk).
pub(super) const BATCH: usize = 256 * 1024;
/// Batches in flight from the worker.
const DEPTH: usize = 4;
/// Event vectors kept for reuse.
const SPARE_EVENTS: usize = 4;

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

    /// `part`, a slice of `line` (which starts at byte `base` of the batch string), or `None`
    /// when it is not one (an empty string is one anywhere).
    #[inline]
    fn inside(line: &str, part: &str, base: usize) -> Option<Part> {
        let off = (part.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
        if part.is_empty() {
            return Some(Part {
                start: base as u32,
                len: 0,
            });
        }
        (off <= line.len() && off + part.len() <= line.len()).then_some(Part {
            start: (base + off) as u32,
            len: part.len() as u32,
        })
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

/// One event line of a batch, decoded, with its strings as offsets into the batch string.
#[derive(Debug, Clone, Copy)]
struct RawEvent {
    /// Counted from the chunk's first line (1).
    line_no: u64,
    ts_ns: u64,
    text: Part,
    comm: Part,
    payload: Part,
    cpu: u32,
    tid: u32,
    tgid: Option<u32>,
    /// The id of `(system, name)` in the shared [`NameCache`].
    name: NameId,
    /// The typed payload, its strings empty: they are the `strs` parts of the piece's
    /// [`Piece::strs`] from `strs_at`, in [`EventKind::map_strs`] order.
    kind: EventKind<'static>,
    strs_at: u32,
    strs: u8,
    payload_state: PayloadState,
}

/// How far a [`RawEvent`]'s payload was decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadState {
    Decoded,
    /// Its decoder did not accept it: the kind is [`EventKind::Other`].
    Failed,
    /// Its kind holds a string that is not a slice of the line: decoded again when reported.
    Later,
}

/// An interned name as the reporting thread sees it: what [`NameCache`] resolved it to.
#[derive(Debug)]
struct Name {
    system: Box<str>,
    name: Box<str>,
    decoder: payload::Decoder,
}

/// Lines of a chunk and the events among them, as offsets into `text`.
#[derive(Debug, Default)]
struct Piece {
    text: String,
    events: Vec<RawEvent>,
    /// The strings of the events' payloads.
    strs: Vec<Part>,
}

/// One parsed chunk.
#[derive(Debug)]
struct Batch {
    /// The chunk's number in input order.
    seq: u64,
    /// Event lines of the chunk's own text.
    own: Piece,
    /// Event lines that are not in it (lines of a chunk that is not UTF-8, checked one by
    /// one; the unterminated last line), copied; they come after `own`'s.
    side: Option<Box<Piece>>,
    /// The chunk's statistics, its line numbers counted from its first line.
    stats: TextStats,
    /// Reading failed here: nothing comes after this batch.
    error: Option<DecodeError>,
}

impl Piece {
    /// Adds the event of `text`, a line that starts at byte `at` of the piece's text: its task
    /// column split, its payload decoded by `decoder`.
    #[inline(always)]
    fn push(
        &mut self,
        line_no: u64,
        text: &str,
        columns: &line::EventColumns<'_>,
        at: usize,
        (name, decoder): (NameId, payload::Decoder),
    ) {
        let h = columns.header();
        let strs_at = self.strs.len();
        let (kind, payload_state) = match decoder {
            // Kinds that hold no string of the line are kept as they are.
            payload::Decoder::Owned(f) => match f(h.name, h.payload) {
                None => (EventKind::Other, PayloadState::Failed),
                Some(kind) => (kind, PayloadState::Decoded),
            },
            payload::Decoder::Borrowing(f) => match f(h.name, h.payload) {
                None => (EventKind::Other, PayloadState::Failed),
                // Exits are the most common of these, and most name their reason by a code.
                Some(EventKind::KvmExit(e)) => match e.without_str() {
                    Some(e) => (EventKind::KvmExit(e), PayloadState::Decoded),
                    None => self.keep_strs(EventKind::KvmExit(e), text, at),
                },
                Some(kind) => self.keep_strs(kind, text, at),
            },
        };
        self.events.push(RawEvent {
            line_no,
            ts_ns: h.ts_ns,
            text: Part {
                start: at as u32,
                len: text.len() as u32,
            },
            comm: Part::of(text, h.comm, at),
            payload: Part::of(text, h.payload, at),
            cpu: h.cpu,
            tid: h.tid,
            tgid: h.tgid,
            name,
            kind,
            strs_at: strs_at as u32,
            strs: (self.strs.len() - strs_at) as u8,
            payload_state,
        });
    }

    /// `kind` with its strings as parts of the piece's text, kept in `strs` (or decoded again
    /// when reported if one is not a slice of `text`, the line at byte `at`).
    #[inline]
    fn keep_strs(
        &mut self,
        kind: EventKind<'_>,
        text: &str,
        at: usize,
    ) -> (EventKind<'static>, PayloadState) {
        let strs_at = self.strs.len();
        let mut inside = true;
        let kind = kind.map_strs(&mut |s| {
            match Part::inside(text, s, at) {
                Some(part) => self.strs.push(part),
                None => inside = false,
            }
            ""
        });
        if inside {
            (kind, PayloadState::Decoded)
        } else {
            self.strs.truncate(strs_at);
            (EventKind::Other, PayloadState::Later)
        }
    }

    /// The event `r` of this piece, and whether its payload did not decode.
    #[inline(always)]
    fn event<'a>(&'a self, r: &RawEvent, name: &'a Name, name_ref: NameRef) -> (Event<'a>, bool) {
        let text = &self.text;
        let payload = r.payload.get(text);
        let (kind, failed) = match r.payload_state {
            PayloadState::Decoded if r.strs == 0 => (r.kind, false),
            PayloadState::Decoded => {
                let start = r.strs_at as usize;
                let mut strs = self.strs[start..start + r.strs as usize].iter();
                let kind = r
                    .kind
                    .map_strs(&mut |_| strs.next().map_or("", |p| p.get(text)));
                (kind, false)
            }
            PayloadState::Failed => (EventKind::Other, true),
            PayloadState::Later => match name.decoder.decode(&name.name, payload) {
                Some(kind) => (kind, false),
                None => (EventKind::Other, true),
            },
        };
        let ev = Event {
            ts_ns: r.ts_ns,
            cpu: r.cpu,
            tid: r.tid,
            tgid: r.tgid,
            comm: r.comm.get(text),
            system: &name.system,
            name: &name.name,
            payload,
            kind,
            name_ref,
        };
        (ev, failed)
    }
}

/// A lock whose holder may have panicked: the panic reaches the caller through the scope, the
/// data is still consistent enough to stop with.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// [`lock`] for the reader, spinning first: the other thread holds it while it reads a chunk
/// (tens of microseconds), and sleeping on it costs more than that in wake-ups.
fn spin_lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    for _ in 0..SPINS {
        match m.try_lock() {
            Ok(g) => return g,
            Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    lock(m)
}

/// Tries of [`spin_lock`] before it sleeps.
const SPINS: u32 = 100_000;

/// The input, shared by the two threads: each takes the next chunk under the lock.
struct Reader<R> {
    split: Splitter<R>,
    /// The number of the next chunk.
    next: u64,
    /// The input ended or failed: nothing more is taken.
    ended: bool,
    spare_events: Vec<(Vec<RawEvent>, Vec<Part>)>,
}

/// A chunk taken from the [`Reader`], with its number and vectors to fill.
struct Taken {
    seq: u64,
    chunk: Result<Chunk, DecodeError>,
    spare: (Vec<RawEvent>, Vec<Part>),
}

impl<R: Read> Reader<R> {
    fn take(&mut self) -> Option<Taken> {
        if self.ended {
            return None;
        }
        let chunk = match self.split.next_chunk() {
            Ok(Some(chunk)) => Ok(chunk),
            Ok(None) => {
                self.ended = true;
                return None;
            }
            Err(e) => {
                self.ended = true;
                Err(e)
            }
        };
        let seq = self.next;
        self.next += 1;
        let spare = self.spare_events.pop().unwrap_or_default();
        Some(Taken { seq, chunk, spare })
    }

    /// A reported batch's buffers, for reuse.
    fn recycle(&mut self, batch: Batch) {
        self.split.recycle(batch.own.text.into_bytes());
        if self.spare_events.len() < SPARE_EVENTS {
            let (mut events, mut strs) = (batch.own.events, batch.own.strs);
            events.clear();
            strs.clear();
            self.spare_events.push((events, strs));
        }
    }
}

/// One thread's parsing state: its own map from names to the shared ids (so the shared table
/// is locked only for a name this thread has not seen).
struct Parser<'s> {
    local: NameTable<(NameId, payload::Decoder)>,
    shared: &'s Mutex<NameCache>,
}

impl<'s> Parser<'s> {
    fn new(shared: &'s Mutex<NameCache>) -> Self {
        Parser {
            local: NameTable::default(),
            shared,
        }
    }

    fn parse(&mut self, taken: Taken) -> Batch {
        let Taken {
            seq,
            chunk,
            spare: (events, strs),
        } = taken;
        let mut stats = TextStats::default();
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                return Batch {
                    seq,
                    own: Piece::default(),
                    side: None,
                    stats,
                    error: Some(e),
                }
            }
        };
        let (own_start, own_len) = match &chunk.text {
            Ok(t) => (t.as_ptr() as usize, t.len()),
            Err(_) => (0, 0),
        };
        let mut own = Piece {
            text: String::new(),
            events,
            strs,
        };
        let mut side: Option<Box<Piece>> = None;
        let Parser { local, shared } = self;
        chunk.for_each_line(&mut |raw, offset, unterminated| {
            let mut lossy = None;
            let line = LineIn::of(raw, &mut lossy);
            let Some((text, h)) =
                take_line(line, offset, unterminated, &mut stats, line::parse_columns)
            else {
                return;
            };
            let (_, name) = local.intern(h.system, h.name, |system, name| {
                let (id, (_, decoder)) = lock(shared).resolve(system, name);
                (id, decoder)
            });
            let at = (text.as_ptr() as usize).wrapping_sub(own_start);
            if own_len > 0 && at < own_len {
                own.push(stats.lines, text, &h, at, name);
            } else {
                let side = side.get_or_insert_with(Default::default);
                let base = side.text.len();
                side.text.push_str(text);
                side.push(stats.lines, text, &h, base, name);
            }
        });
        own.text = chunk.text.unwrap_or_default();
        Batch {
            seq,
            own,
            side,
            stats,
            error: None,
        }
    }
}

pub(super) fn decode<R: Read + Send>(
    input: R,
    mut sink: impl FnMut(&Event<'_>),
    batch_bytes: usize,
) -> Result<TextStats, DecodeError> {
    let reader = Mutex::new(Reader {
        split: Splitter::new(input, batch_bytes),
        next: 0,
        ended: false,
        spare_events: Vec::new(),
    });
    let shared_names = Mutex::new(NameCache::default());
    let table = lock(&shared_names).table;
    let (reader, shared_names) = (&reader, &shared_names);
    std::thread::scope(|scope| {
        let (batch_tx, batch_rx) = mpsc::sync_channel::<Batch>(DEPTH);
        let worker = scope.spawn(move || {
            let mut parser = Parser::new(shared_names);
            loop {
                let Some(taken) = spin_lock(reader).take() else {
                    break;
                };
                // A closed channel means the caller stopped.
                if batch_tx.send(parser.parse(taken)).is_err() {
                    break;
                }
            }
        });
        let mut own_parser = Parser::new(shared_names);
        let mut names: Vec<Name> = Vec::new();
        let mut total = TextStats::default();
        let mut undecoded = TextStats::default();
        // A batch this thread parsed ahead of the one it waits for.
        let mut stash: Option<Batch> = None;
        let mut expect = 0u64;
        let mut result = Ok(());
        loop {
            let batch = match stash.take() {
                Some(b) if b.seq == expect => b,
                other => {
                    stash = other;
                    match batch_rx.try_recv() {
                        Ok(b) => b,
                        Err(mpsc::TryRecvError::Disconnected) => break,
                        Err(mpsc::TryRecvError::Empty) => {
                            // The worker is still parsing: parse the next chunk here rather
                            // than wait (one ahead at most).
                            if stash.is_none() {
                                let taken = spin_lock(reader).take();
                                if let Some(taken) = taken {
                                    stash = Some(own_parser.parse(taken));
                                    continue;
                                }
                            }
                            match batch_rx.recv() {
                                Ok(b) => b,
                                Err(_) => break,
                            }
                        }
                    }
                }
            };
            debug_assert_eq!(batch.seq, expect, "batches are reported in input order");
            expect += 1;
            let base = total.lines;
            for piece in std::iter::once(&batch.own).chain(batch.side.as_deref()) {
                for raw in &piece.events {
                    let id = raw.name as usize;
                    if id >= names.len() {
                        more_names(&mut names, shared_names);
                    }
                    let Some(name) = names.get(id) else {
                        continue;
                    };
                    let (ev, failed) = piece.event(raw, name, NameRef::new(table, raw.name));
                    if failed {
                        note_undecoded(
                            &mut undecoded,
                            base + raw.line_no,
                            raw.text.get(&piece.text),
                        );
                    }
                    sink(&ev);
                }
            }
            let mut batch = batch;
            let error = batch.error.take();
            total.append(std::mem::take(&mut batch.stats));
            spin_lock(reader).recycle(batch);
            if let Some(e) = error {
                result = Err(match e {
                    // The reader does not count lines: the ones before are the total's.
                    DecodeError::LineTooLong { offset, line } => DecodeError::LineTooLong {
                        offset,
                        line: base + line,
                    },
                    e => e,
                });
                break;
            }
        }
        // Unblocks a worker waiting to send, if reading failed or the sink stopped early.
        drop(batch_rx);
        if let Err(panic) = worker.join() {
            std::panic::resume_unwind(panic);
        }
        result?;
        total.undecoded = undecoded.undecoded;
        total.undecoded_examples = undecoded.undecoded_examples;
        Ok(total)
    })
}

/// The names interned since `names` was last brought up to date.
#[cold]
fn more_names(names: &mut Vec<Name>, shared: &Mutex<NameCache>) {
    let cache = lock(shared);
    for id in names.len()..cache.names.len() {
        let (system, name, (known, decoder)) = cache.names.get(id as NameId);
        names.push(Name {
            system: known.unwrap_or(system).into(),
            name: name.into(),
            decoder,
        });
    }
}
