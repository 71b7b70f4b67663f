//! `--html`: one self-contained page (styles, script, plots and data inline; nothing fetched)
//! with the findings, plots over time, latency histograms, a per-vCPU heat map, every table
//! of the report and the input summary.
//!
//! The page is aggregated data only: its size depends on the number of exit reasons, keys
//! and time buckets ([`kvmscope_analysis::timeline::MAX_BUCKETS`]), never on the number of
//! events, so a page made from a 1 GB trace opens as fast as one from a small trace.
//!
//! Every number shown in a table carries the JSON path of the value it shows
//! (`data-k="exits.rows.0.count"`) in the report embedded in the page (`<script
//! id="kvmscope-data">`); the page's own script checks each against that data on load and
//! says so in `#selfcheck` (tests read it, and compare the cells with `report --json`).

pub mod svg;

use std::fmt::Write;

use kvmscope_analysis::timeline::TimelineReport;
use kvmscope_analysis::Report;
use kvmscope_diagnose::Diagnosis;
use serde_json::Value;

use svg::{Layer, PALETTE};

/// What goes on the page.
#[derive(Debug)]
pub struct Page<'a> {
    pub title: String,
    pub report: &'a Report,
    pub timeline: &'a TimelineReport,
    pub diagnosis: Option<&'a Diagnosis>,
    /// A flame graph SVG (from `--stacks`), shown as an image.
    pub flame_svg: Option<&'a str>,
    /// Lines shown under the title (e.g. what a live recording ran).
    pub notes: Vec<String>,
}

/// Most rows a table shows (the rest are counted in a note).
pub const MAX_ROWS: usize = 200;
/// Most series a stacked plot shows (the rest are summed into "other").
const MAX_LAYERS: usize = 8;
/// Most rows the heat map shows (the busiest threads).
const MAX_HEAT_ROWS: usize = 48;
const PLOT_W: f64 = 1000.0;

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// An integer with thousands separators.
pub fn int(v: u64) -> String {
    let s = v.to_string();
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    o
}

/// How a cell shows its value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fmt {
    /// Integer with separators.
    Int,
    /// An identifier (tid, CPU, vector): integer without separators.
    Id,
    /// Nanoseconds shown as microseconds with 3 decimals.
    Us,
    /// A float with 1 decimal (percentages).
    Pct,
    /// Hexadecimal integer.
    Hex,
    /// Text as it is (strings, booleans, null as empty).
    Text,
}

fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// One table cell showing the report value at `path`.
fn cell(out: &mut String, data: &Value, path: &str, fmt: Fmt) {
    let v = lookup(data, path).unwrap_or(&Value::Null);
    let k = esc(path);
    match (fmt, v) {
        (Fmt::Int, Value::Number(n)) if n.as_u64().is_some() => {
            let _ = write!(
                out,
                r#"<td class="n" data-k="{k}">{}</td>"#,
                int(n.as_u64().unwrap_or(0))
            );
        }
        (Fmt::Id, Value::Number(n)) if n.as_u64().is_some() => {
            let _ = write!(
                out,
                r#"<td class="n" data-k="{k}">{}</td>"#,
                n.as_u64().unwrap_or(0)
            );
        }
        (Fmt::Us, Value::Number(n)) => {
            let _ = write!(
                out,
                r#"<td class="n" data-k="{k}" data-scale="1000" data-dp="3">{:.3}</td>"#,
                n.as_f64().unwrap_or(0.0) / 1000.0
            );
        }
        (Fmt::Pct, Value::Number(n)) => {
            let _ = write!(
                out,
                r#"<td class="n" data-k="{k}" data-dp="1">{:.1}</td>"#,
                n.as_f64().unwrap_or(0.0)
            );
        }
        (Fmt::Hex, Value::Number(n)) if n.as_u64().is_some() => {
            let _ = write!(
                out,
                r#"<td class="n" data-k="{k}" data-hex="1">{:#x}</td>"#,
                n.as_u64().unwrap_or(0)
            );
        }
        (_, Value::String(s)) => {
            let _ = write!(out, "<td>{}</td>", esc(s));
        }
        (_, Value::Bool(b)) => {
            let _ = write!(out, "<td>{}</td>", if *b { "yes" } else { "no" });
        }
        (_, Value::Null) => out.push_str("<td></td>"),
        (_, other) => {
            let _ = write!(out, "<td>{}</td>", esc(&other.to_string()));
        }
    }
}

