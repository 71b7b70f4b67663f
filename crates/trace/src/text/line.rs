//! One line of text trace output, split into its common columns.
//!
//! Accepted shapes (detected per line, so concatenated files of different tools work):
//! - ftrace `trace` / `trace_pipe`: `comm-tid [cpu] flags ts: name: fields`, with or without
//!   the irqs-off/preempt flags column and with or without `(tgid)` after the task;
//! - `trace-cmd report`: the same, with padding after the name;
//! - `perf script` of tracepoints: `comm tid [cpu] ts: sys:name: fields`, or `comm pid/tid`.

use crate::bytes::{find_any, find_blank, find_byte};
use crate::fields::{trim_end_blank, trim_start_blank};

/// The common columns of a text event line, borrowing from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub comm: &'a str,
    pub tid: u32,
    pub tgid: Option<u32>,
    pub cpu: u32,
    pub ts_ns: u64,
    pub system: &'a str,
    pub name: &'a str,
    pub payload: &'a str,
}

/// An event line's columns with the task column not yet split into comm, tid and tgid (the
/// text pipeline leaves that to the thread that runs the analyses; [`EventColumns::header`] does it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventColumns<'a> {
    pub task: &'a str,
    pub cpu: u32,
    pub ts_ns: u64,
    pub system: &'a str,
    pub name: &'a str,
    pub payload: &'a str,
}

impl<'a> EventColumns<'a> {
    /// The header, with the task column split.
    #[inline(always)]
    pub fn header(&self) -> Header<'a> {
        let (comm, tid, tgid) = match parse_task(self.task) {
            Some(t) => t,
            None => {
                let comm = trim_start_blank(trim_end_blank(self.task));
                (comm, synthetic_tid(comm), None)
            }
        };
        Header {
            comm,
            tid,
            tgid,
            cpu: self.cpu,
            ts_ns: self.ts_ns,
            system: self.system,
            name: self.name,
            payload: self.payload,
        }
    }
}

/// What a line turned out to be.
pub type Line<'a> = LineOf<Header<'a>>;

/// What a line turned out to be, `E` being how an event line is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOf<E> {
    Event(E),
    /// Blank, `#` comment, or a known non-event line (`cpus=2`, `version = 6`, buffer banners).
    Meta,
    /// ftrace's `# entries-in-buffer/entries-written: A/B` header: B - A events were
    /// overwritten before they were read.
    EntriesHeader {
        in_buffer: u64,
        written: u64,
    },
    /// `CPU:N [LOST M EVENTS]`.
    Lost {
        cpu: u32,
        count: u64,
    },
    /// Not a trace line.
    Unknown,
}

pub fn parse(line: &str) -> Line<'_> {
    match parse_columns(line) {
        LineOf::Event(c) => LineOf::Event(c.header()),
        LineOf::Meta => LineOf::Meta,
        LineOf::EntriesHeader { in_buffer, written } => {
            LineOf::EntriesHeader { in_buffer, written }
        }
        LineOf::Lost { cpu, count } => LineOf::Lost { cpu, count },
        LineOf::Unknown => LineOf::Unknown,
    }
}

/// [`parse`], leaving the task column of an event line whole.
#[inline]
pub fn parse_columns(line: &str) -> LineOf<EventColumns<'_>> {
    let s = trim_start_blank(line);
    let Some(&first) = s.as_bytes().first() else {
        return LineOf::Meta;
    };
    if first == b'#' {
        return parse_comment(s);
    }
    match parse_event(s) {
        Some(h) => LineOf::Event(h),
        None => parse_other(s),
    }
}

fn parse_comment<E>(s: &str) -> LineOf<E> {
    if let Some(rest) = s.strip_prefix("# entries-in-buffer/entries-written:") {
        let nums = rest.trim_start();
        let end = nums.find(|c: char| c.is_whitespace()).unwrap_or(nums.len());
        if let Some((a, b)) = nums[..end].split_once('/') {
            if let (Ok(in_buffer), Ok(written)) = (a.parse(), b.parse()) {
                return LineOf::EntriesHeader { in_buffer, written };
            }
        }
    }
    LineOf::Meta
}

