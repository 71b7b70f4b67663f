//! The one error type of this crate: what failed, where (path or byte offset), and what the
//! user can do about it.

use std::path::PathBuf;

use crate::host::Unavailable;

/// Everything that can go wrong while capturing from the kernel or reading a capture file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// tracefs (or /dev/kvm) cannot be used at all.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),

    /// mkdir of a tracefs instance failed.
    #[error("cannot create tracing instance {path}; run as root, and check that tracefs is mounted read-write")]
    CreateInstance {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The kernel does not offer the requested trace event.
    #[error("trace event {system}:{event} does not exist ({path} is missing): load the module that provides it (e.g. `modprobe kvm`), or see {available} for what this kernel offers")]
    NoSuchEvent {
        system: String,
        event: String,
        path: PathBuf,
        available: PathBuf,
    },

    /// A system or event name that cannot be a tracefs name (contains `/`, `..` or is empty).
    #[error("invalid trace event name {0:?}: expected `system:event` with plain names")]
    InvalidEventName(String),

    /// The kernel refused an event filter expression.
    #[error("the kernel rejected filter {filter:?} for {path} ({kernel_message}); see Documentation/trace/events.rst (`field == value && ...`) and the event's `format` file for field names")]
    InvalidFilter {
        path: PathBuf,
        filter: String,
        kernel_message: String,
        #[source]
        source: std::io::Error,
    },

    /// Writing a tracefs control file failed.
    #[error("cannot write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },

    /// Reading a tracefs or /proc file failed.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// rmdir of a tracefs instance kept failing.
    #[error("cannot remove tracing instance {path}; remove it by hand with `rmdir {path}` once no process reads its trace_pipe")]
    RemoveInstance {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Trace data (an event format, a ring-buffer page, a trace.dat file) could not be read.
    #[error(transparent)]
    TraceDat(#[from] kvmscope_tracedat::TraceDatError),

    /// Any other I/O failure, with the file it concerns.
    #[error("{context} ({path})")]
    Io {
        context: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CaptureError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CaptureError::Read {
            path: path.into(),
            source,
        }
    }
}
