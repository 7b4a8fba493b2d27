//! Uploading a piece while the backup is still writing it. A remote backup stages its set
//! in the cache and commits it afterwards; uploading only then puts the whole transfer
//! after the whole production. The tail upload follows the staged piece as it grows
//! (the piece writer only appends: header, blocks, then index and trailer) and sends each
//! part once the file holds it, so the upload runs alongside the reading, hashing and
//! compressing, and at the commit only the last part is left.
//!
//! It never decides what becomes visible: the commit protocol is unchanged (the manifest
//! goes last, after every object). What it sent is checked before the commit relies on
//! it: the bytes before the trailer are hashed as they are sent and must give the
//! checksum the finished piece records, and the object must have the file's size. If
//! anything is off (an error, a mismatch, a file that shrank) the multipart upload is
//! aborted and the commit uploads the piece as before.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};

use super::error::{Result, StorageError};
use super::transfer::read_part;
use super::{runtime, Storage};
use crate::format::header::Kind;
use crate::format::{Header, PieceReader, HEADER_LEN};
use crate::scan::algorithm::Hasher;

/// How often the file is looked at while it has not grown by a part.
const POLL: Duration = Duration::from_millis(50);
/// `finished` while the writer is still writing.
const OPEN: u64 = u64::MAX;

/// A running tail upload; `finish` waits for it, dropping it aborts it.
pub struct TailUpload {
    finished: Arc<AtomicU64>,
    cancelled: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<bool>>>,
}

impl TailUpload {
    /// Starts following `path` (which may not exist yet) into the object at `key`.
    pub fn start(storage: Arc<Storage>, key: String, path: PathBuf) -> Self {
        let finished = Arc::new(AtomicU64::new(OPEN));
        let cancelled = Arc::new(AtomicBool::new(false));
        let (f, c) = (Arc::clone(&finished), Arc::clone(&cancelled));
        let worker = std::thread::Builder::new()
            .name("rustybackup-tail".into())
            .spawn(move || follow(&storage, &key, &path, &f, &c))
            .ok();
        Self {
            finished,
            cancelled,
            worker,
        }
    }

    /// The piece is written (`size` bytes, final): sends what is left, completes the
    /// upload and checks it. True when the object now holds exactly the file; false when
    /// the tail gave up (the caller uploads the file itself). Errors are the reason.
    pub fn finish(mut self, size: u64) -> Result<bool> {
        self.finished.store(size, Ordering::SeqCst);
        match self.worker.take() {
            Some(w) => w
                .join()
                .unwrap_or_else(|_| Err(StorageError::Runtime("tail upload thread panicked".into()))),
            None => Ok(false),
        }
    }
}

