//! Decode + report of one text trace in-process, for profiling the per-line path without the
//! CLI: `cargo run --release -p kvmscope-analysis --example report_text -- FILE [--sequential]`.

use kvmscope_analysis::ReportBuilder;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: report_text FILE [--sequential]");
    let sequential = args.next().as_deref() == Some("--sequential");
    let file = std::fs::File::open(&path).expect("open");
    let mut builder = ReportBuilder::new();
    let start = std::time::Instant::now();
    let stats = if sequential {
        kvmscope_trace::text::decode_sequential(file, |ev| builder.observe(ev))
    } else {
        kvmscope_trace::text::decode(file, |ev| builder.observe(ev))
    }
    .expect("decode");
    let report = builder.finish(Vec::new());
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} bytes, {} events ({} names) in {secs:.3} s: {:.0} MB/s",
        stats.bytes,
        stats.events,
        report.overview.by_name.len(),
        stats.bytes as f64 / secs / 1e6
    );
}
