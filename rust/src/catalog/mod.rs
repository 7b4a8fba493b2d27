//! Reading the catalog's `sets` table straight into Rust (no Python object per row), for
//! questions that need every set of a database, such as a retention plan.
//!
//! The rows land in one string arena plus fixed-size records; [`ChainRows::refs`] lends
//! them to the chain logic as [`SetRef`]s. Reading goes through the SQLite that Python's
//! `sqlite3` module uses (see [`sqlite`]), in one statement, so the rows are one
//! consistent snapshot even while another process commits.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use crate::chain::{BackupKind, SetRef, SetState};

pub mod sqlite;

use sqlite::{Api, Connection, SQLITE_INTEGER, SQLITE_NULL, SQLITE_TEXT};

/// Rows in the order `recovery_path` and `retention_plan` expect (oldest first, ties by
/// start, then id); the covering index `sets_chain` serves it without a sort.
const QUERY: &std::ffi::CStr = c"SELECT id, backup_type, parent_id, started_at, finished_at, status \
    FROM sets WHERE database = ?1 ORDER BY finished_at, started_at, id";

/// Why the catalog could not be read; the message names the file and, for a bad row,
/// its position, id and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogReadError(pub String);

impl fmt::Display for CatalogReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CatalogReadError {}

#[derive(Clone, Debug)]
struct Row {
    id: Range<u32>,
    parent: Option<Range<u32>>,
    kind: BackupKind,
    state: SetState,
    started_us: i64,
    finished_us: i64,
}

/// Every set of one database: ids and parent ids in one arena, the rest inline.
#[derive(Clone, Debug, Default)]
pub struct ChainRows {
    text: String,
    rows: Vec<Row>,
}

impl ChainRows {
    /// How many sets.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the database has no sets.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i`'s set id.
    pub fn id(&self, i: usize) -> &str {
        self.slice(&self.rows[i].id)
    }

    /// The rows as the chain logic reads them, borrowing this arena.
    pub fn refs(&self) -> Vec<SetRef<'_>> {
        self.rows
            .iter()
            .map(|r| {
                let parent = r.parent.as_ref().map(|p| self.slice(p));
                SetRef::new(self.slice(&r.id), r.kind, parent, r.started_us, r.finished_us, r.state)
            })
            .collect()
    }

    /// Reserves room for the rows a catalog file of `file_len` bytes can hold, so reading
    /// never copies a growing arena (that cost a third of a 50,000-row read). Every id is
    /// stored at least three times in the file (row, `sets_chain`, primary key) and every
    /// row takes well over 64 bytes, so this overestimates; the excess is address space
    /// that is never touched. If the system refuses the reservation, the vectors grow.
    fn reserve_for(&mut self, file_len: u64) {
        const CAP: u64 = 1 << 30;
        let bytes = usize::try_from(file_len.min(CAP) / 2).unwrap_or(0);
        let rows = usize::try_from(file_len.min(CAP) / 64).unwrap_or(0);
        let _ = self.text.try_reserve(bytes);
        let _ = self.rows.try_reserve(rows);
    }

    /// Returns a large over-reservation (a big catalog file, a small database): the
    /// untouched part costs no memory, but under strict overcommit it counts against the
    /// commit limit while the rows live. Small slack stays: shrinking copies, and cost a
    /// fifth of a 50,000-row read.
    fn give_back_slack(&mut self) {
        const SLACK: usize = 64 << 20;
        if self.text.capacity() - self.text.len() > SLACK {
            self.text.shrink_to_fit();
        }
        if (self.rows.capacity() - self.rows.len()) * std::mem::size_of::<Row>() > SLACK {
            self.rows.shrink_to_fit();
        }
    }

    fn slice(&self, range: &Range<u32>) -> &str {
        &self.text[range.start as usize..range.end as usize]
    }

    fn push_text(&mut self, bytes: &[u8]) -> Option<Range<u32>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let start = u32::try_from(self.text.len()).ok()?;
        self.text.push_str(text);
        let end = u32::try_from(self.text.len()).ok()?;
        Some(start..end)
    }
}

