//! The day-field extensions of Quartz and cronie (`L`, `LW`, `nW` in day-of-month; `d#n`,
//! `dL` in day-of-week) and the month-shaped bit masks the search uses: bit d of a `u32`
//! stands for day d of the month.

use super::calendar;

/// `L`, `LW` and `nW` in the day-of-month field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DomSpecial {
    /// `L`: the last day of the month.
    pub last: bool,
    /// `LW`: the last weekday (Mon-Fri) of the month.
    pub last_weekday: bool,
    /// `nW`: bit n set for "the weekday nearest day n, within the month" (Quartz).
    pub nearest_weekday: u32,
}

/// `d#n` and `dL` in the day-of-week field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DowSpecial {
    /// `nth[d]` has bit n-1 set for `d#n` (the n-th weekday d of the month, n = 1-5).
    pub nth: [u8; 7],
    /// Bit d set for `dL` (the last weekday d of the month).
    pub last: u8,
}

impl DomSpecial {
    pub(crate) fn is_empty(&self) -> bool {
        !self.last && !self.last_weekday && self.nearest_weekday == 0
    }

    /// The days of a month of `len` days starting on weekday `first` that these select.
    pub fn mask(&self, len: u32, first: u32) -> u32 {
        let mut m = 0u32;
        let wd = |day: u32| (first + day - 1) % 7;
        if self.last {
            m |= 1 << len;
        }
        if self.last_weekday {
            let d = match wd(len) {
                0 => len - 2,
                6 => len - 1,
                _ => len,
            };
            m |= 1 << d;
        }
        let mut bits = self.nearest_weekday;
        while bits != 0 {
            let n = bits.trailing_zeros();
            bits &= bits - 1;
            if n > len {
                continue; // `31W` in a 30-day month: Quartz skips the month
            }
            let d = match wd(n) {
                6 if n == 1 => 3,       // Saturday the 1st: Monday the 3rd, not last month's Friday
                6 => n - 1,             // Saturday: the Friday before
                0 if n == len => n - 2, // Sunday the last: the Friday before
                0 => n + 1,             // Sunday: the Monday after
                _ => n,
            };
            m |= 1 << d;
        }
        m
    }
}

impl DowSpecial {
    pub(crate) fn is_empty(&self) -> bool {
        self.last == 0 && self.nth.iter().all(|n| *n == 0)
    }

    /// The days of a month of `len` days starting on weekday `first` that these select.
    pub fn mask(&self, len: u32, first: u32) -> u32 {
        let mut m = 0u32;
        for d in 0..7u32 {
            let nth = self.nth[d as usize];
            let last = self.last & (1 << d) != 0;
            if nth == 0 && !last {
                continue;
            }
            let first_day = 1 + (d + 7 - first) % 7;
            for n in 0..5u32 {
                let day = first_day + 7 * n;
                if day <= len && nth & (1 << n) != 0 {
                    m |= 1 << day;
                }
            }
            if last {
                m |= 1 << (first_day + 7 * ((len - first_day) / 7));
            }
        }
        m
    }
}

/// Days 1..=len that fall on a weekday in `dow_bits` (bit 0 = Sunday), for a month whose
/// first day is weekday `first`.
pub fn weekly_mask(dow_bits: u8, len: u32, first: u32) -> u32 {
    // Rotate the week so bit 0 is the weekday of day 1, then repeat it five times.
    let w = u64::from(dow_bits & 0x7f);
    let rot = ((w >> first) | (w << (7 - first))) & 0x7f;
    let rep = rot | rot << 7 | rot << 14 | rot << 21 | rot << 28;
    ((rep << 1) as u32) & month_days(len)
}

/// Bits 1..=len.
pub fn month_days(len: u32) -> u32 {
    (u32::MAX >> (31 - len)) & !1
}

/// Weekday of the 1st of a month, cron numbering.
pub fn first_weekday(year: i32, month: u32) -> u32 {
    calendar::weekday(year, month, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekly_mask_repeats_the_week_over_the_month() {
        // Mondays of a 30-day month that starts on a Monday
        assert_eq!(
            weekly_mask(1 << 1, 30, 1),
            (1 << 1) | (1 << 8) | (1 << 15) | (1 << 22) | (1 << 29)
        );
        assert_eq!(month_days(28), 0x1fff_fffe);
    }
}
