//! Bindings for `crate::storage`: `ObjectStore` (a repository's storage, local or S3),
//! `ObjectMeta`, `SetUpload`, and lock objects (`RemoteLock`, `LockInfo`). Every call that
//! talks to the store or moves file data runs with the GIL released.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::{engine_error, storage_error};
use crate::storage::locks::{LockHandle, LockRecord, Purpose};
use crate::storage::restore::RestoreError;
use crate::storage::tail::TailUpload;
use crate::storage::{Backend, ObjectInfo, Storage};

/// One object: key relative to the repository root, size in bytes, last modification (UTC).
#[pyclass(frozen, module = "rustybackup._core", name = "ObjectMeta")]
pub struct PyObjectMeta {
    /// The key, relative to the repository root (`sets/<id>/manifest.json`).
    #[pyo3(get)]
    key: String,
    /// Size in bytes.
    #[pyo3(get)]
    size: u64,
    /// When the object was last written (an aware UTC datetime).
    #[pyo3(get)]
    last_modified: DateTime<Utc>,
    /// The store's entity tag, if it gave one.
    #[pyo3(get)]
    e_tag: Option<String>,
}

#[pymethods]
impl PyObjectMeta {
    fn __repr__(&self) -> String {
        format!(
            "ObjectMeta(key={:?}, size={}, last_modified={})",
            self.key,
            self.size,
            self.last_modified.to_rfc3339()
        )
    }
}

impl From<ObjectInfo> for PyObjectMeta {
    fn from(o: ObjectInfo) -> Self {
        Self {
            key: o.key,
            size: o.size,
            last_modified: o.last_modified,
            e_tag: o.e_tag,
        }
    }
}

/// What `ObjectStore.upload_set` sent.
#[pyclass(frozen, module = "rustybackup._core", name = "SetUpload")]
pub struct PySetUpload {
    /// Keys written, the manifest last.
    #[pyo3(get)]
    keys: Vec<String>,
    /// Bytes sent, the manifest included.
    #[pyo3(get)]
    bytes: u64,
    /// False when the manifest was already there with the same bytes (a retried upload).
    #[pyo3(get)]
    created: bool,
}

#[pymethods]
impl PySetUpload {
    fn __repr__(&self) -> String {
        format!(
            "SetUpload(keys={}, bytes={}, created={})",
            self.keys.len(),
            self.bytes,
            if self.created { "True" } else { "False" }
        )
    }
}

/// A lock object found in a repository (`ObjectStore.list_locks`).
#[pyclass(frozen, module = "rustybackup._core", name = "LockInfo")]
pub struct PyLockInfo {
    /// `locks/<id>.json`.
    #[pyo3(get)]
    key: String,
    #[pyo3(get)]
    id: String,
    #[pyo3(get)]
    host: String,
    #[pyo3(get)]
    pid: u32,
    /// "exclusive" or "shared".
    #[pyo3(get)]
    purpose: &'static str,
    #[pyo3(get)]
    created: DateTime<Utc>,
    #[pyo3(get)]
    expires: DateTime<Utc>,
}

impl PyLockInfo {
    fn new(key: String, r: LockRecord) -> Self {
        Self {
            key,
            id: r.id,
            host: r.host,
            pid: r.pid,
            purpose: r.purpose.as_str(),
            created: r.created,
            expires: r.expires,
        }
    }
}

#[pymethods]
impl PyLockInfo {
    /// Whether the lock holds at `now` (default: this host's clock).
    #[pyo3(signature = (now = None))]
    fn live(&self, now: Option<DateTime<Utc>>) -> bool {
        self.expires > now.unwrap_or_else(Utc::now)
    }

    fn __repr__(&self) -> String {
        format!(
            "LockInfo(key={:?}, host={:?}, pid={}, purpose={:?}, expires={})",
            self.key,
            self.host,
            self.pid,
            self.purpose,
            self.expires.to_rfc3339()
        )
    }
}

/// A held lock, refreshed in the background until `release()`; a context manager.
#[pyclass(frozen, module = "rustybackup._core", name = "RemoteLock")]
pub struct PyRemoteLock {
    inner: LockHandle,
}

#[pymethods]
impl PyRemoteLock {
    /// `locks/<id>.json`.
    #[getter]
    fn key(&self) -> String {
        self.inner.key().to_string()
    }

