//! The bodies of the fuzz targets, one module per target, each with `run(&[u8])`. The targets
//! in `fuzz_targets/` call them; the root tests (`tests/fuzz_regressions.rs`) include this
//! file to replay every crash the campaign found (`tests/fixtures/fuzz/<target>/`) through
//! the same code, so a fixed crash stays fixed under plain `cargo test`.

pub mod format;
pub mod http_request;
pub mod pipeline;
pub mod ringbuf;
pub mod snapshot_json;
pub mod stacks_collapse;
pub mod stacks_folded;
pub mod system_proc;
pub mod text_decode;
pub mod text_line;
pub mod tracedat;
pub mod tracedat_events;

use std::sync::OnceLock;

use kvmscope_analysis::{Report, ReportBuilder};

/// Reports over three real lab captures (an IPI ping-pong, a timer storm, HLT wake-ups) that the
/// rule-running targets diagnose against whatever system facts the input makes.
pub fn real_reports() -> &'static [Report] {
    static R: OnceLock<Vec<Report>> = OnceLock::new();
    R.get_or_init(|| {
        [
            &include_bytes!("../../tests/fixtures/diagnose/ipi.txt")[..],
            &include_bytes!("../../tests/fixtures/diagnose/timer-storm.txt")[..],
            &include_bytes!("../../tests/fixtures/diagnose/hlt-2ms.txt")[..],
        ]
        .iter()
        .map(|t| {
            let mut b = ReportBuilder::new();
            kvmscope_trace::text::decode_sequential(*t, |ev| b.observe(ev)).unwrap();
            b.finish(Vec::new())
        })
        .collect()
    })
}