fn parse_other<E>(s: &str) -> LineOf<E> {
    // `CPU:1 [LOST 12 EVENTS]` (trace_pipe, trace-cmd report)
    if let Some(rest) = s.strip_prefix("CPU:") {
        if let Some((cpu, rest)) = rest.split_once(' ') {
            if let Some(n) = rest
                .strip_prefix("[LOST ")
                .and_then(|r| r.strip_suffix(" EVENTS]"))
            {
                if let (Ok(cpu), Ok(count)) = (cpu.parse(), n.parse()) {
                    return LineOf::Lost { cpu, count };
                }
            }
        }
    }
    if s.starts_with("cpus=")
        || s.starts_with("version = ")
        || s.starts_with("##### CPU ")
        || (s.starts_with("CPU ") && s.ends_with(" is empty"))
        || s.starts_with("trace-cmd: ")
    {
        return LineOf::Meta;
    }
    LineOf::Unknown
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Finds the `[cpu]` column: the first `[` followed by digits and `]`.
fn cpu_column(s: &str) -> Option<(usize, usize, u32)> {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(off) = memchr::memchr(b'[', &bytes[from..]) {
        let open = from + off;
        let mut i = open + 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i > open + 1 && i < bytes.len() && bytes[i] == b']' {
            let cpu = s[open + 1..i].parse().ok()?;
            return Some((open, i + 1, cpu));
        }
        from = open + 1;
    }
    None
}

/// The task column: `comm-tid` (ftrace) or `comm tid` (perf script), each optionally followed
/// by `(tgid)`. Fast path for those shapes in one backward walk; anything else takes
/// [`parse_task_general`], which gives the same answer on every column this accepts
/// (`tests/never_panics.rs` checks it).
#[inline(always)]
fn parse_task(task: &str) -> Option<(&str, u32, Option<u32>)> {
    match parse_task_fast(task) {
        Some(found) => found,
        None => parse_task_general(task),
    }
}

/// `b[start..end]` as a number, when it is 1 to 9 digits and nothing else.
#[inline(always)]
fn small_number(b: &[u8], start: usize, end: usize) -> Option<u32> {
    let d = &b[start..end];
    if d.is_empty() || d.len() > 9 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits_value(b, start, end) as u32)
}

/// Eight ASCII digits in a word (byte `i` the `i`-th digit from the left) as a number: pairs,
/// then quads, then the eight, with no loop-carried multiply per digit.
#[inline(always)]
fn parse8(w: u64) -> u64 {
    let v = w.wrapping_sub(0x3030_3030_3030_3030);
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let lo = (v & 0x0000_00ff_0000_00ff).wrapping_mul(100 + (1_000_000 << 32));
    let hi = ((v >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(1 + (10_000 << 32));
    lo.wrapping_add(hi) >> 32
}

/// The value of the 1 to 8 ASCII digits `b[start..end]` (checked by the caller). Reads the
/// word that ends at `end` from the line itself where there is one (no copy to the stack,
/// whose narrow stores a wide load cannot forward from).
#[inline(always)]
fn digits8(b: &[u8], start: usize, end: usize) -> u64 {
    let n = end - start;
    if end >= 8 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[end - 8..end]);
        let w = u64::from_le_bytes(w);
        // The digits are the word's high bytes: put '0's in the low bytes before them.
        let low = (1u64 << (8 * (8 - n) as u32)) - 1;
        let w = (w & !low) | (0x3030_3030_3030_3030 & low);
        parse8(w)
    } else {
        b[start..end]
            .iter()
            .fold(0u64, |v, &c| v * 10 + u64::from(c - b'0'))
    }
}

/// The value of the at most 19 ASCII digits `b[start..end]` (checked by the caller).
#[inline(always)]
fn digits_value(b: &[u8], start: usize, end: usize) -> u64 {
    if end - start <= 8 {
        return digits8(b, start, end);
    }
    let first = (end - start - 1) % 8 + 1;
    let mut v = digits8(b, start, start + first);
    let mut at = start + first;
    while at < end {
        v = v * 100_000_000 + digits8(b, at, at + 8);
        at += 8;
    }
    v
}

