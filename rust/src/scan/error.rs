//! What can go wrong while hashing or scanning, each variant naming the file or value.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::algorithm::UnknownAlgorithm;

/// An error from the scan core. Every variant carries enough to name what and where.
#[derive(Debug)]
pub enum ScanError {
    /// Opening, reading or stat-ing `path` failed; `source` keeps the OS error (errno).
    Io {
        /// The file being read.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file's size changed while it was being read (a live source being written or
    /// truncated). The digest would describe no version of the file that ever existed,
    /// so none is returned; GNU tar reports "file changed as we read it" for the same race.
    SizeChanged {
        /// The file being read.
        path: PathBuf,
        /// Its size when the scan started.
        expected: u64,
        /// What was actually found: a shorter read, or more bytes than expected.
        found: SizeChange,
    },
    /// A block size outside [512 B, 16 MiB] or not a power of two.
    InvalidBlockSize(u64),
    /// An algorithm name nobody knows.
    UnknownAlgorithm(UnknownAlgorithm),
    /// The worker thread pool could not be started (the OS refused threads).
    ThreadPool(String),
    /// The per-block callback asked to stop (cancel, Ctrl-C) at `offset`.
    Cancelled {
        /// The file being read.
        path: PathBuf,
        /// Bytes consumed before stopping.
        offset: u64,
    },
}

/// How a file's size changed during a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeChange {
    /// End of file came early, after this many bytes.
    Shrunk(u64),
    /// Data was still there after the expected end.
    Grew,
}

impl ScanError {
    /// Wraps an `io::Error` about `path`.
    pub fn io(source: io::Error, path: impl Into<PathBuf>) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::SizeChanged {
                path,
                expected,
                found: SizeChange::Shrunk(n),
            } => write!(
                f,
                "file changed size while being read: {} (was {expected} bytes at open, end of file after {n})",
                path.display()
            ),
            Self::SizeChanged {
                path,
                expected,
                found: SizeChange::Grew,
            } => write!(
                f,
                "file changed size while being read: {} (was {expected} bytes at open, more data followed)",
                path.display()
            ),
            Self::InvalidBlockSize(n) => write!(
                f,
                "invalid block_size {n}: must be a power of two between 512 and 16777216 bytes (16 MiB)"
            ),
            Self::UnknownAlgorithm(e) => e.fmt(f),
            Self::ThreadPool(e) => write!(f, "cannot start the hashing thread pool: {e}"),
            Self::Cancelled { path, offset } => {
                write!(f, "scan of {} cancelled at byte {offset}", path.display())
            }
        }
    }
}

impl std::error::Error for ScanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<UnknownAlgorithm> for ScanError {
    fn from(e: UnknownAlgorithm) -> Self {
        Self::UnknownAlgorithm(e)
    }
}

/// A validated block size: a power of two in [512 B, 16 MiB] (pgBackRest's block
/// incremental sizes and database page sizes all fall inside).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockSize(usize);

impl BlockSize {
    /// Smallest accepted size (one disk sector).
    pub const MIN: u64 = 512;
    /// Largest accepted size; keeps the two read buffers of a scan bounded.
    pub const MAX: u64 = 16 * 1024 * 1024;

    /// Checks `n`, naming it in the error.
    pub fn new(n: u64) -> Result<Self, ScanError> {
        if (Self::MIN..=Self::MAX).contains(&n) && n.is_power_of_two() {
            usize::try_from(n).map(Self).map_err(|_| ScanError::InvalidBlockSize(n))
        } else {
            Err(ScanError::InvalidBlockSize(n))
        }
    }

    /// The size in bytes.
    pub fn get(self) -> usize {
        self.0
    }
}
