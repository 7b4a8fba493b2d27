//! Bindings for `crate::tree`: the backup's walk of a file tree. The walk runs with the
//! GIL released; the entries are then handed over as tuples with a ready
//! `os.stat_result` each, so the Python side creates no object per system call.

use std::ffi::OsString;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple};

use super::errors::io_error;
use super::select::PyPathMatcher;
use crate::tree::{self, Kind, Stat};

/// A manifest's `files` kept in Rust: the parent's matched against the walk, the new set's written.
pub mod file_table;
/// The parent manifest's file table (the unchanged-file check reads it).
pub mod manifest_files;

/// One entry: (rel, kind, stat, link target, xattrs, xattr problems).
type EntryTuple<'py> = (
    OsString,
    &'static str,
    Bound<'py, PyAny>,
    Option<OsString>,
    Vec<(OsString, Bound<'py, PyBytes>)>,
    Vec<String>,
);
/// One skipped entry: (rel, reason, vanished, is a directory whose listing failed).
type SkippedTuple = (OsString, String, bool, bool);

static STAT_RESULT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn stat_result<'py>(py: Python<'py>, s: &Stat) -> PyResult<Bound<'py, PyAny>> {
    let ty = STAT_RESULT.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("os")?.getattr("stat_result")?.unbind())
    })?;
    // os.stat_result's 19 fields: the 10 of the sequence (times as whole seconds), then
    // the float times (CPython: sec + nsec * 1e-9), the ns times, blksize, blocks, rdev.
    let split = |ns: i128| (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let (a, m, c) = (split(s.atime_ns), split(s.mtime_ns), split(s.ctime_ns));
    let float = |(sec, nsec): (i128, i128)| sec as f64 + nsec as f64 * 1e-9;
    let fields: [Bound<'py, PyAny>; 19] = [
        s.mode.into_pyobject(py)?.into_any(),
        s.ino.into_pyobject(py)?.into_any(),
        s.dev.into_pyobject(py)?.into_any(),
        s.nlink.into_pyobject(py)?.into_any(),
        s.uid.into_pyobject(py)?.into_any(),
        s.gid.into_pyobject(py)?.into_any(),
        s.size.into_pyobject(py)?.into_any(),
        a.0.into_pyobject(py)?.into_any(),
        m.0.into_pyobject(py)?.into_any(),
        c.0.into_pyobject(py)?.into_any(),
        float(a).into_pyobject(py)?.into_any(),
        float(m).into_pyobject(py)?.into_any(),
        float(c).into_pyobject(py)?.into_any(),
        s.atime_ns.into_pyobject(py)?.into_any(),
        s.mtime_ns.into_pyobject(py)?.into_any(),
        s.ctime_ns.into_pyobject(py)?.into_any(),
        s.blksize.into_pyobject(py)?.into_any(),
        s.blocks.into_pyobject(py)?.into_any(),
        s.rdev.into_pyobject(py)?.into_any(),
    ];
    ty.bind(py).call1((PyTuple::new(py, fields)?,))
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "symlink",
        Kind::Special => "special",
        Kind::Other => "other",
    }
}

/// Walks the directory `root` for a backup: every entry (lstat, link text, extended
/// attributes), what was skipped, and how many entries the rules left out. Only a
/// failure to read `root` itself raises (an `OSError` naming it).
#[pyfunction]
#[pyo3(signature = (root, matcher=None, exclude_caches=false, one_file_system=false))]
#[allow(clippy::type_complexity)]
fn walk_tree<'py>(
    py: Python<'py>,
    root: PathBuf,
    matcher: Option<PyRef<'py, PyPathMatcher>>,
    exclude_caches: bool,
    one_file_system: bool,
) -> PyResult<(Vec<EntryTuple<'py>>, Vec<SkippedTuple>, u64)> {
    let opts = tree::Options {
        matcher: matcher.map(|m| m.inner.clone()),
        exclude_caches,
        one_file_system,
    };
    let walked = py
        .detach(|| tree::walk(&root, &opts))
        .map_err(|e| io_error(&e, &root))?;
    let mut entries = Vec::with_capacity(walked.entries.len());
    for e in walked.entries {
        let xattrs = e
            .xattrs
            .into_iter()
            .map(|(name, value)| (name, PyBytes::new(py, &value)))
            .collect();
        entries.push((
            e.rel,
            kind_name(e.kind),
            stat_result(py, &e.stat)?,
            e.target,
            xattrs,
            e.xattr_problems,
        ));
    }
    let skipped = walked
        .skipped
        .into_iter()
        .map(|s| (s.rel, s.reason, s.vanished, s.directory))
        .collect();
    Ok((entries, skipped, walked.excluded))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(walk_tree, m)?)?;
    manifest_files::register(m)?;
    file_table::register(m)?;
    Ok(())
}
