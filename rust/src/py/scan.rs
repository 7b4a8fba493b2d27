//! Bindings for `crate::scan`: argument conversion, GIL release, error mapping.

use std::ops::ControlFlow;
use std::path::PathBuf;

use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::buffer::{ByteView, GIL_MINSIZE};
use super::errors::scan_error;
use crate::scan::{self, to_hex, Access, Algorithm, BlockSize, Scanner};

/// How often a scan looks for Ctrl-C (`KeyboardInterrupt`).
const SIGNAL_CHECK_BYTES: usize = 64 * 1024 * 1024;

/// An `algorithm=` argument; the default is BLAKE3, as DESIGN.md's signatures say.
#[derive(Clone, Copy)]
struct AlgorithmArg(Algorithm);

impl Default for AlgorithmArg {
    fn default() -> Self {
        Self(Algorithm::Blake3)
    }
}

impl<'py> FromPyObject<'_, 'py> for AlgorithmArg {
    type Error = PyErr;

    fn extract(ob: pyo3::Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        algorithm(&ob).map(Self)
    }
}

/// Accepts a `ChecksumAlgorithm` member (a `StrEnum`, hence a `str`) or a plain name.
fn algorithm(obj: &Bound<'_, PyAny>) -> PyResult<Algorithm> {
    let name = obj.cast::<PyString>().map_err(|_| {
        let ty = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!("algorithm must be a ChecksumAlgorithm or a str, not {ty}"))
    })?;
    Algorithm::from_name(name.to_str()?).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn block_size(n: i64) -> PyResult<BlockSize> {
    // A negative size gets the same message as any other bad size, naming the value.
    let bad =
        || PyValueError::new_err(format!("{}", scan::ScanError::InvalidBlockSize(0)).replace(" 0:", &format!(" {n}:")));
    let n = u64::try_from(n).map_err(|_| bad())?;
    BlockSize::new(n).map_err(scan_error)
}

fn threads(n: Option<i64>) -> PyResult<Option<usize>> {
    match n {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX).min(1024))),
        Some(n) => Err(PyValueError::new_err(format!(
            "threads must be at least 1 (or None for all cores), got {n}"
        ))),
    }
}

/// The hex digest of any C-contiguous buffer (bytes, bytearray, memoryview, mmap, array),
/// read in place without a copy; the GIL is released from 2 KiB.
#[pyfunction]
#[pyo3(signature = (data, algorithm = AlgorithmArg::default()), text_signature = "(data, algorithm='blake3')")]
fn hash_bytes(py: Python<'_>, data: &Bound<'_, PyAny>, algorithm: AlgorithmArg) -> PyResult<String> {
    let alg = algorithm.0;
    let view = ByteView::new(data)?;
    let bytes = view.as_slice();
    let digest = if bytes.len() < GIL_MINSIZE {
        alg.digest(bytes)
    } else if alg == Algorithm::Blake3 && bytes.len() >= scan::algorithm::PARALLEL_MIN {
        py.detach(|| {
            scan::parallel::install(None, || {
                let mut h = alg.hasher();
                h.update_parallel(bytes);
                h.finalize()
            })
        })
        .map_err(scan_error)?
    } else {
        py.detach(|| alg.digest(bytes))
    };
    drop(view);
    Ok(to_hex(&digest))
}

/// The hex digest of a file, read in chunks. `mmap=True` opts in to mapping regular files
/// of 16 KiB and more for BLAKE3 (as blake3-py's `update_mmap`): unsafe on a file that may
/// change, since a truncation under the map is SIGBUS and kills the interpreter.
#[pyfunction]
#[pyo3(
    signature = (path, algorithm = AlgorithmArg::default(), *, mmap = false),
    text_signature = "(path, algorithm='blake3', *, mmap=False)"
)]
fn hash_file(py: Python<'_>, path: PathBuf, algorithm: AlgorithmArg, mmap: bool) -> PyResult<String> {
    let alg = algorithm.0;
    let access = if mmap { Access::Mmap } else { Access::Read };
    let digest = py
        .detach(|| scan::hash_path(&path, alg, access, None))
        .map_err(scan_error)?;
    Ok(to_hex(&digest))
}

