//! Checks of one piece at each level. STANDARD of a version-2 piece recomputes the XXH3-128
//! tree on every core (`format::fast`). STANDARD of a version-1 piece and FULL share one
//! sequential pass over the file: every byte before the trailer feeds the whole-piece
//! hasher, and at FULL the blocks the index places inside the chunk just read are decoded
//! and re-hashed from that same buffer in parallel, so FULL reads the piece once.

use std::fs::{self, File};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::control::Control;
use super::item::{BadBlock, IssueKind, Item, ItemKind, ItemReport};
use crate::format::fast::{tree_of_file, FastTree};
use crate::format::{stored_mismatch_keyed, Error as FormatError, IndexEntry, PieceReader, HEADER_LEN};
use crate::io_hints;
use crate::scan::algorithm::{to_hex, Hasher};

/// Bytes read per step; big enough for sequential throughput, small enough that a budget
/// deadline or a cancel is noticed within milliseconds.
const CHUNK: u64 = 4 << 20;
/// At most this many index entries are held at once (memory stays flat in the piece size).
const MAX_BATCH: usize = 16_384;
/// Bad index entries reported one by one; the rest are counted (a zeroed index must not
/// turn into millions of messages).
const MAX_BAD_ENTRIES_SHOWN: u64 = 100;

/// QUICK: the file exists, is a regular file and has the recorded size. Returns the
/// actual size when the deeper levels may go on.
pub(crate) fn check_presence(item: &Item, what: &str, report: &mut ItemReport) -> Option<u64> {
    let shown = item.path.display();
    let meta = match fs::metadata(&item.path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            report.issue(IssueKind::Missing, format!("{what} {shown} is missing"));
            return None;
        }
        Err(e) => {
            report.issue(IssueKind::Io, format!("{what} {shown}: {e}"));
            return None;
        }
    };
    if !meta.is_file() {
        report.issue(IssueKind::Unreadable, format!("{what} {shown} is not a regular file"));
        return None;
    }
    let len = meta.len();
    match item.size {
        Some(size) if size != len => report.issue(
            IssueKind::WrongSize,
            format!("{what} {shown} is {len} bytes but the catalog recorded {size} (truncated or replaced)"),
        ),
        Some(_) => {}
        // The catalog records no size for block maps (their trailer carries the count).
        None if item.kind == ItemKind::BlockMap => {}
        None => report.issue(
            IssueKind::BadCatalogRow,
            format!("the catalog row of {what} {shown} has no valid size"),
        ),
    }
    Some(len)
}

/// Compares the whole-file digest with the trailer and with the catalog, naming which differ.
pub(crate) fn compare_checksums(item: &Item, what: &str, actual: &[u8], trailer: &[u8], report: &mut ItemReport) {
    let shown = item.path.display();
    let (actual, trailer_hex) = (to_hex(actual), to_hex(trailer));
    if actual != trailer_hex {
        report.issue(
            IssueKind::BadChecksum,
            format!("{what} {shown}: its bytes hash to {actual} but its trailer records {trailer_hex} (changed after it was written)"),
        );
    }
    compare_catalog(item, what, trailer, report);
}

/// Compares the trailer's cryptographic checksum with the catalog's: a file another set
/// wrote (swapped or replaced) differs here even when its own bytes are intact.
pub(crate) fn compare_catalog(item: &Item, what: &str, trailer: &[u8], report: &mut ItemReport) {
    let shown = item.path.display();
    let trailer = to_hex(trailer);
    match item.checksum.as_deref().map(str::to_ascii_lowercase) {
        Some(cat) if cat != trailer => report.issue(
            IssueKind::CatalogMismatch,
            format!(
                "{what} {shown}: trailer checksum {trailer} is not the catalog's {cat} (not the file this set wrote: swapped or replaced)"
            ),
        ),
        Some(_) => {}
        None => report.issue(IssueKind::BadCatalogRow, format!("the catalog row of {what} {shown} has no checksum")),
    }
}

/// The finding a format error is: damage makes a file unreadable, an OS error is I/O.
pub(crate) fn format_issue(err: &FormatError) -> IssueKind {
    match err {
        FormatError::Io { .. } => IssueKind::Io,
        FormatError::Damaged { .. } | FormatError::Checksum { .. } => IssueKind::Unreadable,
    }
}

