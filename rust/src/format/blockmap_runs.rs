//! The run directory of one version-2 block map, read lazily: a cursor walks the run
//! headers in file order and keeps a bounded number of marks to come back to, so a map's
//! memory is a few KiB whatever its number of runs. Resolving a chain is then a merge of
//! one cursor per map, each moving forward as the records it serves move forward (the
//! writer emits parent references in ascending order for files kept in the same order);
//! a reference backwards restarts from the nearest mark, never from a list of every run.
//!
//! Also the streaming checksum: a map hashed as it is read, the rest read at the end,
//! so a caller that reads a chain once (backup, against its parent) checks every map's
//! checksum without a second pass.

use std::path::Path;

use super::blockmap::{RUN_COPY, RUN_HEADER_LEN, RUN_HOLE, RUN_PARENT, RUN_STORED};
use super::error::{Error, Result};
use super::header::{u64_at, HEADER_LEN};
use super::piece::check_zero;
use crate::scan::algorithm::Hasher;

/// Bytes of run headers read at once (a window; the records under it are not decoded).
pub(super) const WINDOW: usize = 4096;
/// Most marks a cursor keeps: when full, every other one goes and the spacing doubles,
/// so a jump back rescans at most `runs / MAX_MARKS * 2` headers.
pub(super) const MAX_MARKS: usize = 128;
/// Bytes of one mark.
const MARK_LEN: usize = std::mem::size_of::<Mark>();

/// What one run of a version-2 map is.
#[derive(Clone, Copy, Debug)]
pub(super) enum RunKind {
    /// Records stored in this file from `at` on.
    Stored { at: u64 },
    /// The parent map's records from `first` on.
    Parent { first: u64 },
    /// Blocks of a hole (version 3): whole blocks, the last `last_len` bytes.
    Hole { last_len: u32 },
    /// This map's own records from `first` on (version 4), all before the run.
    Copy { first: u64 },
}

/// One run: the state's records `start .. start + count`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Run {
    pub start: u64,
    pub count: u64,
    pub kind: RunKind,
    /// Offset of the run header (for messages).
    pub header_at: u64,
}

/// What the cursor needs to know of its map.
pub(super) struct Frame<'a> {
    pub path: &'a Path,
    pub record_len: u64,
    /// Records of the state (trailer).
    pub count: u64,
    /// Runs (trailer).
    pub runs: u64,
    /// Where the runs end (the trailer starts).
    pub end: u64,
    pub has_parent: bool,
    /// Whether hole runs may appear (version 3), and the block size bounding their last block.
    pub holes: bool,
    pub block_size: u32,
    /// Whether copy runs may appear (version 4).
    pub copies: bool,
}

/// A place in the run stream: run number, its first state record, its header's offset.
#[derive(Clone, Copy, Debug)]
struct Mark {
    run_no: u64,
    start: u64,
    at: u64,
}

/// Where one map's scan of its run headers stands.
pub(super) struct Cursor {
    pos: Mark,
    /// The run at `pos`, decoded (None: not read yet, or past the last run).
    run: Option<Run>,
    marks: Vec<Mark>,
    stride: u64,
    /// Runs scanned so far at least once (marks are taken at the frontier only).
    frontier: u64,
    win: Vec<u8>,
    win_at: u64,
    /// Run headers decoded (tests count the work of a merge with it).
    pub headers_read: u64,
}

impl Default for Cursor {
    fn default() -> Self {
        Self {
            pos: Mark {
                run_no: 0,
                start: 0,
                at: HEADER_LEN,
            },
            run: None,
            marks: Vec::new(),
            stride: 1,
            frontier: 0,
            win: Vec::new(),
            win_at: 0,
            headers_read: 0,
        }
    }
}

impl Cursor {
    /// Heap bytes this cursor holds (bounded by `WINDOW + MAX_MARKS` marks).
    pub fn heap_bytes(&self) -> usize {
        self.win.capacity() + self.marks.capacity() * MARK_LEN
    }

