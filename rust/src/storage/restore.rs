//! Restoring files straight from pieces in a bucket: the block map (local, in the cache)
//! says which bytes of which piece each block is; those bytes are fetched as ranged GETs,
//! a few at once, and each block is checked and written as its range arrives. No piece is
//! downloaded whole to disk first, so a restore reads every byte from the network once
//! and writes it once, and memory is bounded by the ranges in flight, not the data.
//!
//! Four threads, joined by bounded channels:
//! - the planner reads the block map in restore order (files by first block, as
//!   `engine::restore` does) and groups consecutive records of one piece into spans of at
//!   most a part (a FULL's blocks are contiguous in its piece: one span per part);
//! - the fetcher GETs the spans, `parts_in_flight` at once, and hands them on in order;
//! - the caller decodes and checks the blocks of each span in parallel and hashes them
//!   into their file's digest;
//! - a writer writes them at their offsets in the files, overlapping the next span.
//!
//! A failure anywhere ends the pass with that error; dropping a channel's receiver stops
//! the stage feeding it, so nothing keeps running after an error or a cancel.

use std::ops::ControlFlow;
use std::path::PathBuf;

use futures::StreamExt;
use object_store::{GetOptions, ObjectStore};
use rayon::prelude::*;
use tokio::sync::mpsc;

use super::error::StorageError;
use super::{runtime, Storage};
use crate::engine::{self, Progress, ProgressHook, RestoreFile};
use crate::format::block::check_fields;
use crate::format::header::Kind;
use crate::format::{check_block_keyed, unseal_block, BlockMapReader, BlockRecord, Header, HEADER_LEN};
use crate::scan::algorithm::{to_hex, Algorithm};
use crate::scan::parallel::in_pool;

/// Two records of one piece further apart than this start a new span: the bytes between
/// them (blocks of files not restored) are not worth fetching.
const MAX_GAP: u64 = 256 << 10;
/// Records per span at most (a span of small compressed blocks stays a bounded batch).
const MAX_RECORDS: usize = 4096;

/// What can end a remote restore: the engine's errors (damage, the target) or the
/// storage layer's (the server, the credentials, a missing piece).
#[derive(Debug)]
pub enum RestoreError {
    Engine(engine::Error),
    Storage(StorageError),
}

impl From<engine::Error> for RestoreError {
    fn from(e: engine::Error) -> Self {
        Self::Engine(e)
    }
}

impl From<crate::format::Error> for RestoreError {
    fn from(e: crate::format::Error) -> Self {
        Self::Engine(e.into())
    }
}

