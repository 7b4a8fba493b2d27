//! Restoring file contents the way a file tree needs them, beside the plain merge of
//! `restore.rs`: sparse files written with their holes left unallocated, a delta restore
//! that rewrites only the blocks of an existing file whose digest differs (pgBackRest's
//! `--delta`), and one file streamed to a writer (`rustybackup dump`).
//!
//! Every block is still read from the piece the block map names and checked against its
//! digest before it is used, and every file's whole digest is checked at the end. A hole
//! recorded in the manifest is only left unwritten where the block's bytes there are
//! zero: a wrong hole record can cost disk space, never data.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::holes::data_in;
use super::progress::{Progress, ProgressHook};
use super::restore::{read_checked_blocks, Buffers, RestoreFile, Stretch};
use crate::format::{BlockMapReader, BlockRecord, PieceReader};
use crate::scan::algorithm::{to_hex, Hasher, PARALLEL_MIN};
use crate::scan::parallel::in_pool;

/// Blocks verified in parallel before they are used in order.
const BATCH_BLOCKS: usize = 256;

/// One file to write into place.
#[derive(Clone, Debug)]
pub struct IntoFile {
    /// What to write, and where.
    pub file: RestoreFile,
    /// Byte ranges `(offset, length)` the source had as holes, sorted, not overlapping.
    pub holes: Vec<(u64, u64)>,
    /// Whether `dest` may exist already: its blocks that match are kept, others rewritten.
    pub delta: bool,
}

/// Feeds a part's checked stretches to the whole-file digest. 1 MiB and more goes in as
/// one buffer, which BLAKE3 spreads over the pool (its tree mode): the second hash of
/// every byte of a large file otherwise ran on the file's own thread between batches,
/// while the pool that checked the blocks waited (a PostgreSQL restore's largest relation
/// file is written alone once the other lane is done). Stretches that are each that long
/// go in as they are; shorter ones (packed blocks, blocks from several pieces) joined.
/// Below that, or for the other algorithms (sequential by nature), stretch by stretch.
fn update_whole(whole: &mut Hasher, stretches: &[Stretch]) {
    let total: usize = stretches.iter().map(|s| s.data.len()).sum();
    if total < PARALLEL_MIN || !matches!(whole, Hasher::Blake3(_)) {
        for s in stretches {
            whole.update(&s.data);
        }
        return;
    }
    if stretches.iter().all(|s| s.data.len() >= PARALLEL_MIN) {
        in_pool(|| stretches.iter().for_each(|s| whole.update_parallel(&s.data)));
        return;
    }
    let mut joined = Vec::with_capacity(total);
    for s in stretches {
        joined.extend_from_slice(&s.data);
    }
    in_pool(|| whole.update_parallel(&joined));
}

/// What `each_block` calls per stretch of blocks: (offset, length, bytes; None for a
/// hole block). Bytes hold one or more whole blocks, the first at a block boundary.
pub(super) type EachBlock<'a> = dyn FnMut(u64, u64, Option<&[u8]>) -> Result<()> + 'a;

/// The block map and piece readers of one restore, opened once for all its files
/// (also the tree restore's, restore_tree.rs).
pub(super) struct Blocks<'a> {
    pub(super) map: BlockMapReader,
    blockmap: &'a Path,
    sources: &'a [PathBuf],
    pub(super) readers: Vec<Option<PieceReader>>,
    /// Keys of each source's sealed blocks (an encrypted set), bound to its piece.
    pub(super) keys: Vec<Option<crate::crypto::BlockKey>>,
    pub(super) buffers: Buffers,
}

impl<'a> Blocks<'a> {
    pub(super) fn open(
        blockmap: &'a Path,
        sources: &'a [PathBuf],
        keys: &[Option<crate::crypto::BlockKey>],
    ) -> Result<Self> {
        let map = BlockMapReader::open(blockmap)?;
        map.verify_checksum()?;
        let keys = sources
            .iter()
            .enumerate()
            .map(
                |(i, p)| match (keys.get(i).and_then(Option::as_ref), crate::crypto::piece_label(p)) {
                    (Some(k), Some(label)) => Some(k.for_piece(&label)),
                    _ => None,
                },
            )
            .collect();
        Ok(Self {
            map,
            blockmap,
            sources,
            readers: sources.iter().map(|_| None).collect(),
            keys,
            buffers: Buffers::default(),
        })
    }

