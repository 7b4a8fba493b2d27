//! Bindings for `crate::catalog`: `read_chain_rows` reads every set of a database into a
//! Rust-owned `ChainRows`, which `recovery_path`, `recovery_chain` and `retention_plan`
//! accept in place of a list of tuples. Nothing of it becomes a Python object.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::errors::catalog_read_error;
use crate::catalog::{self, sqlite::Api};

/// Adds this domain's classes and functions to `rustybackup._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ChainRows>()?;
    m.add_function(wrap_pyfunction!(read_chain_rows, m)?)?;
    Ok(())
}

/// Every set of one database, held in Rust (see `_core.pyi`).
#[pyclass(frozen, module = "rustybackup._core", name = "ChainRows")]
pub struct ChainRows {
    pub(crate) rows: catalog::ChainRows,
}

#[pymethods]
impl ChainRows {
    fn __len__(&self) -> usize {
        self.rows.len()
    }

    fn __repr__(&self) -> String {
        format!("<ChainRows: {} sets>", self.rows.len())
    }
}

/// The sets of `database` in the catalog file, read through the SQLite of `sqlite_module`
/// (Python's `_sqlite3` shared object); None when that SQLite cannot be reached.
#[pyfunction]
#[pyo3(signature = (sqlite_module, catalog_path, database, /))]
fn read_chain_rows(
    py: Python<'_>,
    sqlite_module: PathBuf,
    catalog_path: PathBuf,
    database: &str,
) -> PyResult<Option<ChainRows>> {
    let read = py.detach(|| {
        let api = Api::load(&sqlite_module)?;
        Some(catalog::read_chain_rows(&api, &catalog_path, database))
    });
    match read {
        None => Ok(None),
        Some(Ok(rows)) => Ok(Some(ChainRows { rows })),
        Some(Err(err)) => Err(catalog_read_error(err)),
    }
}
