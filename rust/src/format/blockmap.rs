//! Block maps: for every block of every file of a set's state, which source piece holds
//! it, where, and its digest (docs/FORMAT.md). Version 1 stores one record per block;
//! version 2 stores runs: records for the blocks this set stored, and for unchanged runs
//! one small reference to the parent's map, so a map grows with what changed. Version 3
//! adds hole runs: a run of blocks a sparse file never had allocated is one run header,
//! not a record per block. Version 4 adds copy runs: blocks equal to a run of earlier
//! records of the same map (a file copied inside the tree) are one run header, not a
//! record per block. This file writes them and decodes records; `blockmap_read` reads
//! and resolves them.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::block::{check_fields, Field};
use super::checkpoint::MapLog;
use super::error::{Error, Result};
use super::header::{check_block_size, u32_at, u64_at, Header, Kind, Layout, HEADER_LEN};
use super::sealed_map::MapOut;
use crate::scan::algorithm::{Algorithm, Hasher};

/// Version 2: length of a run header (kind, padding, count, parent's first record).
pub(crate) const RUN_HEADER_LEN: u64 = 24;
/// Version 2 run kind: `count` records of blocks this set stored follow.
pub(crate) const RUN_STORED: u8 = 1;
/// Version 2 run kind: the next `count` blocks are the parent map's records from `first` on.
pub(crate) const RUN_PARENT: u8 = 2;
/// Version 3 run kind: the next `count` blocks are holes (all zero, never stored); the
/// run header's last field is the raw length of its last block (the others are whole).
pub(crate) const RUN_HOLE: u8 = 3;
/// Version 4 run kind: the next `count` blocks are this map's own records from `first`
/// on, all of which lie before the run (so resolving one always moves backwards and ends).
pub(crate) const RUN_COPY: u8 = 4;
/// The source a hole record names when a reader yields it: no source has this index
/// (`RecordIter::limit_sources` bounds real ones below the set's sources), so code that
/// does not know holes fails on one instead of reading a block that was never stored.
pub const HOLE_SOURCE: u32 = u32::MAX;
/// Version 2: a stored run is cut after this many records, so the writer holds at most
/// one run's records in memory before it knows the run's length.
const MAX_STORED_RUN: usize = 4096;
/// Version 2 trailer: where the parent map's checksum, its path and this map's checksum are.
pub(crate) const PARENT_SUM_AT: usize = 40;
/// Version 2 trailer: the parent map's path, relative to this map's directory.
pub(crate) const PARENT_PATH_AT: usize = 104;
/// Room for the parent map's path.
pub(crate) const MAX_PARENT_PATH: usize = 128;
/// Version 2 trailer: this map's checksum.
pub(crate) const SUM_AT_V2: usize = 232;

/// The map a version-2 map's references resolve in: its path relative to the new map's
/// directory (`../<parent set>/blockmap`) and its recorded checksum, which binds the
/// reference to exactly that file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentRef {
    /// Path relative to the directory of the map that refers to it.
    pub rel_path: String,
    /// The parent map's trailer checksum.
    pub checksum: Vec<u8>,
}

/// Whether `rel` is a parent path a map may carry: `../<name>/<file>`, nothing that
/// climbs further or reaches outside the repository's `sets/` directory.
pub(crate) fn check_parent_path(rel: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = rel.split('/').collect();
    let ok = rel.len() <= MAX_PARENT_PATH
        && parts.len() == 3
        && parts[0] == ".."
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "parent block map path {rel:?} is not ../<set>/<file> of at most {MAX_PARENT_PATH} bytes"
        ))
    }
}

/// Where one block lives and what it hashes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRecord {
    /// Index into the manifest's `sources` list.
    pub source: u32,
    /// Offset of the stored bytes in that source's piece.
    pub offset: u64,
    /// Bytes on disk.
    pub stored_len: u32,
    /// Bytes of the raw block.
    pub raw_len: u32,
    /// Bit 0: zstd.
    pub flags: u8,
    /// Digest of the raw block.
    pub digest: Vec<u8>,
}

impl BlockRecord {
    /// A block of a hole run, `raw_len` zero bytes that were never stored.
    pub fn hole(raw_len: u32) -> Self {
        Self {
            source: HOLE_SOURCE,
            offset: 0,
            stored_len: 0,
            raw_len,
            flags: 0,
            digest: Vec::new(),
        }
    }

    /// Whether this is a block of a hole run (its bytes are zero, nothing is stored).
    pub fn is_hole(&self) -> bool {
        self.source == HOLE_SOURCE
    }

