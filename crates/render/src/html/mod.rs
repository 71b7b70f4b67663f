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

use kvmscope_analysis::timeline::{Series, TimelineReport};
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

/// Whether the report has a non-empty array at `path`.
fn has_rows(data: &Value, path: &str) -> bool {
    matches!(lookup(data, path), Some(Value::Array(a)) if !a.is_empty())
}

/// One table cell showing the report value at `path`.
fn cell(out: &mut String, data: &Value, path: &str, fmt: Fmt) {
    let v = lookup(data, path).unwrap_or(&Value::Null);
    let k = esc(path);
    // Numbers: right-aligned, with what the page's script needs to compare them with the data.
    let number = match (fmt, v.as_u64(), v.as_f64()) {
        (Fmt::Int, Some(u), _) => Some(("", int(u))),
        (Fmt::Id, Some(u), _) => Some(("", u.to_string())),
        (Fmt::Us, _, Some(f)) => Some((
            r#" data-scale="1000" data-dp="3""#,
            format!("{:.3}", f / 1000.0),
        )),
        (Fmt::Pct, _, Some(f)) => Some((r#" data-dp="1""#, format!("{f:.1}"))),
        (Fmt::Hex, Some(u), _) => Some((r#" data-hex="1""#, format!("{u:#x}"))),
        _ => None,
    };
    if let Some((attrs, shown)) = number {
        let _ = write!(out, r#"<td class="n" data-k="{k}"{attrs}>{shown}</td>"#);
        return;
    }
    let text = match v {
        Value::String(s) => esc(s),
        Value::Bool(b) => (if *b { "yes" } else { "no" }).to_string(),
        Value::Null => String::new(),
        other => esc(&other.to_string()),
    };
    let _ = write!(out, "<td>{text}</td>");
}

impl Fmt {
    /// A column of this format showing the value at `path`, headed by the path's last name.
    const fn at(self, path: &'static str) -> Col {
        Col {
            title: None,
            path,
            fmt: self,
        }
    }
}

/// A table's column (its path is a field of each row) or a key-value table's row (its path is
/// from the report's root): where the value is and how it shows.
#[derive(Debug, Clone, Copy)]
struct Col {
    /// The heading; `None`: the path's last name.
    title: Option<&'static str>,
    path: &'static str,
    fmt: Fmt,
}

impl Col {
    /// The same column under another heading than its path's last name.
    const fn titled(self, title: &'static str) -> Col {
        Col {
            title: Some(title),
            ..self
        }
    }
    fn title(&self) -> &'static str {
        self.title
            .unwrap_or_else(|| self.path.rsplit('.').next().unwrap_or(self.path))
    }
}

// Columns that several tables share.
const COUNT: Col = Fmt::Int.at("count");
const WRITE: Col = Fmt::Text.at("write");
const BYTES: Col = Fmt::Int.at("bytes");
const NAME: Col = Fmt::Text.at("name");
const MSR_INDEX: Col = Fmt::Hex.at("msr").titled("MSR");
const CPU: Col = Fmt::Id.at("cpu").titled("CPU");
const FUNCTION: Col = Fmt::Text.at("function");
const KIND: Col = Fmt::Text.at("kind");
/// `(name, count)` pairs.
const EVENT_COUNTS: &[Col] = &[
    Fmt::Text.at("0").titled("event"),
    Fmt::Int.at("1").titled("count"),
];
/// `(vector, count)` pairs.
const VECTOR_COUNTS: &[Col] = &[
    Fmt::Id.at("0").titled("vector"),
    Fmt::Int.at("1").titled("count"),
];

/// The fields of a latency summary (`kvmscope_analysis::Latency`): the last columns of the
/// tables whose rows have a `latency`, and the columns of the halt table.
const LATENCY: [Col; 6] = [
    Fmt::Int.at("samples"),
    Fmt::Us.at("min_ns").titled("min µs"),
    Fmt::Us.at("p50_ns").titled("p50 µs"),
    Fmt::Us.at("p99_ns").titled("p99 µs"),
    Fmt::Us.at("max_ns").titled("max µs"),
    Fmt::Us.at("mean_ns").titled("mean µs"),
];

/// One table of the page.
#[derive(Debug)]
struct Spec<'a> {
    /// The `<section>` it is in (see [`TABLES`]).
    section: &'a str,
    id: &'a str,
    caption: &'a str,
    /// `Some`: a table over the array at this path, a row per element (at most [`MAX_ROWS`]);
    /// `None`: key-value rows, one per column, each a single value.
    rows: Option<&'a str>,
    cols: &'a [Col],
    /// The rows have a `latency` summary, shown as the last columns.
    latency: bool,
}

impl<'a> Spec<'a> {
    const fn rows(
        section: &'a str,
        id: &'a str,
        caption: &'a str,
        path: &'a str,
        cols: &'a [Col],
    ) -> Self {
        Spec {
            section,
            id,
            caption,
            rows: Some(path),
            cols,
            latency: false,
        }
    }
    const fn facts(section: &'a str, id: &'a str, caption: &'a str, cols: &'a [Col]) -> Self {
        Spec {
            section,
            id,
            caption,
            rows: None,
            cols,
            latency: false,
        }
    }
    const fn with_latency(self) -> Self {
        Spec {
            latency: true,
            ..self
        }
    }

    fn write(&self, out: &mut String, data: &Value) {
        match self.rows {
            Some(path) => self.table(out, data, path),
            None => self.facts_table(out, data),
        }
    }

    fn table(&self, out: &mut String, data: &Value, path: &str) {
        let Some(Value::Array(rows)) = lookup(data, path) else {
            return;
        };
        if rows.is_empty() {
            return;
        }
        let latency: &[Col] = if self.latency { &LATENCY } else { &[] };
        let cols = || {
            let own = self.cols.iter().map(|c| ("", c));
            own.chain(latency.iter().map(|c| ("latency.", c)))
        };
        table_head(out, self.id, self.caption, cols().map(|(_, c)| c));
        for i in 0..rows.len().min(MAX_ROWS) {
            out.push_str("<tr>");
            for (under, c) in cols() {
                cell(out, data, &format!("{path}.{i}.{under}{}", c.path), c.fmt);
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

    fn facts_table(&self, out: &mut String, data: &Value) {
        let _ = write!(
            out,
            r#"<table id="{}" class="kv"><caption>{}</caption><tbody>"#,
            self.id,
            esc(self.caption)
        );
        for c in self.cols {
            let _ = write!(out, "<tr><th>{}</th>", esc(c.title()));
            cell(out, data, c.path, c.fmt);
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
    }
}

/// A table's opening up to its body: caption and a heading per column.
fn table_head<'c>(out: &mut String, id: &str, caption: &str, cols: impl Iterator<Item = &'c Col>) {
    let _ = write!(
        out,
        r#"<table id="{id}"><caption>{}</caption><thead><tr>"#,
        esc(caption)
    );
    for c in cols {
        let class = if matches!(c.fmt, Fmt::Text) {
            ""
        } else {
            " class=\"n\""
        };
        let _ = write!(out, "<th{class}>{}</th>", esc(c.title()));
    }
    out.push_str("</tr></thead><tbody>");
}

/// Writes the [`TABLES`] of the section `id`.
fn tables(out: &mut String, data: &Value, id: &str) {
    for t in TABLES.iter().filter(|t| t.section == id) {
        t.write(out, data);
    }
}

/// Writes the section `id` of the page that is tables only: its heading and its [`TABLES`].
fn section(out: &mut String, data: &Value, id: &str, title: &str) {
    let _ = write!(out, r#"<section id="{id}"><h2>{title}</h2>"#);
    tables(out, data, id);
    out.push_str("</section>");
}

/// Whether a table of the section `id` over the report's own part `id` has rows: the
/// sections of accesses and of interrupts are left out without (the table of exits to the
/// VMM, from `overview`, and the key-value tables do not count).
fn section_has_rows(data: &Value, id: &str) -> bool {
    let own = format!("{id}.");
    TABLES.iter().any(|t| {
        t.section == id
            && t.rows
                .is_some_and(|p| p.starts_with(&own) && has_rows(data, p))
    })
}

const SYSREG: &[Col] = &[
    Fmt::Text.at("name").titled("register"),
    WRITE,
    COUNT,
    Fmt::Text.at("meaning"),
];
const MSR: &[Col] = &[
    MSR_INDEX,
    NAME,
    WRITE,
    COUNT,
    Fmt::Int.at("faults").titled("#GP"),
    Fmt::Hex.at("last_value").titled("last value"),
];
const PIO: &[Col] = &[Fmt::Hex.at("port"), WRITE, COUNT, BYTES];
const MMIO: &[Col] = &[Fmt::Hex.at("gpa").titled("GPA"), WRITE, COUNT, BYTES];
const USERSPACE: &[Col] = &[
    Fmt::Text.at("name").titled("reason"),
    Fmt::Id.at("reason").titled("code"),
    Fmt::Id.at("errno"),
    COUNT,
];
const HALT_POLL: &[Col] = &[
    Fmt::Pct
        .at("interrupts.halt.poll_success_pct")
        .titled("wake-ups caught by polling (%)"),
    Fmt::Int
        .at("interrupts.halt.poll_invalid")
        .titled("polls marked invalid"),
    Fmt::Int
        .at("interrupts.halt.poll_grow")
        .titled("halt_poll_ns grown"),
    Fmt::Int
        .at("interrupts.halt.poll_shrink")
        .titled("halt_poll_ns shrunk"),
    Fmt::Int
        .at("interrupts.timer.hv_timer_on")
        .titled("hv timer on (kvm_hv_timer_state)"),
    Fmt::Int
        .at("interrupts.timer.hv_timer_off")
        .titled("hv timer off"),
    Fmt::Int
        .at("interrupts.timer.lapic_early")
        .titled("APIC timer fired early"),
    Fmt::Int
        .at("interrupts.timer.lapic_late")
        .titled("APIC timer fired late"),
];
const IPIS: &[Col] = &[
    Fmt::Id.at("0").titled("destination"),
    Fmt::Id.at("1").titled("vector"),
    Fmt::Int.at("2").titled("count"),
];
const IRQ_MISC: &[Col] = &[
    Fmt::Int.at("interrupts.eoi").titled("EOIs"),
    Fmt::Int.at("interrupts.set_irq").titled("kvm_set_irq"),
    Fmt::Int.at("interrupts.msi").titled("kvm_msi_set_irq"),
];
const ROOTS: &[Col] = &[
    Fmt::Id.at("0").titled("tid"),
    Fmt::Int.at("1.new"),
    Fmt::Int.at("1.existing"),
];
const FAULTS: &[Col] = &[
    Fmt::Int.at("mmu.page_faults.total").titled("page faults"),
    Fmt::Int.at("mmu.page_faults.write"),
    Fmt::Int.at("mmu.page_faults.user"),
    Fmt::Int.at("mmu.page_faults.present"),
    Fmt::Int.at("mmu.page_faults.fetch"),
    Fmt::Int.at("mmu.cr3_writes").titled("CR3 writes"),
];
const HRTIMERS: &[Col] = &[
    FUNCTION,
    CPU,
    Fmt::Int.at("starts"),
    Fmt::Int.at("expiries"),
    Fmt::Int.at("cancels"),
    Fmt::Int
        .at("rearmed_in_handler")
        .titled("re-armed in handler"),
];
const LOCAL_TIMER: &[Col] = &[CPU, Fmt::Int.at("interrupts")];
const GUEST_MSR: &[Col] = &[MSR_INDEX, NAME, CPU, Fmt::Int.at("writes")];
const GUEST_IPI: &[Col] = &[
    Fmt::Id.at("sender_cpu").titled("from CPU"),
    Fmt::Id.at("target_cpu").titled("to CPU"),
    KIND,
    FUNCTION,
    Fmt::Int.at("sent"),
];
const CSD: &[Col] = &[CPU, FUNCTION, KIND, Fmt::Int.at("runs")];

/// The tables whose columns are fixed, in page order, each with the id of its section (see
/// [`tables`] and [`section`]; the input and exit sections build theirs as they go).
#[rustfmt::skip]
const TABLES: &[Spec<'static>] = &[
    Spec::facts("halt", "t-halt-poll", "halt polling and the APIC timer", HALT_POLL),
    Spec::rows("accesses", "t-sysreg", "arm64 system-register traps (kvm_sys_access)", "accesses.sysreg", SYSREG).with_latency(),
    Spec::rows("accesses", "t-msr", "MSR accesses KVM handled (kvm_msr)", "accesses.msr", MSR).with_latency(),
    Spec::rows("accesses", "t-pio", "port I/O (kvm_pio)", "accesses.pio", PIO).with_latency(),
    Spec::rows("accesses", "t-mmio", "MMIO (kvm_mmio)", "accesses.mmio", MMIO).with_latency(),
    Spec::rows("accesses", "t-userspace", "exits to the VMM (kvm_userspace_exit)", "overview.userspace_exits", USERSPACE),
    Spec::rows("interrupts", "t-injected", "injected (kvm_inj_virq)", "interrupts.injected", VECTOR_COUNTS),
    Spec::rows("interrupts", "t-accepted", "accepted by the APIC (kvm_apic_accept_irq)", "interrupts.accepted", VECTOR_COUNTS),
    Spec::rows("interrupts", "t-ipis", "IPIs (kvm_apic_ipi)", "interrupts.ipis", IPIS),
    Spec::rows("interrupts", "t-exceptions", "exceptions injected", "interrupts.exceptions", VECTOR_COUNTS),
    Spec::facts("interrupts", "t-irq-misc", "other", IRQ_MISC),
    Spec::rows("mmu", "t-mmu", "kvmmmu events", "mmu.events", EVENT_COUNTS),
    Spec::rows("mmu", "t-roots", "shadow root loads per vCPU thread", "mmu.root_loads", ROOTS),
    Spec::facts("mmu", "t-faults", "page faults (kvm_page_fault) and CR3 writes", FAULTS),
    Spec::rows("guest", "t-hrtimers", "hrtimers", "guest.timers.hrtimers", HRTIMERS),
    Spec::rows("guest", "t-local-timer", "local timer interrupts", "guest.timers.local_timer", LOCAL_TIMER),
    Spec::rows("guest", "t-guest-msr", "MSR writes (msr:write_msr)", "guest.msr.rows", GUEST_MSR),
    Spec::rows("guest", "t-guest-ipi", "IPIs sent", "guest.ipi.sent", GUEST_IPI),
    Spec::rows("guest", "t-guest-csd", "csd functions", "guest.ipi.csd_functions", CSD),
    Spec::rows("events", "t-events", "every event in the trace", "overview.by_name", EVENT_COUNTS),
];

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
    section(&mut out, report_value, "events", "Events by name");
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
    let files = [
        Fmt::Text.at("path").titled("file"),
        Fmt::Text.at("format"),
        BYTES,
        Fmt::Int.at("lines"),
        Fmt::Int.at("events"),
        Fmt::Int.at("undecoded").titled("fields not parsed"),
        Fmt::Int.at("unknown_lines").titled("unknown lines"),
        Fmt::Int.at("lost_total").titled("lost events"),
        Fmt::Int.at("truncated_at").titled("cut off at byte"),
    ];
    Spec::rows("inputs", "t-inputs", "files read", "inputs", &files).write(out, data);
    let lost = [
        Fmt::Id.at("0").titled("CPU"),
        Fmt::Int.at("1").titled("lost"),
    ];
    for (i, inp) in r.inputs.iter().enumerate() {
        if !inp.read.lost.is_empty() {
            let id = format!("t-lost-{i}");
            let caption = format!("{}: events lost per CPU", inp.path);
            let path = format!("inputs.{i}.lost");
            Spec::rows("inputs", &id, &caption, &path, &lost).write(out, data);
        }
    }
    let trace = [
        Fmt::Int.at("overview.events").titled("events analysed"),
        Fmt::Us.at("overview.duration_ns").titled("duration (µs)"),
    ];
    Spec::facts("inputs", "t-overview", "trace", &trace).write(out, data);
    let vcpus = [
        Fmt::Id.at("tid"),
        Fmt::Text.at("comm").titled("thread"),
        Fmt::Id.at("vcpu").titled("vCPU"),
        Fmt::Int.at("kvm_events").titled("KVM events"),
        Fmt::Int.at("exits"),
        Fmt::Int.at("userspace_exits").titled("userspace exits"),
    ];
    for (v, vm) in r.overview.vms.iter().enumerate() {
        let id = format!("t-vm-{v}");
        let caption = format!(
            "VM {} ({}): vCPU threads",
            vm.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            vm.comm
        );
        let path = format!("overview.vms.{v}.vcpus");
        Spec::rows("inputs", &id, &caption, &path, &vcpus).write(out, data);
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
fn layers(series: &[Series], bucket_s: f64, n: usize) -> Vec<Layer<'_>> {
    let mut out: Vec<Layer<'_>> = Vec::new();
    let mut other = vec![0.0; n];
    let mut has_other = false;
    for (i, s) in series.iter().enumerate() {
        let rates: Vec<f64> = s.counts.iter().map(|&c| c as f64 / bucket_s).collect();
        if i < MAX_LAYERS {
            out.push(Layer {
                name: &s.name,
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
    let (title, unit, series) = if !tl.exits_by_reason.is_empty() {
        (
            "VM exits per second, by reason",
            "exits/s",
            &tl.exits_by_reason,
        )
    } else {
        (
            "Events per second, by name (this trace has no kvm_exit events)",
            "events/s",
            &tl.events_by_name,
        )
    };
    let ls = layers(series, bucket_s, n);
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
    let totals = [
        Fmt::Int.at("exits.total").titled("exits"),
        Fmt::Int.at("exits.paired").titled("paired with an entry"),
        Fmt::Us
            .at("exits.total_time_ns")
            .titled("handling time (µs)"),
        Fmt::Int
            .at("exits.unpaired_exits")
            .titled("open at the end"),
        Fmt::Int
            .at("exits.unpaired_entries")
            .titled("entries without exit"),
    ];
    Spec::facts("exits", "t-exit-totals", "totals", &totals).write(out, data);
    let code = Fmt::Hex.at("code");
    let cols = [
        Fmt::Text.at("reason"),
        Fmt::Text.at("isa"),
        if arm {
            code.titled("code / ESR EC")
        } else {
            code
        },
        COUNT,
        Fmt::Pct.at("count_pct").titled("count %"),
        Fmt::Pct.at("time_pct").titled("time %"),
    ];
    Spec::rows("exits", "t-exits", "by reason", "exits.rows", &cols)
        .with_latency()
        .write(out, data);
    out.push_str("</section>");
}

fn halt_and_timers(out: &mut String, data: &Value, tl: &TimelineReport) {
    out.push_str(r#"<section id="halt"><h2>Halt polling and timers</h2>"#);
    // A row per latency summary, its label in the first column.
    let label = Fmt::Text.at("");
    let cols = std::iter::once(&label).chain(&LATENCY);
    table_head(
        out,
        "t-halt",
        "halted vCPU wake-ups (kvm_vcpu_wakeup)",
        cols,
    );
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
        for c in &LATENCY {
            cell(out, data, &format!("{p}.{}", c.path), c.fmt);
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    tables(out, data, "halt");
    if !tl.halt_wakeups.is_empty() {
        let bucket_s = tl.bucket_ns / 1e9;
        let ls = layers(&tl.halt_wakeups, bucket_s, tl.buckets);
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

fn accesses(out: &mut String, data: &Value) {
    if section_has_rows(data, "accesses") {
        section(out, data, "accesses", "MSR, port I/O and MMIO accesses");
    }
}

fn interrupts(out: &mut String, data: &Value) {
    if section_has_rows(data, "interrupts") {
        section(out, data, "interrupts", "Interrupts");
    }
}

fn mmu(out: &mut String, data: &Value, r: &Report) {
    if r.mmu.is_some() {
        section(out, data, "mmu", "MMU");
    }
}

fn guest(out: &mut String, data: &Value, r: &Report) {
    let Some(g) = &r.guest else {
        return;
    };
    // The traced kernel's own events: a guest's, unless that kernel runs KVM itself.
    let title = if g.host_side {
        "Host kernel's own events (timers, IPIs, MSR writes)"
    } else {
        "Guest-side events"
    };
    section(out, data, "guest", title);
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
