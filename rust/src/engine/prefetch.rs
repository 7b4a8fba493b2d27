//! Small files read ahead on the pool while the backup pass writes the ones before them.
//!
//! A tree of many small files is mostly system calls (open, fstat, read, close, the hole
//! probe), each a few microseconds, one file after the other on the pass's thread. This
//! module opens and reads the next files in batches on the pool (restic reads with two
//! workers in parallel for the same reason) and hands each one to the pass, in job order,
//! as the bytes read and the `fstat`s before and after: the pass then does exactly what it
//! did after its own read (the same live-file rules: at most the size at open, `changed`
//! when the read ended early or size/mtime moved). A file the read-ahead does not take (larger
//! than `MAX_FILE`, not a regular file when opened, or with holes to find) is read by the
//! pass as before; an error opening or reading one is handed over and raised when the pass
//! reaches that file, so earlier files are finished exactly as before.
//!
//! Memory is bounded: at most `DEPTH + 2` batches of `BATCH` files of at most `MAX_FILE`
//! bytes exist at once (16 MiB).

use std::collections::VecDeque;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::scan::parallel::in_pool;

/// Files larger than this at open are read by the pass itself, in chunks.
pub(crate) const MAX_FILE: u64 = 128 << 10;
/// Files per batch handed to the pool: large enough that a hand-off costs little per
/// file, small enough that the pass starts on the first batch soon.
const BATCH: usize = 32;
/// Batches read ahead of the one the pass is on.
const DEPTH: usize = 2;

/// One file as the read-ahead found it.
pub(crate) struct Ready {
    /// `fstat` right after opening.
    pub at_open: Metadata,
    /// What was read: at most the size at open, less when the file ended early.
    pub data: Vec<u8>,
    /// `fstat` after the read.
    pub after: Metadata,
}

/// What the pass gets for a file it asks about.
pub(crate) enum Fetched {
    /// Read: its bytes and `fstat`s (boxed: an `fstat` pair is most of a batch's slots).
    Ready(Box<Ready>),
    /// Opening or reading it failed; the pass fails on it as on its own read.
    Failed(io::Error),
}

enum Outcome {
    Got(Fetched),
    /// Not taken: the pass reads this file itself.
    Pass,
}

/// The read-ahead of one backup pass; dropping it stops the reading thread and waits for it.
pub(crate) struct Prefetcher {
    queue: VecDeque<(usize, Outcome)>,
    rx: Option<Receiver<Vec<(usize, Outcome)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Prefetcher {
    /// Starts reading `files` (job index and path, in increasing index order) ahead.
    /// `holes`: whether the pass looks for holes (file trees); a file that has any is
    /// left to the pass, which stores them as hole runs.
    pub(crate) fn start(files: Vec<(usize, PathBuf)>, holes: bool) -> Prefetcher {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel::<Vec<(usize, Outcome)>>(DEPTH);
        let flag = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("rustybackup-readahead".into())
            .spawn(move || {
                for batch in files.chunks(BATCH) {
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    let got: Vec<(usize, Outcome)> =
                        in_pool(|| batch.par_iter().map(|(i, p)| (*i, fetch(p, holes))).collect());
                    if tx.send(got).is_err() {
                        return; // the pass ended
                    }
                }
            });
        // Without a thread (none can be spawned) every file is read by the pass.
        let (rx, thread) = match spawned {
            Ok(t) => (Some(rx), Some(t)),
            Err(_) => (None, None),
        };
        Prefetcher {
            queue: VecDeque::new(),
            rx,
            stop,
            thread,
        }
    }

    /// What the read-ahead has for job `index`; None when the pass reads it itself. Call
    /// with increasing indices; a job never asked about (taken over unread) is skipped.
    pub(crate) fn take(&mut self, index: usize) -> Option<Fetched> {
        loop {
            while let Some((i, _)) = self.queue.front() {
                if *i >= index {
                    break;
                }
                self.queue.pop_front();
            }
            match self.queue.front() {
                Some((i, _)) if *i > index => return None,
                Some(_) => {
                    return match self.queue.pop_front() {
                        Some((_, Outcome::Got(f))) => Some(f),
                        _ => None,
                    }
                }
                None => {}
            }
            // The queue is empty: the next batch, or the end of the list.
            match self.rx.as_ref().map(Receiver::recv) {
                Some(Ok(batch)) => self.queue.extend(batch),
                _ => return None,
            }
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver fails the thread's next send; it ends after its batch.
        self.rx = None;
        if let Some(t) = self.thread.take() {
            // A panic in a read there already surfaced as a missing batch (read by the pass).
            let _ = t.join();
        }
    }
}

/// Opens and reads one file, as the pass would, if it is small, regular and has no holes.
fn fetch(path: &PathBuf, holes: bool) -> Outcome {
    // O_NONBLOCK: a file replaced by a FIFO since the walk must not block a pool thread;
    // it is not a regular file and goes back to the pass. Reads of regular files ignore it.
    let src = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => return Outcome::Got(Fetched::Failed(e)),
    };
    let at_open = match src.metadata() {
        Ok(m) => m,
        Err(e) => return Outcome::Got(Fetched::Failed(e)),
    };
    let size = at_open.len();
    if !at_open.is_file() || size > MAX_FILE {
        return Outcome::Pass;
    }
    if holes && size > 0 {
        // One probe instead of the pass's full hole search: a file whose first hole is its
        // end has none. Reads below use pread, so the moved offset does not matter.
        match first_hole(&src) {
            Ok(Some(h)) if h >= size => {}
            // A hole inside, or a file system that cannot say: the pass decides.
            _ => return Outcome::Pass,
        }
    }
    let mut data = vec![0u8; usize::try_from(size).unwrap_or(0)];
    let n = match fill_at(&src, &mut data) {
        Ok(n) => n,
        Err(e) => return Outcome::Got(Fetched::Failed(e)),
    };
    data.truncate(n);
    match src.metadata() {
        Ok(after) => Outcome::Got(Fetched::Ready(Box::new(Ready { at_open, data, after }))),
        Err(e) => Outcome::Got(Fetched::Failed(e)),
    }
}

/// `lseek(SEEK_HOLE)` from 0: where the file's first hole starts (its size when none).
fn first_hole(file: &File) -> io::Result<Option<u64>> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: lseek only reads its integer arguments; the descriptor is owned by `file`,
    // open for the whole call.
    let r = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(r).ok())
}

/// Reads from offset 0 until `buf` is full or the file ends (a live file may end early).
fn fill_at(src: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
