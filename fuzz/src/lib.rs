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
