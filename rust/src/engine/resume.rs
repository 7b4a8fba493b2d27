//! Resumable backups (RMAN's restartable backups): a pass journals the files its piece
//! holds in full (`format::checkpoint`), and a pass cut short (max_duration, a crash, a
//! source that failed) leaves the piece, its index spool and the journal in staging. The
//! next pass over the same files adopts the longest run of journaled files, from the
//! first, that are unchanged on disk and whose staged bytes read back as written; the
//! piece is cut after the last adopted file and the pass goes on from there. So the
//! finished piece and block map are byte for byte those of an uninterrupted pass.
//!
//! Adoption is a prefix: files are journaled in pass order, and a file's index entries
//! carry its number in the pass, so the first file that changed (or vanished, or whose
//! staged bytes are damaged) and every file after it are read again.
//!
//! Adopting reads the staged prefix once (its checksum in the piece's trailer covers
//! every byte, and each file's bytes and index entries are checked against the XXH3-128s
//! the journal recorded), never the source.

use std::fs::{self, File, Metadata};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::backup::{FileJob, FileOutcome};
use super::error::{Error, Result};
use crate::format::checkpoint::{
    map_log_path, read_map_ops, FileRecord, Identity, Journal, JournalWriter, MapLog, MapOp, Settings,
};
use crate::format::fast::FastTree;
use crate::format::piece::spool_path;
use crate::format::read::read_exact_at;
use crate::format::{BlockMapWriter, BlockRecord, Header, IndexEntry, Kind, PieceWriter, HEADER_LEN};
use twox_hash::xxhash3_128::Hasher as Xxh3;

/// Where a pass keeps its checkpoint journal and how often it commits it.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The journal (`staging/<id>/checkpoint`).
    pub journal: PathBuf,
    /// Commit after at least this many source bytes since the last commit, at a file
    /// boundary (0: after every file). Each commit fsyncs the piece and its index spool.
    pub every: u64,
    /// Which files of a cut pass the next one adopts, and how.
    pub rule: Rule,
}

/// How a resumed pass takes over what a cut one left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rule {
    /// A file tree: the longest unchanged run of journaled files, from the first, kept
    /// in place (the piece comes out as an uninterrupted pass writes it).
    #[default]
    Prefix,
    /// A PostgreSQL base backup (`engine::resume_move`): every journaled file that is
    /// still as it was read, wherever it lies, moved to the front of the new piece; a
    /// file whose mtime falls within `TICK` of its read is never adopted, nor the files
    /// PostgreSQL's backup rules say to copy fresh.
    BaseBackup,
}

/// The coarsest timestamp granularity assumed of the source's filesystem: a write
/// within one tick of an earlier one may leave mtime where it was (ext4 stamps with a
/// coarse clock, ext3 and HFS+ by the second; pgBackRest compares whole seconds).
pub const TICK: Duration = Duration::from_secs(1);

/// Whether a file whose mtime (after a read) is `mtime` may have been written in the
/// same timestamp tick as, or after the start of, a read that began no earlier than
/// `read_from`: such a write need not move mtime, so an unchanged mtime proves nothing
/// and the copy cannot be adopted later (pgBackRest's rule for resumed and delta
/// backups). A pre-epoch mtime is never recent.
pub fn same_tick(mtime: (i64, i64), read_from: SystemTime, tick: Duration) -> bool {
    let Ok(secs) = u64::try_from(mtime.0) else {
        return false;
    };
    let nanos = u32::try_from(mtime.1.clamp(0, 999_999_999)).unwrap_or(0);
    let at = UNIX_EPOCH + Duration::new(secs, nanos);
    match read_from.checked_sub(tick) {
        Some(bound) => at >= bound,
        None => true,
    }
}

/// What a pass took over from a cut one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resumed {
    /// Files adopted without reading them.
    pub files: u64,
    /// Their bytes (what the source did not have to give again).
    pub source_bytes: u64,
    /// Piece bytes adopted (header included).
    pub piece_bytes: u64,
    /// Why adoption stopped where it did, or why nothing was adopted (None: there was
    /// no checkpoint, or every journaled file was adopted).
    pub note: Option<String>,
}

/// A pass ready to go on: its writers, the outcomes of the adopted files and the
/// journal that records the rest.
pub(crate) struct Start {
    pub piece: PieceWriter,
    pub map: BlockMapWriter,
    pub files: Vec<FileOutcome>,
    pub ck: Checkpointer,
    pub resumed: Resumed,
}

