//! Retention: which sets a policy keeps, each decision with a reason a human can check.
//!
//! A set is kept if any rule keeps it (policies combine by union):
//! - **redundancy(n)**: the n newest AVAILABLE FULLs and everything that finished since the
//!   n-th of them, so every instant since it stays recoverable (RMAN's REDUNDANCY keeps the
//!   logs needed to recover its oldest kept backup);
//! - **recovery window**: every instant of `[now - window, now]` stays recoverable: the newest
//!   AVAILABLE FULL finished at or before `now - window` (RMAN's point of recoverability) and
//!   everything that finished since. It is *not* "delete what is older than the window";
//! - **keep counts** (restic/borg `forget --keep-*`): usable restore points newest first; for
//!   each period kind, the newest point of each of the N most recent periods that *have* a
//!   point, in the database's zone, so a machine that was off for weeks keeps its history;
//! - **protected** ids (being read by a restore or a verification) stay.
//!
//! Then the safety rules: a kept set keeps its whole parent chain ("needed by INCREMENTAL x");
//! the ARCHIVE_LOG sets that make a kept point consistent, or that roll forward through a
//! promised range, stay (whatever their status, so a hole stays visible to recovery); the
//! only usable FULL is never deleted unless `force`; a CORRUPT or EXPIRED set is never left
//! as the oldest survivor while an older usable FULL can stand before it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Timelike};
use chrono_tz::Tz;

use super::index::{ChainIndex, Link, NO_ROOT};
use super::time::{fmt_span, fmt_us};
use super::{BackupKind, ChainError, ChainRecord, SetState};

/// How many restore points of each period kind `keep` retains (0 = that kind is off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepCounts {
    /// The newest N points whatever their time.
    pub last: u32,
    /// One per hour, for the N newest hours that have a point.
    pub hourly: u32,
    /// One per day.
    pub daily: u32,
    /// One per ISO week.
    pub weekly: u32,
    /// One per month.
    pub monthly: u32,
    /// One per year.
    pub yearly: u32,
}

/// A combined retention policy; every rule that is set keeps what it keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Keep the N newest usable FULL chains.
    pub redundancy: Option<u32>,
    /// Keep every instant of the last `window_us` recoverable.
    pub window_us: Option<i64>,
    /// restic/borg style period counts.
    pub keep: KeepCounts,
    /// The zone whose calendar defines hours, days, weeks, months and years.
    pub tz: Tz,
}

/// The plan for one set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// True if the set stays.
    pub keep: bool,
    /// Why, in words a DBA can check against the catalog.
    pub reason: String,
}

/// The plan for every row. Reasons are interned: neighbouring sets mostly share one
/// ("inside the 7-day window"), so each text exists once and rows point at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The distinct reason texts.
    pub texts: Vec<String>,
    /// Per row, in input order: (keep, index into `texts`).
    pub rows: Vec<(bool, u32)>,
}

impl Plan {
    /// Row `i`'s decision with its text.
    pub fn decision(&self, i: usize) -> Decision {
        let (keep, text) = self.rows[i];
        Decision {
            keep,
            reason: self.texts[text as usize].clone(),
        }
    }
}

/// Decides, for every row (same order), whether it stays and why.
pub fn retention_plan<R: ChainRecord>(
    rows: &[R],
    policy: &Policy,
    now_us: i64,
    protected: &HashSet<&str>,
    force: bool,
) -> Result<Plan, ChainError> {
    let index = ChainIndex::new(rows)?;
    // Deleting by an ambiguous id could remove the wrong set: refuse outright.
    index.check_all_unique()?;
    let mut plan = Planner::new(&index);
    let mut why_not: Vec<String> = Vec::new();
    if let Some(n) = policy.redundancy {
        why_not.push(plan.redundancy(n));
    }
    if let Some(window) = policy.window_us {
        why_not.push(plan.window(window, now_us));
    }
    if policy.keep != KeepCounts::default() {
        why_not.push(plan.periods(&policy.keep, policy.tz));
    }
    plan.protect(protected);
    plan.close_chains();
    if !force {
        plan.keep_a_full();
    }
    plan.no_unusable_oldest();
    let obsolete = plan.text(format!("obsolete: {}", why_not.join("; ")));
    Ok(plan.finish(obsolete))
}

/// No reason (yet): the row goes.
const NONE: u32 = u32::MAX;