    /// The lock's current content (expiry as last written).
    #[getter]
    fn info(&self) -> PyLockInfo {
        PyLockInfo::new(self.inner.key().to_string(), self.inner.record())
    }

    /// Why the lock may be lost (a refresh failed), or None while it holds.
    #[getter]
    fn lost(&self) -> Option<String> {
        self.inner.lost()
    }

    /// Extends the lock now; raises `RepositoryLocked` if it was taken over.
    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.refresh()).map_err(storage_error)
    }

    /// Stops the refresher and deletes the lock object (idempotent).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.release()).map_err(storage_error)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }
}

/// A repository's storage: `s3://bucket/prefix`, `file:///dir` or a directory path.
///
/// Options override the AWS environment and shared files: object_store's AWS keys
/// (`aws_access_key_id`, `aws_secret_access_key`, `aws_region`, `aws_endpoint_url`,
/// `aws_allow_http`, ...) and ours: `part_size`, `parts_in_flight`, `files_in_flight`,
/// `retry_timeout` (seconds), `max_retries`. Keys are relative to the repository root.
/// A piece's upload running while the piece is written (`storage::tail`).
#[pyclass(frozen, module = "rustybackup._core", name = "TailUpload")]
pub struct PyTailUpload {
    inner: std::sync::Mutex<Option<TailUpload>>,
}

#[pymethods]
impl PyTailUpload {
    /// The file is complete at `size` bytes: sends the rest and checks the object. True
    /// when the bucket now holds exactly the file; False when the tail gave up (upload
    /// the file as usual). A second call returns False.
    fn finish(&self, py: Python<'_>, size: u64) -> PyResult<bool> {
        let t = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        match t {
            Some(t) => py.detach(|| t.finish(size)).map_err(storage_error),
            None => Ok(false),
        }
    }

    /// Stops and aborts the upload (nothing of it stays visible); no-op once finished.
    fn cancel(&self, py: Python<'_>) {
        let t = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        py.detach(|| drop(t));
    }
}

#[pyclass(frozen, module = "rustybackup._core", name = "ObjectStore")]
pub struct PyObjectStore {
    inner: Arc<Storage>,
}

fn seconds(name: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| PyValueError::new_err(format!("{name}: {s} is not a duration in seconds")))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length, and gethostname writes at most that many
    // bytes (POSIX); the result is read only up to the first NUL within the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[pymethods]
impl PyObjectStore {
    #[new]
    #[pyo3(signature = (url, options = None))]
    fn py_new(url: &str, options: Option<HashMap<String, String>>) -> PyResult<Self> {
        let mut opts: Vec<(String, String)> = options.unwrap_or_default().into_iter().collect();
        opts.sort();
        let inner = Storage::open(url, &opts).map_err(storage_error)?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The URL the store was opened with.
    #[getter]
    fn url(&self) -> String {
        self.inner.url().to_string()
    }

    /// True for S3, False for a local directory.
    #[getter]
    fn is_remote(&self) -> bool {
        matches!(self.inner.backend(), Backend::S3 { .. })
    }

    /// Bytes per multipart part.
    #[getter]
    fn part_size(&self) -> usize {
        self.inner.transfer().part_size
    }

    fn __repr__(&self) -> String {
        format!("ObjectStore({:?})", self.inner.url())
    }

    /// Lists one page of the root: raises `BucketNotFound`, `StorageAuthError` or
    /// `StorageUnreachable` when the repository cannot be used.
    fn check(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.check()).map_err(storage_error)
    }