/// Bytes read per step while re-hashing the staged prefix.
const STEP: usize = 1 << 20;
/// Index entries read per step.
const ENTRIES_STEP: u64 = 4096;

/// Opens the writers of a pass with checkpoints: resumed from what a cut pass left at
/// `piece_path` and `ck.journal` when it can be adopted, else new (what was there goes).
/// `make_map` creates the block map (absent when called): it is always rebuilt, from the
/// adopted files' logged operations; `on_stored` sees each record they push and its
/// record number (the caller's duplicate index learns the blocks stored so far); `sealed`: the blocks are
/// sealed, bound to their offsets.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    jobs: &[FileJob],
    settings: &Settings,
    piece_path: &Path,
    map_path: &Path,
    ck: &Checkpoint,
    make_map: &dyn Fn() -> Result<BlockMapWriter>,
    on_stored: &mut dyn FnMut(&BlockRecord, u64),
    sealed: bool,
) -> Result<Start> {
    remove(map_path)?;
    if ck.rule == Rule::BaseBackup {
        return super::resume_move::start(jobs, settings, piece_path, map_path, ck, make_map, on_stored, sealed);
    }
    let note = match adopt(jobs, settings, piece_path, map_path, ck, make_map, on_stored) {
        Ok(s) => return Ok(s),
        Err(note) => note,
    };
    fresh(settings, piece_path, map_path, ck, make_map, note)
}

/// New, empty writers and journal (whatever a cut pass left there goes); `note` says
/// why nothing was adopted.
pub(super) fn fresh(
    settings: &Settings,
    piece_path: &Path,
    map_path: &Path,
    ck: &Checkpoint,
    make_map: &dyn Fn() -> Result<BlockMapWriter>,
    note: Option<String>,
) -> Result<Start> {
    let log = map_log_path(&ck.journal);
    for p in [piece_path, &spool_path(piece_path), &ck.journal, &log, map_path] {
        remove(p)?;
    }
    let mut piece = PieceWriter::create(piece_path, settings.algorithm, settings.block_size)?;
    let mut map = make_map()?;
    map.log_to(MapLog::create(&log)?);
    let ck = Checkpointer::fresh(&ck.journal, settings, &mut piece, ck)?;
    Ok(Start {
        piece,
        map,
        files: Vec::new(),
        ck,
        resumed: Resumed {
            note,
            ..Resumed::default()
        },
    })
}

pub(super) fn remove(p: &Path) -> Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(p, e)),
        _ => Ok(()),
    }
}