    fn encode(&self, layout: Layout, out: &mut Vec<u8>) {
        // A version-2 stored record is a version-1 record.
        match layout {
            Layout::V1 | Layout::V2 | Layout::V3 | Layout::V4 => {
                out.extend_from_slice(&self.source.to_le_bytes());
                out.extend_from_slice(&self.offset.to_le_bytes());
                out.extend_from_slice(&self.stored_len.to_le_bytes());
                out.extend_from_slice(&self.raw_len.to_le_bytes());
                out.push(self.flags);
                out.extend_from_slice(&self.digest);
            }
        }
    }

    /// Decodes one record (`b` is exactly one record long); Err is (field offset inside
    /// the record, what is wrong).
    pub(crate) fn decode(layout: Layout, b: &[u8], block_size: u32) -> std::result::Result<Self, (u64, String)> {
        let r = match layout {
            Layout::V1 | Layout::V2 | Layout::V3 | Layout::V4 => Self {
                source: u32_at(b, 0),
                offset: u64_at(b, 4),
                stored_len: u32_at(b, 12),
                raw_len: u32_at(b, 16),
                flags: b[20],
                digest: b[21..].to_vec(),
            },
        };
        check_fields(r.stored_len, r.raw_len, r.flags, block_size).map_err(|(field, m)| {
            let at = match (layout, field) {
                (Layout::V1 | Layout::V2 | Layout::V3 | Layout::V4, Field::StoredLen) => 12,
                (Layout::V1 | Layout::V2 | Layout::V3 | Layout::V4, Field::RawLen) => 16,
                (Layout::V1 | Layout::V2 | Layout::V3 | Layout::V4, Field::Flags) => 20,
            };
            (at, m)
        })?;
        if r.offset < HEADER_LEN {
            return Err((4, format!("block offset {} lies inside a piece header", r.offset)));
        }
        Ok(r)
    }
}

/// Writes a block map of the current version; `finish` appends the trailer and fsyncs.
pub struct BlockMapWriter {
    path: PathBuf,
    header: Header,
    /// The plain file, or sealed frames of it in an encrypted repository (`sealed_map`).
    out: BufWriter<MapOut>,
    hasher: Hasher,
    /// Records of the state written so far (stored and referred to).
    count: u64,
    parent: Option<ParentRef>,
    /// Version 2: the stored run being collected (encoded records) and its length.
    stored: Vec<u8>,
    stored_n: usize,
    /// Version 2: the reference run being extended: (parent's first record, count).
    reference: Option<(u64, u64)>,
    /// Version 3: the hole run being extended: (count, raw length of its last block).
    hole: Option<(u64, u32)>,
    /// Version 4: the copy run being extended: (this map's first record, count).
    copy: Option<(u64, u64)>,
    runs: u64,
    stored_total: u64,
    scratch: Vec<u8>,
    /// A resumable pass logs every operation here (`checkpoint::MapLog`).
    log: Option<MapLog>,
}

impl BlockMapWriter {
    /// Creates `path` (which must not exist), a map with no parent.
    pub fn create(path: &Path, algorithm: Algorithm, block_size: u32) -> Result<Self> {
        Self::create_layout(path, algorithm, block_size, None, Layout::written(Kind::BlockMap))
    }

    /// Creates `path` (which must not exist), a map whose unchanged blocks refer to `parent`.
    pub fn create_child(path: &Path, algorithm: Algorithm, block_size: u32, parent: ParentRef) -> Result<Self> {
        Self::create_layout(
            path,
            algorithm,
            block_size,
            Some(parent),
            Layout::written(Kind::BlockMap),
        )
    }

    /// `create` in a given layout: the tests' way to write what older releases wrote.
    pub(crate) fn create_layout(
        path: &Path,
        algorithm: Algorithm,
        block_size: u32,
        parent: Option<ParentRef>,
        layout: Layout,
    ) -> Result<Self> {
        let header = Header {
            layout,
            ..Header::new(Kind::BlockMap, block_size, algorithm)
        };
        let invalid = |m: String| Error::io(path, io::Error::new(io::ErrorKind::InvalidInput, m));
        check_block_size(block_size).map_err(invalid)?;
        if let Some(p) = &parent {
            if layout == Layout::V1 {
                return Err(invalid("a version-1 block map has no parent".into()));
            }
            check_parent_path(&p.rel_path).map_err(invalid)?;
            if p.checksum.len() != algorithm.digest_size() {
                return Err(invalid(format!("parent checksum of {} bytes", p.checksum.len())));
            }
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let out = MapOut::new(file, path, algorithm)?;
        let mut w = Self {
            path: path.to_path_buf(),
            header,
            out: BufWriter::with_capacity(1 << 18, out),
            hasher: algorithm.hasher(),
            count: 0,
            parent,
            stored: Vec::new(),
            stored_n: 0,
            reference: None,
            hole: None,
            copy: None,
            runs: 0,
            stored_total: 0,
            scratch: Vec::with_capacity(128),
            log: None,
        };
        w.put(&header.encode())?;
        Ok(w)
    }

    fn put(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data).map_err(|e| Error::io(&self.path, e))?;
        self.hasher.update(data);
        Ok(())
    }