/// `Some(answer)` where the usual shapes settle it, `None` to take the general parser.
#[inline(always)]
fn parse_task_fast(task: &str) -> Option<Option<(&str, u32, Option<u32>)>> {
    let blank = |c: u8| c == b' ' || c == b'\t';
    let b = task.as_bytes();
    // Trailing blanks: ftrace pads the tid.
    let mut end = trim_end_blank(task).len();
    let mut tgid = None;
    if end > 0 && b[end - 1] == b')' {
        let open = b[..end - 1].iter().rposition(|&c| c == b'(')?;
        let inner = &b[open + 1..end - 1];
        let lo = inner.iter().position(|&c| c != b' ').unwrap_or(inner.len());
        let hi = inner.iter().rposition(|&c| c != b' ').map_or(lo, |i| i + 1);
        if let Some(n) = small_number(b, open + 1 + lo, open + 1 + hi) {
            tgid = Some(n);
        } else if lo == hi || !inner[lo..hi].iter().all(|&c| c == b'-') {
            return None;
        }
        end = open;
        while end > 0 && blank(b[end - 1]) {
            end -= 1;
        }
    }
    // Trailing digits: the tid, its value summed as they are read from the right.
    const POW10: [u32; 9] = [
        1,
        10,
        100,
        1_000,
        10_000,
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
    ];
    let mut p = end;
    let mut tid = 0u32;
    while let Some(d) = p
        .checked_sub(1)
        .map(|q| b[q].wrapping_sub(b'0'))
        .filter(|&d| d < 10)
    {
        let k = end - p;
        if k == POW10.len() {
            return None;
        }
        tid += u32::from(d) * POW10[k];
        p -= 1;
    }
    if p == 0 || p == end {
        return None;
    }
    match b[p - 1] {
        // ftrace `comm-tid`: the last dash (only digits follow it).
        b'-' => Some(Some((&task[..p - 1], tid, tgid))),
        // perf script `comm tid`
        b' ' | b'\t' => Some(Some((trim_end_blank(&task[..p]), tid, tgid))),
        _ => None,
    }
}

/// The task column, general search, for the property test against [`parse_task`]'s fast path.
#[doc(hidden)]
pub fn parse_task_both(task: &str) -> (Option<Task<'_>>, Task<'_>) {
    (parse_task_fast(task), parse_task_general(task))
}

/// Comm, tid, tgid.
#[doc(hidden)]
pub type Task<'a> = Option<(&'a str, u32, Option<u32>)>;

#[inline(never)]
fn parse_task_general(task: &str) -> Option<(&str, u32, Option<u32>)> {
    let mut task = trim_end_blank(task);
    let mut tgid = None;
    if task.ends_with(')') {
        let open = memchr::memrchr(b'(', task.as_bytes())?;
        let inner = task[open + 1..task.len() - 1].trim();
        tgid = inner.parse().ok(); // `-------` when unknown
        task = trim_end_blank(&task[..open]);
    }
    let last_start = memchr::memrchr2(b' ', b'\t', task.as_bytes()).map_or(0, |i| i + 1);
    let last = &task[last_start..];
    // perf script: `comm tid` or `comm pid/tid`
    if last_start > 0 {
        if all_digits(last) {
            return Some((
                trim_end_blank(&task[..last_start]),
                last.parse().ok()?,
                tgid,
            ));
        }
        if let Some((pid, tid)) = last.split_once('/') {
            if all_digits(pid) && all_digits(tid) {
                return Some((
                    task[..last_start].trim_end(),
                    tid.parse().ok()?,
                    pid.parse().ok(),
                ));
            }
        }
    }
    // ftrace: `comm-tid`, comm may contain spaces and dashes
    let dash = memchr::memrchr(b'-', task.as_bytes())?;
    let tid = &task[dash + 1..];
    if !all_digits(tid) {
        return None;
    }
    Some((&task[..dash], tid.parse().ok()?, tgid))
}

