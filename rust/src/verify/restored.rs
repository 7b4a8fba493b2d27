//! RESTORE_TEST's data pass: a restored file against the manifest's whole-file digest and,
//! when that differs, block by block against the set's block map, so the finding names
//! the block and the chain member (block-map `source`) that stored it. This catches what
//! the piece index cannot: blocks rewritten together with their index entries.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::format::{BlockMapReader, BlockRecord, PieceReader};
use crate::scan::algorithm::{to_hex, Algorithm};

/// A restored block that differs from the block map's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredBlock {
    /// Block number inside the file.
    pub block_index: u64,
    /// Index into the manifest's `sources` (the set whose piece stored the block).
    pub source: u32,
    /// Offset of the stored bytes in that piece.
    pub offset: u64,
    /// Hex digest the block map recorded.
    pub expected: String,
    /// Hex digest of the restored block.
    pub actual: String,
}

/// The outcome for one restored file.
#[derive(Clone, Debug, Default)]
pub struct RestoredFileReport {
    /// Size of the restored file.
    pub size: u64,
    /// Hex digest of the restored file.
    pub digest: String,
    /// Whether it equals the manifest's digest.
    pub matches: bool,
    /// Blocks that differ from the block map (only looked for when the digest differs).
    pub bad_blocks: Vec<RestoredBlock>,
    /// Why the block comparison could not be done or was incomplete.
    pub notes: Vec<String>,
    /// Bytes read (restored file, and block map records when compared).
    pub bytes_read: u64,
}

/// Where a file's records are in the set's block map.
#[derive(Clone, Copy, Debug)]
pub struct BlockRange<'a> {
    /// The block map.
    pub blockmap: &'a Path,
    /// First record of the file.
    pub first_block: u64,
    /// Number of records.
    pub block_count: u64,
}

/// Hashes `path` and compares it with `expected` (hex); on a mismatch, walks the file's
/// block-map records. Errors are I/O errors on the restored file itself.
pub fn check_restored_file(
    path: &Path,
    algorithm: Algorithm,
    expected: &str,
    blocks: Option<BlockRange<'_>>,
) -> io::Result<RestoredFileReport> {
    let mut report = RestoredFileReport::default();
    // The whole-file digest does not cover the blocks of hole runs (docs/FORMAT.md):
    // they are skipped, and checked to be zero (a real hole costs nothing to check).
    let holes = match &blocks {
        Some(range) => hole_bytes(range)?,
        None => Vec::new(),
    };
    let mut f = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut h = algorithm.hasher();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let mut holes_left = &holes[..];
    let mut hole_data = false;
    loop {
        if let Some(&(start, end)) = holes_left.first().filter(|&&(s, _)| s == pos) {
            holes_left = &holes_left[1..];
            let file = f.get_ref();
            let len = file.metadata()?.len();
            let end = end.min(len);
            if end > start && crate::engine::holes::data_in(file, start, end - start)? {
                let mut at = start;
                while at < end {
                    let n = read_at_most(file, &mut buf[..(end - at).min(1 << 20) as usize], at)?;
                    hole_data |= buf[..n].iter().any(|&b| b != 0);
                    report.bytes_read += n as u64;
                    at += n as u64;
                    if n == 0 {
                        break;
                    }
                }
            }
            report.size += end.saturating_sub(start);
            pos = end;
            io::Seek::seek(&mut f, io::SeekFrom::Start(pos))?;
            continue;
        }
        let room = holes_left
            .first()
            .map_or(buf.len() as u64, |&(s, _)| (s - pos).min(buf.len() as u64));
        let n = f.read(&mut buf[..room as usize])?;
        if n == 0 {
            break;
        }
        h.update_parallel(&buf[..n]);
        report.size += n as u64;
        report.bytes_read += n as u64;
        pos += n as u64;
    }
    report.digest = to_hex(&h.finalize());
    report.matches = report.digest.eq_ignore_ascii_case(expected) && !hole_data;
    if hole_data {
        report.notes.push("data where the block map records a hole".into());
    }
    if !report.matches {
        if let Some(range) = blocks {
            compare_blocks(path, algorithm, range, &mut report)?;
        }
    }
    Ok(report)
}

/// The byte ranges `[start, end)` of the file's hole runs in `range`'s block map (a map
/// that cannot be read has none here; `compare_blocks` reports it).
fn hole_bytes(range: &BlockRange<'_>) -> io::Result<Vec<(u64, u64)>> {
    let Ok(map) = BlockMapReader::open(range.blockmap) else {
        return Ok(Vec::new());
    };
    let Ok(records) = map.range(range.first_block, range.block_count) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut at = 0u64;
    for rec in records {
        let Ok(rec) = rec else { break };
        let end = at + u64::from(rec.raw_len);
        if rec.is_hole() {
            match out.last_mut() {
                Some(last) if last.1 == at => last.1 = end,
                _ => out.push((at, end)),
            }
        }
        at = end;
    }
    Ok(out)
}

