//! A file written, and checksummed, on a thread of its own.
//!
//! A full backup used to stall the reader for every chunk while the same thread copied
//! the chunk into the page cache and fed the piece checksum; on 2 cores half the
//! machine sat idle during that time. Here the caller only appends into a batch buffer;
//! full batches go to a writer thread that writes, hashes and starts the disk writeback
//! of what it wrote (`sync_file_range`), so the final fsync has little left to flush,
//! and drops what has reached the disk from the page cache, so a backup's page cache
//! footprint stays at a few steps whatever the piece's size.
//! Memory stays flat: a bounded queue holds at most `QUEUED` batches, and their buffers
//! come back to the caller for reuse.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use super::error::{Error, Result};
use super::fast::FastTree;
use crate::io_hints;
use crate::scan::algorithm::Hasher;

/// Bytes per batch handed to the writer thread (large enough that the hash runs its
/// widest SIMD path and a write syscall moves megabytes).
const BATCH: usize = 4 << 20;
/// Batches in flight between the caller and the writer.
const QUEUED: usize = 2;
/// Start the disk writeback every this many bytes.
const WRITEBACK_STEP: u64 = 32 << 20;

/// The file, the hasher and the XXH3-128 tree (`fast::FastTree`) of every byte written.
type Outcome = io::Result<(File, Hasher, [u8; 16])>;

/// Appends bytes to `file` through a writer thread that also feeds `hasher` with them.
pub struct BackgroundWriter {
    path: PathBuf,
    batch: Vec<u8>,
    queue: Option<SyncSender<Vec<u8>>>,
    returned: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<Outcome>>,
    /// Another descriptor of the file, for `sync` (the thread owns the writing one).
    sync_handle: File,
    /// Batches handed to the thread, and batches it gave back (written): `sync` waits
    /// until they are equal.
    sent: u64,
    back: u64,
}

impl BackgroundWriter {
    /// Starts the writer thread for `file` (named `path` in errors), positioned where the
    /// next byte goes.
    pub fn new(path: &Path, file: File, hasher: Hasher) -> Result<Self> {
        Self::resumed(path, file, hasher, FastTree::new(), 0)
    }

    /// `new` for a file that already holds `start` bytes, which `hasher` and `tree`
    /// have seen (a resumed piece, `engine::resume`).
    pub fn resumed(path: &Path, file: File, hasher: Hasher, tree: FastTree, start: u64) -> Result<Self> {
        let sync_handle = file.try_clone().map_err(|e| Error::io(path, e))?;
        let (queue, batches) = mpsc::sync_channel::<Vec<u8>>(QUEUED);
        let (give_back, returned) = mpsc::channel::<Vec<u8>>();
        let worker = thread::Builder::new()
            .name("rustybackup-writer".into())
            .spawn(move || write_all(file, hasher, tree, start, &batches, &give_back))
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            batch: Vec::with_capacity(BATCH),
            queue: Some(queue),
            returned,
            worker: Some(worker),
            sync_handle,
            sent: 0,
            back: 0,
        })
    }

    /// Waits until the thread has written everything handed to it so far, then
    /// fdatasyncs the file: every byte written before the call is durable after it.
    pub fn sync(&mut self) -> Result<()> {
        if !self.batch.is_empty() {
            self.send()?;
        }
        while self.back < self.sent {
            match self.returned.recv() {
                Ok(_) => self.back += 1,
                // The thread stopped early: it failed, and `join` says how.
                Err(_) => {
                    self.queue = None;
                    return self.join().map(|_| ());
                }
            }
        }
        self.sync_handle.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// Appends `data`; hands a full batch to the writer thread.
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let room = BATCH - self.batch.len();
            let take = room.min(data.len());
            self.batch.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.batch.len() == BATCH {
                self.send()?;
            }
        }
        Ok(())
    }

    /// Writes what is left, stops the thread and returns the file, the hasher that has
    /// seen every byte written through this writer, and the XXH3-128 tree of those bytes.
    pub fn finish(mut self) -> Result<(File, Hasher, [u8; 16])> {
        if !self.batch.is_empty() {
            self.send()?;
        }
        self.queue = None;
        self.join()
    }

    fn send(&mut self) -> Result<()> {
        let next = match self.returned.try_recv() {
            Ok(b) => {
                self.back += 1;
                b
            }
            Err(_) => Vec::with_capacity(BATCH),
        };
        let full = std::mem::replace(&mut self.batch, next);
        self.batch.clear();
        let sent = self.queue.as_ref().map(|q| q.send(full));
        match sent {
            Some(Ok(())) => {
                self.sent += 1;
                Ok(())
            }
            // The thread stopped: it failed, and `join` says how.
            _ => {
                self.queue = None;
                self.join().map(|_| ())
            }
        }
    }

    fn join(&mut self) -> Result<(File, Hasher, [u8; 16])> {
        let worker = self
            .worker
            .take()
            .ok_or_else(|| Error::io(&self.path, io::Error::other("the writer thread already stopped")))?;
        match worker.join() {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(Error::io(&self.path, e)),
            Err(_) => Err(Error::io(&self.path, io::Error::other("the writer thread panicked"))),
        }
    }
}

