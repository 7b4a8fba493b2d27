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
use object_store::path::Path as StorePath;
use object_store::{GetOptions, ObjectStoreExt, PutPayload};
use tokio::time::Instant;

use super::error::{Result, StorageError};
use super::{runtime, Backend, ObjectInfo, Storage};

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

/// Reads up to `len` bytes at `offset` (pread: no shared cursor).
///
/// Synchronously, on purpose: every storage future runs inside `runtime::block_on` on the
/// caller's own thread, never on a runtime worker, so blocking here stalls no connection.
/// Reading on `spawn_blocking` threads instead spread the part buffers over many threads'
/// malloc arenas, and peak memory grew with the file's length (1.25x from 64 MiB to 1 GiB).
pub(crate) fn read_part(file: &File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path)(e)),
        }
    }
    buf.truncate(got);
    Ok(buf)
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
        let part = self.transfer.part_size;
        let sent = if size <= part as u64 {
            // One request: `size` is at most one part, so this allocation is bounded.
            let data = read_part(&file, path, 0, part + 1)?;
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
                    let data = read_part(&file, path, offset, part)?;
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
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.download-{}", std::process::id()));
        let big = match (&self.backend, self.head_async(key).await?) {
            (Backend::S3 { .. }, Some(m)) if m.size > self.transfer.part_size as u64 => Some(m),
            (_, None) => return Err(StorageError::NotFound { key: key.to_string() }),
            _ => None,
        };
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let (expected, result) = match big {
            // Large objects: part-sized ranges, parts_in_flight at once, each written at its
            // offset; one HTTP stream would leave the link idle while the disk writes.
            Some(meta) => (meta.size, self.ranged_into(&loc, key, &meta, file, &tmp).await),
            None => {
                let got = self.store.get(&loc).await.map_err(|e| self.err(e, "get", key));
                match got {
                    Ok(got) => (got.meta.size, self.stream_into(got, file, &tmp, key).await),
                    Err(e) => (0, Err(e)),
                }
            }
        };
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

    /// Fetches `meta`'s object as ranges of one part, `parts_in_flight` at once, each
    /// written at its offset (pwrite); every range carries `If-Match` with the ETag seen by
    /// HEAD, so an object replaced mid-download fails instead of mixing two versions.
    async fn ranged_into(&self, loc: &StorePath, key: &str, meta: &ObjectInfo, file: File, tmp: &Path) -> Result<u64> {
        let part = self.transfer.part_size as u64;
        let size = meta.size;
        let file = Arc::new(file);
        let ranges = (0..size.div_ceil(part)).map(|i| i * part..((i + 1) * part).min(size));
        let sizes: Vec<u64> = futures::stream::iter(ranges)
            .map(|r| {
                let file = Arc::clone(&file);
                let opts = GetOptions::new()
                    .with_range(Some(r.clone()))
                    .with_if_match(meta.e_tag.clone());
                async move {
                    let got = self.store.get_opts(loc, opts).await.map_err(|e| self.get_err(e, key))?;
                    // Each chunk is written where it belongs as it arrives (on the caller's
                    // thread, like read_part), so no range is ever held whole in memory.
                    let mut body = got.into_stream();
                    let mut pos = r.start;
                    while let Some(chunk) = body.try_next().await.map_err(|e| self.get_err(e, key))? {
                        if pos + chunk.len() as u64 > r.end {
                            break;
                        }
                        file.write_all_at(&chunk, pos).map_err(io_err(tmp))?;
                        pos += chunk.len() as u64;
                    }
                    if pos != r.end {
                        return Err(StorageError::SizeMismatch {
                            key: key.to_string(),
                            expected: r.end - r.start,
                            found: pos - r.start,
                        });
                    }
                    Ok(r.end - r.start)
                }
            })
            .buffer_unordered(self.transfer.parts_in_flight)
            .try_collect()
            .await?;
        file.sync_all().map_err(io_err(tmp))?;
        Ok(sizes.iter().sum())
    }

    /// A read error; a failed If-Match means the object changed between HEAD and a range.
    pub(crate) fn get_err(&self, e: object_store::Error, key: &str) -> StorageError {
        match self.err(e, "get", key) {
            StorageError::AlreadyExists { .. } => StorageError::Store {
                op: "get",
                key: key.to_string(),
                detail: "the object was replaced while being downloaded".into(),
            },
            other => other,
        }
    }

    /// Writes the body as it arrives through a 1 MiB buffer, on the caller's thread (see
    /// read_part).
    async fn stream_into(&self, got: object_store::GetResult, file: File, tmp: &Path, key: &str) -> Result<u64> {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut stream = got.into_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.try_next().await.map_err(|e| self.err(e, "get", key))? {
            out.write_all(&chunk).map_err(io_err(tmp))?;
            written += chunk.len() as u64;
        }
        let file = out.into_inner().map_err(|e| io_err(tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(tmp))?;
        Ok(written)
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
