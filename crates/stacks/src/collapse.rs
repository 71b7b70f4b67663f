//! `perf script` text to folded stacks, byte-for-byte like FlameGraph's
//! `stackcollapse-perf.pl` (no option, and each of `--pid --tid --kernel --jit --all --addrs`).
//!
//! [`Collapser`] is the sans-I/O state machine: feed it whole lines, then take the folded
//! stacks. [`collapse_reader`] streams a reader through it in blocks, on one or more worker
//! threads (blocks are cut after blank lines, where the reference script keeps no state but
//! the event filter). Memory stays flat: one block per worker in flight plus the map of
//! distinct stacks.
//!
//! Behaviours of the reference kept on purpose: a sample with no stack lines folds to the bare
//! process name; only the first event type seen is kept; a stack not closed by a blank line
//! before the end of input is dropped; unrecognised lines are reported and skipped.

use std::collections::HashMap;
use std::io::{Read, Write};

use crate::count::Count;
use crate::perf_script::{match_event, match_frame, match_header, strip_offset};
use crate::Error;

/// What to put in the folded stacks (the reference script's options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--pid`: process name and PID (`comm-PID`).
    pub pid: bool,
    /// `--tid`: process name, PID and TID (`comm-PID/TID`); wins over `pid`.
    pub tid: bool,
    /// `--kernel`: mark kernel frames with `_[k]`.
    pub kernel: bool,
    /// `--jit`: mark JIT frames (`/tmp/perf-N.map`) with `_[j]`.
    pub jit: bool,
    /// `--addrs`: keep raw addresses of unknown frames (`[unknown <addr>]`).
    pub addrs: bool,
    /// `--event-filter`: keep only samples of this event (default: the first seen).
    pub event_filter: Option<Vec<u8>>,
}

impl Options {
    /// `--all`: both kernel and JIT annotations.
    pub fn all(mut self) -> Self {
        self.kernel = true;
        self.jit = true;
        self
    }
}

/// An input line the reference script would warn about ("Unrecognized line").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unrecognized {
    /// 1-based line number in the input.
    pub line: u64,
    /// The line's first 200 bytes, with non-printable bytes escaped (`\xNN`).
    pub text: String,
}

/// How many unrecognised lines are kept with their text.
pub const KEPT_UNRECOGNIZED: usize = 10;

/// The result of collapsing: folded stacks and what was skipped.
#[derive(Debug, Clone, Default)]
pub struct Collapsed {
    /// Distinct stacks and their summed periods, sorted bytewise (Perl's `sort { $a cmp $b }`).
    pub stacks: Vec<(Vec<u8>, Count)>,
    /// The first [`KEPT_UNRECOGNIZED`] unrecognised lines.
    pub unrecognized: Vec<Unrecognized>,
    /// How many lines were unrecognised in all.
    pub unrecognized_count: u64,
    /// Set when samples of other events were dropped: the event that was kept.
    pub filtered_for: Option<Vec<u8>>,
    /// Lines read.
    pub lines: u64,
}

impl Collapsed {
    /// Writes `stack count\n` lines.
    pub fn write_folded<W: Write>(&self, mut out: W) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(4096);
        for (stack, count) in &self.stacks {
            line.clear();
            line.extend_from_slice(stack);
            line.push(b' ');
            match count {
                Count::Int(v) => push_decimal(&mut line, *v),
                Count::Float(_) => line.extend_from_slice(count.to_string().as_bytes()),
            }
            line.push(b'\n');
            out.write_all(&line)?;
        }
        out.flush()
    }
}

fn push_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

pub(crate) type StackMap = HashMap<Box<[u8]>, Count, foldhash::fast::RandomState>;

/// The reference script's state machine over lines (sans I/O).
#[derive(Debug)]
pub struct Collapser {
    opts: Options,
    /// The event kept (set by the first sample header that names one, unless given).
    filter: Option<Vec<u8>>,
    filter_defaulted: bool,
    dropped_other_events: bool,
    /// `$pname` of the sample being read, if any.
    pname: Vec<u8>,
    has_pname: bool,
    /// `$m_period`.
    period: Count,
    /// Frame groups of the current sample, leaf first, each `a;b` for `a->b` inlines.
    frames: Vec<u8>,
    groups: Vec<(u32, u32)>,
    key: Vec<u8>,
    scratch: Vec<u8>,
    map: StackMap,
    lines: u64,
    unrecognized: Vec<Unrecognized>,
    unrecognized_count: u64,
}

