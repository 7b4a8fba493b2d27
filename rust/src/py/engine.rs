//! Bindings for `crate::engine`: the backup pass, the restore merge, and the piece
//! reading the verifier builds on. Every call that touches data runs with the GIL
//! released; the Python progress callback and the cancel flag are consulted (and
//! Ctrl-C noticed) every few MiB through `Python::attach`.

use std::ops::ControlFlow;
use std::path::PathBuf;

use pyo3::prelude::*;

use super::errors::{engine_error, io_error};
use crate::engine::{self, BackupOptions, FileJob, PieceReader, Progress, RestoreFile};
use crate::scan::algorithm::{to_hex, Algorithm};

/// Call Python at most once per this many bytes (and per `REPORT_FILES` files).
const REPORT_BYTES: u64 = 8 << 20;
const REPORT_FILES: u64 = 256;

fn parse_algorithm(name: &str) -> PyResult<Algorithm> {
    Algorithm::from_name(name).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

fn from_hex(hex: &str, what: &str) -> PyResult<Vec<u8>> {
    let bad = || pyo3::exceptions::PyValueError::new_err(format!("{what}: {hex:?} is not a hex digest"));
    if hex.len() % 2 != 0 {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// Builds the engine's progress hook around optional Python `progress(bytes_done,
/// bytes_written, files_done)` and `cancel` (anything with `is_set()`). The first
/// Python error is stashed in `failure` and stops the pass.
fn hook<'a>(
    progress: &'a Option<Py<PyAny>>,
    cancel: &'a Option<Py<PyAny>>,
    failure: &'a mut Option<PyErr>,
) -> impl FnMut(Progress) -> ControlFlow<()> + 'a {
    let mut last = Progress::default();
    let mut first = true;
    move |p: Progress| {
        let due =
            first || p.bytes_read - last.bytes_read >= REPORT_BYTES || p.files_done - last.files_done >= REPORT_FILES;
        if !due {
            return ControlFlow::Continue(());
        }
        first = false;
        last = p;
        let result = Python::attach(|py| -> PyResult<bool> {
            py.check_signals()?;
            if let Some(cb) = progress {
                cb.call1(py, (p.bytes_read, p.bytes_written, p.files_done))?;
            }
            if let Some(c) = cancel {
                return c.call_method0(py, "is_set")?.is_truthy(py);
            }
            Ok(false)
        });
        match result {
            Ok(false) => ControlFlow::Continue(()),
            Ok(true) => ControlFlow::Break(()),
            Err(e) => {
                *failure = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

/// A piece's header and trailer facts.
#[pyclass(frozen, module = "rustybackup._core", name = "PieceInfo")]
pub struct PyPieceInfo {
    /// The piece file.
    #[pyo3(get)]
    path: PathBuf,
    /// Size in bytes.
    #[pyo3(get)]
    size: u64,
    /// Hex checksum recorded in the trailer (digest of everything before it).
    #[pyo3(get)]
    checksum: String,
    /// Digest algorithm name.
    #[pyo3(get)]
    algorithm: String,
    /// Block size.
    #[pyo3(get)]
    block_size: u32,
    /// Number of blocks (index entries).
    #[pyo3(get)]
    block_count: u64,
}

#[pymethods]
impl PyPieceInfo {
    fn __repr__(&self) -> String {
        format!(
            "PieceInfo(path={:?}, size={}, checksum={:?}, algorithm={:?}, block_size={}, block_count={})",
            self.path.display().to_string(),
            self.size,
            self.checksum,
            self.algorithm,
            self.block_size,
            self.block_count
        )
    }
}

/// Result of `backup_files`: (files, piece, blockmap_checksum, blockmap_records,
/// bytes_read, blocks_stored); files are (size, digest_hex, first_block, block_count).
type BackupResult = (Vec<(u64, String, u64, u64)>, PyPieceInfo, String, u64, u64, u64);
/// A file to back up: (path, relative name, parent block-map range).
type JobTuple = (PathBuf, String, Option<(u64, u64)>);
/// A piece index entry: (file_no, block_index, offset, stored_len, raw_len, flags, digest_hex).
type IndexTuple = (u32, u64, u64, u32, u32, u8, String);
/// A corrupt block: (piece, block_index, file, offset, expected_hex, actual).
type FaultTuple = (String, u64, String, u64, String, String);

/// One pass over `jobs` (path, relative name, parent range or None): writes the piece
/// and the block map; blocks equal to the parent's are not stored again.
#[pyfunction]
#[pyo3(signature = (jobs, piece_path, blockmap_path, parent_blockmap=None, *, algorithm, block_size, zstd_level=None, self_source=0, progress=None, cancel=None))]
#[allow(clippy::too_many_arguments)]
fn backup_files(
    py: Python<'_>,
    jobs: Vec<JobTuple>,
    piece_path: PathBuf,
    blockmap_path: PathBuf,
    parent_blockmap: Option<PathBuf>,
    algorithm: &str,
    block_size: u32,
    zstd_level: Option<i32>,
    self_source: u32,
    progress: Option<Py<PyAny>>,
    cancel: Option<Py<PyAny>>,
) -> PyResult<BackupResult> {
    let opts = BackupOptions {
        algorithm: parse_algorithm(algorithm)?,
        block_size,
        zstd_level,
        self_source,
    };
    let jobs: Vec<FileJob> = jobs
        .into_iter()
        .map(|(path, rel, parent)| FileJob { path, rel, parent })
        .collect();
    let mut failure = None;
    let result = py.detach(|| {
        let mut h = hook(&progress, &cancel, &mut failure);
        engine::backup_files(
            &jobs,
            parent_blockmap.as_deref(),
            &piece_path,
            &blockmap_path,
            &opts,
            &mut h,
        )
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let out = result.map_err(engine_error)?;
    let files = out
        .files
        .into_iter()
        .map(|f| (f.size, to_hex(&f.digest), f.first_block, f.block_count))
        .collect();
    let piece = PyPieceInfo {
        path: out.piece.path,
        size: out.piece.size,
        checksum: to_hex(&out.piece.checksum),
        algorithm: opts.algorithm.name().to_string(),
        block_size,
        block_count: out.piece.block_count,
    };
    Ok((
        files,
        piece,
        to_hex(&out.blockmap_checksum),
        out.blockmap_records,
        out.bytes_read,
        out.blocks_stored,
    ))
}

/// Restores `files` (relative name, destination, first block, block count, size,
/// digest hex) from `blockmap` whose source `i` is the piece `sources[i]`; every block
/// digest and every whole-file digest is checked. Returns the bytes written.
#[pyfunction]
#[pyo3(signature = (files, blockmap, sources, *, progress=None, cancel=None))]
fn restore_files(
    py: Python<'_>,
    files: Vec<(String, PathBuf, u64, u64, u64, String)>,
    blockmap: PathBuf,
    sources: Vec<PathBuf>,
    progress: Option<Py<PyAny>>,
    cancel: Option<Py<PyAny>>,
) -> PyResult<u64> {
    let files: Vec<RestoreFile> = files
        .into_iter()
        .map(|(rel, dest, first_block, block_count, size, digest)| {
            let digest = from_hex(&digest, &rel)?;
            Ok(RestoreFile {
                rel,
                dest,
                first_block,
                block_count,
                size,
                digest,
            })
        })
        .collect::<PyResult<_>>()?;
    let mut failure = None;
    let result = py.detach(|| {
        let mut h = hook(&progress, &cancel, &mut failure);
        engine::restore_files(&files, &blockmap, &sources, &mut h)
    });
    if let Some(e) = failure {
        return Err(e);
    }
    result.map_err(engine_error)
}

fn piece_info(reader: &PieceReader) -> PyPieceInfo {
    PyPieceInfo {
        path: reader.path().to_path_buf(),
        size: reader.size(),
        checksum: to_hex(reader.recorded_checksum()),
        algorithm: reader.algorithm().name().to_string(),
        block_size: reader.block_size(),
        block_count: reader.block_count(),
    }
}

/// Opens a piece and checks its header and trailer structure (no re-hash).
#[pyfunction]
fn read_piece_info(py: Python<'_>, path: PathBuf) -> PyResult<PyPieceInfo> {
    py.detach(|| PieceReader::open(&path).map(|r| piece_info(&r)))
        .map_err(engine_error)
}

/// The piece's index: (file_no, block_index, offset, stored_len, raw_len, flags,
/// digest_hex) per block, in write order. `file_no` indexes the manifest's `files`.
#[pyfunction]
fn read_piece_index(py: Python<'_>, path: PathBuf) -> PyResult<Vec<IndexTuple>> {
    py.detach(|| {
        let r = PieceReader::open(&path)?;
        r.entries()?
            .map(|e| {
                e.map(|e| {
                    (
                        e.file_no,
                        e.block_index,
                        e.offset,
                        e.stored_len,
                        e.raw_len,
                        e.flags,
                        to_hex(&e.digest),
                    )
                })
            })
            .collect::<engine::Result<Vec<_>>>()
    })
    .map_err(engine_error)
}

/// Re-hashes the piece (everything before the trailer); returns the hex digest, to
/// compare with `read_piece_info(path).checksum` and the catalog.
#[pyfunction]
fn piece_checksum(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    py.detach(|| PieceReader::open(&path)?.compute_checksum().map(|c| to_hex(&c)))
        .map_err(engine_error)
}

/// Re-hashes every block of the piece in parallel; returns the corrupt ones as
/// (piece, block_index, file, offset, expected_hex, actual) where `file` is
/// `files[file_no]` when `files` is given, else the file number as text.
#[pyfunction]
#[pyo3(signature = (path, files=None))]
fn verify_piece_blocks(
    py: Python<'_>,
    path: PathBuf,
    files: Option<Vec<String>>,
) -> PyResult<Vec<FaultTuple>> {
    let faults = py
        .detach(|| PieceReader::open(&path)?.verify_blocks())
        .map_err(engine_error)?;
    let piece = path.to_string_lossy().into_owned();
    Ok(faults
        .into_iter()
        .map(|f| {
            let n = f.entry.file_no as usize;
            let file = files
                .as_ref()
                .and_then(|v| v.get(n).cloned())
                .unwrap_or_else(|| n.to_string());
            (
                piece.clone(),
                f.entry.block_index,
                file,
                f.entry.offset,
                f.expected,
                f.actual,
            )
        })
        .collect())
}

/// Checks a block map's structure and trailer checksum; returns its record count.
#[pyfunction]
fn verify_blockmap(py: Python<'_>, path: PathBuf) -> PyResult<u64> {
    py.detach(|| {
        let r = engine::BlockMapReader::open(&path)?;
        r.verify_checksum()?;
        Ok(r.count())
    })
    .map_err(engine_error)
}

/// Hex digest of a whole file, streamed (archive-log de-duplication).
#[pyfunction]
#[pyo3(signature = (path, algorithm="blake3"))]
fn file_digest(py: Python<'_>, path: PathBuf, algorithm: &str) -> PyResult<String> {
    use std::io::Read;
    let alg = parse_algorithm(algorithm)?;
    py.detach(|| -> std::io::Result<String> {
        let mut f = std::fs::File::open(&path)?;
        let mut h = alg.hasher();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(to_hex(&h.finalize()))
    })
    .map_err(|e| io_error(&e, &path))
}

/// Adds this domain's classes and functions to `rustybackup._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPieceInfo>()?;
    m.add_function(wrap_pyfunction!(backup_files, m)?)?;
    m.add_function(wrap_pyfunction!(restore_files, m)?)?;
    m.add_function(wrap_pyfunction!(read_piece_info, m)?)?;
    m.add_function(wrap_pyfunction!(read_piece_index, m)?)?;
    m.add_function(wrap_pyfunction!(piece_checksum, m)?)?;
    m.add_function(wrap_pyfunction!(verify_piece_blocks, m)?)?;
    m.add_function(wrap_pyfunction!(verify_blockmap, m)?)?;
    m.add_function(wrap_pyfunction!(file_digest, m)?)?;
    Ok(())
}