    /// The run holding state record `v`, read through `read` (positioned reads of the map).
    pub fn run_at(&mut self, f: &Frame<'_>, v: u64, read: &mut dyn FnMut(&mut [u8], u64) -> Result<()>) -> Result<Run> {
        let behind = v < self.pos.start;
        let ahead = self.run.is_some_and(|r| v >= r.start + r.count);
        if behind || ahead {
            let i = self.marks.partition_point(|m| m.start <= v);
            let mark = match i.checked_sub(1).map(|i| self.marks[i]) {
                Some(m) if behind || m.start > self.pos.start => Some(m),
                None if behind => Some(Mark {
                    run_no: 0,
                    start: 0,
                    at: HEADER_LEN,
                }),
                _ => None,
            };
            if let Some(m) = mark {
                self.pos = m;
                self.run = None;
            }
        }
        loop {
            let run = match self.run {
                Some(r) => r,
                None => {
                    let r = self.load(f, read)?;
                    self.run = Some(r);
                    r
                }
            };
            if v < run.start + run.count {
                return Ok(run);
            }
            self.advance(f, run);
        }
    }

    /// Reads every run header from the first (records are skipped, not read) and checks
    /// that the runs tile the state and the file exactly.
    pub fn check_all(&mut self, f: &Frame<'_>, read: &mut dyn FnMut(&mut [u8], u64) -> Result<()>) -> Result<()> {
        self.pos = Mark {
            run_no: 0,
            start: 0,
            at: HEADER_LEN,
        };
        self.run = None;
        while self.pos.run_no < f.runs {
            let run = self.load(f, read)?;
            self.advance(f, run);
        }
        self.check_end(f)
    }

    /// Moves past `run` (the run at `self.pos`).
    fn advance(&mut self, f: &Frame<'_>, run: Run) {
        let len = match run.kind {
            RunKind::Stored { .. } => RUN_HEADER_LEN + run.count * f.record_len,
            RunKind::Parent { .. } | RunKind::Hole { .. } | RunKind::Copy { .. } => RUN_HEADER_LEN,
        };
        self.pos = Mark {
            run_no: self.pos.run_no + 1,
            start: run.start + run.count,
            // load() checked that the run fits before the runs' end.
            at: run.header_at + len,
        };
        self.run = None;
    }

    /// After the last run: it must end where the runs end and cover the trailer's count.
    fn check_end(&self, f: &Frame<'_>) -> Result<()> {
        let Mark { start, at, .. } = self.pos;
        if at != f.end || start != f.count {
            return Err(Error::damaged(
                f.path,
                f.end + 8,
                format!(
                    "the runs cover {start} records in {at} bytes, the trailer says {} records",
                    f.count
                ),
            ));
        }
        Ok(())
    }

    /// Reads and checks the run header at `self.pos`.
    fn load(&mut self, f: &Frame<'_>, read: &mut dyn FnMut(&mut [u8], u64) -> Result<()>) -> Result<Run> {
        let Mark {
            run_no: i,
            start,
            at: pos,
        } = self.pos;
        if i >= f.runs {
            self.check_end(f)?;
            return Err(Error::damaged(
                f.path,
                f.end,
                format!("record {start} lies past the last run"),
            ));
        }
        if pos.checked_add(RUN_HEADER_LEN).is_none_or(|e| e > f.end) {
            return Err(Error::damaged(
                f.path,
                pos,
                format!("run {i} starts past the runs' end {}", f.end),
            ));
        }
        let h = self.header_bytes(pos, f.end, read)?;
        let run = decode(f, i, pos, start, &h)?;
        self.headers_read += 1;
        if i == self.frontier {
            self.frontier += 1;
            self.mark(self.pos);
        }
        Ok(run)
    }

    fn header_bytes(
        &mut self,
        pos: u64,
        end: u64,
        read: &mut dyn FnMut(&mut [u8], u64) -> Result<()>,
    ) -> Result<[u8; RUN_HEADER_LEN as usize]> {
        let len = RUN_HEADER_LEN as usize;
        let inside = pos >= self.win_at && pos + RUN_HEADER_LEN <= self.win_at + self.win.len() as u64;
        if !inside {
            // end - pos >= RUN_HEADER_LEN: checked by the caller; the window is at most WINDOW.
            let n = usize::try_from(end - pos).unwrap_or(WINDOW).min(WINDOW);
            self.win.resize(n, 0);
            read(&mut self.win, pos)?;
            self.win_at = pos;
        }
        let o = (pos - self.win_at) as usize;
        let mut h = [0u8; RUN_HEADER_LEN as usize];
        h.copy_from_slice(&self.win[o..o + len]);
        Ok(h)
    }

    fn mark(&mut self, m: Mark) {
        if m.run_no % self.stride != 0 {
            return;
        }
        if self.marks.len() == MAX_MARKS {
            let stride = self.stride * 2;
            self.marks.retain(|k| k.run_no % stride == 0);
            self.stride = stride;
            if m.run_no % stride != 0 {
                return;
            }
        }
        if self.marks.capacity() == 0 {
            self.marks.reserve_exact(MAX_MARKS);
        }
        self.marks.push(m);
    }
}

