//! Bindings for `crate::wal`: scanning a SQLite WAL and applying its committed frames.
//! Both release the GIL: they checksum every byte of the buffer.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::buffer::ByteView;
use super::errors::wal_error;
use crate::wal;

/// What `wal_scan` found: the header, the committed frames, and why the valid run ended.
#[pyclass(frozen, module = "rustybackup._core", name = "WalScan")]
pub struct PyWalScan {
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

    fn __repr__(&self) -> String {
        format!(
            "WalScan(page_size={}, salt={:?}, first_frame={}, last_commit={}, frames={}, stop={:?})",
            self.page_size,
            self.salt,
            self.first_frame,
            self.last_commit.map_or("None".to_string(), |n| n.to_string()),
            self.frames.len(),
            self.stop
        )
    }
}

fn to_py(s: &wal::Scan) -> PyWalScan {
    let (stop_kind, stop_frame) = match s.stop {
        wal::Stop::End => ("end", None),
        wal::Stop::Partial { index } => ("partial", Some(index)),
        wal::Stop::Salt { index } => ("salt", Some(index)),
        wal::Stop::Checksum { index } => ("checksum", Some(index)),
        wal::Stop::PageZero { index } => ("page_zero", Some(index)),
    };
    PyWalScan {
        page_size: s.header.page_size,
        big_endian: s.header.big_endian,
        checkpoint_seq: s.header.checkpoint_seq,
        salt: (s.header.salt[0], s.header.salt[1]),
        header_checksum: (s.header.checksum[0], s.header.checksum[1]),
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
    }
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
) -> PyResult<PyWalScan> {
    let view = ByteView::new(data)?;
    let bytes = view.as_slice();
    let seed = seed.map(|(a, b)| [a, b]);
    let scan = py.detach(|| wal::scan(bytes, first_frame, seed)).map_err(wal_error)?;
    Ok(to_py(&scan))
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWalScan>()?;
    m.add_function(wrap_pyfunction!(wal_scan, m)?)?;
    m.add_function(wrap_pyfunction!(wal_apply, m)?)?;
    Ok(())
}