/// A table over the array at `path`: each column is (heading, field path in a row, format).
fn table(
    out: &mut String,
    data: &Value,
    id: &str,
    caption: &str,
    path: &str,
    cols: &[(&str, &str, Fmt)],
) {
    let Some(Value::Array(rows)) = lookup(data, path) else {
        return;
    };
    if rows.is_empty() {
        return;
    }
    let _ = write!(
        out,
        r#"<table id="{id}"><caption>{}</caption><thead><tr>"#,
        esc(caption)
    );
    for (h, _, fmt) in cols {
        let class = if matches!(fmt, Fmt::Text) {
            ""
        } else {
            " class=\"n\""
        };
        let _ = write!(out, "<th{class}>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for i in 0..rows.len().min(MAX_ROWS) {
        out.push_str("<tr>");
        for (_, field, fmt) in cols {
            cell(out, data, &format!("{path}.{i}.{field}"), *fmt);
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if rows.len() > MAX_ROWS {
        let _ = write!(
            out,
            r#"<p class="note">{} more rows in the embedded data (<code>{}</code>).</p>"#,
            int((rows.len() - MAX_ROWS) as u64),
            esc(path)
        );
    }
}

/// Key-value rows for single values: (label, path, format).
fn facts(out: &mut String, data: &Value, id: &str, caption: &str, rows: &[(&str, &str, Fmt)]) {
    let _ = write!(
        out,
        r#"<table id="{id}" class="kv"><caption>{}</caption><tbody>"#,
        esc(caption)
    );
    for (label, path, fmt) in rows {
        let _ = write!(out, "<tr><th>{}</th>", esc(label));
        cell(out, data, path, *fmt);
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

const LATENCY_COLS: [(&str, &str, Fmt); 6] = [
    ("samples", "latency.samples", Fmt::Int),
    ("min µs", "latency.min_ns", Fmt::Us),
    ("p50 µs", "latency.p50_ns", Fmt::Us),
    ("p99 µs", "latency.p99_ns", Fmt::Us),
    ("max µs", "latency.max_ns", Fmt::Us),
    ("mean µs", "latency.mean_ns", Fmt::Us),
];

fn with_latency<'c>(head: &[(&'c str, &'c str, Fmt)]) -> Vec<(&'c str, &'c str, Fmt)> {
    head.iter().copied().chain(LATENCY_COLS).collect()
}

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1f2d3d;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#cfd8e3}
main{padding:8px 24px 40px;max-width:1100px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:12px 16px;margin:14px 0}
h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{padding:2px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th.n,td.n{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{font-weight:normal;color:#555}
.note{color:#666;font-size:12px}
.banner{background:#fff3cd;border:1px solid #e0c36c;padding:6px 10px;border-radius:4px}
.finding{border-left:5px solid #999;padding:6px 12px;margin:10px 0;background:#fcfcfc}
.finding.critical{border-color:#c0392b}.finding.warning{border-color:#e67e22}.finding.info{border-color:#2980b9}
.sev{font-weight:700;text-transform:uppercase;font-size:12px;margin-right:6px}
.finding h3{margin:0;font-size:15px;display:inline}
code{background:#f2f2f2;padding:1px 4px;border-radius:3px}
svg.plot{display:block;margin:6px 0}
svg .tick{font-size:10px;fill:#555}svg .unit{font-size:11px;fill:#333}svg .mark{font-size:11px;fill:#222}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
.hists{display:flex;flex-wrap:wrap;gap:10px}.hists figure{margin:0}.hists figcaption{font-size:12px;font-weight:600}
img.flame{max-width:100%;border:1px solid #eee}
#selfcheck{font-size:12px;color:#666}
"#;

/// Checks every `data-k` cell against the embedded report and reports in `#selfcheck`;
/// collects script errors in `#js-errors`.
const SCRIPT: &str = r#"
(function(){
  var data=JSON.parse(document.getElementById('kvmscope-data').textContent);
  function get(o,p){var ps=p.split('.');for(var i=0;i<ps.length;i++){if(o==null)return undefined;o=o[ps[i]];}return o;}
  var cells=document.querySelectorAll('[data-k]'),bad=[];
  for(var i=0;i<cells.length;i++){
    var c=cells[i],v=get(data.report,c.getAttribute('data-k')),t=c.textContent.replace(/,/g,'');
    var ok;
    if(c.hasAttribute('data-hex')){ok=parseInt(t,16)===v;}
    else{var s=Number(c.getAttribute('data-scale')||1),dp=Number(c.getAttribute('data-dp')||0);
      ok=typeof v==='number'&&Math.abs(Number(t)*s-v)<=0.5*Math.pow(10,-dp)*s*(1+1e-9)+1e-9;}
    if(!ok)bad.push(c.getAttribute('data-k')+': shown '+t+', data '+v);
  }
  var el=document.getElementById('selfcheck');
  el.setAttribute('data-checked',cells.length);el.setAttribute('data-mismatches',bad.length);
  el.textContent=cells.length+' numbers on this page checked against the embedded report data: '+(bad.length?bad.length+' differ: '+bad.join('; '):'all equal')+'.';
  function laid(){
    var plots=document.querySelectorAll('svg.plot,img.flame');
    for(var j=0;j<plots.length;j++){var r=plots[j].getBoundingClientRect();
      plots[j].setAttribute('data-rect',[Math.round(r.left+window.scrollX),Math.round(r.top+window.scrollY),Math.round(r.width),Math.round(r.height)].join(','));}
    document.body.setAttribute('data-ready','1');
  }
  if(document.readyState==='complete')laid();else window.addEventListener('load',laid);
})();
"#;

const ERROR_HOOK: &str = r#"window.addEventListener('error',function(e){var p=document.getElementById('js-errors');if(!p){p=document.createElement('pre');p.id='js-errors';(document.body||document.documentElement).appendChild(p);}p.textContent+=(e.message||'error')+'\n';});"#;

/// The page.
pub fn render(page: &Page<'_>) -> String {
    let r = page.report;
    // Per-second buckets once the trace is long enough for them to show a shape.
    let span_s = page.timeline.bucket_ns * page.timeline.buckets as f64 / 1e9;
    let tl = if span_s >= 20.0 {
        page.timeline.coarsened_to(1e9)
    } else {
        page.timeline.clone()
    };
    let data = serde_json::json!({
        "report": r,
        "timeline": tl,
        "diagnosis": page.diagnosis,
    });
    let report_value = &data["report"];
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><style>{STYLE}</style><script>{ERROR_HOOK}</script></head><body>",
        esc(&page.title)
    );
    let _ = write!(
        out,
        "<header><h1>{}</h1><p>{:.3} s of trace, {} events, {} VM(s), generated by kvmscope {}</p>",
        esc(&page.title),
        r.overview.duration_ns as f64 / 1e9,
        int(r.overview.events),
        r.overview.vms.len(),
        env!("CARGO_PKG_VERSION")
    );
    for n in &page.notes {
        let _ = write!(out, "<p>{}</p>", esc(n));
    }
    out.push_str("</header><main>");
    inputs(&mut out, report_value, r);
    if let Some(d) = page.diagnosis {
        findings(&mut out, d);
    }
    over_time(&mut out, &tl, r);
    heat(&mut out, &tl, r);
    latency(&mut out, &tl, r);
    exit_tables(&mut out, report_value, r);
    accesses(&mut out, report_value);
    halt_and_timers(&mut out, report_value, &tl);
    interrupts(&mut out, report_value);
    mmu(&mut out, report_value, r);
    guest(&mut out, report_value, r);
    if let Some(svg) = page.flame_svg {
        let _ = write!(
            out,
            r#"<section id="flame"><h2>Flame graph (host CPU stacks)</h2><img class="flame" alt="flame graph" src="data:image/svg+xml;base64,{}"></section>"#,
            base64(svg.as_bytes())
        );
    }
    out.push_str(r#"<section id="events"><h2>Events by name</h2>"#);
    table(
        &mut out,
        report_value,
        "t-events",
        "every event in the trace",
        "overview.by_name",
        &[("event", "0", Fmt::Text), ("count", "1", Fmt::Int)],
    );
    out.push_str("</section>");
    out.push_str(r#"<p id="selfcheck">checking…</p></main>"#);
    // `</` cannot appear inside the script element: JSON escapes it as `<\/`.
    let json = serde_json::to_string(&data)
        .unwrap_or_else(|_| "{}".into())
        .replace("</", "<\\/");
    let _ = write!(
        out,
        r#"<script type="application/json" id="kvmscope-data">{json}</script><script>{SCRIPT}</script></body></html>"#
    );
    out.push('\n');
    out
}

fn inputs(out: &mut String, data: &Value, r: &Report) {
    out.push_str(r#"<section id="inputs"><h2>Input</h2>"#);
    if r.partial {
        out.push_str(r#"<p class="banner" id="partial">Partial: events were lost or an input was cut off; counts below are lower bounds.</p>"#);
    }
    table(
        out,
        data,
        "t-inputs",
        "files read",
        "inputs",
        &[
            ("file", "path", Fmt::Text),
            ("format", "format", Fmt::Text),
            ("bytes", "bytes", Fmt::Int),
            ("lines", "lines", Fmt::Int),
            ("events", "events", Fmt::Int),
            ("fields not parsed", "undecoded", Fmt::Int),
            ("unknown lines", "unknown_lines", Fmt::Int),
            ("lost events", "lost_total", Fmt::Int),
            ("cut off at byte", "truncated_at", Fmt::Int),
        ],
    );
    for (i, inp) in r.inputs.iter().enumerate() {
        if !inp.read.lost.is_empty() {
            table(
                out,
                data,
                &format!("t-lost-{i}"),
                &format!("{}: events lost per CPU", inp.path),
                &format!("inputs.{i}.lost"),
                &[("CPU", "0", Fmt::Id), ("lost", "1", Fmt::Int)],
            );
        }
    }
    facts(
        out,
        data,
        "t-overview",
        "trace",
        &[
            ("events analysed", "overview.events", Fmt::Int),
            ("duration (µs)", "overview.duration_ns", Fmt::Us),
        ],
    );
    for (v, vm) in r.overview.vms.iter().enumerate() {
        table(
            out,
            data,
            &format!("t-vm-{v}"),
            &format!(
                "VM {} ({}): vCPU threads",
                vm.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                vm.comm
            ),
            &format!("overview.vms.{v}.vcpus"),
            &[
                ("tid", "tid", Fmt::Id),
                ("thread", "comm", Fmt::Text),
                ("vCPU", "vcpu", Fmt::Id),
                ("KVM events", "kvm_events", Fmt::Int),
                ("exits", "exits", Fmt::Int),
                ("userspace exits", "userspace_exits", Fmt::Int),
            ],
        );
    }
    out.push_str("</section>");
}

fn findings(out: &mut String, d: &Diagnosis) {
    let _ = write!(
        out,
        r#"<section id="findings"><h2>Findings ({})</h2>"#,
        d.findings.len()
    );
    if d.findings.is_empty() {
        let _ = write!(
            out,
            "<p>No rule fired on {} events ({} KVM, {} guest-side) over {:.3} s{}.</p>",
            int(d.events),
            int(d.kvm_events),
            int(d.guest_events),
            d.duration_s,
            if d.system_snapshot {
                ""
            } else {
                "; no system snapshot, so configuration checks did not run"
            }
        );
    }
    for f in &d.findings {
        let sev = f.severity.as_str();
        let _ = write!(
            out,
            r#"<div class="finding {sev}" data-rule="{}"><span class="sev">{sev}</span><h3>{}</h3> <span class="note">rule <code>{}</code>, confidence {}</span><ul>"#,
            esc(f.rule),
            esc(&f.title),
            esc(f.rule),
            f.confidence
        );
        for e in &f.evidence {
            let _ = write!(out, "<li>{}</li>", esc(&e.to_string()));
        }
        out.push_str("</ul>");
        if !f.mechanism.is_empty() {
            let _ = write!(out, "<p>{}</p>", esc(&f.mechanism));
        }
        if !f.fix.is_empty() {
            out.push_str("<p><b>Fix:</b></p><ul>");
            for x in &f.fix {
                let _ = write!(out, "<li>{}", esc(&x.what));
                if let Some(c) = &x.command {
                    let _ = write!(out, "<br><code>{}</code>", esc(c));
                }
                out.push_str("</li>");
            }
            out.push_str("</ul>");
        }
        if !f.references.is_empty() {
            out.push_str(r#"<p class="note">References: "#);
            let refs: Vec<String> = f.references.iter().map(|x| esc(x)).collect();
            out.push_str(&refs.join(" · "));
            out.push_str("</p>");
        }
        out.push_str("</div>");
    }
    out.push_str("</section>");
}

fn legend(out: &mut String, layers: &[Layer<'_>]) {
    out.push_str(r#"<div class="legend">"#);
    for l in layers {
        let _ = write!(
            out,
            r#"<span><i style="background:{}"></i>{}</span>"#,
            l.colour,
            esc(l.name)
        );
    }
    out.push_str("</div>");
}

/// Top series as layers (rates per second), the rest summed as "other".
fn layers<'a>(
    series: impl Iterator<Item = (&'a str, &'a [u64])>,
    bucket_s: f64,
    n: usize,
) -> Vec<Layer<'a>> {
    let mut out: Vec<Layer<'a>> = Vec::new();
    let mut other = vec![0.0; n];
    let mut has_other = false;
    for (i, (name, counts)) in series.enumerate() {
        let rates: Vec<f64> = counts.iter().map(|&c| c as f64 / bucket_s).collect();
        if i < MAX_LAYERS {
            out.push(Layer {
                name,
                colour: PALETTE[i % PALETTE.len()],
                values: rates,
            });
        } else {
            has_other = true;
            for (o, v) in other.iter_mut().zip(rates) {
                *o += v;
            }
        }
    }
    if has_other {
        out.push(Layer {
            name: "other",
            colour: PALETTE[9],
            values: other,
        });
    }
    out
}

fn over_time(out: &mut String, tl: &TimelineReport, r: &Report) {
    let bucket_s = tl.bucket_ns / 1e9;
    let n = tl.buckets;
    out.push_str(r#"<section id="rate">"#);
    let (title, unit, ls) = if !tl.exits_by_reason.is_empty() {
        (
            "VM exits per second, by reason",
            "exits/s",
            layers(
                tl.exits_by_reason
                    .iter()
                    .map(|s| (s.name.as_str(), s.counts.as_slice())),
                bucket_s,
                n,
            ),
        )
    } else {
        (
            "Events per second, by name (this trace has no kvm_exit events)",
            "events/s",
            layers(
                tl.events_by_name
                    .iter()
                    .map(|s| (s.name.as_str(), s.counts.as_slice())),
                bucket_s,
                n,
            ),
        )
    };
    let _ = write!(
        out,
        r#"<h2>{title}</h2><p class="note">{} buckets of {} each, stacked; trace starts at {:.6} s on the trace clock.</p>"#,
        n,
        svg::secs(bucket_s),
        r.overview.first_ts_ns as f64 / 1e9
    );
    legend(out, &ls);
    out.push_str(&svg::stacked(
        "plot-rate",
        title,
        PLOT_W,
        260.0,
        bucket_s,
        &ls,
        unit,
    ));
    out.push_str("</section>");
}

fn heat(out: &mut String, tl: &TimelineReport, r: &Report) {
    let (series, what) = if !tl.exits_by_thread.is_empty() {
        (&tl.exits_by_thread, "exits")
    } else {
        (&tl.kvm_events_by_thread, "KVM events")
    };
    if series.is_empty() {
        return;
    }
    let mut rows: Vec<&kvmscope_analysis::timeline::ThreadSeries> = series.iter().collect();
    rows.sort_by(|a, b| b.total.cmp(&a.total).then(a.tid.cmp(&b.tid)));
    let shown = rows.len().min(MAX_HEAT_ROWS);
    let mut rows: Vec<_> = rows.into_iter().take(shown).collect();
    rows.sort_by_key(|t| t.tid);
    let label = |tid: u32| {
        for vm in &r.overview.vms {
            if let Some(v) = vm.vcpus.iter().find(|v| v.tid == tid) {
                let comm: String = v.comm.chars().take(14).collect();
                return match v.vcpu {
                    Some(n) => format!("vCPU {n} ({tid})"),
                    None => format!("{comm} ({tid})"),
                };
            }
        }
        format!("tid {tid}")
    };
    let cells: Vec<(String, &[u64])> = rows
        .iter()
        .map(|t| (label(t.tid), t.counts.as_slice()))
        .collect();
    let _ = write!(
        out,
        r#"<section id="heatmap"><h2>{what} per vCPU thread over time</h2><p class="note">darker = more {what} in the bucket (log scale){}.</p>"#,
        if series.len() > shown {
            format!("; the {shown} busiest of {} threads", series.len())
        } else {
            String::new()
        }
    );
    out.push_str(&svg::heatmap(
        "plot-heatmap",
        what,
        PLOT_W,
        tl.bucket_ns / 1e9,
        &cells,
        what,
    ));
    out.push_str("</section>");
}

fn latency(out: &mut String, tl: &TimelineReport, r: &Report) {
    let Some(exits) = &r.exits else { return };
    if tl.latency.is_empty() {
        return;
    }
    out.push_str(r#"<section id="latency"><h2>Exit handling time per reason</h2><p class="note">kvm_exit → next kvm_entry on the same thread, in power-of-two buckets; dashed lines: p50 and p99 of the exit table.</p><div class="hists">"#);
    for (i, h) in tl.latency.iter().take(6).enumerate() {
        let row = exits.rows.iter().find(|x| x.reason == h.reason);
        let marks: Vec<(&str, f64)> = row
            .map(|x| {
                vec![
                    ("p50", x.latency.p50_ns as f64),
                    ("p99", x.latency.p99_ns as f64),
                ]
            })
            .unwrap_or_default();
        let _ = write!(
            out,
            "<figure><figcaption>{} ({} samples)</figcaption>",
            esc(&h.reason),
            int(h.samples)
        );
        out.push_str(&svg::log2_histogram(
            &format!("plot-latency-{i}"),
            &h.reason,
            490.0,
            190.0,
            &h.buckets,
            PALETTE[i % PALETTE.len()],
            &marks,
        ));
        out.push_str("</figure>");
    }
    out.push_str("</div></section>");
}

fn exit_tables(out: &mut String, data: &Value, r: &Report) {
    let Some(exits) = &r.exits else { return };
    let arm = exits
        .rows
        .iter()
        .any(|x| x.isa == kvmscope_trace::Isa::Arm64);
    out.push_str(r#"<section id="exits"><h2>VM exits</h2>"#);
    facts(
        out,
        data,
        "t-exit-totals",
        "totals",
        &[
            ("exits", "exits.total", Fmt::Int),
            ("paired with an entry", "exits.paired", Fmt::Int),
            ("handling time (µs)", "exits.total_time_ns", Fmt::Us),
            ("open at the end", "exits.unpaired_exits", Fmt::Int),
            ("entries without exit", "exits.unpaired_entries", Fmt::Int),
        ],
    );
    let cols = with_latency(&[
        ("reason", "reason", Fmt::Text),
        ("isa", "isa", Fmt::Text),
        (if arm { "code / ESR EC" } else { "code" }, "code", Fmt::Hex),
        ("count", "count", Fmt::Int),
        ("count %", "count_pct", Fmt::Pct),
        ("time %", "time_pct", Fmt::Pct),
    ]);
    table(out, data, "t-exits", "by reason", "exits.rows", &cols);
    out.push_str("</section>");
}

fn accesses(out: &mut String, data: &Value) {
    let any = [
        "accesses.sysreg",
        "accesses.msr",
        "accesses.pio",
        "accesses.mmio",
    ]
    .iter()
    .any(|p| matches!(lookup(data, p), Some(Value::Array(a)) if !a.is_empty()));
    if !any {
        return;
    }
    out.push_str(r#"<section id="accesses"><h2>MSR, port I/O and MMIO accesses</h2>"#);
    table(
        out,
        data,
        "t-sysreg",
        "arm64 system-register traps (kvm_sys_access)",
        "accesses.sysreg",
        &with_latency(&[
            ("register", "name", Fmt::Text),
            ("write", "write", Fmt::Text),
            ("count", "count", Fmt::Int),
            ("meaning", "meaning", Fmt::Text),
        ]),
    );
    table(
        out,
        data,
        "t-msr",
        "MSR accesses KVM handled (kvm_msr)",
        "accesses.msr",
        &with_latency(&[
            ("MSR", "msr", Fmt::Hex),
            ("name", "name", Fmt::Text),
            ("write", "write", Fmt::Text),
            ("count", "count", Fmt::Int),
            ("#GP", "faults", Fmt::Int),
            ("last value", "last_value", Fmt::Hex),
        ]),
    );
    table(
        out,
        data,
        "t-pio",
        "port I/O (kvm_pio)",
        "accesses.pio",
        &with_latency(&[
            ("port", "port", Fmt::Hex),
            ("write", "write", Fmt::Text),
            ("count", "count", Fmt::Int),
            ("bytes", "bytes", Fmt::Int),
        ]),
    );
    table(
        out,
        data,
        "t-mmio",
        "MMIO (kvm_mmio)",
        "accesses.mmio",
        &with_latency(&[
            ("GPA", "gpa", Fmt::Hex),
            ("write", "write", Fmt::Text),
            ("count", "count", Fmt::Int),
            ("bytes", "bytes", Fmt::Int),
        ]),
    );
    table(
        out,
        data,
        "t-userspace",
        "exits to the VMM (kvm_userspace_exit)",
        "overview.userspace_exits",
        &[
            ("reason", "name", Fmt::Text),
            ("code", "reason", Fmt::Id),
            ("errno", "errno", Fmt::Id),
            ("count", "count", Fmt::Int),
        ],
    );
    out.push_str("</section>");
}

fn halt_and_timers(out: &mut String, data: &Value, tl: &TimelineReport) {
    out.push_str(r#"<section id="halt"><h2>Halt polling and timers</h2>"#);
    out.push_str(r#"<table id="t-halt"><caption>halted vCPU wake-ups (kvm_vcpu_wakeup)</caption><thead><tr><th></th><th class="n">samples</th><th class="n">min µs</th><th class="n">p50 µs</th><th class="n">p99 µs</th><th class="n">max µs</th><th class="n">mean µs</th></tr></thead><tbody>"#);
    for (label, p) in [
        ("woken while polling", "interrupts.halt.polled"),
        ("woken after sleeping", "interrupts.halt.waited"),
        ("arm64 WFI trap to re-entry", "interrupts.halt.wfi.wait"),
        ("arm64 WFE trap to re-entry", "interrupts.halt.wfe.wait"),
        ("APIC timer early/late by", "interrupts.timer.lapic_delta"),
    ] {
        let samples = lookup(data, &format!("{p}.samples")).and_then(Value::as_u64);
        if p.contains(".wf") && samples.unwrap_or(0) == 0 {
            continue; // arm64 only
        }
        let _ = write!(out, "<tr><th>{label}</th>");
        for (f, fmt) in [
            ("samples", Fmt::Int),
            ("min_ns", Fmt::Us),
            ("p50_ns", Fmt::Us),
            ("p99_ns", Fmt::Us),
            ("max_ns", Fmt::Us),
            ("mean_ns", Fmt::Us),
        ] {
            cell(out, data, &format!("{p}.{f}"), fmt);
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    facts(
        out,
        data,
        "t-halt-poll",
        "halt polling and the APIC timer",
        &[
            (
                "wake-ups caught by polling (%)",
                "interrupts.halt.poll_success_pct",
                Fmt::Pct,
            ),
            (
                "polls marked invalid",
                "interrupts.halt.poll_invalid",
                Fmt::Int,
            ),
            ("halt_poll_ns grown", "interrupts.halt.poll_grow", Fmt::Int),
            (
                "halt_poll_ns shrunk",
                "interrupts.halt.poll_shrink",
                Fmt::Int,
            ),
            (
                "hv timer on (kvm_hv_timer_state)",
                "interrupts.timer.hv_timer_on",
                Fmt::Int,
            ),
            ("hv timer off", "interrupts.timer.hv_timer_off", Fmt::Int),
            (
                "APIC timer fired early",
                "interrupts.timer.lapic_early",
                Fmt::Int,
            ),
            (
                "APIC timer fired late",
                "interrupts.timer.lapic_late",
                Fmt::Int,
            ),
        ],
    );
    if !tl.halt_wakeups.is_empty() {
        let bucket_s = tl.bucket_ns / 1e9;
        let ls = layers(
            tl.halt_wakeups
                .iter()
                .map(|s| (s.name.as_str(), s.counts.as_slice())),
            bucket_s,
            tl.buckets,
        );
        out.push_str("<p><b>Wake-ups per second</b> (polled: halt polling caught the wake-up; waited: the vCPU slept)</p>");
        legend(out, &ls);
        out.push_str(&svg::stacked(
            "plot-halt",
            "halt wake-ups per second",
            PLOT_W,
            200.0,
            bucket_s,
            &ls,
            "wake-ups/s",
        ));
    }
    out.push_str("</section>");
}

fn interrupts(out: &mut String, data: &Value) {
    let any = [
        "interrupts.injected",
        "interrupts.accepted",
        "interrupts.ipis",
        "interrupts.exceptions",
    ]
    .iter()
    .any(|p| matches!(lookup(data, p), Some(Value::Array(a)) if !a.is_empty()));
    if !any {
        return;
    }
    out.push_str(r#"<section id="interrupts"><h2>Interrupts</h2>"#);
    let vc = [("vector", "0", Fmt::Id), ("count", "1", Fmt::Int)];
    table(
        out,
        data,
        "t-injected",
        "injected (kvm_inj_virq)",
        "interrupts.injected",
        &vc,
    );
    table(
        out,
        data,
        "t-accepted",
        "accepted by the APIC (kvm_apic_accept_irq)",
        "interrupts.accepted",
        &vc,
    );
    table(
        out,
        data,
        "t-ipis",
        "IPIs (kvm_apic_ipi)",
        "interrupts.ipis",
        &[
            ("destination", "0", Fmt::Id),
            ("vector", "1", Fmt::Id),
            ("count", "2", Fmt::Int),
        ],
    );
    table(
        out,
        data,
        "t-exceptions",
        "exceptions injected",
        "interrupts.exceptions",
        &vc,
    );
    facts(
        out,
        data,
        "t-irq-misc",
        "other",
        &[
            ("EOIs", "interrupts.eoi", Fmt::Int),
            ("kvm_set_irq", "interrupts.set_irq", Fmt::Int),
            ("kvm_msi_set_irq", "interrupts.msi", Fmt::Int),
        ],
    );
    out.push_str("</section>");
}

fn mmu(out: &mut String, data: &Value, r: &Report) {
    if r.mmu.is_none() {
        return;
    }
    out.push_str(r#"<section id="mmu"><h2>MMU</h2>"#);
    table(
        out,
        data,
        "t-mmu",
        "kvmmmu events",
        "mmu.events",
        &[("event", "0", Fmt::Text), ("count", "1", Fmt::Int)],
    );
    table(
        out,
        data,
        "t-roots",
        "shadow root loads per vCPU thread",
        "mmu.root_loads",
        &[
            ("tid", "0", Fmt::Id),
            ("new", "1.new", Fmt::Int),
            ("existing", "1.existing", Fmt::Int),
        ],
    );
    facts(
        out,
        data,
        "t-faults",
        "page faults (kvm_page_fault) and CR3 writes",
        &[
            ("page faults", "mmu.page_faults.total", Fmt::Int),
            ("write", "mmu.page_faults.write", Fmt::Int),
            ("user", "mmu.page_faults.user", Fmt::Int),
            ("present", "mmu.page_faults.present", Fmt::Int),
            ("fetch", "mmu.page_faults.fetch", Fmt::Int),
            ("CR3 writes", "mmu.cr3_writes", Fmt::Int),
        ],
    );
    out.push_str("</section>");
}

fn guest(out: &mut String, data: &Value, r: &Report) {
    let Some(g) = &r.guest else {
        return;
    };
    // The traced kernel's own events: a guest's, unless that kernel runs KVM itself.
    out.push_str(if g.host_side {
        r#"<section id="guest"><h2>Host kernel's own events (timers, IPIs, MSR writes)</h2>"#
    } else {
        r#"<section id="guest"><h2>Guest-side events</h2>"#
    });
    table(
        out,
        data,
        "t-hrtimers",
        "hrtimers",
        "guest.timers.hrtimers",
        &[
            ("function", "function", Fmt::Text),
            ("CPU", "cpu", Fmt::Id),
            ("starts", "starts", Fmt::Int),
            ("expiries", "expiries", Fmt::Int),
            ("cancels", "cancels", Fmt::Int),
            ("re-armed in handler", "rearmed_in_handler", Fmt::Int),
        ],
    );
    table(
        out,
        data,
        "t-local-timer",
        "local timer interrupts",
        "guest.timers.local_timer",
        &[
            ("CPU", "cpu", Fmt::Id),
            ("interrupts", "interrupts", Fmt::Int),
        ],
    );
    table(
        out,
        data,
        "t-guest-msr",
        "MSR writes (msr:write_msr)",
        "guest.msr.rows",
        &[
            ("MSR", "msr", Fmt::Hex),
            ("name", "name", Fmt::Text),
            ("CPU", "cpu", Fmt::Id),
            ("writes", "writes", Fmt::Int),
        ],
    );
    table(
        out,
        data,
        "t-guest-ipi",
        "IPIs sent",
        "guest.ipi.sent",
        &[
            ("from CPU", "sender_cpu", Fmt::Id),
            ("to CPU", "target_cpu", Fmt::Id),
            ("kind", "kind", Fmt::Text),
            ("function", "function", Fmt::Text),
            ("sent", "sent", Fmt::Int),
        ],
    );
    table(
        out,
        data,
        "t-guest-csd",
        "csd functions",
        "guest.ipi.csd_functions",
        &[
            ("CPU", "cpu", Fmt::Id),
            ("function", "function", Fmt::Text),
            ("kind", "kind", Fmt::Text),
            ("runs", "runs", Fmt::Int),
        ],
    );
    out.push_str("</section>");
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        o.push(T[(n >> 18) as usize & 63] as char);
        o.push(T[(n >> 12) as usize & 63] as char);
        o.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        o.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmscope_analysis::timeline::Timeline;
    use kvmscope_analysis::{InputSummary, ReportBuilder};

    #[test]
    fn partial_input_and_hostile_names_are_shown_safely() {
        let text = "</script><b>-7 [000] .... 1.000000: kvm_exit: vcpu 0 reason HLT rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0\n\
                    </script><b>-7 [000] .... 1.000004: kvm_entry: vcpu 0, rip 0x1\n";
        let mut b = ReportBuilder::new();
        let mut t = Timeline::new();
        kvmscope_trace::text::decode_sequential(text.as_bytes(), |ev| {
            b.observe(ev);
            t.observe(ev);
        })
        .unwrap();
        let input = InputSummary {
            path: "a<b>.txt".into(),
            read: kvmscope_trace::text::TextStats {
                lost: vec![(1, 5)],
                ..Default::default()
            },
            lost_total: 5,
            ..InputSummary::default()
        };
        let report = b.finish(vec![input]);
        let timeline = t.finish();
        let html = render(&Page {
            title: "t".into(),
            report: &report,
            timeline: &timeline,
            diagnosis: None,
            flame_svg: None,
            notes: vec![],
        });
        assert!(html.contains("id=\"partial\""));
        assert!(html.contains("t-lost-0"));
        assert!(html.contains("a&lt;b&gt;.txt"));
        // The one `</script>` of the data element is its end: names inside are escaped.
        let data = html.split("id=\"kvmscope-data\">").nth(1).unwrap();
        let json = data.split("</script>").next().unwrap();
        assert!(json.contains("<\\/script>"));
        assert!(!html.contains("<b>-7"));
    }

    #[test]
    fn helpers() {
        assert_eq!(int(1234567), "1,234,567");
        assert_eq!(int(12), "12");
        assert_eq!(esc("<a&\"b>"), "&lt;a&amp;&quot;b&gt;");
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        let v = serde_json::json!({"a": [{"b": 3}]});
        assert_eq!(lookup(&v, "a.0.b"), Some(&serde_json::json!(3)));
    }
}
