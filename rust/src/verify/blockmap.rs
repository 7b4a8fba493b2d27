//! Checks of a set's block map (docs/FORMAT.md "Block map"): without it a restore cannot
//! find any block, so STANDARD and FULL re-hash it like a piece.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::control::Control;
use super::item::{IssueKind, Item, ItemReport};
use super::piece::{check_presence, compare_checksums};
use crate::engine::piece::{decode_header, HEADER_LEN};
use crate::scan::algorithm::Algorithm;

/// First bytes of a block map.
pub const BLOCKMAP_MAGIC: &[u8; 8] = b"RBBMAP\0\0";
/// First bytes of a block-map trailer.
pub const BLOCKMAP_TRAILER_MAGIC: &[u8; 8] = b"RBBMEND\0";
/// Trailer length of a block map.
pub const BLOCKMAP_TRAILER_LEN: u64 = 88;

/// Length of one record for a digest of `digest_len` bytes.
pub fn record_len(digest_len: usize) -> u64 {
    21 + digest_len as u64
}

/// A block map's header and trailer, validated.
#[derive(Clone, Debug)]
pub struct BlockMapInfo {
    /// Block size of the set.
    pub block_size: u32,
    /// Digest algorithm.
    pub algorithm: Algorithm,
    /// Number of records.
    pub record_count: u64,
    /// Checksum recorded in the trailer.
    pub checksum: Vec<u8>,
}

/// Reads and validates a block map's header and trailer; Err is a message naming the file.
pub fn open_blockmap(file: &File, path: &std::path::Path, size: u64) -> Result<BlockMapInfo, (IssueKind, String)> {
    let shown = path.display();
    let unreadable = |m: String| (IssueKind::Unreadable, m);
    if size < HEADER_LEN + BLOCKMAP_TRAILER_LEN {
        return Err(unreadable(format!("block map {shown}: truncated ({size} bytes)")));
    }
    let mut h = [0u8; 32];
    file.read_exact_at(&mut h, 0)
        .map_err(|e| (IssueKind::Io, format!("block map {shown}: {e}")))?;
    let (block_size, algorithm) =
        decode_header(path, BLOCKMAP_MAGIC, &h).map_err(|e| unreadable(format!("block map {e}")))?;
    let mut t = [0u8; BLOCKMAP_TRAILER_LEN as usize];
    file.read_exact_at(&mut t, size - BLOCKMAP_TRAILER_LEN)
        .map_err(|e| (IssueKind::Io, format!("block map {shown}: {e}")))?;
    if &t[..8] != BLOCKMAP_TRAILER_MAGIC {
        return Err(unreadable(format!(
            "block map {shown}: bad trailer magic (truncated or overwritten)"
        )));
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&t[8..16]);
    let record_count = u64::from_le_bytes(a);
    let checksum_len = usize::from(t[16]);
    if checksum_len != algorithm.digest_size() {
        return Err(unreadable(format!(
            "block map {shown}: trailer checksum length {checksum_len} is wrong"
        )));
    }
    let expected = record_count
        .checked_mul(record_len(algorithm.digest_size()))
        .and_then(|n| n.checked_add(HEADER_LEN + BLOCKMAP_TRAILER_LEN));
    if expected != Some(size) {
        return Err(unreadable(format!(
            "block map {shown}: {record_count} records do not fit a {size}-byte file"
        )));
    }
    Ok(BlockMapInfo {
        block_size,
        algorithm,
        record_count,
        checksum: t[24..24 + checksum_len].to_vec(),
    })
}

/// Runs the STANDARD/FULL checks on a block map (QUICK is `check_presence`).
pub(crate) fn check_blockmap(item: &Item, ctl: &Control, report: &mut ItemReport) {
    let Some(size) = check_presence(item, "block map", report) else {
        return;
    };
    let shown = item.path.display().to_string();
    let file = match File::open(&item.path) {
        Ok(f) => f,
        Err(e) => {
            let kind = if e.kind() == io::ErrorKind::NotFound {
                IssueKind::Missing
            } else {
                IssueKind::Io
            };
            report.issue(kind, format!("block map {shown}: {e}"));
            return;
        }
    };
    let info = match open_blockmap(&file, &item.path, size) {
        Ok(i) => i,
        Err((kind, msg)) => {
            report.issue(kind, msg);
            return;
        }
    };
    match item.algorithm {
        Some(a) if a != info.algorithm => report.issue(
            IssueKind::CatalogMismatch,
            format!(
                "block map {shown} is hashed with {} but the catalog recorded {}",
                info.algorithm.name(),
                a.name()
            ),
        ),
        _ => {}
    }
    match item.block_count {
        Some(n) if n != info.record_count => report.issue(
            IssueKind::CatalogMismatch,
            format!(
                "block map {shown} has {} records but the manifest recorded {n}",
                info.record_count
            ),
        ),
        _ => {}
    }
    let end = size - BLOCKMAP_TRAILER_LEN;
    let mut hasher = info.algorithm.hasher();
    let mut buf = vec![0u8; 0];
    let mut pos = 0u64;
    while pos < end {
        if let Some(reason) = ctl.stop() {
            report.stop(reason);
            return;
        }
        let n = (4u64 << 20).min(end - pos);
        buf.resize(n as usize, 0);
        if let Err(e) = file.read_exact_at(&mut buf, pos) {
            report.issue(
                IssueKind::Io,
                format!("block map {shown}: reading at offset {pos}: {e}"),
            );
            return;
        }
        hasher.update_parallel(&buf);
        report.bytes_read += n;
        ctl.add_bytes(n);
        pos += n;
    }
    report.bytes_read += BLOCKMAP_TRAILER_LEN;
    ctl.add_bytes(BLOCKMAP_TRAILER_LEN);
    compare_checksums(item, "block map", &hasher.finalize(), &info.checksum, report);
}
