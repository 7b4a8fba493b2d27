//! The one-pass backup of a list of files: read each file in large block-aligned chunks
//! (never mmap: sources are live, and a file truncated under a mapping raises SIGBUS),
//! hash every block, compare with the parent's block map, write changed blocks into the
//! piece and a record for every block into the new block map. This is pgBackRest's
//! block-incremental idea with the digest, not the mtime, deciding what changed.
//!
//! A live file may change while it is read. Like GNU tar, the pass reads at most the size
//! the file had when it was opened (a file that keeps growing cannot stall the backup),
//! stores what it read, and flags the file as changed when it ended early, or when its
//! size or mtime differ after the read; the caller reports such files, the backup goes on.

use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::scan::parallel::in_pool;

use super::error::{Error, Result};
use super::holes::{hole_blocks, hole_ranges};
use super::prefetch::{Fetched, Prefetcher, Ready};
use super::progress::{Progress, ProgressHook};
use super::resume::{self, Checkpoint, Checkpointer, Resumed};
use crate::dedup::{DedupIndex, Dup, Origin};
use crate::format::checkpoint::{Identity, Settings};
use crate::format::{BlockMapReader, BlockMapWriter, BlockRecord, ParentRef, PieceSummary, PieceWriter, FLAG_ZSTD};
use crate::scan::algorithm::Algorithm;
/// Bytes read per chunk (rounded to a multiple of the block size).
pub(crate) const CHUNK_BYTES: usize = 4 << 20;
/// Chunks up to this size are hashed on the calling thread (`backup_files_resumable`).
const INLINE_BYTES: usize = 64 << 10;

/// One regular file to back up.
#[derive(Clone, Debug)]
pub struct FileJob {
    /// Where to read it.
    pub path: PathBuf,
    /// Its relative name (for error messages).
    pub rel: String,
    /// Its parent's block-map range `(first, count)`, if the parent had this file.
    pub parent: Option<(u64, u64)>,
    /// Not read again: the caller found it unchanged since the parent (size, mtime,
    /// ctime, inode, device; restic's rule), so its blocks are the parent's `parent`
    /// range and its size and digest are these. Ignored without a parent range.
    pub reuse: Option<Reused>,
}

/// What the parent recorded of a file taken over unread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reused {
    /// Its size.
    pub size: u64,
    /// Its whole-file digest.
    pub digest: Vec<u8>,
    /// The identity the caller's walk saw and matched with the parent's entry: what the
    /// checkpoint journals for it, so a resumed pass adopts it only while the file still
    /// has it (a rewrite after the walk moves the ctime, and the file is read then).
    pub identity: Identity,
}

/// Settings of one backup pass.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Block digest algorithm (also the piece and block-map checksum).
    pub algorithm: Algorithm,
    /// Block size in bytes.
    pub block_size: u32,
    /// zstd level, or None for no compression.
    pub zstd_level: Option<i32>,
    /// This set's index in its own `sources` list (the parent's sources count).
    pub self_source: u32,
    /// Seal every stored block with these keys (an encrypted repository; the piece's own
    /// name is bound in by `crypto::piece_label`); block digests are then keyed.
    pub seal: Option<crate::crypto::BlockKey>,
    /// Store a block identical to one already stored (in this pass or the parent's
    /// state) as a reference to it (rust/src/dedup/): for file trees. Database files
    /// keep the positional comparison alone.
    pub dedup: bool,
}

/// What the pass learnt about one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOutcome {
    /// Bytes read (the file's size as backed up).
    pub size: u64,
    /// Digest of the whole file.
    pub digest: Vec<u8>,
    /// Its first record in the new block map.
    pub first_block: u64,
    /// Its number of blocks.
    pub block_count: u64,
    /// It changed while it was read (ended early, or another size or mtime afterwards):
    /// what was read is stored, and may mix old and new contents.
    pub changed: bool,
}

/// PostgreSQL page checks done on the bytes the pass reads (`crate::pgpage`), so a base
/// backup reads each relation file once: what `pgpage::check_file` finds, per job.
#[derive(Clone, Debug)]
pub struct PageChecks {
    /// The backup's start LSN: pages at or past it are left to WAL replay.
    pub start_lsn: u64,
    /// The cluster's page size.
    pub page_size: usize,
    /// Per job: its relation segment number (the `.N` suffix, 0 for none), or None for
    /// a file that is not a relation file.
    pub segments: Vec<Option<u64>>,
}

