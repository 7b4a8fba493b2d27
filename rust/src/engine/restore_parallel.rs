//! The large files of a tree restore written two at a time (a PostgreSQL data directory:
//! a few dozen 1 GiB relation segments). One large file streamed alone keeps one core on
//! its serial part, the whole-file digest and the write, while the other waits between
//! batches of block checks; pgBackRest (process-max=2) copies two files at once, so does
//! this: each lane streams its files exactly as `restore_tree::large` does (every block
//! checked against its digest before it is written, every file against its size and
//! whole digest), with its own block-map reader, since a reader's cursors only move
//! forward.
//!
//! The progress hook is the caller's (Python's) and is only called on the calling
//! thread, which waits for the lanes and reports their summed bytes between waits; a
//! `Break` from it, or an error in one lane, stops the other lane at its next batch.

use std::ops::ControlFlow;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::error::{Error, Result};
use super::progress::{Progress, ProgressHook};
use super::restore_into::Blocks;
use super::restore_tree::{large, TreeFile};
use super::tree_meta::{MetaOptions, Problem};

/// Files written at once: the 2-core machine this is tuned on; block checks inside a
/// lane still spread over the pool.
const LANES: usize = 2;
/// How often the calling thread reports progress while the lanes run.
const TICK: Duration = Duration::from_millis(50);

/// What one lane hands back: bytes written and metadata the system refused.
type LaneOut = Result<(u64, Vec<Problem>)>;

/// Writes the large files `files[i]` for `i` in `indices` (each in its directory below
/// `root`), two at a time; returns the bytes written. `blocks` is the restore's open map,
/// used when only one file is left to write.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_large(
    root: BorrowedFd<'_>,
    root_path: &Path,
    files: &[TreeFile],
    indices: &[usize],
    blocks: &mut Blocks<'_>,
    map_path: &Path,
    sources: &[PathBuf],
    keys: &[Option<crate::crypto::BlockKey>],
    opts: MetaOptions,
    state: &mut Progress,
    progress: ProgressHook<'_>,
    problems: &mut Vec<Problem>,
) -> Result<u64> {
    if indices.len() < 2 {
        let mut written = 0;
        for &i in indices {
            written += large(
                root,
                root_path,
                i,
                &files[i],
                blocks,
                opts,
                state,
                &mut *progress,
                problems,
            )?;
        }
        return Ok(written);
    }
    let lanes = split(files, indices);
    let done_bytes = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let base = *state;
    let (tx, rx) = mpsc::channel::<()>();
    let mut results: Vec<LaneOut> = Vec::new();
    let mut cancelled = false;
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        let mut inline: Vec<&[usize]> = Vec::new();
        for lane in &lanes {
            let tx = tx.clone();
            let (done_bytes, stop) = (&done_bytes, &stop);
            let run = move || {
                let out = lane_write(
                    root, root_path, files, lane, map_path, sources, keys, opts, done_bytes, stop,
                );
                if out.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                // The receiver outlives the scope; a failed send only means it stopped waiting.
                let _ = tx.send(());
                out
            };
            match std::thread::Builder::new()
                .name("rb-restore-lane".into())
                .spawn_scoped(s, run)
            {
                Ok(h) => handles.push(h),
                // No thread to be had: this lane's files are written here after the others.
                Err(_) => inline.push(lane),
            }
        }
        drop(tx);
        let mut finished = 0;
        while finished < handles.len() {
            match rx.recv_timeout(TICK) {
                Ok(()) => finished += 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = Progress {
                bytes_read: base.bytes_read + done_bytes.load(Ordering::Relaxed),
                ..base
            };
            if !cancelled && progress(now).is_break() {
                cancelled = true;
                stop.store(true, Ordering::Relaxed);
            }
        }
        for h in handles {
            results.push(
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invalid("a restore lane panicked".into()))),
            );
        }
        for lane in inline {
            if cancelled || stop.load(Ordering::Relaxed) {
                break;
            }
            results.push(lane_write(
                root,
                root_path,
                files,
                lane,
                map_path,
                sources,
                keys,
                opts,
                &done_bytes,
                &stop,
            ));
        }
    });
    state.bytes_read = base.bytes_read + done_bytes.load(Ordering::Relaxed);
    if cancelled {
        return Err(Error::Cancelled);
    }
    let mut written = 0;
    let mut first_err = None;
    for r in results {
        match r {
            Ok((w, p)) => {
                written += w;
                problems.extend(p);
            }
            // The other lane's Cancelled only follows this lane's real error.
            Err(Error::Cancelled) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

/// Splits `indices` into lanes of about equal bytes (largest first to the lighter lane),
/// each then in block-map order, as its reader's cursors need.
fn split(files: &[TreeFile], indices: &[usize]) -> Vec<Vec<usize>> {
    let mut by_size = indices.to_vec();
    by_size.sort_by_key(|&i| std::cmp::Reverse(files[i].file.size));
    let mut lanes: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); LANES.min(indices.len())];
    for i in by_size {
        if let Some(lane) = lanes.iter_mut().min_by_key(|l| l.0) {
            lane.0 += files[i].file.size;
            lane.1.push(i);
        }
    }
    lanes
        .into_iter()
        .map(|(_, mut l)| {
            l.sort_by_key(|&i| files[i].file.first_block);
            l
        })
        .collect()
}

/// One lane: its own block map reader (checked again: a cheap read beside the data),
/// its files streamed in order; progress goes into `done_bytes`, `stop` ends it.
#[allow(clippy::too_many_arguments)]
fn lane_write(
    root: BorrowedFd<'_>,
    root_path: &Path,
    files: &[TreeFile],
    lane: &[usize],
    map_path: &Path,
    sources: &[PathBuf],
    keys: &[Option<crate::crypto::BlockKey>],
    opts: MetaOptions,
    done_bytes: &AtomicU64,
    stop: &AtomicBool,
) -> LaneOut {
    let mut blocks = Blocks::open(map_path, sources, keys)?;
    let mut problems = Vec::new();
    let mut written = 0u64;
    for &i in lane {
        let mut state = Progress::default();
        let mut seen = 0u64;
        let mut hook = |p: Progress| {
            done_bytes.fetch_add(p.bytes_read - seen, Ordering::Relaxed);
            seen = p.bytes_read;
            if stop.load(Ordering::Relaxed) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        written += large(
            root,
            root_path,
            i,
            &files[i],
            &mut blocks,
            opts,
            &mut state,
            &mut hook,
            &mut problems,
        )?;
    }
    Ok((written, problems))
}
