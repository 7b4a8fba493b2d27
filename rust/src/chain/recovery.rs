//! Recovery paths: which sets a restore to a point in time reads, base first.
//!
//! The rules follow RMAN's RESTORE ... UNTIL TIME and pgBackRest's restore:
//! 1. the base is the newest FULL that finished at or before `until` and is AVAILABLE;
//!    a CORRUPT or EXPIRED FULL is skipped, falling back to an older one;
//! 2. on that FULL, the target is the newest data set finished at or before `until` whose
//!    whole parent chain is present and AVAILABLE (for the chains the engine writes: the
//!    newest DIFFERENTIAL on the FULL, then the INCREMENTALs after it); a broken link
//!    (CORRUPT, EXPIRED or missing set) makes everything after it unusable, so an older
//!    point of the same chain is used;
//! 3. the ARCHIVE_LOG sets, in finish order, among those that finished after the target
//!    *started*: every one that finished by the time the target finished (a hot backup needs
//!    the logs written during it to be consistent), then the following ones while the point
//!    reached is still before `until`, so the last one is the first to finish at or after
//!    `until` (none when the target itself finished exactly at `until`).
//!    The stream must have no hole: an unusable log written during the target backup, or
//!    one before `until` when `until` is given, is a [`ChainError::NoRecoveryPath`] naming
//!    it; without `until` ("latest") the path stops before the first unusable later log, as
//!    PostgreSQL recovery stops at the end of the usable WAL stream.

use super::index::{ChainIndex, Link};
use super::time::fmt_us;
use super::{BackupKind, ChainError, ChainRecord, SetState};

/// The positions (into `rows`) of the sets a restore to `until` reads, base first.
/// `until = None` means the latest recoverable point. `database` only names the database
/// in error messages.
pub fn recovery_path<R: ChainRecord>(
    rows: &[R],
    until_us: Option<i64>,
    database: Option<&str>,
) -> Result<Vec<u32>, ChainError> {
    let index = ChainIndex::new(rows)?;
    let roots = index.roots(true);
    recovery_path_indexed(&index, &roots, until_us, database)
}

/// [`recovery_path`] over an index whose usable roots (`index.roots(true)`) are known, so
/// retention can ask many questions without re-indexing.
pub fn recovery_path_indexed<R: ChainRecord>(
    index: &ChainIndex<'_, R>,
    usable_roots: &[u32],
    until_us: Option<i64>,
    database: Option<&str>,
) -> Result<Vec<u32>, ChainError> {
    let until = until_us.unwrap_or(i64::MAX);
    let base = newest_usable_full(index, until).ok_or_else(|| no_full_reason(index, until_us, database))?;
    let target = newest_point_on(index, usable_roots, base, until);
    let mut path = chain_to(index, target)?;
    path.extend(archive_logs(index, target, until_us, database)?);
    index.check_unique(&path)?;
    Ok(path)
}

/// Rule 1: whether a set can be the base of a restore (once it has finished).
pub(crate) fn can_be_base<R: ChainRecord>(row: &R) -> bool {
    row.kind() == BackupKind::Full && row.state() == SetState::Available
}

/// The newest AVAILABLE FULL finished at or before `until`.
fn newest_usable_full<R: ChainRecord>(index: &ChainIndex<'_, R>, until: i64) -> Option<u32> {
    let mut best: Option<u32> = None;
    for (i, row) in index.rows().iter().enumerate() {
        if can_be_base(row) && row.finished_us() <= until {
            let i = i as u32;
            if best.is_none_or(|b| index.cmp_age(i, b).is_gt()) {
                best = Some(i);
            }
        }
    }
    best
}

/// The newest data set finished at or before `until` whose usable chain leads to `base`.
fn newest_point_on<R: ChainRecord>(index: &ChainIndex<'_, R>, usable_roots: &[u32], base: u32, until: i64) -> u32 {
    let mut best = base;
    for (i, row) in index.rows().iter().enumerate() {
        let i = i as u32;
        if usable_roots[i as usize] == base && row.finished_us() <= until && index.cmp_age(i, best).is_gt() {
            best = i;
        }
    }
    best
}

