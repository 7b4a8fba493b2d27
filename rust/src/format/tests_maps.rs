//! What the block-map run tests share (tests_holes.rs, tests_copies.rs): a small
//! deterministic generator, stored records that differ by index, a whole-range read, the
//! trailer checksum rewritten after a deliberate edit, and the error a restore meets.

use std::path::Path;

use super::{BlockMapReader, BlockRecord, Result};
use crate::scan::algorithm::Algorithm;

pub(super) const BS: u32 = 4096;
pub(super) const ALG: Algorithm = Algorithm::Blake3;

/// xorshift64: the same sequence on every run, no crate needed.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A stored record of source 0 whose place, lengths and digest all follow from `i`.
pub(super) fn rec(i: u64) -> BlockRecord {
    BlockRecord {
        source: 0,
        offset: 32 + i * 512,
        stored_len: 100 + (i % 400) as u32,
        raw_len: 100 + (i % 400) as u32,
        flags: 0,
        digest: ALG.digest(&i.to_le_bytes()),
    }
}

pub(super) fn read_all(path: &Path, first: u64, count: u64) -> Vec<BlockRecord> {
    let r = BlockMapReader::open(path).unwrap();
    r.range(first, count).unwrap().map(Result::unwrap).collect()
}

/// Recomputes the trailer's checksum over the edited body, so that the damage under test
/// is what a reader meets, not a checksum mismatch.
pub(super) fn reseal_trailer(b: &mut [u8]) {
    let end = b.len() - 296;
    let sum = ALG.digest(&b[..end]);
    b[end + 232..end + 264].copy_from_slice(&sum);
}

/// What a restore meets: the map opened, its checksum and tiling checked, its records read.
pub(super) fn restore_error(p: &Path) -> String {
    let r = match BlockMapReader::open(p) {
        Ok(r) => r,
        Err(e) => return e.to_string(),
    };
    if let Err(e) = r.verify_checksum() {
        return e.to_string();
    }
    match r.range(0, r.count()) {
        Ok(it) => match it.collect::<Result<Vec<_>>>() {
            Ok(v) => format!("read {} records", v.len()),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}
