//! kvmscope beyond one machine.
//!
//! - [`exposition`]: the Prometheus text exposition format (0.0.4), written by hand: metric
//!   families, escaped labels, counters, gauges and histograms; no I/O.
//! - [`http`]: a minimal std::net HTTP/1.1 server for `GET /metrics` (one request per
//!   connection, bounded request size, timeouts).
//! - [`exporter`]: the live state behind `kvmscope exporter`: the VMs on this host, their
//!   vCPU threads' tracepoint counters (the same kernel filters as `kvmscope top`), the label
//!   cardinality cap, findings of the rolling diagnosis, and the exporter's own health.

pub mod exporter;
pub mod exposition;
pub mod http;
