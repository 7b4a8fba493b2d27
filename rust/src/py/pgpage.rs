//! Bindings for `crate::pgpage`: PostgreSQL page checksums.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::errors::io_error;
use crate::pgpage;

/// `pg_checksum_page(page, blkno)` of PostgreSQL.
#[pyfunction]
#[pyo3(signature = (page, blkno), text_signature = "(page, blkno)")]
fn pg_checksum_page(page: &[u8], blkno: u32) -> PyResult<u16> {
    if !pgpage::valid_page_size(page.len()) {
        return Err(PyValueError::new_err(format!(
            "a page is 1024..32768 bytes, a power of two; got {} bytes",
            page.len()
        )));
    }
    Ok(pgpage::checksum_page(page, blkno))
}

/// Damaged pages of one relation segment file, as (block, stored, computed).
#[pyfunction]
#[pyo3(
    signature = (path, *, segment = 0, start_lsn, page_size = 8192),
    text_signature = "(path, *, segment=0, start_lsn, page_size=8192)"
)]
fn pg_check_file(
    py: Python<'_>,
    path: PathBuf,
    segment: u64,
    start_lsn: u64,
    page_size: usize,
) -> PyResult<Vec<(u64, u16, u16)>> {
    if !pgpage::valid_page_size(page_size) {
        return Err(PyValueError::new_err(format!(
            "page_size {page_size} is not a power of two in 1024..32768"
        )));
    }
    let bad = py
        .detach(|| pgpage::check_file(&path, segment, start_lsn, page_size))
        .map_err(|e| io_error(&e, &path))?;
    Ok(bad.into_iter().map(|b| (b.block, b.stored, b.computed)).collect())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pg_checksum_page, m)?)?;
    m.add_function(wrap_pyfunction!(pg_check_file, m)?)?;
    Ok(())
}