/// What the pass produced.
#[derive(Clone, Debug)]
pub struct BackupOutcome {
    /// One per job, in order.
    pub files: Vec<FileOutcome>,
    /// The piece written.
    pub piece: PieceSummary,
    /// Checksum of the block map.
    pub blockmap_checksum: Vec<u8>,
    /// Records in the block map.
    pub blockmap_records: u64,
    /// Source bytes read.
    pub bytes_read: u64,
    /// Blocks stored in the piece (changed or new).
    pub blocks_stored: u64,
    /// What the pass took over from a cut one (`backup_files_resumable`).
    pub resumed: Resumed,
    /// Damaged pages found by the `PageChecks` (job number, page), in the order read;
    /// None when the pass did not check (no `PageChecks`, or chunks that are not whole
    /// pages). Files adopted from a cut pass or taken over unread are not checked.
    pub bad_pages: Option<Vec<(u32, crate::pgpage::BadPage)>>,
}

/// Smallest block size a backup accepts (smaller blocks cost more index than they save).
pub const MIN_BLOCK_SIZE: u32 = 512;
/// Largest block size a backup accepts: the format's bound.
pub const MAX_BLOCK_SIZE: u32 = crate::format::MAX_BLOCK_SIZE;

/// Checks a block size.
pub fn check_block_size(block_size: u32) -> Result<()> {
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(Error::Invalid(format!(
            "block_size {block_size} is out of range ({MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE} bytes)"
        )));
    }
    Ok(())
}

/// Backs up `jobs` into a new piece at `piece_path` and a new block map at
/// `blockmap_path`. Blocks equal (digest and length) to the parent's block at the same
/// position are not stored again: the new map refers to `parent_blockmap`'s records
/// (runs of them, one small entry per run), so it grows with what changed. The parent's
/// map must stay next to the new one's final place (`../<parent set>/blockmap`).
pub fn backup_files(
    jobs: &[FileJob],
    parent_blockmap: Option<&Path>,
    piece_path: &Path,
    blockmap_path: &Path,
    opts: &BackupOptions,
    progress: ProgressHook<'_>,
) -> Result<BackupOutcome> {
    backup_files_resumable(jobs, parent_blockmap, piece_path, blockmap_path, opts, None, progress)
}

/// `backup_files` that journals its finished files in `checkpoint` and, when a cut pass
/// left a piece and a journal there, resumes from them (`engine::resume`): the files it
/// can adopt are not read again, and the piece and block map come out as an
/// uninterrupted pass writes them. A pass that stops (cancelled, or a source file that
/// cannot be read) commits its journal first.
pub fn backup_files_resumable(
    jobs: &[FileJob],
    parent_blockmap: Option<&Path>,
    piece_path: &Path,
    blockmap_path: &Path,
    opts: &BackupOptions,
    checkpoint: Option<&Checkpoint>,
    progress: ProgressHook<'_>,
) -> Result<BackupOutcome> {
    backup_files_checked(
        jobs,
        parent_blockmap,
        piece_path,
        blockmap_path,
        opts,
        checkpoint,
        None,
        progress,
    )
}

