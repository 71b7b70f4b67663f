//! Stack samples for kvmscope: `perf script` text folded into FlameGraph's collapsed format
//! (byte-identical to `stackcollapse-perf.pl`), KVM attribution of where host CPU went, and
//! flame graph SVGs with KVM-aware colours.
//!
//! Nothing here does I/O beyond reading a caller's `Read` and writing a caller's `Write`.

pub mod collapse;
pub mod count;
mod parallel;
pub mod perf_script;

pub use collapse::{collapse_reader, collapse_reader_blocks, Collapsed, Collapser, Options};
pub use count::Count;

/// What went wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the input failed.
    #[error("reading input failed at byte offset {offset}")]
    Read {
        /// Bytes successfully read before the failure.
        offset: u64,
        #[source]
        source: std::io::Error,
    },
}
