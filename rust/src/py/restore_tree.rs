//! Bindings for the tree restore (`engine::restore_tree`, `engine::tree_meta`): a whole
//! set's files and their metadata handed over as columns, written with the GIL released.

use std::ffi::OsString;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::engine::{from_hex, hook};
use super::errors::engine_error;
use crate::engine::{self, restore_tree::label, Meta, MetaOptions, Problem, RestoreFile, TreeFile};

/// Metadata columns: modes, mtimes (ns), uids and gids (-1: no owner recorded), and the
/// xattrs of the entries that have any as (entry index, name, value).
type MetaColumns<'py> = (
    Vec<u32>,
    Vec<i64>,
    Vec<i64>,
    Vec<i64>,
    Vec<(usize, OsString, Bound<'py, PyBytes>)>,
);

/// Content columns: first block, block count, size, digest (hex).
type BlockColumns = (Vec<u64>, Vec<u64>, Vec<u64>, Vec<String>);

type ProblemTuple = (usize, String, String);

fn metas(n: usize, columns: MetaColumns<'_>) -> PyResult<Vec<Meta>> {
    let (modes, mtimes, uids, gids, xattrs) = columns;
    if [modes.len(), mtimes.len(), uids.len(), gids.len()]
        .iter()
        .any(|&l| l != n)
    {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "metadata columns hold {}, {}, {} and {} values for {n} entries",
            modes.len(),
            mtimes.len(),
            uids.len(),
            gids.len()
        )));
    }
    let mut out: Vec<Meta> = (0..n)
        .map(|i| Meta {
            mode: modes[i],
            mtime_ns: mtimes[i],
            owner: match (u32::try_from(uids[i]), u32::try_from(gids[i])) {
                (Ok(u), Ok(g)) => Some((u, g)),
                _ => None,
            },
            xattrs: Vec::new(),
        })
        .collect();
    for (i, name, value) in xattrs {
        let Some(m) = out.get_mut(i) else {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "xattr {name:?} names entry {i} of {n}"
            )));
        };
        m.xattrs.push((name, value.as_bytes().to_vec()));
    }
    Ok(out)
}

fn options(chown: bool, exact_xattrs: bool) -> MetaOptions {
    MetaOptions {
        chown,
        exact_xattrs,
        fresh: false,
    }
}

fn problems(p: Vec<Problem>) -> Vec<ProblemTuple> {
    p.into_iter().map(|p| (p.index, p.what, p.reason)).collect()
}

/// Borrows the caller's open directory descriptor for one call.
fn borrowed(fd: i32) -> PyResult<BorrowedFd<'static>> {
    if fd < 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "root_fd {fd} is not a descriptor"
        )));
    }
    // SAFETY: the caller keeps `fd` open for the whole call (RestoreTarget holds it), and
    // the borrow does not outlive the call that receives it.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Creates every directory of `rels` and their parents below the directory open as
/// `root_fd`, never through a link.
#[pyfunction]
fn make_tree_dirs(py: Python<'_>, root_fd: i32, root: PathBuf, rels: Vec<PathBuf>) -> PyResult<()> {
    let fd = borrowed(root_fd)?;
    py.detach(|| engine::make_dirs(fd, &root, &rels)).map_err(engine_error)
}

/// Restores regular files (paths, blocks, metadata as columns) below `root_fd`; returns
/// (bytes written, problems as (index, what, reason)).
#[pyfunction]
#[pyo3(signature = (root_fd, root, paths, blocks, meta, blockmap, sources, *, chown, exact_xattrs, progress=None, cancel=None, keys=None))]
#[allow(clippy::too_many_arguments)]
fn restore_tree(
    py: Python<'_>,
    root_fd: i32,
    root: PathBuf,
    paths: Vec<PathBuf>,
    blocks: BlockColumns,
    meta: MetaColumns<'_>,
    blockmap: PathBuf,
    sources: Vec<PathBuf>,
    chown: bool,
    exact_xattrs: bool,
    progress: Option<Py<PyAny>>,
    cancel: Option<Py<PyAny>>,
    keys: Option<Vec<Option<super::crypto::KeyPair>>>,
) -> PyResult<(u64, Vec<ProblemTuple>)> {
    let fd = borrowed(root_fd)?;
    let (first, count, size, digest) = blocks;
    let n = paths.len();
    if [first.len(), count.len(), size.len(), digest.len()]
        .iter()
        .any(|&l| l != n)
    {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "block columns hold {}, {}, {} and {} values for {n} paths",
            first.len(),
            count.len(),
            size.len(),
            digest.len()
        )));
    }
    let metas = metas(n, meta)?;
    let keys = keys
        .unwrap_or_default()
        .iter()
        .map(|k| k.as_ref().map(super::crypto::block_key).transpose())
        .collect::<PyResult<Vec<_>>>()?;
    let files = paths
        .into_iter()
        .zip(metas)
        .enumerate()
        .map(|(i, (path, meta))| {
            let rel = label(&path);
            let digest = from_hex(&digest[i], &rel)?;
            Ok(TreeFile {
                file: RestoreFile {
                    dest: root.join(&path),
                    rel,
                    first_block: first[i],
                    block_count: count[i],
                    size: size[i],
                    digest,
                },
                path,
                meta,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let mut failure = None;
    let result = py.detach(|| {
        let mut h = hook(&progress, &cancel, &mut failure);
        engine::restore_tree(
            fd,
            &root,
            &files,
            &blockmap,
            &sources,
            &keys,
            options(chown, exact_xattrs),
            &mut h,
        )
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let out = result.map_err(engine_error)?;
    Ok((out.bytes, problems(out.problems)))
}

/// Applies metadata to existing entries (not links) below `root_fd`; `deepest_first`
/// for directories. Returns the problems as (index, what, reason).
#[pyfunction]
#[pyo3(signature = (root_fd, root, paths, meta, *, chown, exact_xattrs, deepest_first))]
#[allow(clippy::too_many_arguments)]
fn apply_tree_meta(
    py: Python<'_>,
    root_fd: i32,
    root: PathBuf,
    paths: Vec<PathBuf>,
    meta: MetaColumns<'_>,
    chown: bool,
    exact_xattrs: bool,
    deepest_first: bool,
) -> PyResult<Vec<ProblemTuple>> {
    let fd = borrowed(root_fd)?;
    let metas = metas(paths.len(), meta)?;
    let entries: Vec<(PathBuf, Meta)> = paths.into_iter().zip(metas).collect();
    py.detach(|| engine::apply_meta(fd, &root, &entries, options(chown, exact_xattrs), deepest_first))
        .map(problems)
        .map_err(engine_error)
}

/// Adds this domain's functions to `rustybackup._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(make_tree_dirs, m)?)?;
    m.add_function(wrap_pyfunction!(restore_tree, m)?)?;
    m.add_function(wrap_pyfunction!(apply_tree_meta, m)?)?;
    Ok(())
}