/// Err: nothing adopted, and why (None: there was nothing to adopt).
fn adopt(
    jobs: &[FileJob],
    settings: &Settings,
    piece_path: &Path,
    map_path: &Path,
    ck: &Checkpoint,
    make_map: &dyn Fn() -> Result<BlockMapWriter>,
    on_stored: &mut dyn FnMut(&BlockRecord, u64),
) -> std::result::Result<Start, Option<String>> {
    if !ck.journal.exists() {
        return Err(None);
    }
    let journal = Journal::read(&ck.journal).map_err(|e| Some(format!("checkpoint unreadable: {e}")))?;
    if &journal.settings != settings {
        return Err(Some(format!(
            "checkpoint was written with other settings ({}), this pass uses {}",
            describe(&journal.settings),
            describe(settings)
        )));
    }
    let log_path = map_log_path(&ck.journal);
    let (candidates, mut why) = unchanged_prefix(jobs, &journal);
    if candidates == 0 {
        return Err(Some(
            why.unwrap_or_else(|| "the checkpoint lists no finished file".into()),
        ));
    }
    let fail = |e: Error| Some(format!("staged files unreadable: {e}"));
    let header = Header::new(Kind::Piece, settings.block_size, settings.algorithm);
    let piece = File::open(piece_path).map_err(|e| fail(Error::io(piece_path, e)))?;
    let mut first = [0u8; HEADER_LEN as usize];
    read_exact_at(&piece, piece_path, &mut first, 0).map_err(|e| fail(e.into()))?;
    if first != header.encode() {
        return Err(Some(format!(
            "staged piece {} has another header",
            piece_path.display()
        )));
    }
    let spool_at = spool_path(piece_path);
    let spool = File::open(&spool_at).map_err(|e| fail(Error::io(&spool_at, e)))?;
    let log = File::open(&log_path).map_err(|e| fail(Error::io(&log_path, e)))?;
    let mut hasher = settings.algorithm.hasher();
    let mut tree = FastTree::new();
    hasher.update(&first);
    tree.update(&first);
    let mut map = make_map().map_err(fail)?;
    let mut files = Vec::with_capacity(candidates);
    let mut resumed = Resumed::default();
    let entry_len = header.layout.index_entry_len(header.digest_len());
    let staged = Staged {
        piece: &piece,
        piece_path,
        spool: &spool,
        spool_path: &spool_at,
        log: &log,
        log_path: &log_path,
        header,
        entry_len,
    };
    let mut end = (HEADER_LEN, 0u64, 0u64);
    for (i, rec) in journal.records[..candidates].iter().enumerate() {
        let snapshot = (hasher.clone(), tree.clone());
        let checked = staged
            .hash_range(rec, &mut hasher, &mut tree)
            .and_then(|()| staged.check_entries(i, rec))
            .and_then(|()| staged.check_ops(rec));
        if let Err(m) = checked {
            (hasher, tree) = snapshot;
            why = Some(format!("{}: {m}; read again from there", rec.path.display()));
            break;
        }
        staged
            .replay(rec, &mut map, on_stored, None)
            .map_err(|e| Some(format!("cannot rebuild the block map {}: {e}", map_path.display())))?;
        files.push(FileOutcome {
            size: rec.size,
            digest: rec.digest.clone(),
            first_block: rec.first_block,
            block_count: rec.block_count,
            changed: false,
        });
        end = (rec.piece_end, rec.entries_end, rec.map_end);
        resumed.source_bytes += rec.size;
    }
    if files.is_empty() {
        return Err(why);
    }
    drop((piece, spool, log));
    resumed.files = files.len() as u64;
    resumed.piece_bytes = end.0;
    resumed.note = why;
    let piece = PieceWriter::resume(piece_path, header, end.0, end.1, hasher, tree).map_err(|e| fail(e.into()))?;
    let journal_w = JournalWriter::append_at(&ck.journal, journal.ends[files.len() - 1]).map_err(|e| fail(e.into()))?;
    map.log_to(MapLog::open_at(&log_path, end.2).map_err(|e| fail(e.into()))?);
    Ok(Start {
        piece,
        map,
        files,
        ck: Checkpointer {
            journal: Some(journal_w),
            every: ck.every,
            since: 0,
            pos: end.0,
            entries: end.1,
            ops: end.2,
            tick: tick_of(ck.rule),
            last: SystemTime::now(),
        },
        resumed,
    })
}

fn describe(s: &Settings) -> String {
    format!(
        "{} with {}-byte blocks, zstd {:?}, source {}, {}",
        s.algorithm.name(),
        s.block_size,
        s.zstd_level,
        s.self_source,
        if s.parent_sum.is_some() {
            "a parent map"
        } else {
            "no parent"
        }
    )
}

/// How many journaled files, from the first, are this pass's files and unchanged since
/// they were read, and why the run stops where it does.
fn unchanged_prefix(jobs: &[FileJob], journal: &Journal) -> (usize, Option<String>) {
    let mut pos = HEADER_LEN;
    let mut entries = 0u64;
    let mut block = 0u64;
    let mut ops = 0u64;
    for (i, rec) in journal.records.iter().enumerate() {
        let why = match jobs.get(i) {
            None => Some(format!("this pass has {} files, the checkpoint more", jobs.len())),
            Some(job) if rec.file_no as usize != i || rec.path != job.path => Some(format!(
                "file {i} is {}, the checkpoint's was {}",
                job.path.display(),
                rec.path.display()
            )),
            Some(job) if rec.parent != job.parent => Some(format!(
                "{}: the parent's blocks of it moved since the cut",
                job.path.display()
            )),
            Some(job) if rec.changed => Some(format!("{} changed while it was read", job.path.display())),
            Some(job)
                if rec.piece_start != pos
                    || rec.entries_start != entries
                    || rec.first_block != block
                    || rec.map_start != ops =>
            {
                Some(format!("{}: checkpoint record out of sequence", job.path.display()))
            }
            Some(job) => match fs::metadata(&job.path) {
                Err(e) => Some(format!("{}: {e}", job.path.display())),
                Ok(m) if Identity::of(&m) != rec.identity => {
                    Some(format!("{} changed since the cut", job.path.display()))
                }
                Ok(_) => None,
            },
        };
        if why.is_some() {
            return (i, why);
        }
        pos = rec.piece_end;
        entries = rec.entries_end;
        block = rec.first_block.saturating_add(rec.block_count);
        ops = rec.map_end;
    }
    (journal.records.len(), journal.stopped.clone())
}

