//! Bindings for `crate::tree`: the backup's walk of a file tree. The walk runs with the
//! GIL released; the entries are then handed over as tuples with a ready
//! `os.stat_result` each, so the Python side creates no object per system call.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyString, PyTuple};

use super::errors::io_error;
use super::select::PyPathMatcher;
use crate::format::file_table::{FileTable, Seen};
use crate::tree::{self, Kind, Stat};
use file_table::PyFileTable;

/// A manifest's `files` kept in Rust: the parent's matched against the walk, the new set's written.
pub mod file_table;
/// The parent manifest's file table (the unchanged-file check reads it).
pub mod manifest_files;

/// One entry: (rel, kind, stat, link target, xattrs, xattr problems).
type EntryTuple<'py> = (
    OsString,
    Bound<'py, PyString>,
    Bound<'py, PyAny>,
    Option<OsString>,
    Bound<'py, PyTuple>,
    Bound<'py, PyTuple>,
);
/// One skipped entry: (rel, reason, vanished, is a directory whose listing failed).
type SkippedTuple = (OsString, String, bool, bool);

static STAT_RESULT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A time as `os.stat_result` has it: (whole seconds, float seconds, ns).
type Time<'py> = [Bound<'py, PyAny>; 3];

fn time<'py>(py: Python<'py>, ns: i128) -> PyResult<Time<'py>> {
    // CPython's float time: sec + nsec * 1e-9.
    let (sec, nsec) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    Ok([
        sec.into_pyobject(py)?.into_any(),
        (sec as f64 + nsec as f64 * 1e-9).into_pyobject(py)?.into_any(),
        ns.into_pyobject(py)?.into_any(),
    ])
}

fn stat_result<'py>(py: Python<'py>, s: &Stat) -> PyResult<Bound<'py, PyAny>> {
    let ty = STAT_RESULT.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("os")?.getattr("stat_result")?.unbind())
    })?;
    // A time equal to the mtime (the ctime of a file written once, the atime under
    // noatime) is the same (immutable) objects: a walk makes ~15 per entry and frees them
    // all at the end of the backup, a few ms of an unchanged 10,000-file backup.
    let m = time(py, s.mtime_ns)?;
    let same_or = |ns: i128| if ns == s.mtime_ns { Ok(m.clone()) } else { time(py, ns) };
    let (a, c) = (same_or(s.atime_ns)?, same_or(s.ctime_ns)?);
    let [a_sec, a_float, a_ns] = a;
    let [m_sec, m_float, m_ns] = m;
    let [c_sec, c_float, c_ns] = c;
    // os.stat_result's 19 fields: the 10 of the sequence (times as whole seconds), then
    // the float times, the ns times, blksize, blocks, rdev.
    let fields: [Bound<'py, PyAny>; 19] = [
        s.mode.into_pyobject(py)?.into_any(),
        s.ino.into_pyobject(py)?.into_any(),
        s.dev.into_pyobject(py)?.into_any(),
        s.nlink.into_pyobject(py)?.into_any(),
        s.uid.into_pyobject(py)?.into_any(),
        s.gid.into_pyobject(py)?.into_any(),
        s.size.into_pyobject(py)?.into_any(),
        a_sec,
        m_sec,
        c_sec,
        a_float,
        m_float,
        c_float,
        a_ns,
        m_ns,
        c_ns,
        s.blksize.into_pyobject(py)?.into_any(),
        s.blocks.into_pyobject(py)?.into_any(),
        s.rdev.into_pyobject(py)?.into_any(),
    ];
    ty.bind(py).call1((PyTuple::new(py, fields)?,))
}

/// The kind's name, one interned string each (not one per entry).
fn kind_name<'py>(py: Python<'py>, k: Kind) -> Bound<'py, PyString> {
    match k {
        Kind::File => pyo3::intern!(py, "file"),
        Kind::Dir => pyo3::intern!(py, "dir"),
        Kind::Symlink => pyo3::intern!(py, "symlink"),
        Kind::Special => pyo3::intern!(py, "special"),
        Kind::Other => pyo3::intern!(py, "other"),
    }
    .clone()
}

/// Walks the directory `root` for a backup: every entry (lstat, link text, extended
/// attributes), what was skipped, and how many entries the rules left out. Only a
/// failure to read `root` itself raises (an `OSError` naming it).
///
/// `known`: the parent set's file table; a file unchanged since its row (`FileTable`'s
/// rule, the one that takes its data over unread) is not asked for its extended
/// attributes, unless its path is in `reread` (the parent's entries that recorded some,
/// or a problem reading them): it has none, as its row says.
#[pyfunction]
#[pyo3(signature = (root, matcher=None, exclude_caches=false, one_file_system=false, known=None, reread=None))]
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn walk_tree<'py>(
    py: Python<'py>,
    root: PathBuf,
    matcher: Option<PyRef<'py, PyPathMatcher>>,
    exclude_caches: bool,
    one_file_system: bool,
    known: Option<PyRef<'py, PyFileTable>>,
    reread: Option<HashSet<String>>,
) -> PyResult<(Vec<EntryTuple<'py>>, Vec<SkippedTuple>, u64)> {
    let reread = reread.unwrap_or_default();
    let bare = known
        .as_deref()
        .map(|t| |rel: &[u8], st: &Stat| bare_since(t.table(), &reread, rel, st));
    let opts = tree::Options {
        matcher: matcher.map(|m| m.inner.clone()),
        exclude_caches,
        one_file_system,
        known_bare: bare.as_ref().map(|f| f as tree::KnownBare<'_>),
    };
    let walked = py
        .detach(|| tree::walk(&root, &opts))
        .map_err(|e| io_error(&e, &root))?;
    let mut entries = Vec::with_capacity(walked.entries.len());
    for e in walked.entries {
        // Tuples: most entries have none, and the empty tuple is one shared object.
        let xattrs = PyTuple::new(
            py,
            e.xattrs
                .into_iter()
                .map(|(name, value)| (name, PyBytes::new(py, &value))),
        )?;
        entries.push((
            e.rel,
            kind_name(py, e.kind),
            stat_result(py, &e.stat)?,
            e.target,
            xattrs,
            PyTuple::new(py, e.xattr_problems)?,
        ));
    }
    let skipped = walked
        .skipped
        .into_iter()
        .map(|s| (s.rel, s.reason, s.vanished, s.directory))
        .collect();
    Ok((entries, skipped, walked.excluded))
}

/// `tree::KnownBare` from the parent's table: a valid UTF-8 path not in `reread` whose
/// row's identity still matches.
fn bare_since(table: &FileTable, reread: &HashSet<String>, rel: &[u8], st: &Stat) -> bool {
    let Ok(path) = std::str::from_utf8(rel) else {
        return false;
    };
    let (Ok(mtime_ns), Ok(ctime_ns)) = (i64::try_from(st.mtime_ns), i64::try_from(st.ctime_ns)) else {
        return false;
    };
    let seen = Seen {
        size: st.size,
        mtime_ns,
        ctime_ns,
        ino: st.ino,
        dev: st.dev,
    };
    !reread.contains(path) && table.unchanged(path, &seen).is_some()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(walk_tree, m)?)?;
    manifest_files::register(m)?;
    file_table::register(m)?;
    Ok(())
}
