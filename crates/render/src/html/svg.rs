//! A small SVG plot renderer: stacked step areas over time, bar histograms on a log2 axis
//! with marker lines, and heat maps. Output size is bounded by the data's bucket count (one
//! path per series, one rect per non-empty cell), never by the number of events.

use std::fmt::Write;

use super::esc;

/// Colours for series, in order (a qualitative palette that reads on white).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 34.0;

/// "Nice" axis ticks covering `0..=max`: 1, 2 or 5 times a power of ten.
pub fn ticks(max: f64, want: usize) -> Vec<f64> {
    if max <= 0.0 || !max.is_finite() {
        return vec![0.0];
    }
    let raw = max / want.max(1) as f64;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * pow);
    let mut out = Vec::new();
    let mut v = 0.0;
    while v <= max * 1.000_001 {
        out.push(v);
        v += step;
    }
    out
}

/// A number for an axis label: 1.5k, 2M, 0.25.
pub fn short(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if a > 0.0 && a < 0.01 {
        // Two significant digits for small rates (one exit in hours).
        return format!("{v:.1e}");
    }
    let s = if x == x.trunc() || x.abs() >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    };
    format!("{s}{suffix}")
}

/// A duration for an axis label, from seconds.
pub fn secs(s: f64) -> String {
    if s == 0.0 {
        "0".into()
    } else if s.abs() >= 3600.0 {
        format!("{}h", short(s / 3600.0))
    } else if s.abs() >= 1.0 {
        format!("{}s", short(s))
    } else if s.abs() >= 1e-3 {
        format!("{}ms", short(s * 1e3))
    } else if s.abs() >= 1e-6 {
        format!("{}µs", short(s * 1e6))
    } else {
        format!("{}ns", short(s * 1e9))
    }
}

/// A duration from nanoseconds, for latency axes.
pub fn nanos(ns: f64) -> String {
    secs(ns / 1e9)
}

fn open(out: &mut String, id: &str, w: f64, h: f64, label: &str) {
    let _ = write!(
        out,
        r##"<svg class="plot" id="{id}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{}"><rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/>"##,
        esc(label)
    );
}

fn y_axis(out: &mut String, w: f64, h: f64, max: f64, unit: &str) {
    let ph = h - TOP - BOTTOM;
    for t in ticks(max, 5) {
        let y = TOP + ph - if max > 0.0 { t / max * ph } else { 0.0 };
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            w - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            short(t)
        );
    }
    let _ = write!(
        out,
        r#"<text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle" class="unit">{}</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(unit)
    );
}

fn time_axis(out: &mut String, w: f64, h: f64, span_s: f64) {
    let pw = w - LEFT - RIGHT;
    let y = h - BOTTOM;
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#888"/>"##,
        w - RIGHT
    );
    for t in ticks(span_s, 8) {
        let x = LEFT + if span_s > 0.0 { t / span_s * pw } else { 0.0 };
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{y:.1}" y2="{:.1}" stroke="#888"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"##,
            y + 4.0,
            y + 16.0,
            secs(t)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="unit">time since trace start</text>"#,
        LEFT + pw / 2.0,
        h - 4.0
    );
}

/// One stacked series: name, colour and per-bucket values (rates).
#[derive(Debug)]
pub struct Layer<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub values: Vec<f64>,
}

