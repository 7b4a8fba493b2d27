//! The block map of a set copied into another repository's keys (`copy`, after
//! `rekey_piece` moved its blocks): every stored record is rewritten to where its block
//! went in the target's copy of the piece it names, with the block's new length, flags
//! and digest; parent, hole and copy runs are written again as they are (they name
//! record numbers, which do not change); the map is sealed under the target's map key
//! (or stored plain) and names its parent's new checksum.
//!
//! A record may name a block of an EARLIER set's piece (any index of the set's
//! `sources`). The target's copy of that piece was written by the same pass, so where a
//! block went follows from the source piece's index alone: the target piece holds the
//! same blocks in the same order, back to back from the header, each as long as its
//! encoded bytes plus the target's seal. Its new digest needs the plaintext: the block is
//! opened from the source piece (once, however many records name it). When the target's
//! copy of a piece is at hand (the set's own, just written), its index says all of it.
//!
//! Memory: 16 bytes a block of each piece a record names (its offsets, to find a block by
//! the offset a record gives), 8 more when its places are derived; index entries are read
//! a chunk at a time, never held whole.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::super::{BlockKey, KEY_LEN};
use super::{label_of, open_checked};
use crate::format::blockmap_read::OwnOp;
use crate::format::read::read_exact_at;
use crate::format::sealed_map;
use crate::format::{
    BlockMapReader, BlockMapWriter, BlockRecord, Error, IndexEntry, ParentRef, PieceReader, Result, FLAG_BOUND,
    FLAG_GCM, FLAG_SEALED, HEADER_LEN, SEALED_OVERHEAD,
};
use crate::scan::algorithm::Algorithm;

/// A piece the map's records name (one per index of the set's `sources`).
pub struct SourcePiece {
    /// The piece in the source repository.
    pub path: PathBuf,
    /// What its blocks open with (None: a plain piece).
    pub key: Option<BlockKey>,
    /// The target's copy of it, when it is at hand (its index is read instead of
    /// opening blocks); None: derived from the source piece.
    pub copied: Option<PathBuf>,
}

/// Where a block of a source piece went in the target's copy.
#[derive(Clone)]
struct Place {
    offset: u64,
    stored_len: u32,
    flags: u8,
    digest: Vec<u8>,
}

/// Index entries read per step when a record's entry is not in the one held.
const CHUNK: usize = 1024;

/// One piece's index, read a chunk at a time: a map's records mostly follow the piece's
/// order, so one chunk held keeps memory flat in the piece's size.
struct Index {
    reader: PieceReader,
    first: u64,
    chunk: Vec<IndexEntry>,
}

impl Index {
    fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            reader: PieceReader::open(path)?,
            first: 0,
            chunk: Vec::new(),
        })
    }

    fn entry(&mut self, k: u64) -> Result<&IndexEntry> {
        if k < self.first || k >= self.first + self.chunk.len() as u64 {
            self.chunk = self.reader.entries_from(k)?.take(CHUNK).collect::<Result<Vec<_>>>()?;
            self.first = k;
        }
        self.chunk
            .get((k - self.first) as usize)
            .ok_or_else(|| Error::damaged(self.reader.path(), 0, format!("the index holds no entry {k}")))
    }
}

/// One source piece: its blocks by offset (16 bytes a block), and where they went.
struct Table {
    src: Index,
    /// (offset in the source piece, index entry number), ascending by offset.
    by_offset: Vec<(u64, u64)>,
    /// The target's copy of the piece, when it is at hand.
    copied: Option<Index>,
    /// Otherwise each block's offset in the target's copy (`derive`), and the digests
    /// computed so far (only blocks a record names).
    derived: Vec<u64>,
    digests: HashMap<u64, Vec<u8>>,
}

struct Tables<'a> {
    sources: &'a [SourcePiece],
    /// The target's keys (None: plain) with its cipher, for derived places.
    new: Option<&'a BlockKey>,
    tables: HashMap<usize, Table>,
}