impl Drop for BackgroundWriter {
    /// An abandoned writer (an error elsewhere) still stops its thread before the caller
    /// goes on to delete the file.
    fn drop(&mut self) {
        self.queue = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn write_all(
    mut file: File,
    mut hasher: Hasher,
    mut fast: FastTree,
    start: u64,
    batches: &Receiver<Vec<u8>>,
    give_back: &mpsc::Sender<Vec<u8>>,
) -> Outcome {
    let mut written = start;
    let mut flushed = start;
    let mut dropped = start;
    for batch in batches {
        file.write_all(&batch)?;
        hasher.update(&batch);
        fast.update(&batch);
        written += batch.len() as u64;
        if written - flushed >= WRITEBACK_STEP {
            io_hints::start_writeback(&file, flushed, written - flushed);
            // What was started one step ago has had that long to reach the disk: once it
            // has, its pages leave the page cache (borg's SyncFile does the same). The
            // backup does not read a piece again; keeping it cached evicted the database's
            // own pages, and the page cache grew by the piece's size into memory the
            // machine had not used lately, which cost this VM ~2 s of system time per GB
            // written (a scale-50 cluster's pass: 1.95-2.31 s cached, 0.62-0.90 s dropped;
            // benches/README.md "The page cache behind a piece").
            if flushed > dropped {
                io_hints::drop_written(&file, dropped, flushed - dropped);
                dropped = flushed;
            }
            flushed = written;
        }
        // The caller may be gone (it stops reading on error); the buffer is then dropped.
        let _ = give_back.send(batch);
    }
    Ok((file, hasher, fast.digest()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::algorithm::Algorithm;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rb-writeback-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn bytes_arrive_in_order_and_the_hasher_saw_them_all() {
        let path = temp("order");
        let mut w = BackgroundWriter::new(&path, File::create(&path).unwrap(), Algorithm::Sha256.hasher()).unwrap();
        let mut expected = Vec::new();
        // Odd sizes that straddle batch boundaries, several batches in flight.
        for i in 0..40u32 {
            let piece: Vec<u8> = (0..(i * 97_531 % 1_500_000)).map(|k| (k ^ i) as u8).collect();
            w.write(&piece).unwrap();
            expected.extend_from_slice(&piece);
        }
        let (file, hasher, fast) = w.finish().unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        assert_eq!(hasher.finalize(), Algorithm::Sha256.digest(&expected));
        let mut tree = FastTree::new();
        tree.update(&expected);
        assert_eq!(fast, tree.digest());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_write_error_names_the_file() {
        let path = temp("readonly");
        std::fs::write(&path, b"").unwrap();
        let read_only = File::open(&path).unwrap();
        let mut w = BackgroundWriter::new(&path, read_only, Algorithm::Blake3.hasher()).unwrap();
        let mut outcome = Ok(());
        for _ in 0..4 {
            outcome = outcome.and_then(|()| w.write(&vec![7u8; BATCH]));
        }
        let err = outcome.and_then(|()| w.finish().map(|_| ())).unwrap_err();
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn dropping_an_unfinished_writer_stops_its_thread() {
        let path = temp("drop");
        let mut w = BackgroundWriter::new(&path, File::create(&path).unwrap(), Algorithm::Md5.hasher()).unwrap();
        w.write(&vec![1u8; 3 * BATCH + 5]).unwrap();
        drop(w);
        // Everything handed to the thread was written before the drop returned.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * BATCH as u64);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn what_reached_the_disk_leaves_the_page_cache() {
        let path = temp("cache");
        let file = File::create(&path).unwrap();
        if crate::test_util::on_tmpfs(&file) {
            // There the page cache is the storage: nothing can leave it.
            std::fs::remove_file(&path).unwrap();
            return;
        }
        let mut w = BackgroundWriter::new(&path, file, Algorithm::Blake3.hasher()).unwrap();
        let total = 6 * WRITEBACK_STEP as usize;
        for _ in 0..total / BATCH {
            w.write(&vec![3u8; BATCH]).unwrap();
        }
        drop(w.finish().unwrap());
        let file = File::open(&path).unwrap();
        // At most the last two steps (one started, one being filled) and the queued
        // batches stay cached, whatever the file's size.
        let cached = crate::test_util::resident_pages(&file, total);
        assert!(
            cached <= 2 * WRITEBACK_STEP as usize + (QUEUED + 1) * BATCH,
            "{cached} of {total} bytes still cached"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
