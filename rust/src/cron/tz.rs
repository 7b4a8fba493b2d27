//! Zones and the DST rules of ISC/Vixie cron, on instants (seconds since the Unix epoch).
//!
//! The schedule is matched against wall-clock minutes; this module maps those to instants:
//! - a wall time that exists once fires once;
//! - spring forward (a wall time in the gap): a fixed-time schedule (neither minute nor hour
//!   starts with `*`) fires once at the first instant after the gap; a wildcard schedule
//!   skips it (ISC cron's `cron.c`: "jobs that would have run in the skipped interval ...
//!   run immediately" only for fixed-time jobs);
//! - fall back (a wall time that exists twice): a fixed-time schedule fires at the first of
//!   the two instants only; a wildcard schedule fires at both.

use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone};
use chrono_tz::{GapInfo, Tz};

use super::calendar::{self, Wall};
use super::error::CronError;
use super::schedule::Schedule;

/// The zone a schedule's wall times live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    /// An IANA zone (chrono-tz data, tabulated to 2099 and extended by the zone rule after).
    Named(Tz),
    /// A fixed offset from UTC, in seconds east.
    Fixed(i32),
}

/// How a wall time maps to instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// Exists once.
    Single(i64),
    /// Exists twice (fall back): the earlier and the later instant.
    Ambiguous(i64, i64),
    /// Does not exist (spring forward); the instant the gap ends (the first instant after it).
    Gap(i64),
}

impl Zone {
    /// Looks up an IANA zone by its exact name, as `zoneinfo.ZoneInfo` does.
    pub fn named(name: &str) -> Result<Zone, CronError> {
        Tz::from_str(name)
            .map(Zone::Named)
            .map_err(|_| CronError::UnknownZone(name.to_string()))
    }

    /// The zone's name (`"Europe/Berlin"`), or `"+02:00"` for a fixed offset.
    pub fn key(&self) -> String {
        match self {
            Zone::Named(tz) => tz.name().to_string(),
            Zone::Fixed(secs) => {
                let sign = if *secs < 0 { '-' } else { '+' };
                let a = secs.unsigned_abs();
                if a % 60 == 0 {
                    format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
                } else {
                    format!("{sign}{:02}:{:02}:{:02}", a / 3600, a % 3600 / 60, a % 60)
                }
            }
        }
    }

    /// The offset when it never changes: fixed zones, and UTC by its common names (the
    /// default zone, so it skips the transition-table lookups).
    fn constant_offset(&self) -> Option<i32> {
        match self {
            Zone::Fixed(o) => Some(*o),
            Zone::Named(Tz::UTC | Tz::Etc__UTC | Tz::GMT | Tz::Etc__GMT) => Some(0),
            Zone::Named(_) => None,
        }
    }

    /// UTC offset in seconds at an instant.
    pub fn offset_at(&self, instant: i64) -> i32 {
        if let Some(o) = self.constant_offset() {
            return o;
        }
        let shift = beyond_table_shift(instant);
        let instant = instant - shift;
        match self {
            Zone::Fixed(o) => *o,
            Zone::Named(tz) => match DateTime::from_timestamp(instant, 0) {
                Some(dt) => tz.offset_from_utc_datetime(&dt.naive_utc()).fix().local_minus_utc(),
                None => 0,
            },
        }
    }

    /// The instants a wall time (seconds since 1970-01-01T00:00, naive) stands for.
    pub fn resolve(&self, wall: i64) -> Local {
        if let Some(o) = self.constant_offset() {
            return Local::Single(wall - i64::from(o));
        }
        let tz = match self {
            Zone::Fixed(o) => return Local::Single(wall - i64::from(*o)),
            Zone::Named(tz) => tz,
        };
        let shift = beyond_table_shift(wall);
        if shift != 0 {
            return match self.resolve_in_table(tz, wall - shift) {
                Local::Single(i) => Local::Single(i + shift),
                Local::Ambiguous(a, b) => Local::Ambiguous(a + shift, b + shift),
                Local::Gap(end) => Local::Gap(end + shift),
            };
        }
        self.resolve_in_table(tz, wall)
    }