    fn reader(&mut self, i: usize, rel: &str, k: u64) -> Result<()> {
        let Some(slot) = self.readers.get_mut(i) else {
            return Err(Error::Invalid(format!(
                "internal: block {k} of file {rel:?} names source {i} of {}",
                self.sources.len()
            )));
        };
        if slot.is_none() {
            let r = PieceReader::open(&self.sources[i])?;
            if r.algorithm() != self.map.algorithm() || r.block_size() != self.map.block_size() {
                return Err(Error::format(
                    &self.sources[i],
                    format!(
                        "header (at offset 12..18) says {}-byte blocks hashed with {}, its block map {} {}-byte blocks with {}",
                        r.block_size(),
                        r.algorithm().name(),
                        self.blockmap.display(),
                        self.map.block_size(),
                        self.map.algorithm().name()
                    ),
                ));
            }
            *slot = Some(r);
        }
        Ok(())
    }

    /// The records of `f`'s blocks, resolved through the chain, with the reader of every
    /// piece they name opened (a small file's, read later from other threads).
    pub(super) fn records(&mut self, f: &RestoreFile) -> Result<Vec<BlockRecord>> {
        let n_sources = u32::try_from(self.sources.len()).unwrap_or(u32::MAX);
        let recs: Vec<BlockRecord> = self
            .map
            .range(f.first_block, f.block_count)?
            .limit_sources(n_sources)
            .collect::<crate::format::Result<_>>()?;
        for (k, rec) in (0u64..).zip(&recs) {
            if !rec.is_hole() {
                self.reader(rec.source as usize, &f.rel, k)?;
            }
        }
        Ok(recs)
    }

    /// Calls `each(offset, length, bytes)` for every stretch of verified blocks of `f` in
    /// order (a block of a hole run is `None`: never stored, nothing read), then checks
    /// the file's size and whole digest (which does not cover hole runs: docs/FORMAT.md).
    pub(super) fn each_block(
        &mut self,
        f: &RestoreFile,
        state: &mut Progress,
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
        each: &mut EachBlock<'_>,
    ) -> Result<()> {
        let alg = self.map.algorithm();
        let mut whole = alg.hasher();
        let mut at = 0u64;
        let n_sources = u32::try_from(self.sources.len()).unwrap_or(u32::MAX);
        let mut block_index = 0u64;
        let mut start = f.first_block;
        let end = f.first_block.saturating_add(f.block_count);
        while start < end {
            let take = (end - start).min(BATCH_BLOCKS as u64);
            let batch: Vec<BlockRecord> = self
                .map
                .range(start, take)?
                .limit_sources(n_sources)
                .collect::<crate::format::Result<_>>()?;
            start += take;
            for (k, rec) in (block_index..).zip(&batch) {
                if !rec.is_hole() {
                    self.reader(rec.source as usize, &f.rel, k)?;
                }
            }
            // Stretches of data blocks are read in parallel; hole blocks read nothing.
            let mut i = 0;
            while i < batch.len() {
                let hole = batch[i].is_hole();
                let n = batch[i..].iter().take_while(|r| r.is_hole() == hole).count();
                let part = &batch[i..i + n];
                i += n;
                if hole {
                    for r in part {
                        let len = u64::from(r.raw_len);
                        each(at, len, None)?;
                        at += len;
                        block_index += 1;
                    }
                    continue;
                }
                let stretches =
                    read_checked_blocks(part, &self.readers, &self.keys, alg, &f.rel, block_index, &self.buffers)
                        .into_iter()
                        .collect::<Result<Vec<_>>>()?;
                update_whole(&mut whole, &stretches);
                for st in stretches {
                    each(at, st.data.len() as u64, Some(&st.data))?;
                    at += st.data.len() as u64;
                    state.bytes_read += st.data.len() as u64;
                    block_index += st.count as u64;
                }
            }
            if let ControlFlow::Break(()) = progress(*state) {
                return Err(Error::Cancelled);
            }
        }
        let digest = whole.finalize();
        if at != f.size || digest != f.digest {
            return Err(Error::Invalid(format!(
                "restored file {:?} does not match its manifest: {} bytes with digest {}, expected {} bytes with digest {}",
                f.rel,
                at,
                to_hex(&digest),
                f.size,
                to_hex(&f.digest)
            )));
        }
        Ok(())
    }
}