/// The result of `scan_file`: the whole-file digest and every block's digest.
#[pyclass(frozen, module = "rustybackup", name = "FileScan")]
pub struct PyFileScan {
    algorithm: Algorithm,
    block_size: usize,
    size: u64,
    block_count: u64,
    digest: Vec<u8>,
    block_digests: Py<PyBytes>,
}

#[pymethods]
impl PyFileScan {
    #[new]
    #[pyo3(signature = (algorithm, block_size, size, digest, block_digests))]
    fn py_new(
        algorithm: &Bound<'_, PyAny>,
        block_size: i64,
        size: u64,
        digest: &str,
        block_digests: Bound<'_, PyBytes>,
    ) -> PyResult<Self> {
        let alg = self::algorithm(algorithm)?;
        let bs = self::block_size(block_size)?.get();
        let ds = alg.digest_size();
        let digest = from_hex(digest, ds)?;
        let block_count = size.div_ceil(bs as u64);
        let len = block_digests.as_bytes().len() as u64;
        if len != block_count.saturating_mul(ds as u64) {
            return Err(PyValueError::new_err(format!(
                "block_digests holds {len} bytes; {block_count} blocks of {ds}-byte {} digests need {}",
                alg.name(),
                block_count.saturating_mul(ds as u64)
            )));
        }
        Ok(Self {
            algorithm: alg,
            block_size: bs,
            size,
            block_count,
            digest,
            block_digests: block_digests.unbind(),
        })
    }

    /// The whole-file digest, hex.
    #[getter]
    fn digest(&self) -> String {
        to_hex(&self.digest)
    }

    /// Every block's raw digest concatenated (`digest_size` bytes each), one `bytes` object.
    #[getter]
    fn block_digests(&self, py: Python<'_>) -> Py<PyBytes> {
        self.block_digests.clone_ref(py)
    }

    /// The algorithm's lower-case name.
    #[getter]
    fn algorithm(&self) -> &'static str {
        self.algorithm.name()
    }

    /// Bytes per block (the last block may be shorter).
    #[getter]
    fn block_size(&self) -> usize {
        self.block_size
    }

    /// Bytes read.
    #[getter]
    fn size(&self) -> u64 {
        self.size
    }

    /// Number of blocks.
    #[getter]
    fn block_count(&self) -> u64 {
        self.block_count
    }

    /// Bytes per digest.
    #[getter]
    fn digest_size(&self) -> usize {
        self.algorithm.digest_size()
    }

    /// Block `index`'s digest, hex; negative indexes count from the end, like a list.
    fn block_digest(&self, py: Python<'_>, index: i64) -> PyResult<String> {
        let count = self.block_count;
        let i = if index < 0 {
            i128::from(count) + i128::from(index)
        } else {
            i128::from(index)
        };
        if i < 0 || i >= i128::from(count) {
            return Err(PyIndexError::new_err(format!(
                "block index {index} out of range: the file has {count} block{}",
                if count == 1 { "" } else { "s" }
            )));
        }
        let ds = self.algorithm.digest_size();
        let start = usize::try_from(i).unwrap_or(usize::MAX).saturating_mul(ds);
        let bytes = self.block_digests.bind(py).as_bytes();
        bytes
            .get(start..start + ds)
            .map(to_hex)
            .ok_or_else(|| PyIndexError::new_err("block digest missing"))
    }

    fn __len__(&self) -> usize {
        usize::try_from(self.block_count).unwrap_or(usize::MAX)
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> bool {
        let Ok(other) = other.cast::<PyFileScan>() else {
            return false;
        };
        let o = other.get();
        self.algorithm == o.algorithm
            && self.block_size == o.block_size
            && self.size == o.size
            && self.digest == o.digest
            && self.block_digests.bind(py).as_bytes() == o.block_digests.bind(py).as_bytes()
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let py = slf.py();
        let s = slf.get();
        let args = (
            s.algorithm.name(),
            s.block_size,
            s.size,
            to_hex(&s.digest),
            s.block_digests.clone_ref(py),
        );
        Ok((slf.get_type().into_any(), args.into_pyobject(py)?.into_any()))
    }

    fn __repr__(&self) -> String {
        format!(
            "FileScan(algorithm='{}', block_size={}, size={}, block_count={}, digest='{}')",
            self.algorithm.name(),
            self.block_size,
            self.size,
            self.block_count,
            to_hex(&self.digest)
        )
    }
}

