//! Bindings for `crate::engine::restore_into`: sparse and delta writes of restored files,
//! and one file streamed to a descriptor. The GIL is released for the data work.

use std::fs::File;
use std::io::BufWriter;
use std::os::unix::io::FromRawFd;
use std::path::PathBuf;

use pyo3::prelude::*;

use super::engine::{from_hex, hook};
use super::errors::engine_error;
use crate::engine::{self, IntoFile, RestoreFile};

/// (relative name, destination, first block, block count, size, digest hex, holes, delta)
type IntoTuple = (String, PathBuf, u64, u64, u64, String, Vec<(u64, u64)>, bool);

/// Writes `files` in place: holes left unallocated where the block's bytes there are
/// zero, and with `delta` an existing file's matching blocks kept. Returns, per file,
/// (bytes written, touched).
#[pyfunction]
#[pyo3(signature = (files, blockmap, sources, *, progress=None, cancel=None, keys=None))]
fn restore_into(
    py: Python<'_>,
    files: Vec<IntoTuple>,
    blockmap: PathBuf,
    sources: Vec<PathBuf>,
    progress: Option<Py<PyAny>>,
    cancel: Option<Py<PyAny>>,
    keys: Option<Vec<Option<super::crypto::KeyPair>>>,
) -> PyResult<Vec<(u64, bool)>> {
    let keys = block_keys(keys)?;
    let files: Vec<IntoFile> = files
        .into_iter()
        .map(
            |(rel, dest, first_block, block_count, size, digest, mut holes, delta)| {
                let digest = from_hex(&digest, &rel)?;
                holes.sort_unstable();
                Ok(IntoFile {
                    file: RestoreFile {
                        rel,
                        dest,
                        first_block,
                        block_count,
                        size,
                        digest,
                    },
                    holes,
                    delta,
                })
            },
        )
        .collect::<PyResult<_>>()?;
    let mut failure = None;
    let result = py.detach(|| {
        let mut h = hook(&progress, &cancel, &mut failure);
        engine::restore_into_keyed(&files, &blockmap, &sources, &keys, &mut h)
    });
    if let Some(e) = failure {
        return Err(e);
    }
    result.map_err(engine_error)
}

/// Streams one file (relative name, first block, block count, size, digest hex) to the
/// open descriptor `fd` (not closed); returns the bytes written.
#[pyfunction]
#[pyo3(signature = (file, blockmap, sources, fd, *, keys=None))]
fn dump_file(
    py: Python<'_>,
    file: (String, u64, u64, u64, String),
    blockmap: PathBuf,
    sources: Vec<PathBuf>,
    fd: i32,
    keys: Option<Vec<Option<super::crypto::KeyPair>>>,
) -> PyResult<u64> {
    let keys = block_keys(keys)?;
    let (rel, first_block, block_count, size, digest) = file;
    let digest = from_hex(&digest, &rel)?;
    let f = RestoreFile {
        rel,
        dest: PathBuf::new(),
        first_block,
        block_count,
        size,
        digest,
    };
    // SAFETY: dup returns a new descriptor owned by the File built from it; the caller's
    // `fd` stays open and is never closed here.
    let own = unsafe { libc::dup(fd) };
    if own < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `own` is a fresh descriptor nothing else owns.
    let out = unsafe { File::from_raw_fd(own) };
    py.detach(|| {
        let mut w = BufWriter::with_capacity(1 << 20, out);
        engine::dump_file_keyed(&f, &blockmap, &sources, &keys, &mut w)
    })
    .map_err(engine_error)
}

/// `keys[i]`: (cipher_key, mac_key) of source i's sealed blocks (an encrypted set).
fn block_keys(keys: Option<Vec<Option<super::crypto::KeyPair>>>) -> PyResult<Vec<Option<crate::crypto::BlockKey>>> {
    keys.unwrap_or_default()
        .iter()
        .map(|k| k.as_ref().map(super::crypto::block_key).transpose())
        .collect()
}

/// Adds this domain's functions to `rustybackup._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(restore_into, m)?)?;
    m.add_function(wrap_pyfunction!(dump_file, m)?)?;
    Ok(())
}
