//! Every Rust-to-Python error mapping lives here. The exception classes are defined in
//! pure Python (`rustybackup/errors.py`, which never imports `_core`) and imported lazily,
//! because `CronError` needs two bases and `create_exception!` exceptions pickle badly
//! (PyO3/pyo3#4728).

use std::io;
use std::path::Path;

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyIsADirectoryError, PyNotADirectoryError, PyOSError, PyPermissionError,
};
use pyo3::prelude::*;

pyo3::import_exception!(rustybackup.errors, RustyBackupError);
pyo3::import_exception!(rustybackup.errors, CronError);
pyo3::import_exception!(rustybackup.errors, CatalogError);
pyo3::import_exception!(rustybackup.errors, NoRecoveryPath);
pyo3::import_exception!(rustybackup.errors, VerificationError);
pyo3::import_exception!(rustybackup.errors, ConfigError);
pyo3::import_exception!(rustybackup.errors, BackupError);
pyo3::import_exception!(rustybackup.errors, BackupCancelled);
pyo3::import_exception!(rustybackup.errors, EncryptionError);

/// Turns an `io::Error` about `path` into the matching `OSError` subclass with `errno`,
/// `strerror` and `filename` set. PyO3's own `From<io::Error>` drops the file name.
pub fn io_error(err: &io::Error, path: &Path) -> PyErr {
    let errno = err.raw_os_error().unwrap_or(0);
    let strerror = match err.raw_os_error() {
        Some(_) => strip_os_suffix(&err.to_string()),
        None => err.to_string(),
    };
    let filename = path.to_string_lossy().into_owned();
    let args = (errno, strerror, filename);
    match err.kind() {
        io::ErrorKind::NotFound => PyFileNotFoundError::new_err(args),
        io::ErrorKind::PermissionDenied => PyPermissionError::new_err(args),
        io::ErrorKind::AlreadyExists => PyFileExistsError::new_err(args),
        io::ErrorKind::IsADirectory => PyIsADirectoryError::new_err(args),
        io::ErrorKind::NotADirectory => PyNotADirectoryError::new_err(args),
        _ => PyOSError::new_err(args),
    }
}

/// `io::Error`'s Display appends " (os error N)"; Python's OSError prints errno itself.
fn strip_os_suffix(text: &str) -> String {
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// A cron engine error as `rustybackup.CronError` (a `ValueError`), message unchanged.
pub fn cron_error(err: crate::cron::CronError) -> PyErr {
    CronError::new_err(err.to_string())
}

/// Maps a scan-core error: I/O keeps errno and path, a size change is an `OSError` naming
/// the file (the same family as the read errors a batch already handles), bad arguments
/// are `ValueError`s, a cancel is `BackupCancelled`.
pub fn scan_error(err: crate::scan::ScanError) -> PyErr {
    use crate::scan::ScanError;
    match err {
        ScanError::Io { ref path, ref source } => io_error(source, path),
        ScanError::SizeChanged {
            ref path,
            expected,
            found,
        } => {
            // OSError prints the path itself ("[Errno 5] ...: '/path'"), so leave it out here.
            let what = match found {
                crate::scan::SizeChange::Shrunk(n) => format!("end of file after {n}"),
                crate::scan::SizeChange::Grew => "more data followed".to_string(),
            };
            let strerror = format!("file changed size while being read (was {expected} bytes at open, {what})");
            PyOSError::new_err((libc_eio(), strerror, path.to_string_lossy().into_owned()))
        }
        ScanError::InvalidBlockSize(_) | ScanError::UnknownAlgorithm(_) => {
            pyo3::exceptions::PyValueError::new_err(err.to_string())
        }
        ScanError::ThreadPool(_) => pyo3::exceptions::PyRuntimeError::new_err(err.to_string()),
        ScanError::Cancelled { .. } => BackupCancelled::new_err(err.to_string()),
    }
}

/// `EIO`: "the file changed under us" is an I/O condition scripts already treat as one.
fn libc_eio() -> i32 {
    5
}

/// Maps the chain logic's errors: no recovery path -> `NoRecoveryPath`, an inconsistent
/// catalog (duplicate ids, unknown set, missing parent, cycle) -> `CatalogError`.
pub fn chain_error(err: crate::chain::ChainError) -> PyErr {
    match err {
        crate::chain::ChainError::NoRecoveryPath(_) => NoRecoveryPath::new_err(err.to_string()),
        _ => CatalogError::new_err(err.to_string()),
    }
}

/// Maps an engine error: I/O errors keep their path (an `OSError` subclass with
/// `filename`), cancellation is `BackupCancelled`, everything else is `BackupError`
/// whose message names the piece, file and block.
pub fn engine_error(err: crate::engine::Error) -> PyErr {
    use crate::engine::Error;
    match err {
        Error::Io { path, source } => io_error(&source, &path),
        Error::Cancelled => BackupCancelled::new_err("cancelled"),
        other => BackupError::new_err(other.to_string()),
    }
}

/// Maps a WAL error: I/O keeps its path, a bad argument is a `ValueError`, a damaged
/// header or a database that does not fit the WAL is a `BackupError` naming the offset
/// or the file.
pub fn wal_error(err: crate::wal::WalError) -> PyErr {
    use crate::wal::WalError;
    match err {
        WalError::Io { path, source } => io_error(&source, &path),
        WalError::Argument(_) => pyo3::exceptions::PyValueError::new_err(err.to_string()),
        other => BackupError::new_err(other.to_string()),
    }
}

pyo3::import_exception!(rustybackup.errors, StorageError);
pyo3::import_exception!(rustybackup.errors, StorageAuthError);
pyo3::import_exception!(rustybackup.errors, BucketNotFound);
pyo3::import_exception!(rustybackup.errors, StorageUnreachable);
pyo3::import_exception!(rustybackup.errors, StorageNotFound);
pyo3::import_exception!(rustybackup.errors, StorageObjectExists);
pyo3::import_exception!(rustybackup.errors, RepositoryLocked);

/// Maps a storage-layer error: one class each for refused credentials, a missing bucket, an
/// unreachable server, a missing or existing object and a held lock; bad URLs, options and
/// keys are `ConfigError`s (a `ValueError`); local I/O keeps errno and path.
pub fn storage_error(err: crate::storage::StorageError) -> PyErr {
    use crate::storage::StorageError as E;
    let msg = err.to_string();
    match err {
        E::InvalidUrl { .. } | E::Config { .. } | E::InvalidKey { .. } => ConfigError::new_err(msg),
        E::Auth { .. } => StorageAuthError::new_err(msg),
        E::BucketNotFound { .. } => BucketNotFound::new_err(msg),
        E::Unreachable { .. } => StorageUnreachable::new_err(msg),
        E::NotFound { .. } => StorageNotFound::new_err(msg),
        E::AlreadyExists { .. } => StorageObjectExists::new_err(msg),
        E::Locked { .. } => RepositoryLocked::new_err(msg),
        E::Io { ref path, ref source } => io_error(source, path),
        E::SizeMismatch { .. } | E::Store { .. } | E::BadLock { .. } | E::Runtime(_) => StorageError::new_err(msg),
    }
}