impl Collapser {
    /// A collapser with the given options.
    pub fn new(opts: Options) -> Self {
        let filter = opts.event_filter.clone();
        Collapser {
            opts,
            filter,
            filter_defaulted: false,
            dropped_other_events: false,
            pname: Vec::with_capacity(64),
            has_pname: false,
            period: Count::Int(1),
            frames: Vec::with_capacity(4096),
            groups: Vec::with_capacity(128),
            key: Vec::with_capacity(4096),
            scratch: Vec::with_capacity(256),
            map: StackMap::default(),
            lines: 0,
            unrecognized: Vec::new(),
            unrecognized_count: 0,
        }
    }

    /// Feeds a block of whole lines (each ending in `\n`, except possibly the last one at the
    /// end of the input).
    pub fn feed(&mut self, block: &[u8]) {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', block) {
            self.line(&block[start..nl]);
            start = nl + 1;
        }
        if start < block.len() {
            self.line(&block[start..]);
        }
    }

    /// Lines fed so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// One line, without its `\n`.
    pub fn line(&mut self, line: &[u8]) {
        self.lines += 1;
        match line.first() {
            None => return self.end_of_sample(),
            Some(b'#') => return,
            _ => {}
        }
        if let Some(h) = match_header(line) {
            self.header(line, h.comm, h.pid, h.tid);
        } else if let Some(f) = match_frame(line) {
            if self.has_pname {
                self.frame(f.pc, f.func, f.module);
            }
        } else {
            self.unrecognized_count += 1;
            if self.unrecognized.len() < KEPT_UNRECOGNIZED {
                let text = &line[..line.len().min(200)];
                self.unrecognized.push(Unrecognized {
                    line: self.lines,
                    text: text.escape_ascii().to_string(),
                });
            }
        }
    }

    fn end_of_sample(&mut self) {
        if !self.has_pname {
            return;
        }
        self.key.clear();
        self.key.extend_from_slice(&self.pname);
        for &(s, e) in self.groups.iter().rev() {
            self.key.push(b';');
            self.key
                .extend_from_slice(&self.frames[s as usize..e as usize]);
        }
        match self.map.get_mut(self.key.as_slice()) {
            Some(c) => c.add(self.period),
            None => {
                let mut c = Count::Int(0);
                c.add(self.period);
                self.map.insert(self.key.as_slice().into(), c);
            }
        }
        self.frames.clear();
        self.groups.clear();
        self.has_pname = false;
    }

    fn header(&mut self, line: &[u8], comm: &[u8], pid: &[u8], tid: Option<&[u8]>) {
        let (pid, tid): (&[u8], &[u8]) = match tid {
            Some(t) if t != b"0" => (pid, t),
            _ => (b"?", pid),
        };
        let mut period: &[u8] = b"";
        if let Some(ev) = match_event(line) {
            period = ev.period.unwrap_or(b"");
            match &self.filter {
                None => {
                    self.filter = Some(ev.event.to_vec());
                    self.filter_defaulted = true;
                }
                Some(f) if f.as_slice() != ev.event => {
                    self.dropped_other_events = true;
                    return;
                }
                Some(_) => {}
            }
        }
        self.period = if period.is_empty() || period == b"0" {
            Count::Int(1)
        } else {
            Count::from_digits(period)
        };
        self.pname.clear();
        self.pname.extend_from_slice(comm);
        if self.opts.tid {
            self.pname.push(b'-');
            self.pname.extend_from_slice(pid);
            self.pname.push(b'/');
            self.pname.extend_from_slice(tid);
        } else if self.opts.pid {
            self.pname.push(b'-');
            self.pname.extend_from_slice(pid);
        }
        for b in self.pname.iter_mut() {
            if *b == b' ' {
                *b = b'_';
            }
        }
        self.has_pname = true;
    }

    fn frame(&mut self, pc: &[u8], rawfunc: &[u8], module: &[u8]) {
        let rawfunc = strip_offset(rawfunc);
        // `(...)` is skipped; an empty symbol (only an offset) splits into no frames.
        if rawfunc.first() == Some(&b'(') || rawfunc.is_empty() {
            return;
        }
        // Fast path, most frames: nothing to split or tidy, not an unknown frame, no
        // annotation to check for.
        let plain = memchr::memchr3(b'-', b'(', b';', rawfunc).is_none()
            && memchr::memchr2(b'"', b'\'', rawfunc).is_none()
            && rawfunc != b"[unknown]";
        let annotate = self.opts.kernel || self.opts.jit;
        let java_l = rawfunc.first() == Some(&b'L') && self.pname.starts_with(b"java");
        if plain && !annotate && !java_l {
            let start = self.frames.len();
            self.frames.extend_from_slice(rawfunc);
            self.groups.push((start as u32, self.frames.len() as u32));
            return;
        }
        // split /->/ drops trailing empty fields.
        let mut rest = rawfunc;
        while let Some(stripped) = rest.strip_suffix(b"->") {
            rest = stripped;
        }
        if rest.is_empty() {
            return;
        }
        let start = self.frames.len();
        let mut first = true;
        let java = self.pname.starts_with(b"java");
        loop {
            let (piece, next) = match find(rest, b"->") {
                Some(i) => (&rest[..i], Some(&rest[i + 2..])),
                None => (rest, None),
            };
            if !first {
                self.frames.push(b';');
            }
            self.push_func(piece, pc, module, first, java);
            first = false;
            match next {
                Some(n) => rest = n,
                None => break,
            }
        }
        self.groups.push((start as u32, self.frames.len() as u32));
    }

    fn push_func(&mut self, piece: &[u8], pc: &[u8], module: &[u8], first: bool, java: bool) {
        let func: &[u8] = if piece == b"[unknown]" {
            let base: &[u8] = if module != b"[unknown]" {
                match memchr::memrchr(b'/', module) {
                    Some(i) => &module[i + 1..],
                    None => module,
                }
            } else {
                b"unknown"
            };
            self.scratch.clear();
            self.scratch.push(b'[');
            self.scratch.extend_from_slice(base);
            if self.opts.addrs {
                self.scratch.extend_from_slice(b" <");
                self.scratch.extend_from_slice(pc);
                self.scratch.push(b'>');
            }
            self.scratch.push(b']');
            &self.scratch
        } else {
            piece
        };
        // $tidy_generic: ';' -> ':', cut at the first '(' (unless a Go method or an
        // "(anonymous namespace)"), delete quotes.
        let cut = if is_go_method(func) {
            func.len()
        } else {
            tidy_cut(func)
        };
        let at = self.frames.len();
        let kept = &func[..cut];
        if kept.iter().any(|&b| matches!(b, b';' | b'"' | b'\'')) {
            for &b in kept {
                match b {
                    b';' => self.frames.push(b':'),
                    b'"' | b'\'' => {}
                    _ => self.frames.push(b),
                }
            }
        } else {
            self.frames.extend_from_slice(kept);
        }
        // $tidy_java
        if java {
            let f = &self.frames[at..];
            if f.first() == Some(&b'L') && f.contains(&b'/') {
                self.frames.remove(at);
            }
        }
        // Annotations.
        let f = &self.frames[at..];
        if !first {
            if find(f, b"_[i]").is_none() {
                self.frames.extend_from_slice(b"_[i]");
            }
        } else if self.opts.kernel
            && (module.first() == Some(&b'[') || module.ends_with(b"vmlinux"))
            && find(module, b"unknown").is_none()
        {
            self.frames.extend_from_slice(b"_[k]");
        } else if self.opts.jit && is_perf_map(module) && find(f, b"_[j]").is_none() {
            self.frames.extend_from_slice(b"_[j]");
        }
    }

    /// Uses `event` as the event filter if none is set yet: in a parallel run the first
    /// event of the whole input is found by the reader, not by every worker.
    pub(crate) fn default_filter(&mut self, event: &[u8]) {
        if self.filter.is_none() {
            self.filter = Some(event.to_vec());
            self.filter_defaulted = true;
        }
    }

    /// Adds another collapser's results to this one (for parallel runs); line numbers of
    /// unrecognised lines must already be global in both.
    pub(crate) fn absorb(&mut self, other: Collapser) {
        let (small, big) = if other.map.len() > self.map.len() {
            (std::mem::replace(&mut self.map, other.map), &mut self.map)
        } else {
            (other.map, &mut self.map)
        };
        for (k, v) in small {
            big.entry(k).or_default().add(v);
        }
        self.unrecognized.extend(other.unrecognized);
        self.unrecognized.sort_by_key(|u| u.line);
        self.unrecognized.truncate(KEPT_UNRECOGNIZED);
        self.unrecognized_count += other.unrecognized_count;
        self.dropped_other_events |= other.dropped_other_events;
        self.filter_defaulted |= other.filter_defaulted;
        if self.filter.is_none() {
            self.filter = other.filter;
        }
        self.lines += other.lines;
    }

    /// Rewrites the line numbers of kept unrecognised lines (for parallel runs).
    pub(crate) fn renumber(&mut self, f: impl Fn(u64) -> u64) {
        for u in &mut self.unrecognized {
            u.line = f(u.line);
        }
    }

    /// The folded stacks, sorted, and what was skipped.
    pub fn finish(self) -> Collapsed {
        let mut stacks: Vec<(Vec<u8>, Count)> = self
            .map
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v))
            .collect();
        stacks.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Collapsed {
            stacks,
            unrecognized: self.unrecognized,
            unrecognized_count: self.unrecognized_count,
            filtered_for: if self.dropped_other_events && self.filter_defaulted {
                self.filter
            } else {
                None
            },
            lines: self.lines,
        }
    }
}

