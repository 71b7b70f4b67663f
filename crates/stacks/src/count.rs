//! Sample counts with the arithmetic of the reference collapser.
//!
//! `stackcollapse-perf.pl` adds periods with Perl numbers: exact unsigned 64-bit integers
//! until a sum (or a period) no longer fits, then doubles, printed with 15 significant digits
//! (`%.15g`). [`Count`] does the same, so that even absurd periods give the same bytes.

use std::fmt;

/// A sample count or summed period.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Count {
    /// Exact while it fits in 64 bits.
    Int(u64),
    /// After an overflow, as Perl does.
    Float(f64),
}

impl Default for Count {
    fn default() -> Self {
        Count::Int(0)
    }
}

impl Count {
    /// Parses a run of ASCII digits (leading zeros allowed) the way Perl numifies it.
    /// Anything that is not all digits counts as 0.
    pub fn from_digits(digits: &[u8]) -> Count {
        let mut v: u64 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return Count::Int(0);
            }
            match v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
            {
                Some(n) => v = n,
                None => {
                    // Too big for 64 bits: Perl switches to a double.
                    let s = std::str::from_utf8(digits).unwrap_or("0");
                    return Count::Float(s.parse::<f64>().unwrap_or(f64::INFINITY));
                }
            }
        }
        Count::Int(v)
    }

    /// Adds like Perl's `+=`: exact integers until they overflow, then doubles.
    #[inline]
    pub fn add(&mut self, other: Count) {
        *self = match (*self, other) {
            (Count::Int(a), Count::Int(b)) => match a.checked_add(b) {
                Some(s) => Count::Int(s),
                None => Count::Float(a as f64 + b as f64),
            },
            (a, b) => Count::Float(a.as_f64() + b.as_f64()),
        };
    }

    /// The value as a double (exact for integers below 2^53).
    pub fn as_f64(self) -> f64 {
        match self {
            Count::Int(v) => v as f64,
            Count::Float(v) => v,
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Count::Int(v) => write!(f, "{v}"),
            Count::Float(v) => f.write_str(&format_g15(v)),
        }
    }
}

/// C's `%.15g`, which Perl uses to print doubles.
fn format_g15(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Inf" } else { "-Inf" }.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{v:.14e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..15).contains(&exp) {
        let m = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = usize::try_from(14 - exp).unwrap_or(0);
        trim_fraction(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_stay_exact() {
        let mut c = Count::from_digits(b"0007");
        c.add(Count::from_digits(b"18446744073709551608"));
        assert_eq!(c.to_string(), "18446744073709551615");
    }

    #[test]
    fn overflow_prints_like_perl() {
        let mut c = Count::from_digits(b"18446744073709551615");
        c.add(Count::Int(1));
        assert_eq!(c.to_string(), "1.84467440737096e+19");
        assert_eq!(
            Count::from_digits(b"100000000000000000000000").to_string(),
            "1e+23"
        );
        assert_eq!(format_g15(123456.5), "123456.5");
        assert_eq!(format_g15(0.0001), "0.0001");
        assert_eq!(format_g15(0.00001), "1e-05");
    }
}
