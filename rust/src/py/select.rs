//! Bindings for `crate::select`: the gitignore matcher behind `--exclude` (backup) and
//! `--include` (restore). Matching one path is a few hundred nanoseconds, so the GIL is
//! kept.

use pyo3::prelude::*;

use super::errors::ConfigError;
use crate::select;

/// A compiled list of gitignore patterns; paths are `/`-separated and relative to the
/// root of the tree.
#[pyclass(frozen, module = "rustybackup._core", name = "PathMatcher")]
pub struct PyPathMatcher {
    // The backup's walk (py/tree.rs) matches with it on its own thread.
    pub(super) inner: select::PathMatcher,
}

#[pymethods]
impl PyPathMatcher {
    #[new]
    #[pyo3(signature = (patterns), text_signature = "(patterns)")]
    fn new(patterns: Vec<String>) -> PyResult<Self> {
        let inner = select::PathMatcher::new(&patterns).map_err(|e| ConfigError::new_err(e.to_string()))?;
        Ok(Self { inner })
    }

    /// The patterns as given.
    #[getter]
    fn patterns(&self) -> Vec<String> {
        self.inner.patterns().to_vec()
    }

    /// Whether the last pattern matching `path` itself excludes it (parents not looked at).
    #[pyo3(signature = (path, is_dir), text_signature = "($self, path, is_dir)")]
    fn matches(&self, path: &str, is_dir: bool) -> bool {
        self.inner.matches(path, is_dir)
    }

    /// Whether `path` or a parent directory of it is excluded (git's rule).
    #[pyo3(signature = (path, is_dir), text_signature = "($self, path, is_dir)")]
    fn matches_path_or_parents(&self, path: &str, is_dir: bool) -> bool {
        self.inner.matches_path_or_parents(path, is_dir)
    }

    fn __len__(&self) -> usize {
        self.inner.patterns().len()
    }

    fn __repr__(&self) -> String {
        format!("PathMatcher({:?})", self.inner.patterns())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPathMatcher>()?;
    Ok(())
}
