//! A file tree's regular files restored in one GIL-free pass: each file created below
//! its directory's descriptor (`O_CREAT | O_EXCL | O_NOFOLLOW`, so nothing is written
//! through a link), its blocks read, checked and written, then its owner, xattrs, mode
//! and mtime applied through the same descriptor (tree_meta.rs). Before, each file cost
//! a path walk for its creation, another for its metadata and a dozen Python calls.
//!
//! Block records are resolved in block-map order on the calling thread (the map's
//! cursors only move forward); small files are then written in batches, one directory
//! at a time (on the rayon pool, a directory per task, only when the batch's files are
//! large enough to pay for the hand-offs). Large files stream as in restore.rs after
//! the small ones, two at a time (restore_parallel.rs).
//!
//! No file is fsynced, as restic, tar and `cp` do not: a restore is complete when it
//! returns, and a crash during it leaves a partial tree to restore again (the repository
//! is only read). Every block is checked against its digest and every file against its
//! size and whole digest before the restore reports success.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::error::{Error, Result};
use super::progress::{Progress, ProgressHook};
use super::restore::{read_checked_blocks, RestoreFile};
use super::restore_into::Blocks;
use super::tree_meta::{apply, cstr, inherits_acl, open_dir, openat, split_parent, Meta, MetaOptions, Problem, Target};
use crate::format::BlockRecord;
use crate::scan::algorithm::to_hex;
use crate::scan::parallel::in_pool;

/// Files of at most this many blocks and bytes are written in parallel batches.
const SMALL_BLOCKS: u64 = 16;
const SMALL_BYTES: u64 = 1 << 20;
/// A batch ends after this many files or bytes (memory: the records and one file's
/// bytes per thread at a time).
const BATCH_FILES: usize = 4096;
const BATCH_BYTES: u64 = 32 << 20;
/// Batches whose files average at least this many bytes are written on the pool.
const PARALLEL_MEAN_BYTES: u64 = 64 << 10;

/// One regular file of the tree.
#[derive(Clone, Debug)]
pub struct TreeFile {
    /// Its path below the restore root (`a/b/c`).
    pub path: PathBuf,
    /// Its blocks and digest; `dest` is only what messages show (root joined with path).
    pub file: RestoreFile,
    /// What to set on it once written.
    pub meta: Meta,
}

/// What a tree restore wrote and could not apply.
#[derive(Debug, Default)]
pub struct TreeOutcome {
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Metadata the system refused, by index into the files.
    pub problems: Vec<Problem>,
}

/// Restores `files` below the directory open as `root` (`root_path` for messages),
/// whose parent directories exist already (`tree_meta::make_dirs`), from the block map
/// at `blockmap` whose source `i` is the piece `sources[i]` (sealed blocks opened with
/// `keys[i]`).
#[allow(clippy::too_many_arguments)]
pub fn restore_tree(
    root: BorrowedFd<'_>,
    root_path: &Path,
    files: &[TreeFile],
    blockmap: &Path,
    sources: &[PathBuf],
    keys: &[Option<crate::crypto::BlockKey>],
    opts: MetaOptions,
    progress: ProgressHook<'_>,
) -> Result<TreeOutcome> {
    let mut blocks = Blocks::open(blockmap, sources, keys)?;
    let mut state = Progress::default();
    let mut out = TreeOutcome::default();
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| files[i].file.first_block);
    let mut batch: Vec<(usize, Vec<BlockRecord>)> = Vec::new();
    let mut batch_bytes = 0u64;
    let mut big: Vec<usize> = Vec::new();
    for i in order {
        let f = &files[i];
        if f.file.block_count <= SMALL_BLOCKS && f.file.size <= SMALL_BYTES {
            batch.push((i, blocks.records(&f.file)?));
            batch_bytes += f.file.size;
            if batch.len() < BATCH_FILES && batch_bytes < BATCH_BYTES {
                continue;
            }
        }
        flush(root, root_path, files, &mut batch, &blocks, opts, &mut out)?;
        state.bytes_read += batch_bytes;
        batch_bytes = 0;
        if f.file.block_count > SMALL_BLOCKS || f.file.size > SMALL_BYTES {
            // Written after the small files, two at a time (restore_parallel.rs).
            big.push(i);
        }
        if progress(state).is_break() {
            return Err(Error::Cancelled);
        }
    }
    flush(root, root_path, files, &mut batch, &blocks, opts, &mut out)?;
    state.bytes_read += batch_bytes;
    out.bytes += super::restore_parallel::write_large(
        root,
        root_path,
        files,
        &big,
        &mut blocks,
        blockmap,
        sources,
        keys,
        opts,
        &mut state,
        &mut *progress,
        &mut out.problems,
    )?;
    if progress(state).is_break() {
        return Err(Error::Cancelled);
    }
    out.problems.sort_by_key(|p| p.index);
    Ok(out)
}

