//! Bindings for `crate::crypto::reseal` (`key rotate --reencrypt`, and `copy` into another
//! repository's keys): each call re-seals or re-keys one piece or one block map into a
//! new file with the GIL released. A damaged block or frame is an `EncryptionError`
//! naming the file, the block and the offset; an I/O error the matching `OSError`.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::crypto::{block_key, KeyPair};
use super::errors::{io_error, EncryptionError};
use crate::crypto::reseal;
use crate::format::Error;
use crate::scan::algorithm::to_hex;

fn reseal_error(e: Error) -> PyErr {
    match e {
        Error::Io { path, source } => io_error(&source, &path),
        other => EncryptionError::new_err(other.to_string()),
    }
}

fn key32(b: &[u8], what: &str) -> PyResult<[u8; 32]> {
    b.try_into()
        .map_err(|_| PyValueError::new_err(format!("{what} is 32 bytes, got {}", b.len())))
}

/// Writes `dst` as the piece `src` with every block opened with `old` and sealed again
/// with `new` (`(cipher_key, mac_key)` pairs); returns `(size, checksum hex, block count)`.
#[pyfunction]
fn reseal_piece(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    old: KeyPair,
    new: KeyPair,
) -> PyResult<(u64, String, u64)> {
    let old = block_key(&old)?;
    let new = block_key(&new)?;
    let r = py
        .detach(|| reseal::reseal_piece(&src, &dst, &old, &new))
        .map_err(reseal_error)?;
    Ok((r.size, to_hex(&r.checksum), r.block_count))
}

/// A re-keyed block: `(old offset, new offset, stored length, flags, digest)`.
type MovedRow = (u64, u64, u32, u8, Vec<u8>);

/// `copy` into another repository's keys: writes `dst` as the piece `src` with every
/// block opened with `old` (None: plain), checked, and stored sealed with `new` under
/// `cipher` (None: plain) with its digest recomputed under `new`'s MAC key; returns
/// `(size, checksum hex, block count, moved blocks)` (none unless `with_moved`).
#[pyfunction]
#[pyo3(signature = (src, dst, old, new, cipher="xchacha20-poly1305", with_moved=true))]
fn rekey_piece(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    old: Option<KeyPair>,
    new: Option<KeyPair>,
    cipher: &str,
    with_moved: bool,
) -> PyResult<(u64, String, u64, Vec<MovedRow>)> {
    let old = old.as_ref().map(block_key).transpose()?;
    let cipher = crate::crypto::Cipher::parse(cipher).map_err(|e| PyValueError::new_err(format!("cipher: {e}")))?;
    let new = new.as_ref().map(block_key).transpose()?.map(|k| k.sealing_with(cipher));
    let (r, moved) = py
        .detach(|| reseal::rekey_piece(&src, &dst, old.as_ref(), new.as_ref()))
        .map_err(reseal_error)?;
    // `copy` reads the new places from the new piece's index (`rekey_map`): a row per
    // block in Python is what a large set cannot afford.
    let rows = moved
        .into_iter()
        .take(if with_moved { usize::MAX } else { 0 })
        .map(|m| (m.old_offset, m.new_offset, m.stored_len, m.flags, m.digest))
        .collect();
    Ok((r.size, to_hex(&r.checksum), r.block_count, rows))
}

/// A piece a re-keyed map's records name: `(source piece, its block keys or None, the
/// target's copy of it or None)`.
type SourceRow = (PathBuf, Option<KeyPair>, Option<PathBuf>);

/// `copy` into another repository's keys: writes `dst` as the block map `src` (opened
/// with `old_map_key`, or plain) with every stored record moved to where its block went
/// in the target (`sources`, by the set's `sources` index), sealed under `new_map_key`
/// (None: plain), its parent `(relative path, new checksum)` when it has one; `new` and
/// `cipher` are the target's block keys. Returns `(checksum hex, records)`.
#[pyfunction]
#[pyo3(signature = (src, dst, sources, old_map_key=None, new_map_key=None, new=None, cipher="xchacha20-poly1305", parent=None))]
#[allow(clippy::too_many_arguments)] // one binding of one pass: each argument is one of its inputs
fn rekey_map(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    sources: Vec<SourceRow>,
    old_map_key: Option<&[u8]>,
    new_map_key: Option<&[u8]>,
    new: Option<KeyPair>,
    cipher: &str,
    parent: Option<(String, Vec<u8>)>,
) -> PyResult<(String, u64)> {
    let old_map_key = old_map_key.map(|k| key32(k, "the source block map key")).transpose()?;
    let new_map_key = new_map_key.map(|k| key32(k, "the target block map key")).transpose()?;
    let cipher = crate::crypto::Cipher::parse(cipher).map_err(|e| PyValueError::new_err(format!("cipher: {e}")))?;
    let new = new.as_ref().map(block_key).transpose()?.map(|k| k.sealing_with(cipher));
    let sources = sources
        .into_iter()
        .map(|(path, key, copied)| {
            Ok(reseal::map::SourcePiece {
                path,
                key: key.as_ref().map(block_key).transpose()?,
                copied,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let parent = parent.map(|(rel_path, checksum)| crate::format::ParentRef { rel_path, checksum });
    let (sum, count) = py
        .detach(|| {
            let target = reseal::map::Target {
                map_key: new_map_key,
                blocks: new.as_ref(),
                parent,
            };
            reseal::map::rekey_map(&src, &dst, old_map_key, &sources, target)
        })
        .map_err(reseal_error)?;
    Ok((to_hex(&sum), count))
}

/// Writes `dst` as the sealed block map `src` opened with `old_key` and sealed with
/// `new_key`, its parent checksum replaced by `parent_sum` when given; returns the new
/// container checksum (hex).
#[pyfunction]
#[pyo3(signature = (src, dst, old_key, new_key, parent_sum=None))]
fn reseal_map(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    old_key: &[u8],
    new_key: &[u8],
    parent_sum: Option<Bound<'_, PyBytes>>,
) -> PyResult<String> {
    let old_key = key32(old_key, "the old block map key")?;
    let new_key = key32(new_key, "the new block map key")?;
    let parent = parent_sum.map(|b| b.as_bytes().to_vec());
    let sum = py
        .detach(|| reseal::reseal_map(&src, &dst, old_key, new_key, parent.as_deref()))
        .map_err(reseal_error)?;
    Ok(to_hex(&sum))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(reseal_piece, m)?)?;
    m.add_function(wrap_pyfunction!(reseal_map, m)?)?;
    m.add_function(wrap_pyfunction!(rekey_piece, m)?)?;
    m.add_function(wrap_pyfunction!(rekey_map, m)?)?;
    Ok(())
}
