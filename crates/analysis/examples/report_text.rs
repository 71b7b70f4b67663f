//! Decodes text traces and runs every analysis, without the CLI: a small binary to profile
//! the text path with (`perf record`), e.g.
//! `cargo run --release -p kvmscope-analysis --example report_text -- FILE [seq]`.

use kvmscope_analysis::ReportBuilder;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: report_text FILE [seq]");
        std::process::exit(2);
    };
    let file = std::fs::File::open(path).expect("open the input");
    let mut builder = ReportBuilder::new();
    let t = std::time::Instant::now();
    let stats = if args.get(1).is_some_and(|a| a == "seq") {
        kvmscope_trace::text::decode_sequential(file, |ev| builder.observe(ev))
    } else {
        kvmscope_trace::text::decode(file, |ev| builder.observe(ev))
    }
    .expect("decode");
    let report = builder.finish(Vec::new());
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} bytes, {} events, {} names in {secs:.3} s: {:.0} MB/s, {:.2} M events/s",
        stats.bytes,
        stats.events,
        report.overview.by_name.len(),
        stats.bytes as f64 / secs / 1e6,
        stats.events as f64 / secs / 1e6
    );
}