/// `target` and its ancestors, base first. Errors on a missing parent or a cycle.
pub fn chain_to<R: ChainRecord>(index: &ChainIndex<'_, R>, target: u32) -> Result<Vec<u32>, ChainError> {
    let mut chain = vec![target];
    let mut at = target;
    while let Link::At(p) = index.parent(at) {
        if chain.len() > index.len() {
            return Err(ChainError::ParentCycle(index.row(target).id().to_string()));
        }
        chain.push(p);
        at = p;
    }
    if index.parent(at) == Link::Missing {
        let row = index.row(at);
        let parent = row.parent().unwrap_or_default().to_string();
        return Err(ChainError::MissingParent {
            id: row.id().to_string(),
            parent,
        });
    }
    chain.reverse();
    Ok(chain)
}

/// The ARCHIVE_LOG sets that roll `target` forward to `until` (rule 3 above).
fn archive_logs<R: ChainRecord>(
    index: &ChainIndex<'_, R>,
    target: u32,
    until_us: Option<i64>,
    database: Option<&str>,
) -> Result<Vec<u32>, ChainError> {
    let target_row = index.row(target);
    let (started, finished) = (target_row.started_us(), target_row.finished_us());
    let stream = LogStream::new(index, started);
    let until = until_us.unwrap_or(i64::MAX);
    let mut needed = stream.needed(started, finished, until);
    let hole = |k: usize| {
        let row = index.row(stream.logs[k]);
        let of = database.map(|d| format!("{d} ")).unwrap_or_default();
        let what = format!(
            "ARCHIVE_LOG {} (finished {}) is {}",
            row.id(),
            fmt_us(row.finished_us()),
            row.state().label()
        );
        (of, what, format!("{} {}", target_row.kind().label(), target_row.id()))
    };
    match stream.reach(started, finished) {
        Reach::Inconsistent(k) => {
            let (of, what, target_name) = hole(k);
            return Err(ChainError::NoRecoveryPath(format!(
                "cannot make {of}{target_name} consistent: {what}, and it holds changes made during that backup"
            )));
        }
        Reach::UpTo(reached, Some(k)) if until > reached => {
            if until_us.is_some() {
                let (of, what, target_name) = hole(k);
                return Err(ChainError::NoRecoveryPath(format!(
                    "cannot roll {of}forward to {}: {what}; the latest reachable point from {target_name} is {}",
                    fmt_us(until),
                    fmt_us(reached)
                )));
            }
            // "Latest": the usable stream ends before the hole, as PostgreSQL recovery stops.
            needed.end = k;
        }
        Reach::UpTo(..) => {}
    }
    Ok(stream.logs[needed].to_vec())
}

/// How far rule 3 can roll a target forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The log at this position of the stream was written during the target backup and is
    /// unusable: the target cannot be made consistent, so no instant is reachable from it.
    Inconsistent(usize),
    /// Every instant from the target's finish up to this one (inclusive) is reachable; the
    /// position of the unusable log that stops it there, if one does.
    UpTo(i64, Option<usize>),
}

/// The ARCHIVE_LOG sets in age order, and where the stream has holes: what rule 3 reads.
/// Built once, it answers for any target and `until` in O(log n).
pub(crate) struct LogStream {
    /// Row positions of the logs, oldest first (finish, start, id).
    logs: Vec<u32>,
    /// Their finish times, in the same order.
    finished: Vec<i64>,
    /// For each stream position, the first position at or after it whose log is unusable
    /// (not AVAILABLE), or `logs.len()`.
    next_hole: Vec<usize>,
}

