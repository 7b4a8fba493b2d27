//! Reading block maps of every version, and resolving a version-2 map's references
//! through the chain of its parents' maps.
//!
//! A map of version 2 names its parent map (path and checksum); `open` opens the whole
//! chain, down to the first map without a parent (a FULL's, or any version-1 map, which
//! is cumulative). Each level keeps a cursor over its run headers (`blockmap_runs`), a
//! few KiB whatever its number of runs, so a restore's memory is flat in the chain's
//! runs and linear only in its depth. A range of records is resolved lazily, interval by
//! interval, with a stack as deep as the chain: a merge of the levels' cursors, each
//! moving forward with the records it serves.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::blockmap::{
    check_parent_path, BlockRecord, MAX_PARENT_PATH, PARENT_PATH_AT, PARENT_SUM_AT, RUN_HEADER_LEN, SUM_AT_V2,
};
use super::blockmap_runs::{Cursor, Frame, Run, RunKind, StreamHash};
use super::error::{Error, Result};
use super::header::{u64_at, Header, Kind, Layout, HEADER_LEN, MAX_DIGEST};
use super::piece::check_zero;
use super::read::{hash_prefix, open_framed, Framed};
use super::sealed_map::{self, MapSrc, SealedReader};
use crate::scan::algorithm::{to_hex, Algorithm};

#[path = "blockmap_walk.rs"]
mod walk;
pub use walk::OwnOp;

/// Bytes of records read per step of a `RecordIter`.
const READ_STEP: usize = 1 << 16;
/// Copies of copies a range may pass through beyond two per map of the chain (what a
/// backup writes: a copy names stored records, a parent run one more map): a crafted
/// map of copies of copies would otherwise grow the stack with its runs.
const MAX_NESTING: usize = 64;

/// One map file of a chain.
struct Level {
    path: PathBuf,
    /// The file, or the plain view of a sealed map (offsets below are plain offsets).
    src: MapSrc,
    header: Header,
    size: u64,
    count: u64,
    /// The map's checksum: its trailer's, or a sealed map's container checksum (what the
    /// catalog and a child's `parent_sum` record).
    checksum: Vec<u8>,
    /// A sealed map: the plain map's own trailer checksum (checked by `finish_checksums`).
    plain_sum: Option<Vec<u8>>,
    /// Version 2: runs in the file, and where they end (the trailer's offset).
    runs: u64,
    runs_end: u64,
    /// Version 2: where the scan of the run headers stands (bounded memory, see
    /// `blockmap_runs`); interior mutability because readers share the map.
    cursor: RefCell<Cursor>,
    /// The checksum computed as the map is read, when the caller asked for it.
    hash: RefCell<Option<StreamHash>>,
    /// Version 2: the parent's path (resolved) and recorded checksum.
    parent: Option<(PathBuf, Vec<u8>)>,
}

impl Level {
    fn open(path: &Path) -> Result<Self> {
        let (src, size, header, t, at) = if sealed_map::is_sealed(path)? {
            let r = SealedReader::open(path)?;
            let (size, header, t, at) = frame_plain(&r, path)?;
            (MapSrc::Sealed(r), size, header, t, at)
        } else {
            let Framed {
                file,
                size,
                header,
                trailer,
                trailer_at,
            } = open_framed(path, Kind::BlockMap)?;
            (MapSrc::Plain(file), size, header, trailer, trailer_at)
        };
        if &t[..8] != Kind::BlockMap.trailer_magic() {
            return Err(Error::damaged(
                path,
                at,
                "bad block map trailer magic (truncated or overwritten)",
            ));
        }
        let count = u64_at(&t, 8);
        let mut level = Self {
            path: path.to_path_buf(),
            src,
            header,
            size,
            count,
            checksum: Vec::new(),
            plain_sum: None,
            runs: 0,
            runs_end: at,
            cursor: RefCell::new(Cursor::default()),
            hash: RefCell::new(None),
            parent: None,
        };
        match header.layout {
            Layout::V1 => level.trailer_v1(&t, at)?,
            Layout::V2 | Layout::V3 | Layout::V4 => level.trailer_v2(&t, at)?,
        }
        if let MapSrc::Sealed(r) = &level.src {
            let outer = r.container().checksum.clone();
            level.plain_sum = Some(std::mem::replace(&mut level.checksum, outer));
        }
        Ok(level)
    }

