//! Binding for `crate::format::file_table`: a manifest's `files` held in Rust. The parent's
//! rows are matched against the walk here and the new set's rows written here, so an
//! unchanged file becomes no Python object; `manifest.FileTable` builds `FileEntry`
//! objects from it only for callers that iterate (restore, ls, diff).

use std::collections::{HashMap, HashSet};

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::manifest_files::row_tuple;
use super::PyStat;
use crate::format::file_table::{BlockFault, FileTable, PathFault, Seen};
use crate::format::manifest_files::{self, FileRow, OwnerRow, Slot};

/// `FileEntry`'s fields as a tuple, the owner as `(uid, gid, user, group)`.
type RowIn = (
    String,
    u32,
    i64,
    u64,
    String,
    u64,
    u64,
    Option<OwnerRow>,
    Option<i64>,
    Option<u64>,
    Option<u64>,
);

#[pyclass(module = "rustybackup._core", name = "FileTable")]
pub struct PyFileTable {
    inner: FileTable,
}

fn row_of(r: RowIn) -> FileRow {
    let (path, mode, mtime_ns, size, digest, first_block, block_count, owner, c, i, d) = r;
    FileRow {
        path,
        mode,
        mtime_ns,
        size,
        digest,
        first_block,
        block_count,
        owner,
        // All three or none: an entry missing one never matches (as in dedup's rule).
        identity: match (c, i, d) {
            (Some(c), Some(i), Some(d)) => Some((c, i, d)),
            _ => None,
        },
    }
}

/// The fields of an `os.stat_result` the table needs.
struct StatOf {
    mode: u32,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
    uid: u32,
    gid: u32,
    size: u64,
}

fn stat_fields(st: &Bound<'_, PyAny>) -> PyResult<StatOf> {
    if let Ok(walked) = st.cast::<PyStat>() {
        let s = &walked.get().s;
        let ns = |v: i128, name: &str| {
            i64::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} {v} is out of range")))
        };
        return Ok(StatOf {
            mode: s.mode,
            mtime_ns: ns(s.mtime_ns, "st_mtime_ns")?,
            ctime_ns: ns(s.ctime_ns, "st_ctime_ns")?,
            ino: s.ino,
            dev: s.dev,
            uid: s.uid,
            gid: s.gid,
            size: s.size,
        });
    }
    let py = st.py();
    Ok(StatOf {
        mode: st.getattr(pyo3::intern!(py, "st_mode"))?.extract()?,
        mtime_ns: st.getattr(pyo3::intern!(py, "st_mtime_ns"))?.extract()?,
        ctime_ns: st.getattr(pyo3::intern!(py, "st_ctime_ns"))?.extract()?,
        ino: st.getattr(pyo3::intern!(py, "st_ino"))?.extract()?,
        dev: st.getattr(pyo3::intern!(py, "st_dev"))?.extract()?,
        uid: st.getattr(pyo3::intern!(py, "st_uid"))?.extract()?,
        gid: st.getattr(pyo3::intern!(py, "st_gid"))?.extract()?,
        size: st.getattr(pyo3::intern!(py, "st_size"))?.extract()?,
    })
}

/// A walk entry `(rel, path, stat)`: its relative path (None when it is not valid UTF-8)
/// and its stat.
fn walk_entry<'py>(t: &Bound<'py, PyAny>) -> PyResult<(Option<String>, Bound<'py, PyAny>)> {
    let t = t.cast::<PyTuple>()?;
    let rel = t.get_item(0)?;
    let rel = rel.cast::<PyString>()?.to_str().ok().map(str::to_string);
    Ok((rel, t.get_item(2)?))
}

impl PyFileTable {
    /// The rows, for the walk's check of unchanged files (`walk_tree`'s `known`).
    pub(crate) fn table(&self) -> &FileTable {
        &self.inner
    }
}

#[pymethods]
impl PyFileTable {
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Row `i` as `FileEntry`'s fields.
    fn row<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyAny>> {
        let r = self
            .inner
            .rows()
            .get(i)
            .ok_or_else(|| PyIndexError::new_err(format!("no file row {i}")))?;
        row_tuple(py, r)
    }

