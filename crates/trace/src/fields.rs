//! Small, allocation-free helpers to read printed tracepoint fields.

/// Finds `key=value`, `key value` or `key: value` in a printed payload; the value ends at a
/// space or a comma. The key must start a token.
pub fn find<'a>(payload: &'a str, key: &str) -> Option<&'a str> {
    let bytes = payload.as_bytes();
    let mut from = 0;
    while let Some(pos) = payload[from..].find(key) {
        let start = from + pos;
        let end = start + key.len();
        from = start + 1;
        let at_token_start = start == 0 || matches!(bytes[start - 1], b' ' | b',' | b'(' | b'\t');
        if !at_token_start {
            continue;
        }
        let rest = &payload[end..];
        let rest = if let Some(r) = rest.strip_prefix('=') {
            r
        } else if let Some(r) = rest.strip_prefix(": ") {
            r
        } else if let Some(r) = rest.strip_prefix(' ') {
            r
        } else {
            continue;
        };
        let len = rest.find([' ', ',']).unwrap_or(rest.len());
        return Some(&rest[..len]);
    }
    None
}

/// Parses a number printed in hex (`0x` prefix optional when `hex_default`) or decimal.
pub fn num(s: &str, hex_default: bool) -> Option<u64> {
    let s = s.trim_end_matches([',', ')', ':']);
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if hex_default {
        u64::from_str_radix(s, 16).ok()
    } else {
        s.parse().ok()
    }
}

pub fn hex(s: &str) -> Option<u64> {
    num(s, true)
}

pub fn dec(s: &str) -> Option<u64> {
    num(s, false)
}

pub fn dec_i64(s: &str) -> Option<i64> {
    s.trim_end_matches([',', ')', ':']).parse().ok()
}

/// The u32 variant of [`dec`], refusing values that do not fit.
pub fn dec32(s: &str) -> Option<u32> {
    dec(s).and_then(|v| u32::try_from(v).ok())
}

pub fn hex32(s: &str) -> Option<u32> {
    hex(s).and_then(|v| u32::try_from(v).ok())
}

/// Strips a `+0x1e/0x2a` offset suffix from a printed symbol (`func+0x1e/0x2a` → `func`).
pub fn symbol(s: &str) -> &str {
    match s.find('+') {
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
    }
}