    fn resolve_in_table(&self, tz: &Tz, wall: i64) -> Local {
        let Some(naive) = naive(wall) else {
            return Local::Single(wall);
        };
        match tz.offset_from_local_datetime(&naive) {
            LocalResult::Single(o) => Local::Single(wall - i64::from(o.fix().local_minus_utc())),
            LocalResult::Ambiguous(a, b) => {
                let (ia, ib) = (
                    wall - i64::from(a.fix().local_minus_utc()),
                    wall - i64::from(b.fix().local_minus_utc()),
                );
                Local::Ambiguous(ia.min(ib), ia.max(ib))
            }
            LocalResult::None => {
                let end = GapInfo::new(&naive, tz).and_then(|g| g.end).map(|e| e.timestamp());
                // No recorded end happens only at the very edge of the data; then treat the
                // wall time with the offset in force just before it.
                Local::Gap(end.unwrap_or_else(|| wall - i64::from(self.offset_at(wall - 86_400))))
            }
        }
    }

    /// A wall time as a Python-style naive datetime with `fold`: the instant for fold 0 is the
    /// earlier one, for fold 1 the later (PEP 495); in a gap fold 0 uses the offset before
    /// the gap and fold 1 the offset after it, as `zoneinfo` does.
    pub fn instant_of_wall(&self, wall: i64, fold: bool) -> i64 {
        match self.resolve(wall) {
            Local::Single(i) => i,
            Local::Ambiguous(a, b) => {
                if fold {
                    b
                } else {
                    a
                }
            }
            Local::Gap(end) => {
                let before = i64::from(self.offset_at(end - 1));
                let after = i64::from(self.offset_at(end));
                wall - if fold { after } else { before }
            }
        }
    }

    /// The wall time of an instant and whether it is the second of two equal wall times.
    pub fn wall_of(&self, instant: i64) -> (i64, bool) {
        let wall = instant + i64::from(self.offset_at(instant));
        let fold = matches!(self.resolve(wall), Local::Ambiguous(_, b) if b == instant);
        (wall, fold)
    }
}

/// chrono-tz tabulates transitions up to 2099; after that its zones would stay on standard
/// time, while Python's zoneinfo keeps applying the zone's rule (the TZif footer). DST rules
/// are "n-th weekday of a month", so a year behaves like any year with the same leap-ness
/// and the same weekday on January 1st: map years >= 2100 onto such a year in 2072-2099
/// (that span holds every combination) and shift the answer back. Seconds to subtract.
fn beyond_table_shift(secs: i64) -> i64 {
    const FIRST_UNTABULATED: i64 = 4_102_444_800; // 2100-01-01T00:00:00
    if secs < FIRST_UNTABULATED {
        return 0;
    }
    let (year, _, _) = calendar::civil_from_days(secs.div_euclid(86_400));
    let (leap, first) = (calendar::is_leap(year), calendar::weekday(year, 1, 1));
    (2072..2100)
        .find(|y| calendar::is_leap(*y) == leap && calendar::weekday(*y, 1, 1) == first)
        .map_or(0, |y| {
            (calendar::days_from_civil(year, 1, 1) - calendar::days_from_civil(y, 1, 1)) * 86_400
        })
}

fn naive(wall: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(wall, 0).map(|d| d.naive_utc())
}

/// Seconds of the largest plausible offset change near an instant: a day later (or earlier)
/// minus now. Real zones change at most once a day.
fn fold_slack(zone: &Zone, instant: i64, forward: bool) -> i64 {
    match zone.constant_offset() {
        Some(_) => 0,
        None => {
            let now = i64::from(zone.offset_at(instant));
            if forward {
                (now - i64::from(zone.offset_at(instant + 86_400))).max(0)
            } else {
                (i64::from(zone.offset_at(instant - 86_400)) - now).max(0)
            }
        }
    }
}

fn out_of_range(s: &Schedule, dir: &str) -> CronError {
    CronError::OutOfRange(format!(
        "no time matching {:?} {dir} within years 1-9999",
        s.normalized()
    ))
}

