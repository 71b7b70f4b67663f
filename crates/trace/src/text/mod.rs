//! Streaming decoder for text traces: ftrace `trace`/`trace_pipe`, `trace-cmd report` and
//! `perf script` output, detected line by line.
//!
//! Memory is bounded by the chunk size whatever the trace length: the input is read in chunks,
//! split into lines, and each line's [`Event`] borrows from the chunk while the sink sees it.

pub mod line;
mod parallel;
pub mod payload;

use std::io::Read;

use crate::event::{Event, EventKind};
use crate::DecodeError;

/// How many unreadable lines are kept as examples.
const UNKNOWN_EXAMPLES: usize = 5;
const CHUNK: usize = 1 << 20;
/// A line longer than this is not trace text.
const MAX_LINE: usize = 1 << 20;

/// What the decoder saw besides events: the evidence that a trace is complete, or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TextStats {
    pub bytes: u64,
    pub lines: u64,
    pub events: u64,
    /// Events of a known name whose fields did not have the expected shape.
    pub undecoded: u64,
    /// The first few of them: (line number, start of the line).
    pub undecoded_examples: Vec<(u64, String)>,
    /// Lines that are neither events nor known headers.
    pub unknown_lines: u64,
    /// The first few unknown lines: (line number, start of the line).
    pub unknown_examples: Vec<(u64, String)>,
    /// `CPU:N [LOST M EVENTS]` lines, summed per CPU.
    pub lost: Vec<(u32, u64)>,
    /// From ftrace's `entries-in-buffer/entries-written` header: events overwritten in the ring
    /// buffer before they were read.
    #[serde(skip_serializing_if = "is_zero")]
    pub overwritten: u64,
    /// The input ended inside a line (a cut-off file): the byte offset of that line.
    pub truncated_at: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TextStats {
    pub fn lost_total(&self) -> u64 {
        self.lost.iter().map(|&(_, n)| n).sum::<u64>() + self.overwritten
    }

    /// Adds the statistics of the input that follows (its line numbers counted from its own
    /// first line), as if one decoder had read both. Undecoded events are counted by whoever
    /// decodes payloads, not here.
    fn append(&mut self, later: TextStats) {
        let base = self.lines;
        self.bytes = self.bytes.max(later.bytes);
        self.lines += later.lines;
        self.events += later.events;
        self.unknown_lines += later.unknown_lines;
        for (line, text) in later.unknown_examples {
            if self.unknown_examples.len() < UNKNOWN_EXAMPLES {
                self.unknown_examples.push((base + line, text));
            }
        }
        for (cpu, count) in later.lost {
            self.add_lost(cpu, count);
        }
        self.overwritten += later.overwritten;
        if later.truncated_at.is_some() {
            self.truncated_at = later.truncated_at;
        }
    }

    fn add_lost(&mut self, cpu: u32, count: u64) {
        match self.lost.iter_mut().find(|(c, _)| *c == cpu) {
            Some((_, n)) => *n += count,
            None => self.lost.push((cpu, count)),
        }
    }
}

/// Decodes one line into an event, if it is one. `undecoded` is set when the event's typed
/// fields did not parse.
pub fn decode_line(text: &str) -> (line::Line<'_>, Option<Event<'_>>, bool) {
    let parsed = line::parse(text);
    let line::Line::Event(h) = parsed else {
        return (parsed, None, false);
    };
    let (ev, undecoded) = assemble(h);
    (parsed, Some(ev), undecoded)
}

/// Second half of decoding a line: the typed payload.
fn assemble(h: line::Header<'_>) -> (Event<'_>, bool) {
    let system = if h.system.is_empty() {
        payload::system_of(h.name)
    } else {
        h.system
    };
    let decoder = payload::decoder(system, h.name);
    assemble_with(h, system, decoder, crate::names::NameRef::NONE)
}