impl LogStream {
    /// The logs finished after `after_us`: enough for every target that started then or
    /// later (one restore needs no more, and sorts no more).
    pub(crate) fn new<R: ChainRecord>(index: &ChainIndex<'_, R>, after_us: i64) -> Self {
        let mut logs: Vec<u32> = (0..index.len() as u32)
            .filter(|&i| {
                let row = index.row(i);
                row.kind() == BackupKind::ArchiveLog && row.finished_us() > after_us
            })
            .collect();
        logs.sort_unstable_by(|&a, &b| index.cmp_age(a, b));
        let finished = logs.iter().map(|&i| index.row(i).finished_us()).collect();
        let mut next_hole = vec![logs.len(); logs.len() + 1];
        for k in (0..logs.len()).rev() {
            let usable = index.row(logs[k]).state() == SetState::Available;
            next_hole[k] = if usable { next_hole[k + 1] } else { k };
        }
        Self {
            logs,
            finished,
            next_hole,
        }
    }

    /// Stream positions of the first log finished after `t`.
    fn after(&self, t: i64) -> usize {
        self.finished.partition_point(|&f| f <= t)
    }

    /// The first log that finished after the target started, and the first that finished
    /// after it finished (never before the former: a damaged row may start after it ends).
    fn bounds(&self, started: i64, finished: i64) -> (usize, usize) {
        let first = self.after(started);
        (first, self.after(finished).max(first))
    }

    /// The logs (stream positions) a restore to `until` reads from a target that started
    /// at `started` and finished at `finished <= until`: those finished during the backup,
    /// then later ones up to and including the first that finished at or after `until`.
    fn needed(&self, started: i64, finished: i64, until: i64) -> std::ops::Range<usize> {
        let (first, later) = self.bounds(started, finished);
        if finished >= until {
            return first..later;
        }
        // A later log is read while the point reached before it is still short of `until`.
        let reaching = self.finished.partition_point(|&f| f < until).max(later);
        first..(reaching + 1).min(self.logs.len())
    }

    /// How far the logs roll forward a target that started at `started` and finished at
    /// `finished`: a restore to `until >= finished` succeeds exactly when `until` is at or
    /// before the instant returned.
    pub(crate) fn reach(&self, started: i64, finished: i64) -> Reach {
        let (first, later) = self.bounds(started, finished);
        if self.next_hole[first] < later {
            return Reach::Inconsistent(self.next_hole[first]);
        }
        let hole = self.next_hole[later];
        if hole == self.logs.len() {
            return Reach::UpTo(i64::MAX, None);
        }
        // The point reached before the hole: the log before it, or the target itself.
        let reached = if hole == later {
            finished
        } else {
            self.finished[hole - 1]
        };
        Reach::UpTo(reached, Some(hole))
    }
}

/// Why no FULL can serve as the base, in words a DBA can act on.
fn no_full_reason<R: ChainRecord>(
    index: &ChainIndex<'_, R>,
    until_us: Option<i64>,
    database: Option<&str>,
) -> ChainError {
    let of = database.map(|d| format!(" of {d}")).unwrap_or_default();
    let until = until_us.unwrap_or(i64::MAX);
    let fulls: Vec<u32> = (0..index.len() as u32)
        .filter(|&i| index.row(i).kind() == BackupKind::Full)
        .collect();
    let at_or_before = match until_us {
        Some(t) => format!(" finished at or before {}", fmt_us(t)),
        None => String::new(),
    };
    let reason = if fulls.is_empty() {
        format!("no FULL backup{of} exists, so there is nothing to restore from")
    } else {
        let candidates: Vec<u32> = fulls
            .iter()
            .copied()
            .filter(|&i| index.row(i).finished_us() <= until)
            .collect();
        match candidates.iter().copied().max_by(|&a, &b| index.cmp_age(a, b)) {
            None => {
                let oldest = fulls.iter().copied().min_by(|&a, &b| index.cmp_age(a, b));
                let detail = oldest.map_or(String::new(), |i| {
                    let row = index.row(i);
                    format!(
                        "; the oldest FULL, {}, finished {}",
                        row.id(),
                        fmt_us(row.finished_us())
                    )
                });
                format!("no usable FULL backup{of}{at_or_before}{detail}")
            }
            Some(newest) => {
                let row = index.row(newest);
                let older = candidates.len() - 1;
                if older == 0 {
                    format!(
                        "no usable FULL backup{of}{at_or_before}: the newest FULL {} is {} and no older FULL exists",
                        row.id(),
                        row.state().label()
                    )
                } else {
                    format!(
                        "no usable FULL backup{of}{at_or_before}: the newest FULL {} is {} and the {older} older \
                         FULL{} CORRUPT or EXPIRED too",
                        row.id(),
                        row.state().label(),
                        if older == 1 { " is" } else { "s are" },
                    )
                }
            }
        }
    };
    ChainError::NoRecoveryPath(reason)
}