/// Parses `secs.frac` (any number of decimals up to 9) or a bare integer into nanoseconds.
pub fn parse_ts(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let dot = memchr::memchr(b'.', b);
    let (secs, frac) = match dot {
        Some(d) => (&b[..d], &b[d + 1..]),
        None => (b, &b[b.len()..]),
    };
    if secs.is_empty() || secs.len() > 19 || frac.len() > 9 || (dot.is_some() && frac.is_empty()) {
        return None;
    }
    let digits = |d: &[u8]| -> Option<u64> {
        d.iter().try_fold(0u64, |v, &c| {
            c.is_ascii_digit()
                .then(|| v.wrapping_mul(10) + u64::from(c - b'0'))
        })
    };
    let whole = digits(secs)?;
    if dot.is_none() {
        return Some(whole);
    }
    let mut f = digits(frac)?;
    for _ in frac.len()..9 {
        f *= 10;
    }
    whole.checked_mul(1_000_000_000)?.checked_add(f)
}

/// The strings [`parse`] may put in a [`Header`] that are not slices of the line.
pub const CONSTANTS: &[&str] = &["", FUNCTION_SYSTEM, FUNCTION_NAME];
const FUNCTION_SYSTEM: &str = "ftrace";
const FUNCTION_NAME: &str = "function";

/// The CPU column was not printed.
pub const CPU_UNKNOWN: u32 = u32::MAX;
/// Thread ids at or above this were made up for lines that print no thread id (a `perf script`
/// with the comm only, or no task column at all): one per comm, so that pairing per thread
/// still separates different tasks.
pub const SYNTHETIC_TID_BASE: u32 = 0x8000_0000;

fn synthetic_tid(comm: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in comm.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    SYNTHETIC_TID_BASE | (h & 0x7fff_ffff)
}

/// Finds the timestamp token (`123.456789:` followed by a blank) that ends the common columns:
/// returns its start, its end (after the colon), and the time.
fn timestamp_token(s: &str) -> Option<(usize, usize, u64)> {
    let b = s.as_bytes();
    for colon in memchr::memchr_iter(b':', b) {
        if !matches!(b.get(colon + 1), None | Some(b' ' | b'\t')) {
            continue;
        }
        let mut start = colon;
        while start > 0 && (b[start - 1].is_ascii_digit() || b[start - 1] == b'.') {
            start -= 1;
        }
        if start == colon || !b[start].is_ascii_digit() {
            continue;
        }
        if start > 0 && !matches!(b[start - 1], b' ' | b'\t') {
            continue;
        }
        if let Some(ts) = parse_ts(&s[start..colon]) {
            return Some((start, colon + 1, ts));
        }
    }
    None
}

/// `trace-cmd report` on a trace.dat with several buffers prints the buffer (instance) name
/// before the task: `kvmscope-rec-12:   qemu-77 [001] ...`. A first token ending in `:`
/// followed by the task column is that name.
#[inline(always)]
fn strip_instance(prefix: &str) -> &str {
    let b = prefix.as_bytes();
    let Some(sp) = find_byte(b, 0, b' ') else {
        return prefix;
    };
    let rest = trim_start_blank(&prefix[sp + 1..]);
    if sp > 1 && b[sp - 1] == b':' && !rest.is_empty() {
        rest
    } else {
        prefix
    }
}

/// The task column, the CPU and the timestamp token's end. Fast path: the `[cpu]` column
/// comes first and the timestamp right after it (ftrace, trace-cmd, perf script), so only the
/// few bytes after the column are searched for it; lines without a CPU column take the
/// general search.
#[inline(always)]
fn common_columns(s: &str) -> Option<(&str, u32, usize, u64)> {
    if let Some(found) = common_columns_fast(s) {
        return Some(found);
    }
    common_columns_general(s)
}

/// `10^(9 - n)`: scales `n` decimals to nanoseconds.
const POW10_FRAC: [u64; 10] = [
    1_000_000_000,
    100_000_000,
    10_000_000,
    1_000_000,
    100_000,
    10_000,
    1_000,
    100,
    10,
    1,
];

