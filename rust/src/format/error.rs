//! The format's errors: each names the file, and a damaged byte also its offset.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What can go wrong writing or reading a piece or a block map.
#[derive(Debug)]
pub enum Error {
    /// An operating-system error on `path` (disk full, permission, vanished file).
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error; its kind and errno reach Python as an `OSError`.
        source: io::Error,
    },
    /// Bytes that are not a valid piece or block map of any version this build reads.
    Damaged {
        /// The file.
        path: PathBuf,
        /// Offset of the first byte (or of the field) found wrong.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// The trailer checksum does not match the bytes before it.
    Checksum {
        /// The file.
        path: PathBuf,
        /// Bytes `0..covered` are what the checksum covers (everything before the trailer).
        covered: u64,
        /// Hex digest recorded in the trailer.
        expected: String,
        /// Hex digest of the bytes now on disk.
        actual: String,
    },
}

impl Error {
    /// Wraps an `io::Error` with the file it was about.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A damaged byte or field at `offset` of `path`.
    pub fn damaged(path: impl Into<PathBuf>, offset: u64, detail: impl Into<String>) -> Self {
        Self::Damaged {
            path: path.into(),
            offset,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {}", path.display(), source),
            Self::Damaged { path, offset, detail } => {
                write!(f, "{}: {} (at offset {})", path.display(), detail, offset)
            }
            Self::Checksum {
                path,
                covered,
                expected,
                actual,
            } => write!(
                f,
                "{}: checksum mismatch over bytes 0..{} (expected {}, found {})",
                path.display(),
                covered,
                expected,
                actual
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The format's result type.
pub type Result<T> = std::result::Result<T, Error>;
