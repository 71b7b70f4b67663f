//! trace-cmd's `trace.dat` file format, sans I/O: event `format` files ([`format`]), kernel
//! ring-buffer pages ([`ringbuf`]), the trace.dat reader and writer ([`file`]), trace.dat
//! records as kvmscope [`Event`](kvmscope_trace::Event)s ([`events`]), and a trace.dat
//! assembled from tracefs files copied off another machine ([`assemble`]).
//!
//! Readers take any [`file::ReadAt`] (a byte slice, or [`file::FileAt`] for a file read on
//! demand); writers take any `std::io::Write`. Nothing here touches the running kernel: that
//! is `kvmscope-capture`. No unsafe code; every parser reports the byte offset (or the line)
//! of what it could not read and never panics on bad input.

pub mod assemble;
pub mod error;
pub mod events;
pub mod file;
pub mod format;
pub mod ringbuf;
pub mod symbols;
pub mod write;

pub use error::TraceDatError;
pub use file::{FileAt, Merger, ReadAt, TraceDat};
