//! The restore merge: a set's cumulative block map says, for every block, which set of
//! the chain stored it last; restore reads each block from that piece, checks its digest
//! before writing it, and checks the whole file's digest at the end.
//!
//! A file is created with `O_EXCL | O_NOFOLLOW`: restore never writes into an existing
//! file and never through a symbolic link planted at the destination (the caller checks
//! the parent directories).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::scan::parallel::in_pool;

use super::error::{Error, Result};
use super::progress::{Progress, ProgressHook};
use crate::format::{check_block_keyed, BlockMapReader, BlockRecord, PieceReader};
use crate::scan::algorithm::{to_hex, Algorithm};

/// Blocks verified in parallel before they are written in order.
const BATCH_BLOCKS: usize = 512;
/// Batches up to this many blocks are checked on the calling thread.
const INLINE_BLOCKS: usize = 4;

/// One file to restore.
#[derive(Clone, Debug)]
pub struct RestoreFile {
    /// Relative name (for error messages).
    pub rel: String,
    /// Where to write it (must not exist).
    pub dest: PathBuf,
    /// First block-map record.
    pub first_block: u64,
    /// Number of blocks.
    pub block_count: u64,
    /// Expected size.
    pub size: u64,
    /// Expected whole-file digest.
    pub digest: Vec<u8>,
}

/// Restores `files` from the block map at `blockmap` whose `sources[i]` is the piece
/// path of source `i`. Returns the bytes written.
pub fn restore_files(
    files: &[RestoreFile],
    blockmap: &std::path::Path,
    sources: &[PathBuf],
    progress: ProgressHook<'_>,
) -> Result<u64> {
    restore_files_keyed(files, blockmap, sources, &[], progress)
}

/// `restore_files` of an encrypted set: `keys[i]` opens the sealed blocks of source `i`
/// (missing or None: that source's blocks must not be sealed). Each key is bound to
/// its piece's name here (`crypto::piece_label`).
pub fn restore_files_keyed(
    files: &[RestoreFile],
    blockmap: &std::path::Path,
    sources: &[PathBuf],
    keys: &[Option<crate::crypto::BlockKey>],
    progress: ProgressHook<'_>,
) -> Result<u64> {
    let keys = crate::crypto::keys_for_pieces(keys, sources);
    let map = BlockMapReader::open(blockmap)?;
    map.verify_checksum()?;
    let alg = map.algorithm();
    let mut readers: Vec<Option<PieceReader>> = sources.iter().map(|_| None).collect();
    let mut state = Progress::default();
    let buffers = Buffers::default();
    // In block-map order: the chain's cursors then only move forward (blockmap_runs).
    let mut order: Vec<&RestoreFile> = files.iter().collect();
    order.sort_by_key(|f| f.first_block);
    for f in order {
        let mut out = BufWriter::with_capacity(1 << 20, create_file(&f.dest)?);
        let mut whole = alg.hasher();
        let mut written = 0u64;
        let n_sources = u32::try_from(sources.len()).unwrap_or(u32::MAX);
        let mut iter = map.range(f.first_block, f.block_count)?.limit_sources(n_sources);
        let mut block_index = 0u64;
        loop {
            let batch: Vec<BlockRecord> = iter.by_ref().take(BATCH_BLOCKS).collect::<crate::format::Result<_>>()?;
            if batch.is_empty() {
                break;
            }
            for (k, rec) in (block_index..).zip(&batch) {
                if rec.is_hole() {
                    continue;
                }
                let i = rec.source as usize;
                let Some(slot) = readers.get_mut(i) else {
                    // limit_sources() refused such records with their file and offset.
                    return Err(Error::Invalid(format!(
                        "internal: block {k} of file {:?} names source {i} of {}",
                        f.rel,
                        sources.len()
                    )));
                };
                if slot.is_none() {
                    let r = PieceReader::open(&sources[i])?;
                    if r.algorithm() != alg || r.block_size() != map.block_size() {
                        return Err(Error::format(
                            &sources[i],
                            format!(
                                "header (at offset 12..18) says {}-byte blocks hashed with {}, its block map {} {}-byte blocks with {}",
                                r.block_size(),
                                r.algorithm().name(),
                                blockmap.display(),
                                map.block_size(),
                                alg.name()
                            ),
                        ));
                    }
                    *slot = Some(r);
                }
            }
            let mut at = 0;
            for st in read_checked_blocks(&batch, &readers, &keys, alg, &f.rel, block_index, &buffers) {
                let st = st?;
                // A hole's zeros are written here (this file had no holes in its
                // manifest) but are not under the whole-file digest (docs/FORMAT.md).
                if !batch[at].is_hole() {
                    whole.update(&st.data);
                }
                at += st.count;
                out.write_all(&st.data).map_err(|e| Error::io(&f.dest, e))?;
                written += st.data.len() as u64;
                state.bytes_read += st.data.len() as u64;
                block_index += st.count as u64;
            }
            if let ControlFlow::Break(()) = progress(state) {
                return Err(Error::Cancelled);
            }
        }
        let file: File = out.into_inner().map_err(|e| Error::io(&f.dest, e.into_error()))?;
        drop(file);
        let digest = whole.finalize();
        if written != f.size || digest != f.digest {
            return Err(Error::Invalid(format!(
                "restored file {:?} does not match its manifest: {} bytes with digest {}, expected {} bytes with digest {}",
                f.rel,
                written,
                to_hex(&digest),
                f.size,
                to_hex(&f.digest)
            )));
        }
        state.files_done += 1;
    }
    Ok(state.bytes_read)
}