/// Every set of `database` in `catalog` (a catalog.db file), through Python's SQLite `api`.
pub fn read_chain_rows(api: &Api, catalog: &Path, database: &str) -> Result<ChainRows, CatalogReadError> {
    let fail = |what: String| CatalogReadError(format!("cannot read catalog {}: {what}", catalog.display()));
    // The Python side opens with a 60 s busy timeout; a reader only waits on WAL recovery.
    let conn = Connection::open_read_only(api, catalog, 60_000).map_err(fail)?;
    let mut stmt = conn.prepare(QUERY).map_err(fail)?;
    stmt.bind_text(1, database).map_err(fail)?;
    let mut out = ChainRows::default();
    out.reserve_for(std::fs::metadata(catalog).map_or(0, |m| m.len()));
    while stmt.step().map_err(fail)? {
        let row = read_row(&stmt, &mut out).map_err(|(field, id)| {
            let position = out.rows.len();
            fail(format!(
                "sets row {position} of database {database:?} (id {id:?}): {field}"
            ))
        })?;
        out.rows.push(row);
    }
    out.give_back_slack();
    Ok(out)
}

/// The current row of `stmt`, its strings appended to `out`'s arena; on a bad value,
/// what is wrong and the row's id (or "?").
fn read_row(stmt: &sqlite::Statement<'_>, out: &mut ChainRows) -> Result<Row, (String, String)> {
    // Only TEXT is taken as text: SQLite would convert a BLOB or a number, which the
    // `sqlite3` path hands over as bytes/int and the chain logic refuses.
    let text = |col: i32| match stmt.column_type(col) {
        SQLITE_TEXT => stmt.column_text(col),
        _ => None,
    };
    let id = text(0)
        .and_then(|bytes| out.push_text(bytes))
        .ok_or_else(|| ("id is not UTF-8 text".to_string(), "?".to_string()))?;
    let bad = |out: &ChainRows, field: String| (field, out.slice(&id).to_string());
    let name = |col: i32| String::from_utf8_lossy(stmt.column_text(col).unwrap_or(b"NULL")).into_owned();
    let kind = text(1)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(BackupKind::from_name);
    let Some(kind) = kind else {
        let field = format!(
            "backup_type {:?} is not one of full, incremental, differential, archive_log",
            name(1)
        );
        return Err(bad(out, field));
    };
    let parent = match stmt.column_type(2) {
        SQLITE_NULL => None,
        SQLITE_TEXT => match stmt.column_text(2).and_then(|bytes| out.push_text(bytes)) {
            Some(range) => Some(range),
            None => return Err(bad(out, "parent_id is not UTF-8 text".to_string())),
        },
        _ => return Err(bad(out, "parent_id is not text or NULL".to_string())),
    };
    let int = |col: i32, field: &str| match stmt.column_type(col) {
        SQLITE_INTEGER => Ok(stmt.column_i64(col)),
        _ => Err(bad(out, format!("{field} is not an integer (µs since the epoch)"))),
    };
    let started_us = int(3, "started_at")?;
    let finished_us = int(4, "finished_at")?;
    let state = text(5)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(SetState::from_name);
    let Some(state) = state else {
        let field = format!("status {:?} is not one of available, corrupt, expired", name(5));
        return Err(bad(out, field));
    };
    Ok(Row {
        id,
        parent,
        kind,
        state,
        started_us,
        finished_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_that_is_not_loaded_gives_no_api() {
        assert!(Api::load(Path::new("/nonexistent/_sqlite3.so")).is_none());
        assert!(Api::load(Path::new("bad\0path")).is_none());
    }

    #[test]
    fn the_arena_keeps_text_and_refuses_bad_utf8() {
        let mut rows = ChainRows::default();
        rows.reserve_for(u64::MAX);
        let id = rows.push_text("s-é".as_bytes()).unwrap();
        assert_eq!(rows.slice(&id), "s-é");
        assert!(rows.push_text(&[0x66, 0xff]).is_none());
        assert_eq!(rows.slice(&id), "s-é");
        rows.give_back_slack();
        assert!(rows.text.capacity() < 1 << 20 && rows.rows.capacity() < 1 << 20);
    }
}
