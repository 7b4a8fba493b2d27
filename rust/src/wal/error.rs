//! The WAL module's errors; each names what is wrong and where.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What can go wrong reading a WAL or applying it.
#[derive(Debug)]
pub enum WalError {
    /// The 32-byte WAL header is not one SQLite writes (magic, version, page size,
    /// checksum); `offset` is the field's.
    Header {
        /// Offset of the bad field in the header.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// An argument that does not fit the WAL (a frame index it does not hold, a seed
    /// given for frame 1, ...).
    Argument(String),
    /// The database file does not fit the WAL (another page size).
    Database {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The WAL kept changing under every read (restarted while it was read).
    Unsteady {
        /// The WAL file.
        path: PathBuf,
    },
    /// An operating-system error on `path`.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header { offset, detail } => write!(f, "WAL header, offset {offset}: {detail}"),
            Self::Argument(detail) => f.write_str(detail),
            Self::Database { path, detail } => write!(f, "{}: {detail}", path.display()),
            Self::Unsteady { path } => write!(
                f,
                "{}: cannot be read consistently (restarted under every read)",
                path.display()
            ),
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