    fn record_len(&self) -> u64 {
        self.header.layout.record_len(self.header.digest_len())
    }

    fn check_sum_len(&self, t: &[u8], i: usize, at: u64) -> Result<usize> {
        let clen = usize::from(t[i]);
        if clen != self.header.digest_len() {
            return Err(Error::damaged(
                &self.path,
                at + i as u64,
                format!("trailer checksum length {clen} is wrong"),
            ));
        }
        Ok(clen)
    }

    fn trailer_v1(&mut self, t: &[u8], at: u64) -> Result<()> {
        let path = self.path.clone();
        let clen = self.check_sum_len(t, 16, at)?;
        check_zero(&path, t, 17..24, at)?;
        check_zero(&path, t, 24 + clen..24 + MAX_DIGEST, at)?;
        self.checksum = t[24..24 + clen].to_vec();
        let rec = self.record_len();
        let fits = self
            .count
            .checked_mul(rec)
            .and_then(|n| n.checked_add(HEADER_LEN + t.len() as u64));
        if fits != Some(self.size) {
            return Err(Error::damaged(
                &path,
                at + 8,
                format!("{} records do not fit a {}-byte block map", self.count, self.size),
            ));
        }
        Ok(())
    }

    fn trailer_v2(&mut self, t: &[u8], at: u64) -> Result<()> {
        let path = self.path.clone();
        let runs = u64_at(t, 16);
        let stored = u64_at(t, 24);
        let clen = self.check_sum_len(t, 32, at)?;
        let plen = usize::from(t[33]);
        check_zero(&path, t, 34..PARENT_SUM_AT, at)?;
        check_zero(&path, t, SUM_AT_V2 + clen..SUM_AT_V2 + MAX_DIGEST, at)?;
        self.checksum = t[SUM_AT_V2..SUM_AT_V2 + clen].to_vec();
        if plen == 0 {
            check_zero(&path, t, PARENT_SUM_AT..SUM_AT_V2, at)?;
        } else {
            if plen > MAX_PARENT_PATH {
                return Err(Error::damaged(
                    &path,
                    at + 33,
                    format!("parent path length {plen} is over {MAX_PARENT_PATH}"),
                ));
            }
            check_zero(&path, t, PARENT_SUM_AT + clen..PARENT_PATH_AT, at)?;
            check_zero(&path, t, PARENT_PATH_AT + plen..SUM_AT_V2, at)?;
            let rel = std::str::from_utf8(&t[PARENT_PATH_AT..PARENT_PATH_AT + plen])
                .map_err(|_| Error::damaged(&path, at + PARENT_PATH_AT as u64, "parent path is not UTF-8"))?;
            check_parent_path(rel).map_err(|m| Error::damaged(&path, at + PARENT_PATH_AT as u64, m))?;
            // check_parent_path: `../<set>/<file>`, resolved lexically (no `..` in paths shown).
            let (set, file) = rel[3..].split_once('/').unwrap_or_default();
            let sets = path.parent().and_then(Path::parent).ok_or_else(|| {
                Error::damaged(
                    &path,
                    at + PARENT_PATH_AT as u64,
                    "parent path climbs above the file system root",
                )
            })?;
            let sum = t[PARENT_SUM_AT..PARENT_SUM_AT + clen].to_vec();
            self.parent = Some((sets.join(set).join(file), sum));
        }
        let rec = self.record_len();
        let fits = runs
            .checked_mul(RUN_HEADER_LEN)
            .zip(stored.checked_mul(rec))
            .and_then(|(a, b)| a.checked_add(b))
            .and_then(|n| n.checked_add(HEADER_LEN + t.len() as u64));
        if fits != Some(self.size) {
            return Err(Error::damaged(
                &path,
                at + 16,
                format!(
                    "{runs} runs holding {stored} records do not fit a {}-byte block map",
                    self.size
                ),
            ));
        }
        self.runs = runs;
        Ok(())
    }