/// The stored length and flags `rekey_piece` gives a block of the source entry `e`: its
/// encoded bytes plus the target's seal (or none).
fn new_shape(e: &IndexEntry, new: Option<&BlockKey>) -> (u32, u8) {
    let encoding = e.flags & !(FLAG_SEALED | FLAG_GCM | FLAG_BOUND);
    let inner = if e.flags & FLAG_SEALED != 0 {
        e.stored_len.saturating_sub(SEALED_OVERHEAD)
    } else {
        e.stored_len
    };
    match new {
        Some(k) => (inner + SEALED_OVERHEAD, encoding | k.seal_flags()),
        None => (inner, encoding),
    }
}

impl Tables<'_> {
    fn load(&self, i: usize) -> Result<Table> {
        let s = &self.sources[i];
        let src = Index::open(&s.path)?;
        let copied = s.copied.as_deref().map(Index::open).transpose()?;
        if let Some(c) = &copied {
            if c.reader.block_count() != src.reader.block_count() {
                return Err(Error::damaged(
                    c.reader.path(),
                    0,
                    format!(
                        "holds {} blocks, its source {} {}",
                        c.reader.block_count(),
                        s.path.display(),
                        src.reader.block_count()
                    ),
                ));
            }
        }
        let mut by_offset = Vec::new();
        let mut derived = Vec::new();
        // The target's copy lays the blocks back to back from the header, in index order.
        let mut at = HEADER_LEN;
        for (k, e) in src.reader.entries()?.enumerate() {
            let e = e?;
            by_offset.push((e.offset, k as u64));
            if copied.is_none() {
                derived.push(at);
                at += u64::from(new_shape(&e, self.new).0);
            }
        }
        // The writer keeps offsets ascending; a piece that does not is sorted once here.
        if !by_offset.windows(2).all(|w| w[0].0 < w[1].0) {
            by_offset.sort_unstable();
        }
        Ok(Table {
            src,
            by_offset,
            copied,
            derived,
            digests: HashMap::new(),
        })
    }

    /// The new place of the block `rec` names; checks that the record describes the
    /// block the source piece holds there. `at`: the record's offset in the map.
    fn place(&mut self, map: &Path, at: u64, rec: &BlockRecord) -> Result<Place> {
        let i = rec.source as usize;
        let named = |m: String| Error::damaged(map, at, format!("record at {at}: {m}"));
        if i >= self.sources.len() {
            return Err(named(format!(
                "names source {} of the set's {}",
                rec.source,
                self.sources.len()
            )));
        }
        if !self.tables.contains_key(&i) {
            let t = self.load(i)?;
            self.tables.insert(i, t);
        }
        let s = &self.sources[i];
        let new_key = self.new;
        let Some(t) = self.tables.get_mut(&i) else {
            return Err(named("its source piece's blocks were not read".into()));
        };
        let k = t
            .by_offset
            .binary_search_by_key(&rec.offset, |&(o, _)| o)
            .map(|n| t.by_offset[n].1)
            .map_err(|_| {
                named(format!(
                    "names offset {} of {}, where no block starts",
                    rec.offset,
                    s.path.display()
                ))
            })?;
        let e = t.src.entry(k)?.clone();
        if (e.stored_len, e.raw_len, e.flags, &e.digest) != (rec.stored_len, rec.raw_len, rec.flags, &rec.digest) {
            return Err(named(format!(
                "describes the block at offset {} of {} otherwise than its index does",
                rec.offset,
                s.path.display()
            )));
        }
        if let Some(c) = t.copied.as_mut() {
            let n = c.entry(k)?.clone();
            if (e.file_no, e.block_index, e.raw_len) != (n.file_no, n.block_index, n.raw_len) {
                return Err(Error::damaged(
                    c.reader.path().to_path_buf(),
                    n.offset,
                    format!(
                        "file #{} block {} is not the source's file #{} block {} (another piece's copy)",
                        n.file_no, n.block_index, e.file_no, e.block_index
                    ),
                ));
            }
            return Ok(Place {
                offset: n.offset,
                stored_len: n.stored_len,
                flags: n.flags,
                digest: n.digest,
            });
        }
        let (stored_len, flags) = new_shape(&e, new_key);
        let digest = match t.digests.get(&k) {
            Some(d) => d.clone(),
            None => {
                let d = digest_of(s, &e, t.src.reader.algorithm(), new_key)?;
                t.digests.insert(k, d.clone());
                d
            }
        };
        Ok(Place {
            // k < the piece's block count: `derived` holds one offset per block.
            offset: t.derived[k as usize],
            stored_len,
            flags,
            digest,
        })
    }
}