struct Planner<'i, 'r, R> {
    index: &'i ChainIndex<'r, R>,
    /// Position of each row's usable FULL, or NO_ROOT.
    usable_root: Vec<u32>,
    /// Row positions, oldest first.
    by_age: Vec<u32>,
    /// ARCHIVE_LOG positions, oldest first.
    logs: Vec<u32>,
    /// Per row, up to three reasons it stays (NONE-padded; all NONE: it goes) ...
    reasons: Vec<[u32; 3]>,
    /// ... and any further ones.
    overflow: HashMap<u32, Vec<u32>>,
    texts: Vec<String>,
}

impl<'i, 'r, R: ChainRecord> Planner<'i, 'r, R> {
    fn new(index: &'i ChainIndex<'r, R>) -> Self {
        // Sort compact keys; ids are read only to break exact ties of finish and start.
        let mut keys: Vec<(i64, i64, u32)> = (0..index.len() as u32)
            .map(|i| (index.row(i).finished_us(), index.row(i).started_us(), i))
            .collect();
        keys.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| index.cmp_age(a.2, b.2)));
        let by_age: Vec<u32> = keys.into_iter().map(|k| k.2).collect();
        let logs = by_age
            .iter()
            .copied()
            .filter(|&i| index.row(i).kind() == BackupKind::ArchiveLog)
            .collect();
        Self {
            index,
            usable_root: index.roots(true),
            by_age,
            logs,
            reasons: vec![[NONE; 3]; index.len()],
            overflow: HashMap::new(),
            texts: Vec::new(),
        }
    }

    /// Stores a reason text; returns its id.
    fn text(&mut self, text: String) -> u32 {
        self.texts.push(text);
        (self.texts.len() - 1) as u32
    }

    /// The final plan: one text per distinct combination of reasons.
    fn finish(mut self, obsolete: u32) -> Plan {
        let mut combined: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut rows = Vec::with_capacity(self.reasons.len());
        for i in 0..self.reasons.len() {
            let slots = self.reasons[i];
            let decision = match slots {
                [NONE, _, _] => (false, obsolete),
                [only, NONE, _] => (true, only),
                _ => {
                    let mut all: Vec<u32> = slots.into_iter().filter(|&t| t != NONE).collect();
                    all.extend(self.overflow.get(&(i as u32)).into_iter().flatten());
                    let text = match combined.get(&all) {
                        Some(&t) => t,
                        None => {
                            let joined = all.iter().map(|&t| self.texts[t as usize].as_str()).collect::<Vec<_>>();
                            let t = self.text(joined.join("; "));
                            combined.insert(all, t);
                            t
                        }
                    };
                    (true, text)
                }
            };
            rows.push(decision);
        }
        Plan {
            texts: self.texts,
            rows,
        }
    }

    fn row(&self, i: u32) -> &'r R {
        self.index.row(i)
    }

    /// Keeps row `i` for reason text `reason` (an id from [`Planner::text`]).
    fn keep_for(&mut self, i: u32, reason: u32) {
        let slots = &mut self.reasons[i as usize];
        match slots.iter().position(|&t| t == NONE) {
            Some(free) => slots[free] = reason,
            None => self.overflow.entry(i).or_default().push(reason),
        }
    }

    /// Keeps row `i` for a reason only it has.
    fn keep(&mut self, i: u32, reason: String) {
        let t = self.text(reason);
        self.keep_for(i, t);
    }

    fn kept(&self, i: u32) -> bool {
        self.reasons[i as usize][0] != NONE
    }

    fn is_usable_full(&self, i: u32) -> bool {
        self.usable_root[i as usize] == i
    }

    /// Keeps every set that finished at or after `floor` (position `floor_row` of the base
    /// FULL, if any), and every ARCHIVE_LOG that finished after the earliest start of the
    /// data sets so kept: that is what recovery to any instant since the floor reads.
    fn keep_since(&mut self, floor: i64, reason_for: &dyn Fn(u32, &R) -> Option<u32>, log_reason: u32) {
        let first = self.by_age.partition_point(|&i| self.row(i).finished_us() < floor);
        let mut earliest_start = i64::MAX;
        for k in first..self.by_age.len() {
            let i = self.by_age[k];
            let row = self.row(i);
            if row.kind().is_data() {
                earliest_start = earliest_start.min(row.started_us());
            }
            if let Some(reason) = reason_for(i, row) {
                self.keep_for(i, reason);
            }
        }
        let logs_from = self
            .logs
            .partition_point(|&i| self.row(i).finished_us() <= earliest_start);
        for k in logs_from..self.logs.len() {
            let i = self.logs[k];
            if self.row(i).finished_us() < floor {
                self.keep_for(i, log_reason);
            }
        }
    }

    /// redundancy(n): returns why a set older than the kept range goes.
    fn redundancy(&mut self, n: u32) -> String {
        let fulls: Vec<u32> = self
            .by_age
            .iter()
            .rev()
            .copied()
            .filter(|&i| self.is_usable_full(i))
            .collect();
        let counted = &fulls[..fulls.len().min(n as usize)];
        let Some(&oldest) = counted.last() else {
            return format!("redundancy {n}: no usable FULL to keep");
        };
        let rank = ordinal(counted.len());
        let oldest_id = self.row(oldest).id();
        // Per counted FULL: (position, text of its chain members).
        let mut chains: Vec<(u32, u32)> = Vec::with_capacity(counted.len());
        for (k, &f) in counted.iter().enumerate() {
            self.keep(f, format!("{} newest FULL", ordinal(k + 1)));
            let member = self.text(format!(
                "in the chain of the {} newest FULL {}",
                ordinal(k + 1),
                self.row(f).id()
            ));
            chains.push((f, member));
        }
        let newer = self.text(format!("newer than the {rank} newest FULL {oldest_id}"));
        let log_reason = self.text(format!(
            "needed to roll forward from the {rank} newest FULL {oldest_id}"
        ));
        let roots = std::mem::take(&mut self.usable_root);
        let reason_for = |i: u32, row: &R| -> Option<u32> {
            if row.kind() == BackupKind::ArchiveLog {
                return Some(log_reason);
            }
            match chains.iter().find(|(f, _)| *f == roots[i as usize]) {
                Some((f, _)) if *f == i => None,
                Some((_, member)) => Some(*member),
                None => Some(newer),
            }
        };
        self.keep_since(self.row(oldest).finished_us(), &reason_for, log_reason);
        self.usable_root = roots;
        format!("older than the {rank} newest FULL {oldest_id}")
    }

    /// recovery_window(window): returns why a set older than the kept range goes.
    fn window(&mut self, window_us: i64, now_us: i64) -> String {
        let span = fmt_span(window_us);
        let start = now_us.saturating_sub(window_us);
        let base = self
            .by_age
            .iter()
            .rev()
            .copied()
            .find(|&i| self.is_usable_full(i) && self.row(i).finished_us() <= start);
        let inside = self.text(format!("inside the {span} window"));
        let before = self.text(format!(
            "needed to recover to {} (start of the {span} window)",
            fmt_us(start)
        ));
        let point = self.text(format!(
            "newest FULL at or before the start of the {span} window (point of recoverability)"
        ));
        let reason_for = |i: u32, row: &R| -> Option<u32> {
            Some(if row.finished_us() >= start {
                inside
            } else if Some(i) == base {
                point
            } else {
                before
            })
        };
        let floor = base.map_or(start, |b| self.row(b).finished_us());
        self.keep_since(floor, &reason_for, before);
        match base.map(|b| self.row(b).id()) {
            Some(id) => format!("older than FULL {id}, the point of recoverability of the {span} window"),
            None => format!("finished before the {span} window, and no usable FULL precedes it"),
        }
    }

    /// keep(last=, hourly=, ...): returns why an unselected set goes.
    fn periods(&mut self, counts: &KeepCounts, tz: Tz) -> String {
        let points: Vec<u32> = self
            .by_age
            .iter()
            .rev()
            .copied()
            .filter(|&i| self.usable_root[i as usize] != NO_ROOT)
            .collect();
        let buckets = [
            (Period::Last, counts.last),
            (Period::Hour, counts.hourly),
            (Period::Day, counts.daily),
            (Period::Week, counts.weekly),
            (Period::Month, counts.monthly),
            (Period::Year, counts.yearly),
        ];
        let mut kept_points: Vec<u32> = Vec::new();
        for (period, count) in buckets {
            let mut left = count;
            let mut last_key: Option<(i32, u32, u32, u32)> = None;
            for &p in &points {
                if left == 0 {
                    break;
                }
                let (key, label) = period.of(self.row(p).finished_us(), tz, p);
                if last_key != Some(key) {
                    last_key = Some(key);
                    left -= 1;
                    let n = count - left;
                    self.keep(p, format!("{} #{n}{label}", period.name()));
                    kept_points.push(p);
                }
            }
        }
        // Logs written during a kept point's backup make it consistent (recovery_path rule 3).
        for p in kept_points {
            let row = self.row(p);
            let (from, to) = (row.started_us(), row.finished_us());
            let first = self.logs.partition_point(|&i| self.row(i).finished_us() <= from);
            for k in first..self.logs.len() {
                let l = self.logs[k];
                if self.row(l).finished_us() > to {
                    break;
                }
                let reason = format!("needed to make {} {} consistent", row.kind().label(), row.id());
                self.keep(l, reason);
            }
        }
        let mut given: Vec<String> = Vec::new();
        for (period, count) in buckets {
            if count > 0 {
                given.push(format!("{}={count}", period.arg()));
            }
        }
        format!("not selected by keep({})", given.join(", "))
    }

    fn protect(&mut self, protected: &HashSet<&str>) {
        if protected.is_empty() {
            return;
        }
        for i in 0..self.index.len() as u32 {
            if protected.contains(self.row(i).id()) {
                self.keep(i, "protected: being read by a restore or verification".to_string());
            }
        }
    }

    /// A kept set keeps its whole parent chain; newest dependents are named first.
    fn close_chains(&mut self) {
        for k in (0..self.by_age.len()).rev() {
            let mut child = self.by_age[k];
            if !self.kept(child) {
                continue;
            }
            while let Link::At(parent) = self.index.parent(child) {
                if self.kept(parent) {
                    break;
                }
                let row = self.row(child);
                let reason = format!("needed by {} {}", row.kind().label(), row.id());
                self.keep(parent, reason);
                child = parent;
            }
        }
    }

    /// Never deletes the last usable FULL (or, with none usable, the last FULL).
    fn keep_a_full(&mut self) {
        let newest = |usable: bool| {
            self.by_age.iter().rev().copied().find(|&i| {
                let row = self.row(i);
                row.kind() == BackupKind::Full && (!usable || row.state() == SetState::Available)
            })
        };
        let kept_usable = (0..self.index.len() as u32).any(|i| self.is_usable_full(i) && self.kept(i));
        let kept_any = (0..self.index.len() as u32).any(|i| self.row(i).kind() == BackupKind::Full && self.kept(i));
        let pick = match (kept_usable, kept_any) {
            (false, _) if newest(true).is_some() => newest(true),
            (false, false) => newest(false),
            _ => None,
        };
        if let Some(f) = pick {
            self.keep(f, "the last usable FULL left: deleting it needs force=True".to_string());
        }
    }

    /// If the oldest survivor is CORRUPT or EXPIRED, keeps the newest usable FULL older than
    /// it, so the oldest point the catalog seems to offer is one that restores.
    fn no_unusable_oldest(&mut self) {
        let Some(oldest) = self.by_age.iter().copied().find(|&i| self.kept(i)) else {
            return;
        };
        let state = self.row(oldest).state();
        if state == SetState::Available {
            return;
        }
        let older = self
            .by_age
            .iter()
            .copied()
            .take_while(|&i| i != oldest)
            .filter(|&i| self.is_usable_full(i))
            .last();
        if let Some(f) = older {
            let reason = format!("oldest survivor would be {} ({})", state.label(), self.row(oldest).id());
            self.keep(f, reason);
        }
    }
}

