//! Byte searches over short strings, eight bytes at a time (SWAR): the columns and fields a
//! trace line is split into are a few bytes long, where memchr's set-up costs more than the
//! search.

/// Lanes of a word whose byte is zero: the lowest set bit marks the first zero byte exactly
/// (a borrow can only mark bytes above it).
#[inline(always)]
pub(crate) fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(0x0101_0101_0101_0101) & !w & 0x8080_8080_8080_8080
}

#[inline(always)]
pub(crate) fn word_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// The first `needle` in `b[from..]`, eight bytes at a time (the columns searched are short:
/// cheaper than memchr's set-up).
#[inline(always)]
pub(crate) fn find_byte(b: &[u8], from: usize, needle: u8) -> Option<usize> {
    let pat = u64::from_le_bytes([needle; 8]);
    let mut i = from;
    while i + 8 <= b.len() {
        let z = zero_bytes(word_at(b, i) ^ pat);
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..].iter().position(|&c| c == needle).map(|p| i + p)
}

/// The first blank (space or tab) in `b[from..]`, eight bytes at a time.
#[inline(always)]
pub(crate) fn find_blank(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 8 <= b.len() {
        let w = word_at(b, i);
        let z = zero_bytes(w ^ 0x2020_2020_2020_2020) | zero_bytes(w ^ 0x0909_0909_0909_0909);
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b' ' || c == b'\t')
        .map(|p| i + p)
}

/// The first of the bytes `needles` in `b[from..]`, eight bytes at a time.
#[inline(always)]
pub(crate) fn find_any<const N: usize>(b: &[u8], from: usize, needles: [u8; N]) -> Option<usize> {
    let mut i = from;
    while i + 8 <= b.len() {
        let w = word_at(b, i);
        let mut z = 0;
        for n in needles {
            z |= zero_bytes(w ^ u64::from_le_bytes([n; 8]));
        }
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|c| needles.contains(c))
        .map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn word_scans_equal_byte_scans(text in "[ \t\\[a-z:,(]{0,40}", from in 0usize..40) {
            let b = text.as_bytes();
            let from = from.min(b.len());
            let first = |set: &[u8]| b[from..].iter().position(|c| set.contains(c)).map(|p| from + p);
            for needle in [b'[', b' ', b':'] {
                prop_assert_eq!(find_byte(b, from, needle), first(&[needle]));
            }
            prop_assert_eq!(find_blank(b, from), first(b" \t"));
            prop_assert_eq!(find_any(b, from, [b' ', b',']), first(b" ,"));
            prop_assert_eq!(find_any(b, from, [b' ', b',', b'(']), first(b" ,("));
        }
    }
}