    /// Rows `start..stop` (clipped to the table) as tuples.
    fn rows<'py>(&self, py: Python<'py>, start: usize, stop: usize) -> PyResult<Bound<'py, PyList>> {
        let rows = self.inner.rows();
        let (a, b) = (start.min(rows.len()), stop.min(rows.len()));
        let out = rows[a..b.max(a)]
            .iter()
            .map(|r| row_tuple(py, r))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, out)
    }

    /// Every row's path, in order.
    fn paths<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.inner.rows().iter().map(|r| PyString::new(py, &r.path)))
    }

    /// Puts the row of an entry the Python parser read (given as `FileEntry`'s fields).
    fn put(&mut self, i: usize, row: RowIn) -> PyResult<()> {
        if self.inner.put(i, row_of(row)) {
            Ok(())
        } else {
            Err(PyIndexError::new_err(format!("no file row {i}")))
        }
    }

    /// The blocks the rows hold in all, and the first row breaking the back-to-back rule
    /// as `(index, "block_count" | "first_block", expected)`, or None.
    #[allow(clippy::type_complexity)]
    fn check_blocks(&self, block_size: u64) -> (u64, Option<(usize, &'static str, u64)>) {
        match self.inner.check_blocks(block_size) {
            Ok(total) => (total, None),
            Err(BlockFault::Count { index, expected }) => (0, Some((index, "block_count", expected))),
            Err(BlockFault::First { index, expected }) => (0, Some((index, "first_block", expected))),
        }
    }

    /// The first path breaking the manifest's path rules with this table as the files
    /// and `others` the dirs, symlinks, hardlinks and specials paths, as `("twice",
    /// group, i, other group, other i, None)` or `("under", group, i, parent group,
    /// parent i, prefix)`; None when they hold. Groups are numbered in that order, the
    /// files 0.
    #[allow(clippy::type_complexity)]
    fn check_paths(
        &self,
        py: Python<'_>,
        others: Vec<Vec<String>>,
    ) -> Option<(&'static str, usize, usize, usize, usize, Option<String>)> {
        py.detach(|| match self.inner.check_paths(&others)? {
            PathFault::Twice { at, seen } => Some(("twice", at.0, at.1, seen.0, seen.1, None)),
            PathFault::Under { at, prefix, parent } => Some(("under", at.0, at.1, parent.0, parent.1, Some(prefix))),
        })
    }

    /// For a walk's files `[(rel, path, stat)]`: each one's `(first_block, block_count)`
    /// in this (the parent's) table or None, and, when `reuse`, `(position, size, digest,
    /// mtime_ns, ctime_ns, ino, dev)` of those unchanged since their row (that identity
    /// both the walk's and the row's): `backup_files`'s `reuse`.
    #[allow(clippy::type_complexity)]
    fn match_walk(
        &self,
        files: &Bound<'_, PyList>,
        reuse: bool,
    ) -> PyResult<(Vec<Option<(u64, u64)>>, Vec<(usize, u64, String, i64, i64, u64, u64)>)> {
        let mut ranges = Vec::with_capacity(files.len());
        let mut same = Vec::new();
        for (pos, t) in files.iter().enumerate() {
            let (rel, st) = walk_entry(&t)?;
            let Some(at) = rel.as_deref().and_then(|p| self.inner.position(p)) else {
                ranges.push(None);
                continue;
            };
            let r = &self.inner.rows()[at];
            ranges.push(Some((r.first_block, r.block_count)));
            if reuse {
                let s = stat_fields(&st)?;
                let seen = Seen {
                    size: s.size,
                    mtime_ns: s.mtime_ns,
                    ctime_ns: s.ctime_ns,
                    ino: s.ino,
                    dev: s.dev,
                };
                if let Some((_, r)) = rel.as_deref().and_then(|p| self.inner.unchanged(p, &seen)) {
                    same.push((
                        pos,
                        r.size,
                        r.digest.clone(),
                        seen.mtime_ns,
                        seen.ctime_ns,
                        seen.ino,
                        seen.dev,
                    ));
                }
            }
        }
        Ok((ranges, same))
    }

    /// The new set's table from a backup pass: `files` the walk's `(rel, path, stat)` it
    /// read, `results` the pass's `(size, digest, first_block, block_count)` of each,
    /// `changed` the paths that changed while read (stored without an identity), owners
    /// named through `users`/`groups` (id -> name or None). None when a path is not valid
    /// UTF-8 (the caller then builds the entries in Python).
    #[staticmethod]
    fn from_pass(
        files: &Bound<'_, PyList>,
        results: Vec<(u64, String, u64, u64)>,
        changed: HashSet<String>,
        users: &Bound<'_, PyDict>,
        groups: &Bound<'_, PyDict>,
    ) -> PyResult<Option<Self>> {
        if files.len() != results.len() {
            return Err(PyValueError::new_err(format!(
                "{} files but {} results",
                files.len(),
                results.len()
            )));
        }
        let users: HashMap<u32, Option<String>> = users.extract()?;
        let groups: HashMap<u32, Option<String>> = groups.extract()?;
        let mut rows = Vec::with_capacity(results.len());
        for (t, (size, digest, first_block, block_count)) in files.iter().zip(results) {
            let (rel, st) = walk_entry(&t)?;
            let Some(path) = rel else {
                return Ok(None);
            };
            let s = stat_fields(&st)?;
            let identity = (!changed.contains(&path)).then_some((s.ctime_ns, s.ino, s.dev));
            let name = |m: &HashMap<u32, Option<String>>, id: u32| m.get(&id).cloned().flatten();
            rows.push(FileRow {
                path,
                mode: s.mode & 0o7777,
                mtime_ns: s.mtime_ns,
                size,
                digest,
                first_block,
                block_count,
                owner: Some((s.uid, s.gid, name(&users, s.uid), name(&groups, s.gid))),
                identity,
            });
        }
        Ok(Some(PyFileTable {
            inner: FileTable::new(rows),
        }))
    }

    /// The `files` list as JSON text; `extras` the JSON text of rows written by Python.
    fn to_json(&self, py: Python<'_>, extras: HashMap<usize, String>) -> String {
        py.detach(|| self.inner.to_json(&extras))
    }

    /// The manifest document: `rest` (the JSON object of the other keys) with the rows
    /// spliced in as its last key `"files"`, newline-terminated, as bytes; `sealed`: with
    /// its own checksum first (manifest format 4).
    #[pyo3(signature = (rest, extras, sealed = false))]
    fn document<'py>(
        &self,
        py: Python<'py>,
        rest: &[u8],
        extras: HashMap<usize, String>,
        sealed: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let doc = py.detach(|| self.inner.document(rest, &extras, sealed));
        let doc = doc.ok_or_else(|| PyValueError::new_err("the manifest's other keys are not a JSON object"))?;
        Ok(PyBytes::new(py, &doc))
    }
}