fn compare_blocks(
    path: &Path,
    alg: Algorithm,
    range: BlockRange<'_>,
    report: &mut RestoredFileReport,
) -> io::Result<()> {
    let map = match BlockMapReader::open(range.blockmap) {
        Ok(m) => m,
        Err(e) => {
            report.notes.push(format!("block map {e}"));
            return Ok(());
        }
    };
    let records = match map.range(range.first_block, range.block_count) {
        Ok(it) => it,
        Err(e) => {
            report
                .notes
                .push(format!("block map {e} (the manifest places this file there)"));
            return Ok(());
        }
    };
    let bs = u64::from(map.block_size());
    let file = File::open(path)?;
    // One block at most: the block size is bounded by the format.
    let mut block = vec![0u8; map.block_size() as usize];
    for (k, rec) in (0u64..).zip(records) {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                report.notes.push(format!("block map {e}"));
                continue;
            }
        };
        report.bytes_read += map.record_len();
        if rec.is_hole() {
            // Checked to be zero with the digest.
            continue;
        }
        // raw_len <= block size: the reader checked it.
        let want = rec.raw_len as usize;
        let got = read_at_most(&file, &mut block[..want], k * bs)?;
        report.bytes_read += got as u64;
        let expected = to_hex(&rec.digest);
        let actual = if got == want {
            to_hex(&alg.digest(&block[..got]))
        } else {
            format!("{got} bytes restored instead of {want}")
        };
        if actual != expected {
            report.bad_blocks.push(RestoredBlock {
                block_index: k,
                source: rec.source,
                offset: rec.offset,
                expected,
                actual,
            });
        }
    }
    let mapped: u64 = range.block_count.saturating_mul(bs);
    if report.size > mapped {
        report.notes.push(format!(
            "{} bytes restored beyond the {} blocks the block map lists",
            report.size - mapped,
            range.block_count
        ));
    }
    Ok(())
}

fn read_at_most(file: &File, buf: &mut [u8], mut pos: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read_at(&mut buf[filled..], pos)?;
        if n == 0 {
            break;
        }
        filled += n;
        pos += n as u64;
    }
    Ok(filled)
}

/// A block-map record whose stored block does not hash to the block map's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedBlockFault {
    /// Record number in the block map (the manifest's `first_block` ranges map it to a file).
    pub record: u64,
    /// Index into the manifest's `sources`.
    pub source: u32,
    /// Offset of the stored bytes in that source's piece.
    pub offset: u64,
    /// Hex digest the block map recorded.
    pub expected: String,
    /// Hex digest of the stored block, or why it could not be read or decoded.
    pub actual: String,
}

/// Records checked per parallel step (memory stays flat in the block-map size).
const MAPPED_BATCH: usize = 8192;

/// Re-reads every block a set's block map names, from the pieces of its chain (`pieces`
/// in `sources` order), and compares each with the block map's digest: every block a
/// restore would write, checked without writing it, all faults reported (a restore stops
/// at the first). Call it inside the pool. Errors are about the block map itself.
pub fn check_mapped_blocks(blockmap: &Path, pieces: &[PathBuf]) -> Result<Vec<MappedBlockFault>, String> {
    let map = BlockMapReader::open(blockmap).map_err(|e| format!("block map {e}"))?;
    let readers: Vec<Result<PieceReader, String>> = pieces.iter().map(|p| open_source(p, &map)).collect();
    let mut records = map.range(0, map.count()).map_err(|e| format!("block map {e}"))?;
    let mut faults = Vec::new();
    let mut first = 0u64;
    loop {
        let batch = records
            .by_ref()
            .take(MAPPED_BATCH)
            .collect::<crate::format::Result<Vec<BlockRecord>>>()
            .map_err(|e| format!("block map {e}"))?;
        if batch.is_empty() {
            break;
        }
        let found: Vec<MappedBlockFault> = batch
            .par_iter()
            .enumerate()
            .filter_map(|(k, rec)| {
                mapped_fault(&readers, rec).map(|actual| MappedBlockFault {
                    record: first + k as u64,
                    source: rec.source,
                    offset: rec.offset,
                    expected: to_hex(&rec.digest),
                    actual,
                })
            })
            .collect();
        faults.extend(found);
        first += batch.len() as u64;
    }
    Ok(faults)
}

/// Opens a source piece for `map`'s records; Err says why its blocks cannot be read.
fn open_source(path: &Path, map: &BlockMapReader) -> Result<PieceReader, String> {
    let r = PieceReader::open(path).map_err(|e| e.to_string())?;
    if r.algorithm() != map.algorithm() || r.block_size() != map.block_size() {
        return Err(format!(
            "piece {}: header (at offset 12..18) says {}-byte blocks hashed with {}, the block map {}-byte blocks with {}",
            path.display(),
            r.block_size(),
            r.algorithm().name(),
            map.block_size(),
            map.algorithm().name()
        ));
    }
    Ok(r)
}

/// None when the record's stored block hashes to its digest, else the actual digest or
/// why the block could not be read.
fn mapped_fault(readers: &[Result<PieceReader, String>], rec: &BlockRecord) -> Option<String> {
    if rec.is_hole() {
        // Never stored: nothing to read.
        return None;
    }
    let (len, at) = (rec.stored_len, rec.offset);
    let reader = match readers.get(rec.source as usize) {
        None => return Some(format!("source {} is not in the manifest's sources", rec.source)),
        Some(Err(why)) => return Some(format!("{len} bytes at {at} cannot be read: {why}")),
        Some(Ok(r)) => r,
    };
    match reader.read_raw(at, len, rec.raw_len, rec.flags) {
        Err(e) => Some(format!("reading {len} bytes at {at}: {e}")),
        Ok(Err(reason)) => Some(reason),
        Ok(Ok(raw)) => {
            let d = reader.algorithm().digest(&raw);
            (d != rec.digest).then(|| to_hex(&d))
        }
    }
}