/// `backup_files_resumable` that also checks PostgreSQL pages as it reads (`PageChecks`).
#[allow(clippy::too_many_arguments)]
pub fn backup_files_checked(
    jobs: &[FileJob],
    parent_blockmap: Option<&Path>,
    piece_path: &Path,
    blockmap_path: &Path,
    opts: &BackupOptions,
    checkpoint: Option<&Checkpoint>,
    pages: Option<&PageChecks>,
    progress: ProgressHook<'_>,
) -> Result<BackupOutcome> {
    check_block_size(opts.block_size)?;
    let piece_key = match &opts.seal {
        // Keyed digests are BLAKE3's keyed mode: 32 bytes, as the header's blake3 says.
        Some(_) if opts.algorithm != Algorithm::Blake3 => {
            return Err(Error::Invalid(format!(
                "an encrypted backup hashes with blake3, not {}",
                opts.algorithm.name()
            )))
        }
        Some(k) => Some(k.for_piece(&crate::crypto::piece_label(piece_path).ok_or_else(|| {
            Error::Invalid(format!(
                "piece {} has no set directory and file name",
                piece_path.display()
            ))
        })?)),
        None => None,
    };
    let parent = match parent_blockmap {
        Some(p) => {
            let r = BlockMapReader::open(p)?;
            if r.algorithm() != opts.algorithm || r.block_size() != opts.block_size {
                return Err(Error::Invalid(format!(
                    "parent block map {} uses {} with {}-byte blocks, this backup {} with {}-byte blocks",
                    p.display(),
                    r.algorithm().name(),
                    r.block_size(),
                    opts.algorithm.name(),
                    opts.block_size
                )));
            }
            // Each parent map's checksum is computed as this pass reads it, and checked
            // before anything is finished: a damaged parent never yields an incremental.
            r.hash_as_read();
            Some(r)
        }
        None => None,
    };
    let make_map = || -> Result<BlockMapWriter> {
        Ok(match (&parent, parent_blockmap) {
            (Some(r), Some(p)) => {
                let rel = parent_rel_path(p)?;
                let pref = ParentRef {
                    rel_path: rel,
                    checksum: r.recorded_checksum().to_vec(),
                };
                BlockMapWriter::create_child(blockmap_path, opts.algorithm, opts.block_size, pref)?
            }
            _ => BlockMapWriter::create(blockmap_path, opts.algorithm, opts.block_size)?,
        })
    };
    let mut dedup = if opts.dedup {
        DedupIndex::new(
            opts.algorithm,
            parent_blockmap.map(Path::to_path_buf),
            crate::dedup::DEFAULT_CAP,
        )
    } else {
        None
    };
    let (mut piece, mut map, mut files, mut ck, resumed) = match checkpoint {
        Some(c) => {
            let settings = Settings {
                algorithm: opts.algorithm,
                block_size: opts.block_size,
                zstd_level: opts.zstd_level,
                self_source: opts.self_source,
                parent_sum: parent.as_ref().map(|r| r.recorded_checksum().to_vec()),
            };
            // The duplicate index learns the adopted files' blocks as their map is rebuilt,
            // with their record numbers, as the uninterrupted pass did: later twins become
            // the same copy runs, so the map is the uninterrupted pass's byte for byte.
            let mut on_stored = |r: &BlockRecord, at: u64| {
                if let Some(idx) = dedup.as_mut() {
                    idx.insert_at(r, Some(Origin::Own(at)));
                }
            };
            let sealed = opts.seal.is_some();
            let s = resume::start(
                jobs,
                &settings,
                piece_path,
                blockmap_path,
                c,
                &make_map,
                &mut on_stored,
                sealed,
            )?;
            (s.piece, s.map, s.files, Some(s.ck), s.resumed)
        }
        None => (
            PieceWriter::create(piece_path, opts.algorithm, opts.block_size)?,
            make_map()?,
            Vec::with_capacity(jobs.len()),
            None,
            Resumed::default(),
        ),
    };
    let bs = opts.block_size as usize;
    let chunk_len = (CHUNK_BYTES / bs).max(1) * bs;
    // Pages are checked in the pass only when every chunk starts on a page (the page
    // size divides the chunk); else the caller checks the files on its own.
    let pages = pages.filter(|p| crate::pgpage::valid_page_size(p.page_size) && chunk_len % p.page_size == 0);
    let mut bad_pages = pages.map(|_| Vec::new());
    let mut buf = vec![0u8; chunk_len];
    // A chunk's sealed blocks, end to end (reused: no allocation per block or chunk).
    let mut seal_buf: Vec<u8> = Vec::new();
    let mut state = Progress::default();
    let mut blocks_stored = 0u64;
    // Small files are opened and read ahead on the pool (engine::prefetch); the pass
    // takes them in order. Files taken over unread are not asked for.
    let mut ahead = Prefetcher::start(
        jobs.iter()
            .enumerate()
            .skip(files.len())
            .filter(|(_, j)| j.reuse.is_none())
            .map(|(i, j)| (i, j.path.clone()))
            .collect(),
        opts.dedup,
    );

    for (file_no, job) in jobs.iter().enumerate().skip(files.len()) {
        let file_no = u32::try_from(file_no).map_err(|_| Error::Invalid("more than 4 billion files".into()))?;
        // Taken over as the walk saw it (restic's rule), with no system call: the set holds
        // each file as it was at one moment of the backup, for this one the walk's. Its
        // journal record carries that identity, so a change since is read on resume.
        if let (Some(known), Some((first, count)), Some(_)) = (&job.reuse, job.parent, &parent) {
            let first_block = map.count();
            for k in 0..count {
                map.push_parent(first + k)?;
            }
            state.files_done += 1;
            files.push(FileOutcome {
                size: known.size,
                digest: known.digest.clone(),
                first_block,
                block_count: count,
                changed: false,
            });
            if let (Some(ck), Some(done)) = (ck.as_mut(), files.last()) {
                ck.taken_over(&mut piece, &mut map, file_no, job, known.identity, done)?;
            }
            continue;
        }
        let stop = |ck: &mut Option<Checkpointer>, piece: &mut PieceWriter, map: &mut BlockMapWriter, e| {
            cut(ck, piece, map, Error::io(&job.path, e))
        };
        // Read ahead (a small file: its bytes and fstats), or opened and read here.
        let (mut src, at_open, mut ready) = match ahead.take(file_no as usize) {
            Some(Fetched::Ready(r)) => {
                let Ready { at_open, data, after } = *r;
                (None, at_open, Some((data, after)))
            }
            Some(Fetched::Failed(e)) => return Err(stop(&mut ck, &mut piece, &mut map, e)),
            None => {
                let f = File::open(&job.path).map_err(|e| stop(&mut ck, &mut piece, &mut map, e))?;
                let m = f.metadata().map_err(|e| stop(&mut ck, &mut piece, &mut map, e))?;
                (Some(f), m, None)
            }
        };
        let mut left = at_open.len();
        let mut parent_iter = match (&parent, job.parent) {
            (Some(r), Some((first, count))) => Some(r.range(first, count)?),
            _ => None,
        };
        // File trees (the dedup pass) keep a sparse file's holes as hole runs, found
        // without reading them (engine::holes); the whole-file digest then covers the
        // data blocks only (docs/FORMAT.md "Block map version 3"). Database files are
        // read whole, as before. A file system that cannot say is read whole too.
        // (A file read ahead has none: the read-ahead leaves files with holes to the pass.)
        let holes = match src.as_ref().filter(|_| opts.dedup) {
            Some(f) => hole_blocks(&hole_ranges(f, left).unwrap_or_default(), left, opts.block_size),
            None => Vec::new(),
        };
        let mut next_hole = 0usize;
        let first_block = map.count();
        let mut whole = opts.algorithm.hasher();
        let mut size = 0u64;
        let mut block_index = 0u64;
        let mut ended_early = false;
        while left > 0 {
            if let Some(h) = holes.get(next_hole).filter(|h| h.first == block_index) {
                next_hole += 1;
                let bs64 = bs as u64;
                // Hole blocks lie below the size at open; only the file's last may be short.
                let bytes = h.count.saturating_mul(bs64).min(left);
                let last_len = (bytes - (h.count - 1) * bs64) as u32;
                map.push_holes(h.count, last_len)?;
                if let Some(it) = parent_iter.as_mut() {
                    for _ in 0..h.count {
                        it.next().transpose()?;
                    }
                }
                block_index += h.count;
                left -= bytes;
                size += bytes;
                if let Some(f) = src.as_mut() {
                    f.seek(SeekFrom::Start(block_index * bs64))
                        .map_err(|e| stop(&mut ck, &mut piece, &mut map, e))?;
                }
                continue;
            }
            // Never more than the size at open: a file that keeps growing cannot stall the pass.
            let mut want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            if let Some(h) = holes.get(next_hole) {
                // Stop at the next hole: its blocks are not read.
                let before = (h.first - block_index).saturating_mul(bs as u64);
                want = want.min(usize::try_from(before).unwrap_or(usize::MAX));
            }
            let n = match (src.as_mut(), &ready) {
                (Some(f), _) => fill(f, &mut buf[..want]).map_err(|e| stop(&mut ck, &mut piece, &mut map, e))?,
                // No holes in a file read ahead: `size` is where its next bytes start.
                (None, Some((bytes, _))) => {
                    let rest = bytes
                        .get(usize::try_from(size).unwrap_or(usize::MAX)..)
                        .unwrap_or_default();
                    let k = rest.len().min(want);
                    buf[..k].copy_from_slice(&rest[..k]);
                    k
                }
                (None, None) => 0,
            };
            left -= n as u64;
            ended_early = n < want;
            if n == 0 {
                break;
            }
            let data = &buf[..n];
            let alg = opts.algorithm;
            let digest = |b: &[u8]| piece_key.as_ref().map_or_else(|| alg.digest(b), |k| k.digest(b));
            // A relation file's pages, checked on the bytes just read (no second read).
            let check = pages.and_then(|p| {
                let segment = p.segments.get(file_no as usize).copied().flatten()?;
                // (Always on a page: only hole runs, which database files do not get,
                // could move a chunk off one.)
                (size % p.page_size as u64 == 0).then_some((p, segment, size / p.page_size as u64))
            });
            let check_chunk = || match check {
                Some((p, segment, first)) => crate::pgpage::check_pages(data, segment, first, p.start_lsn, p.page_size),
                None => Vec::new(),
            };
            let (digests, bad) = if data.len() <= INLINE_BYTES {
                // A small file is hashed on this thread: handing it to the pool costs two
                // thread switches, more than hashing a few blocks (20,000 small files).
                whole.update(data);
                (data.chunks(bs).map(digest).collect::<Vec<Vec<u8>>>(), check_chunk())
            } else {
                // The whole-file digest, the block digests and the page checks are
                // independent: all at once.
                in_pool(|| {
                    let (digests, (_, bad)) = rayon::join(
                        || data.par_chunks(bs).map(digest).collect::<Vec<Vec<u8>>>(),
                        || rayon::join(|| whole.update(data), check_chunk),
                    );
                    (digests, bad)
                })
            };
            if let Some(found) = bad_pages.as_mut() {
                found.extend(bad.into_iter().map(|b| (file_no, b)));
            }
            let mut parents: Vec<Option<BlockRecord>> = Vec::with_capacity(digests.len());
            for _ in 0..digests.len() {
                parents.push(match parent_iter.as_mut() {
                    Some(it) => it.next().transpose()?,
                    None => None,
                });
            }
            let mut changed: Vec<bool> = data
                .chunks(bs)
                .zip(&digests)
                .zip(&parents)
                .map(|((b, d), p)| !matches!(p, Some(p) if p.raw_len as usize == b.len() && &p.digest == d))
                .collect();
            // Decided before compressing and sealing, which only the stored blocks need.
            let dups = match dedup.as_mut() {
                Some(idx) => {
                    let lens: Vec<u32> = data.chunks(bs).map(|b| b.len() as u32).collect();
                    idx.plan(&digests, &lens, &mut changed)?
                }
                None => vec![None; digests.len()],
            };
            let mut chunk_recs: Vec<Option<BlockRecord>> = vec![None; digests.len()];
            // The map record each stored block of the chunk got (what a twin copies).
            let mut chunk_at: Vec<Option<u64>> = vec![None; digests.len()];
            let encoded: Vec<Option<(Vec<u8>, u8)>> = match opts.zstd_level {
                Some(level) => in_pool(|| {
                    data.par_chunks(bs)
                        .zip(changed.par_iter())
                        .map(|(b, &c)| c.then(|| compress(b, level)))
                        .collect()
                }),
                None => changed.iter().map(|_| None).collect(),
            };
            let sealed = seal_chunk(
                piece_key.as_ref(),
                piece.position(),
                data,
                bs,
                &changed,
                &encoded,
                &digests,
                &mut seal_buf,
            )?;
            for (i, (block, digest)) in data.chunks(bs).zip(digests).enumerate() {
                let raw_len = block.len() as u32;
                if let Some(dup) = &dups[i] {
                    // A reference to the twin's record where the map can name it (runs
                    // join: a copied file is one run), else a record of its location.
                    match dup {
                        Dup::Known(_, Some(Origin::Parent(k))) if map.has_parent() => map.push_parent(*k)?,
                        Dup::Known(_, Some(Origin::Own(k))) if map.has_copies() => map.push_copy(*k)?,
                        Dup::Known(r, _) => map.push(r)?,
                        Dup::Earlier(j) => match (chunk_at[*j], &chunk_recs[*j]) {
                            (Some(k), _) if map.has_copies() => map.push_copy(k)?,
                            (_, Some(r)) => map.push(r)?,
                            _ => return Err(Error::Invalid("internal: a duplicate of a block not stored".into())),
                        },
                    }
                    block_index += 1;
                    continue;
                }
                if !changed[i] {
                    // Unchanged means the parent had this file's block here.
                    match job.parent {
                        Some((first, _)) if parents[i].is_some() => map.push_parent(first + block_index)?,
                        _ => return Err(Error::Invalid("internal: unchanged block without a parent".into())),
                    }
                    block_index += 1;
                    continue;
                }
                let stored = match (&sealed[i], &encoded[i]) {
                    (Some((range, flags, at)), _) => {
                        let bytes = &seal_buf[range.clone()];
                        let s = piece.write_block(file_no, block_index, bytes, raw_len, *flags, &digest)?;
                        if s.offset != *at {
                            return Err(Error::Invalid("internal: a sealed block landed off its place".into()));
                        }
                        s
                    }
                    (None, encoded) => match encoded {
                        Some((bytes, flags)) => {
                            piece.write_block(file_no, block_index, bytes, raw_len, *flags, &digest)?
                        }
                        None => piece.write_block(file_no, block_index, block, raw_len, 0, &digest)?,
                    },
                };
                blocks_stored += 1;
                let rec = BlockRecord {
                    source: opts.self_source,
                    offset: stored.offset,
                    stored_len: stored.stored_len,
                    raw_len,
                    flags: stored.flags,
                    digest,
                };
                let at = map.count();
                map.push(&rec)?;
                if let Some(idx) = dedup.as_mut() {
                    idx.insert_at(&rec, Some(Origin::Own(at)));
                }
                chunk_recs[i] = Some(rec);
                chunk_at[i] = Some(at);
                block_index += 1;
            }
            size += n as u64;
            state.bytes_read += n as u64;
            state.bytes_written = piece.position();
            if let ControlFlow::Break(()) = progress(state) {
                return Err(cut(&mut ck, &mut piece, &mut map, Error::Cancelled));
            }
            if ended_early {
                break;
            }
        }
        let after = match (ready.take(), &src) {
            (Some((_, after)), _) => after,
            (None, Some(f)) => f.metadata().map_err(|e| stop(&mut ck, &mut piece, &mut map, e))?,
            (None, None) => return Err(Error::Invalid("internal: a file neither read ahead nor opened".into())),
        };
        state.files_done += 1;
        files.push(FileOutcome {
            size,
            digest: whole.finalize(),
            first_block,
            block_count: block_index,
            changed: ended_early || changed_since(&at_open, &after),
        });
        if let (Some(ck), Some(done)) = (ck.as_mut(), files.last()) {
            ck.file_done(&mut piece, &mut map, file_no, job, &after, done)?;
        }
    }
    if let ControlFlow::Break(()) = progress(state) {
        return Err(cut(&mut ck, &mut piece, &mut map, Error::Cancelled));
    }
    if let Some(r) = &parent {
        r.finish_checksums()?;
    }
    let piece = piece.finish()?;
    let (blockmap_checksum, blockmap_records) = map.finish()?;
    if let Some(ck) = ck {
        ck.finish()?;
    }
    Ok(BackupOutcome {
        files,
        piece,
        blockmap_checksum,
        blockmap_records,
        bytes_read: state.bytes_read,
        blocks_stored,
        resumed,
        bad_pages,
    })
}