/// `split_manifest` keeping the rows in Rust: `(table, raw, rest, at)` where `raw` lists
/// `(position, JSON text)` of the entries the Python parser reads (it puts their rows
/// back), `table` is None when the document has no `files` list, `rest` is the JSON text
/// of the other keys, and `at` the list's byte offsets in `doc`. With `known` and
/// `known_at` (a document read before and its list's offsets), a list of exactly that
/// text is not read: `table` None, `at` set.
/// None when the document is not one this reader decodes as Python's json does.
#[pyfunction]
#[pyo3(signature = (doc, known=None, known_at=None))]
#[allow(clippy::type_complexity)]
fn split_manifest_table(
    py: Python<'_>,
    doc: &[u8],
    known: Option<&[u8]>,
    known_at: Option<(usize, usize)>,
) -> PyResult<
    Option<(
        Option<PyFileTable>,
        Vec<(usize, String)>,
        String,
        Option<(usize, usize)>,
    )>,
> {
    // Read in place: bytes objects are immutable, and `&[u8]` may cross `detach`.
    let known = match (known, known_at) {
        (Some(k), Some((start, end))) => k.get(start..end),
        _ => None,
    };
    let Some(split) = py.detach(|| manifest_files::split_known(doc, known)) else {
        return Ok(None);
    };
    let at = split.files_at;
    let Some(slots) = split.files else {
        return Ok(Some((None, Vec::new(), split.rest, at)));
    };
    let mut rows = Vec::with_capacity(slots.len());
    let mut raw = Vec::new();
    for (i, s) in slots.into_iter().enumerate() {
        match s {
            Slot::Row(r) => rows.push(r),
            Slot::Raw(text) => {
                raw.push((i, text));
                // A placeholder until the parser puts the entry's row (or raises).
                rows.push(FileRow {
                    path: String::new(),
                    mode: 0,
                    mtime_ns: 0,
                    size: 0,
                    digest: String::new(),
                    first_block: 0,
                    block_count: 0,
                    owner: None,
                    identity: None,
                });
            }
        }
    }
    Ok(Some((
        Some(PyFileTable {
            inner: FileTable::new(rows),
        }),
        raw,
        split.rest,
        at,
    )))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFileTable>()?;
    m.add_function(wrap_pyfunction!(split_manifest_table, m)?)?;
    Ok(())
}
