//! Resuming a PostgreSQL base backup (`Rule::BaseBackup`, pgBackRest's resume): the
//! next run is a new base backup (its own start and stop LSN), and it adopts every file
//! the cut run finished that is still as that run read it, wherever it lay in the cut
//! run's order. WAL from the new start LSN repairs whatever changed later, exactly as
//! for any file copied during a non-exclusive base backup, provided the copy was taken
//! before the last write to the file that could leave mtime in place; hence:
//!
//! - a file whose mtime lay within `TICK` of its read was journaled as changed and is
//!   never adopted (`Checkpointer::file_done`, `same_tick`);
//! - `global/pg_control` is always copied fresh (recovery starts from the checkpoint it
//!   names; PostgreSQL's basebackup.c and pgBackRest copy it last), and `backup_label`
//!   and `tablespace_map` come from `pg_backup_stop`, never from the data directory;
//! - every other journaled file is adopted when its identity (device, inode, size,
//!   mtime, ctime) is the recorded one and its staged bytes, index entries and block-map
//!   operations hash to what the journal recorded.
//!
//! The caller orders its files (`adoptable`, asked before the pass): the adoptable ones
//! first, in the journal's order. Their staged bytes are copied (not the source read)
//! into a new piece under their new file numbers, with their block-map records moved
//! by the same distance, so the set is the one an uninterrupted pass in this order
//! writes. The first file that fails a check and every file after it are read.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::backup::{FileJob, FileOutcome};
use super::error::{Error, Result};
use super::resume::{fresh, remove, Checkpoint, Staged, Start, TICK};
use crate::format::checkpoint::{map_log_path, read_map_ops, FileRecord, Identity, Journal, MapOp, Settings};
use crate::format::fast::FastTree;
use crate::format::piece::spool_path;
use crate::format::read::read_exact_at;
use crate::format::{BlockMapWriter, BlockRecord, Header, Kind};

/// Data-directory files a base backup always copies fresh (see the module's comment).
pub fn never_adopted(path: &Path) -> bool {
    path.ends_with("global/pg_control")
        || path
            .file_name()
            .is_some_and(|n| n == "backup_label" || n == "tablespace_map")
}

/// Why the journaled file `rec` cannot be adopted now (None: it can, as far as its
/// metadata says; its staged bytes are checked as they are moved).
pub fn refusal(rec: &FileRecord) -> Option<String> {
    let p = rec.path.display();
    if never_adopted(&rec.path) {
        return Some(format!("{p} is always copied fresh"));
    }
    if rec.changed {
        return Some(format!(
            "{p} changed while it was read, or within {TICK:?} of it (a write in the same tick leaves mtime alone)"
        ));
    }
    match fs::metadata(&rec.path) {
        Err(e) => Some(format!("{p}: {e}")),
        Ok(m) if Identity::of(&m) != rec.identity => Some(format!("{p} changed since the cut")),
        Ok(_) => None,
    }
}

/// The files of the journal at `journal` a base backup can adopt now, in the journal's
/// order (each path once): the caller puts them first in its pass.
pub fn adoptable(journal: &Path) -> Result<Vec<PathBuf>> {
    let j = Journal::read(journal)?;
    let mut seen = std::collections::HashSet::new();
    Ok(j.records
        .iter()
        .filter(|r| seen.insert(r.path.clone()) && refusal(r).is_none())
        .map(|r| r.path.clone())
        .collect())
}

/// The cut pass's files, renamed aside while the new piece is written.
struct Aside {
    piece: PathBuf,
    spool: PathBuf,
    journal: PathBuf,
    log: PathBuf,
}

impl Aside {
    fn of(piece_path: &Path, journal: &Path) -> Self {
        let cut = |p: &Path| {
            let mut s = p.as_os_str().to_owned();
            s.push(".cut");
            PathBuf::from(s)
        };
        Self {
            piece: cut(piece_path),
            spool: cut(&spool_path(piece_path)),
            journal: cut(journal),
            log: cut(&map_log_path(journal)),
        }
    }

