//! Small, allocation-free helpers to read printed tracepoint fields.

/// Finds `key=value`, `key value` or `key: value` in a printed payload; the value ends at a
/// space or a comma. The key must start a token (after a space, comma or parenthesis).
#[inline]
pub fn find<'a>(payload: &'a str, key: &str) -> Option<&'a str> {
    find_at(payload, 0, key).map(|(v, _)| v)
}

/// [`find`] for keys asked in the order the payload prints them (the kernel's format): each
/// search starts after the value the last one found, and starts over from the beginning when
/// the key is not there. The answer is [`find`]'s wherever a key appears once.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    payload: &'a str,
    /// Where the token after the last value found starts (or the end).
    at: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub fn new(payload: &'a str) -> Self {
        Cursor { payload, at: 0 }
    }

    /// The value of `key`, as [`find`] gives it.
    #[inline]
    pub fn find(&mut self, key: &str) -> Option<&'a str> {
        let found = match find_at(self.payload, self.at, key) {
            None if self.at > 0 => find_at(self.payload, 0, key),
            found => found,
        };
        let (value, end) = found?;
        // The next token's start: past the separator that ended the value, and blanks.
        let b = self.payload.as_bytes();
        let mut at = (end + 1).min(b.len());
        while b.get(at) == Some(&b' ') {
            at += 1;
        }
        self.at = at;
        Some(value)
    }
}

/// [`find`] from byte `from` (0, or where a token starts): the value and its end.
///
/// A token starts at `from` and after each separator (`' '`, `','`, `'('`) and the blanks
/// after it; the key is the first token that starts with `key` followed by `=`, `' '` or
/// `": "`. Rather than walk every token, this looks for the key's first byte (memchr) and
/// checks there whether a token starts: a field that is not in the payload costs a scan or
/// two, not a step per token.
#[inline]
fn find_at<'a>(payload: &'a str, from: usize, key: &str) -> Option<(&'a str, usize)> {
    let b = payload.as_bytes();
    let k = key.as_bytes();
    let first = match k.first() {
        Some(&c) if c != b' ' => c,
        _ => return find_at_walk(payload, from, key),
    };
    // The last place the key fits.
    let last = b.len().checked_sub(k.len())?;
    let mut i = from;
    loop {
        if i > last {
            return None;
        }
        let at = i + memchr::memchr(first, &b[i..=last])?;
        let token = at == from || matches!(b[at - 1], b' ' | b',' | b'(');
        if token && crate::names::short_eq(&b[at..at + k.len()], k) {
            if let Some(found) = value_after(payload, at + k.len()) {
                return Some(found);
            }
        }
        i = at + 1;
    }
}

/// [`find_at`] token by token: the reference it is tested against, and the path for a key
/// that is empty or starts with a blank.
fn find_at_walk<'a>(payload: &'a str, from: usize, key: &str) -> Option<(&'a str, usize)> {
    let b = payload.as_bytes();
    let k = key.as_bytes();
    let mut i = from;
    while i + k.len() <= b.len() {
        if crate::names::short_eq(&b[i..i + k.len()], k) {
            if let Some(found) = value_after(payload, i + k.len()) {
                return Some(found);
            }
        }
        // Next token start.
        i = crate::bytes::find_any(b, i, [b' ', b',', b'('])? + 1;
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
    }
    None
}

/// The value of a key that ends at byte `j`, and the value's end: after `=`, `' '` or `": "`,
/// up to the next blank or comma. None when no such separator follows the key.
#[inline(always)]
fn value_after(payload: &str, j: usize) -> Option<(&str, usize)> {
    let b = payload.as_bytes();
    let v = match (b.get(j), b.get(j + 1)) {
        (Some(b'='), _) | (Some(b' '), _) => j + 1,
        (Some(b':'), Some(b' ')) => j + 2,
        _ => return None,
    };
    let end = crate::bytes::find_any(b, v, [b' ', b',']).unwrap_or(b.len());
    Some((&payload[v..end], end))
}

