//! Bindings for `crate::tree`: the backup's walk of a file tree. The walk runs with the
//! GIL released; the entries are then handed over as tuples with a `Stat` each, so the
//! Python side creates no object per system call.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;

use pyo3::prelude::*;
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

/// A walk entry's `lstat`, read as `os.stat_result` is (`st_mode`, `st_size`,
/// `st_mtime_ns`, ...): one object per entry where a stat_result is about twenty (its
/// ints, floats and ns times), which made a fifth of an unchanged 10,000-file walk's
/// hand-over to Python; the table's match reads it without a Python call per field.
#[pyclass(module = "rustybackup._core", name = "Stat", frozen)]
pub struct PyStat {
    pub(crate) s: Stat,
}

/// CPython's float time: sec + nsec * 1e-9.
fn float_time(ns: i128) -> f64 {
    let (sec, nsec) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    sec as f64 + nsec as f64 * 1e-9
}

#[pymethods]
impl PyStat {
    #[getter]
    fn st_mode(&self) -> u32 {
        self.s.mode
    }
    #[getter]
    fn st_ino(&self) -> u64 {
        self.s.ino
    }
    #[getter]
    fn st_dev(&self) -> u64 {
        self.s.dev
    }
    #[getter]
    fn st_nlink(&self) -> u64 {
        self.s.nlink
    }
    #[getter]
    fn st_uid(&self) -> u32 {
        self.s.uid
    }
    #[getter]
    fn st_gid(&self) -> u32 {
        self.s.gid
    }
    #[getter]
    fn st_size(&self) -> u64 {
        self.s.size
    }
    #[getter]
    fn st_atime_ns(&self) -> i128 {
        self.s.atime_ns
    }
    #[getter]
    fn st_mtime_ns(&self) -> i128 {
        self.s.mtime_ns
    }
    #[getter]
    fn st_ctime_ns(&self) -> i128 {
        self.s.ctime_ns
    }
    #[getter]
    fn st_atime(&self) -> f64 {
        float_time(self.s.atime_ns)
    }
    #[getter]
    fn st_mtime(&self) -> f64 {
        float_time(self.s.mtime_ns)
    }
    #[getter]
    fn st_ctime(&self) -> f64 {
        float_time(self.s.ctime_ns)
    }
    #[getter]
    fn st_blksize(&self) -> u64 {
        self.s.blksize
    }
    #[getter]
    fn st_blocks(&self) -> u64 {
        self.s.blocks
    }
    #[getter]
    fn st_rdev(&self) -> u64 {
        self.s.rdev
    }

    fn __repr__(&self) -> String {
        let s = &self.s;
        format!(
            "Stat(st_mode={}, st_ino={}, st_dev={}, st_nlink={}, st_uid={}, st_gid={}, st_size={}, \
             st_mtime_ns={}, st_ctime_ns={})",
            s.mode, s.ino, s.dev, s.nlink, s.uid, s.gid, s.size, s.mtime_ns, s.ctime_ns
        )
    }
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
            Bound::new(py, PyStat { s: e.stat })?.into_any(),
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
    m.add_class::<PyStat>()?;
    m.add_function(wrap_pyfunction!(walk_tree, m)?)?;
    manifest_files::register(m)?;
    file_table::register(m)?;
    Ok(())
}
