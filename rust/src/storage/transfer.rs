//! Moving files: a streamed multipart upload with bounded memory, a streamed download, and
//! the upload bandwidth limit.
//!
//! Memory of one upload is at most `parts_in_flight + 1` parts (the ones on the wire and the
//! one being read); a 1 GiB file and a 64 MiB file use the same (tests/test_storage_memory.py).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use tokio::time::Instant;

use super::error::{Result, StorageError};
use super::{runtime, Storage};

/// A shared pacing clock: each send reserves its bytes' share of time at the configured
/// rate, and waits for its slot. Over any window the average stays at or under the rate,
/// give or take one part.
#[derive(Debug, Default)]
pub struct Limiter {
    rate: AtomicU64,
    next: Mutex<Option<Instant>>,
}

impl Limiter {
    /// Sets the rate in bytes per second; 0 removes the limit.
    pub fn set_rate(&self, bytes_per_second: u64) {
        self.rate.store(bytes_per_second, Ordering::Relaxed);
        if bytes_per_second == 0 {
            *self.next.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// The rate in bytes per second (0: none).
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Waits until `n` more bytes may be sent.
    pub async fn acquire(&self, n: u64) {
        let rate = self.rate();
        if rate == 0 || n == 0 {
            return;
        }
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = next.map_or(now, |t| t.max(now));
            *next = Some(start + Duration::from_secs_f64(n as f64 / rate as f64));
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads up to `len` bytes at `offset` on a blocking thread (pread: no shared cursor).
async fn read_part(file: Arc<File>, path: PathBuf, offset: u64, len: usize) -> Result<Vec<u8>> {
    let joined = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        buf.truncate(got);
        Ok(buf)
    })
    .await;
    joined.map_err(|e| StorageError::Runtime(e.to_string()))?
}

impl Storage {
    /// Uploads the file at `path` to `key` and returns its size. Files up to one part go in
    /// one PUT; larger ones as a multipart upload with `parts_in_flight` parts on the wire.
    /// A failure aborts the multipart upload, so no object appears. The stored size is
    /// checked afterwards (a mismatch deletes the object and fails).
    pub fn put_file(&self, key: &str, path: &Path) -> Result<u64> {
        runtime::block_on(self.put_file_async(key, path))?
    }

    /// Uploads several files (`(key, path)`) with `files_in_flight` at once; sizes in order.
    pub fn put_files(&self, files: &[(String, PathBuf)]) -> Result<Vec<u64>> {
        runtime::block_on(self.put_files_async(files))?
    }

    pub(crate) async fn put_files_async(&self, files: &[(String, PathBuf)]) -> Result<Vec<u64>> {
        let sizes: Vec<(usize, u64)> = futures::stream::iter(files.iter().enumerate())
            .map(|(i, (key, path))| async move { self.put_file_async(key, path).await.map(|n| (i, n)) })
            .buffer_unordered(self.transfer.files_in_flight)
            .try_collect()
            .await?;
        let mut out = vec![0u64; files.len()];
        for (i, n) in sizes {
            out[i] = n;
        }
        Ok(out)
    }

    pub(crate) async fn put_file_async(&self, key: &str, path: &Path) -> Result<u64> {
        let loc = self.path(key)?;
        let file = File::open(path).map_err(io_err(path))?;
        let size = file.metadata().map_err(io_err(path))?.len();
        let file = Arc::new(file);
        let part = self.transfer.part_size;
        let sent = if size <= part as u64 {
            // One request: `size` is at most one part, so this allocation is bounded.
            let data = read_part(file, path.to_path_buf(), 0, part + 1).await?;
            if data.len() as u64 != size {
                return Err(changed(path, size, data.len() as u64));
            }
            let n = data.len() as u64;
            self.limiter.acquire(n).await;
            self.store
                .put(&loc, PutPayload::from(data))
                .await
                .map_err(|e| self.err(e, "put", key))?;
            n
        } else {
            let mut upload = self
                .store
                .put_multipart(&loc)
                .await
                .map_err(|e| self.err(e, "put_multipart", key))?;
            let result = async {
                let mut in_flight: FuturesUnordered<object_store::UploadPart> = FuturesUnordered::new();
                let mut offset = 0u64;
                loop {
                    let data = read_part(Arc::clone(&file), path.to_path_buf(), offset, part).await?;
                    if data.is_empty() {
                        break;
                    }
                    offset += data.len() as u64;
                    while in_flight.len() >= self.transfer.parts_in_flight {
                        if let Some(r) = in_flight.next().await {
                            r.map_err(|e| self.err(e, "upload_part", key))?;
                        }
                    }
                    self.limiter.acquire(data.len() as u64).await;
                    in_flight.push(upload.put_part(PutPayload::from(data)));
                }
                while let Some(r) = in_flight.next().await {
                    r.map_err(|e| self.err(e, "upload_part", key))?;
                }
                if offset != size {
                    return Err(changed(path, size, offset));
                }
                Ok(offset)
            }
            .await;
            match result {
                Ok(n) => {
                    if let Err(e) = upload.complete().await {
                        let _ = upload.abort().await;
                        return Err(self.err(e, "complete_multipart", key));
                    }
                    n
                }
                Err(e) => {
                    // Best effort: if the server is gone, `sweep_uploads` removes it later.
                    let _ = upload.abort().await;
                    return Err(e);
                }
            }
        };
        self.check_size(key, sent).await?;
        Ok(sent)
    }

    /// The end-to-end size check after an upload: the store must hold what we sent.
    async fn check_size(&self, key: &str, sent: u64) -> Result<()> {
        match self.head_async(key).await? {
            Some(m) if m.size == sent => Ok(()),
            Some(m) => {
                let _ = self.delete_async(key).await;
                Err(StorageError::SizeMismatch {
                    key: key.to_string(),
                    expected: sent,
                    found: m.size,
                })
            }
            None => Err(StorageError::NotFound { key: key.to_string() }),
        }
    }

    /// Streams the object at `key` into a new file at `path` (written beside it under a
    /// temporary name, synced, then renamed, so `path` never holds a partial object) and
    /// returns its size.
    pub fn get_to_file(&self, key: &str, path: &Path) -> Result<u64> {
        runtime::block_on(self.get_to_file_async(key, path))?
    }

    pub(crate) async fn get_to_file_async(&self, key: &str, path: &Path) -> Result<u64> {
        let loc = self.path(key)?;
        let got = self.store.get(&loc).await.map_err(|e| self.err(e, "get", key))?;
        let expected = got.meta.size;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.download-{}", std::process::id()));
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let result = self.stream_into(got, file, &tmp, key).await;
        let written = match result {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if written != expected {
            let _ = std::fs::remove_file(&tmp);
            return Err(StorageError::SizeMismatch {
                key: key.to_string(),
                expected,
                found: written,
            });
        }
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        Ok(written)
    }

    /// Writes the body in batches of about one part on a blocking thread, so the runtime's
    /// workers never wait on the disk.
    async fn stream_into(&self, got: object_store::GetResult, file: File, tmp: &Path, key: &str) -> Result<u64> {
        let batch = self.transfer.part_size;
        let mut stream = got.into_stream();
        let mut file = Some(file);
        let mut buf: Vec<u8> = Vec::with_capacity(batch);
        let mut written = 0u64;
        loop {
            let chunk = stream.try_next().await.map_err(|e| self.err(e, "get", key))?;
            let done = chunk.is_none();
            if let Some(c) = chunk {
                buf.extend_from_slice(&c);
            }
            if buf.len() >= batch || done {
                let out = std::mem::replace(&mut buf, Vec::with_capacity(if done { 0 } else { batch }));
                let f = file
                    .take()
                    .ok_or_else(|| StorageError::Runtime("file handle lost".into()))?;
                let path = tmp.to_path_buf();
                let (f, r) = tokio::task::spawn_blocking(move || {
                    let mut f = f;
                    let mut r = f.write_all(&out).map(|()| out.len());
                    if done && r.is_ok() {
                        r = f.sync_all().map(|()| out.len());
                    }
                    (f, r)
                })
                .await
                .map_err(|e| StorageError::Runtime(e.to_string()))?;
                written += r.map_err(io_err(&path))? as u64;
                file = Some(f);
            }
            if done {
                return Ok(written);
            }
        }
    }
}

fn changed(path: &Path, was: u64, now: u64) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!(
            "file changed size while being uploaded (was {was} bytes at open, read {now})"
        )),
    }
}