/// The usual shape in one forward walk: the first `[` opens the CPU column, then blanks, an
/// optional flags token (no `:` in it), blanks and the `secs.frac:` token. Anything else
/// returns `None` and takes [`common_columns_general`], which gives the same answer on every
/// line this accepts (`tests/never_panics.rs` checks it on arbitrary lines).
#[inline(always)]
fn common_columns_fast(s: &str) -> Option<(&str, u32, usize, u64)> {
    let b = s.as_bytes();
    // A task column without a colon has no instance name before it (see strip_instance).
    let first = find_any(b, 0, [b'[', b':'])?;
    let plain = b[first] == b'[';
    let open = if plain {
        first
    } else {
        find_byte(b, first + 1, b'[')?
    };
    // Numbers are summed as their digits are read (a few each: no word-wise parse; wrapping,
    // as too many digits are refused below).
    let digit = |j: usize| b.get(j).map(|c| c.wrapping_sub(b'0')).filter(|&d| d < 10);
    // The CPU.
    let mut i = open + 1;
    let mut cpu = 0u64;
    while let Some(d) = digit(i) {
        cpu = cpu.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    if i == open + 1 || b.get(i) != Some(&b']') {
        return None;
    }
    if i - open - 1 > 19 {
        return None;
    }
    let cpu = u32::try_from(cpu).ok()?;
    let close = i + 1;
    let blank = |c: u8| c == b' ' || c == b'\t';
    let mut j = close;
    while j < b.len() && blank(b[j]) {
        j += 1;
    }
    if j < b.len() && !b[j].is_ascii_digit() {
        // The flags column: one token without a colon, then blanks.
        if j == close {
            return None;
        }
        while j < b.len() && !blank(b[j]) {
            if b[j] == b':' {
                return None;
            }
            j += 1;
        }
        while j < b.len() && blank(b[j]) {
            j += 1;
        }
    }
    // The timestamp: digits and dots up to a colon followed by a blank or the end.
    let start = j;
    let mut secs = 0u64;
    while let Some(d) = digit(j) {
        secs = secs.wrapping_mul(10).wrapping_add(u64::from(d));
        j += 1;
    }
    let int_len = j - start;
    if int_len == 0 {
        return None;
    }
    let dot = b.get(j) == Some(&b'.');
    let frac_start = j + 1;
    let mut frac = 0u64;
    if dot {
        j += 1;
        while let Some(d) = digit(j) {
            frac = frac * 10 + u64::from(d);
            j += 1;
            if j - frac_start > 9 {
                return None;
            }
        }
    }
    let frac_len = if dot { j - frac_start } else { 0 };
    if b.get(j) != Some(&b':') || !matches!(b.get(j + 1), None | Some(b' ' | b'\t')) {
        return None;
    }
    if int_len > 19 || (dot && frac_len == 0) {
        return None;
    }
    let ts = if dot {
        secs.checked_mul(1_000_000_000)?
            .checked_add(frac * POW10_FRAC[frac_len])?
    } else {
        secs
    };
    let task = if plain {
        &s[..open]
    } else {
        strip_instance(&s[..open])
    };
    Some((task, cpu, j + 1, ts))
}

/// The fast and the general search for the common columns of one line (trimmed at the start),
/// for the property test that they agree wherever the fast one answers.
#[doc(hidden)]
pub fn common_columns_both(s: &str) -> (Columns<'_>, Columns<'_>) {
    (common_columns_fast(s), common_columns_general(s))
}

/// Task column, CPU, end of the timestamp token, time.
#[doc(hidden)]
pub type Columns<'a> = Option<(&'a str, u32, usize, u64)>;

#[inline(never)]
fn common_columns_general(s: &str) -> Option<(&str, u32, usize, u64)> {
    if let Some((open, close, cpu)) = cpu_column(s) {
        if let Some((_, end, ts)) = timestamp_token(&s[close..]) {
            return Some((strip_instance(&s[..open]), cpu, close + end, ts));
        }
    }
    let (start, end, ts) = timestamp_token(s)?;
    let prefix = strip_instance(&s[..start]);
    Some(match cpu_column(prefix) {
        Some((open, _, cpu)) => (&prefix[..open], cpu, end, ts),
        None => (prefix, CPU_UNKNOWN, end, ts),
    })
}