/// A sealed block: where its bytes lie in the chunk's seal buffer, its flags and the
/// offset it was sealed for.
type Sealed = (std::ops::Range<usize>, u8, u64);

/// Seals the changed blocks of one chunk on the pool into `out`, end to end. Blocks are
/// written in order from `start`, so each one's offset (bound into its tag) is known
/// before it is written. The cipher reads each block where it lies and writes straight
/// into its place in `out`, and the chunk's nonces come from one call to the system's
/// random source: per block, sealing costs the cipher alone (no copy, allocation or
/// system call; benches/README.md "Encryption").
#[allow(clippy::too_many_arguments)]
fn seal_chunk(
    key: Option<&crate::crypto::BlockKey>,
    start: u64,
    data: &[u8],
    bs: usize,
    changed: &[bool],
    encoded: &[Option<(Vec<u8>, u8)>],
    digests: &[Vec<u8>],
    out: &mut Vec<u8>,
) -> Result<Vec<Option<Sealed>>> {
    use crate::crypto::{NONCE_LEN, OVERHEAD};
    let Some(key) = key else {
        return Ok(changed.iter().map(|_| None).collect());
    };
    let mut at = start;
    let mut used = 0usize;
    let mut plan = Vec::with_capacity(changed.len());
    let mut places = Vec::with_capacity(changed.len());
    for (i, block) in data.chunks(bs).enumerate() {
        if !changed[i] {
            places.push(None);
            continue;
        }
        let (bytes, flags) = match &encoded[i] {
            Some((b, f)) => (&b[..], *f),
            None => (block, 0),
        };
        let len = bytes.len() + OVERHEAD;
        let flags = flags | key.seal_flags();
        plan.push((at, bytes, flags, block.len() as u32, &digests[i][..]));
        places.push(Some((used..used + len, flags, at)));
        at += len as u64;
        used += len;
    }
    let mut nonces = vec![0u8; plan.len() * NONCE_LEN];
    crate::crypto::error::random_fill(&mut nonces).map_err(|e| Error::Invalid(format!("sealing a block: {e}")))?;
    // Grown, never cleared: every byte of `out[..used]` is overwritten by its block's seal.
    if out.len() < used {
        out.resize(used, 0);
    }
    // Each block's slice of `out`, in plan order.
    let mut slots: Vec<&mut [u8]> = Vec::with_capacity(plan.len());
    let mut rest = &mut out[..used];
    for p in &plan {
        let (slot, tail) = std::mem::take(&mut rest).split_at_mut(p.1.len() + OVERHEAD);
        slots.push(slot);
        rest = tail;
    }
    in_pool(|| {
        plan.par_iter()
            .zip(nonces.par_chunks_exact(NONCE_LEN))
            .zip(slots.into_par_iter())
            .try_for_each(|((&(at, bytes, flags, raw_len, digest), nonce), slot)| {
                let nonce: &[u8; NONCE_LEN] = nonce
                    .try_into()
                    .map_err(|_| crate::crypto::Error::Invalid("internal: a nonce of the wrong length".into()))?;
                key.seal_into(at, raw_len, flags, digest, bytes, nonce, slot)
            })
    })
    .map_err(|e| Error::Invalid(format!("sealing a block: {e}")))?;
    Ok(places)
}

