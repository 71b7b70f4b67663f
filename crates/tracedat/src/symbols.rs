//! Kernel symbols kept inside a trace.dat (its copy of `/proc/kallsyms`) and the printk
//! format table, so pointer fields are named from the file itself: never from the reading
//! machine's `/proc/kallsyms`, which may belong to another kernel.
//!
//! A pointer field that the kernel prints with `%ps` / `%pS` (hrtimer functions, csd
//! functions, IPI callbacks and callsites) is named by the symbol that contains the address,
//! without the `+0xoff/0xsize` that `%pS` adds: the name the kernel's own text output gives
//! once `+off/size` is dropped, which is what the text decoders keep.

use std::collections::{BTreeMap, BTreeSet};

/// Offsets past a symbol's start beyond which an address is not taken as inside it (the
/// largest kernel functions are a few tens of KiB; this guards the gaps between the core
/// kernel, modules and the end of the table).
const MAX_OFFSET: u64 = 1 << 20;

/// A sorted kallsyms table: address → name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kallsyms {
    /// (address, start of the name in `names`, length of the name), sorted by address; at
    /// one address, the first name in the file.
    syms: Vec<(u64, u32, u32)>,
    names: String,
}

/// The lines of `text` split at each `\n`, as `split` would, found with `memchr`.
fn memchr_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        match memchr::memchr(b'\n', t) {
            Some(i) => {
                rest = Some(&t[i + 1..]);
                Some(&t[..i])
            }
            None => {
                rest = None;
                Some(t)
            }
        }
    })
}

/// The symbols of `/proc/kallsyms` text (`ADDR TYPE NAME [MODULE]` lines): per line that is
/// one, its address, name and whole line. Lines that do not parse, zero addresses
/// (kptr_restrict) and `__pfx_` padding symbols are skipped.
fn symbol_lines(text: &[u8]) -> impl Iterator<Item = (u64, &[u8], &[u8])> {
    memchr_lines(text).filter_map(|line| {
        let (addr, name) = fields(line)?;
        (addr != 0 && !name.starts_with(b"__pfx_")).then_some((addr, name, line))
    })
}

/// The index of the first ASCII whitespace byte of `b` (as `u8::is_ascii_whitespace` says), or
/// its length. Eight bytes at a time: every ASCII whitespace byte is below 0x21, and in a word
/// the lowest byte flagged as below 0x21 is exactly the first such byte (a borrow only reaches
/// the bytes above it).
#[inline]
fn whitespace_at(b: &[u8]) -> usize {
    let mut i = 0;
    while let Some(w) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let w = u64::from_le_bytes(word);
        let low = w.wrapping_sub(0x2121_2121_2121_2121) & !w & 0x8080_8080_8080_8080;
        if low == 0 {
            i += 8;
            continue;
        }
        let j = i + (low.trailing_zeros() / 8) as usize;
        if b[j].is_ascii_whitespace() {
            return j;
        }
        // A control byte that is not whitespace: go on after it.
        i = j + 1;
    }
    while i < b.len() && !b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The address and name of a kallsyms line as bytes, split at ASCII whitespace: the usual
/// `ADDR T NAME` shape read in one pass, anything else token by token.
#[inline]
fn fields(line: &[u8]) -> Option<(u64, &[u8])> {
    let mut addr = 0u64;
    let mut i = 0;
    while let Some(&b) = line.get(i) {
        let Some(digit) = kvmscope_trace::fields::hex_digit(b) else {
            break;
        };
        addr = (addr << 4) | u64::from(digit);
        i += 1;
    }
    if (1..=16).contains(&i)
        && line.get(i) == Some(&b' ')
        && line.get(i + 1).is_some_and(|t| !t.is_ascii_whitespace())
        && line.get(i + 2) == Some(&b' ')
    {
        let rest = line.get(i + 3..).unwrap_or(&[]);
        let end = whitespace_at(rest);
        if end > 0 {
            return Some((addr, &rest[..end]));
        }
    }
    let mut it = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|t| !t.is_empty());
    let (Some(addr), Some(_), Some(name)) = (it.next(), it.next(), it.next()) else {
        return None;
    };
    let addr = u64::from_str_radix(std::str::from_utf8(addr).ok()?, 16).ok()?;
    Some((addr, name))
}