/// Blocks stored as they are that lie back to back in one piece are read with one call of
/// up to this many bytes (an 8 KiB read per block cost a hundred thousand calls per
/// 800 MB); a stretch this long goes past a 1 MiB write buffer without a copy.
const STRETCH_BYTES: u64 = 1 << 20;
/// Stretches of at least this many bytes leave the page cache once read: a restore reads
/// each block once, and the repository's pages would otherwise double the cache the
/// restore grows (and push out what the machine's database keeps there).
const DROP_BYTES: u64 = 256 << 10;
/// What a stretch drops lies this far behind it, in whole `DROP_ALIGN` units: the kernel
/// keeps a read file in folios of up to 2 MiB and drops only those wholly inside the range
/// given, so the range of the stretch just read would keep nearly all of them.
const DROP_LAG: u64 = 4 << 20;
const DROP_ALIGN: u64 = 2 << 20;

/// Stretch buffers kept for reuse in one restore: a fresh 1 MiB buffer is a fresh
/// mapping, 256 page faults (5x the faults of a restore that read block by block).
const KEPT_BUFFERS: usize = 8;

/// The stretch buffers of one restore, handed back when a stretch is dropped.
#[derive(Default)]
pub(super) struct Buffers(Mutex<Vec<Vec<u8>>>);

impl Buffers {
    fn take(&self) -> Vec<u8> {
        self.0.lock().ok().and_then(|mut v| v.pop()).unwrap_or_default()
    }

    fn give(&self, buf: Vec<u8>) {
        if buf.capacity() >= STRETCH_BYTES as usize {
            if let Ok(mut v) = self.0.lock() {
                if v.len() < KEPT_BUFFERS {
                    v.push(buf);
                }
            }
        }
    }
}

/// Consecutive blocks of a batch, read and checked: `data` holds `count` blocks back to
/// back (one hole's zeros, or one or more stored blocks).
pub(super) struct Stretch<'b> {
    pub(super) data: Vec<u8>,
    pub(super) count: usize,
    pub(super) buffers: Option<&'b Buffers>,
}

impl Drop for Stretch<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.buffers {
            b.give(std::mem::take(&mut self.data));
        }
    }
}

/// Splits a batch into stretches, `(start, end)`: stored blocks back to back in one
/// piece, neither packed nor sealed, up to `STRETCH_BYTES`; any other block alone.
fn stretches(batch: &[BlockRecord]) -> Vec<(usize, usize)> {
    let plain = |r: &BlockRecord| !r.is_hole() && r.flags == 0;
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut bytes = 0u64;
    for (i, r) in batch.iter().enumerate() {
        if let Some(last) = out.last_mut() {
            let prev = &batch[i - 1];
            let joins = plain(prev)
                && plain(r)
                && prev.source == r.source
                && prev.offset.checked_add(u64::from(prev.stored_len)) == Some(r.offset)
                && bytes + u64::from(r.stored_len) <= STRETCH_BYTES;
            if joins {
                last.1 = i + 1;
                bytes += u64::from(r.stored_len);
                continue;
            }
        }
        out.push((i, i + 1));
        bytes = u64::from(r.stored_len);
    }
    out
}