    fn remove(&self) -> Result<()> {
        [&self.piece, &self.spool, &self.journal, &self.log]
            .into_iter()
            .try_for_each(|p| remove(p))
    }
}

/// `resume::start` for `Rule::BaseBackup`.
#[allow(clippy::too_many_arguments)]
pub(super) fn start(
    jobs: &[FileJob],
    settings: &Settings,
    piece_path: &Path,
    map_path: &Path,
    ck: &Checkpoint,
    make_map: &dyn Fn() -> Result<BlockMapWriter>,
    on_stored: &mut dyn FnMut(&BlockRecord, u64),
    sealed: bool,
) -> Result<Start> {
    let aside = Aside::of(piece_path, &ck.journal);
    // Left by a pass that stopped while moving: its own journal is the newer one.
    aside.remove()?;
    let journal = match read_journal(&ck.journal, settings) {
        Ok(j) => j,
        Err(note) => return fresh(settings, piece_path, map_path, ck, make_map, note),
    };
    let moves = [
        (piece_path.to_path_buf(), &aside.piece),
        (spool_path(piece_path), &aside.spool),
        (ck.journal.clone(), &aside.journal),
        (map_log_path(&ck.journal), &aside.log),
    ];
    for (from, to) in &moves {
        if let Err(e) = fs::rename(from, to) {
            aside.remove()?;
            let note = Some(format!("staged file {} unusable: {e}", from.display()));
            return fresh(settings, piece_path, map_path, ck, make_map, note);
        }
    }
    let mut s = fresh(settings, piece_path, map_path, ck, make_map, None)?;
    let note = move_files(jobs, settings, &journal, &aside, &mut s, on_stored, sealed);
    s.ck.commit(&mut s.piece, &mut s.map)?;
    aside.remove()?;
    s.resumed.note = note?;
    Ok(s)
}

/// The journal, when a pass with `settings` may adopt from it; Err(why not).
fn read_journal(path: &Path, settings: &Settings) -> std::result::Result<Journal, Option<String>> {
    if !path.exists() {
        return Err(None);
    }
    let j = Journal::read(path).map_err(|e| Some(format!("checkpoint unreadable: {e}")))?;
    if &j.settings != settings {
        return Err(Some("the checkpoint was written with other settings".into()));
    }
    Ok(j)
}

/// Moves the adoptable files at the head of `jobs` into the new piece; returns why it
/// stopped where it did (None: it took every journaled file the jobs name).
fn move_files(
    jobs: &[FileJob],
    settings: &Settings,
    journal: &Journal,
    aside: &Aside,
    s: &mut Start,
    on_stored: &mut dyn FnMut(&BlockRecord, u64),
    sealed: bool,
) -> Result<Option<String>> {
    let mut by_path: HashMap<&Path, &FileRecord> = HashMap::new();
    for r in &journal.records {
        by_path.entry(r.path.as_path()).or_insert(r);
    }
    let open = |p: &Path| File::open(p).map_err(|e| Error::io(p, e));
    let (piece, spool, log) = match (open(&aside.piece), open(&aside.spool), open(&aside.log)) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Ok(Some(format!("staged files unreadable: {e}"))),
    };
    let header = Header::new(Kind::Piece, settings.block_size, settings.algorithm);
    let staged = Staged {
        piece: &piece,
        piece_path: &aside.piece,
        spool: &spool,
        spool_path: &aside.spool,
        log: &log,
        log_path: &aside.log,
        header,
        entry_len: header.layout.index_entry_len(header.digest_len()),
    };
    for (i, job) in jobs.iter().enumerate() {
        let Some(rec) = by_path.get(job.path.as_path()).copied() else {
            return Ok(None);
        };
        let why = match refusal(rec) {
            Some(why) => Some(why),
            None if rec.parent != job.parent => Some(format!(
                "{}: the parent's blocks of it moved since the cut",
                job.path.display()
            )),
            // A sealed block is bound to its offset: an encrypted set's files stay put.
            None if sealed && rec.piece_start != s.piece.position() => Some(format!(
                "{}: its sealed blocks cannot move to offset {}",
                job.path.display(),
                s.piece.position()
            )),
            None => check(&staged, rec, settings.self_source)
                .err()
                .map(|m| format!("{}: {m}", job.path.display())),
        };
        if let Some(why) = why {
            return Ok(Some(format!("{why}; read again from there")));
        }
        let file_no = u32::try_from(i).map_err(|_| Error::Invalid("more than 4 billion files".into()))?;
        let out = move_one(&staged, rec, file_no, settings.self_source, s, on_stored)?;
        s.ck.moved(&mut s.piece, &mut s.map, file_no, job, rec.identity, &out)?;
        s.files.push(out);
        s.resumed.files += 1;
        s.resumed.source_bytes += rec.size;
        s.resumed.piece_bytes += rec.piece_end - rec.piece_start;
    }
    Ok(None)
}