/// Stacked step areas: buckets of `bucket_s` seconds, values already rates per second.
pub fn stacked(
    id: &str,
    label: &str,
    w: f64,
    h: f64,
    bucket_s: f64,
    layers: &[Layer<'_>],
    unit: &str,
) -> String {
    let mut out = String::new();
    open(&mut out, id, w, h, label);
    let n = layers.iter().map(|l| l.values.len()).max().unwrap_or(0);
    let mut base = vec![0.0f64; n];
    let max = (0..n)
        .map(|i| {
            layers
                .iter()
                .map(|l| l.values.get(i).copied().unwrap_or(0.0))
                .sum::<f64>()
        })
        .fold(0.0, f64::max);
    let top = ticks(max, 5).last().copied().unwrap_or(1.0).max(max);
    y_axis(&mut out, w, h, top, unit);
    let span = bucket_s * n as f64;
    let pw = w - LEFT - RIGHT;
    let ph = h - TOP - BOTTOM;
    let x = |i: usize| LEFT + if n > 0 { i as f64 / n as f64 * pw } else { 0.0 };
    let y = |v: f64| TOP + ph - if top > 0.0 { v / top * ph } else { 0.0 };
    for l in layers {
        let mut d = String::new();
        let upper: Vec<f64> = (0..n)
            .map(|i| base[i] + l.values.get(i).copied().unwrap_or(0.0))
            .collect();
        // Upper edge left to right, lower edge back.
        for (i, u) in upper.iter().enumerate() {
            let cmd = if i == 0 { 'M' } else { 'L' };
            let _ = write!(d, "{cmd}{:.1} {:.1}H{:.1}", x(i), y(*u), x(i + 1));
        }
        for i in (0..n).rev() {
            let _ = write!(d, "L{:.1} {:.1}H{:.1}", x(i + 1), y(base[i]), x(i));
        }
        d.push('Z');
        let total: f64 = l.values.iter().sum::<f64>() * bucket_s;
        let _ = write!(
            out,
            r#"<path d="{d}" fill="{}" stroke="none"><title>{}: {} in all</title></path>"#,
            l.colour,
            esc(l.name),
            short(total.round())
        );
        base = upper;
    }
    time_axis(&mut out, w, h, span);
    out.push_str("</svg>");
    out
}

/// A histogram on a log2 latency axis: `buckets[i]` holds `[2^i, 2^(i+1))` ns; vertical
/// markers at the given nanosecond values.
pub fn log2_histogram(
    id: &str,
    label: &str,
    w: f64,
    h: f64,
    buckets: &[u64],
    colour: &str,
    markers: &[(&str, f64)],
) -> String {
    let mut out = String::new();
    open(&mut out, id, w, h, label);
    let lo = buckets.iter().position(|&c| c > 0).unwrap_or(0);
    let hi = buckets
        .iter()
        .rposition(|&c| c > 0)
        .map_or(lo + 1, |p| p + 1);
    let lo = lo.min(
        markers
            .iter()
            .map(|m| {
                if m.1 >= 1.0 {
                    m.1.log2().floor() as usize
                } else {
                    0
                }
            })
            .min()
            .unwrap_or(lo),
    );
    let hi = hi.max(
        markers
            .iter()
            .map(|m| {
                if m.1 >= 1.0 {
                    m.1.log2().floor() as usize + 1
                } else {
                    1
                }
            })
            .max()
            .unwrap_or(hi),
    );
    let max = buckets.iter().copied().max().unwrap_or(0) as f64;
    let top = ticks(max, 4).last().copied().unwrap_or(1.0).max(max);
    y_axis(&mut out, w, h, top, "exits");
    let pw = w - LEFT - RIGHT;
    let ph = h - TOP - BOTTOM;
    let n = (hi - lo).max(1) as f64;
    let bw = pw / n;
    let xb = |b: f64| LEFT + (b - lo as f64) / n * pw;
    for (i, &c) in buckets.iter().enumerate().take(hi).skip(lo) {
        if c == 0 {
            continue;
        }
        let bh = c as f64 / top * ph;
        let _ = write!(
            out,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{colour}"><title>{}–{}: {c}</title></rect>"#,
            xb(i as f64) + 0.5,
            TOP + ph - bh,
            (bw - 1.0).max(0.5),
            nanos((1u64 << i) as f64),
            nanos((1u64 << (i + 1)) as f64)
        );
    }
    let yb = h - BOTTOM;
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{yb:.1}" y2="{yb:.1}" stroke="#888"/>"##,
        w - RIGHT
    );
    let every = ((hi - lo) / 8).max(1);
    for b in (lo..=hi).step_by(every) {
        let x = xb(b as f64);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{yb:.1}" y2="{:.1}" stroke="#888"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"##,
            yb + 4.0,
            yb + 16.0,
            nanos((1u64 << b.min(62)) as f64)
        );
    }
    for (k, (name, ns)) in markers.iter().enumerate() {
        if *ns <= 0.0 {
            continue;
        }
        // Position within the power-of-two bucket, on the log axis.
        let x = xb(ns.log2());
        // Labels near the right edge go to the left of their line.
        let (tx, anchor) = if x + 80.0 > w - RIGHT {
            (x - 3.0, "end")
        } else {
            (x + 3.0, "start")
        };
        let _ = write!(
            out,
            r##"<line class="marker" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{yb:.1}" stroke="#222" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" text-anchor="{anchor}" class="mark">{} {}</text>"##,
            tx,
            TOP + 10.0 + 12.0 * k as f64,
            esc(name),
            nanos(*ns)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="unit">handling time (log scale)</text>"#,
        LEFT + pw / 2.0,
        h - 4.0
    );
    out.push_str("</svg>");
    out
}

