//! Re-sealing a stored set under a new set key (`key rotate --reencrypt`,
//! `python/rustybackup/reencrypt.py`): one pass over a piece or a sealed block map that
//! opens every block (or frame) with the old key, checks it, and seals it again with the
//! new one into a new file. Offsets, lengths, flags and keyed digests stay as they were
//! (the MAC key is the repository's, not the set's), so the piece index and every block
//! map record that refers to these blocks, a child set's included, keep their meaning;
//! only the stored bytes and the trailer checksums change.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::block::{piece_label, BlockKey};
use super::KEY_LEN;
use crate::format::block::decode_block;
use crate::format::blockmap::{PARENT_SUM_AT, SUM_AT_V2};
use crate::format::read::read_exact_at;
use crate::format::sealed_map::{self, SealedReader, SealedWriter, FRAME_LEN};
use crate::format::{Error, PieceReader, PieceWriter, Result, FLAG_BOUND, FLAG_GCM, FLAG_SEALED, HEADER_LEN};

#[path = "rekey_map.rs"]
pub mod map;

/// What a re-sealed piece looks like (its manifest and catalog row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resealed {
    /// Size of the new file.
    pub size: u64,
    /// Its trailer checksum.
    pub checksum: Vec<u8>,
    /// Blocks (index entries) re-sealed.
    pub block_count: u64,
}

fn label_of(path: &Path) -> Result<String> {
    piece_label(path).ok_or_else(|| Error::damaged(path, 0, "the path has no set directory and file name"))
}

/// Writes `dst` (which must not exist) as the piece `src` with every block opened with
/// `old` and sealed again with `new` at the same offset with the same flags. A block
/// that does not open or whose keyed digest differs stops the pass with an error naming
/// the piece, the file number, the block and its offset; `dst` is then left for the
/// caller to remove.
pub fn reseal_piece(src: &Path, dst: &Path, old: &BlockKey, new: &BlockKey) -> Result<Resealed> {
    pass(src, dst, Some(old), Some(new), Mode::InPlace, &mut |_| ())
}

/// How `pass` stores each block again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Re-encryption inside one repository: the same offset, flags and keyed digest
    /// (the MAC key is the repository's), so no block map changes.
    InPlace,
    /// A copy into another repository's keys: the target's cipher flags and MAC key, so
    /// offsets move with the seal's overhead and digests are recomputed.
    Rekey,
}

