//! The trace layer of kvmscope: the event model every source decodes into, the knowledge
//! tables (exit reasons, MSRs, userspace exit reasons), and sans-I/O decoders.
//!
//! ```text
//! bytes (ftrace text, perf script, trace-cmd report) ──decode──► Event { ts, cpu, tid, kind }
//! ```
//! Nothing here opens files or talks to the kernel: decoders take `&str`/`Read`.

mod bytes;
pub mod event;
pub mod fields;
pub mod names;
pub mod tables;
pub mod text;

pub use event::{ArmExitKind, Event, EventKind, ExitReason, Isa, KvmExit, MmioKind, MmuKind};

/// Why an input could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("binary data at byte offset {offset}: this is not a text trace (for trace.dat use a trace.dat reader)")]
    Binary { offset: u64 },
    #[error("line {line} at byte offset {offset} is longer than 1 MiB: this is not a text trace")]
    LineTooLong { offset: u64, line: u64 },
    #[error("read failed at byte offset {offset}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
}
