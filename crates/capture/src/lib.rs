//! Everything that reads from the running kernel: tracefs instances and their ring buffers,
//! perf_event_open, and the host facts a test or a capture needs. Unsafe code is allowed in
//! this crate only, every block with a `// SAFETY:` argument.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod assemble;
pub mod counters;
pub mod error;
pub mod events;
pub mod format;
pub mod guard;
pub mod host;
pub mod perf_sample;
pub mod recorder;
pub mod ringbuf;
pub mod tracedat;
pub mod tracefs;

pub use error::CaptureError;
