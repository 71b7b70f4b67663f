//! Analyses over KVM trace events. Each analysis has `observe(&Event)` and `finish()` giving
//! plain data (`serde::Serialize`); [`report::ReportBuilder`] runs all the batch ones over one
//! event stream. Nothing here does I/O.

pub mod access;
pub mod exits;
pub mod guest;
pub mod interrupts;
pub mod keys;
pub mod mmu;
pub mod names;
pub mod overview;
pub mod pacing;
pub mod report;
pub mod stats;
pub mod timeline;

pub use report::{EventFilter, InputSide, InputSummary, Report, ReportBuilder};