/// Reads, opens and checks one batch of a file's block records in parallel, in order,
/// as stretches (`first` is `batch[0]`'s block index in the file, for the report of a
/// corrupt block). Shared by the plain restore and the in-place one (restore_into.rs).
#[allow(clippy::too_many_arguments)]
pub(super) fn read_checked_blocks<'b>(
    batch: &[BlockRecord],
    readers: &[Option<PieceReader>],
    keys: &[Option<crate::crypto::BlockKey>],
    alg: Algorithm,
    rel: &str,
    first: u64,
    buffers: &'b Buffers,
) -> Vec<Result<Stretch<'b>>> {
    let reader_of = |rec: &BlockRecord| -> Result<&PieceReader> {
        match readers.get(rec.source as usize) {
            Some(Some(r)) => Ok(r),
            _ => Err(Error::Invalid("internal: piece reader not opened".into())),
        }
    };
    let one = |k: usize, rec: &BlockRecord| -> Result<Vec<u8>> {
        if rec.is_hole() {
            // Never stored: zeros (raw_len is bounded by the block size).
            return Ok(vec![0u8; rec.raw_len as usize]);
        }
        let reader = reader_of(rec)?;
        let key = keys.get(rec.source as usize).and_then(Option::as_ref);
        let raw = reader.read_raw_keyed(key, rec.offset, rec.stored_len, rec.raw_len, rec.flags, &rec.digest)?;
        check_block_keyed(alg, key, rec.flags, raw, &rec.digest).map_err(|actual| Error::CorruptBlock {
            piece: reader.path().to_path_buf(),
            file: rel.to_string(),
            block_index: first + k as u64,
            offset: rec.offset,
            expected: to_hex(&rec.digest),
            actual,
        })
    };
    let stretch = |&(s, e): &(usize, usize)| -> Result<Stretch<'b>> {
        let recs = &batch[s..e];
        if recs.len() > 1 {
            let reader = reader_of(&recs[0])?;
            let mut data = buffers.take();
            if reader.read_plain_run(recs, STRETCH_BYTES, &mut data).is_some() {
                let (at, len) = (recs[0].offset, data.len() as u64);
                if len >= DROP_BYTES {
                    // Consecutive stretches drop consecutive ranges.
                    let behind = |o: u64| o.saturating_sub(DROP_LAG) / DROP_ALIGN * DROP_ALIGN;
                    let (from, to) = (behind(at), behind(at + len));
                    if to > from {
                        reader.drop_cached(from, to - from);
                    }
                }
            } else {
                // Something is wrong in the stretch: block by block, to name the block.
                data.clear();
                for (k, rec) in (s..).zip(recs) {
                    data.extend_from_slice(&one(k, rec)?);
                }
            }
            return Ok(Stretch {
                data,
                count: recs.len(),
                buffers: Some(buffers),
            });
        }
        Ok(Stretch {
            data: one(s, &recs[0])?,
            count: 1,
            buffers: None,
        })
    };
    let spans = stretches(batch);
    if batch.len() <= INLINE_BLOCKS || spans.len() == 1 {
        // A small file's blocks are checked on this thread: handing them to the pool costs
        // two thread switches per file, more than the check (many small files).
        return spans.iter().map(stretch).collect();
    }
    in_pool(|| spans.par_iter().map(stretch).collect())
}

/// Creates `dest`, which must not exist and must not be a symbolic link (not even a
/// dangling one): `O_EXCL` refuses anything in the way and `O_NOFOLLOW` makes sure no
/// link is ever followed.
pub(crate) fn create_file(dest: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dest)
        .map_err(|e| {
            let is_link = fs::symlink_metadata(dest).is_ok_and(|m| m.file_type().is_symlink());
            if is_link {
                let why = io::Error::new(
                    e.kind(),
                    "a symbolic link is in the way of a restored file (restore never writes through a link)",
                );
                Error::io(dest, why)
            } else {
                Error::io(dest, e)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::{stretches, STRETCH_BYTES};
    use crate::format::{BlockRecord, FLAG_ZSTD};

    fn rec(source: u32, offset: u64, len: u32, flags: u8) -> BlockRecord {
        BlockRecord {
            source,
            offset,
            stored_len: len,
            raw_len: len,
            flags,
            digest: vec![0; 32],
        }
    }

    #[test]
    fn only_plain_blocks_back_to_back_in_one_piece_share_a_stretch() {
        let b = 8192u32;
        let at = |k: u64| 32 + k * u64::from(b);
        let batch = [
            rec(0, at(0), b, 0),
            rec(0, at(1), b, 0),
            // A hole ends the stretch and stands alone.
            BlockRecord::hole(b),
            rec(0, at(3), b, 0),
            // Packed: alone, and the next plain block starts a new stretch.
            rec(0, at(4), 100, FLAG_ZSTD),
            rec(0, at(5), b, 0),
            // Another piece at the very next offset.
            rec(1, at(6), b, 0),
            // A gap in the same piece.
            rec(1, at(8), b, 0),
            rec(1, at(9), b, 0),
        ];
        assert_eq!(
            stretches(&batch),
            vec![(0, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 9)]
        );
        assert_eq!(stretches(&[]), vec![]);
    }

    #[test]
    fn a_stretch_ends_at_its_byte_limit_and_a_huge_record_stands_alone() {
        let b = 8192u32;
        let per = (STRETCH_BYTES / u64::from(b)) as usize;
        let batch: Vec<BlockRecord> = (0..2 * per as u64 + 3)
            .map(|k| rec(0, 32 + k * u64::from(b), b, 0))
            .collect();
        assert_eq!(
            stretches(&batch),
            vec![(0, per), (per, 2 * per), (2 * per, 2 * per + 3)]
        );
        // A damaged map's length far past the limit joins nothing (its own read bounds it).
        let batch = [rec(0, 32, u32::MAX, 0), rec(0, 32 + u64::from(u32::MAX), b, 0)];
        assert_eq!(stretches(&batch), vec![(0, 1), (1, 2)]);
    }
}
