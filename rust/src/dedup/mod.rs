//! Cross-file and cross-set deduplication of a file-tree backup: a block whose digest
//! and length equal a block already stored (earlier in this pass, or anywhere in the
//! parent's state) is not stored again; its block-map record names the block that holds
//! the bytes (`source`, `offset`), which the format has always allowed: a record's
//! `source` is an index into the set's `sources`, and the parent's `sources` are a prefix
//! of the child's, so a record of the parent's state means the same in the child.
//!
//! Where the twin has a record number the new map can name (a record of the parent's
//! map, or one this pass wrote earlier), the block is written as that reference
//! instead: consecutive ones join into one run (a parent run, or a version-4 copy run),
//! so a file copied inside the tree costs a run header, not a record per block.
//!
//! What a record may refer to is therefore always this set or an ancestor in its chain,
//! which the chain rules (rust/src/chain/) keep as long as the set: a dedup reference
//! adds no dependency retention does not already honour.
//!
//! The index lives in memory for one pass and is never written, so it reveals nothing
//! on disk. It is keyed by the first 16 bytes of the block digest (a collision needs
//! ~2^64 blocks); only collision-resistant algorithms (BLAKE3, SHA-256, SHA-512) are
//! indexed, because with MD5 or SHA-1 a crafted block could stand in for another. It
//! holds at most `cap` entries (~56 bytes each); past that, new blocks are simply not
//! indexed, which costs dedup, never correctness.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::format::{BlockMapReader, BlockRecord, Result};
use crate::scan::algorithm::Algorithm;

/// Default entry cap: 8 M blocks (64 GiB of 8 KiB blocks, ~450 MiB of index).
pub const DEFAULT_CAP: usize = 8 << 20;

/// The block-map record an indexed block has, which a new map can refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Record `n` of the parent's map (a parent run).
    Parent(u64),
    /// Record `n` of the map this pass writes (a copy run).
    Own(u64),
}

/// Where an indexed block's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Location {
    source: u32,
    offset: u64,
    stored_len: u32,
    raw_len: u32,
    flags: u8,
    /// Its record, when known (a resumed pass's adopted blocks are indexed without).
    at: Option<Origin>,
}

/// Why a block of a chunk is not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dup {
    /// An identical block is already stored: this record names it, and where known the
    /// map record that holds it.
    Known(BlockRecord, Option<Origin>),
    /// The same as block `i` of this chunk, stored first.
    Earlier(usize),
}

/// The in-memory block index of one backup pass.
#[derive(Debug)]
pub struct DedupIndex {
    map: HashMap<[u8; 16], Location>,
    cap: usize,
    /// The parent's block map, read into the index the first time a block misses.
    parent: Option<PathBuf>,
    /// Blocks this pass did not store because of the index.
    pub hits: u64,
}

impl DedupIndex {
    /// An index for a pass with `algorithm`; None when that algorithm is not collision
    /// resistant (see the module comment).
    pub fn new(algorithm: Algorithm, parent: Option<PathBuf>, cap: usize) -> Option<Self> {
        if matches!(algorithm, Algorithm::Md5 | Algorithm::Sha1) {
            return None;
        }
        Some(Self {
            map: HashMap::new(),
            cap,
            parent,
            hits: 0,
        })
    }

    fn key(digest: &[u8]) -> Option<[u8; 16]> {
        digest.get(..16).and_then(|k| k.try_into().ok())
    }

    /// Reads every record of the parent's state into the index, once. The chain's
    /// checksums are checked first: a damaged parent map must not lend its locations.
    fn seed(&mut self) -> Result<()> {
        let Some(path) = self.parent.take() else {
            return Ok(());
        };
        let reader = BlockMapReader::open(&path)?;
        reader.verify_checksum()?;
        for (n, rec) in (0u64..).zip(reader.range(0, reader.count())?) {
            let rec = rec?;
            // A hole block has no stored bytes to lend.
            if !rec.is_hole() {
                self.insert_at(&rec, Some(Origin::Parent(n)));
            }
        }
        Ok(())
    }

    /// Indexes a block now stored at `rec`, whose map record is not known.
    pub fn insert(&mut self, rec: &BlockRecord) {
        self.insert_at(rec, None);
    }

    /// Indexes a block now stored at `rec`, the map's record `at`.
    pub fn insert_at(&mut self, rec: &BlockRecord, at: Option<Origin>) {
        let Some(key) = Self::key(&rec.digest) else { return };
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            return;
        }
        self.map.entry(key).or_insert(Location {
            source: rec.source,
            offset: rec.offset,
            stored_len: rec.stored_len,
            raw_len: rec.raw_len,
            flags: rec.flags,
            at,
        });
    }

    fn lookup(&self, digest: &[u8], raw_len: u32) -> Option<(BlockRecord, Option<Origin>)> {
        let loc = self.map.get(&Self::key(digest)?)?;
        (loc.raw_len == raw_len).then(|| {
            let rec = BlockRecord {
                source: loc.source,
                offset: loc.offset,
                stored_len: loc.stored_len,
                raw_len: loc.raw_len,
                flags: loc.flags,
                digest: digest.to_vec(),
            };
            (rec, loc.at)
        })
    }

    /// Decides, for one chunk, which of the blocks marked in `store` need storing: those
    /// whose twin is indexed or appears earlier in the chunk are unmarked and get a
    /// [`Dup`]. `lens[i]` is block i's length.
    pub fn plan(&mut self, digests: &[Vec<u8>], lens: &[u32], store: &mut [bool]) -> Result<Vec<Option<Dup>>> {
        let mut out = vec![None; digests.len()];
        let mut first_in_chunk: HashMap<(&[u8], u32), usize> = HashMap::new();
        for i in 0..digests.len() {
            if !store[i] {
                continue;
            }
            let (d, len) = (&digests[i], lens[i]);
            if self.parent.is_some() && self.lookup(d, len).is_none() {
                self.seed()?;
            }
            if let Some((rec, at)) = self.lookup(d, len) {
                out[i] = Some(Dup::Known(rec, at));
            } else if let Some(&j) = first_in_chunk.get(&(&d[..], len)) {
                out[i] = Some(Dup::Earlier(j));
            } else {
                first_in_chunk.insert((&d[..], len), i);
                continue;
            }
            store[i] = false;
            self.hits += 1;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