/// Substring search for the short strings of one frame (building a SIMD searcher per call
/// costs more than it saves here).
#[inline]
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if hay[i] == first && hay[i..].starts_with(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// `m/\.\(.*\)\./`: a Go method such as `net/http.(*Client).Do`.
fn is_go_method(func: &[u8]) -> bool {
    match find(func, b".(") {
        Some(i) => find(&func[i + 2..], b").").is_some(),
        None => false,
    }
}

/// Where `s/\((?!anonymous namespace\)).*//` cuts: the first `(` not opening
/// `(anonymous namespace)`.
fn tidy_cut(func: &[u8]) -> usize {
    for (at, &b) in func.iter().enumerate() {
        if b == b'(' && !func[at + 1..].starts_with(b"anonymous namespace)") {
            return at;
        }
    }
    func.len()
}

/// `m:/tmp/perf-\d+\.map:`
fn is_perf_map(module: &[u8]) -> bool {
    let mut from = 0;
    while let Some(i) = find(&module[from..], b"/tmp/perf-") {
        let rest = &module[from + i + 10..];
        let d = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if d > 0 && rest[d..].starts_with(b".map") {
            return true;
        }
        from += i + 1;
    }
    false
}

/// The event of the first sample header in `block` that names one: the event the reference
/// script keeps when no filter is given.
pub(crate) fn first_event(block: &[u8]) -> Option<&[u8]> {
    block
        .split(|&b| b == b'\n')
        .filter(|l| l.first().is_some_and(|&b| b != b'#'))
        .filter(|l| match_header(l).is_some())
        .find_map(|l| match_event(l).map(|e| e.event))
}

/// Size of the blocks handed to workers.
pub const BLOCK: usize = 4 << 20;

/// Collapses everything `reader` yields. `threads` > 1 parses blocks in parallel.
pub fn collapse_reader<R: Read>(
    reader: R,
    opts: &Options,
    threads: usize,
) -> Result<Collapsed, Error> {
    collapse_reader_blocks(reader, opts, threads, BLOCK)
}

/// [`collapse_reader`] with a chosen block size (tests use tiny blocks to cut everywhere).
pub fn collapse_reader_blocks<R: Read>(
    reader: R,
    opts: &Options,
    threads: usize,
    block: usize,
) -> Result<Collapsed, Error> {
    let block = block.max(16);
    if threads <= 1 {
        let mut c = Collapser::new(opts.clone());
        for_each_block(reader, block, |b, _| {
            c.feed(b);
        })?;
        return Ok(c.finish());
    }
    crate::parallel::collapse_parallel(reader, opts, threads, block)
}

/// Reads `reader` in blocks of whole lines, calling `f(block, offset)`; a line longer than a
/// block grows the buffer. Reads append to spare capacity (`Read::take` + `read_to_end`), so
/// buffers are never zero-filled.
pub(crate) fn for_each_block<R: Read>(
    mut reader: R,
    block: usize,
    mut f: impl FnMut(&[u8], u64),
) -> Result<(), Error> {
    let mut buf: Vec<u8> = Vec::with_capacity(block);
    let mut offset = 0u64;
    loop {
        let want = if buf.len() < block {
            block - buf.len()
        } else {
            buf.len()
        };
        let n = fill(&mut reader, &mut buf, want, offset)?;
        if n == 0 {
            if !buf.is_empty() {
                f(&buf, offset);
            }
            return Ok(());
        }
        if let Some(nl) = memchr::memrchr(b'\n', &buf) {
            f(&buf[..=nl], offset);
            offset += (nl + 1) as u64;
            buf.drain(..=nl);
        }
    }
}

/// Appends up to `want` bytes from `reader` to `buf` (fewer only at the end of the input).
pub(crate) fn fill<R: Read>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    want: usize,
    offset: u64,
) -> Result<usize, Error> {
    let before = buf.len();
    Read::take(&mut *reader, want as u64)
        .read_to_end(buf)
        .map_err(|source| Error::Read {
            offset: offset + buf.len() as u64,
            source,
        })?;
    Ok(buf.len() - before)
}
