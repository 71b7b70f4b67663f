//! Folded stacks (`frame;frame;frame count` lines) as text, and telling them apart from
//! `perf script` output.

use crate::{Collapsed, Count, Error};

/// One folded stack: frames joined by `;` (first the process name), and its weight.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stack {
    /// `pname;outer;...;leaf`
    pub frames: String,
    /// Summed count or period.
    pub weight: u64,
}

/// What an input file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `stack count` lines.
    Folded,
    /// `perf script` text.
    PerfScript,
}

/// Decides from the start of an input: folded stacks if the first line that is not empty or
/// a comment ends in ` <number>` and is not a `perf script` sample header.
pub fn detect(head: &[u8]) -> InputKind {
    let mut lines = head
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b'#');
    let Some(line) = lines.next() else {
        return InputKind::PerfScript;
    };
    let next_is_frame = lines.next().is_some_and(|l| l[0] == b' ' || l[0] == b'\t');
    if line[0].is_ascii_whitespace() || next_is_frame {
        return InputKind::PerfScript;
    }
    match line.iter().rposition(|&b| b == b' ') {
        Some(i) if i > 0 && parse_weight(&line[i + 1..]).is_some() => InputKind::Folded,
        _ => InputKind::PerfScript,
    }
}

fn parse_weight(t: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(t).ok()?.trim_end_matches('\r');
    if let Ok(v) = s.parse::<u64>() {
        return Some(v);
    }
    let f = s.parse::<f64>().ok()?;
    (f.is_finite() && f >= 0.0).then(|| f.round() as u64)
}

/// Parses folded stack text; a line that is not `stack count` is an error naming its line.
pub fn parse(text: &[u8]) -> Result<Vec<Stack>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let bad = |reason: &'static str| Error::Folded {
            line: i as u64 + 1,
            reason,
        };
        let sp = line
            .iter()
            .rposition(|&b| b == b' ')
            .ok_or_else(|| bad("no space before the count"))?;
        let weight =
            parse_weight(&line[sp + 1..]).ok_or_else(|| bad("the count is not a number"))?;
        out.push(Stack {
            frames: String::from_utf8_lossy(&line[..sp]).into_owned(),
            weight,
        });
    }
    Ok(out)
}

/// Folded stacks from a collapse (counts that overflowed 64 bits saturate).
pub fn from_collapsed(c: &Collapsed) -> Vec<Stack> {
    c.stacks
        .iter()
        .map(|(k, v)| Stack {
            frames: String::from_utf8_lossy(k).into_owned(),
            weight: match *v {
                Count::Int(n) => n,
                Count::Float(f) => f.min(u64::MAX as f64) as u64,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_both_kinds() {
        assert_eq!(detect(b"a;b;c 12\n"), InputKind::Folded);
        assert_eq!(
            detect(b"# header\nswapper     0 [000] 158665.570607: cpu-clock:\n\tffff f ([k])\n"),
            InputKind::PerfScript
        );
        assert_eq!(
            detect(b"java 25607 4794564.109216: 1 cycles:\n"),
            InputKind::PerfScript
        );
    }

    #[test]
    fn bad_line_is_named() {
        let e = parse(b"a;b 1\nnonsense\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