/// The one block loop of `reseal_piece` and `rekey_piece`: each block read, opened with
/// `old` (None: plain) and checked (`open_checked`), then stored again with `new` (None:
/// plain) as `mode` says; `on_moved` sees where each block went. Returns the new piece's
/// summary.
fn pass(
    src: &Path,
    dst: &Path,
    old: Option<&BlockKey>,
    new: Option<&BlockKey>,
    mode: Mode,
    on_moved: &mut dyn FnMut(Moved),
) -> Result<Resealed> {
    let reader = PieceReader::open(src)?;
    let algorithm = reader.algorithm();
    let old = old.map(|k| label_of(src).map(|l| k.for_piece(&l))).transpose()?;
    let new = new.map(|k| label_of(dst).map(|l| k.for_piece(&l))).transpose()?;
    // Opened again for positioned reads (the reader keeps its own file private).
    let file = File::open(src).map_err(|e| Error::io(src, e))?;
    let mut writer = PieceWriter::create(dst, algorithm, reader.block_size())?;
    let mut expect = HEADER_LEN;
    for entry in reader.entries()? {
        let e = entry?;
        let at = |detail: String| {
            Error::damaged(
                src,
                e.offset,
                format!("file #{} block {}: {detail}", e.file_no, e.block_index),
            )
        };
        if mode == Mode::InPlace {
            // The writer lays blocks back to back from the header on: a piece laid out
            // otherwise would get other offsets, and the block maps would point elsewhere.
            if e.offset != expect {
                return Err(at(format!(
                    "the block is stored at {} where the blocks before it end at {expect}; this piece cannot be re-sealed in place",
                    e.offset
                )));
            }
            expect = e.offset + u64::from(e.stored_len);
        }
        // stored_len <= block_size + the seal's overhead (checked when the entry was read).
        let mut stored = vec![0u8; e.stored_len as usize];
        read_exact_at(&file, src, &mut stored, e.offset)?;
        let (inner, raw) = open_checked(old.as_ref(), algorithm, &e, stored).map_err(&at)?;
        let encoding = e.flags & !(FLAG_SEALED | FLAG_GCM | FLAG_BOUND);
        let (bytes, flags, digest) = match (&new, mode) {
            (Some(k), Mode::InPlace) => {
                let sealed = k
                    .seal(e.offset, e.raw_len, e.flags, &e.digest, &inner)
                    .map_err(|err| at(err.to_string()))?;
                (sealed, e.flags, e.digest.clone())
            }
            (Some(k), Mode::Rekey) => {
                let digest = k.digest(&raw);
                let flags = encoding | k.seal_flags();
                // The block's offset is bound into its tag: it is where the writer puts it next.
                let sealed = k
                    .seal(writer.position(), e.raw_len, flags, &digest, &inner)
                    .map_err(|err| at(err.to_string()))?;
                (sealed, flags, digest)
            }
            (None, _) => (inner, encoding, algorithm.digest(&raw)),
        };
        let s = writer.write_block(e.file_no, e.block_index, &bytes, e.raw_len, flags, &digest)?;
        if mode == Mode::InPlace {
            debug_assert_eq!(s.offset, e.offset);
        }
        on_moved(Moved {
            old_offset: e.offset,
            new_offset: s.offset,
            stored_len: s.stored_len,
            flags: s.flags,
            digest,
        });
    }
    let summary = writer.finish()?;
    Ok(Resealed {
        size: summary.size,
        checksum: summary.checksum,
        block_count: summary.block_count,
    })
}

/// Opens one block's stored bytes (with `key`, or as they are when the piece is plain),
/// decodes them and checks the recorded digest (keyed, or the piece's algorithm's for a
/// plain block). Returns the encoded bytes (what a seal wraps) and the raw block; a
/// damaged block is never given a new tag or a new digest. The error is the detail only
/// (the caller names piece, file, block and offset).
fn open_checked(
    key: Option<&BlockKey>,
    algorithm: crate::scan::algorithm::Algorithm,
    e: &crate::format::IndexEntry,
    stored: Vec<u8>,
) -> std::result::Result<(Vec<u8>, Vec<u8>), String> {
    let sealed = e.flags & FLAG_SEALED != 0;
    let inner = match (key, sealed) {
        (Some(k), true) => k
            .open_owned(e.offset, e.raw_len, e.flags, &e.digest, stored)
            .map_err(|err| format!("{err} (wrong key or damaged block)"))?,
        (None, false) => stored,
        (Some(_), false) => return Err("the block is not sealed (an encrypted set holds only sealed blocks)".into()),
        (None, true) => return Err("the block is sealed and no key for this set was given".into()),
    };
    let raw = decode_block(
        inner.clone(),
        e.raw_len,
        e.flags & !(FLAG_SEALED | FLAG_GCM | FLAG_BOUND),
    )
    .map_err(|err| err.to_string())?;
    let actual = match key {
        Some(k) => k.digest(&raw),
        None => algorithm.digest(&raw),
    };
    if actual != e.digest {
        return Err(if key.is_some() {
            "its keyed digest is not the recorded one".into()
        } else {
            "its digest is not the recorded one".into()
        });
    }
    Ok((inner, raw))
}

/// Where one block of a re-keyed piece went: its offset in the source piece, and its
/// offset, stored length, flags and digest in the new one (a block map record that names
/// the block is rewritten with these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved {
    pub old_offset: u64,
    pub new_offset: u64,
    pub stored_len: u32,
    pub flags: u8,
    pub digest: Vec<u8>,
}

