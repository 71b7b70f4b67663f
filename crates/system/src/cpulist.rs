//! CPU lists as the kernel prints and accepts them: `0-3,5`, `1-3`, empty, and the
//! boot-parameter group form `0-15:2/4` (in each group of 4, the first 2).

use crate::error::{excerpt, Error};

/// Parses a CPU list into sorted, deduplicated CPU numbers. `file` names the source in
/// errors (e.g. `/sys/devices/system/cpu/isolated` or `nohz_full=`).
pub fn parse(file: &'static str, text: &str) -> Result<Vec<u32>, Error> {
    let text = text.trim();
    let mut cpus = Vec::new();
    if text.is_empty() || text == "(null)" {
        return Ok(cpus);
    }
    let bad = |problem: String| Error::Parse {
        file,
        line: 1,
        offset: 0,
        problem,
    };
    for part in text.split(',') {
        let part = part.trim();
        let (range, group) = match part.split_once(':') {
            Some((r, g)) => (r, Some(g)),
            None => (part, None),
        };
        let num = |s: &str| -> Result<u32, Error> {
            s.trim().parse::<u32>().map_err(|_| {
                bad(format!(
                    "{} in CPU list {} is not a CPU number (expected e.g. \"0-3,5\")",
                    excerpt(s),
                    excerpt(text)
                ))
            })
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(range)?;
                (n, n)
            }
        };
        if hi < lo || hi - lo > 1 << 16 {
            return Err(bad(format!(
                "range {} in CPU list {} is backwards or too large",
                excerpt(range),
                excerpt(text)
            )));
        }
        let (used, size) = match group {
            Some(g) => {
                let (u, s) = g
                    .split_once('/')
                    .ok_or_else(|| bad(format!("group {} must be USED/SIZE", excerpt(g))))?;
                let (u, s) = (num(u)?, num(s)?);
                if s == 0 || u > s {
                    return Err(bad(format!(
                        "group {} must have 0 < USED <= SIZE",
                        excerpt(g)
                    )));
                }
                (u, s)
            }
            None => (1, 1),
        };
        let mut c = lo;
        while c <= hi {
            if (c - lo) % size < used {
                cpus.push(c);
            }
            c += 1;
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Formats CPU numbers back into the kernel's compact form (`0-3,5`).
pub fn format(cpus: &[u32]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}
