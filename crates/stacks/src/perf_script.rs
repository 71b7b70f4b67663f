//! Line matchers for `perf script` text, with exactly the semantics of the regular expressions
//! in FlameGraph's `stackcollapse-perf.pl` (Perl, byte strings: `\s` is `[\t\n\x0B\x0C\r ]`,
//! `\d` is `[0-9]`, `\w` is `[A-Za-z0-9_]`), written as direct byte scans.
//!
//! Each matcher documents the pattern it implements and why the scan finds the same match a
//! backtracking engine would; `tests/` checks them against a regex engine with proptest.

const SPACE: u8 = 1;
const WORD: u8 = 2;

/// Byte classes, one table lookup per byte in the hot loops.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            t[i] = SPACE;
        }
        if b.is_ascii_alphanumeric() || b == b'_' {
            t[i] = WORD;
        }
        i += 1;
    }
    t
};

/// Perl's `\s` on a byte string.
#[inline]
pub fn is_space(b: u8) -> bool {
    CLASS[b as usize] == SPACE
}

/// Perl's `\w` on a byte string.
#[inline]
pub fn is_word(b: u8) -> bool {
    CLASS[b as usize] == WORD
}

#[inline]
fn run_end(line: &[u8], mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
    while i < line.len() && pred(line[i]) {
        i += 1;
    }
    i
}

/// The start of a sample: `^(\S.+?)\s+(\d+)\/*(\d+)*\s+`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The command name (at least two bytes; may contain spaces).
    pub comm: &'a [u8],
    /// The first number after it (the TID, or the PID when a TID follows).
    pub pid: &'a [u8],
    /// The number after `/`, if any.
    pub tid: Option<&'a [u8]>,
}

/// Matches `^(\S.+?)\s+(\d+)\/*(\d+)*\s+`.
///
/// The lazy `.+?` makes the command end at the first position `e >= 2` where the rest
/// matches. At such a position the whitespace run, the digit runs and the slash run are all
/// taken whole (taking less leaves a digit or slash where whitespace is needed), so one
/// greedy scan per candidate decides it, and all candidates inside one whitespace run share
/// the same outcome.
pub fn match_header(line: &[u8]) -> Option<Header<'_>> {
    if line.len() < 4 || is_space(line[0]) {
        return None;
    }
    let mut e = 2;
    loop {
        // Next whitespace at or after e.
        e += line.get(e..)?.iter().position(|&b| is_space(b))?;
        let ws_end = run_end(line, e, is_space);
        let d1_end = run_end(line, ws_end, |b| b.is_ascii_digit());
        if d1_end > ws_end {
            let sl_end = run_end(line, d1_end, |b| b == b'/');
            let d2_end = run_end(line, sl_end, |b| b.is_ascii_digit());
            if d2_end < line.len() && is_space(line[d2_end]) {
                return Some(Header {
                    comm: &line[..e],
                    pid: &line[ws_end..d1_end],
                    tid: (d2_end > sl_end).then(|| &line[sl_end..d2_end]),
                });
            }
        }
        e = ws_end;
    }
}

/// The period and event name of a sample header: `:\s*(\d+)*\s+(\S+):\s*$`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventField<'a> {
    /// The digits before the event name (the period), if any.
    pub period: Option<&'a [u8]>,
    /// The event name without its final colon.
    pub event: &'a [u8],
}

/// Matches `:\s*(\d+)*\s+(\S+):\s*$`.
///
/// `(\S+):\s*$` can only be the line's last whitespace-separated token ending in `:`, and the
/// `\s+` before it must end where that token starts; between the `:` and the token there are
/// only whitespace and digits, so the `:` is the one just before that stretch and the match
/// is unique. The scan walks backwards from the end.
pub fn match_event(line: &[u8]) -> Option<EventField<'_>> {
    let end = line.iter().rposition(|&b| !is_space(b))? + 1; // trailing \s*
    if line[end - 1] != b':' {
        return None;
    }
    let tok_start = line[..end].iter().rposition(|&b| is_space(b))? + 1;
    if tok_start + 1 >= end {
        return None; // (\S+) needs at least one byte before the colon
    }
    let event = &line[tok_start..end - 1];
    // \s+ before the token (non-empty: line[tok_start - 1] is whitespace).
    let mut i = tok_start;
    while i > 0 && is_space(line[i - 1]) {
        i -= 1;
    }
    let digits_end = i;
    while i > 0 && line[i - 1].is_ascii_digit() {
        i -= 1;
    }
    let digits = &line[i..digits_end];
    if !digits.is_empty() {
        // \s* between the colon and the digits.
        while i > 0 && is_space(line[i - 1]) {
            i -= 1;
        }
    }
    if i == 0 || line[i - 1] != b':' {
        return None;
    }
    Some(EventField {
        period: (!digits.is_empty()).then_some(digits),
        event,
    })
}