/// `set_id` and its ancestors, base first, whatever their status (for `catalog.chain`).
pub fn recovery_chain<R: ChainRecord>(rows: &[R], set_id: &str) -> Result<Vec<u32>, ChainError> {
    let index = ChainIndex::new(rows)?;
    let at = index
        .position(set_id)
        .ok_or_else(|| ChainError::UnknownSet(set_id.to_string()))?;
    let chain = chain_to(&index, at)?;
    index.check_unique(&chain)?;
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::SetRecord;

    const H: i64 = 3_600_000_000;

    fn set(id: &str, kind: &str, parent: Option<&str>, hour: i64, state: &str) -> SetRecord {
        SetRecord {
            id: id.to_string(),
            kind: BackupKind::from_name(kind).unwrap(),
            parent: parent.map(str::to_string),
            started_us: hour * H,
            finished_us: hour * H + H / 2,
            state: SetState::from_name(state).unwrap(),
        }
    }

    fn ids(rows: &[SetRecord], path: Vec<u32>) -> Vec<&str> {
        path.into_iter().map(|i| rows[i as usize].id.as_str()).collect()
    }

    fn week() -> Vec<SetRecord> {
        vec![
            set("f1", "full", None, 0, "available"),
            set("i1", "incremental", Some("f1"), 1, "available"),
            set("d1", "differential", Some("f1"), 2, "available"),
            set("i2", "incremental", Some("d1"), 3, "available"),
            set("a1", "archive_log", None, 4, "available"),
            set("i3", "incremental", Some("i2"), 5, "available"),
            set("a2", "archive_log", None, 6, "available"),
            set("a3", "archive_log", None, 7, "available"),
        ]
    }

    #[test]
    fn latest_path_is_full_newest_differential_incrementals_and_every_later_log() {
        let rows = week();
        assert_eq!(
            ids(&rows, recovery_path(&rows, None, None).unwrap()),
            ["f1", "d1", "i2", "i3", "a2", "a3"]
        );
    }

    #[test]
    fn until_stops_at_the_first_log_that_finishes_at_or_after_it() {
        let rows = week();
        let until = 6 * H + H / 4;
        assert_eq!(
            ids(&rows, recovery_path(&rows, Some(until), None).unwrap()),
            ["f1", "d1", "i2", "i3", "a2"]
        );
        let until = 3 * H + H / 2;
        assert_eq!(
            ids(&rows, recovery_path(&rows, Some(until), None).unwrap()),
            ["f1", "d1", "i2"]
        );
        let until = 3 * H + H / 2 + 1;
        assert_eq!(
            ids(&rows, recovery_path(&rows, Some(until), None).unwrap()),
            ["f1", "d1", "i2", "a1"]
        );
    }

    #[test]
    fn a_corrupt_incremental_cuts_the_chain_after_it() {
        let mut rows = week();
        rows[3].state = SetState::Corrupt;
        assert_eq!(
            ids(&rows, recovery_path(&rows, None, None).unwrap()),
            ["f1", "d1", "a1", "a2", "a3"]
        );
    }

    #[test]
    fn a_corrupt_full_falls_back_to_the_older_chain() {
        let mut rows = week();
        rows.push(set("f2", "full", None, 8, "corrupt"));
        rows.push(set("i4", "incremental", Some("f2"), 9, "available"));
        assert_eq!(
            ids(&rows, recovery_path(&rows, None, None).unwrap()),
            ["f1", "d1", "i2", "i3", "a2", "a3"]
        );
    }

    #[test]
    fn a_missing_parent_makes_the_child_unusable() {
        let mut rows = week();
        rows.remove(2); // d1
        assert_eq!(
            ids(&rows, recovery_path(&rows, None, None).unwrap()),
            ["f1", "i1", "a1", "a2", "a3"]
        );
    }

    #[test]
    fn a_corrupt_log_before_until_is_an_error_naming_it() {
        let mut rows = week();
        rows[6].state = SetState::Expired;
        let err = recovery_path(&rows, Some(8 * H), Some("db")).unwrap_err().to_string();
        assert!(
            err.contains("cannot roll db forward to 1970-01-01T08:00:00Z: ARCHIVE_LOG a2"),
            "{err}"
        );
        assert!(err.contains("is EXPIRED; the latest reachable point from INCREMENTAL i3 is 1970-01-01T05:30:00Z"));
        assert_eq!(
            ids(&rows, recovery_path(&rows, None, None).unwrap()),
            ["f1", "d1", "i2", "i3"]
        );
    }

    #[test]
    fn no_full_before_until_names_the_oldest_full() {
        let rows = week();
        let err = recovery_path(&rows, Some(H / 4), Some("db")).unwrap_err().to_string();
        assert_eq!(
            err,
            "no usable FULL backup of db finished at or before 1970-01-01T00:15:00Z; the oldest FULL, f1, \
             finished 1970-01-01T00:30:00Z"
        );
    }

    #[test]
    fn only_a_corrupt_full_says_so() {
        let rows = vec![set("f1", "full", None, 0, "corrupt")];
        let err = recovery_path(&rows, None, Some("db")).unwrap_err().to_string();
        assert_eq!(
            err,
            "no usable FULL backup of db: the newest FULL f1 is CORRUPT and no older FULL exists"
        );
        let err = recovery_path::<SetRecord>(&[], None, None).unwrap_err().to_string();
        assert_eq!(err, "no FULL backup exists, so there is nothing to restore from");
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let mut rows = week();
        rows.push(set("i1", "incremental", Some("f1"), 9, "available"));
        let err = recovery_path(&rows, None, None).unwrap_err();
        assert_eq!(
            err,
            ChainError::DuplicateId {
                id: "i1".into(),
                first: 1,
                second: 8
            }
        );
    }

    #[test]
    fn parent_cycles_do_not_hang() {
        let rows = vec![
            set("f1", "full", None, 0, "available"),
            set("x", "incremental", Some("y"), 1, "available"),
            set("y", "incremental", Some("x"), 2, "available"),
        ];
        assert_eq!(ids(&rows, recovery_path(&rows, None, None).unwrap()), ["f1"]);
        assert_eq!(
            recovery_chain(&rows, "x").unwrap_err(),
            ChainError::ParentCycle("x".into())
        );
    }

    #[test]
    fn recovery_chain_lists_ancestors_base_first() {
        let rows = week();
        assert_eq!(
            ids(&rows, recovery_chain(&rows, "i3").unwrap()),
            ["f1", "d1", "i2", "i3"]
        );
        assert_eq!(
            recovery_chain(&rows, "nope").unwrap_err(),
            ChainError::UnknownSet("nope".into())
        );
        let mut rows = week();
        rows.remove(2);
        let err = recovery_chain(&rows, "i3").unwrap_err().to_string();
        assert_eq!(err, "the parent \"d1\" of backup set \"i2\" is not in the catalog");
    }
}
