//! The one error type of this crate.

use std::path::PathBuf;

/// What went wrong while reading or parsing a system file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A line of a kernel file did not have the expected shape.
    #[error("{file}: line {line} (byte {offset}): {problem}; is this really {file} from Linux? Send the file with a bug report if it is")]
    Parse {
        /// Which kernel file this was meant to be, e.g. `/proc/interrupts`.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// Byte offset of the start of that line.
        offset: usize,
        /// What was expected and what was found.
        problem: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The 1-based line number of a parse error.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::Parse { line, .. } => Some(*line),
            Error::Io { .. } => None,
        }
    }
}

/// Lines of a text with their 1-based number and byte offset, for error reporting.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    let mut offset = 0usize;
    text.split_inclusive('\n').enumerate().map(move |(i, raw)| {
        let start = offset;
        offset += raw.len();
        let text = raw.strip_suffix('\n').unwrap_or(raw);
        let text = text.strip_suffix('\r').unwrap_or(text);
        Line {
            number: i + 1,
            offset: start,
            text,
        }
    })
}

/// Reads the `CPU0 CPU1 ...` header that starts /proc/interrupts and /proc/softirqs: the
/// CPUs in column order. `lines` must skip blank lines.
pub(crate) fn cpu_header<'a>(
    lines: &mut impl Iterator<Item = Line<'a>>,
    file: &'static str,
) -> Result<Vec<u32>, Error> {
    let header = lines.next().ok_or(Error::Parse {
        file,
        line: 1,
        offset: 0,
        problem: "the file is empty; expected a header such as \"CPU0 CPU1\"".into(),
    })?;
    let mut cpus = Vec::new();
    for token in header.text.split_whitespace() {
        let n = token
            .strip_prefix("CPU")
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| {
                header.error(
                    file,
                    format!(
                        "header column {} is not CPU<n>: expected a header such as \"CPU0 CPU1\"",
                        excerpt(token)
                    ),
                )
            })?;
        cpus.push(n);
    }
    if cpus.is_empty() {
        return Err(header.error(file, "the header names no CPU"));
    }
    Ok(cpus)
}

/// One line of input with its position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    pub number: usize,
    pub offset: usize,
    pub text: &'a str,
}

impl Line<'_> {
    pub fn error(&self, file: &'static str, problem: impl Into<String>) -> Error {
        Error::Parse {
            file,
            line: self.number,
            offset: self.offset,
            problem: problem.into(),
        }
    }
}

/// Shortens a line for an error message.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        format!("{s:?}")
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}...", &s[..end])
    }
}