impl Drop for TailUpload {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn follow(
    storage: &Storage,
    key: &str,
    path: &std::path::Path,
    finished: &AtomicU64,
    cancelled: &AtomicBool,
) -> Result<bool> {
    let rt = runtime::runtime()?;
    rt.block_on(async {
        let mut upload: Option<Box<dyn MultipartUpload>> = None;
        let result = send_parts(storage, key, path, finished, cancelled, &mut upload).await;
        match (result, upload) {
            (Ok(Some(size)), Some(mut up)) => match up.complete().await {
                Ok(_) => match storage.head_async(key).await? {
                    Some(m) if m.size == size => Ok(true),
                    _ => {
                        let _ = storage.delete_async(key).await;
                        Ok(false)
                    }
                },
                Err(e) => {
                    let _ = up.abort().await;
                    Err(storage.err(e, "complete_multipart", key))
                }
            },
            (Ok(_), None) => Ok(false),
            (Ok(None), Some(mut up)) => {
                let _ = up.abort().await;
                Ok(false)
            }
            (Err(e), up) => {
                if let Some(mut up) = up {
                    // Best effort: `sweep_uploads` removes it later if the server is gone.
                    let _ = up.abort().await;
                }
                Err(e)
            }
        }
    })
}

/// Sends the file part by part as it grows; Some(size) once every byte of the finished
/// file went up and the hash of the bytes before the trailer is the piece's checksum,
/// None when the tail gives up (cancelled, a file smaller than one part: the commit's
/// single PUT is as good, a checksum that does not match).
async fn send_parts(
    storage: &Storage,
    key: &str,
    path: &std::path::Path,
    finished: &AtomicU64,
    cancelled: &AtomicBool,
    upload: &mut Option<Box<dyn MultipartUpload>>,
) -> Result<Option<u64>> {
    let loc = storage.path(key)?;
    let part = storage.transfer.part_size as u64;
    let mut file: Option<File> = None;
    // The piece's checksum covers the bytes before its trailer (fixed length per
    // version, from the header): the last `tlen` bytes sent are held back from the hash.
    let mut hasher: Option<(Hasher, usize)> = None;
    let mut held: Vec<u8> = Vec::new();
    let mut sent = 0u64;
    let mut in_flight: FuturesUnordered<object_store::UploadPart> = FuturesUnordered::new();
    loop {
        if cancelled.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let done = finished.load(Ordering::SeqCst);
        if file.is_none() {
            file = File::open(path).ok();
        }
        let Some(f) = file.as_ref() else {
            if done != OPEN {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
            continue;
        };
        let len = if done == OPEN {
            f.metadata().map(|m| m.len()).unwrap_or(0)
        } else {
            done
        };
        if done != OPEN && sent == 0 && len <= part {
            return Ok(None);
        }
        // While the writer is busy, whole parts only (S3's parts are at least 5 MiB but
        // the last); once it is done, the rest.
        let n = if len >= sent + part {
            part
        } else if done != OPEN && len > sent {
            len - sent
        } else if done != OPEN {
            break;
        } else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let path_ref = path;
        let data = read_part(f, path_ref, sent, n as usize)?;
        if data.len() as u64 != n {
            return Ok(None); // shorter than it said: not a file that only grows
        }
        if hasher.is_none() {
            let mut h = [0u8; HEADER_LEN as usize];
            let Some(head) = data.get(..HEADER_LEN as usize) else {
                return Ok(None);
            };
            h.copy_from_slice(head);
            match Header::decode(path, Kind::Piece, &h) {
                // At most 112 bytes (format::header): a bounded hold-back.
                Ok(header) => hasher = Some((header.algorithm.hasher(), header.trailer_len() as usize)),
                Err(_) => return Ok(None),
            }
        }
        if let Some((h, tlen)) = hasher.as_mut() {
            hold_back(h, &mut held, &data, *tlen);
        }
        if upload.is_none() {
            *upload = Some(
                storage
                    .store
                    .put_multipart(&loc)
                    .await
                    .map_err(|e| storage.err(e, "put_multipart", key))?,
            );
        }
        while in_flight.len() >= storage.transfer.parts_in_flight {
            if let Some(r) = in_flight.next().await {
                r.map_err(|e| storage.err(e, "upload_part", key))?;
            }
        }
        storage.limiter.acquire(n).await;
        if let Some(up) = upload.as_mut() {
            in_flight.push(up.put_part(PutPayload::from(data)));
        }
        sent += n;
    }
    while let Some(r) = in_flight.next().await {
        r.map_err(|e| storage.err(e, "upload_part", key))?;
    }
    // What was sent must be the finished piece: its size, its trailer, and the hash of
    // the bytes before the trailer (as they were sent) equal to the checksum it records.
    let (Some(f), Some((h, _))) = (file.as_ref(), hasher) else {
        return Ok(None);
    };
    let reader = match PieceReader::open(path) {
        Ok(r) if r.size() == sent && r.trailer_len() == held.len() as u64 => r,
        _ => return Ok(None),
    };
    let trailer = read_part(f, path, reader.trailer_offset(), held.len())?;
    Ok((trailer == held && h.finalize() == reader.recorded_checksum()).then_some(sent))
}

/// Feeds `data` to `h` except the last `keep` bytes of everything fed so far, which
/// stay in `held`.
fn hold_back(h: &mut Hasher, held: &mut Vec<u8>, data: &[u8], keep: usize) {
    if data.len() >= keep {
        h.update(held);
        let (body, tail) = data.split_at(data.len() - keep);
        h.update(body);
        held.clear();
        held.extend_from_slice(tail);
    } else {
        held.extend_from_slice(data);
        let excess = held.len().saturating_sub(keep);
        h.update(&held[..excess]);
        held.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::hold_back;
    use crate::scan::algorithm::Algorithm;

    /// Any split of a stream into chunks hashes, through `hold_back`, to the hash of the
    /// stream without its last `keep` bytes, and holds exactly those (the oracle: one
    /// hash of the prefix).
    #[test]
    fn hold_back_hashes_all_but_the_tail_whatever_the_chunks() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut seed = 7u64;
        for keep in [0usize, 1, 80, 112, 4999, 5000] {
            for _ in 0..20 {
                let mut h = Algorithm::Blake3.hasher();
                let mut held = Vec::new();
                let mut at = 0;
                while at < data.len() {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let n = ((seed >> 33) as usize % 300 + 1).min(data.len() - at);
                    hold_back(&mut h, &mut held, &data[at..at + n], keep);
                    at += n;
                }
                let cut = data.len() - keep;
                assert_eq!(held, &data[cut..]);
                assert_eq!(h.finalize(), Algorithm::Blake3.digest(&data[..cut]));
            }
        }
    }
}