/// Runs the checks of `level` on a piece, appending what it finds to `report`.
pub(crate) fn check_piece(item: &Item, full: bool, ctl: &Control, report: &mut ItemReport) {
    let Some(_) = check_presence(item, "piece", report) else {
        return;
    };
    let reader = match PieceReader::open(&item.path) {
        Ok(r) => r,
        Err(e) => {
            report.issue(format_issue(&e), format!("piece {e}"));
            return;
        }
    };
    let shown = item.path.display().to_string();
    let alg = reader.algorithm();
    match item.algorithm {
        Some(a) if a != alg => report.issue(
            IssueKind::CatalogMismatch,
            format!(
                "piece {shown} is hashed with {} but the catalog recorded {}",
                alg.name(),
                a.name()
            ),
        ),
        Some(_) => {}
        None => report.issue(
            IssueKind::BadCatalogRow,
            format!("the catalog row of piece {shown} has no known algorithm"),
        ),
    }
    match item.block_count {
        Some(n) if n != reader.block_count() => report.issue(
            IssueKind::CatalogMismatch,
            format!(
                "piece {shown} indexes {} blocks but the catalog recorded {n}",
                reader.block_count()
            ),
        ),
        _ => {}
    }
    let file = match File::open(&item.path) {
        Ok(f) => f,
        Err(e) => {
            report.issue(IssueKind::Io, format!("piece {shown}: {e}"));
            return;
        }
    };
    let mut scan = Scan::new(&reader, &file, &shown, ctl, report);
    // A sealed block opens only with its piece's own name bound in (crypto::block).
    scan.key = item
        .key
        .as_ref()
        .and_then(|k| crate::crypto::piece_label(&item.path).map(|l| k.for_piece(&l)));
    let done = match (full, reader.recorded_fast_checksum()) {
        (false, Some(_)) => scan.run_fast().map(|fast| (None, Some(fast))),
        (false, None) => scan.run_plain().map(|(sum, _)| (Some(sum), None)),
        (true, _) => scan.run_full().map(|(sum, fast)| (Some(sum), fast)),
    };
    let Some((actual, fast)) = done else { return };
    // The trailer was read by open(); the index by the pass (or by the hasher).
    report.bytes_read += reader.trailer_len();
    ctl.add_bytes(reader.trailer_len());
    // One changed byte is one finding: FULL names the XXH3 only when the cryptographic
    // checksum agreed (the XXH3 field itself changed).
    let sum_agrees = actual.as_deref().is_none_or(|a| a == reader.recorded_checksum());
    if let (Some(fast), Some(recorded), true) = (fast, reader.recorded_fast_checksum(), sum_agrees) {
        if &fast != recorded {
            report.issue(
                IssueKind::BadChecksum,
                format!(
                    "piece {shown}: its bytes hash (XXH3-128) to {} but its trailer records {} (changed after it was written)",
                    to_hex(&fast),
                    to_hex(recorded)
                ),
            );
        }
    }
    match actual {
        Some(actual) => compare_checksums(item, "piece", &actual, reader.recorded_checksum(), report),
        // STANDARD on a version-2 piece: bit rot is the XXH3's to find; the catalog
        // still says whether this is the file the set wrote.
        None => compare_catalog(item, "piece", reader.recorded_checksum(), report),
    }
}

/// One pass over a piece.
struct Scan<'a> {
    reader: &'a PieceReader,
    file: &'a File,
    shown: &'a str,
    ctl: &'a Control,
    report: &'a mut ItemReport,
    hasher: Hasher,
    /// The XXH3-128 tree of the same bytes, for a piece whose trailer records one.
    fast: Option<FastTree>,
    index_off: u64,
    end: u64,
    bad_entries: u64,
    /// FULL of an encrypted piece: opens and checks every sealed block.
    key: Option<crate::crypto::BlockKey>,
}

impl<'a> Scan<'a> {
    fn new(
        reader: &'a PieceReader,
        file: &'a File,
        shown: &'a str,
        ctl: &'a Control,
        report: &'a mut ItemReport,
    ) -> Self {
        let end = reader.trailer_offset();
        let index_off = reader.index_offset();
        Self {
            reader,
            file,
            shown,
            ctl,
            report,
            hasher: reader.algorithm().hasher(),
            fast: reader.recorded_fast_checksum().map(|_| FastTree::new()),
            index_off,
            end,
            bad_entries: 0,
            key: None,
        }
    }

    /// Reads `[pos, pos + len)`, feeding nothing; counts the bytes. None: stopped or failed.
    fn read(&mut self, pos: u64, len: u64, buf: &mut Vec<u8>) -> Option<()> {
        if let Some(reason) = self.ctl.stop() {
            self.report.stop(reason);
            return None;
        }
        if let Err(e) = read_chunk(self.file, pos, len, buf) {
            self.read_failed(pos, len, &e);
            return None;
        }
        // The next chunks come off the disk while this one is hashed (a repository that is
        // not in the page cache is then read-bound, not read-then-hash bound).
        io_hints::prefetch(self.file, pos + len, 2 * CHUNK);
        self.report.bytes_read += len;
        self.ctl.add_bytes(len);
        Some(())
    }