fn from_hex(text: &str, len: usize) -> PyResult<Vec<u8>> {
    let bad = || PyValueError::new_err(format!("digest must be {} hex digits, got {text:?}", len * 2));
    if text.len() != len * 2 {
        return Err(bad());
    }
    (0..len)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect()
}

/// Reads a file once in block-aligned chunks (never mapped: sources are live) and returns
/// the whole digest and each block's digest.
#[pyfunction]
#[pyo3(
    signature = (path, algorithm = AlgorithmArg::default(), block_size = 8192),
    text_signature = "(path, algorithm='blake3', block_size=8192)"
)]
fn scan_file(py: Python<'_>, path: PathBuf, algorithm: AlgorithmArg, block_size: i64) -> PyResult<PyFileScan> {
    let alg = algorithm.0;
    let bs = self::block_size(block_size)?;
    let mut interrupted: Option<PyErr> = None;
    let scan = py.detach(|| {
        let mut block_digests = Vec::new();
        let mut since_check = 0usize;
        let summary = Scanner::new(alg, bs).scan_path(&path, |block| {
            block_digests.extend_from_slice(block.digest);
            since_check += block.data.len();
            // Ctrl-C must not wait for the end of a multi-GiB file: look every 64 MiB. The
            // callback runs on this (the caller's) thread, never a pool worker, so taking the
            // GIL here cannot deadlock the pool.
            if since_check >= SIGNAL_CHECK_BYTES {
                since_check = 0;
                if let Err(e) = Python::attach(|py| py.check_signals()) {
                    interrupted = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        summary.map(|summary| (summary, block_digests))
    });
    if let Some(err) = interrupted {
        return Err(err);
    }
    let (summary, block_digests) = scan.map_err(scan_error)?;
    Ok(PyFileScan {
        algorithm: alg,
        block_size: bs.get(),
        size: summary.size,
        block_count: summary.block_count,
        digest: summary.digest,
        block_digests: PyBytes::new(py, &block_digests).unbind(),
    })
}

/// Hashes many files in parallel; `{path: hex digest or the exception instance}`, so one
/// unreadable file never aborts the batch.
#[pyfunction]
#[pyo3(
    signature = (paths, algorithm = AlgorithmArg::default(), threads = None),
    text_signature = "(paths, algorithm='blake3', threads=None)"
)]
fn hash_files<'py>(
    py: Python<'py>,
    paths: &Bound<'py, PyAny>,
    algorithm: AlgorithmArg,
    threads: Option<i64>,
) -> PyResult<Bound<'py, PyDict>> {
    let alg = algorithm.0;
    let threads = self::threads(threads)?;
    if paths.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "paths must be an iterable of paths, not a single str",
        ));
    }
    let mut list: Vec<PathBuf> = Vec::new();
    for item in paths.try_iter()? {
        list.push(item?.extract()?);
    }
    let results = py
        .detach(|| scan::hash_paths(&list, alg, threads))
        .map_err(scan_error)?;
    let out = PyDict::new(py);
    for (path, result) in list.iter().zip(results) {
        let key = path.to_string_lossy();
        match result {
            Ok(digest) => out.set_item(key, to_hex(&digest))?,
            Err(e) => out.set_item(key, scan_error(e).into_value(py))?,
        }
    }
    Ok(out)
}

/// Adds this domain's classes and functions to `rustybackup._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFileScan>()?;
    m.add_function(wrap_pyfunction!(hash_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(hash_file, m)?)?;
    m.add_function(wrap_pyfunction!(scan_file, m)?)?;
    m.add_function(wrap_pyfunction!(hash_files, m)?)?;
    Ok(())
}
