//! The engine's error enum: every variant names the file, piece, set and block it is about.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong writing, reading or restoring backup data.
#[derive(Debug)]
pub enum Error {
    /// An operating-system error on `path` (source unreadable, disk full, ...).
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The underlying error (its kind and errno reach Python as an `OSError`).
        source: io::Error,
    },
    /// A piece or block map whose structure is wrong (bad magic, version, truncated), or
    /// that does not fit the manifest; `detail` says where (offset, record, block).
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        detail: String,
    },
    /// The trailer checksum of a piece or block map does not match its bytes.
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
    /// A block whose bytes no longer hash to its recorded digest (or do not decompress).
    CorruptBlock {
        /// The piece holding the block.
        piece: PathBuf,
        /// The file the block belongs to (relative path), when known.
        file: String,
        /// Block number inside that file.
        block_index: u64,
        /// Offset of the stored bytes in the piece.
        offset: u64,
        /// Hex digest recorded in the index / block map.
        expected: String,
        /// Hex digest of what was read (or a reason, e.g. "zstd: ...").
        actual: String,
    },
    /// The progress hook asked to stop.
    Cancelled,
    /// A bad argument or a manifest entry the engine refuses (paths escaping the target).
    Invalid(String),
}

impl Error {
    /// Wraps an `io::Error` with the path it was about.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A structural error in `path`.
    pub fn format(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {}", path.display(), source),
            Self::Format { path, detail } => write!(f, "{}: {}", path.display(), detail),
            Self::Checksum {
                path,
                covered,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "{}: checksum mismatch over bytes 0..{} (expected {}, found {})",
                    path.display(),
                    covered,
                    expected,
                    actual
                )
            }
            Self::CorruptBlock {
                piece,
                file,
                block_index,
                offset,
                expected,
                actual,
            } => write!(
                f,
                "corrupt block {} of file {:?} in piece {} at offset {}: expected digest {}, found {}",
                block_index,
                file,
                piece.display(),
                offset,
                expected,
                actual
            ),
            Self::Cancelled => write!(f, "cancelled"),
            Self::Invalid(msg) => f.write_str(msg),
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

impl From<crate::format::Error> for Error {
    fn from(e: crate::format::Error) -> Self {
        use crate::format::Error as F;
        match e {
            F::Io { path, source } => Self::Io { path, source },
            F::Damaged { path, offset, detail } => Self::Format {
                path,
                detail: format!("{detail} (at offset {offset})"),
            },
            F::Checksum {
                path,
                covered,
                expected,
                actual,
            } => Self::Checksum {
                path,
                covered,
                expected,
                actual,
            },
        }
    }
}

impl From<crate::format::BlockError> for Error {
    fn from(e: crate::format::BlockError) -> Self {
        use crate::format::BlockError as B;
        match e {
            B::Format(e) => e.into(),
            B::Corrupt {
                piece,
                file,
                block_index,
                offset,
                expected,
                actual,
            } => Self::CorruptBlock {
                piece,
                file,
                block_index,
                offset,
                expected,
                actual,
            },
        }
    }
}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, Error>;