#[derive(Clone, Copy)]
enum Period {
    Last,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Self::Last => "last",
            Self::Hour => "hourly",
            Self::Day => "daily",
            Self::Week => "weekly",
            Self::Month => "monthly",
            Self::Year => "yearly",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Self::Last => "last",
            _ => self.name(),
        }
    }

    /// The period key of an instant in `tz`, and its label for reasons. `Last` gives every
    /// point its own key. Out-of-range instants fall back to UTC's epoch arithmetic.
    fn of(self, us: i64, tz: Tz, position: u32) -> ((i32, u32, u32, u32), String) {
        let Some(utc) = DateTime::from_timestamp_micros(us) else {
            return ((i32::MIN, position, 0, 0), String::new());
        };
        let t = utc.with_timezone(&tz);
        match self {
            Self::Last => ((0, position, 0, 0), String::new()),
            Self::Hour => (
                (t.year(), t.month(), t.day(), t.hour()),
                format!(" ({:04}-{:02}-{:02} {:02}h)", t.year(), t.month(), t.day(), t.hour()),
            ),
            Self::Day => (
                (t.year(), t.month(), t.day(), 0),
                format!(" ({:04}-{:02}-{:02})", t.year(), t.month(), t.day()),
            ),
            Self::Week => {
                let w = t.iso_week();
                (
                    (w.year(), w.week(), 0, 0),
                    format!(" ({:04}-W{:02})", w.year(), w.week()),
                )
            }
            Self::Month => (
                (t.year(), t.month(), 0, 0),
                format!(" ({:04}-{:02})", t.year(), t.month()),
            ),
            Self::Year => ((t.year(), 0, 0, 0), format!(" ({:04})", t.year())),
        }
    }
}

