//! Bindings for `crate::verify`.
use pyo3::prelude::*;
/// Adds this domain to `rustybackup._core`.
pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> { Ok(()) }