    fn run_header(&mut self, kind: u8, count: u64, first: u64) -> Result<()> {
        let mut h = [0u8; RUN_HEADER_LEN as usize];
        h[0] = kind;
        h[8..16].copy_from_slice(&count.to_le_bytes());
        h[16..24].copy_from_slice(&first.to_le_bytes());
        self.runs += 1;
        self.put(&h)
    }

    /// Writes the run being collected, if any.
    fn close_run(&mut self) -> Result<()> {
        if let Some((first, n)) = self.reference.take() {
            self.run_header(RUN_PARENT, n, first)?;
        }
        if let Some((n, last)) = self.hole.take() {
            self.run_header(RUN_HOLE, n, u64::from(last))?;
        }
        if let Some((first, n)) = self.copy.take() {
            self.run_header(RUN_COPY, n, first)?;
        }
        if self.stored_n > 0 {
            self.run_header(RUN_STORED, self.stored_n as u64, 0)?;
            let stored = std::mem::take(&mut self.stored);
            let r = self.put(&stored);
            self.stored = stored;
            self.stored.clear();
            self.stored_total += self.stored_n as u64;
            self.stored_n = 0;
            r?;
        }
        Ok(())
    }

    /// Appends the next block's record (a block this set stored, or in version 1 any block).
    pub fn push(&mut self, rec: &BlockRecord) -> Result<()> {
        if let Err((_, m)) = check_fields(rec.stored_len, rec.raw_len, rec.flags, self.header.block_size) {
            let m = format!("record {}: {m}", self.count);
            return Err(Error::io(&self.path, io::Error::new(io::ErrorKind::InvalidInput, m)));
        }
        if rec.is_hole() {
            let m = format!("record {}: a hole is written with push_holes", self.count);
            return Err(Error::io(&self.path, io::Error::new(io::ErrorKind::InvalidInput, m)));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        rec.encode(self.header.layout, &mut scratch);
        let r = match self.header.layout {
            Layout::V1 => self.put(&scratch),
            Layout::V2 | Layout::V3 | Layout::V4 => {
                if self.reference.is_some()
                    || self.hole.is_some()
                    || self.copy.is_some()
                    || self.stored_n == MAX_STORED_RUN
                {
                    self.close_run()?;
                }
                self.stored.extend_from_slice(&scratch);
                self.stored_n += 1;
                Ok(())
            }
        };
        self.scratch = scratch;
        r?;
        if let Some(log) = self.log.as_mut() {
            log.record(rec)?;
        }
        self.count += 1;
        Ok(())
    }

    /// Appends the next block as the parent map's record `parent_record` (version 2):
    /// consecutive parent records become one run.
    pub fn push_parent(&mut self, parent_record: u64) -> Result<()> {
        if self.parent.is_none() {
            let m = format!("record {}: refers to a parent, but this block map has none", self.count);
            return Err(Error::io(&self.path, io::Error::new(io::ErrorKind::InvalidInput, m)));
        }
        match &mut self.reference {
            Some((first, n)) if first.checked_add(*n) == Some(parent_record) => *n += 1,
            _ => {
                self.close_run()?;
                self.reference = Some((parent_record, 1));
            }
        }
        if let Some(log) = self.log.as_mut() {
            log.parent(parent_record)?;
        }
        self.count += 1;
        Ok(())
    }

    /// Appends `count` blocks of a hole (version 3): whole blocks but the last, which is
    /// `last_len` bytes (a file's tail). Holes that follow one another with whole blocks
    /// between them become one run.
    pub fn push_holes(&mut self, count: u64, last_len: u32) -> Result<()> {
        let bs = self.header.block_size;
        let invalid = |m: String| Error::io(&self.path, io::Error::new(io::ErrorKind::InvalidInput, m));
        if !self.header.layout.has_holes() {
            return Err(invalid(format!(
                "record {}: a version-{} block map has no hole runs",
                self.count,
                self.header.layout.version()
            )));
        }
        if count == 0 || last_len == 0 || last_len > bs {
            return Err(invalid(format!(
                "record {}: a hole of {count} blocks ending with {last_len} bytes (blocks are {bs} bytes)",
                self.count
            )));
        }
        let end = self
            .count
            .checked_add(count)
            .ok_or_else(|| invalid("more than 2^64 records".into()))?;
        match &mut self.hole {
            Some((n, last)) if *last == bs => {
                *n += count;
                *last = last_len;
            }
            _ => {
                self.close_run()?;
                self.hole = Some((count, last_len));
            }
        }
        if let Some(log) = self.log.as_mut() {
            log.holes(count, last_len)?;
        }
        self.count = end;
        Ok(())
    }

    /// Appends the next block as this map's own earlier record `record` (version 4): a
    /// block equal to one already in the map (a copy inside the tree). Consecutive
    /// records become one copy run; a run never reaches its own records, so every
    /// record it names is written before it.
    pub fn push_copy(&mut self, record: u64) -> Result<()> {
        let invalid = |m: String| Error::io(&self.path, io::Error::new(io::ErrorKind::InvalidInput, m));
        if !self.header.layout.has_copies() {
            return Err(invalid(format!(
                "record {}: a version-{} block map has no copy runs",
                self.count,
                self.header.layout.version()
            )));
        }
        if record >= self.count {
            return Err(invalid(format!(
                "record {}: a copy of record {record}, which is not written yet",
                self.count
            )));
        }
        match &mut self.copy {
            // The run starts at count - n: extending it keeps every target below that.
            Some((first, n)) if *first + *n == record && record < self.count - *n => *n += 1,
            _ => {
                self.close_run()?;
                self.copy = Some((record, 1));
            }
        }
        if let Some(log) = self.log.as_mut() {
            log.copy(record)?;
        }
        self.count += 1;
        Ok(())
    }

    /// Whether this map refers to a parent (`push_parent` is allowed).
    pub fn has_parent(&self) -> bool {
        self.parent.is_some()
    }

    /// Whether this map may hold copy runs (`push_copy` is allowed).
    pub fn has_copies(&self) -> bool {
        self.header.layout.has_copies()
    }

    /// Logs every operation from now on to `log`, so a resumed pass can apply them again.
    pub fn log_to(&mut self, log: MapLog) {
        self.log = Some(log);
    }

    /// The operation log, if any.
    pub fn log_mut(&mut self) -> Option<&mut MapLog> {
        self.log.as_mut()
    }

    /// Records written so far (the next record's number).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends the trailer, fsyncs; returns (checksum, record count).
    pub fn finish(mut self) -> Result<(Vec<u8>, u64)> {
        self.close_run()?;
        let checksum = self.hasher.finalize();
        let len = self.header.trailer_len() as usize;
        let mut t = Vec::with_capacity(len);
        t.extend_from_slice(Kind::BlockMap.trailer_magic());
        t.extend_from_slice(&self.count.to_le_bytes());
        match self.header.layout {
            Layout::V1 => {
                // A digest is at most 64 bytes.
                t.push(checksum.len() as u8);
                t.extend_from_slice(&[0u8; 7]);
                t.extend_from_slice(&checksum);
            }
            Layout::V2 | Layout::V3 | Layout::V4 => {
                t.extend_from_slice(&self.runs.to_le_bytes());
                t.extend_from_slice(&self.stored_total.to_le_bytes());
                t.push(checksum.len() as u8);
                let (sum, rel) = match &self.parent {
                    Some(p) => (p.checksum.as_slice(), p.rel_path.as_bytes()),
                    None => (&[][..], &[][..]),
                };
                // check_parent_path bounded it to 128 bytes.
                t.push(rel.len() as u8);
                t.resize(PARENT_SUM_AT, 0);
                t.extend_from_slice(sum);
                t.resize(PARENT_PATH_AT, 0);
                t.extend_from_slice(rel);
                t.resize(SUM_AT_V2, 0);
                t.extend_from_slice(&checksum);
            }
        }
        t.resize(len, 0);
        self.out.write_all(&t).map_err(|e| Error::io(&self.path, e))?;
        let (file, sealed_sum) = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?
            .finish()?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        // A sealed map is known by its container's checksum (what a keyless check sees).
        Ok((sealed_sum.unwrap_or(checksum), self.count))
    }
}

#[cfg(test)]
#[path = "tests_copies.rs"]
mod tests_copies;