/// Checks one run header (`h`, at `pos`, run `i`, starting at state record `start`).
fn decode(f: &Frame<'_>, i: u64, pos: u64, start: u64, h: &[u8]) -> Result<Run> {
    check_zero(f.path, h, 1..8, pos)
        .map_err(|_| Error::damaged(f.path, pos + 1, format!("run {i}: padding byte is not zero")))?;
    let count = u64_at(h, 8);
    let first = u64_at(h, 16);
    if count == 0 {
        return Err(Error::damaged(f.path, pos + 8, format!("run {i} is empty")));
    }
    let kind = match h[0] {
        RUN_STORED if first == 0 => RunKind::Stored {
            at: pos + RUN_HEADER_LEN,
        },
        RUN_STORED => {
            return Err(Error::damaged(
                f.path,
                pos + 16,
                format!("run {i}: stored run names a parent record"),
            ));
        }
        RUN_PARENT if f.has_parent => RunKind::Parent { first },
        RUN_PARENT => {
            return Err(Error::damaged(
                f.path,
                pos,
                format!("run {i} refers to a parent, but the block map names none"),
            ));
        }
        RUN_HOLE if f.holes => match u32::try_from(first) {
            Ok(last_len) if last_len > 0 && last_len <= f.block_size => RunKind::Hole { last_len },
            _ => {
                return Err(Error::damaged(
                    f.path,
                    pos + 16,
                    format!(
                        "run {i}: hole's last block of {first} bytes is outside 1..={} (the block size)",
                        f.block_size
                    ),
                ));
            }
        },
        // Only backwards: the named records end at or before this run's first, so a copy
        // of a copy resolves in finitely many steps.
        RUN_COPY if f.copies => match first.checked_add(count) {
            Some(end) if end <= start => RunKind::Copy { first },
            _ => {
                return Err(Error::damaged(
                    f.path,
                    pos + 16,
                    format!(
                        "run {i}: copy of records {first}..{} does not lie before the run's first record {start}",
                        first.saturating_add(count)
                    ),
                ));
            }
        },
        k => return Err(Error::damaged(f.path, pos, format!("run {i}: unknown kind {k}"))),
    };
    let len = match kind {
        RunKind::Stored { .. } => count
            .checked_mul(f.record_len)
            .and_then(|n| n.checked_add(RUN_HEADER_LEN)),
        RunKind::Parent { .. } | RunKind::Hole { .. } | RunKind::Copy { .. } => Some(RUN_HEADER_LEN),
    };
    let fits = len.and_then(|l| l.checked_add(pos)).is_some_and(|n| n <= f.end);
    if !fits || start.checked_add(count).is_none_or(|e| e > f.count) {
        return Err(Error::damaged(
            f.path,
            pos + 8,
            format!("run {i} of {count} records overruns the block map"),
        ));
    }
    Ok(Run {
        start,
        count,
        kind,
        header_at: pos,
    })
}

/// A checksum fed by the reads of a map in file order: `at` is how far it has hashed.
pub(super) struct StreamHash {
    pub hasher: Hasher,
    pub at: u64,
}

impl StreamHash {
    /// Hashes what of `buf` (just read at `pos`) lies past `at`, reading any gap before it.
    pub fn feed(&mut self, read: &dyn Fn(&mut [u8], u64) -> Result<()>, buf: &[u8], pos: u64) -> Result<()> {
        self.fill_to(read, pos)?;
        let end = pos + buf.len() as u64;
        if self.at < end {
            // at >= pos after fill_to, and at < end: the slice is inside buf.
            self.hasher.update(&buf[(self.at - pos) as usize..]);
            self.at = end;
        }
        Ok(())
    }

    /// Reads and hashes bytes `at .. to` (nothing if `at >= to`).
    pub fn fill_to(&mut self, read: &dyn Fn(&mut [u8], u64) -> Result<()>, to: u64) -> Result<()> {
        let mut gap = Vec::new();
        while self.at < to {
            let n = usize::try_from(to - self.at).unwrap_or(usize::MAX).min(1 << 20);
            gap.resize(n, 0);
            read(&mut gap, self.at)?;
            self.hasher.update(&gap);
            self.at += n as u64;
        }
        Ok(())
    }
}