/// The digest a block of `s` gets in the target: opened from the source piece, checked,
/// and hashed under the target's MAC key (or the piece's algorithm, plain).
fn digest_of(s: &SourcePiece, e: &IndexEntry, algorithm: Algorithm, new: Option<&BlockKey>) -> Result<Vec<u8>> {
    let file = File::open(&s.path).map_err(|err| Error::io(&s.path, err))?;
    // stored_len <= block_size + the seal's overhead (checked when the entry was read).
    let mut stored = vec![0u8; e.stored_len as usize];
    read_exact_at(&file, &s.path, &mut stored, e.offset)?;
    let key = s
        .key
        .as_ref()
        .map(|k| label_of(&s.path).map(|l| k.for_piece(&l)))
        .transpose()?;
    let (_, raw) = open_checked(key.as_ref(), algorithm, e, stored).map_err(|m| {
        Error::damaged(
            &s.path,
            e.offset,
            format!("file #{} block {}: {m}", e.file_no, e.block_index),
        )
    })?;
    Ok(match new {
        Some(k) => k.digest(&raw),
        None => algorithm.digest(&raw),
    })
}

/// What the new map is sealed with and points at.
pub struct Target<'a> {
    /// The map key it is sealed under (None: a plain map).
    pub map_key: Option<[u8; KEY_LEN]>,
    /// The target's block keys with its cipher (None: plain), for the digests and flags
    /// of blocks whose copy is not at hand.
    pub blocks: Option<&'a BlockKey>,
    /// The parent map as the target holds it (its new checksum).
    pub parent: Option<ParentRef>,
}

/// Writes `dst` (which must not exist; its directory is named after the set) as the map
/// `src` (opened with `old_map_key`, or plain) with every stored record pointing where
/// its block is in the target's pieces (`sources`, by the set's `sources` index). The
/// source map's checksum and runs are checked first. Returns (checksum, records): the
/// sealed container's checksum for a sealed map, as the catalog records it.
pub fn rekey_map(
    src: &Path,
    dst: &Path,
    old_map_key: Option<[u8; KEY_LEN]>,
    sources: &[SourcePiece],
    target: Target<'_>,
) -> Result<(Vec<u8>, u64)> {
    if let Some(k) = old_map_key {
        sealed_map::register_read_key(k);
    }
    let reader = BlockMapReader::open_alone(src)?;
    reader.verify_checksum()?;
    let set = dst
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::damaged(dst, 0, "the path has no set directory"))?
        .to_string();
    // The writer seals the maps of sets with a write key (`sealed_map`): this one's, only
    // for this file.
    sealed_map::set_write_key(&set, target.map_key);
    let written = write(&reader, src, dst, sources, target);
    sealed_map::set_write_key(&set, None);
    written
}

fn write(
    reader: &BlockMapReader,
    src: &Path,
    dst: &Path,
    sources: &[SourcePiece],
    target: Target<'_>,
) -> Result<(Vec<u8>, u64)> {
    let (algorithm, block_size) = (reader.algorithm(), reader.block_size());
    let mut w = match target.parent {
        Some(p) => BlockMapWriter::create_child(dst, algorithm, block_size, p)?,
        None => BlockMapWriter::create(dst, algorithm, block_size)?,
    };
    let mut tables = Tables {
        sources,
        new: target.blocks,
        tables: HashMap::new(),
    };
    reader.walk_own(&mut |op| match op {
        OwnOp::Record { at, record } => {
            let p = tables.place(src, at, &record)?;
            w.push(&BlockRecord {
                offset: p.offset,
                stored_len: p.stored_len,
                flags: p.flags,
                digest: p.digest,
                ..record
            })
        }
        OwnOp::Parent { first, count } => (first..first.saturating_add(count)).try_for_each(|r| w.push_parent(r)),
        OwnOp::Holes { count, last_len } => w.push_holes(count, last_len),
        OwnOp::Copy { first, count } => (first..first.saturating_add(count)).try_for_each(|r| w.push_copy(r)),
    })?;
    w.finish()
}

#[cfg(test)]
#[path = "tests_rekey_map.rs"]
mod tests;
