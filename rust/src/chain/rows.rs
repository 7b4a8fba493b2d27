//! Every set of one database, owned by Rust: the rows Python read from the catalog's
//! `sets` table and handed over once, validated, so that several chain questions (a
//! retention plan, then a recovery path) run on them without converting them again.
//!
//! Ids and parent ids live in one string arena; the rest of each row is inline.
//! [`ChainRows::refs`] lends them to the chain logic as [`SetRef`]s.

use std::ops::Range;

use super::{BackupKind, SetRef, SetState};

#[derive(Clone, Debug)]
struct Row {
    id: Range<usize>,
    parent: Option<Range<usize>>,
    kind: BackupKind,
    state: SetState,
    started_us: i64,
    finished_us: i64,
}

/// Every set of one database, in the order they were pushed.
#[derive(Clone, Debug, Default)]
pub struct ChainRows {
    text: String,
    rows: Vec<Row>,
}

impl ChainRows {
    /// Empty rows with room for `rows` sets whose ids and parent ids take `text` bytes.
    pub fn with_capacity(rows: usize, text: usize) -> Self {
        Self {
            text: String::with_capacity(text),
            rows: Vec::with_capacity(rows),
        }
    }

    /// Appends one set.
    pub fn push(
        &mut self,
        id: &str,
        kind: BackupKind,
        parent: Option<&str>,
        started_us: i64,
        finished_us: i64,
        state: SetState,
    ) {
        let id = self.push_text(id);
        let parent = parent.map(|p| self.push_text(p));
        self.rows.push(Row {
            id,
            parent,
            kind,
            state,
            started_us,
            finished_us,
        });
    }

    /// How many sets.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i`'s set id, or None past the end.
    pub fn id(&self, i: usize) -> Option<&str> {
        self.rows.get(i).map(|r| &self.text[r.id.clone()])
    }

    /// The rows as the chain logic reads them, borrowing the arena.
    pub fn refs(&self) -> Vec<SetRef<'_>> {
        self.rows
            .iter()
            .map(|r| {
                let parent = r.parent.clone().map(|p| &self.text[p]);
                SetRef::new(
                    &self.text[r.id.clone()],
                    r.kind,
                    parent,
                    r.started_us,
                    r.finished_us,
                    r.state,
                )
            })
            .collect()
    }

    fn push_text(&mut self, text: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(text);
        start..self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_as_pushed() {
        let mut rows = ChainRows::with_capacity(0, 0);
        assert!(rows.is_empty() && rows.refs().is_empty() && rows.id(0).is_none());
        rows.push("f-é", BackupKind::Full, None, 1, 2, SetState::Available);
        rows.push("i-😀", BackupKind::Incremental, Some("f-é"), 3, 4, SetState::Corrupt);
        rows.push("", BackupKind::ArchiveLog, Some(""), -5, i64::MAX, SetState::Expired);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.id(1), Some("i-😀"));
        let refs = rows.refs();
        assert_eq!(
            refs[1],
            SetRef::new("i-😀", BackupKind::Incremental, Some("f-é"), 3, 4, SetState::Corrupt)
        );
        assert_eq!(
            refs[2],
            SetRef::new("", BackupKind::ArchiveLog, Some(""), -5, i64::MAX, SetState::Expired)
        );
        assert_eq!(refs[0].parent, None);
    }
}
