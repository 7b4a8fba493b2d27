//! Binding for `crate::format::manifest_files`: a manifest document split into its
//! `files` rows and the rest, with the GIL released for the JSON pass; and for
//! `crate::format::manifest_sum`, the document's own checksum (format 4).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::format::manifest_files::{self, FileRow, Slot};
use crate::format::manifest_sum::{self, Sum};

/// `(path, mode, mtime_ns, size, digest, first_block, block_count, owner, ctime_ns, ino, dev)`.
pub(super) fn row_tuple<'py>(py: Python<'py>, r: &FileRow) -> PyResult<Bound<'py, PyAny>> {
    let (ctime, ino, dev) = match r.identity {
        Some((c, i, d)) => (Some(c), Some(i), Some(d)),
        None => (None, None, None),
    };
    let t = (
        r.path.as_str(),
        r.mode,
        r.mtime_ns,
        r.size,
        r.digest.as_str(),
        r.first_block,
        r.block_count,
        r.owner.clone(),
        ctime,
        ino,
        dev,
    );
    Ok(t.into_pyobject(py)?.into_any())
}

/// Splits a manifest document: `(files, rest)` where `files` lists, in order, a tuple per
/// entry the fast rules accept and the JSON text of every other entry (None when the
/// document has no `files` list), and `rest` is the JSON text of the other keys. None
/// when the document is not one this reader decodes as Python's json does.
#[pyfunction]
fn split_manifest<'py>(py: Python<'py>, doc: &[u8]) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let owned = doc.to_vec();
    let Some(split) = py.detach(move || manifest_files::split(&owned)) else {
        return Ok(None);
    };
    let files = match split.files {
        None => py.None().into_bound(py),
        Some(slots) => {
            let mut out = Vec::with_capacity(slots.len());
            for s in slots {
                out.push(match s {
                    Slot::Row(r) => row_tuple(py, &r)?,
                    Slot::Raw(text) => PyString::new(py, &text).into_any(),
                });
            }
            out.into_pyobject(py)?.into_any()
        }
    };
    Ok(Some(PyTuple::new(
        py,
        [files, PyString::new(py, &split.rest).into_any()],
    )?))
}

/// `doc` (a manifest document, a JSON object's text) with its checksum as the first key.
#[pyfunction]
fn manifest_sum_seal<'py>(py: Python<'py>, doc: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let sealed = py.detach(|| manifest_sum::seal(doc));
    let sealed = sealed.ok_or_else(|| PyValueError::new_err("a manifest document is a JSON object's text"))?;
    Ok(PyBytes::new(py, &sealed))
}

/// None when `doc` does not begin with a checksum (formats 1 to 3); else `(stored,
/// computed)`, equal when its bytes are the ones written (`computed` is empty when the
/// stored one is not 64 lower-case hex digits and a quote).
#[pyfunction]
fn manifest_sum_check(py: Python<'_>, doc: &[u8]) -> Option<(String, String)> {
    match py.detach(|| manifest_sum::check(doc)) {
        Sum::Absent => None,
        Sum::Matches { sum } => Some((sum.clone(), sum)),
        Sum::Differs { stored, computed } => Some((stored, computed)),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(manifest_sum_seal, m)?)?;
    m.add_function(wrap_pyfunction!(manifest_sum_check, m)?)?;
    m.add_function(wrap_pyfunction!(split_manifest, m)?)?;
    Ok(())
}