/// The staged piece and index spool of a cut pass.
pub(super) struct Staged<'a> {
    pub piece: &'a File,
    pub piece_path: &'a Path,
    pub spool: &'a File,
    pub spool_path: &'a Path,
    pub log: &'a File,
    pub log_path: &'a Path,
    pub header: Header,
    pub entry_len: u64,
}

impl Staged<'_> {
    /// Feeds the file's piece bytes to `hasher` and `tree`; Err when they are not the
    /// bytes the journal recorded.
    pub(super) fn hash_range(
        &self,
        rec: &FileRecord,
        hasher: &mut crate::scan::algorithm::Hasher,
        tree: &mut FastTree,
    ) -> std::result::Result<(), String> {
        let mut sum = Xxh3::new();
        let mut buf = vec![0u8; STEP];
        let mut at = rec.piece_start;
        while at < rec.piece_end {
            let n = usize::try_from(rec.piece_end - at).map_or(STEP, |left| left.min(STEP));
            read_exact_at(self.piece, self.piece_path, &mut buf[..n], at).map_err(|e| e.to_string())?;
            hasher.update(&buf[..n]);
            tree.update(&buf[..n]);
            sum.write(&buf[..n]);
            at += n as u64;
        }
        if sum.finish_128().to_be_bytes() != rec.piece_sum {
            return Err(format!(
                "its staged bytes {}..{} of {} are not those written (damaged)",
                rec.piece_start,
                rec.piece_end,
                self.piece_path.display()
            ));
        }
        Ok(())
    }

    /// Calls `f` with each of the file's index entries, decoded and checked against
    /// the header; also returns the XXH3-128 of their bytes.
    pub(super) fn entries(
        &self,
        rec: &FileRecord,
        mut f: impl FnMut(IndexEntry) -> std::result::Result<(), String>,
    ) -> std::result::Result<[u8; 16], String> {
        let mut sum = Xxh3::new();
        let mut n = rec.entries_start;
        let len = usize::try_from(self.entry_len).map_err(|_| "index entry length overflows".to_string())?;
        let mut buf = Vec::new();
        while n < rec.entries_end {
            let take = (rec.entries_end - n).min(ENTRIES_STEP);
            // take <= ENTRIES_STEP and len <= 29 + 64: no overflow.
            buf.resize(take as usize * len, 0);
            let at = n
                .checked_mul(self.entry_len)
                .ok_or_else(|| "index entry offset overflows".to_string())?;
            read_exact_at(self.spool, self.spool_path, &mut buf, at).map_err(|e| e.to_string())?;
            sum.write(&buf);
            for (k, b) in buf.chunks_exact(len).enumerate() {
                let e = IndexEntry::decode(self.header.layout, b, self.header.block_size, rec.piece_end).map_err(
                    |(off, m)| {
                        format!(
                            "{}: {m} (at offset {})",
                            self.spool_path.display(),
                            at + k as u64 * self.entry_len + off
                        )
                    },
                )?;
                f(e)?;
            }
            n += take;
        }
        Ok(sum.finish_128().to_be_bytes())
    }

    /// Checks that the file's index entries are those written and describe exactly its
    /// piece bytes, block after block.
    pub(super) fn check_entries(&self, file_no: usize, rec: &FileRecord) -> std::result::Result<(), String> {
        let mut next = rec.piece_start;
        let mut last: Option<u64> = None;
        let sum = self.entries(rec, |e| {
            let ok = e.file_no as usize == file_no
                && last.is_none_or(|l| e.block_index > l)
                && e.block_index < rec.block_count
                && e.offset == next;
            if !ok {
                return Err(format!("index entry for block {} does not follow", e.block_index));
            }
            next += u64::from(e.stored_len);
            last = Some(e.block_index);
            Ok(())
        })?;
        if sum != rec.index_sum {
            return Err(format!(
                "its staged index entries in {} are damaged",
                self.spool_path.display()
            ));
        }
        if next != rec.piece_end {
            return Err("its index entries do not cover its piece bytes".into());
        }
        Ok(())
    }

    /// Checks that the file's logged block-map operations are those written and push
    /// exactly its blocks.
    pub(super) fn check_ops(&self, rec: &FileRecord) -> std::result::Result<(), String> {
        let mut pushed = 0u64;
        let digest_len = self.header.digest_len();
        let sum = read_map_ops(
            self.log,
            self.log_path,
            (rec.map_start, rec.map_end),
            digest_len,
            self.header.block_size,
            |op| {
                pushed = pushed.saturating_add(match op {
                    MapOp::Parent { count, .. } => count,
                    MapOp::Record(_) => 1,
                    MapOp::Holes { count, .. } => count,
                    MapOp::Copy { count, .. } => count,
                });
                Ok(())
            },
        )?;
        if sum != rec.map_sum {
            return Err(format!(
                "its logged block-map operations in {} are damaged",
                self.log_path.display()
            ));
        }
        if pushed != rec.block_count {
            return Err(format!(
                "its logged operations push {pushed} records, not {}",
                rec.block_count
            ));
        }
        Ok(())
    }

    /// Applies the file's logged block-map operations again: in place (`moved_to`
    /// None), or for a file whose bytes were copied to `new_start` of a new piece
    /// (`Some((self_source, new_start))`: records of the set's own piece move with them;
    /// `check` saw each inside `rec.piece_start..rec.piece_end`). One replay for both,
    /// so a new map operation is applied the same way whichever pass resumes.
    pub(super) fn replay(
        &self,
        rec: &FileRecord,
        map: &mut BlockMapWriter,
        on_stored: &mut dyn FnMut(&BlockRecord, u64),
        moved_to: Option<(u32, u64)>,
    ) -> Result<()> {
        let mut failed: Option<crate::format::Error> = None;
        let out = read_map_ops(
            self.log,
            self.log_path,
            (rec.map_start, rec.map_end),
            self.header.digest_len(),
            self.header.block_size,
            |op| {
                let r = match op {
                    MapOp::Parent { first, count } => (0..count).try_for_each(|k| map.push_parent(first + k)),
                    MapOp::Holes { count, last_len } => map.push_holes(count, last_len),
                    // Record numbers hold: adopted files are replayed from the map's start, in order.
                    MapOp::Copy { first, count } => (0..count).try_for_each(|k| map.push_copy(first + k)),
                    MapOp::Record(mut r) => {
                        if let Some((self_source, new_start)) = moved_to {
                            if r.source == self_source {
                                r.offset = r.offset - rec.piece_start + new_start;
                            }
                        }
                        on_stored(&r, map.count());
                        map.push(&r)
                    }
                };
                r.map_err(|e| {
                    let m = e.to_string();
                    failed = Some(e);
                    m
                })
            },
        );
        if let Some(e) = failed {
            return Err(e.into());
        }
        out.map(|_| ()).map_err(Error::Invalid)
    }
}

