//! PostgreSQL data page checksums (`src/include/storage/checksum_impl.h`), so a base
//! backup can report a damaged source page instead of storing it silently, as
//! pgBackRest does.
//!
//! The checksum views the page as `[page_size / 128][32]` native (little-endian on every
//! platform PostgreSQL's on-disk format is read here) `u32` words, runs 32 FNV-1a-like
//! lanes over the rows, mixes two rounds of zeroes, folds the lanes with XOR, then mixes
//! in the block number and reduces to 1..=65535 (0 means "no checksum").

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

#[cfg(test)]
mod pass_tests;
#[cfg(test)]
mod tests;

const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;
const CHECKSUM_BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C, 0xF8D4474F,
    0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB, 0xE58F764B, 0x187636BC,
    0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4, 0x783125BB, 0x6CA8EAA2, 0xE407EAC6,
    0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];
/// Byte offset of `pd_checksum` in `PageHeaderData` (after the 8-byte `pd_lsn`).
const PD_CHECKSUM: usize = 8;
/// Byte offset of `pd_upper`: 0 marks a new page that was never initialised.
const PD_UPPER: usize = 14;
/// Blocks per 1 GiB relation segment file (`RELSEG_SIZE` at the default 8 KiB pages).
pub const RELSEG_BYTES: u64 = 1 << 30;

/// Page sizes PostgreSQL can be built with (`--with-blocksize`): 1..32 KiB.
pub fn valid_page_size(size: usize) -> bool {
    (1024..=32768).contains(&size) && size.is_power_of_two()
}

#[inline]
fn comp(sum: u32, value: u32) -> u32 {
    let tmp = sum ^ value;
    tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17)
}

/// `pg_checksum_page(page, blkno)`. `page.len()` must be a valid page size (the caller
/// checks; a wrong length is a programming error, answered with 0, never a panic).
pub fn checksum_page(page: &[u8], blkno: u32) -> u16 {
    if !valid_page_size(page.len()) {
        return 0;
    }
    let mut sums = CHECKSUM_BASE_OFFSETS;
    for (row_no, row) in page.chunks_exact(4 * N_SUMS).enumerate() {
        for (j, word) in row.chunks_exact(4).enumerate() {
            let mut w = [word[0], word[1], word[2], word[3]];
            // pd_checksum is computed as if it were zero: it lives in the upper half of
            // word 2 of row 0 (bytes 8..10).
            if row_no == 0 && j == PD_CHECKSUM / 4 {
                w[0] = 0;
                w[1] = 0;
            }
            sums[j] = comp(sums[j], u32::from_le_bytes(w));
        }
    }
    for _ in 0..2 {
        for s in sums.iter_mut() {
            *s = comp(*s, 0);
        }
    }
    let folded = sums.iter().fold(0u32, |acc, s| acc ^ s) ^ blkno;
    // (x % 65535) + 1 always fits in u16.
    ((folded % 65535) + 1) as u16
}

/// What a page check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCheck {
    Valid,
    /// Never initialised (`pd_upper == 0`, all zeroes included): it holds no checksum.
    New,
    /// Changed since the backup started (LSN at or past its start): WAL replay rewrites
    /// it, and a torn read of it is expected.
    AfterStart,
    /// The stored checksum differs from the computed one.
    Damaged {
        stored: u16,
        computed: u16,
    },
}

/// The page header's LSN (`pd_lsn`: two native `u32`, high word first).
pub fn page_lsn(page: &[u8]) -> u64 {
    let word = |at: usize| {
        page.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
    };
    (u64::from(word(0)) << 32) | u64::from(word(4))
}

/// Checks one page of block number `blkno` against a backup that started at `start_lsn`.
pub fn check_page(page: &[u8], blkno: u32, start_lsn: u64) -> PageCheck {
    // An all-zero page has pd_upper == 0 too.
    if page.len() < 16 || page[PD_UPPER] == 0 && page[PD_UPPER + 1] == 0 {
        return PageCheck::New;
    }
    if page_lsn(page) >= start_lsn {
        return PageCheck::AfterStart;
    }
    let stored = u16::from_le_bytes([page[PD_CHECKSUM], page[PD_CHECKSUM + 1]]);
    let computed = checksum_page(page, blkno);
    if stored == computed {
        PageCheck::Valid
    } else {
        PageCheck::Damaged { stored, computed }
    }
}

/// A damaged page of a relation file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPage {
    /// The block number within the relation (the segment's offset included).
    pub block: u64,
    pub stored: u16,
    pub computed: u16,
}

/// Checks every whole page of a relation segment file, `segment` being its number (the
/// `.N` suffix; 0 for the first). A trailing partial page (a file being extended while
/// it is read) is not checked, as PostgreSQL only ever writes whole pages.
pub fn check_file(path: &Path, segment: u64, start_lsn: u64, page_size: usize) -> io::Result<Vec<BadPage>> {
    if !valid_page_size(page_size) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("page size {page_size} is not a power of two in 1024..32768"),
        ));
    }
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; page_size * 128];
    let mut bad = Vec::new();
    let mut index: u64 = 0;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        bad.extend(check_pages(&buf[..filled], segment, index, start_lsn, page_size));
        index += (filled / page_size) as u64;
        if filled < buf.len() {
            return Ok(bad);
        }
    }
}

/// Damaged pages among the whole pages of `data`, which holds the pages from number
/// `first_page` on of relation segment file `segment` (the backup pass checks each chunk
/// it reads with this, so a relation file is read once). A trailing partial page is not
/// checked. `page_size` must be valid (`valid_page_size`); an invalid one finds nothing.
pub fn check_pages(data: &[u8], segment: u64, first_page: u64, start_lsn: u64, page_size: usize) -> Vec<BadPage> {
    if !valid_page_size(page_size) {
        return Vec::new();
    }
    let base = segment
        .saturating_mul(RELSEG_BYTES / page_size as u64)
        .saturating_add(first_page);
    let mut bad = Vec::new();
    for (k, page) in data.chunks_exact(page_size).enumerate() {
        let block = base.saturating_add(k as u64);
        // Block numbers are 32-bit in PostgreSQL; the checksum mixes in the low word.
        if let PageCheck::Damaged { stored, computed } = check_page(page, block as u32, start_lsn) {
            bad.push(BadPage {
                block,
                stored,
                computed,
            });
        }
    }
    bad
}
