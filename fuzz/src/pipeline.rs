//! A text trace end to end: decode, every analysis (`ReportBuilder`), every diagnosis rule,
//! and the text/JSON renderers. Odd but decodable events (zero or huge time stamps, exits
//! without entries, unknown reasons) must not panic anywhere after the decoder either.

use kvmscope_analysis::{InputSummary, ReportBuilder};

/// One input.
pub fn run(data: &[u8]) {
    let mut builder = ReportBuilder::new();
    let Ok(stats) = kvmscope_trace::text::decode_sequential(data, |ev| builder.observe(ev)) else {
        return;
    };
    let input = InputSummary::text("fuzz", stats);
    let report = builder.finish(vec![input]);
    let _ = kvmscope_render::text::render(&report);
    let _ = kvmscope_render::json::render(&report);
    let d = kvmscope_diagnose::diagnose(&report, None);
    let _ = kvmscope_diagnose::render::text(&d);
    let _ = kvmscope_diagnose::render::json(&d);
}