    /// STANDARD: hash everything before the trailer in one pass, BLAKE3 on both cores
    /// (`update_rayon`: 0.30 s instead of 0.40 s per page-cached GiB on a quiet 2-core
    /// machine; under heavy load from other jobs the two were within noise), while
    /// `prefetch` brings the next chunks in from disk.
    fn run_plain(mut self) -> Option<(Vec<u8>, Option<[u8; 16]>)> {
        // A version-1 piece: no XXH3 to feed.
        self.fast = None;
        self.hash_to_end(0, &mut Vec::new())
    }

    /// STANDARD on a version-2 piece: only the XXH3-128 tree of everything before the
    /// trailer, its chunks hashed on every core of the pool (one XXH3 stream plus the copy
    /// out of the page cache cost ~2.7 plain reads on one core; benches/README.md).
    fn run_fast(self) -> Option<[u8; 16]> {
        let ctl = self.ctl;
        let read = AtomicU64::new(0);
        let on_bytes = |n: u64| {
            read.fetch_add(n, Ordering::Relaxed);
            ctl.add_bytes(n);
            match ctl.stop() {
                Some(_) => ControlFlow::Break(()),
                None => ControlFlow::Continue(()),
            }
        };
        let outcome = tree_of_file(self.file, self.reader.path(), self.end, &on_bytes);
        self.report.bytes_read += read.into_inner();
        match outcome {
            Ok(Some(fast)) => Some(fast),
            Ok(None) => {
                if let Some(reason) = ctl.stop() {
                    self.report.stop(reason);
                }
                None
            }
            Err(e) => {
                self.report.issue(format_issue(&e), format!("piece {e}"));
                None
            }
        }
    }

    /// Hashes `[pos, end)` into the checksums (the rest of the pass) and finishes them.
    fn hash_to_end(mut self, mut pos: u64, buf: &mut Vec<u8>) -> Option<(Vec<u8>, Option<[u8; 16]>)> {
        while pos < self.end {
            let n = CHUNK.min(self.end - pos);
            self.read(pos, n, buf)?;
            match self.fast.as_mut() {
                Some(fast) => {
                    let hasher = &mut self.hasher;
                    rayon::join(|| hasher.update_parallel(buf), || fast.update(buf));
                }
                None => self.hasher.update_parallel(buf),
            }
            pos += n;
        }
        Some((self.hasher.finalize(), self.fast.map(FastTree::digest)))
    }

    fn read_failed(&mut self, pos: u64, len: u64, e: &io::Error) {
        let kind = if e.kind() == io::ErrorKind::UnexpectedEof {
            IssueKind::Unreadable
        } else {
            IssueKind::Io
        };
        self.report.issue(
            kind,
            format!("piece {}: reading {len} bytes at offset {pos}: {e}", self.shown),
        );
    }