/// System, name and payload of what follows the timestamp (its blanks skipped). The name token
/// runs to the first blank and ends with a colon; a colon inside it ends the system
/// (`kvm:kvm_exit:`). One scan finds the first colon or blank: where that colon is followed by
/// a blank (`kvm_exit: `) it ends the token too. A line without such a token is a function
/// tracer line (`func <-parent`).
#[inline(always)]
fn name_columns(rest: &str) -> (&str, &str, &str) {
    let r = rest.as_bytes();
    let blank = |i: usize| matches!(r.get(i), None | Some(b' ' | b'\t'));
    let named = match find_any(r, 0, [b':', b' ', b'\t']) {
        Some(colon) if r[colon] == b':' => {
            let end = if blank(colon + 1) {
                colon + 1
            } else {
                find_blank(r, colon + 1).unwrap_or(r.len())
            };
            // `end` > `colon`: the token ends with a colon, or it is no event name.
            (r[end - 1] == b':').then(|| {
                let payload = trim_start_blank(&rest[end..]);
                if end - 1 == colon {
                    ("", &rest[..colon], payload)
                } else {
                    (&rest[..colon], &rest[colon + 1..end - 1], payload)
                }
            })
        }
        _ => None,
    };
    named.unwrap_or((FUNCTION_SYSTEM, FUNCTION_NAME, rest))
}

