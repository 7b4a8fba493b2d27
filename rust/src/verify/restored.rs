//! RESTORE_TEST's data pass: a restored file against the manifest's whole-file digest and,
//! when that differs, block by block against the set's block map, so the finding names
//! the block and the chain member (block-map `source`) that stored it. This catches what
//! the piece index cannot: blocks rewritten together with their index entries.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::blockmap::{open_blockmap, record_len};
use crate::engine::piece::HEADER_LEN;
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
    let mut f = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut h = algorithm.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update_parallel(&buf[..n]);
        report.size += n as u64;
    }
    report.bytes_read = report.size;
    report.digest = to_hex(&h.finalize());
    report.matches = report.digest.eq_ignore_ascii_case(expected);
    if !report.matches {
        if let Some(range) = blocks {
            compare_blocks(path, algorithm, range, &mut report)?;
        }
    }
    Ok(report)
}

fn compare_blocks(
    path: &Path,
    alg: Algorithm,
    range: BlockRange<'_>,
    report: &mut RestoredFileReport,
) -> io::Result<()> {
    let bm = match File::open(range.blockmap) {
        Ok(f) => f,
        Err(e) => {
            report
                .notes
                .push(format!("block map {}: {e}", range.blockmap.display()));
            return Ok(());
        }
    };
    let size = bm.metadata()?.len();
    let info = match open_blockmap(&bm, range.blockmap, size) {
        Ok(i) => i,
        Err((_, msg)) => {
            report.notes.push(msg);
            return Ok(());
        }
    };
    let end = range.first_block.checked_add(range.block_count);
    if end.is_none_or(|e| e > info.record_count) {
        report.notes.push(format!(
            "block map {} has {} records; the manifest places this file at {}+{}",
            range.blockmap.display(),
            info.record_count,
            range.first_block,
            range.block_count
        ));
        return Ok(());
    }
    let dl = info.algorithm.digest_size();
    let rec_len = record_len(dl);
    let bs = u64::from(info.block_size);
    let file = File::open(path)?;
    let mut rec = vec![0u8; rec_len as usize];
    let mut block = vec![0u8; info.block_size as usize];
    for k in 0..range.block_count {
        let at = HEADER_LEN + (range.first_block + k) * rec_len;
        bm.read_exact_at(&mut rec, at)?;
        report.bytes_read += rec_len;
        let source = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        let mut a = [0u8; 8];
        a.copy_from_slice(&rec[4..12]);
        let offset = u64::from_le_bytes(a);
        let raw_len = u32::from_le_bytes([rec[16], rec[17], rec[18], rec[19]]) as usize;
        let expected = &rec[21..21 + dl];
        let start = k * bs;
        let want = raw_len.min(block.len());
        let got = read_at_most(&file, &mut block[..want], start)?;
        report.bytes_read += got as u64;
        let actual = if got == raw_len {
            to_hex(&alg.digest(&block[..got]))
        } else {
            format!("{got} bytes restored instead of {raw_len}")
        };
        if actual != to_hex(expected) {
            report.bad_blocks.push(RestoredBlock {
                block_index: k,
                source,
                offset,
                expected: to_hex(expected),
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

/// Re-reads every block a set's block map names, from the pieces of its chain (`pieces`
/// in `sources` order), and compares each with the block map's digest: every block a
/// restore would write, checked without writing it, all faults reported (a restore stops
/// at the first). Errors are about the block map itself.
pub fn check_mapped_blocks(blockmap: &Path, pieces: &[std::path::PathBuf]) -> Result<Vec<MappedBlockFault>, String> {
    use rayon::prelude::*;

    use crate::engine::piece::decode_block;

    let bm = File::open(blockmap).map_err(|e| format!("block map {}: {e}", blockmap.display()))?;
    let size = bm.metadata().map_err(|e| format!("block map {}: {e}", blockmap.display()))?.len();
    let info = open_blockmap(&bm, blockmap, size).map_err(|(_, m)| m)?;
    let files: Vec<Option<File>> = pieces.iter().map(|p| File::open(p).ok()).collect();
    let dl = info.algorithm.digest_size();
    let rec_len = record_len(dl);
    let alg = info.algorithm;
    let mut faults = Vec::new();
    const BATCH: u64 = 8192;
    let mut start = 0;
    while start < info.record_count {
        let n = BATCH.min(info.record_count - start);
        let mut recs = vec![0u8; (n * rec_len) as usize];
        bm.read_exact_at(&mut recs, HEADER_LEN + start * rec_len)
            .map_err(|e| format!("block map {}: {e}", blockmap.display()))?;
        let found: Vec<MappedBlockFault> = recs
            .par_chunks(rec_len as usize)
            .enumerate()
            .filter_map(|(k, rec)| {
                let source = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
                let mut a = [0u8; 8];
                a.copy_from_slice(&rec[4..12]);
                let offset = u64::from_le_bytes(a);
                let stored_len = u32::from_le_bytes([rec[12], rec[13], rec[14], rec[15]]);
                let raw_len = u32::from_le_bytes([rec[16], rec[17], rec[18], rec[19]]);
                let expected = &rec[21..21 + dl];
                let actual = match files.get(source as usize) {
                    None => Some(format!("source {source} is not in the manifest's sources")),
                    Some(None) => Some(format!("piece {} is missing or unreadable", pieces[source as usize].display())),
                    Some(Some(f)) => {
                        let mut buf = vec![0u8; stored_len as usize];
                        match f.read_exact_at(&mut buf, offset) {
                            Err(e) => Some(format!("reading {stored_len} bytes at {offset}: {e}")),
                            Ok(()) => match decode_block(buf, raw_len, rec[20]) {
                                Err(reason) => Some(reason),
                                Ok(raw) => {
                                    let d = alg.digest(&raw);
                                    (d != expected).then(|| to_hex(&d))
                                }
                            },
                        }
                    }
                };
                actual.map(|actual| MappedBlockFault {
                    record: start + k as u64,
                    source,
                    offset,
                    expected: to_hex(expected),
                    actual,
                })
            })
            .collect();
        faults.extend(found);
        start += n;
    }
    Ok(faults)
}