/// Journals the files a pass finishes and commits the journal every `every` source bytes.
/// Journal records held in memory at most before a commit writes them. A file taken
/// over unread brings no commit forward by its bytes (it has none), so an unchanged tree
/// of millions of files would otherwise keep every record (a few hundred bytes each) to
/// the end of the pass; this bound commits such a pass every ~50,000 files.
pub(crate) const MAX_PENDING: usize = 16 << 20;

pub(crate) struct Checkpointer {
    /// None once a record could not be written: later files are not journaled (they
    /// could not be adopted past the gap anyway).
    journal: Option<JournalWriter>,
    every: u64,
    since: u64,
    /// Where the next file's bytes, index entries and map operations start.
    pos: u64,
    entries: u64,
    ops: u64,
    /// `Some(TICK)`: a file whose mtime lies within it of its read is journaled as
    /// changed (`same_tick`), so no later pass adopts it.
    tick: Option<Duration>,
    /// No file still to come was opened before this (when the last file was done).
    last: SystemTime,
}

fn tick_of(rule: Rule) -> Option<Duration> {
    // File trees keep their documented identity rule (device, inode, size, mtime, ctime).
    (rule == Rule::BaseBackup).then_some(TICK)
}

impl Checkpointer {
    fn fresh(path: &Path, settings: &Settings, piece: &mut PieceWriter, ck: &Checkpoint) -> Result<Self> {
        // The header is nobody's file: the next sums start after it.
        piece.take_sums();
        Ok(Self {
            journal: Some(JournalWriter::create(path, settings)?),
            every: ck.every,
            since: 0,
            pos: piece.position(),
            entries: piece.entries(),
            ops: 0,
            tick: tick_of(ck.rule),
            last: SystemTime::now(),
        })
    }

