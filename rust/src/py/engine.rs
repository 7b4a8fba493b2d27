//! Bindings for `crate::engine` and `crate::format`: the backup pass, the restore merge,
//! and a look at a piece's header, trailer and index. Every call that touches data runs with the GIL
//! released; the Python progress callback and the cancel flag are consulted (and
//! Ctrl-C noticed) every few MiB through `Python::attach`.

use std::ops::ControlFlow;
use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::errors::engine_error;
use crate::engine::{self, BackupOptions, FileJob, Progress, RestoreFile};
use crate::format::checkpoint::Identity;
use crate::format::PieceReader;
use crate::scan::algorithm::{to_hex, Algorithm};

/// Call Python at most once per this many bytes (and per `REPORT_FILES` files).
const REPORT_BYTES: u64 = 8 << 20;
const REPORT_FILES: u64 = 256;
/// A resumable pass commits its checkpoint after this many source bytes (each commit
/// fsyncs the piece): what a cut pass reads again at most, beyond the file it was in.
const DEFAULT_CHECKPOINT_EVERY: u64 = 64 << 20;

fn parse_algorithm(name: &str) -> PyResult<Algorithm> {
    Algorithm::from_name(name).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

pub(super) fn from_hex(hex: &str, what: &str) -> PyResult<Vec<u8>> {
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
pub(super) fn hook<'a>(
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
/// bytes_read, blocks_stored, changed, resumed); files are (size, digest_hex,
/// first_block, block_count); changed lists the relative names of files that changed
/// while read; resumed is (files adopted, their bytes, why adoption stopped or None);
/// bad_pages is None unless `pg_pages` were checked in the pass, else (job index, block,
/// stored, computed) per damaged page.
type BackupResult = (
    Vec<(u64, String, u64, u64)>,
    PyPieceInfo,
    String,
    u64,
    u64,
    u64,
    Vec<String>,
    (u64, u64, Option<String>),
    Option<Vec<(u32, u64, u16, u16)>>,
);
/// A file to back up: (path, relative name, parent block-map range).
type JobTuple = (PathBuf, String, Option<(u64, u64)>);
/// A file taken over unread: (job index, size, digest, mtime_ns, ctime_ns, ino, dev).
type ReuseTuple = (usize, u64, String, i64, i64, u64, u64);
/// A piece index entry: (file_no, block_index, offset, stored_len, raw_len, flags, digest_hex).
type IndexTuple = (u32, u64, u64, u32, u32, u8, String);

/// One pass over `jobs` (path, relative name, parent range or None): writes the piece
/// and the block map; blocks equal to the parent's are not stored again. A file that
/// changes while it is read does not stop the pass: what was read is stored and its
/// relative name is listed in the result's last element.
#[pyfunction]
#[pyo3(signature = (jobs, piece_path, blockmap_path, parent_blockmap=None, *, algorithm, block_size, zstd_level=None, self_source=0, progress=None, cancel=None, seal_key=None, checkpoint=None, checkpoint_every=DEFAULT_CHECKPOINT_EVERY, reuse=None, dedup=false, checkpoint_rule="files", seal_cipher="xchacha20-poly1305", pg_pages=None))]
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
    seal_key: Option<(Vec<u8>, Vec<u8>)>,
    checkpoint: Option<PathBuf>,
    checkpoint_every: u64,
    reuse: Option<Vec<ReuseTuple>>,
    dedup: bool,
    checkpoint_rule: &str,
    seal_cipher: &str,
    pg_pages: Option<(u64, usize, Vec<Option<u64>>)>,
) -> PyResult<BackupResult> {
    let rule = match checkpoint_rule {
        "files" => engine::Rule::Prefix,
        "postgresql" => engine::Rule::BaseBackup,
        other => {
            return Err(PyValueError::new_err(format!(
                "checkpoint_rule: {other:?} is not one of files, postgresql"
            )))
        }
    };
    let checkpoint = checkpoint.map(|journal| engine::Checkpoint {
        journal,
        every: checkpoint_every,
        rule,
    });
    let opts = BackupOptions {
        algorithm: parse_algorithm(algorithm)?,
        block_size,
        zstd_level,
        self_source,
        seal: match seal_key.as_ref().map(super::crypto::block_key).transpose()? {
            Some(k) => Some(
                k.sealing_with(
                    crate::crypto::Cipher::parse(seal_cipher)
                        .map_err(|e| PyValueError::new_err(format!("seal_cipher: {e}")))?,
                ),
            ),
            None => None,
        },
        dedup,
    };
    let mut jobs: Vec<FileJob> = jobs
        .into_iter()
        .map(|(path, rel, parent)| FileJob {
            path,
            rel,
            parent,
            reuse: None,
        })
        .collect();
    // (job index, size, digest, mtime_ns, ctime_ns, ino, dev): files the walk found
    // unchanged since the parent, not read again, with the identity it saw.
    for (i, size, digest, mtime_ns, ctime_ns, ino, dev) in reuse.unwrap_or_default() {
        let n = jobs.len();
        let job = jobs
            .get_mut(i)
            .ok_or_else(|| PyValueError::new_err(format!("reuse: job {i} is out of range ({n} jobs)")))?;
        let split = |ns: i64| (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
        job.reuse = Some(engine::Reused {
            size,
            digest: from_hex(&digest, "reuse digest")?,
            identity: Identity {
                dev,
                ino,
                size,
                mtime: split(mtime_ns),
                ctime: split(ctime_ns),
            },
        });
    }
    // (start LSN, page size, relation segment number or None per job): PostgreSQL pages
    // checked on the bytes the pass reads.
    let pages = match pg_pages {
        Some((start_lsn, page_size, segments)) => {
            if !crate::pgpage::valid_page_size(page_size) {
                return Err(PyValueError::new_err(format!(
                    "pg_pages: page size {page_size} is not a power of two in 1024..32768"
                )));
            }
            if segments.len() != jobs.len() {
                return Err(PyValueError::new_err(format!(
                    "pg_pages: {} segment entries for {} jobs",
                    segments.len(),
                    jobs.len()
                )));
            }
            Some(engine::PageChecks {
                start_lsn,
                page_size,
                segments,
            })
        }
        None => None,
    };
    let mut failure = None;
    let result = py.detach(|| {
        let mut h = hook(&progress, &cancel, &mut failure);
        engine::backup_files_checked(
            &jobs,
            parent_blockmap.as_deref(),
            &piece_path,
            &blockmap_path,
            &opts,
            checkpoint.as_ref(),
            pages.as_ref(),
            &mut h,
        )
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let out = result.map_err(engine_error)?;
    let changed = jobs
        .iter()
        .zip(&out.files)
        .filter(|(_, f)| f.changed)
        .map(|(j, _)| j.rel.clone())
        .collect();
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
        changed,
        (out.resumed.files, out.resumed.source_bytes, out.resumed.note),
        out.bad_pages.map(|found| {
            found
                .into_iter()
                .map(|(job, b)| (job, b.block, b.stored, b.computed))
                .collect()
        }),
    ))
}

/// Restores `files` (relative name, destination, first block, block count, size,
/// digest hex) from `blockmap` whose source `i` is the piece `sources[i]`; every block
/// digest and every whole-file digest is checked. Returns the bytes written.
#[pyfunction]
#[pyo3(signature = (files, blockmap, sources, *, progress=None, cancel=None, keys=None))]
fn restore_files(
    py: Python<'_>,
    files: Vec<(String, PathBuf, u64, u64, u64, String)>,
    blockmap: PathBuf,
    sources: Vec<PathBuf>,
    progress: Option<Py<PyAny>>,
    cancel: Option<Py<PyAny>>,
    keys: Option<Vec<Option<super::crypto::KeyPair>>>,
) -> PyResult<u64> {
    let (files, keys) = restore_args(files, keys)?;
    let mut failure = None;
    let result = py.detach(|| {
        let mut h = hook(&progress, &cancel, &mut failure);
        engine::restore_files_keyed(&files, &blockmap, &sources, &keys, &mut h)
    });
    if let Some(e) = failure {
        return Err(e);
    }
    result.map_err(engine_error)
}

/// A restore's file tuples `(rel, dest, first_block, block_count, size, digest hex)` and
/// per-source key pairs as the engine takes them; one conversion for the local and the
/// object-store restore (`ObjectStore.restore_files`).
#[allow(clippy::type_complexity)]
pub(crate) fn restore_args(
    files: Vec<(String, PathBuf, u64, u64, u64, String)>,
    keys: Option<Vec<Option<super::crypto::KeyPair>>>,
) -> PyResult<(Vec<RestoreFile>, Vec<Option<crate::crypto::BlockKey>>)> {
    // keys[i]: (cipher_key, mac_key) of source i's sealed blocks (an encrypted set).
    let keys = keys
        .unwrap_or_default()
        .iter()
        .map(|k| k.as_ref().map(super::crypto::block_key).transpose())
        .collect::<PyResult<Vec<_>>>()?;
    let files = files
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
    Ok((files, keys))
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
        .map_err(|e| engine_error(e.into()))
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
            .collect::<crate::format::Result<Vec<_>>>()
    })
    .map_err(|e| engine_error(e.into()))
}

/// Adds this domain's classes and functions to `rustybackup._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPieceInfo>()?;
    m.add_function(wrap_pyfunction!(backup_files, m)?)?;
    m.add_function(wrap_pyfunction!(restore_files, m)?)?;
    m.add_function(wrap_pyfunction!(read_piece_info, m)?)?;
    m.add_function(wrap_pyfunction!(read_piece_index, m)?)?;
    Ok(())
}