    /// Creates the S3 bucket (an existing bucket of ours is fine; no-op for a directory).
    fn create_bucket(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.create_bucket()).map_err(storage_error)
    }

    /// Uploads a file (multipart above one part, memory bounded); returns its size.
    fn put_file(&self, py: Python<'_>, key: &str, path: PathBuf) -> PyResult<u64> {
        py.detach(|| self.inner.put_file(key, &path)).map_err(storage_error)
    }

    /// Uploads several `(key, path)` files, `files_in_flight` at once; returns their sizes.
    fn put_files(&self, py: Python<'_>, items: Vec<(String, PathBuf)>) -> PyResult<Vec<u64>> {
        py.detach(|| self.inner.put_files(&items)).map_err(storage_error)
    }

    /// Stores `data` at `key`, replacing what is there.
    fn put_bytes(&self, py: Python<'_>, key: &str, data: Vec<u8>) -> PyResult<()> {
        py.detach(|| self.inner.put_bytes(key, data)).map_err(storage_error)
    }

    /// Creates `key` only if absent; True when this call created it.
    fn put_bytes_if_absent(&self, py: Python<'_>, key: &str, data: Vec<u8>) -> PyResult<bool> {
        py.detach(|| self.inner.put_bytes_if_absent(key, data))
            .map_err(storage_error)
    }

    /// Whether the server refuses a second create of one key (probed once).
    fn conditional_create_supported(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.inner.conditional_create_supported())
            .map_err(storage_error)
    }

    /// The whole object (raises `StorageNotFound` if absent).
    fn get_bytes<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyBytes>> {
        let data = py.detach(|| self.inner.get_bytes(key)).map_err(storage_error)?;
        Ok(PyBytes::new(py, &data))
    }

    /// Bytes `start:end` of the object.
    fn get_range<'py>(&self, py: Python<'py>, key: &str, start: u64, end: u64) -> PyResult<Bound<'py, PyBytes>> {
        let data = py
            .detach(|| self.inner.get_range(key, start, end))
            .map_err(storage_error)?;
        Ok(PyBytes::new(py, &data))
    }

    /// Streams the object into a new file at `path` (atomically); returns its size.
    fn get_to_file(&self, py: Python<'_>, key: &str, path: PathBuf) -> PyResult<u64> {
        py.detach(|| self.inner.get_to_file(key, &path)).map_err(storage_error)
    }

    /// Restores files from pieces in the store, fetched by ranges as they are needed (no
    /// piece is downloaded whole first): `_core.restore_files` with `sources` the pieces'
    /// keys. Returns the bytes written.
    #[pyo3(signature = (files, blockmap, sources, *, progress = None, cancel = None, keys = None))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn restore_files(
        &self,
        py: Python<'_>,
        files: Vec<(String, PathBuf, u64, u64, u64, String)>,
        blockmap: PathBuf,
        sources: Vec<String>,
        progress: Option<Py<PyAny>>,
        cancel: Option<Py<PyAny>>,
        keys: Option<Vec<Option<super::crypto::KeyPair>>>,
    ) -> PyResult<u64> {
        let (files, keys) = super::engine::restore_args(files, keys)?;
        let mut failure = None;
        let storage = Arc::clone(&self.inner);
        let result = py.detach(|| {
            let mut h = super::engine::hook(&progress, &cancel, &mut failure);
            crate::storage::restore::restore_files(&storage, &files, &blockmap, &sources, &keys, &mut h)
        });
        if let Some(e) = failure {
            return Err(e);
        }
        result.map_err(|e| match e {
            RestoreError::Engine(e) => engine_error(e),
            RestoreError::Storage(e) => storage_error(e),
        })
    }

    /// Starts uploading the file at `path` (which may not exist yet) to `key` while
    /// another thread still appends to it (a piece being written); see `TailUpload`.
    fn tail_upload(&self, key: String, path: PathBuf) -> PyTailUpload {
        let t = TailUpload::start(Arc::clone(&self.inner), key, path);
        PyTailUpload {
            inner: std::sync::Mutex::new(Some(t)),
        }
    }

    /// The object's metadata, or None.
    fn head(&self, py: Python<'_>, key: &str) -> PyResult<Option<PyObjectMeta>> {
        let got = py.detach(|| self.inner.head(key)).map_err(storage_error)?;
        Ok(got.map(PyObjectMeta::from))
    }

    /// Every object under the directory-like `prefix` ("" for all), sorted by key.
    #[pyo3(signature = (prefix = ""))]
    fn list(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<PyObjectMeta>> {
        let got = py.detach(|| self.inner.list(prefix)).map_err(storage_error)?;
        Ok(got.into_iter().map(PyObjectMeta::from).collect())
    }

    /// Deletes the object (absent is fine).
    fn delete(&self, py: Python<'_>, key: &str) -> PyResult<()> {
        py.detach(|| self.inner.delete(key)).map_err(storage_error)
    }

    /// Uploads a staged set: every file under `local_dir` except dot files and `skip`
    /// (relative paths already in the bucket), then `manifest_name` last with a
    /// conditional create. See docs/FORMAT.md.
    #[pyo3(signature = (local_dir, prefix, manifest_name = "manifest.json", *, skip = Vec::new()))]
    fn upload_set(
        &self,
        py: Python<'_>,
        local_dir: PathBuf,
        prefix: &str,
        manifest_name: &str,
        skip: Vec<PathBuf>,
    ) -> PyResult<PySetUpload> {
        let r = py
            .detach(|| self.inner.upload_set_skipping(&local_dir, prefix, manifest_name, &skip))
            .map_err(storage_error)?;
        Ok(PySetUpload {
            keys: r.keys,
            bytes: r.bytes,
            created: r.created,
        })
    }

    /// Deletes objects in set directories under `prefix` that have no manifest and are
    /// older than `grace_seconds` (as of `now`, default this host's clock); returns them.
    #[pyo3(signature = (prefix, grace_seconds, now = None))]
    fn sweep(
        &self,
        py: Python<'_>,
        prefix: &str,
        grace_seconds: f64,
        now: Option<DateTime<Utc>>,
    ) -> PyResult<Vec<String>> {
        let grace = seconds("grace_seconds", grace_seconds)?;
        let now = now.unwrap_or_else(Utc::now);
        py.detach(|| self.inner.sweep(prefix, grace, now))
            .map_err(storage_error)
    }

    /// Aborts multipart uploads under `prefix` begun more than `grace_seconds` ago; returns
    /// their keys (always empty for a directory).
    #[pyo3(signature = (prefix, grace_seconds, now = None))]
    fn sweep_uploads(
        &self,
        py: Python<'_>,
        prefix: &str,
        grace_seconds: f64,
        now: Option<DateTime<Utc>>,
    ) -> PyResult<Vec<String>> {
        let grace = seconds("grace_seconds", grace_seconds)?;
        let now = now.unwrap_or_else(Utc::now);
        py.detach(|| self.inner.sweep_uploads(prefix, grace, now))
            .map_err(storage_error)
    }

    /// Limits uploads of this store to `bytes_per_second` (None: no limit).
    #[pyo3(signature = (bytes_per_second))]
    fn set_bandwidth_limit(&self, bytes_per_second: Option<u64>) -> PyResult<()> {
        if bytes_per_second == Some(0) {
            return Err(PyValueError::new_err(
                "bandwidth limit: 0 bytes/s would never upload; use None for no limit",
            ));
        }
        self.inner.set_upload_limit(bytes_per_second.unwrap_or(0));
        Ok(())
    }

    /// The upload limit in bytes per second, or None.
    #[getter]
    fn bandwidth_limit(&self) -> Option<u64> {
        match self.inner.upload_limit() {
            0 => None,
            n => Some(n),
        }
    }

    /// Takes a lock object ("exclusive" or "shared") valid `ttl_seconds`, refreshed in the
    /// background until released; raises `RepositoryLocked` naming a live holder.
    #[pyo3(signature = (purpose, ttl_seconds, *, host = None, pid = None))]
    fn lock(
        &self,
        py: Python<'_>,
        purpose: &str,
        ttl_seconds: f64,
        host: Option<String>,
        pid: Option<u32>,
    ) -> PyResult<PyRemoteLock> {
        let purpose = Purpose::parse(purpose).ok_or_else(|| {
            PyValueError::new_err(format!("purpose: {purpose:?} is neither 'exclusive' nor 'shared'"))
        })?;
        let ttl = seconds("ttl_seconds", ttl_seconds)?;
        let host = host.unwrap_or_else(hostname);
        let pid = pid.unwrap_or_else(std::process::id);
        let inner = py
            .detach(|| self.inner.acquire_lock(purpose, ttl, &host, pid))
            .map_err(storage_error)?;
        Ok(PyRemoteLock { inner })
    }

    /// Every lock object, live or stale.
    fn list_locks(&self, py: Python<'_>) -> PyResult<Vec<PyLockInfo>> {
        let got = py.detach(|| self.inner.list_locks()).map_err(storage_error)?;
        Ok(got.into_iter().map(|e| PyLockInfo::new(e.key, e.record)).collect())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyObjectStore>()?;
    m.add_class::<PyObjectMeta>()?;
    m.add_class::<PySetUpload>()?;
    m.add_class::<PyLockInfo>()?;
    m.add_class::<PyRemoteLock>()?;
    m.add_class::<PyTailUpload>()?;
    Ok(())
}