/// `copy` into a repository under other keys (or from or to a plain one): writes `dst`
/// (which must not exist) as the piece `src` with every block opened with `old` (None:
/// the piece is plain), checked, and stored again sealed with `new` with its cipher (None:
/// plain, `copy --decrypt`), its digest recomputed from the plaintext under `new`'s MAC
/// key (or the piece's algorithm). The seal's overhead may come or go, so offsets change:
/// every block's old and new place and new digest are returned, in index order. A block
/// that does not open or check stops the pass with an error naming the piece, the file
/// number, the block and its offset; `dst` is then left for the caller to remove.
pub fn rekey_piece(
    src: &Path,
    dst: &Path,
    old: Option<&BlockKey>,
    new: Option<&BlockKey>,
) -> Result<(Resealed, Vec<Moved>)> {
    let mut moved = Vec::new();
    let r = pass(src, dst, old, new, Mode::Rekey, &mut |m| moved.push(m))?;
    Ok((r, moved))
}

/// Where a plain map's trailer (version 2 and 3) records its parent's checksum length.
const PARENT_LEN_AT: usize = 33;
/// A plain map's version-2/3 trailer length.
const TRAILER_V2: u64 = 296;

/// Writes `dst` (which must not exist) as the sealed block map `src` opened with
/// `old_key` and sealed again with `new_key`. The plain map's own checksum is checked on
/// the way. `parent_sum`, when given, replaces the parent map's checksum the trailer
/// records (the parent was re-sealed too, so its container checksum changed); the
/// plain map's checksum does not cover that field. Returns the new container checksum.
pub fn reseal_map(
    src: &Path,
    dst: &Path,
    old_key: [u8; KEY_LEN],
    new_key: [u8; KEY_LEN],
    parent_sum: Option<&[u8]>,
) -> Result<Vec<u8>> {
    sealed_map::register_read_key(old_key);
    let reader = SealedReader::open(src)?;
    let plain_len = reader.len();
    let algorithm = reader.container().algorithm;
    let mut head = [0u8; HEADER_LEN as usize];
    if plain_len < HEADER_LEN {
        return Err(Error::damaged(
            src,
            0,
            format!("the sealed map holds {plain_len} plain bytes, less than a header"),
        ));
    }
    reader.read_at(&mut head, 0)?;
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if version < 2 {
        if parent_sum.is_some() {
            return Err(Error::damaged(src, 8, "a version-1 map records no parent to re-point"));
        }
    } else if plain_len < HEADER_LEN + TRAILER_V2 {
        return Err(Error::damaged(
            src,
            0,
            "the plain map is shorter than its header and trailer",
        ));
    }
    let body_end = if version < 2 { plain_len } else { plain_len - TRAILER_V2 };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| Error::io(dst, e))?;
    let mut out = SealedWriter::new(file, dst, new_key, label_of(dst)?, algorithm)?;
    let mut hasher = algorithm.hasher();
    let mut buf = vec![0u8; FRAME_LEN as usize];
    let mut pos = 0u64;
    while pos < body_end {
        // At most FRAME_LEN bytes.
        let n = (body_end - pos).min(u64::from(FRAME_LEN)) as usize;
        reader.read_at(&mut buf[..n], pos)?;
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| Error::io(dst, e))?;
        pos += n as u64;
    }
    if version >= 2 {
        let mut t = vec![0u8; TRAILER_V2 as usize];
        reader.read_at(&mut t, body_end)?;
        let clen = usize::from(t[32]);
        let sum = hasher.finalize();
        if clen != sum.len() || t[SUM_AT_V2..SUM_AT_V2 + clen] != sum[..] {
            return Err(Error::damaged(
                src,
                body_end,
                "the plain block map's checksum does not match its runs",
            ));
        }
        if let Some(p) = parent_sum {
            if t[PARENT_LEN_AT] == 0 {
                return Err(Error::damaged(src, body_end, "the map records no parent to re-point"));
            }
            if p.len() != clen {
                return Err(Error::damaged(
                    src,
                    body_end,
                    format!("a parent checksum of {} bytes", p.len()),
                ));
            }
            t[PARENT_SUM_AT..PARENT_SUM_AT + clen].copy_from_slice(p);
        }
        out.write_all(&t).map_err(|e| Error::io(dst, e))?;
    }
    let (file, checksum) = out.finish()?;
    file.sync_all().map_err(|e| Error::io(dst, e))?;
    Ok(checksum)
}