/// A heat map: one row per label, `bucket_s`-second columns, colour by count (log scale).
pub fn heatmap(
    id: &str,
    label: &str,
    w: f64,
    bucket_s: f64,
    rows: &[(String, &[u64])],
    what: &str,
) -> String {
    let row_h = 14.0;
    let left = 150.0;
    let h = TOP + BOTTOM + row_h * rows.len().max(1) as f64;
    let mut out = String::new();
    open(&mut out, id, w, h, label);
    let n = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let max = rows
        .iter()
        .flat_map(|r| r.1.iter().copied())
        .max()
        .unwrap_or(0) as f64;
    let pw = w - left - RIGHT;
    let cw = if n > 0 { pw / n as f64 } else { pw };
    for (r, (name, counts)) in rows.iter().enumerate() {
        let y = TOP + r as f64 * row_h;
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text><rect x="{left}" y="{y:.1}" width="{pw:.1}" height="{:.1}" fill="#f4f4f4"/>"##,
            left - 4.0,
            y + row_h - 3.0,
            esc(name),
            row_h - 1.0
        );
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let t = if max > 1.0 {
                (c as f64).ln_1p() / max.ln_1p()
            } else {
                1.0
            };
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.2}" height="{:.1}" fill="{}"><title>{}: {c} {} at {}</title></rect>"#,
                left + i as f64 * cw,
                cw.max(0.6),
                row_h - 1.0,
                heat(t),
                esc(name),
                esc(what),
                secs(i as f64 * bucket_s)
            );
        }
    }
    // Time axis under the rows.
    let yb = h - BOTTOM;
    let span = bucket_s * n as f64;
    for t in ticks(span, 8) {
        let x = left + if span > 0.0 { t / span * pw } else { 0.0 };
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{yb:.1}" y2="{:.1}" stroke="#888"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"##,
            yb + 4.0,
            yb + 16.0,
            secs(t)
        );
    }
    out.push_str("</svg>");
    out
}

/// White-yellow-red-dark ramp for `t` in 0..=1.
fn heat(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let (r, g, b) = if t < 0.5 {
        let u = t / 0.5;
        (255.0, 230.0 - 110.0 * u, 120.0 - 100.0 * u)
    } else {
        let u = (t - 0.5) / 0.5;
        (255.0 - 135.0 * u, 120.0 - 110.0 * u, 20.0 + 20.0 * u)
    };
    format!("#{:02x}{:02x}{:02x}", r as u8, g as u8, b as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        assert_eq!(ticks(10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0, 5), vec![0.0]);
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(secs(0.002), "2ms");
        assert_eq!(secs(7200.0), "2h");
        assert_eq!(short(0.000_122), "1.2e-4");
    }

    #[test]
    fn plots_are_bounded_by_buckets() {
        let layers = [Layer {
            name: "HLT",
            colour: PALETTE[0],
            values: vec![1.0; 256],
        }];
        let s = stacked("x", "x", 800.0, 240.0, 0.001, &layers, "exits/s");
        assert_eq!(s.matches("<path").count(), 1);
        let counts = vec![3u64; 256];
        let h = heatmap("h", "h", 800.0, 0.001, &[("a".into(), &counts)], "exits");
        assert_eq!(h.matches("<title>").count(), 256);
    }
}