impl Kallsyms {
    /// Parses `/proc/kallsyms` text (`ADDR TYPE NAME [MODULE]` lines). Lines that do not
    /// parse, zero addresses (kptr_restrict) and `__pfx_` padding symbols are skipped.
    pub fn parse(text: &[u8]) -> Kallsyms {
        // As bytes, in one pass over each line: a kernel keeps 100,000-200,000 symbols, and
        // this runs before the records can be read.
        let mut names = String::with_capacity(text.len() / 2);
        let mut syms = Vec::with_capacity(text.len() / 32);
        // Checked as UTF-8 once, as a whole (a table is nearly always ASCII): each name is then
        // a slice of it. A name of text that is not UTF-8 is checked, or made valid, alone.
        let whole = std::str::from_utf8(text).ok();
        for (addr, name, _) in symbol_lines(text) {
            let at = (name.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
            let name = match whole.and_then(|w| w.get(at..at + name.len())) {
                Some(name) => std::borrow::Cow::Borrowed(name),
                None => String::from_utf8_lossy(name),
            };
            let (Ok(start), Ok(len)) = (u32::try_from(names.len()), u32::try_from(name.len()))
            else {
                break;
            };
            names.push_str(&name);
            syms.push((addr, start, len));
        }
        // Stable: the first name at an address stays first. (Most tables come sorted.)
        if !syms.is_sorted_by_key(|s| s.0) {
            syms.sort_by_key(|s| s.0);
        }
        syms.dedup_by_key(|s| s.0);
        Kallsyms { syms, names }
    }

    pub fn len(&self) -> usize {
        self.syms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    fn name(&self, i: usize) -> &str {
        let (_, start, len) = self.syms[i];
        self.names
            .get(start as usize..(start + len) as usize)
            .unwrap_or("")
    }

    /// The index of the symbol that contains `addr`.
    fn containing(&self, addr: u64) -> Option<usize> {
        let i = self.syms.partition_point(|s| s.0 <= addr).checked_sub(1)?;
        let start = self.syms[i].0;
        let end = self.syms.get(i + 1).map(|s| s.0);
        // Past the last symbol only the exact address is known.
        let inside = match end {
            Some(end) => addr < end && addr - start < MAX_OFFSET,
            None => addr == start,
        };
        inside.then_some(i)
    }

    /// The table as `/proc/kallsyms` text (`ADDR t NAME` lines: the symbol types and module
    /// names are not kept), for writing it into another file.
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..self.syms.len() {
            out.extend_from_slice(
                format!("{:016x} t {}\n", self.syms[i].0, self.name(i)).as_bytes(),
            );
        }
        out
    }

    /// The name of the symbol that contains `addr` (`%ps`/`%pS` without the offset).
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        self.containing(addr).map(|i| self.name(i))
    }

    /// (name, offset into it, size) of the symbol that contains `addr`: `%pS`'s
    /// `name+0xoff/0xsize`; the size is unknown (None) for the last symbol of the table.
    pub fn lookup_offset(&self, addr: u64) -> Option<(&str, u64, Option<u64>)> {
        let i = self.containing(addr)?;
        let start = self.syms[i].0;
        let size = self.syms.get(i + 1).map(|s| s.0 - start);
        Some((self.name(i), addr - start, size))
    }
}