/// Checks the staged bytes, index entries and block-map operations of `rec` against
/// the journal before anything of it is moved (a failure after that fails the pass).
fn check(staged: &Staged<'_>, rec: &FileRecord, self_source: u32) -> std::result::Result<(), String> {
    let mut hasher = staged.header.algorithm.hasher();
    staged.hash_range(rec, &mut hasher, &mut FastTree::new())?;
    staged.check_entries(rec.file_no as usize, rec)?;
    staged.check_ops(rec)?;
    // A record of this set's own piece must point into the file's own bytes: those are
    // the only ones moved (a base backup stores no block twice, so none points elsewhere).
    let digest_len = staged.header.digest_len();
    let mut outside = None;
    read_map_ops(
        staged.log,
        staged.log_path,
        (rec.map_start, rec.map_end),
        digest_len,
        staged.header.block_size,
        |op| {
            // A copy names records by number, which moving files reorders (base backups
            // write none: no dedup pass).
            if matches!(op, MapOp::Copy { .. }) {
                return Err("a block-map copy run cannot be moved".into());
            }
            if let MapOp::Record(r) = op {
                if r.source == self_source && !(rec.piece_start..rec.piece_end).contains(&r.offset) {
                    outside.get_or_insert(r.offset);
                }
            }
            Ok(())
        },
    )?;
    match outside {
        Some(at) => Err(format!("a block-map record points outside its bytes (offset {at})")),
        None => Ok(()),
    }
}

/// Copies `rec`'s staged blocks into the new piece as file `file_no` and applies its
/// block-map operations, its own blocks' offsets moved with them.
fn move_one(
    staged: &Staged<'_>,
    rec: &FileRecord,
    file_no: u32,
    self_source: u32,
    s: &mut Start,
    on_stored: &mut dyn FnMut(&BlockRecord, u64),
) -> Result<FileOutcome> {
    let first_block = s.map.count();
    let new_start = s.piece.position();
    let mut failed: Option<Error> = None;
    let mut buf = Vec::new();
    let piece = &mut s.piece;
    let copied = staged.entries(rec, |e| {
        buf.resize(e.stored_len as usize, 0);
        let r = read_exact_at(staged.piece, staged.piece_path, &mut buf, e.offset)
            .map_err(Error::from)
            .and_then(|()| {
                piece
                    .write_block(file_no, e.block_index, &buf, e.raw_len, e.flags, &e.digest)
                    .map_err(Error::from)
            });
        r.map(|_| ()).map_err(|err| {
            let m = err.to_string();
            failed = Some(err);
            m
        })
    });
    if let Some(e) = failed.take() {
        return Err(e);
    }
    copied.map_err(Error::Invalid)?;
    staged.replay(rec, &mut s.map, on_stored, Some((self_source, new_start)))?;
    Ok(FileOutcome {
        size: rec.size,
        digest: rec.digest.clone(),
        first_block,
        block_count: rec.block_count,
        changed: false,
    })
}
