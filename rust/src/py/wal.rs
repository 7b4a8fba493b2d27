//! Bindings for `crate::wal`: scanning a SQLite WAL and applying its committed frames.
//! Both release the GIL: they checksum every byte of the buffer.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::buffer::ByteView;
use super::errors::wal_error;
use crate::wal;

/// The WAL header's fields, which `WalScan` and `WalCopy` both carry (their base class).
#[pyclass(frozen, subclass, module = "rustybackup._core", name = "WalHeaderFields")]
pub struct PyWalHeaderFields {
    /// Bytes per page.
    #[pyo3(get)]
    page_size: u32,
    /// Checksums read big-endian words (magic 0x377f0683).
    #[pyo3(get)]
    big_endian: bool,
    /// The header's checkpoint sequence number.
    #[pyo3(get)]
    checkpoint_seq: u32,
    /// (salt-1, salt-2): the WAL generation's identity.
    #[pyo3(get)]
    salt: (u32, u32),
    /// The header's checksum (frame 1's seed).
    #[pyo3(get)]
    header_checksum: (u32, u32),
}

impl PyWalHeaderFields {
    fn of(h: &wal::WalHeader) -> Self {
        Self {
            page_size: h.page_size,
            big_endian: h.big_endian,
            checkpoint_seq: h.checkpoint_seq,
            salt: (h.salt[0], h.salt[1]),
            header_checksum: (h.checksum[0], h.checksum[1]),
        }
    }
}

/// What `wal_scan` found: the header, the committed frames, and why the valid run ended.
#[pyclass(frozen, extends = PyWalHeaderFields, module = "rustybackup._core", name = "WalScan")]
pub struct PyWalScan {
    /// Index of the buffer's first frame.
    #[pyo3(get)]
    first_frame: u64,
    /// Index of the last commit frame, or None.
    #[pyo3(get)]
    last_commit: Option<u64>,
    /// Cumulative checksum after the last commit (the seed if none).
    #[pyo3(get)]
    checksum: (u32, u32),
    /// Valid frames after the last commit.
    #[pyo3(get)]
    uncommitted: u64,
    /// Why the valid run ended, in words.
    #[pyo3(get)]
    stop: String,
    /// What ended the run: "end", "partial", "salt", "checksum" or "page_zero".
    #[pyo3(get)]
    stop_kind: &'static str,
    /// The frame that ended the run (None at a clean end of the buffer).
    #[pyo3(get)]
    stop_frame: Option<u64>,
    /// Bytes of the buffer holding the header and the committed frames.
    #[pyo3(get)]
    committed_len: usize,
    /// Committed frames as (index, page_number, commit_size).
    #[pyo3(get)]
    frames: Vec<(u64, u32, u32)>,
}

#[pymethods]
impl PyWalScan {
    /// Indexes of the commit frames.
    #[getter]
    fn commits(&self) -> Vec<u64> {
        self.frames.iter().filter(|f| f.2 != 0).map(|f| f.0).collect()
    }

    fn __repr__(slf: PyRef<'_, Self>) -> String {
        let head = slf.as_super();
        format!(
            "WalScan(page_size={}, salt={:?}, first_frame={}, last_commit={}, frames={}, stop={:?})",
            head.page_size,
            head.salt,
            slf.first_frame,
            slf.last_commit.map_or("None".to_string(), |n| n.to_string()),
            slf.frames.len(),
            slf.stop
        )
    }
}

/// What `wal_copy` copied: the WAL header's fields, the commit frames copied, and where
/// and why the valid run ended (the attributes a `WalScan` has, where they mean the same).
#[pyclass(frozen, extends = PyWalHeaderFields, module = "rustybackup._core", name = "WalCopy")]
pub struct PyWalCopy {
    /// The first frame copied.
    #[pyo3(get)]
    first_frame: u64,
    /// Whether the copy continues the resume point (same salts).
    #[pyo3(get)]
    resumed: bool,
    /// Indexes of the commit frames copied.
    #[pyo3(get)]
    commits: Vec<u64>,
    /// Frames copied.
    #[pyo3(get)]
    frames: u64,
    /// Cumulative checksum after the last copied frame (the seed if none).
    #[pyo3(get)]
    checksum: (u32, u32),
    /// Valid frames after the last commit.
    #[pyo3(get)]
    uncommitted: u64,
    /// Why the valid run ended, in words.
    #[pyo3(get)]
    stop: String,
    /// What ended the run: "end", "partial", "salt", "checksum" or "page_zero".
    #[pyo3(get)]
    stop_kind: &'static str,
    /// The frame that ended the run (None at a clean end of the file).
    #[pyo3(get)]
    stop_frame: Option<u64>,
    /// Bytes of the WAL file after the frame that ended the run.
    #[pyo3(get)]
    following_bytes: u64,
    /// Bytes written to the destination (0: no commit, no file).
    #[pyo3(get)]
    written: u64,
}

#[pymethods]
impl PyWalCopy {
    /// Index of the last commit frame copied, or None.
    #[getter]
    fn last_commit(&self) -> Option<u64> {
        self.commits.last().copied()
    }

    fn __repr__(slf: PyRef<'_, Self>) -> String {
        format!(
            "WalCopy(salt={:?}, first_frame={}, commits={}, frames={}, written={}, stop={:?})",
            slf.as_super().salt,
            slf.first_frame,
            slf.commits.len(),
            slf.frames,
            slf.written,
            slf.stop
        )
    }
}

