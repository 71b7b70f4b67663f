//! Stack samples for kvmscope: `perf script` text folded into FlameGraph's collapsed format
//! (byte-identical to `stackcollapse-perf.pl`), KVM attribution of where host CPU went, and
//! flame graph SVGs with KVM-aware colours.
//!
//! Nothing here does I/O beyond reading a caller's `Read` and writing a caller's `Write`.

pub mod attribution;
pub mod collapse;
pub mod count;
pub mod flame;
pub mod folded;
pub mod kvm;
mod parallel;
pub mod perf_script;

pub use attribution::Attribution;
pub use collapse::{collapse_reader, collapse_reader_blocks, Collapsed, Collapser, Options};
pub use count::Count;
pub use folded::{InputKind, Stack};

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
    /// A folded stack line could not be read.
    #[error("folded stacks, line {line}: {reason} (expected `frame;frame;... count`)")]
    Folded {
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Nothing to draw.
    #[error("no stack samples in the input: give `perf script` output of `perf record -g`, or folded stacks (`frame;frame count`)")]
    NoStacks,
    /// The sample counts add up to more than [`flame::MAX_SAMPLES`]: not a profile (and more
    /// than the flame graph's arithmetic can hold).
    #[error("the sample counts add up to more than 2^53: not a profile of real samples")]
    TooManySamples,
    /// inferno could not draw the SVG (or write it).
    #[error("drawing the flame graph failed")]
    Render(#[source] std::io::Error),
}