    /// Reads `buf.len()` bytes at `pos`, feeding the streaming checksum if one runs.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<()> {
        self.src.read_at(&self.path, buf, pos)?;
        match self.hash.borrow_mut().as_mut() {
            Some(h) => h.feed(&|b, p| self.src.read_at(&self.path, b, p), buf, pos),
            None => Ok(()),
        }
    }

    /// The run holding state record `v` (version 2), from the cursor.
    fn run_at(&self, v: u64) -> Result<Run> {
        self.cursor
            .borrow_mut()
            .run_at(&self.frame(), v, &mut |buf, pos| self.read_at(buf, pos))
    }

    fn frame(&self) -> Frame<'_> {
        Frame {
            path: &self.path,
            record_len: self.record_len(),
            count: self.count,
            runs: self.runs,
            end: self.runs_end,
            has_parent: self.parent.is_some(),
            holes: self.header.layout.has_holes(),
            block_size: self.header.block_size,
            copies: self.header.layout.has_copies(),
        }
    }

    /// Reads every run header once (the records of stored runs are skipped) and checks
    /// that the runs tile the state's records and the file exactly.
    fn check_runs(&self) -> Result<()> {
        if self.header.layout == Layout::V1 {
            return Ok(());
        }
        self.cursor
            .borrow_mut()
            .check_all(&self.frame(), &mut |buf, pos| self.read_at(buf, pos))
    }
}

/// The header and trailer of a sealed map's plain bytes, checked as `open_framed` checks
/// a file's: (plain size, header, trailer, trailer offset).
fn frame_plain(r: &SealedReader, path: &Path) -> Result<(u64, Header, Vec<u8>, u64)> {
    let size = r.len();
    if size < HEADER_LEN {
        return Err(Error::damaged(
            path,
            size,
            format!("sealed block map holds {size} plain bytes, no header"),
        ));
    }
    let mut h = [0u8; HEADER_LEN as usize];
    r.read_at(&mut h, 0)?;
    let header = Header::decode(path, Kind::BlockMap, &h)?;
    let tlen = header.trailer_len();
    if size < HEADER_LEN + tlen {
        return Err(Error::damaged(
            path,
            size,
            format!("sealed block map holds {size} plain bytes, no room for a {tlen}-byte trailer"),
        ));
    }
    let at = size - tlen;
    // tlen is a layout's fixed trailer length (<= 296).
    let mut t = vec![0u8; tlen as usize];
    r.read_at(&mut t, at)?;
    Ok((size, header, t, at))
}

/// Reads a block map of any version this build reads, with the chain of maps its
/// records resolve through.
pub struct BlockMapReader {
    /// `chain[0]` is the map opened; `chain[i + 1]` is `chain[i]`'s parent.
    chain: Vec<Level>,
}

impl BlockMapReader {
    /// Opens `path` and every map it refers to, checking each one's header and trailer
    /// against its size, each parent's checksum against what its child recorded, and
    /// that the chain has one block size and algorithm and no loop.
    /// Run headers are read as records are resolved, not here: a damaged one is an
    /// error of the `range` that reaches it.
    pub fn open(path: &Path) -> Result<Self> {
        let mut map = Self {
            chain: vec![Level::open(path)?],
        };
        map.open_parents()?;
        Ok(map)
    }

    /// Opens `path` alone (its parents are not opened) and checks every run header:
    /// what checking one map's own bytes needs. Records that refer to a parent cannot be
    /// resolved.
    pub fn open_alone(path: &Path) -> Result<Self> {
        let level = Level::open(path)?;
        level.check_runs()?;
        Ok(Self { chain: vec![level] })
    }