impl Schedule {
    /// The first firing instant strictly after `t` (seconds since the epoch).
    pub fn next_after(&self, zone: &Zone, t: i64) -> Result<i64, CronError> {
        let wall_t = t + i64::from(zone.offset_at(t));
        // If the clock falls back within the next day, wall times before wall_t come again.
        let slack = fold_slack(zone, t, true);
        let mut cur = if slack == 0 {
            wall_t.div_euclid(60) * 60 + 60
        } else {
            (wall_t - slack).div_euclid(60) * 60
        };
        let mut best: Option<i64> = None;
        let mut limit = i64::MAX;
        // Each round moves at least a minute forward; rounds that do not return are confined
        // to the slack window, a DST gap or a fold (at most a day or two of minutes).
        for _ in 0..10_000 {
            let c = self
                .next_wall(Wall::from_seconds(cur))
                .ok_or_else(|| out_of_range(self, "after"))?;
            let cw = c.to_seconds();
            if best.is_some() && cw >= limit {
                break;
            }
            let pick = |i: i64, best: Option<i64>| Some(best.map_or(i, |b| b.min(i)));
            match zone.resolve(cw) {
                Local::Single(i) if i > t => return Ok(pick(i, best).unwrap_or(i)),
                Local::Ambiguous(a, _) if a > t => return Ok(pick(a, best).unwrap_or(a)),
                Local::Ambiguous(a, b) if !self.fixed_time && b > t => {
                    // t is inside the fold: the second pass of c is a candidate, but a later
                    // wall time may still fall on an earlier first-pass instant.
                    best = pick(b, best);
                    limit = limit.min(cw + (b - a));
                }
                Local::Gap(end) if self.fixed_time && end > t => return Ok(pick(end, best).unwrap_or(end)),
                _ => {}
            }
            cur = cw + 60;
        }
        best.ok_or_else(|| out_of_range(self, "after"))
    }

    /// The last firing instant strictly before `t` (seconds since the epoch).
    pub fn prev_before(&self, zone: &Zone, t: i64) -> Result<i64, CronError> {
        let wall_t = t + i64::from(zone.offset_at(t));
        let slack = fold_slack(zone, t, false);
        let mut cur = (wall_t + slack).div_euclid(60) * 60;
        let mut best: Option<i64> = None;
        let mut limit = i64::MIN;
        for _ in 0..10_000 {
            let c = self
                .prev_wall(Wall::from_seconds(cur))
                .ok_or_else(|| out_of_range(self, "before"))?;
            let cw = c.to_seconds();
            if best.is_some() && cw <= limit {
                break;
            }
            let pick = |i: i64, best: Option<i64>| Some(best.map_or(i, |b| b.max(i)));
            match zone.resolve(cw) {
                Local::Single(i) if i < t => return Ok(pick(i, best).unwrap_or(i)),
                Local::Ambiguous(_, b) if !self.fixed_time && b < t => return Ok(pick(b, best).unwrap_or(b)),
                Local::Ambiguous(a, b) if !self.fixed_time && a < t => {
                    best = pick(a, best);
                    limit = limit.max(cw - (b - a));
                }
                Local::Ambiguous(a, _) if self.fixed_time && a < t => return Ok(pick(a, best).unwrap_or(a)),
                Local::Gap(end) if self.fixed_time && end < t => return Ok(pick(end, best).unwrap_or(end)),
                _ => {}
            }
            cur = cw - 60;
        }
        best.ok_or_else(|| out_of_range(self, "before"))
    }

    /// Whether the schedule fires at instant `t` (whole seconds).
    pub fn fires_at(&self, zone: &Zone, t: i64) -> Result<bool, CronError> {
        match self.next_after(zone, t - 1) {
            Ok(i) => Ok(i == t),
            Err(CronError::OutOfRange(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Up to `n` firing instants after `t`; stops early at year 9999.
    pub fn next_n(&self, zone: &Zone, t: i64, n: usize) -> Result<Vec<i64>, CronError> {
        let mut out = Vec::with_capacity(n.min(1 << 16));
        let mut cur = t;
        for _ in 0..n {
            match self.next_after(zone, cur) {
                Ok(i) => {
                    out.push(i);
                    cur = i;
                }
                Err(CronError::OutOfRange(_)) if !out.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
