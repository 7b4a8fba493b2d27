//! Wall-clock search: the next/previous matching minute at or after/before a wall time.
//! It jumps field by field (year -> month -> day -> hour -> minute) using bit masks, so
//! `0 0 29 2 *` costs a handful of month checks per year, never a minute-by-minute walk.
//! Bounded: the search stops at the edges of what a datetime holds (years 1-9999), and a
//! schedule that can fire matches within any 400 years (the Gregorian cycle).

use super::calendar::Wall;
use super::schedule::Schedule;

/// The first year past the range a Python datetime holds.
pub const MAX_YEAR: i32 = 9999;
/// The first year of that range.
pub const MIN_YEAR: i32 = 1;

/// Lowest set bit at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let m = mask & (u64::MAX << from);
    (m != 0).then(|| m.trailing_zeros())
}

/// Highest set bit at or below `from`.
fn prev_bit(mask: u64, from: i64) -> Option<u32> {
    if from < 0 {
        return None;
    }
    let from = from.min(63) as u32;
    let m = mask & (u64::MAX >> (63 - from));
    (m != 0).then(|| 63 - m.leading_zeros())
}

impl Schedule {
    /// The first matching wall minute at or after `w`, or None past year 9999.
    pub fn next_wall(&self, w: Wall) -> Option<Wall> {
        let (mut y, mut mo, mut d, mut h, mut mi) = (w.year, w.month, w.day, w.hour, w.minute);
        // Each pass either returns or moves strictly forward by at least one month/day/hour;
        // 10,000 years of months is the hard cap even if the masks were somehow empty.
        let mut budget: u32 = 12 * 10_001 + 31 * 24 * 2;
        let start_year = y;
        while budget > 0 {
            budget -= 1;
            if y > MAX_YEAR || y > start_year.saturating_add(401) {
                return None;
            }
            let Some(m2) = next_bit(u64::from(self.months), mo) else {
                (y, mo, d, h, mi) = (y + 1, 1, 1, 0, 0);
                continue;
            };
            if m2 != mo {
                (mo, d, h, mi) = (m2, 1, 0, 0);
            }
            let days = self.day_mask(y, mo);
            let Some(d2) = next_bit(u64::from(days), d) else {
                (mo, d, h, mi) = (mo + 1, 1, 0, 0);
                if mo > 12 {
                    (y, mo) = (y + 1, 1);
                }
                continue;
            };
            if d2 != d {
                (d, h, mi) = (d2, 0, 0);
            }
            let Some(h2) = next_bit(u64::from(self.hours), h) else {
                (d, h, mi) = (d + 1, 0, 0);
                continue;
            };
            if h2 != h {
                (h, mi) = (h2, 0);
            }
            let Some(mi2) = next_bit(self.minutes, mi) else {
                (h, mi) = (h + 1, 0);
                continue;
            };
            return Some(Wall {
                year: y,
                month: mo,
                day: d,
                hour: h,
                minute: mi2,
            });
        }
        None
    }

    /// The last matching wall minute at or before `w`, or None before year 1.
    pub fn prev_wall(&self, w: Wall) -> Option<Wall> {
        let (mut y, mut mo, mut d, mut h, mut mi) = (
            w.year,
            i64::from(w.month),
            i64::from(w.day),
            i64::from(w.hour),
            i64::from(w.minute),
        );
        let mut budget: u32 = 12 * 10_001 + 31 * 24 * 2;
        let start_year = y;
        while budget > 0 {
            budget -= 1;
            if y < MIN_YEAR || y < start_year.saturating_sub(401) {
                return None;
            }
            let Some(m2) = prev_bit(u64::from(self.months), mo) else {
                (y, mo, d, h, mi) = (y - 1, 12, 31, 23, 59);
                continue;
            };
            if i64::from(m2) != mo {
                (mo, d, h, mi) = (i64::from(m2), 31, 23, 59);
            }
            let days = self.day_mask(y, mo as u32);
            let Some(d2) = prev_bit(u64::from(days), d) else {
                (mo, d, h, mi) = (mo - 1, 31, 23, 59);
                if mo < 1 {
                    (y, mo) = (y - 1, 12);
                }
                continue;
            };
            if i64::from(d2) != d {
                (d, h, mi) = (i64::from(d2), 23, 59);
            }
            let Some(h2) = prev_bit(u64::from(self.hours), h) else {
                (d, h, mi) = (d - 1, 23, 59);
                if d < 1 {
                    (mo, d) = (mo - 1, 31);
                    if mo < 1 {
                        (y, mo) = (y - 1, 12);
                    }
                }
                continue;
            };
            if i64::from(h2) != h {
                (h, mi) = (i64::from(h2), 59);
            }
            let Some(mi2) = prev_bit(self.minutes, mi) else {
                (h, mi) = (h - 1, 59);
                if h < 0 {
                    (d, h) = (d - 1, 23);
                    if d < 1 {
                        (mo, d) = (mo - 1, 31);
                        if mo < 1 {
                            (y, mo) = (y - 1, 12);
                        }
                    }
                }
                continue;
            };
            return Some(Wall {
                year: y,
                month: mo as u32,
                day: d as u32,
                hour: h as u32,
                minute: mi2,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    fn w(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Wall {
        Wall {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
        }
    }

    /// Brute force over minutes: the oracle for the field-jumping search.
    fn brute_next(s: &Schedule, from: Wall, limit: i64) -> Option<Wall> {
        let mut t = from.to_seconds();
        for _ in 0..limit {
            let x = Wall::from_seconds(t);
            if s.matches_wall(x.year, x.month, x.day, x.hour, x.minute) {
                return Some(x);
            }
            t += 60;
        }
        None
    }

    fn brute_prev(s: &Schedule, from: Wall, limit: i64) -> Option<Wall> {
        let mut t = from.to_seconds();
        for _ in 0..limit {
            let x = Wall::from_seconds(t);
            if s.matches_wall(x.year, x.month, x.day, x.hour, x.minute) {
                return Some(x);
            }
            t -= 60;
        }
        None
    }

    #[test]
    fn next_and_prev_agree_with_brute_force() {
        let exprs = [
            "*/15 * * * *",
            "0 2 * * *",
            "30 4 1,15 * 5",
            "0 9-17 * * 1-5",
            "5 0 L * *",
            "0 12 LW * *",
            "0 12 15W * *",
            "0 0 1 * 5#3",
            "0 0 * * 5L",
            "0 0 */2 * 1",
            "59 23 31 * *",
            "0 0 29 2 *",
        ];
        let starts = [
            w(2024, 1, 1, 0, 0),
            w(2025, 2, 28, 23, 59),
            w(2023, 12, 31, 23, 30),
            w(2026, 7, 15, 12, 1),
        ];
        for e in exprs {
            let s = parse(e, "").unwrap();
            for st in starts {
                let limit = 60 * 24 * 366 * 9;
                assert_eq!(s.next_wall(st), brute_next(&s, st, limit), "next {e} from {st:?}");
                assert_eq!(s.prev_wall(st), brute_prev(&s, st, limit), "prev {e} from {st:?}");
            }
        }
    }

    #[test]
    fn stops_at_the_edges_of_the_datetime_range() {
        let s = parse("0 0 29 2 *", "").unwrap();
        assert_eq!(s.next_wall(w(9996, 3, 1, 0, 0)), None);
        assert_eq!(s.prev_wall(w(4, 2, 28, 0, 0)), None);
        assert_eq!(s.next_wall(w(9996, 2, 1, 0, 0)), Some(w(9996, 2, 29, 0, 0)));
    }
}