impl From<StorageError> for RestoreError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Engine(e) => e.fmt(f),
            Self::Storage(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RestoreError {}

pub type Result<T> = std::result::Result<T, RestoreError>;

/// One piece in the bucket, framed: where its data area ends, the ETag every range asks
/// for (a piece replaced meanwhile fails rather than mixing two), its name for errors.
struct Frame {
    key: String,
    label: PathBuf,
    data_end: u64,
    e_tag: Option<String>,
}

/// A block record as planned: `bad` says why it cannot be read (outside its piece's
/// data area, impossible lengths), reported as a corrupt block when its turn comes.
struct Planned {
    rec: BlockRecord,
    bad: Option<String>,
}

/// Consecutive records of one source whose stored bytes lie in `start..end`.
struct Span {
    source: usize,
    start: u64,
    end: u64,
    records: Vec<Planned>,
}

type Body = Box<dyn AsRef<[u8]> + Send + Sync>;

/// Restores `files` from the block map at `blockmap` whose source `i` is the piece at
/// key `sources[i]` of `storage` (`keys[i]` opens its sealed blocks, as in
/// `engine::restore_files_keyed`). Returns the bytes written.
pub fn restore_files(
    storage: &Storage,
    files: &[RestoreFile],
    blockmap: &std::path::Path,
    sources: &[String],
    keys: &[Option<crate::crypto::BlockKey>],
    progress: ProgressHook<'_>,
) -> Result<u64> {
    let keys = crate::crypto::keys_for_pieces(keys, sources);
    let labels: Vec<String> = sources
        .iter()
        .map(|k| format!("{}/{k}", storage.url().trim_end_matches('/')))
        .collect();
    let map = BlockMapReader::open(blockmap)?;
    map.verify_checksum()?;
    let (alg, block_size) = (map.algorithm(), map.block_size());
    let mut order: Vec<&RestoreFile> = files.iter().collect();
    order.sort_by_key(|f| f.first_block);
    let rt = runtime::runtime()?;
    let in_flight = storage.transfer.parts_in_flight;
    // Capacity 1: with the fetcher's `in_flight`, the span being checked and the writer's
    // queue, at most in_flight + 2 + WRITE_QUEUE spans (each at most a part) are in memory
    // at once: 8 x 8 MiB with the defaults, whatever the size of the restore.
    let (plan_tx, mut plan_rx) = mpsc::channel::<Result<(Span, std::sync::Arc<Frame>)>>(1);
    let (body_tx, mut body_rx) = mpsc::channel::<Result<(Span, Body)>>(1);
    std::thread::scope(|scope| {
        let order_ref = &order;
        let rt_plan = std::sync::Arc::clone(&rt);
        scope.spawn(move || {
            let mut frames: Vec<Option<std::sync::Arc<Frame>>> = sources.iter().map(|_| None).collect();
            let mut send = |item| plan_tx.blocking_send(item).is_ok();
            if let Err(e) = plan(
                storage,
                &rt_plan,
                &map,
                order_ref,
                sources,
                &mut frames,
                block_size,
                alg,
                &mut send,
            ) {
                send(Err(e));
            }
        });
        let rt_fetch = std::sync::Arc::clone(&rt);
        scope.spawn(move || {
            rt_fetch.block_on(async {
                let spans = futures::stream::unfold(&mut plan_rx, |rx| async move { rx.recv().await.map(|s| (s, rx)) });
                let bodies = spans
                    .map(|item| async move {
                        let (span, frame) = item?;
                        let body: Body = if span.end > span.start {
                            fetch(storage, &frame, span.start, span.end).await?
                        } else {
                            Box::new(Vec::new())
                        };
                        Ok((span, body))
                    })
                    .buffered(in_flight);
                let mut bodies = std::pin::pin!(bodies);
                while let Some(item) = bodies.next().await {
                    let failed = item.is_err();
                    if body_tx.send(item).await.is_err() || failed {
                        break;
                    }
                }
            });
        });
        let result = write_files(&order, &mut body_rx, &keys, alg, &labels, progress);
        // Stops the fetcher (its sends fail) and through it the planner.
        drop(body_rx);
        result
    })
}

/// Reads the block map in restore order and sends the spans; false from `send` means
/// the restore ended (the rest is not wanted).
#[allow(clippy::too_many_arguments)]
fn plan(
    storage: &Storage,
    rt: &tokio::runtime::Runtime,
    map: &BlockMapReader,
    order: &[&RestoreFile],
    sources: &[String],
    frames: &mut [Option<std::sync::Arc<Frame>>],
    block_size: u32,
    alg: Algorithm,
    send: &mut dyn FnMut(Result<(Span, std::sync::Arc<Frame>)>) -> bool,
) -> Result<()> {
    let part = storage.transfer.part_size as u64;
    let n_sources = u32::try_from(sources.len()).unwrap_or(u32::MAX);
    let mut current: Option<(Span, std::sync::Arc<Frame>)> = None;
    for f in order {
        for rec in map.range(f.first_block, f.block_count)?.limit_sources(n_sources) {
            let rec = rec?;
            let i = rec.source as usize;
            let frame = match frames.get(i) {
                Some(Some(fr)) => std::sync::Arc::clone(fr),
                Some(None) => {
                    let fr = std::sync::Arc::new(rt.block_on(open_frame(storage, &sources[i], block_size, alg))?);
                    frames[i] = Some(std::sync::Arc::clone(&fr));
                    fr
                }
                None => {
                    // limit_sources() refused such records with their file and offset.
                    return Err(
                        engine::Error::Invalid(format!("internal: block of {:?} names source {i}", f.rel)).into(),
                    );
                }
            };
            let end = rec.offset.checked_add(u64::from(rec.stored_len));
            let bad = if rec.offset < HEADER_LEN || end.is_none_or(|e| e > frame.data_end) {
                Some(format!(
                    "{} bytes at {} lie outside the data area {HEADER_LEN}..{} of the piece",
                    rec.stored_len, rec.offset, frame.data_end
                ))
            } else {
                check_fields(rec.stored_len, rec.raw_len, rec.flags, block_size)
                    .err()
                    .map(|(_, m)| m)
            };
            // A bad record gets a span of its own with nothing to fetch (start == end), which
            // nothing joins: its offset may lie anywhere.
            let (start, end) = match (&bad, end) {
                (None, Some(end)) => (rec.offset, end),
                _ => (rec.offset, rec.offset),
            };
            let joins = current.as_ref().is_some_and(|(s, _)| {
                s.source == i
                    && s.end > s.start
                    && bad.is_none()
                    && start >= s.end
                    && start - s.end <= MAX_GAP
                    && end - s.start <= part
                    && s.records.len() < MAX_RECORDS
            });
            if !joins {
                if let Some(done) = current.take() {
                    if !send(Ok(done)) {
                        return Ok(());
                    }
                }
                current = Some((
                    Span {
                        source: i,
                        start,
                        end: start,
                        records: Vec::new(),
                    },
                    frame,
                ));
            }
            if let Some((s, _)) = current.as_mut() {
                s.end = s.end.max(end);
                s.records.push(Planned { rec, bad });
            }
        }
    }
    if let Some(done) = current.take() {
        send(Ok(done));
    }
    Ok(())
}

/// HEAD, header and trailer of the piece at `key`, checked as `PieceReader::open` checks
/// a local one, and against the block map's block size and algorithm.
async fn open_frame(storage: &Storage, key: &str, block_size: u32, alg: Algorithm) -> Result<Frame> {
    let label = PathBuf::from(format!("{}/{key}", storage.url().trim_end_matches('/')));
    let meta = storage
        .head_async(key)
        .await?
        .ok_or_else(|| StorageError::NotFound { key: key.to_string() })?;
    if meta.size < HEADER_LEN {
        return Err(crate::format::Error::damaged(
            &label,
            meta.size,
            format!("truncated piece ({} bytes, no header)", meta.size),
        )
        .into());
    }
    let h = fetch(
        storage,
        &Frame {
            key: key.to_string(),
            label: label.clone(),
            data_end: 0,
            e_tag: meta.e_tag.clone(),
        },
        0,
        HEADER_LEN,
    )
    .await?;
    let mut hb = [0u8; HEADER_LEN as usize];
    hb.copy_from_slice((*h).as_ref());
    let header = Header::decode(&label, Kind::Piece, &hb)?;
    let tlen = header.trailer_len();
    let frame = Frame {
        key: key.to_string(),
        label,
        data_end: 0,
        e_tag: meta.e_tag,
    };
    if meta.size < HEADER_LEN + tlen {
        return Err(crate::format::Error::damaged(
            &frame.label,
            meta.size,
            format!(
                "truncated piece ({} bytes, no room for a {tlen}-byte trailer)",
                meta.size
            ),
        )
        .into());
    }
    let t = fetch(storage, &frame, meta.size - tlen, meta.size).await?;
    let data_end = crate::format::piece::data_area_end(&frame.label, header, meta.size, (*t).as_ref())?;
    if header.algorithm != alg || header.block_size != block_size {
        return Err(engine::Error::format(
            &frame.label,
            format!(
                "header (at offset 12..18) says {}-byte blocks hashed with {}, its block map {block_size}-byte blocks with {}",
                header.block_size,
                header.algorithm.name(),
                alg.name()
            ),
        )
        .into());
    }
    Ok(Frame { data_end, ..frame })
}

/// Bytes `start..end` of the frame's piece, whole (at most a part, or the piece's header
/// or trailer: bounded by the planner, never by what the server sends).
async fn fetch(storage: &Storage, frame: &Frame, start: u64, end: u64) -> Result<Body> {
    let loc = storage.path(&frame.key)?;
    let opts = GetOptions::new()
        .with_range(Some(start..end))
        .with_if_match(frame.e_tag.clone());
    let got = storage
        .store
        .get_opts(&loc, opts)
        .await
        .map_err(|e| storage.get_err(e, &frame.key))?;
    let bytes = got.bytes().await.map_err(|e| storage.get_err(e, &frame.key))?;
    if bytes.len() as u64 != end - start {
        return Err(StorageError::Store {
            op: "get_range",
            key: frame.key.clone(),
            detail: format!("asked for {} bytes at {start}, got {}", end - start, bytes.len()),
        }
        .into());
    }
    Ok(Box::new(bytes))
}

/// Where a checked block's bytes are: inside its span's body (a raw block, checked where
/// it lies: no copy) or decoded into a buffer of its own.
enum Out {
    InBody(std::ops::Range<usize>),
    Owned(Vec<u8>),
}

/// Bytes for the writer thread: a range of a fetched body (kept alive by the `Arc` until
/// written) or a buffer.
enum Chunk {
    Body(std::sync::Arc<(Span, Body)>, std::ops::Range<usize>),
    Owned(Vec<u8>),
}

/// `chunk` goes to `file` (the restore's file `file_index`) at byte `at`.
struct WriteJob {
    file: std::sync::Arc<std::fs::File>,
    file_index: usize,
    at: u64,
    chunk: Chunk,
}

/// Write jobs queued for the writer thread at most. A job is one span's blocks of one
/// file, so this adds at most this many spans (or decoded batches) to the memory bound.
const WRITE_QUEUE: usize = 2;

/// The caller's side: the spans in order, each block decoded and checked (in parallel
/// within a span) and hashed into its file's digest here; the writes go to a writer
/// thread (`pwrite` at the file's offset), so the kernel's copy into the page cache
/// overlaps the checking and hashing of the next span. Each file's size and digest are
/// checked at its end; every write has landed before this returns Ok.
fn write_files(
    order: &[&RestoreFile],
    bodies: &mut mpsc::Receiver<Result<(Span, Body)>>,
    keys: &[Option<crate::crypto::BlockKey>],
    alg: Algorithm,
    labels: &[String],
    progress: ProgressHook<'_>,
) -> Result<u64> {
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<WriteJob>(WRITE_QUEUE);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> engine::Result<()> {
            use std::os::unix::fs::FileExt;
            for job in job_rx {
                let bytes: &[u8] = match &job.chunk {
                    Chunk::Body(body, r) => &(*body.1).as_ref()[r.clone()],
                    Chunk::Owned(v) => v,
                };
                job.file
                    .write_all_at(bytes, job.at)
                    .map_err(|e| engine::Error::io(&order[job.file_index].dest, e))?;
            }
            Ok(())
        });
        let result = check_files(order, bodies, keys, alg, labels, progress, &job_tx);
        drop(job_tx);
        let written = writer.join().unwrap_or_else(|_| {
            Err(engine::Error::Invalid(
                "internal: the restore's writer thread panicked".into(),
            ))
        });
        // The writer's own error first: a failed send above only says the writer stopped.
        written?;
        result
    })
}

