//! Everything that reads from the running kernel: tracefs instances and their ring buffers,
//! perf_event_open, and the host facts a test or a capture needs. The file formats (event
//! formats, ring-buffer pages, trace.dat) are `kvmscope-tracedat`'s. Unsafe code is allowed in
//! this crate only, every block with a `// SAFETY:` argument.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod counters;
pub mod error;
pub mod guard;
pub mod host;
pub mod perf_sample;
pub mod recorder;
pub mod tracefs;

pub use error::CaptureError;