    /// Records a finished file (`after`: its metadata once read); commits when due.
    pub(crate) fn file_done(
        &mut self,
        piece: &mut PieceWriter,
        map: &mut BlockMapWriter,
        file_no: u32,
        job: &FileJob,
        after: &Metadata,
        out: &FileOutcome,
    ) -> Result<()> {
        let identity = Identity::of(after);
        let recent = self.tick.is_some_and(|t| same_tick(identity.mtime, self.last, t));
        self.last = SystemTime::now();
        self.record(piece, map, file_no, job, identity, out, out.changed || recent, out.size)
    }

    /// Records a file taken over from the parent unread (`identity`: the walk's, on which
    /// the take-over was decided).
    /// Its bytes do not count toward the next commit: a later pass takes it over unread
    /// again, so there is nothing to save it from re-reading (an unchanged 1 GiB tree
    /// committed 16 times, four fdatasyncs each, for no data written).
    pub(crate) fn taken_over(
        &mut self,
        piece: &mut PieceWriter,
        map: &mut BlockMapWriter,
        file_no: u32,
        job: &FileJob,
        identity: Identity,
        out: &FileOutcome,
    ) -> Result<()> {
        self.last = SystemTime::now();
        self.record(piece, map, file_no, job, identity, out, out.changed, 0)
    }

    /// Journals a file a resumed pass moved from the cut one's piece (`resume_move`),
    /// as it was when the cut pass read it (it still is).
    pub(super) fn moved(
        &mut self,
        piece: &mut PieceWriter,
        map: &mut BlockMapWriter,
        file_no: u32,
        job: &FileJob,
        identity: Identity,
        out: &FileOutcome,
    ) -> Result<()> {
        self.last = SystemTime::now();
        self.record(piece, map, file_no, job, identity, out, false, out.size)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        piece: &mut PieceWriter,
        map: &mut BlockMapWriter,
        file_no: u32,
        job: &FileJob,
        identity: Identity,
        out: &FileOutcome,
        changed: bool,
        read: u64,
    ) -> Result<()> {
        let (piece_sum, index_sum) = piece.take_sums();
        let (map_end, map_sum) = match map.log_mut() {
            Some(log) => log.mark()?,
            None => (0, [0; 16]),
        };
        let rec = FileRecord {
            file_no,
            path: job.path.clone(),
            identity,
            parent: job.parent,
            size: out.size,
            digest: out.digest.clone(),
            first_block: out.first_block,
            block_count: out.block_count,
            // For the journal: never adopt it (changed while read, or within a tick of it).
            changed,
            piece_start: self.pos,
            piece_end: piece.position(),
            entries_start: self.entries,
            entries_end: piece.entries(),
            piece_sum,
            index_sum,
            map_start: self.ops,
            map_end,
            map_sum,
        };
        self.ops = map_end;
        self.pos = rec.piece_end;
        self.entries = rec.entries_end;
        if let Some(j) = self.journal.as_mut() {
            if j.add(&rec).is_err() {
                self.journal = None;
            }
        }
        // Source bytes read for this file: what a commit saves a later pass from reading again.
        self.since = self.since.saturating_add(read);
        let full = self.journal.as_ref().is_some_and(|j| j.pending_bytes() >= MAX_PENDING);
        if self.since >= self.every || full {
            self.commit(piece, map)?;
        }
        Ok(())
    }

    /// Makes the piece durable, then the records of the files it holds.
    pub(crate) fn commit(&mut self, piece: &mut PieceWriter, map: &mut BlockMapWriter) -> Result<()> {
        self.since = 0;
        if let Some(j) = self.journal.as_mut().filter(|j| j.pending() > 0) {
            piece.sync()?;
            if let Some(log) = map.log_mut() {
                log.sync()?;
            }
            j.commit()?;
        }
        Ok(())
    }

    /// The pass stops with `err`: commit what is finished (best effort: a failure to
    /// journal costs a later pass some re-reading, never correctness), return `err`.
    pub(crate) fn cut(&mut self, piece: &mut PieceWriter, map: &mut BlockMapWriter, err: Error) -> Error {
        let _ = self.commit(piece, map);
        err
    }

    /// The pass finished: the journal and the map log go (they are never published).
    pub(crate) fn finish(self) -> Result<()> {
        if let Some(j) = self.journal {
            remove(&map_log_path(j.path()))?;
            remove(j.path())?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "resume_taken_tests.rs"]
mod taken_tests;
