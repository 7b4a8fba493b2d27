//! Which instants are recoverable: every `until` for which [`recovery_path`] resolves,
//! as a few inclusive intervals, in one sweep over the rows in age order.
//!
//! Between two finish times of data sets the base (rule 1) and the target (rule 2) stay
//! the same, and rule 3 reaches every instant from the target's finish up to the first
//! hole in the log stream ([`LogStream::reach`]). So each such stretch contributes one
//! prefix of itself, found in O(log n): O(n log n) in all, where asking [`recovery_path`]
//! per stretch costs O(n) each.
//!
//! [`recovery_path`]: super::recovery::recovery_path

use std::ops::RangeInclusive;

use super::index::{ChainIndex, NO_ROOT};
use super::recovery::{can_be_base, LogStream, Reach};
use super::{ChainError, ChainRecord};

/// The instants (µs since the epoch) from which a restore succeeds, as disjoint inclusive
/// ranges, oldest first, with no two adjacent. The last may end at `i64::MAX`.
///
/// Fails like [`recovery_path`](super::recovery::recovery_path) on rows it cannot
/// index, and on any repeated id: which set such a restore would read is ambiguous.
pub fn recoverable_intervals<R: ChainRecord>(rows: &[R]) -> Result<Vec<RangeInclusive<i64>>, ChainError> {
    let index = ChainIndex::new(rows)?;
    index.check_all_unique()?;
    let roots = index.roots(true);
    let stream = LogStream::new(&index, i64::MIN);
    let mut data: Vec<u32> = (0..rows.len() as u32)
        .filter(|&i| index.row(i).kind().is_data())
        .collect();
    data.sort_unstable_by(|&a, &b| index.cmp_age(a, b));
    // newest[r]: the newest data set seen so far whose usable chain leads to FULL r.
    let mut newest = vec![NO_ROOT; rows.len()];
    let mut base = NO_ROOT;
    let mut out: Vec<RangeInclusive<i64>> = Vec::new();
    let mut k = 0;
    while k < data.len() {
        let from = index.row(data[k]).finished_us();
        // Every data set finished at `from` joins before any instant of this stretch.
        while k < data.len() && index.row(data[k]).finished_us() == from {
            let i = data[k];
            let root = roots[i as usize];
            if root != NO_ROOT {
                newest[root as usize] = i;
            }
            if can_be_base(index.row(i)) {
                base = i;
            }
            k += 1;
        }
        if base == NO_ROOT {
            continue;
        }
        let stretch_end = data.get(k).map_or(i64::MAX, |&i| index.row(i).finished_us() - 1);
        let target = index.row(newest[base as usize]);
        let to = match stream.reach(target.started_us(), target.finished_us()) {
            Reach::Inconsistent(_) => continue,
            Reach::UpTo(reached, _) => reached.min(stretch_end),
        };
        if to < from {
            continue;
        }
        match out.last_mut() {
            Some(last) if *last.end() == from - 1 => *last = *last.start()..=to,
            _ => out.push(from..=to),
        }
    }
    Ok(out)
}

