//! Timeline exports: KVM events as tracks, slices, instants and counters
//! ([`model::Exporter`]) written as Perfetto protobuf ([`perfetto::PerfettoSink`], through a
//! small hand-written protobuf encoder, [`proto`]) or Chrome JSON ([`chrome::ChromeSink`]).
//! Streaming: the output is written as events come, memory does not grow with the input.

pub mod chrome;
pub mod model;
pub mod perfetto;
pub mod proto;

pub use model::{ExportStats, Exporter, Sink};