/// `write_files` without the writer thread: checks, hashes and queues the writes.
fn check_files(
    order: &[&RestoreFile],
    bodies: &mut mpsc::Receiver<Result<(Span, Body)>>,
    keys: &[Option<crate::crypto::BlockKey>],
    alg: Algorithm,
    labels: &[String],
    progress: ProgressHook<'_>,
    jobs: &std::sync::mpsc::SyncSender<WriteJob>,
) -> Result<u64> {
    let mut state = Progress::default();
    let mut span: Option<std::sync::Arc<(Span, Body)>> = None;
    let mut at = 0usize; // next record of `span`
    let stopped = || engine::Error::Invalid("internal: the restore's writer thread stopped".into());
    for (file_index, f) in order.iter().enumerate() {
        let file = std::sync::Arc::new(engine::restore::create_file(&f.dest)?);
        let mut whole = alg.hasher();
        let mut written = 0u64;
        let mut block_index = 0u64;
        while block_index < f.block_count {
            if span.as_ref().is_none_or(|sb| at >= sb.0.records.len()) {
                span = Some(match bodies.blocking_recv() {
                    Some(item) => std::sync::Arc::new(item?),
                    None => {
                        return Err(engine::Error::Invalid(format!(
                            "internal: the block map ran out before block {block_index} of {:?}",
                            f.rel
                        ))
                        .into())
                    }
                });
                at = 0;
            }
            let Some(sb) = span.as_ref() else { continue };
            let (s, body) = (&sb.0, &sb.1);
            let take = (s.records.len() - at).min(usize::try_from(f.block_count - block_index).unwrap_or(usize::MAX));
            let batch = &s.records[at..at + take];
            let bytes: &[u8] = (**body).as_ref();
            let key = keys.get(s.source).and_then(Option::as_ref);
            let blocks: Vec<engine::Result<Out>> = in_pool(|| {
                batch
                    .par_iter()
                    .enumerate()
                    .map(|(k, p)| check(p, s, bytes, key, alg, &f.rel, block_index + k as u64, &labels[s.source]))
                    .collect()
            });
            let mut outs = Vec::with_capacity(blocks.len());
            for b in blocks {
                let b = b?;
                let data = match &b {
                    Out::InBody(r) => &bytes[r.clone()],
                    Out::Owned(v) => v.as_slice(),
                };
                whole.update(data);
                state.bytes_read += data.len() as u64;
                outs.push(b);
            }
            let len = outs
                .iter()
                .map(|b| match b {
                    Out::InBody(r) => r.len(),
                    Out::Owned(v) => v.len(),
                })
                .sum::<usize>();
            let chunk = match contiguous(&outs) {
                Some(r) => Chunk::Body(std::sync::Arc::clone(sb), r),
                None => {
                    let mut v = Vec::with_capacity(len);
                    for b in &outs {
                        match b {
                            Out::InBody(r) => v.extend_from_slice(&bytes[r.clone()]),
                            Out::Owned(o) => v.extend_from_slice(o),
                        }
                    }
                    Chunk::Owned(v)
                }
            };
            if len > 0 {
                let job = WriteJob {
                    file: std::sync::Arc::clone(&file),
                    file_index,
                    at: written,
                    chunk,
                };
                jobs.send(job).map_err(|_| stopped())?;
            }
            written += len as u64;
            block_index += take as u64;
            at += take;
            if let ControlFlow::Break(()) = progress(state) {
                return Err(engine::Error::Cancelled.into());
            }
        }
        let digest = whole.finalize();
        if written != f.size || digest != f.digest {
            return Err(engine::Error::Invalid(format!(
                "restored file {:?} does not match its manifest: {} bytes with digest {}, expected {} bytes with digest {}",
                f.rel,
                written,
                to_hex(&digest),
                f.size,
                to_hex(&f.digest)
            ))
            .into());
        }
        state.files_done += 1;
    }
    Ok(state.bytes_read)
}