/// Writes a batch of small files, one task per directory; empties `batch`.
fn flush(
    root: BorrowedFd<'_>,
    root_path: &Path,
    files: &[TreeFile],
    batch: &mut Vec<(usize, Vec<BlockRecord>)>,
    blocks: &Blocks<'_>,
    opts: MetaOptions,
    out: &mut TreeOutcome,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    batch.sort_by(|a, b| split_parent(&files[a.0].path).0.cmp(split_parent(&files[b.0].path).0));
    let groups: Vec<&[(usize, Vec<BlockRecord>)]> = batch
        .chunk_by(|a, b| split_parent(&files[a.0].path).0 == split_parent(&files[b.0].path).0)
        .collect();
    let (readers, keys, alg, buffers) = (&blocks.readers, &blocks.keys, blocks.map.algorithm(), &blocks.buffers);
    let one_dir = |group: &&[(usize, Vec<BlockRecord>)]| -> Result<(u64, Vec<Problem>)> {
        let dir = split_parent(&files[group[0].0].path).0;
        let dfd = open_dir(root, root_path, dir)?;
        let opts = MetaOptions {
            fresh: !inherits_acl(dfd.as_fd()),
            ..opts
        };
        let mut written = 0u64;
        let mut problems = Vec::new();
        for (i, recs) in group.iter() {
            let f = &files[*i];
            let fd = create(dfd.as_fd(), f)?;
            let checked = read_checked_blocks(recs, readers, keys, alg, &f.file.rel, 0, buffers);
            let mut data = Vec::with_capacity(usize::try_from(f.file.size).unwrap_or(0));
            let mut whole = alg.hasher();
            let mut at = 0;
            for st in checked {
                let st = st?;
                // Zeros of a hole record are data here (this file had no holes in its
                // manifest) but not under the whole-file digest (docs/FORMAT.md).
                if !recs[at].is_hole() {
                    whole.update(&st.data);
                }
                at += st.count;
                data.extend_from_slice(&st.data);
            }
            check_whole(&f.file, data.len() as u64, &whole.finalize())?;
            let mut file = File::from(fd);
            file.write_all(&data).map_err(|e| Error::io(&f.file.dest, e))?;
            written += data.len() as u64;
            let raw = file.as_raw_fd();
            apply(raw, &Target::Fd(raw), &f.file.dest, *i, &f.meta, opts, &mut problems)?;
        }
        Ok((written, problems))
    };
    let bytes: u64 = batch.iter().map(|(i, _)| files[*i].file.size).sum();
    // Files of a few KiB on average are written on this thread: on the 2-core machine the
    // pool's hand-offs and idle spinning cost 0.5 s more CPU on 20,000 files than they
    // saved in wall time (benches/README.md, "Restore in one Rust pass").
    let done: Vec<Result<(u64, Vec<Problem>)>> = if bytes / (batch.len() as u64) < PARALLEL_MEAN_BYTES {
        groups.iter().map(one_dir).collect()
    } else {
        in_pool(|| groups.par_iter().map(one_dir).collect())
    };
    batch.clear();
    for d in done {
        let (written, problems) = d?;
        out.bytes += written;
        out.problems.extend(problems);
    }
    Ok(())
}

/// Streams one large file, its blocks checked in parallel batches (restore_into.rs).
#[allow(clippy::too_many_arguments)]
pub(super) fn large(
    root: BorrowedFd<'_>,
    root_path: &Path,
    index: usize,
    f: &TreeFile,
    blocks: &mut Blocks<'_>,
    opts: MetaOptions,
    state: &mut Progress,
    progress: ProgressHook<'_>,
    problems: &mut Vec<Problem>,
) -> Result<u64> {
    let dfd = open_dir(root, root_path, split_parent(&f.path).0)?;
    let opts = MetaOptions {
        fresh: !inherits_acl(dfd.as_fd()),
        ..opts
    };
    let dest = &f.file.dest;
    let mut out = BufWriter::with_capacity(1 << 20, File::from(create(dfd.as_fd(), f)?));
    let mut written = 0u64;
    let mut zeros = Vec::new();
    blocks.each_block(&f.file, state, &mut *progress, &mut |_, len, b| {
        let b = match b {
            Some(b) => b,
            None => {
                zeros.resize(usize::try_from(len).unwrap_or(0), 0);
                &zeros[..]
            }
        };
        written += b.len() as u64;
        out.write_all(b).map_err(|e| Error::io(dest, e))
    })?;
    let file = out.into_inner().map_err(|e| Error::io(dest, e.into_error()))?;
    let raw = file.as_raw_fd();
    apply(raw, &Target::Fd(raw), dest, index, &f.meta, opts, problems)?;
    Ok(written)
}

fn check_whole(f: &RestoreFile, written: u64, digest: &[u8]) -> Result<()> {
    if written != f.size || digest != f.digest {
        return Err(Error::Invalid(format!(
            "restored file {:?} does not match its manifest: {} bytes with digest {}, expected {} bytes with digest {}",
            f.rel,
            written,
            to_hex(digest),
            f.size,
            to_hex(&f.digest)
        )));
    }
    Ok(())
}

/// Creates `f` in `dir`: it must not exist and must not be a link, not even a dangling
/// one (`O_EXCL` refuses anything in the way, `O_NOFOLLOW` any link).
fn create(dir: BorrowedFd<'_>, f: &TreeFile) -> Result<OwnedFd> {
    let name = split_parent(&f.path).1;
    let c = cstr(name, &f.file.dest)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // Created with its own permission bits, as tar does: under the usual umask the mode is
    // then already right and `apply` skips an fchmod per file (setuid/setgid/sticky and
    // bits the umask took still get theirs, after the chown). The file is this process's
    // until then, and holds nothing the source did not show with these bits.
    let mode = libc::mode_t::try_from(f.meta.mode & 0o777).unwrap_or(0o600);
    openat(dir, &c, flags, mode).map_err(|e| {
        // SAFETY: an all-zero stat is valid to be overwritten; `c` is NUL-terminated.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `dir` is open for the call.
        let rc = unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if rc == 0 && st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            let why = io::Error::new(
                e.kind(),
                "a symbolic link is in the way of a restored file (restore never writes through a link)",
            );
            Error::io(&f.file.dest, why)
        } else {
            Error::io(&f.file.dest, e)
        }
    })
}

/// A message's form of a relative path that may hold undecodable bytes.
pub fn label(path: &Path) -> String {
    String::from_utf8_lossy(path.as_os_str().as_bytes()).into_owned()
}