fn trim_num(s: &str) -> &[u8] {
    let mut b = s.as_bytes();
    while let [rest @ .., b',' | b')' | b':'] = b {
        b = rest;
    }
    b
}

/// The value of a hex digit, or [`BAD`].
const HEX: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            d @ b'0'..=b'9' => d - b'0',
            d @ b'a'..=b'f' => d - b'a' + 10,
            d @ b'A'..=b'F' => d - b'A' + 10,
            _ => BAD,
        };
        c += 1;
    }
    t
};
const BAD: u8 = 0xff;

/// The value of the hex digit `c` (either case), or `None`: the table [`hex`] reads through,
/// for parsers of other crates that walk their own bytes.
#[inline]
pub fn hex_digit(c: u8) -> Option<u8> {
    let d = HEX[usize::from(c)];
    (d != BAD).then_some(d)
}

fn parse_radix(b: &[u8], radix: u32) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    // Digits that cannot overflow a u64 take the plain loop: every invalid digit sets a bit
    // of `bad`, tested once at the end (field values are 1-18 digits).
    match radix {
        16 if b.len() <= 16 => {
            let (mut v, mut bad) = (0u64, 0u8);
            for &c in b {
                let d = HEX[c as usize];
                bad |= d;
                v = v << 4 | u64::from(d & 0xf);
            }
            return (bad & 0xf0 == 0).then_some(v);
        }
        10 if b.len() <= 19 => {
            let (mut v, mut bad) = (0u64, false);
            for &c in b {
                let d = c.wrapping_sub(b'0');
                bad |= d > 9;
                v = v.wrapping_mul(10).wrapping_add(u64::from(d));
            }
            return (!bad).then_some(v);
        }
        _ => {}
    }
    checked_radix(b, radix)
}

/// The general digit loop, with overflow checks.
fn checked_radix(b: &[u8], radix: u32) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = (c as char).to_digit(radix)?;
        v = v.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
    }
    Some(v)
}

/// Parses a number printed in hex (`0x` prefix optional when `hex_default`) or decimal.
pub fn num(s: &str, hex_default: bool) -> Option<u64> {
    let b = trim_num(s);
    if let [b'0', b'x' | b'X', h @ ..] = b {
        return parse_radix(h, 16);
    }
    parse_radix(b, if hex_default { 16 } else { 10 })
}

pub fn hex(s: &str) -> Option<u64> {
    num(s, true)
}

pub fn dec(s: &str) -> Option<u64> {
    num(s, false)
}

pub fn dec_i64(s: &str) -> Option<i64> {
    match trim_num(s) {
        [b'-', rest @ ..] => parse_radix(rest, 10)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        b => parse_radix(b, 10).and_then(|v| i64::try_from(v).ok()),
    }
}

/// The u32 variant of [`dec`], refusing values that do not fit.
pub fn dec32(s: &str) -> Option<u32> {
    dec(s).and_then(|v| u32::try_from(v).ok())
}

pub fn hex32(s: &str) -> Option<u32> {
    hex(s).and_then(|v| u32::try_from(v).ok())
}

/// Space-separated tokens, empty ones skipped; cheaper than `str::split` on short payloads.
#[derive(Debug, Clone)]
pub struct Tokens<'a> {
    rest: &'a str,
}

pub fn tokens(s: &str) -> Tokens<'_> {
    Tokens { rest: s }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = trim_start_blank(self.rest);
        if rest.is_empty() {
            self.rest = rest;
            return None;
        }
        let end = crate::bytes::find_byte(rest.as_bytes(), 0, b' ').unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }
}