    fn open_parents(&mut self) -> Result<()> {
        let chain = &mut self.chain;
        let path = chain[0].path.clone();
        let mut seen = HashSet::new();
        seen.insert(path.to_path_buf());
        loop {
            let child = chain.len() - 1;
            let Some((ppath, psum)) = chain[child].parent.clone() else {
                break;
            };
            let cpath = chain[child].path.clone();
            let tstart = chain[child].size - chain[child].header.trailer_len();
            let named = |m: String| Error::damaged(&cpath, tstart + PARENT_PATH_AT as u64, m);
            if !seen.insert(ppath.clone()) {
                return Err(named(format!(
                    "the chain of parent block maps loops back to {}",
                    ppath.display()
                )));
            }
            let parent = Level::open(&ppath)?;
            if parent.checksum != psum {
                return Err(Error::damaged(
                    &cpath,
                    tstart + PARENT_SUM_AT as u64,
                    format!(
                        "parent block map {} has checksum {}, this map was written against {}",
                        ppath.display(),
                        to_hex(&parent.checksum),
                        to_hex(&psum)
                    ),
                ));
            }
            let (c, p) = (chain[child].header, parent.header);
            if (c.algorithm, c.block_size) != (p.algorithm, p.block_size) {
                return Err(named(format!(
                    "parent block map {} uses {} with {}-byte blocks, this map {} with {}-byte blocks",
                    ppath.display(),
                    p.algorithm.name(),
                    p.block_size,
                    c.algorithm.name(),
                    c.block_size
                )));
            }
            chain.push(parent);
        }
        Ok(())
    }

    fn top(&self) -> &Level {
        &self.chain[0]
    }
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.top().path
    }
    /// The format version it was written with.
    pub fn version(&self) -> u32 {
        self.top().header.layout.version()
    }
    /// Block size of the set.
    pub fn block_size(&self) -> u32 {
        self.top().header.block_size
    }
    /// Digest algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.top().header.algorithm
    }
    /// Number of records of the set's state (stored and referred to).
    pub fn count(&self) -> u64 {
        self.top().count
    }
    /// File size.
    pub fn size(&self) -> u64 {
        self.top().size
    }
    /// Length of the trailer (a sealed map's: its container's).
    pub fn trailer_len(&self) -> u64 {
        match &self.top().src {
            MapSrc::Plain(_) => self.top().header.trailer_len(),
            MapSrc::Sealed(_) => sealed_map::SEALED_TRAILER_LEN,
        }
    }

    /// Whether the map is sealed (an encrypted repository's).
    pub fn is_sealed(&self) -> bool {
        matches!(self.top().src, MapSrc::Sealed(_))
    }
    /// Length of one record.
    pub fn record_len(&self) -> u64 {
        self.top().record_len()
    }
    /// Checksum recorded in the trailer.
    pub fn recorded_checksum(&self) -> &[u8] {
        &self.top().checksum
    }
    /// The parent map this one names (its path, resolved, and the checksum recorded for
    /// it), or None for a map with no parent runs.
    pub fn parent_ref(&self) -> Option<(&Path, &[u8])> {
        self.top().parent.as_ref().map(|(p, sum)| (p.as_path(), sum.as_slice()))
    }
    /// The maps of the chain, this one first.
    pub fn chain_paths(&self) -> impl Iterator<Item = &Path> {
        self.chain.iter().map(|l| l.path.as_path())
    }

    /// Re-hashes everything before this map's trailer; `on_chunk(n)` after each step,
    /// `Break` stops (`Ok(None)`).
    pub fn checksum_with(&self, on_chunk: &mut dyn FnMut(u64) -> ControlFlow<()>) -> Result<Option<Vec<u8>>> {
        let l = self.top();
        match &l.src {
            MapSrc::Plain(file) => {
                let end = l.size - l.header.trailer_len();
                hash_prefix(file, &l.path, l.header.algorithm, end, on_chunk)
            }
            // The stored bytes: the same check a keyless host makes.
            MapSrc::Sealed(r) => {
                let c = r.container();
                hash_prefix(&c.file, &l.path, c.algorithm, c.trailer_at(), on_chunk)
            }
        }
    }

    /// Re-hashes every map of the chain and checks that its runs tile it (the trailer's
    /// counts are not under the checksum), in one pass over each; an `Error::Damaged`
    /// names a bad run header and its offset, an `Error::Checksum` the first map whose
    /// bytes changed.
    pub fn verify_checksum(&self) -> Result<()> {
        self.hash_as_read();
        self.finish_checksums()
    }

    /// Checks every map's checksum as it is read: from now on each read of a map feeds
    /// its hash in file order (gaps are read too), and `finish_checksums` reads the rest
    /// and compares, so a caller that reads the chain once pays one pass, not two. Call
    /// it before the first `range`.
    pub fn hash_as_read(&self) {
        for l in &self.chain {
            *l.hash.borrow_mut() = Some(StreamHash {
                hasher: l.header.algorithm.hasher(),
                at: 0,
            });
        }
    }

    /// Ends what `hash_as_read` started: scans the run headers not yet read (they must
    /// tile the map: its trailer's counts are outside the checksum), hashes what was not
    /// read and compares each map with its trailer. A map not hashed as it was read is
    /// hashed whole here.
    pub fn finish_checksums(&self) -> Result<()> {
        for l in &self.chain {
            let end = l.runs_end;
            let fresh = || StreamHash {
                hasher: l.header.algorithm.hasher(),
                at: 0,
            };
            l.hash.borrow_mut().get_or_insert_with(fresh);
            // The scan reads headers in file order: with the hash running, the records
            // between them are read once, for the hash.
            let structure = l.check_runs();
            let mut h = l.hash.borrow_mut().take().unwrap_or_else(fresh);
            h.fill_to(&|b, p| l.src.read_at(&l.path, b, p), end)?;
            let actual = h.hasher.finalize();
            // A bad header names its offset; with every header sound, a changed record.
            structure?;
            let expected = l.plain_sum.as_ref().unwrap_or(&l.checksum);
            if &actual != expected {
                return Err(Error::Checksum {
                    path: l.path.clone(),
                    covered: end,
                    expected: to_hex(expected),
                    actual: to_hex(&actual),
                });
            }
        }
        Ok(())
    }

    /// Heap bytes the chain's run directories hold now (cursor windows and marks): a
    /// bound of `depth x (WINDOW + MAX_MARKS marks)` whatever the runs, for tests.
    pub fn run_directory_bytes(&self) -> usize {
        self.chain.iter().map(|l| l.cursor.borrow().heap_bytes()).sum()
    }

    /// Run headers decoded so far over the chain (the work of the merge), for tests.
    pub fn run_headers_read(&self) -> u64 {
        self.chain.iter().map(|l| l.cursor.borrow().headers_read).sum()
    }

    /// Streams the state's records `first .. first + count`, resolved through the chain.
    /// A record that cannot describe a block is an `Error::Damaged` naming its file and
    /// offset; the stream goes on after it.
    pub fn range(&self, first: u64, count: u64) -> Result<RecordIter<'_>> {
        if first.checked_add(count).is_none_or(|end| end > self.count()) {
            return Err(Error::damaged(
                self.path(),
                self.size() - self.trailer_len(),
                format!(
                    "records {first}..{} requested but the block map holds {}",
                    first.saturating_add(count),
                    self.count()
                ),
            ));
        }
        Ok(RecordIter {
            map: self,
            stack: vec![(0, first, first + count)],
            seg: None,
            buf: Vec::new(),
            buf_pos: 0,
            failed: false,
            sources: u32::MAX,
        })
    }
}

