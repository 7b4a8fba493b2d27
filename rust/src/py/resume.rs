//! Bindings for what a cut backup left staged (`format::checkpoint`): the engine reads
//! and adopts it itself (`engine::resume`); Python only asks how much is there, to keep
//! or discard a staging directory and to say so.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::errors::engine_error;
use crate::format::checkpoint::Journal;

/// `(files, source bytes, piece bytes)` the checkpoint journal at `path` lists as
/// finished (its intact records; a torn last record does not count). Raises BackupError
/// when the journal's header is damaged, OSError when it cannot be read.
#[pyfunction]
fn checkpoint_summary(py: Python<'_>, path: PathBuf) -> PyResult<(u64, u64, u64)> {
    let journal = py.detach(|| Journal::read(&path)).map_err(|e| engine_error(e.into()))?;
    let bytes = journal.records.iter().map(|r| r.size).sum();
    let piece = journal.records.last().map_or(0, |r| r.piece_end);
    Ok((journal.records.len() as u64, bytes, piece))
}

/// The files a cut PostgreSQL base backup journaled at `path` that the next one can
/// adopt now (`engine::resume_move`), in the journal's order: the caller passes them
/// first. Raises BackupError when the journal's header is damaged, OSError when it
/// cannot be read.
#[pyfunction]
fn checkpoint_adoptable(py: Python<'_>, path: PathBuf) -> PyResult<Vec<PathBuf>> {
    py.detach(|| crate::engine::resume_move::adoptable(&path))
        .map_err(engine_error)
}

/// Adds this module's functions to `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(checkpoint_summary, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint_adoptable, m)?)?;
    Ok(())
}