/// Commits the checkpoint of a pass that stops with `err` (`engine::resume`); returns `err`.
fn cut(ck: &mut Option<Checkpointer>, piece: &mut PieceWriter, map: &mut BlockMapWriter, err: Error) -> Error {
    match ck {
        Some(c) => c.cut(piece, map, err),
        None => err,
    }
}

/// `../<parent set>/<file>`: where the parent's map is seen from the new map's directory
/// (both live in `sets/`).
fn parent_rel_path(parent: &Path) -> Result<String> {
    let name = |p: Option<&std::ffi::OsStr>| p.and_then(|s| s.to_str()).map(str::to_string);
    match (
        name(parent.parent().and_then(Path::file_name)),
        name(parent.file_name()),
    ) {
        (Some(dir), Some(file)) => Ok(format!("../{dir}/{file}")),
        _ => Err(Error::Invalid(format!(
            "parent block map {} has no set directory and file name",
            parent.display()
        ))),
    }
}

/// Whether a file's size or modification time moved between two `fstat`s.
fn changed_since(before: &Metadata, after: &Metadata) -> bool {
    before.len() != after.len() || before.mtime() != after.mtime() || before.mtime_nsec() != after.mtime_nsec()
}

/// zstd-compresses a block; keeps it raw when compression does not make it smaller.
/// Each pool thread keeps its compression context: a fresh one per 8 KiB block
/// (`zstd::bulk::compress`) cost three times the compression itself (a PostgreSQL
/// relation file: 2.5 s of CPU for 670 MB, the zstd command 0.74 s).
fn compress(block: &[u8], level: i32) -> (Vec<u8>, u8) {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    let out = CONTEXT.with(|c| {
        let mut c = c.borrow_mut();
        if !matches!(&*c, Some((l, _)) if *l == level) {
            *c = zstd::bulk::Compressor::new(level).ok().map(|z| (level, z));
        }
        c.as_mut().map(|(_, z)| z.compress(block))
    });
    match out {
        Some(Ok(c)) if c.len() < block.len() => (c, FLAG_ZSTD),
        _ => (block.to_vec(), 0),
    }
}

/// Reads until `buf` is full or the file ends (a live file may return short reads).
fn fill(src: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