/// The one range of the body a batch's blocks make up when they are all raw and lie end
/// to end in it (a FULL's blocks do): written straight from the body, with no copy.
fn contiguous(outs: &[Out]) -> Option<std::ops::Range<usize>> {
    let mut whole: Option<std::ops::Range<usize>> = None;
    for b in outs {
        let Out::InBody(r) = b else { return None };
        whole = match whole {
            None => Some(r.clone()),
            Some(w) if w.end == r.start => Some(w.start..r.end),
            Some(_) => return None,
        };
    }
    whole
}

/// One block out of its span's bytes: opened, decoded and checked against its digest. A
/// raw block (no flag) is hashed where it lies in the body.
#[allow(clippy::too_many_arguments)]
fn check(
    p: &Planned,
    s: &Span,
    bytes: &[u8],
    key: Option<&crate::crypto::BlockKey>,
    alg: Algorithm,
    rel: &str,
    block_index: u64,
    piece: &str,
) -> engine::Result<Out> {
    let rec = &p.rec;
    let corrupt = |actual: String| engine::Error::CorruptBlock {
        piece: PathBuf::from(piece),
        file: rel.to_string(),
        block_index,
        offset: rec.offset,
        expected: to_hex(&rec.digest),
        actual,
    };
    // The planner put the record's bytes inside the span: in bounds.
    let lo = usize::try_from(rec.offset - s.start).unwrap_or(usize::MAX);
    let range = lo..lo.saturating_add(rec.stored_len as usize);
    if p.bad.is_none() && rec.flags == 0 {
        // check_fields (in the planner) held a raw block to its raw length.
        let Some(stored) = bytes.get(range.clone()) else {
            return Err(corrupt(format!(
                "internal: block at {} is outside its fetched range",
                rec.offset
            )));
        };
        let actual = alg.digest(stored);
        return if actual == rec.digest {
            Ok(Out::InBody(range))
        } else {
            Err(corrupt(to_hex(&actual)))
        };
    }
    let raw = match &p.bad {
        Some(why) => Err(why.clone()),
        None => match bytes.get(range).map(<[u8]>::to_vec) {
            Some(stored) => unseal_block(key, rec.offset, stored, rec.raw_len, rec.flags, &rec.digest),
            None => Err(format!(
                "internal: block at {} is outside its fetched range",
                rec.offset
            )),
        },
    };
    check_block_keyed(alg, key, rec.flags, raw, &rec.digest)
        .map(Out::Owned)
        .map_err(corrupt)
}
