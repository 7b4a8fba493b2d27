//! rustybackup's Rust core.
//!
//! The pure modules (`cron`, `scan`, `chain`, `format`, `engine`, `verify`) carry no PyO3 types; `py` is the
//! only bindings layer and is compiled only with the `python` feature that maturin enables.

pub mod chain;
pub mod cron;
pub mod crypto;
pub mod dedup;
pub mod engine;
pub mod format;
pub mod io_hints;
pub mod pgpage;
pub mod scan;
pub mod select;
pub mod storage;
pub mod tree;
pub mod verify;
pub mod wal;

#[cfg(test)]
pub(crate) mod test_util;

#[cfg(feature = "python")]
mod py;

#[cfg(feature = "python")]
use pyo3::prelude::*;

/// The native module `rustybackup._core`: registration only; each domain registers itself.
#[cfg(feature = "python")]
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    py::cron::register(m)?;
    py::crypto::register(m)?;
    py::reseal::register(m)?;
    py::scan::register(m)?;
    py::select::register(m)?;
    py::tree::register(m)?;
    py::chain::register(m)?;
    py::engine::register(m)?;
    py::restore_into::register(m)?;
    py::restore_tree::register(m)?;
    py::resume::register(m)?;
    py::verify::register(m)?;
    py::pgpage::register(m)?;
    py::wal::register(m)?;
    py::storage::register(m)?;
    Ok(())
}