/// One stack line: `^\s*(\w+)\s*(.+) \((.*)\)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The address (`\w+`).
    pub pc: &'a [u8],
    /// The symbol, possibly with `+0x..` offset and `->` inline chains.
    pub func: &'a [u8],
    /// The text between the last ` (` that has a `)` after it and the last `)`.
    pub module: &'a [u8],
}

/// Matches `^\s*(\w+)\s*(.+) \((.*)\)`.
///
/// With `R` the last `)` and `Q` the last ` (` ending before `R`, greedy `(.+)` and `(.*)`
/// end at `Q` and `R` whatever `(.+)` starts at. Backtracking tries starts `s` from the end
/// of `\w+\s*` downwards (first shortening `\s*`, then `\w+`), and the first that leaves
/// `(.+)` non-empty (`s < Q`) wins.
pub fn match_frame(line: &[u8]) -> Option<Frame<'_>> {
    let a = run_end(line, 0, is_space);
    let b = run_end(line, a, is_word);
    if b == a {
        return None;
    }
    let c = run_end(line, b, is_space);
    // In perf script the `)` is the last byte.
    let r = if line.last() == Some(&b')') {
        line.len() - 1
    } else {
        memchr::memrchr(b')', line)?
    };
    // Last " (" with its "(" before r.
    let mut open = r;
    let q = loop {
        open = memchr::memrchr(b'(', &line[..open])?;
        if open >= 1 && line[open - 1] == b' ' {
            break open - 1;
        }
    };
    if q < a + 2 {
        return None; // needs s >= a + 1 and s < q
    }
    let s = c.min(q - 1);
    Some(Frame {
        pc: &line[a..b.min(s)],
        func: &line[s..q],
        module: &line[q + 2..r],
    })
}

/// `s/\+0x[\da-f]+$//`: drops a trailing `+0x<lowercase hex>` offset.
#[inline]
pub fn strip_offset(func: &[u8]) -> &[u8] {
    let mut h = func.len();
    while h > 0 && matches!(func[h - 1], b'0'..=b'9' | b'a'..=b'f') {
        h -= 1;
    }
    if h < func.len() && h >= 3 && &func[h - 3..h] == b"+0x" {
        &func[..h - 3]
    } else {
        func
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        let h = match_header(b"swapper     0 [000] 158665.570607: cpu-clock:").unwrap();
        assert_eq!((h.comm, h.pid, h.tid), (&b"swapper"[..], &b"0"[..], None));
        let h =
            match_header(b"V8 WorkerThread 24636/25607 [000] 94564.109216: 100 cycles:").unwrap();
        assert_eq!(h.comm, b"V8 WorkerThread");
        assert_eq!(h.tid, Some(&b"25607"[..]));
        let h = match_header(b"a  1 x").unwrap();
        assert_eq!(h.comm, b"a ");
        assert!(match_header(b"\tffffffff8103ce3b native_safe_halt ([kernel.kallsyms])").is_none());
    }

    #[test]
    fn event_forms() {
        let e = match_event(b"java 12688 [002] 6544038.708352: 235 cpu-clock:").unwrap();
        assert_eq!((e.period, e.event), (Some(&b"235"[..]), &b"cpu-clock"[..]));
        let e = match_event(b"swapper     0 [000] 158665.570607: cpu-clock: \r").unwrap();
        assert_eq!((e.period, e.event), (None, &b"cpu-clock"[..]));
        assert!(match_event(b"x 1 [0] 1.0: 1 sched:sched_switch: prev_comm=a").is_none());
    }

    #[test]
    fn frame_forms() {
        let f = match_frame(b"\t    ffffffff8103ce3b native_safe_halt+0x1b ([kernel.kallsyms])")
            .unwrap();
        assert_eq!(f.pc, b"ffffffff8103ce3b");
        assert_eq!(f.func, b"native_safe_halt+0x1b");
        assert_eq!(f.module, b"[kernel.kallsyms]");
        let f = match_frame(b"\tabc (x)").unwrap();
        assert_eq!((f.pc, f.func, f.module), (&b"ab"[..], &b"c"[..], &b"x"[..]));
        assert_eq!(strip_offset(b"foo+0xab+0x1f"), b"foo+0xab");
        assert_eq!(strip_offset(b"foo+0x0x1f"), b"foo+0x0x1f");
    }
}