/// The lines of `/proc/kallsyms` text that name the given addresses: for each address, the
/// symbol containing it and the symbol after that one (which bounds the first, so a reader
/// of the subset finds the same symbol, and `%pS` the same size, as with the whole table).
/// Lines keep their text and come out sorted by address.
pub fn kallsyms_subset(text: &[u8], addrs: &BTreeSet<u64>) -> Vec<u8> {
    // Each line as `str::lines` gives it: a `\r` before the `\n` dropped (the unterminated
    // last line, which ends the text, keeps its own).
    let end = text.as_ptr_range().end;
    let mut lines: Vec<(u64, &[u8])> = symbol_lines(text)
        .map(|(a, _, line)| match line.strip_suffix(b"\r") {
            Some(cut) if line.as_ptr_range().end != end => (a, cut),
            _ => (a, line),
        })
        .collect();
    lines.sort_by_key(|l| l.0);
    // At one address only the first line counts (as in `Kallsyms::parse`).
    lines.dedup_by_key(|l| l.0);
    let mut keep = BTreeSet::new();
    for &a in addrs {
        let Some(i) = lines.partition_point(|l| l.0 <= a).checked_sub(1) else {
            continue;
        };
        let bounded = lines.get(i + 1).is_some_and(|n| a < n.0) && a - lines[i].0 < MAX_OFFSET;
        if bounded || a == lines[i].0 {
            keep.insert(i);
            if i + 1 < lines.len() {
                keep.insert(i + 1);
            }
        }
    }
    let mut out = Vec::new();
    for i in keep {
        out.extend_from_slice(String::from_utf8_lossy(lines[i].1).as_bytes());
        out.push(b'\n');
    }
    out
}