fn assemble_with<'a>(
    h: line::Header<'a>,
    system: &'a str,
    decoder: payload::Decoder,
    name_ref: crate::names::NameRef,
) -> (Event<'a>, bool) {
    let decoded = decoder.decode(h.name, h.payload);
    let ev = Event {
        ts_ns: h.ts_ns,
        cpu: h.cpu,
        tid: h.tid,
        tgid: h.tgid,
        comm: h.comm,
        system,
        name: h.name,
        payload: h.payload,
        kind: decoded.unwrap_or(EventKind::Other),
        name_ref,
    };
    (ev, decoded.is_none())
}

/// What each event name resolves to, once per name and decoder: its system when the line
/// does not print one, and its payload decoder. Its ids reach the sink as the events'
/// [`NameRef`](crate::names::NameRef)s.
struct NameCache {
    names: crate::names::NameTable<(Option<&'static str>, payload::Decoder)>,
    table: u32,
}

impl Default for NameCache {
    fn default() -> Self {
        NameCache {
            names: Default::default(),
            table: crate::names::new_table(),
        }
    }
}

impl NameCache {
    /// The id of `(system, name)`, and the system to show and the payload decoder.
    #[inline]
    fn resolve(
        &mut self,
        system: &str,
        name: &str,
    ) -> (
        crate::names::NameId,
        (Option<&'static str>, payload::Decoder),
    ) {
        self.names.intern(system, name, |system, name| {
            if system.is_empty() {
                let known = payload::system_of(name);
                (Some(known), payload::decoder(known, name))
            } else {
                (None, payload::decoder(system, name))
            }
        })
    }

    #[inline]
    fn assemble<'a>(&mut self, h: line::Header<'a>) -> (Event<'a>, bool) {
        let (id, (known, decoder)) = self.resolve(h.system, h.name);
        let name_ref = crate::names::NameRef::new(self.table, id);
        assemble_with(h, known.unwrap_or(h.system), decoder, name_ref)
    }
}

/// Decodes a whole text trace from `input`, calling `sink` for every event in input order.
///
/// On a machine with more than one CPU the work is shared by two threads: a worker parses
/// chunks (lines, columns, names, payloads), the caller's thread runs `sink` on them in input
/// order and parses the next chunk itself whenever the worker has none ready. Both paths give
/// the same events and statistics ([`decode_sequential`] is the reference).
pub fn decode<R: Read + Send>(
    mut input: R,
    sink: impl FnMut(&Event<'_>),
) -> Result<TextStats, DecodeError> {
    // An input that fits in one chunk is not worth a thread.
    let mut first = Vec::with_capacity(CHUNK);
    (&mut input)
        .take(CHUNK as u64)
        .read_to_end(&mut first)
        .map_err(|source| DecodeError::Io {
            offset: first.len() as u64,
            source,
        })?;
    if first.len() < CHUNK || !std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        return decode_sequential(std::io::Cursor::new(first).chain(input), sink);
    }
    parallel::decode(
        std::io::Cursor::new(first).chain(input),
        sink,
        parallel::BATCH,
    )
}

/// The two-thread decoder with a chosen batch size, for tests that cross many batch
/// boundaries on small inputs.
#[doc(hidden)]
pub fn decode_parallel_with_batch<R: Read + Send>(
    input: R,
    sink: impl FnMut(&Event<'_>),
    batch_bytes: usize,
) -> Result<TextStats, DecodeError> {
    parallel::decode(input, sink, batch_bytes.max(1))
}

/// Decodes on the caller's thread only.
pub fn decode_sequential<R: Read>(
    input: R,
    mut sink: impl FnMut(&Event<'_>),
) -> Result<TextStats, DecodeError> {
    let mut stats = TextStats::default();
    let mut names = NameCache::default();
    split_lines(input, |line, offset, unterminated| {
        let mut lossy = None;
        let line = LineIn::of(line, &mut lossy);
        if let Some((text, h)) = take_line(line, offset, unterminated, &mut stats, line::parse) {
            let line_no = stats.lines;
            emit(h, text, line_no, &mut stats, &mut names, &mut sink);
        }
    })?;
    Ok(stats)
}

/// Reads `input` in chunks and calls `on_line` for every line (without its newline) with its
/// byte offset; `Err` carries a line that is not UTF-8. Refuses binary input.
fn split_lines<R: Read>(
    input: R,
    mut on_line: impl FnMut(Result<&str, &[u8]>, u64, bool),
) -> Result<(), DecodeError> {
    let mut split = Splitter::new(input, CHUNK);
    while let Some(chunk) = split.next_chunk()? {
        split.lines += chunk.for_each_line(&mut on_line);
        split.recycle(chunk.into_buffer());
    }
    Ok(())
}

/// Grows `buf` to `len` bytes with zeros. `Vec::resize` does the same, but byte by byte in an
/// unoptimised build, where the 1 MiB buffers of every small decode made the property tests
/// take minutes; slices of a zero block are copied with memcpy in any build.
fn zero_extend(buf: &mut Vec<u8>, len: usize) {
    static ZEROS: [u8; 1 << 14] = [0; 1 << 14];
    while buf.len() < len {
        let n = (len - buf.len()).min(ZEROS.len());
        buf.extend_from_slice(&ZEROS[..n]);
    }
}

/// The input in chunks of whole lines, each chunk an owned buffer (so a pipeline can hand it
/// to another thread as it is, without copying lines out of it).
struct Splitter<R> {
    input: R,
    /// Read size, and the size of every buffer.
    chunk: usize,
    buf: Vec<u8>,
    /// `buf[..filled]`: the start of a line the last read did not complete (no newline in it).
    filled: usize,
    /// Byte offset of `buf[0]` in the input.
    base: u64,
    /// Lines handed out so far (the caller adds them), for errors.
    lines: u64,
    done: bool,
    spare: Vec<Vec<u8>>,
}

/// Complete lines: `text` is everything before the last newline, checked as UTF-8 once (the
/// bytes when that failed; lines are then checked one by one). At the end of the input, the
/// last line when it has no newline.
struct Chunk {
    text: Result<String, Vec<u8>>,
    /// `text` holds lines (false for a chunk that is only the unterminated last line).
    has_lines: bool,
    base: u64,
    unterminated: Option<(u64, Vec<u8>)>,
}

impl Chunk {
    /// Calls `on_line` for every line, in order; returns how many.
    fn for_each_line(&self, on_line: &mut impl FnMut(Result<&str, &[u8]>, u64, bool)) -> u64 {
        let mut lines = 0;
        if self.has_lines {
            let mut start = 0usize;
            match &self.text {
                Ok(text) => {
                    for nl in memchr::memchr_iter(b'\n', text.as_bytes()) {
                        on_line(Ok(&text[start..nl]), self.base + start as u64, false);
                        lines += 1;
                        start = nl + 1;
                    }
                    on_line(Ok(&text[start..]), self.base + start as u64, false);
                }
                Err(bytes) => {
                    let line = |s: usize, e: usize| {
                        let b = &bytes[s..e];
                        std::str::from_utf8(b).map_err(|_| b)
                    };
                    for nl in memchr::memchr_iter(b'\n', bytes) {
                        on_line(line(start, nl), self.base + start as u64, false);
                        lines += 1;
                        start = nl + 1;
                    }
                    on_line(line(start, bytes.len()), self.base + start as u64, false);
                }
            }
            lines += 1;
        }
        if let Some((offset, bytes)) = &self.unterminated {
            // The file ended without a newline: still decode the line; the receiver records
            // that the input may have been cut off when it does not parse.
            let line = std::str::from_utf8(bytes).map_err(|_| &bytes[..]);
            on_line(line, *offset, true);
        }
        lines
    }

    fn into_buffer(self) -> Vec<u8> {
        match self.text {
            Ok(text) => text.into_bytes(),
            Err(bytes) => bytes,
        }
    }
}

impl<R: Read> Splitter<R> {
    fn new(input: R, chunk: usize) -> Self {
        Splitter {
            input,
            chunk,
            buf: vec![0u8; chunk],
            filled: 0,
            base: 0,
            lines: 0,
            done: false,
            spare: Vec::new(),
        }
    }

    /// A buffer back from a finished chunk, for reuse.
    fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() >= self.chunk && self.spare.len() < 2 {
            // Only the bytes after the chunk's text are zeroed again.
            zero_extend(&mut buf, self.chunk);
            self.spare.push(buf);
        }
    }

    /// The next chunk of lines, or `None` at the end of the input.
    fn next_chunk(&mut self) -> Result<Option<Chunk>, DecodeError> {
        while !self.done {
            let filled = self.filled;
            if filled == self.buf.len() {
                if self.buf.len() >= MAX_LINE + CHUNK {
                    return Err(DecodeError::LineTooLong {
                        offset: self.base,
                        line: self.lines + 1,
                    });
                }
                let grown = (self.buf.len() * 2).min(MAX_LINE + CHUNK);
                zero_extend(&mut self.buf, grown);
            }
            let n = read_some(
                &mut self.input,
                &mut self.buf[filled..],
                self.base + filled as u64,
            )?;
            let end = filled + n;
            if let Some(nul) = memchr::memchr(0, &self.buf[filled..end]) {
                return Err(DecodeError::Binary {
                    offset: self.base + (filled + nul) as u64,
                });
            }
            // The carried-over partial line holds no newline: only the new bytes can.
            let last_nl = memchr::memrchr(b'\n', &self.buf[filled..end]).map(|i| filled + i);
            let base = self.base;
            if n == 0 {
                self.done = true;
                let mut buf = std::mem::take(&mut self.buf);
                let unterminated = (end > 0).then(|| (base, buf[..end].to_vec()));
                buf.truncate(0);
                return Ok(Some(Chunk {
                    text: Ok(String::from_utf8(buf).unwrap_or_default()),
                    has_lines: false,
                    base,
                    unterminated,
                }));
            }
            let Some(nl) = last_nl else {
                self.filled = end;
                continue;
            };
            let mut next = self.spare.pop().unwrap_or_else(|| vec![0u8; self.chunk]);
            if next.len() < self.buf.len() {
                zero_extend(&mut next, self.buf.len());
            }
            let tail = end - (nl + 1);
            next[..tail].copy_from_slice(&self.buf[nl + 1..end]);
            let mut text = std::mem::replace(&mut self.buf, next);
            self.filled = tail;
            self.base += (nl + 1) as u64;
            text.truncate(nl);
            return Ok(Some(Chunk {
                text: String::from_utf8(text).map_err(|e| e.into_bytes()),
                has_lines: true,
                base,
                unterminated: None,
            }));
        }
        Ok(None)
    }
}

fn read_some<R: Read>(input: &mut R, buf: &mut [u8], offset: u64) -> Result<usize, DecodeError> {
    loop {
        match input.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(DecodeError::Io { offset, source }),
        }
    }
}

/// A line as the splitter hands it over: text, or bytes that are not UTF-8 (shown lossily).
#[derive(Debug, Clone, Copy)]
enum LineIn<'a> {
    Text(&'a str),
    Invalid { lossy: &'a str, len: usize },
}

impl<'a> LineIn<'a> {
    /// A line as the splitter gives it: text, or bytes that are not UTF-8, shown lossily
    /// from `lossy` (the caller's storage, so the line can borrow it).
    fn of(raw: Result<&'a str, &'a [u8]>, lossy: &'a mut Option<String>) -> Self {
        match raw {
            Ok(text) => LineIn::Text(text),
            Err(bytes) => LineIn::Invalid {
                lossy: lossy.insert(String::from_utf8_lossy(bytes).into_owned()),
                len: bytes.len(),
            },
        }
    }
}

/// [`line_header`], plus the record that a last line without a newline that does not parse
/// means the input was cut off.
#[inline(always)]
fn take_line<'a, E>(
    line: LineIn<'a>,
    offset: u64,
    unterminated: bool,
    stats: &mut TextStats,
    parse: impl FnOnce(&'a str) -> line::LineOf<E>,
) -> Option<(&'a str, E)> {
    let before = stats.unknown_lines;
    let header = line_header(line, offset, stats, parse);
    if unterminated && stats.unknown_lines > before {
        stats.truncated_at = Some(offset);
    }
    header
}

/// First half of a line: the line and byte bookkeeping and the common columns. Returns the
/// line (without `\r`) and its header when it is an event.
#[inline(always)]
fn line_header<'a, E>(
    line: LineIn<'a>,
    offset: u64,
    stats: &mut TextStats,
    parse: impl FnOnce(&'a str) -> line::LineOf<E>,
) -> Option<(&'a str, E)> {
    stats.lines += 1;
    let text = match line {
        LineIn::Text(text) => {
            stats.bytes = offset + text.len() as u64 + 1;
            text.strip_suffix('\r').unwrap_or(text)
        }
        LineIn::Invalid { lossy, len } => {
            stats.bytes = offset + len as u64 + 1;
            unknown(stats, lossy);
            return None;
        }
    };
    match parse(text) {
        line::LineOf::Event(h) => {
            stats.events += 1;
            return Some((text, h));
        }
        line::LineOf::Lost { cpu, count } => stats.add_lost(cpu, count),
        line::LineOf::EntriesHeader { in_buffer, written } => {
            stats.overwritten += written.saturating_sub(in_buffer);
        }
        line::LineOf::Unknown => unknown(stats, text),
        line::LineOf::Meta => {}
    }
    None
}

/// Second half: the typed payload, then the sink.
fn emit(
    h: line::Header<'_>,
    text: &str,
    line_no: u64,
    stats: &mut TextStats,
    names: &mut NameCache,
    sink: &mut impl FnMut(&Event<'_>),
) {
    let (ev, undecoded) = names.assemble(h);
    if undecoded {
        note_undecoded(stats, line_no, text);
    }
    sink(&ev);
}

/// Counts an event whose payload its decoder could not read, keeping the first few.
#[cold]
fn note_undecoded(stats: &mut TextStats, line_no: u64, text: &str) {
    stats.undecoded += 1;
    if stats.undecoded_examples.len() < UNKNOWN_EXAMPLES {
        stats
            .undecoded_examples
            .push((line_no, text.chars().take(160).collect()));
    }
}

fn unknown(stats: &mut TextStats, text: &str) {
    stats.unknown_lines += 1;
    if stats.unknown_examples.len() < UNKNOWN_EXAMPLES {
        let snippet: String = text.chars().take(120).collect();
        stats.unknown_examples.push((stats.lines, snippet));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<(u64, String)>, TextStats) {
        let mut seen = Vec::new();
        let stats = decode(input, |e| seen.push((e.ts_ns, e.name.to_string()))).unwrap();
        (seen, stats)
    }

    #[test]
    fn counts_events_unknown_lines_and_lost() {
        let input = b"# tracer: nop\n\
            # entries-in-buffer/entries-written: 2/5   #P:2\n\
            a-1 [000] .... 1.000001: kvm_pio: pio_write at 0x3f8 size 1 count 1 val 0x41 \n\
            garbage here\n\
            CPU:1 [LOST 7 EVENTS]\n\
            a-1 [000] .... 1.000002: kvm_pio: pio_write at 0x3f8 size 1 count 1 val 0x41 ";
        let (seen, stats) = run(input);
        assert_eq!(seen.len(), 2);
        assert_eq!(stats.unknown_lines, 1);
        assert_eq!(
            stats.unknown_examples,
            vec![(4, "garbage here".to_string())]
        );
        assert_eq!(stats.lost, vec![(1, 7)]);
        assert_eq!(stats.overwritten, 3);
        assert_eq!(stats.truncated_at, None);
    }

    #[test]
    fn reports_truncation_and_binary() {
        let (_, stats) = run(b"a-1 [000] .... 1.000001: kvm_fpu: load\na-1 [000] .... 1.00");
        assert_eq!(stats.truncated_at, Some(39));
        let err = decode(&b"a-1 [000] 1.0: x: y\n\x00\x01"[..], |_| {}).unwrap_err();
        assert!(matches!(err, DecodeError::Binary { offset: 20 }), "{err}");
    }

    #[test]
    fn lines_spanning_chunks() {
        let line = "qemu-7 [001] d..1. 12.345678: kvm_msr: msr_write 6e0 = 0x1\n";
        let input = line.repeat(CHUNK / line.len() * 3);
        let (seen, stats) = run(input.as_bytes());
        assert_eq!(seen.len() as u64, stats.lines);
        assert_eq!(stats.unknown_lines, 0);
    }
}