/// A run of records stored contiguously in one map of the chain, or of hole blocks.
#[derive(Clone, Copy)]
struct Segment {
    level: usize,
    /// Offset of the next record in that map's file.
    at: u64,
    /// Records left.
    left: u64,
    /// Blocks of a hole: nothing is read; the raw length of the segment's last block
    /// (the hole run's last, or a whole block where the range ends inside the run).
    hole_last: Option<u32>,
}

/// Streams block records resolved through the chain, checking each.
pub struct RecordIter<'a> {
    map: &'a BlockMapReader,
    /// (level, next record, end) of each range being resolved; the last is the deepest.
    stack: Vec<(usize, u64, u64)>,
    seg: Option<Segment>,
    buf: Vec<u8>,
    buf_pos: usize,
    /// A reference could not be resolved: nothing after it can be placed.
    failed: bool,
    /// Records must name a source below this.
    sources: u32,
}

impl RecordIter<'_> {
    /// Makes a record that names a source at or past `n` (the set's `sources` list) an
    /// `Error::Damaged` at its own offset.
    pub fn limit_sources(mut self, n: u32) -> Self {
        self.sources = n;
        self
    }

    /// The next segment of stored records, resolving references on the way.
    fn next_segment(&mut self) -> Option<Result<Segment>> {
        loop {
            let (level, next, end) = *self.stack.last()?;
            if next == end {
                self.stack.pop();
                continue;
            }
            let l = &self.map.chain[level];
            let rec = l.record_len();
            if l.header.layout == Layout::V1 {
                self.stack.pop();
                return Some(Ok(Segment {
                    level,
                    at: HEADER_LEN + next * rec,
                    left: end - next,
                    hole_last: None,
                }));
            }
            let run = match l.run_at(next) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            let take = (run.start + run.count).min(end) - next;
            let inside = next - run.start;
            if let Some(top) = self.stack.last_mut() {
                top.1 += take;
            }
            match run.kind {
                RunKind::Stored { at } => {
                    return Some(Ok(Segment {
                        level,
                        at: at + inside * rec,
                        left: take,
                        hole_last: None,
                    }))
                }
                RunKind::Hole { last_len } => {
                    let to_end = next + take == run.start + run.count;
                    return Some(Ok(Segment {
                        level,
                        at: run.header_at,
                        left: take,
                        hole_last: Some(if to_end { last_len } else { l.header.block_size }),
                    }));
                }
                RunKind::Copy { first } => {
                    // decode() checked first + count <= run.start: the records lie
                    // before the run, so each copy moves backwards and the stack ends.
                    if self.stack.len() > MAX_NESTING + 2 * self.map.chain.len() {
                        return Some(Err(Error::damaged(
                            &l.path,
                            run.header_at,
                            format!(
                                "run of records {}..{} copies records nested more than {MAX_NESTING} deep",
                                run.start,
                                run.start + run.count
                            ),
                        )));
                    }
                    let f = first + inside;
                    self.stack.push((level, f, f + take));
                }
                RunKind::Parent { first } => {
                    let pfirst = first.checked_add(inside);
                    let parent = self.map.chain.get(level + 1);
                    match (pfirst, parent) {
                        (Some(pf), Some(p)) if pf.checked_add(take).is_some_and(|e| e <= p.count) => {
                            self.stack.push((level + 1, pf, pf + take));
                        }
                        _ => {
                            return Some(Err(Error::damaged(
                                &l.path,
                                run.header_at + 16,
                                format!(
                                    "run of records {}..{} refers to parent records {first}.. that its parent does not hold",
                                    run.start,
                                    run.start + run.count
                                ),
                            )));
                        }
                    }
                }
            }
        }
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<BlockRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let seg = match self.seg {
            Some(s) if s.left > 0 => s,
            _ => match self.next_segment()? {
                Ok(s) => {
                    self.buf.clear();
                    self.buf_pos = 0;
                    s
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            },
        };
        let l = &self.map.chain[seg.level];
        if let Some(last) = seg.hole_last {
            self.seg = Some(Segment {
                left: seg.left - 1,
                ..seg
            });
            return Some(Ok(BlockRecord::hole(if seg.left == 1 {
                last
            } else {
                l.header.block_size
            })));
        }
        let rec = l.record_len() as usize;
        if self.buf_pos >= self.buf.len() {
            // A step of whole records, at most what is left of the segment.
            let n = (READ_STEP / rec)
                .max(1)
                .min(usize::try_from(seg.left).unwrap_or(usize::MAX));
            self.buf.resize(n * rec, 0);
            self.buf_pos = 0;
            if let Err(e) = l.read_at(&mut self.buf, seg.at) {
                self.failed = true;
                return Some(Err(e));
            }
        }
        let at = seg.at;
        let b = &self.buf[self.buf_pos..self.buf_pos + rec];
        self.buf_pos += rec;
        self.seg = Some(Segment {
            level: seg.level,
            at: at + rec as u64,
            left: seg.left - 1,
            hole_last: None,
        });
        let limit = self.sources;
        Some(
            BlockRecord::decode(l.header.layout, b, l.header.block_size)
                .and_then(|r| {
                    if r.source < limit {
                        Ok(r)
                    } else {
                        Err((0, format!("names source {} of {limit}", r.source)))
                    }
                })
                .map_err(|(field, m)| Error::damaged(&l.path, at + field, format!("record at {at}: {m}"))),
        )
    }
}