/// The parts of `[at, at + len)`: `(start, end, in_hole)`, in order.
fn segments(holes: &[(u64, u64)], at: u64, len: u64) -> Vec<(u64, u64, bool)> {
    let end = at + len;
    let mut out = Vec::new();
    let mut pos = at;
    // Holes are sorted; the first that may reach `at` is found by its end.
    let from = holes.partition_point(|&(o, l)| o.saturating_add(l) <= at);
    for &(o, l) in &holes[from..] {
        if o >= end {
            break;
        }
        let (hs, he) = (o.max(pos), o.saturating_add(l).min(end));
        if hs > pos {
            out.push((pos, hs, false));
        }
        if he > hs {
            out.push((hs, he, true));
            pos = he;
        }
    }
    if pos < end {
        out.push((pos, end, false));
    }
    out
}

/// Deallocates `[offset, offset + len)` of `file`, keeping its size.
fn punch_hole(file: &File, dest: &Path, offset: u64, len: u64) -> Result<()> {
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(Error::Invalid(format!(
            "hole {offset}+{len} of {} is out of range",
            dest.display()
        )));
    };
    // SAFETY: fallocate only reads its integer arguments; the descriptor is open for
    // writing and owned by `file` for the whole call.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            n,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // A file system without hole punching keeps zeros there: the bytes are still right.
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        return file
            .write_all_at(&vec![0u8; len as usize], offset)
            .map_err(|e| Error::io(dest, e));
    }
    Err(Error::io(dest, e))
}

fn open_dest(f: &IntoFile) -> Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if f.delta {
        o.read(true).create(true);
    } else {
        o.create_new(true);
    }
    let file = o.open(&f.file.dest).map_err(|e| Error::io(&f.file.dest, e))?;
    let meta = file.metadata().map_err(|e| Error::io(&f.file.dest, e))?;
    if !meta.is_file() {
        return Err(Error::io(
            &f.file.dest,
            io::Error::other("not a regular file; a restored file is never written into another kind of entry"),
        ));
    }
    Ok(file)
}

/// Writes every file of `files` in place; returns, per file, the bytes written and
/// whether the file was touched at all (a delta file whose every block and whose size
/// already matched was not: same inode, same ctime).
pub fn restore_into(
    files: &[IntoFile],
    blockmap: &Path,
    sources: &[PathBuf],
    progress: ProgressHook<'_>,
) -> Result<Vec<(u64, bool)>> {
    restore_into_keyed(files, blockmap, sources, &[], progress)
}

/// `restore_into` of an encrypted set: `keys[i]` opens source `i`'s sealed blocks.
pub fn restore_into_keyed(
    files: &[IntoFile],
    blockmap: &Path,
    sources: &[PathBuf],
    keys: &[Option<crate::crypto::BlockKey>],
    progress: ProgressHook<'_>,
) -> Result<Vec<(u64, bool)>> {
    let mut blocks = Blocks::open(blockmap, sources, keys)?;
    let block_size = blocks.map.block_size() as usize;
    let mut state = Progress::default();
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let file = open_dest(f)?;
        let dest = &f.file.dest;
        let old_len = file.metadata().map_err(|e| Error::io(dest, e))?.len();
        let mut written = 0u64;
        let mut resized = false;
        let mut existing = Vec::new();
        blocks.each_block(&f.file, &mut state, &mut *progress, &mut |at, len, b| {
            let Some(b) = b else {
                // A hole run: nothing to write; in an existing file, its data there goes.
                if f.delta && at < old_len {
                    let n = len.min(old_len - at);
                    if data_in(&file, at, n).map_err(|e| Error::io(dest, e))? {
                        punch_hole(&file, dest, at, n)?;
                        written += n;
                    }
                }
                return Ok(());
            };
            // Block by block: a delta restore keeps each block that already matches.
            for (at, b) in (at..).step_by(block_size).zip(b.chunks(block_size)) {
                let len = b.len() as u64;
                if f.delta && at < old_len {
                    existing.resize(b.len(), 0);
                    let have = (old_len - at).min(len) as usize;
                    file.read_exact_at(&mut existing[..have], at)
                        .map_err(|e| Error::io(dest, e))?;
                    if have == b.len() && existing[..] == b[..] {
                        continue;
                    }
                }
                for (s, e, hole) in segments(&f.holes, at, len) {
                    let part = &b[(s - at) as usize..(e - at) as usize];
                    if hole && part.iter().all(|&x| x == 0) {
                        if f.delta && s < old_len {
                            punch_hole(&file, dest, s, e.min(old_len) - s)?;
                            written += e - s;
                        }
                        continue;
                    }
                    file.write_all_at(part, s).map_err(|e| Error::io(dest, e))?;
                    written += e - s;
                }
            }
            Ok(())
        })?;
        // Trailing holes exist only once the file has its full length; a longer old file
        // is cut to the restored one.
        if old_len != f.file.size || !f.delta {
            let now = file.metadata().map_err(|e| Error::io(dest, e))?.len();
            if now != f.file.size {
                file.set_len(f.file.size).map_err(|e| Error::io(dest, e))?;
                resized = true;
            }
        }
        state.files_done += 1;
        out.push((written, resized || written > 0 || !f.delta));
    }
    Ok(out)
}