fn stop_of(stop: wal::Stop) -> (&'static str, Option<u64>) {
    match stop {
        wal::Stop::End => ("end", None),
        wal::Stop::Partial { index } => ("partial", Some(index)),
        wal::Stop::Salt { index } => ("salt", Some(index)),
        wal::Stop::Checksum { index } => ("checksum", Some(index)),
        wal::Stop::PageZero { index } => ("page_zero", Some(index)),
    }
}

fn to_py(s: &wal::Scan) -> PyClassInitializer<PyWalScan> {
    let (stop_kind, stop_frame) = stop_of(s.stop);
    PyClassInitializer::from(PyWalHeaderFields::of(&s.header)).add_subclass(PyWalScan {
        first_frame: s.first_index,
        last_commit: s.last_commit(),
        checksum: (s.checksum[0], s.checksum[1]),
        uncommitted: s.uncommitted,
        stop: s.stop.describe(),
        stop_kind,
        stop_frame,
        committed_len: s.committed_len(),
        frames: s
            .frames
            .iter()
            .map(|f| (f.index, f.page_number, f.commit_size))
            .collect(),
    })
}

/// Scans `data`: a 32-byte WAL header and frames numbered from `first_frame`. `seed` is
/// the cumulative checksum of frame `first_frame - 1` (required after frame 1).
#[pyfunction]
#[pyo3(
    signature = (data, first_frame = 1, seed = None),
    text_signature = "(data, first_frame=1, seed=None)"
)]
fn wal_scan(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    first_frame: u64,
    seed: Option<(u32, u32)>,
) -> PyResult<Py<PyWalScan>> {
    let view = ByteView::new(data)?;
    let bytes = view.as_slice();
    let seed = seed.map(|(a, b)| [a, b]);
    let scan = py.detach(|| wal::scan(bytes, first_frame, seed)).map_err(wal_error)?;
    Py::new(py, to_py(&scan))
}

/// Applies the committed frames of `data` with `after < index <= through` to the
/// database file `db` (see `wal_scan` for `data`, `first_frame`, `seed`). Returns
/// (frames, pages_written, db_pages).
#[pyfunction]
#[pyo3(
    signature = (db, data, *, first_frame = 1, seed = None, after, through),
    text_signature = "(db, data, *, first_frame=1, seed=None, after, through)"
)]
fn wal_apply(
    py: Python<'_>,
    db: PathBuf,
    data: &Bound<'_, PyAny>,
    first_frame: u64,
    seed: Option<(u32, u32)>,
    after: u64,
    through: u64,
) -> PyResult<(u64, u64, u32)> {
    let view = ByteView::new(data)?;
    let bytes = view.as_slice();
    let seed = seed.map(|(a, b)| [a, b]);
    let stats = py
        .detach(|| {
            let scan = wal::scan(bytes, first_frame, seed)?;
            wal::apply(&db, bytes, &scan, after, through)
        })
        .map_err(wal_error)?;
    Ok((stats.frames, stats.pages_written, stats.db_pages))
}

/// A resume point as Python passes it: ((salt-1, salt-2), frame, (checksum-1, checksum-2)).
type Resume = ((u32, u32), u64, (u32, u32));

/// Copies the committed frames of the live WAL file `wal` into a new file `dest` (the
/// header, then the frames), reading the WAL in large reads and checking salts and the
/// checksum chain as it goes. `resume` = ((salt-1, salt-2), frame, checksum) of a frame
/// already copied: with the same salts in the WAL, copying starts after it. With
/// `append`, the frames after `resume` are appended to the existing `dest` instead, and
/// nothing is written when the WAL does not continue it. None when there is no WAL or no
/// header yet.
#[pyfunction]
#[pyo3(
    signature = (wal, dest, resume = None, append = false),
    text_signature = "(wal, dest, resume=None, append=False)"
)]
fn wal_copy(
    py: Python<'_>,
    wal: PathBuf,
    dest: PathBuf,
    resume: Option<Resume>,
    append: bool,
) -> PyResult<Option<Py<PyWalCopy>>> {
    let resume = resume.map(|((a, b), frame, (c, d))| ([a, b], frame, [c, d]));
    let copied = py
        .detach(|| {
            if append {
                wal::copy::append_committed(&wal, &dest, resume)
            } else {
                wal::copy::copy_committed(&wal, &dest, resume)
            }
        })
        .map_err(wal_error)?;
    let Some(c) = copied else { return Ok(None) };
    let (stop_kind, stop_frame) = stop_of(c.stop);
    let init = PyClassInitializer::from(PyWalHeaderFields::of(&c.header)).add_subclass(PyWalCopy {
        first_frame: c.first_index,
        resumed: c.resumed,
        frames: c.frames,
        checksum: (c.checksum[0], c.checksum[1]),
        uncommitted: c.uncommitted,
        stop: c.stop.describe(),
        stop_kind,
        stop_frame,
        following_bytes: c.following_bytes,
        written: c.written,
        commits: c.commits,
    });
    Py::new(py, init).map(Some)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWalHeaderFields>()?;
    m.add_class::<PyWalScan>()?;
    m.add_class::<PyWalCopy>()?;
    m.add_function(wrap_pyfunction!(wal_copy, m)?)?;
    m.add_function(wrap_pyfunction!(wal_scan, m)?)?;
    m.add_function(wrap_pyfunction!(wal_apply, m)?)?;
    Ok(())
}
