//! Bindings for `crate::verify`: argument conversion, the GIL released for all reading and
//! hashing, progress and Ctrl-C polled from the calling thread while rayon workers run.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::errors::{io_error, VerificationError};
use crate::format::BlockMapReader;
use crate::scan::algorithm::{to_hex, Algorithm};
use crate::verify::restored::BlockRange;
use crate::verify::{check_restored_file, verify_items, Control, Item, ItemKind, ItemReport, Level, StopReason};

/// How often progress is reported and signals are checked while the workers run.
const POLL: Duration = Duration::from_millis(100);

/// What one piece or block map check found (`verify_files` returns one per input row).
#[pyclass(frozen, module = "rustybackup._core", name = "FileVerdict")]
pub struct PyFileVerdict {
    /// Position of the row in the input.
    #[pyo3(get)]
    position: usize,
    /// "ok", "missing", "damaged" or "not_checked".
    #[pyo3(get)]
    outcome: &'static str,
    /// (kind, message) for every problem, in the order found.
    #[pyo3(get)]
    issues: Vec<(&'static str, String)>,
    /// (file_no, block_index, offset, expected, actual) for every bad block (FULL).
    #[pyo3(get)]
    bad_blocks: Vec<(u32, u64, u64, String, String)>,
    /// Bytes read from the file.
    #[pyo3(get)]
    bytes_read: u64,
    /// Seconds spent on it.
    #[pyo3(get)]
    elapsed: f64,
    /// "budget" or "cancelled" when the check was cut short, else None.
    #[pyo3(get)]
    stopped: Option<&'static str>,
}

impl From<ItemReport> for PyFileVerdict {
    fn from(r: ItemReport) -> Self {
        Self {
            position: r.position,
            outcome: r.outcome.name(),
            issues: r.issues.into_iter().map(|i| (i.kind.name(), i.message)).collect(),
            bad_blocks: r
                .bad_blocks
                .into_iter()
                .map(|b| (b.file_no, b.block_index, b.offset, b.expected, b.actual))
                .collect(),
            bytes_read: r.bytes_read,
            elapsed: r.elapsed.as_secs_f64(),
            stopped: r.stopped.map(|s| match s {
                StopReason::Budget => "budget",
                StopReason::Cancelled => "cancelled",
            }),
        }
    }
}

#[pymethods]
impl PyFileVerdict {
    fn __repr__(&self) -> String {
        format!(
            "FileVerdict(position={}, outcome={:?}, issues={}, bad_blocks={}, bytes_read={})",
            self.position,
            self.outcome,
            self.issues.len(),
            self.bad_blocks.len(),
            self.bytes_read
        )
    }
}

/// One input row: (id, set_id, kind, path, size, checksum, algorithm, block_count).
type Row = (
    String,
    String,
    String,
    PathBuf,
    Option<u64>,
    Option<String>,
    Option<String>,
    Option<u64>,
);

fn to_item(i: usize, row: Row) -> PyResult<Item> {
    let (id, set_id, kind, path, size, checksum, algorithm, block_count) = row;
    let kind = match kind.as_str() {
        "piece" => ItemKind::Piece,
        "blockmap" => ItemKind::BlockMap,
        other => {
            return Err(PyValueError::new_err(format!(
                "row {i} ({id}): kind must be \"piece\" or \"blockmap\", not {other:?}"
            )))
        }
    };
    // An unknown algorithm name in the catalog is a finding about that row, not an error.
    let algorithm = algorithm.and_then(|a| Algorithm::from_name(&a).ok());
    Ok(Item {
        id,
        set_id,
        kind,
        path,
        size,
        checksum,
        algorithm,
        block_count,
        key: None,
    })
}

/// Verifies pieces and block maps at `level` ("quick", "standard", "full") in parallel,
/// starting them in the given order; stops starting and continuing files after `budget`
/// seconds. `progress(bytes_read, files_done)` is called about ten times a second.
#[pyfunction]
#[pyo3(signature = (rows, level, *, budget = None, progress = None, keys = None))]
pub fn verify_files(
    py: Python<'_>,
    rows: Vec<Row>,
    level: &str,
    budget: Option<f64>,
    progress: Option<Py<PyAny>>,
    keys: Option<std::collections::HashMap<String, super::crypto::KeyPair>>,
) -> PyResult<Vec<PyFileVerdict>> {
    // keys: set id -> (cipher_key, mac_key) of an encrypted set's sealed blocks.
    let keys = keys
        .unwrap_or_default()
        .iter()
        .map(|(set, pair)| Ok((set.clone(), super::crypto::block_key(pair)?)))
        .collect::<PyResult<std::collections::HashMap<_, _>>>()?;
    let level = Level::from_name(level).ok_or_else(|| {
        PyValueError::new_err(format!(
            "level must be \"quick\", \"standard\" or \"full\", not {level:?}"
        ))
    })?;
    let items = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            to_item(i, r).map(|mut item| {
                item.key = keys.get(&item.set_id).cloned();
                item
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let deadline = match budget {
        Some(b) if !(b.is_finite() && b >= 0.0) => {
            return Err(PyValueError::new_err(format!(
                "budget must be a non-negative number of seconds, not {b}"
            )))
        }
        Some(b) => Some(Instant::now() + Duration::from_secs_f64(b.min(1e9))),
        None => None,
    };
    let ctl = Control::new(deadline);
    let mut failure: Option<PyErr> = None;
    let reports = py.detach(|| {
        std::thread::scope(|s| {
            // The worker says when it is done, so a short run returns at once instead of
            // at the next poll tick (a fixed 100 ms sleep added up to 100 ms to every call).
            let (done, finished) = mpsc::channel::<()>();
            let (items, ctl_ref) = (&items, &ctl);
            let worker = s.spawn(move || {
                let reports = verify_items(items, level, ctl_ref);
                let _ = done.send(());
                reports
            });
            while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(POLL) {
                if failure.is_some() {
                    continue;
                }
                let bytes = ctl.counters.bytes_read.load(Ordering::Relaxed);
                let done = ctl.counters.items_done.load(Ordering::Relaxed);
                let outcome = Python::attach(|py| -> PyResult<()> {
                    py.check_signals()?;
                    if let Some(cb) = &progress {
                        cb.call1(py, (bytes, done))?;
                    }
                    Ok(())
                });
                if let Err(e) = outcome {
                    ctl.cancel.store(true, Ordering::Relaxed);
                    failure = Some(e);
                }
            }
            worker.join()
        })
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let reports = reports.map_err(|_| PyValueError::new_err("a verification worker panicked"))?;
    if let Some(cb) = &progress {
        let bytes = ctl.counters.bytes_read.load(Ordering::Relaxed);
        cb.call1(py, (bytes, reports.len()))?;
    }
    Ok(reports.into_iter().map(PyFileVerdict::from).collect())
}

/// A restored file compared with its manifest digest (and, on a mismatch, its block map).
#[pyclass(frozen, module = "rustybackup._core", name = "RestoredFileCheck")]
pub struct PyRestoredFileCheck {
    /// Size of the restored file.
    #[pyo3(get)]
    size: u64,
    /// Hex digest of the restored file.
    #[pyo3(get)]
    digest: String,
    /// Whether it equals the manifest's digest.
    #[pyo3(get)]
    matches: bool,
    /// (block_index, source, offset, expected, actual) of blocks differing from the block map.
    #[pyo3(get)]
    bad_blocks: Vec<(u64, u32, u64, String, String)>,
    /// Why the block comparison was incomplete.
    #[pyo3(get)]
    notes: Vec<String>,
    /// Bytes read.
    #[pyo3(get)]
    bytes_read: u64,
}

/// Hashes a restored file, compares it with `expected` (hex) and, when it differs and a
/// block map is given, finds the blocks that differ and the chain member that stored them.
#[pyfunction]
#[pyo3(signature = (path, algorithm, expected, *, blockmap = None, first_block = 0, block_count = 0))]
pub fn check_restored(
    py: Python<'_>,
    path: PathBuf,
    algorithm: &str,
    expected: &str,
    blockmap: Option<PathBuf>,
    first_block: u64,
    block_count: u64,
) -> PyResult<PyRestoredFileCheck> {
    let alg = Algorithm::from_name(algorithm).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let expected = expected.to_string();
    let r = py
        .detach(|| {
            let range = blockmap.as_deref().map(|b| BlockRange {
                blockmap: b,
                first_block,
                block_count,
            });
            check_restored_file(&path, alg, &expected, range)
        })
        .map_err(|e| io_error(&e, &path))?;
    Ok(PyRestoredFileCheck {
        size: r.size,
        digest: r.digest,
        matches: r.matches,
        bad_blocks: r
            .bad_blocks
            .into_iter()
            .map(|b| (b.block_index, b.source, b.offset, b.expected, b.actual))
            .collect(),
        notes: r.notes,
        bytes_read: r.bytes_read,
    })
}

/// A block that no longer matches the block map: (record, source, offset, expected, actual).
type MappedFault = (u64, u32, u64, String, String);

/// Re-reads every block the block map names from `pieces` (the manifest's `sources`, in
/// order) and returns (record, source, offset, expected, actual) for each block whose
/// digest differs; a restore stops at the first such block, this finds them all.
#[pyfunction]
pub fn check_mapped_blocks(py: Python<'_>, blockmap: PathBuf, pieces: Vec<PathBuf>) -> PyResult<Vec<MappedFault>> {
    let faults = py
        .detach(|| crate::scan::parallel::in_pool(|| crate::verify::restored::check_mapped_blocks(&blockmap, &pieces)))
        .map_err(VerificationError::new_err)?;
    Ok(faults
        .into_iter()
        .map(|f| (f.record, f.source, f.offset, f.expected, f.actual))
        .collect())
}

/// `(version, parent)` of the block map at `path`, from its own bytes (its parents are
/// not opened): `parent` is the map it names as its parent, `(path, checksum hex)`, or
/// None. VerificationError when the map does not open (its own check says why).
#[pyfunction]
pub fn blockmap_parent(py: Python<'_>, path: PathBuf) -> PyResult<(u32, Option<(PathBuf, String)>)> {
    py.detach(|| {
        let map = BlockMapReader::open_alone(&path)?;
        let parent = map.parent_ref().map(|(p, sum)| (p.to_path_buf(), to_hex(sum)));
        Ok::<_, crate::format::Error>((map.version(), parent))
    })
    .map_err(|e| VerificationError::new_err(e.to_string()))
}

/// Adds this domain's classes and functions to `rustybackup._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFileVerdict>()?;
    m.add_class::<PyRestoredFileCheck>()?;
    m.add_function(wrap_pyfunction!(verify_files, m)?)?;
    m.add_function(wrap_pyfunction!(check_restored, m)?)?;
    m.add_function(wrap_pyfunction!(check_mapped_blocks, m)?)?;
    m.add_function(wrap_pyfunction!(blockmap_parent, m)?)?;
    Ok(())
}
