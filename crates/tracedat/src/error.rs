//! The one error type of this crate: what could not be read, and where (file, line or byte
//! offset).

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing trace data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceDatError {
    /// A `format`, `header_page` or `header_event` description could not be understood.
    #[error("cannot parse {what} at line {line}: {message}")]
    Format {
        what: String,
        line: usize,
        message: String,
    },

    /// Binary trace data (a ring-buffer page or a trace.dat file) is truncated or corrupt.
    #[error("{what}: corrupt or truncated data at byte offset {offset}: {message}")]
    Corrupt {
        what: String,
        offset: u64,
        message: String,
    },

    /// Reading an input file failed.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Any other I/O failure (writing a file), with the file it concerns.
    #[error("{context} ({path})")]
    Io {
        context: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TraceDatError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TraceDatError::Read {
            path: path.into(),
            source,
        }
    }
}