#[inline(always)]
fn parse_event(s: &str) -> Option<EventColumns<'_>> {
    let (task, cpu, ts_end, ts_ns) = common_columns(s)?;
    let rest = trim_start_blank(&s[ts_end..]);
    let (system, name, payload) = name_columns(rest);
    if name.is_empty() {
        return None;
    }
    Some(EventColumns {
        task,
        cpu,
        ts_ns,
        system,
        name,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(line: &str) -> Header<'_> {
        match parse(line) {
            Line::Event(h) => h,
            other => panic!("not an event: {other:?} <- {line}"),
        }
    }

    #[test]
    fn ftrace_with_flags() {
        let h = ev(
            "            bash-5387    [000] ...1.   254.875745: write_msr: 830, value 1000000fb",
        );
        assert_eq!(
            (h.comm, h.tid, h.cpu, h.ts_ns),
            ("bash", 5387, 0, 254_875_745_000)
        );
        assert_eq!(
            (h.system, h.name, h.payload),
            ("", "write_msr", "830, value 1000000fb")
        );
    }

    #[test]
    fn ftrace_without_flags_and_with_tgid() {
        let h = ev(" CPU 0/KVM-1234  [003]  1.000001: kvm_exit: reason HLT rip 0x1 info 0 0");
        assert_eq!((h.comm, h.tid, h.cpu), ("CPU 0/KVM", 1234, 3));
        let h = ev("  qemu-kvm-77 (   70) [001] d..2 5.5: kvm_entry: vcpu 0");
        assert_eq!((h.comm, h.tid, h.tgid), ("qemu-kvm", 77, Some(70)));
        let h = ev("  <idle>-0 (-------) [001] d.h1. 5.5: local_timer_entry: vector=236");
        assert_eq!((h.comm, h.tid, h.tgid), ("<idle>", 0, None));
    }

    #[test]
    fn perf_script() {
        let h = ev("qemu-system-x86 12345 [001]  1234.567890123:       kvm:kvm_exit: reason EPT_VIOLATION rip 0x1 info 181 0");
        assert_eq!(
            (h.comm, h.tid, h.system, h.name),
            ("qemu-system-x86", 12345, "kvm", "kvm_exit")
        );
        assert_eq!(h.ts_ns, 1_234_567_890_123);
        let h = ev("CPU 1/KVM 10/12 [000] 1.5: kvm:kvm_entry: vcpu 1");
        assert_eq!((h.comm, h.tid, h.tgid), ("CPU 1/KVM", 12, Some(10)));
    }

    #[test]
    fn lines_with_fewer_columns() {
        let h = ev(" 220.696238: kvm_msr: msr_write 830 = 0xb0000440b0");
        assert_eq!((h.comm, h.cpu, h.name), ("", CPU_UNKNOWN, "kvm_msr"));
        assert!(h.tid >= SYNTHETIC_TID_BASE);
        let h = ev("preempt_test 20530.456690:      kvm:kvm_exit: reason VMCALL rip 0x4131a0 info 0 0 intr 0");
        assert_eq!(
            (h.comm, h.system, h.name),
            ("preempt_test", "kvm", "kvm_exit")
        );
        assert_eq!(h.tid, synthetic_tid("preempt_test"));
        let h =
            ev("    [001]   770.850287:                      kvm:kvm_entry: vcpu 0, rip 0x100146");
        assert_eq!((h.comm, h.cpu, h.name), ("", 1, "kvm_entry"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("1.5"), Some(1_500_000_000));
        assert_eq!(parse_ts("12"), Some(12));
        assert_eq!(parse_ts("1."), None);
        assert_eq!(parse_ts("1.1234567890"), None);
        assert_eq!(parse_ts("99999999999999999999"), None);
        let h = ev("kworker/0:1-55 [000] .... 3.000001: x: y");
        assert_eq!((h.comm, h.tid, h.ts_ns), ("kworker/0:1", 55, 3_000_001_000));
    }

    #[test]
    fn trace_cmd_instance_prefix() {
        let h = ev("kvmscope-bench-4551:   kvmscope-vcpu0-5574  [001]  2918.984173: kvm_pio:              pio_write at 0x3f8 size 1 count 1 val 0x0 ");
        assert_eq!(
            (h.comm, h.tid, h.cpu, h.name),
            ("kvmscope-vcpu0", 5574, 1, "kvm_pio")
        );
        // A comm with a colon inside stays whole.
        let h = ev("kworker/0:1-55 [000] .... 3.000001: x: y");
        assert_eq!(h.comm, "kworker/0:1");
    }

    #[test]
    fn non_events() {
        assert_eq!(
            parse("CPU:1 [LOST 12 EVENTS]"),
            Line::Lost { cpu: 1, count: 12 }
        );
        assert_eq!(
            parse("# entries-in-buffer/entries-written: 547/600   #P:2"),
            Line::EntriesHeader {
                in_buffer: 547,
                written: 600
            }
        );
        assert_eq!(parse("cpus=2"), Line::Meta);
        assert_eq!(parse(""), Line::Meta);
        assert_eq!(parse("hello world"), Line::Unknown);
        assert_eq!(parse("x-1 [0] notatime: y: z"), Line::Unknown);
    }
}

#[cfg(test)]
mod number_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn digits_value_is_the_number(pad in "[ -~]{0,12}", digits in "[0-9]{1,19}", after in "[ -~]{0,3}") {
            let line = format!("{pad}{digits}{after}");
            let b = line.as_bytes();
            let got = digits_value(b, pad.len(), pad.len() + digits.len());
            prop_assert_eq!(got, digits.parse::<u64>().unwrap());
        }

        /// The one-scan split of the name token gives what splitting at the first blank, then
        /// at the first colon, gives.
        #[test]
        fn name_columns_equal_two_scans(rest in "[a-c: \t]{0,24}") {
            let rest = trim_start_blank(&rest);
            let name_end = find_blank(rest.as_bytes(), 0).unwrap_or(rest.len());
            let name_tok = &rest[..name_end];
            let payload = trim_start_blank(&rest[name_end..]);
            let want = match name_tok.strip_suffix(':') {
                Some(full) => match full.find(':') {
                    Some(c) => (&full[..c], &full[c + 1..], payload),
                    None => ("", full, payload),
                },
                None => (FUNCTION_SYSTEM, FUNCTION_NAME, rest),
            };
            prop_assert_eq!(name_columns(rest), want);
        }

        #[test]
        fn word_scans_equal_byte_scans(text in "[ \t\\[a-z:]{0,40}", from in 0usize..40) {
            let b = text.as_bytes();
            let from = from.min(b.len());
            prop_assert_eq!(find_blank(b, from), b[from..].iter().position(|&c| c == b' ' || c == b'\t').map(|p| from + p));
            prop_assert_eq!(trim_start_blank(&text), text.trim_start_matches([' ', '\t']));
        }
    }
}