/// The printk formats table (`ADDR : "TEXT"` lines of tracefs `printk_formats`): the strings
/// that `%s` pointer fields and `trace_printk` records point to.
pub fn parse_printk(text: &str) -> BTreeMap<u64, String> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let Some((addr, rest)) = line.split_once(':') else {
            continue;
        };
        let addr = addr.trim();
        let addr = addr
            .strip_prefix("0x")
            .or_else(|| addr.strip_prefix("0X"))
            .unwrap_or(addr);
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        let s = rest.trim();
        let s = s
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s);
        m.insert(addr, s.replace("\\n", "\n"));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "ffffffff81000000 T _text\n\
ffffffff81001000 t __pfx_tick_nohz_handler\n\
ffffffff81001010 t tick_nohz_handler\n\
ffffffff81001010 t tick_alias\n\
ffffffff81001200 T generic_smp_call_function_single_interrupt\n\
ffffffff81001300 T smp_call_function_many_cond\n\
ffffffff81001900 T _etext\n\
ffffffffc0000000 t vmx_vcpu_run\t[kvm_intel]\n\
0000000000000000 T hidden\n";

    #[test]
    fn names_the_containing_symbol_first_alias_no_pfx() {
        let k = Kallsyms::parse(TEXT.as_bytes());
        assert_eq!(k.lookup(0xffffffff81001010), Some("tick_nohz_handler"));
        assert_eq!(
            k.lookup_offset(0xffffffff81001314),
            Some(("smp_call_function_many_cond", 0x14, Some(0x600)))
        );
        // The padding before a function belongs to the symbol before it (no __pfx_).
        assert_eq!(k.lookup(0xffffffff81001008), Some("_text"));
        assert_eq!(k.lookup(0xffffffffc0000000), Some("vmx_vcpu_run"));
        assert_eq!(k.lookup(0xffffffffc0000004), None, "past the last symbol");
        assert_eq!(k.lookup(0x1000), None);
        assert_eq!(k.lookup(0xffffffff81002000 + MAX_OFFSET), None);
    }

    /// The fields of one kallsyms line split as text (address, type, name): what the byte
    /// parse must agree with.
    fn parse_line(line: &str) -> Option<(u64, char, &str)> {
        let mut it = line.split_ascii_whitespace();
        let addr = u64::from_str_radix(it.next()?, 16).ok()?;
        let ty = it.next()?.chars().next()?;
        let name = it.next()?;
        Some((addr, ty, name))
    }

    #[test]
    fn byte_parse_reads_lines_as_the_text_parse_does() {
        // The table as parsing each line of the lossily decoded text gives it.
        fn by_lines(text: &[u8]) -> Vec<(u64, String)> {
            let text = String::from_utf8_lossy(text);
            let mut v: Vec<(u64, String)> = text
                .lines()
                .filter_map(parse_line)
                .filter(|(a, _, n)| *a != 0 && !n.starts_with("__pfx_"))
                .map(|(a, _, n)| (a, n.to_string()))
                .collect();
            v.sort_by_key(|s| s.0);
            v.dedup_by_key(|s| s.0);
            v
        }
        let odd: &[u8] = b"  ffffffff81000000\tT\t_text \r\n\n\
ffffffff81000100 t na\xffme\r\n\
+ffffffff81000200 t plus_sign\n\
ffffffff81000300 t\n\
zzzz t not_hex\n\
ffffffff81000400 \xe2\x82 t_type_bytes_dont_matter\n\
ffffffff81000500 t \xc3\xa9t\xc3\xa9 [mod]\n\
ffffffff81000600 t \x0cformfeed\n\
ffffffff81000800 tt two_char_type\n\
ffffffff81000900 t  two_spaces\n\
1ffffffff81000a00 t seventeen_digits\n\
ffffffff81000b00 T\n\
ffffffff81000700 t last_no_newline";
        // The odd lines as valid UTF-8 (names then come from the text checked as a whole).
        let odd_utf8 = String::from_utf8_lossy(odd).into_owned();
        assert_ne!(
            odd_utf8.as_bytes(),
            odd,
            "the odd lines hold bytes that are not UTF-8"
        );
        for text in [TEXT.as_bytes(), odd, odd_utf8.as_bytes()] {
            let k = Kallsyms::parse(text);
            let got: Vec<(u64, String)> = (0..k.len())
                .map(|i| (k.syms[i].0, k.name(i).to_string()))
                .collect();
            assert_eq!(got, by_lines(text));
        }
        assert_eq!(Kallsyms::parse(odd).len(), 9);
        // The subset reads its lines with the same parser: every address names the same.
        let all = Kallsyms::parse(odd);
        let addrs: BTreeSet<u64> = all.syms.iter().map(|s| s.0 + 1).collect();
        let sub = Kallsyms::parse(&kallsyms_subset(odd, &addrs));
        for a in &addrs {
            assert_eq!(sub.lookup_offset(*a), all.lookup_offset(*a));
        }
        assert!(!String::from_utf8_lossy(&kallsyms_subset(odd, &addrs)).contains("\r\n"));
    }

    proptest::proptest! {
        #[test]
        fn whitespace_at_is_the_first_whitespace(b in proptest::collection::vec(
            proptest::prop_oneof![0u8..0x22, proptest::prelude::any::<u8>()], 0..40)) {
            let want = b.iter().position(u8::is_ascii_whitespace).unwrap_or(b.len());
            proptest::prop_assert_eq!(whitespace_at(&b), want);
        }
    }

    #[test]
    fn a_subset_names_its_addresses_as_the_whole_table_does() {
        let all = Kallsyms::parse(TEXT.as_bytes());
        let addrs: BTreeSet<u64> = [0xffffffff81001010, 0xffffffff81001314, 0x42]
            .into_iter()
            .collect();
        let sub = kallsyms_subset(TEXT.as_bytes(), &addrs);
        let text = String::from_utf8(sub.clone()).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        let k = Kallsyms::parse(&sub);
        for a in &addrs {
            assert_eq!(k.lookup_offset(*a), all.lookup_offset(*a));
        }
    }

    #[test]
    fn printk_table() {
        let m = parse_printk(
            "0xffffffff82a0b1c8 : \"rcu_preempt\"\n0xffffffff82a0b1d0 : \"hello\\n\"\nbad\n",
        );
        assert_eq!(m[&0xffffffff82a0b1c8], "rcu_preempt");
        assert_eq!(m[&0xffffffff82a0b1d0], "hello\n");
        assert_eq!(m.len(), 2);
    }
}