/// Streams the contents of `f` (its `dest` is ignored) to `out`; returns the bytes written.
pub fn dump_file(f: &RestoreFile, blockmap: &Path, sources: &[PathBuf], out: &mut dyn Write) -> Result<u64> {
    dump_file_keyed(f, blockmap, sources, &[], out)
}

/// `dump_file` of an encrypted set: `keys[i]` opens source `i`'s sealed blocks.
pub fn dump_file_keyed(
    f: &RestoreFile,
    blockmap: &Path,
    sources: &[PathBuf],
    keys: &[Option<crate::crypto::BlockKey>],
    out: &mut dyn Write,
) -> Result<u64> {
    let mut blocks = Blocks::open(blockmap, sources, keys)?;
    let mut state = Progress::default();
    let mut none = |_: Progress| ControlFlow::Continue(());
    let mut zeros: Vec<u8> = Vec::new();
    blocks.each_block(f, &mut state, &mut none, &mut |_, len, b| {
        let b = match b {
            Some(b) => b,
            None => {
                // A hole block is at most one block long.
                zeros.resize(len as usize, 0);
                &zeros[..]
            }
        };
        out.write_all(b).map_err(|e| Error::io("<output>", e))
    })?;
    out.flush().map_err(|e| Error::io("<output>", e))?;
    Ok(state.bytes_read)
}

#[cfg(test)]
mod tests {
    use super::{segments, update_whole, Buffers, Stretch};
    use crate::scan::algorithm::Algorithm;

    #[test]
    fn the_whole_digest_is_the_same_fed_in_stretches_or_block_by_block() {
        // 4.6 MiB of 8 KiB blocks and a short last one: above PARALLEL_MIN for BLAKE3 (the
        // pool's tree mode), below it for the tail, and sequential for SHA-256.
        let data: Vec<u8> = (0..201 * 8192 + (3u32 << 20) + 100)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let buffers = Buffers::default();
        let stretch = |r: std::ops::Range<usize>| Stretch {
            data: data[r.clone()].to_vec(),
            count: r.len().div_ceil(8192),
            buffers: Some(&buffers),
        };
        let mb = 1 << 20;
        let parts = [
            // A part of 8 KiB blocks (each its own stretch), one of a single block, one
            // of two 1 MiB stretches, one of a 1 MiB stretch and a short tail.
            (0..200 * 8192)
                .step_by(8192)
                .map(|a| stretch(a..a + 8192))
                .collect::<Vec<_>>(),
            vec![stretch(200 * 8192..201 * 8192)],
            vec![
                stretch(201 * 8192..201 * 8192 + mb),
                stretch(201 * 8192 + mb..201 * 8192 + 2 * mb),
            ],
            vec![
                stretch(201 * 8192 + 2 * mb..201 * 8192 + 3 * mb),
                stretch(201 * 8192 + 3 * mb..data.len()),
            ],
        ];
        for alg in [Algorithm::Blake3, Algorithm::Sha256] {
            let mut fed = alg.hasher();
            for part in &parts {
                update_whole(&mut fed, part);
            }
            assert_eq!(fed.finalize(), alg.digest(&data), "{alg:?}");
        }
    }

    #[test]
    fn segments_split_blocks_at_holes() {
        assert_eq!(segments(&[], 0, 10), vec![(0, 10, false)]);
        assert_eq!(
            segments(&[(2, 3)], 0, 10),
            vec![(0, 2, false), (2, 5, true), (5, 10, false)]
        );
        assert_eq!(segments(&[(0, 100)], 10, 10), vec![(10, 20, true)]);
        assert_eq!(
            segments(&[(0, 5), (15, 100)], 10, 10),
            vec![(10, 15, false), (15, 20, true)]
        );
        assert_eq!(segments(&[(20, 5)], 10, 10), vec![(10, 20, false)]);
    }
}