/// 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st.
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::SetRecord;

    const H: i64 = 3_600_000_000;
    const D: i64 = 24 * H;

    /// A backup a day at 01:00 (FULL every 7 days, else INCREMENTAL), a log at 03:00.
    fn days(n: i64) -> Vec<SetRecord> {
        let mut rows = Vec::new();
        let mut last = String::new();
        for d in 0..n {
            let (id, kind, parent) = if d % 7 == 0 {
                (format!("f{d}"), BackupKind::Full, None)
            } else {
                (format!("i{d}"), BackupKind::Incremental, Some(last.clone()))
            };
            let (started_us, finished_us) = (d * D + H, d * D + 2 * H);
            rows.push(SetRecord {
                id: id.clone(),
                kind,
                parent,
                started_us,
                finished_us,
                state: SetState::Available,
            });
            let (started_us, finished_us) = (d * D + 3 * H, d * D + 4 * H);
            let (log_id, kind, state) = (format!("a{d}"), BackupKind::ArchiveLog, SetState::Available);
            rows.push(SetRecord {
                id: log_id,
                kind,
                parent: None,
                started_us,
                finished_us,
                state,
            });
            last = id;
        }
        rows
    }

    fn policy() -> Policy {
        Policy {
            redundancy: None,
            window_us: None,
            keep: KeepCounts::default(),
            tz: Tz::UTC,
        }
    }

    fn kept(rows: &[SetRecord], plan: &Plan) -> Vec<String> {
        rows.iter()
            .zip(&plan.rows)
            .filter(|(_, d)| d.0)
            .map(|(r, _)| r.id.clone())
            .collect()
    }

    #[test]
    fn redundancy_ranks_fulls_and_keeps_everything_since_the_nth() {
        let rows = days(21);
        let plan = retention_plan(
            &rows,
            &Policy {
                redundancy: Some(2),
                ..policy()
            },
            21 * D,
            &HashSet::new(),
            false,
        )
        .unwrap();
        assert_eq!(kept(&rows, &plan).first().map(String::as_str), Some("f7"));
        assert_eq!(plan.decision(14 * 2).reason, "1st newest FULL");
        assert_eq!(plan.decision(7 * 2).reason, "2nd newest FULL");
        assert_eq!(plan.decision(0).reason, "obsolete: older than the 2nd newest FULL f7");
    }

    #[test]
    fn window_keeps_its_point_of_recoverability() {
        let rows = days(21);
        let p = Policy {
            window_us: Some(3 * D),
            ..policy()
        };
        let plan = retention_plan(&rows, &p, 21 * D, &HashSet::new(), false).unwrap();
        assert_eq!(kept(&rows, &plan).first().map(String::as_str), Some("f14"));
        assert_eq!(plan.decision(20 * 2).reason, "inside the 3-day window");
    }

    #[test]
    fn keep_daily_counts_only_days_with_a_point_and_closes_chains() {
        let rows = days(10);
        let p = Policy {
            keep: KeepCounts {
                daily: 2,
                ..KeepCounts::default()
            },
            ..policy()
        };
        let plan = retention_plan(&rows, &p, 100 * D, &HashSet::new(), false).unwrap();
        assert_eq!(kept(&rows, &plan), ["f7", "i8", "i9"]);
        assert_eq!(plan.decision(9 * 2).reason, "daily #1 (1970-01-10)");
        assert_eq!(plan.decision(7 * 2).reason, "needed by INCREMENTAL i8");
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let mut rows = days(2);
        rows.push(rows[0].clone());
        let err = retention_plan(
            &rows,
            &Policy {
                redundancy: Some(1),
                ..policy()
            },
            D,
            &HashSet::new(),
            false,
        );
        assert_eq!(
            err.unwrap_err(),
            ChainError::DuplicateId {
                id: "f0".into(),
                first: 0,
                second: 4
            }
        );
    }

    #[test]
    fn ordinals_read_as_english() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .iter()
            .map(|&n| ordinal(n))
            .collect();
        assert_eq!(
            got,
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
        );
    }
}