/// The first occurrence of `pat` (non-empty) in `s`: its first byte found eight bytes at a
/// time, then the rest compared. `str::find` with a string builds a two-way searcher first,
/// which costs more than the search on payloads of a few dozen bytes.
#[inline]
pub fn find_str(s: &str, pat: &str) -> Option<usize> {
    let (b, p) = (s.as_bytes(), pat.as_bytes());
    let (&first, rest) = p.split_first()?;
    let mut from = 0;
    while let Some(i) = crate::bytes::find_byte(b, from, first) {
        if b.len() - i < p.len() {
            return None;
        }
        if &b[i + 1..i + p.len()] == rest {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// `str::split_once` with a string pattern, by [`find_str`].
#[inline]
pub fn split_once<'a>(s: &'a str, pat: &str) -> Option<(&'a str, &'a str)> {
    let i = find_str(s, pat)?;
    Some((&s[..i], &s[i + pat.len()..]))
}

/// `str::contains` with a string pattern, by [`find_str`].
#[inline]
pub fn contains(s: &str, pat: &str) -> bool {
    find_str(s, pat).is_some()
}

/// `trim_start` for ASCII blanks only (spaces and tabs), without decoding chars: spaces eight
/// at a time, then blanks byte by byte.
#[inline(always)]
pub fn trim_start_blank(s: &str) -> &str {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 8 <= b.len() {
        let x = crate::bytes::word_at(b, i) ^ 0x2020_2020_2020_2020;
        if x != 0 {
            i += (x.trailing_zeros() / 8) as usize;
            if b[i] != b'\t' {
                return &s[i..];
            }
            break;
        }
        i += 8;
    }
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    &s[i..]
}

/// `trim_end` for ASCII blanks only: spaces eight at a time (ftrace pads its columns with
/// them), then blanks byte by byte.
#[inline]
pub fn trim_end_blank(s: &str) -> &str {
    let b = s.as_bytes();
    let mut end = b.len();
    while end >= 8 {
        let x = crate::bytes::word_at(b, end - 8) ^ 0x2020_2020_2020_2020;
        if x != 0 {
            end -= (x.leading_zeros() / 8) as usize;
            break;
        }
        end -= 8;
    }
    while end > 0 && matches!(b[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    &s[..end]
}

/// Strips a `+0x1e/0x2a` offset suffix from a printed symbol (`func+0x1e/0x2a` → `func`).
pub fn symbol(s: &str) -> &str {
    match crate::bytes::find_byte(s.as_bytes(), 0, b'+') {
        Some(i) if i > 0 => &s[..i],
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields_in_all_styles() {
        let p = "cpu=1 callsite=on_each_cpu_cond_mask+0x20/0x60 callback=do_nothing+0x0/0x10";
        assert_eq!(find(p, "cpu"), Some("1"));
        assert_eq!(find(p, "callback").map(symbol), Some("do_nothing"));
        assert_eq!(find("vcpu 3 reason HLT rip 0x1", "vcpu"), Some("3"));
        assert_eq!(find("vcpu 3 reason HLT", "cpu"), None);
        assert_eq!(
            find("func=do_sync_core, csd=00", "func"),
            Some("do_sync_core")
        );
        assert_eq!(
            find("TRAP: ESR_EC: 0x01 (WFx), PC: 0x1", "ESR_EC"),
            Some("0x01")
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(hex("0x3f8"), Some(0x3f8));
        assert_eq!(hex("6e0"), Some(0x6e0));
        assert_eq!(dec("42,"), Some(42));
        assert_eq!(dec("x"), None);
        assert_eq!(dec(""), None);
        assert_eq!(hex("0x"), None);
        assert_eq!(dec_i64("-12)"), Some(-12));
        assert_eq!(hex("ffffffffffffffffff"), None);
        assert_eq!(hex("ffffffffffffffff"), Some(u64::MAX));
        assert_eq!(dec("18446744073709551615"), Some(u64::MAX));
        assert_eq!(dec("18446744073709551616"), None);
        assert_eq!(dec("9999999999999999999"), Some(9999999999999999999));
        assert_eq!(hex("0xg"), None);
        assert_eq!(dec("1 2"), None);
    }

    #[test]
    fn hex_digit_is_to_digit_16() {
        for c in 0..=u8::MAX {
            let want = (c as char).to_digit(16).map(|d| d as u8);
            assert_eq!(hex_digit(c), want, "{c:#x}");
        }
    }

    proptest::proptest! {
        /// The short-needle search agrees with `str::find`.
        #[test]
        fn find_str_equals_std(s in "[ =a-c,()\u{e9}]{0,40}", pat in "[ =a-c\u{e9}]{1,4}") {
            proptest::prop_assert_eq!(find_str(&s, &pat), s.find(pat.as_str()));
            proptest::prop_assert_eq!(split_once(&s, &pat), s.split_once(pat.as_str()));
        }

        /// Trimming eight spaces at a time gives what trimming byte by byte gives.
        #[test]
        fn trim_blank_equals_std(s in "([ \t]{0,11}[a\u{e9}]{0,3}){0,4}[ \t]{0,11}") {
            proptest::prop_assert_eq!(trim_end_blank(&s), s.trim_end_matches([' ', '\t']));
            proptest::prop_assert_eq!(trim_start_blank(&s), s.trim_start_matches([' ', '\t']));
        }

        /// Keys asked in any order through a cursor get [`find`]'s value wherever each key
        /// appears once, on any text; a repeated key gets one of its values, never a panic.
        #[test]
        fn cursor_equals_find(
            words in proptest::collection::vec(proptest::sample::select(
                vec!["a", "b", "cd", "a=1", "b:", "cd 7", "(a", "x,", "=", ":", ""]), 0..10),
            seps in proptest::collection::vec(proptest::sample::select(
                vec![" ", ", ", "  ", ","]), 10),
            keys in proptest::collection::vec(proptest::sample::select(
                vec!["a", "b", "cd"]), 0..4),
        ) {
            let p: String = words.iter().zip(&seps).flat_map(|(w, s)| [*w, *s]).collect();
            let mut c = Cursor::new(&p);
            for k in keys {
                let got = c.find(k);
                let once = p.match_indices(k).count() <= 1;
                if once {
                    proptest::prop_assert_eq!(got, find(&p, k), "{} in {:?}", k, p);
                } else {
                    proptest::prop_assert_eq!(got.is_some(), find(&p, k).is_some());
                }
            }
        }

        /// The short-input loops agree with the checked loop on any bytes.
        #[test]
        fn fast_digits_equal_checked(b in proptest::collection::vec(
            proptest::sample::select(b"0123456789abcdefABCDEFxg :-\xff".to_vec()), 0..22)
        ) {
            for radix in [10, 16] {
                proptest::prop_assert_eq!(parse_radix(&b, radix), checked_radix(&b, radix));
            }
        }
    }

    proptest::proptest! {
        // Cases that tell the two apart are rare in random text: 256 missed a dropped `(`.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(8192))]

        /// Looking for the key's first byte finds what walking token by token finds, from
        /// any token start.
        #[test]
        fn find_at_equals_token_walk(
            p in "[ ,(=:a-dv\u{e9}]{0,48}",
            key in proptest::sample::select(vec!["a", "ab", "vcpu", "b:", "d", " a", "", "=a"]),
            from in 0usize..48,
        ) {
            // `from` is 0 or a token start, as the cursor passes it.
            let starts: Vec<usize> = (0..p.len())
                .filter(|&i| {
                    p.is_char_boundary(i)
                        && (i == 0
                            || (matches!(p.as_bytes()[i - 1], b' ' | b',' | b'(')
                                && p.as_bytes()[i] != b' '))
                })
                .collect();
            let from = starts.get(from % starts.len().max(1)).copied().unwrap_or(0);
            proptest::prop_assert_eq!(
                find_at(&p, from, key),
                find_at_walk(&p, from, key),
                "{:?} in {:?} from {}", key, p, from
            );
        }
    }
}