/// The earliest instant from which every instant up to `now_us` is recoverable, given
/// [`recoverable_intervals`]; None when `now_us` itself is not.
pub fn recoverable_since(intervals: &[RangeInclusive<i64>], now_us: i64) -> Option<i64> {
    let at = intervals.partition_point(|r| *r.end() < now_us);
    intervals.get(at).filter(|r| r.contains(&now_us)).map(|r| *r.start())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::recovery::recovery_path;
    use crate::chain::{BackupKind, SetRecord, SetState};

    fn set(id: &str, kind: &str, parent: Option<&str>, started: i64, finished: i64, state: &str) -> SetRecord {
        SetRecord {
            id: id.to_string(),
            kind: BackupKind::from_name(kind).unwrap(),
            parent: parent.map(str::to_string),
            started_us: started,
            finished_us: finished,
            state: SetState::from_name(state).unwrap(),
        }
    }

    fn spans(rows: &[SetRecord]) -> Vec<RangeInclusive<i64>> {
        recoverable_intervals(rows).unwrap()
    }

    #[test]
    fn nothing_before_the_first_usable_full() {
        assert!(spans(&[]).is_empty());
        assert!(spans(&[set("f", "full", None, 0, 10, "corrupt")]).is_empty());
        assert_eq!(spans(&[set("f", "full", None, 0, 10, "available")]), [10..=i64::MAX]);
        let only_logs = [set("a", "archive_log", None, 0, 10, "available")];
        assert!(spans(&only_logs).is_empty());
    }

    #[test]
    fn a_hole_in_the_logs_stops_the_stretch_at_the_point_reached_before_it() {
        let rows = [
            set("f1", "full", None, 0, 10, "available"),
            set("a1", "archive_log", None, 10, 20, "available"),
            set("a2", "archive_log", None, 20, 30, "corrupt"),
            set("i1", "incremental", Some("f1"), 40, 50, "available"),
            set("a3", "archive_log", None, 50, 60, "available"),
        ];
        // From f1 the logs reach 20 (a2 is needed after that); i1 starts a new stretch.
        assert_eq!(spans(&rows), [10..=20, 50..=i64::MAX]);
        assert_eq!(recoverable_since(&spans(&rows), 100), Some(50));
        assert_eq!(recoverable_since(&spans(&rows), 20), Some(10));
        assert_eq!(recoverable_since(&spans(&rows), 21), None);
        assert_eq!(recoverable_since(&spans(&rows), 9), None);
    }

    #[test]
    fn a_hole_right_after_the_target_leaves_only_its_finish() {
        let rows = [
            set("f1", "full", None, 0, 10, "available"),
            set("a1", "archive_log", None, 10, 20, "expired"),
        ];
        assert_eq!(spans(&rows), [10..=10]);
    }

    #[test]
    fn an_unusable_log_written_during_the_backup_makes_its_target_useless() {
        let rows = [
            set("f1", "full", None, 0, 10, "available"),
            set("a0", "archive_log", None, 10, 50, "available"),
            set("f2", "full", None, 100, 110, "available"),
            set("a1", "archive_log", None, 100, 105, "corrupt"),
        ];
        // f1 reaches 50 (a1 is next); f2 cannot be made consistent, and rule 1 never falls
        // back to f1 once f2 has finished.
        assert_eq!(spans(&rows), [10..=50]);
    }

    #[test]
    fn a_corrupt_incremental_keeps_the_older_point_and_adjacent_stretches_merge() {
        let rows = [
            set("f1", "full", None, 0, 10, "available"),
            set("i1", "incremental", Some("f1"), 20, 30, "corrupt"),
            set("i2", "incremental", Some("i1"), 40, 50, "available"),
            set("a1", "archive_log", None, 50, 60, "corrupt"),
        ];
        // The target stays f1 (i2's chain is broken), and from f1 the first log needed is
        // a1: only f1's own finish is recoverable.
        assert_eq!(spans(&rows), [10..=10]);
        let rows = [
            set("f1", "full", None, 0, 10, "available"),
            set("a1", "archive_log", None, 10, 20, "available"),
            set("i1", "incremental", Some("f1"), 20, 30, "available"),
            set("a2", "archive_log", None, 30, 40, "available"),
        ];
        assert_eq!(spans(&rows), [10..=i64::MAX]);
    }

    #[test]
    fn repeated_ids_are_refused() {
        let rows = [
            set("f1", "full", None, 0, 10, "available"),
            set("f1", "full", None, 20, 30, "available"),
        ];
        assert_eq!(
            recoverable_intervals(&rows).unwrap_err(),
            ChainError::DuplicateId {
                id: "f1".into(),
                first: 0,
                second: 1
            }
        );
    }

    /// xorshift64*: deterministic random catalogs without a test dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    fn random_catalog(rng: &mut Rng) -> Vec<SetRecord> {
        let kinds = ["full", "incremental", "differential", "archive_log"];
        let states = ["available", "available", "available", "corrupt", "expired"];
        let mut rows: Vec<SetRecord> = Vec::new();
        let mut t = 0;
        for i in 0..rng.below(16) {
            let kind = kinds[rng.below(4) as usize];
            let parent = match rows.len() {
                0 => None,
                n => Some(rows[rng.below(n as u64) as usize].id.clone()),
            };
            // Some sets overlap the one before (logs archived during a backup, ties).
            let started = if rng.below(3) == 0 { t - rng.below(3) as i64 } else { t };
            // Now and then a damaged row that ends before it starts.
            let finished = started + rng.below(5) as i64 - 1;
            let state = states[rng.below(5) as usize];
            rows.push(set(&format!("s{i}"), kind, parent.as_deref(), started, finished, state));
            t = finished + rng.below(3) as i64;
        }
        rows
    }

    #[test]
    fn intervals_agree_with_asking_recovery_path_at_every_instant() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let rows = random_catalog(&mut rng);
            let got = spans(&rows);
            let end = rows.iter().map(|r| r.finished_us).max().unwrap_or(0) + 2;
            for t in -3..=end {
                let brute = recovery_path(&rows, Some(t), None).is_ok();
                let fast = got.iter().any(|r| r.contains(&t));
                assert_eq!(fast, brute, "instant {t} of {rows:?}: intervals {got:?}");
            }
            // Past the last finish nothing changes: the last interval is open or closed for good.
            let open = got.last().is_some_and(|r| *r.end() == i64::MAX);
            assert_eq!(open, recovery_path(&rows, Some(i64::MAX), None).is_ok());
        }
    }
}