    /// FULL: hash everything before the trailer and every block the index names.
    fn run_full(mut self) -> Option<(Vec<u8>, Option<[u8; 16]>)> {
        let alg = self.reader.algorithm();
        let mut entries = match self.reader.entries() {
            Ok(it) => it.enumerate(),
            Err(e) => {
                self.report.issue(format_issue(&e), format!("piece {e}"));
                return None;
            }
        };
        let mut pending: Option<(usize, IndexEntry)> = None;
        let mut exhausted = false;
        let mut buf = Vec::new();
        let mut pos = 0u64;
        // End of the last block taken from a chunk: entries must come in ascending order.
        let mut contiguous = HEADER_LEN;
        while pos < self.index_off || pending.is_some() || !exhausted {
            let limit = (pos + CHUNK).min(self.index_off);
            let mut in_chunk: Vec<(usize, IndexEntry)> = Vec::new();
            let mut strays: Vec<(usize, IndexEntry)> = Vec::new();
            let mut chunk_end = pos;
            while in_chunk.len() + strays.len() < MAX_BATCH {
                let next = match pending.take() {
                    Some(p) => Some(p),
                    None if exhausted => None,
                    None => match entries.next() {
                        Some((i, Ok(e))) => Some((i, e)),
                        Some((_, Err(e @ FormatError::Damaged { .. }))) => {
                            // One bad entry says nothing about the next: report it, go on.
                            self.bad_entries += 1;
                            if self.bad_entries <= MAX_BAD_ENTRIES_SHOWN {
                                self.report.issue(IssueKind::BadIndex, format!("piece {e}"));
                            }
                            continue;
                        }
                        Some((_, Err(e))) => {
                            self.report
                                .issue(format_issue(&e), format!("piece {e} (reading the index)"));
                            exhausted = true;
                            None
                        }
                        None => {
                            exhausted = true;
                            None
                        }
                    },
                };
                let Some((i, e)) = next else { break };
                let e_end = e.offset.saturating_add(u64::from(e.stored_len));
                if e.offset < contiguous.max(pos) || e_end > self.index_off {
                    strays.push((i, e));
                } else if e_end <= limit || (in_chunk.is_empty() && e.offset == pos) {
                    chunk_end = chunk_end.max(e_end);
                    contiguous = e_end;
                    in_chunk.push((i, e));
                } else {
                    pending = Some((i, e));
                    break;
                }
            }
            if in_chunk.is_empty() {
                // Nothing indexed here: a gap, or the index is exhausted; still hash the bytes.
                let stop = pending.as_ref().map_or(limit, |(_, e)| e.offset.min(limit));
                chunk_end = if stop > pos { stop } else { limit };
            }
            let n = chunk_end - pos;
            if n > 0 {
                self.read(pos, n, &mut buf)?;
            } else if let Some(reason) = self.ctl.stop() {
                self.report.stop(reason);
                return None;
            }
            let base = pos;
            let data = &buf[..n as usize];
            let hasher = &mut self.hasher;
            let fast = &mut self.fast;
            let key = self.key.as_ref();
            let (_, faults) = rayon::join(
                || {
                    hasher.update(data);
                    if let Some(f) = fast.as_mut() {
                        f.update(data);
                    }
                },
                || {
                    in_chunk
                        .par_iter()
                        .filter_map(|(_, e)| {
                            let start = (e.offset - base) as usize;
                            let stored = &data[start..start + e.stored_len as usize];
                            stored_mismatch_keyed(alg, key, e.offset, stored, e.raw_len, e.flags, &e.digest)
                                .map(|actual| bad_block(e, actual))
                        })
                        .collect::<Vec<_>>()
                },
            );
            self.report.bad_blocks.extend(faults);
            self.check_strays(strays);
            pos = chunk_end;
            if pos >= self.index_off && pending.is_none() && exhausted {
                break;
            }
        }
        if self.bad_entries > MAX_BAD_ENTRIES_SHOWN {
            let more = self.bad_entries - MAX_BAD_ENTRIES_SHOWN;
            let msg = format!("piece {}: {more} more bad index entries", self.shown);
            self.report.issue(IssueKind::BadIndex, msg);
        }
        let n_bad = self.report.bad_blocks.len();
        if n_bad > 0 {
            let first = &self.report.bad_blocks[0];
            let msg = format!(
                "piece {}: {n_bad} corrupt block(s); first: block {} of file #{} at offset {}",
                self.shown, first.block_index, first.file_no, first.offset
            );
            self.report.issue(IssueKind::CorruptBlock, msg);
        }
        // The index bytes were read by the entry iterator; hash them for the checksum.
        let index_off = self.index_off;
        self.hash_to_end(index_off, &mut buf)
    }

    /// Entries that are out of order or point outside the data area: each is checked on
    /// its own (a positioned read), or reported as a bad index entry.
    fn check_strays(&mut self, strays: Vec<(usize, IndexEntry)>) {
        if strays.is_empty() {
            return;
        }
        let alg = self.reader.algorithm();
        let reader = self.reader;
        let results: Vec<(usize, IndexEntry, Result<Option<String>, String>)> = strays
            .into_par_iter()
            .map(|(i, e)| {
                let r = match reader.read_raw(e.offset, e.stored_len, e.raw_len, e.flags) {
                    Ok(decoded) => Ok(match decoded {
                        Ok(raw) => {
                            let d = alg.digest(&raw);
                            (d != e.digest).then(|| to_hex(&d))
                        }
                        Err(reason) => Some(reason),
                    }),
                    Err(err) => Err(err.to_string()),
                };
                (i, e, r)
            })
            .collect();
        for (i, e, r) in results {
            match r {
                Ok(None) => {}
                Ok(Some(actual)) => self.report.bad_blocks.push(bad_block(&e, actual)),
                Err(msg) => self.report.issue(
                    IssueKind::BadIndex,
                    format!(
                        "index entry {i} (block {} of file #{}): {msg}",
                        e.block_index, e.file_no
                    ),
                ),
            }
        }
        self.report.bad_blocks.sort_by_key(|b| b.offset);
    }
}

/// Reads `[pos, pos + len)` into `buf` (resized to fit).
fn read_chunk(file: &File, pos: u64, len: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.resize(len as usize, 0);
    file.read_exact_at(buf, pos)
}

fn bad_block(e: &IndexEntry, actual: String) -> BadBlock {
    BadBlock {
        file_no: e.file_no,
        block_index: e.block_index,
        offset: e.offset,
        expected: to_hex(&e.digest),
        actual,
    }
}
