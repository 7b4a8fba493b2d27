//! Bindings for `crate::engine`.

use pyo3::prelude::*;

/// Adds this domain's classes and functions to `rustybackup._core`.
pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
