//! A parsed schedule: five fields, the Vixie day rule, and the per-month day mask the
//! search walks over.

use super::calendar::days_in_month;
use super::error::CronError;
use super::field::{first_weekday, month_days, weekly_mask, Field, FieldKind};

/// A parsed, validated cron schedule (wall-clock matching only; zones live in `tz`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Schedule {
    pub(crate) fields: [Field; 5],
    pub(crate) minutes: u64,
    pub(crate) hours: u32,
    pub(crate) months: u16,
    pub(crate) dom_bits: u32,
    pub(crate) dow_bits: u8,
    /// Vixie cron: both day fields restricted => a day matches if EITHER matches.
    pub(crate) day_or: bool,
    /// Neither minute nor hour starts with `*`: DST gaps and folds fire once (ISC cron).
    pub(crate) fixed_time: bool,
    normalized: String,
}

impl Schedule {
    /// Builds a schedule from its five parsed fields and rejects one that can never fire.
    pub fn from_fields(fields: [Field; 5], texts: [&str; 5]) -> Result<Schedule, CronError> {
        let [mi, h, _, mo, dow] = &fields;
        let dom = &fields[2];
        let mut normalized = String::with_capacity(32);
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                normalized.push(' ');
            }
            f.write_normalized(&mut normalized);
        }
        let s = Schedule {
            minutes: mi.bits,
            hours: h.bits as u32,
            months: mo.bits as u16,
            dom_bits: dom.bits as u32,
            dow_bits: dow.bits as u8,
            day_or: !dom.star && !dow.star,
            fixed_time: !mi.star && !h.star,
            normalized,
            fields,
        };
        s.check_can_fire(texts)?;
        Ok(s)
    }

    /// The normalized expression (`parse(normalized) == self`).
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The five fields in expression order.
    pub fn fields(&self) -> &[Field; 5] {
        &self.fields
    }

    /// True when DST gaps and folds are handled the "fixed time" way (see `tz`).
    pub fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    /// The matching days of a month with `len` days whose 1st is weekday `first`.
    pub(crate) fn day_mask_for(&self, month: u32, len: u32, first: u32) -> u32 {
        if self.months & (1 << month) == 0 {
            return 0;
        }
        let [_, _, dom, _, dow] = &self.fields;
        let mut dm = self.dom_bits;
        if !dom.dom.last && !dom.dom.last_weekday && dom.dom.nearest_weekday == 0 {
            // fast path: no extensions
        } else {
            dm |= dom.dom.mask(len, first);
        }
        let mut wm = weekly_mask(self.dow_bits, len, first);
        if dow.dow.last != 0 || dow.dow.nth.iter().any(|n| *n != 0) {
            wm |= dow.dow.mask(len, first);
        }
        let m = if self.day_or { dm | wm } else { dm & wm };
        m & month_days(len)
    }

    /// The matching days (bit d) of `month` in `year`.
    pub fn day_mask(&self, year: i32, month: u32) -> u32 {
        if self.months & (1 << month) == 0 {
            return 0;
        }
        self.day_mask_for(month, days_in_month(year, month), first_weekday(year, month))
    }

    /// Whether a wall-clock minute matches (ignores zones).
    pub fn matches_wall(&self, year: i32, month: u32, day: u32, hour: u32, minute: u32) -> bool {
        self.minutes & (1 << minute) != 0
            && self.hours & (1 << hour) != 0
            && self.day_mask(year, month) & (1 << day) != 0
    }

    /// Every (month, length, first weekday) combination occurs in the 400-year Gregorian
    /// cycle, so a schedule fires iff one of them has a matching day.
    fn check_can_fire(&self, texts: [&str; 5]) -> Result<(), CronError> {
        for month in 1..=12u32 {
            if self.months & (1 << month) == 0 {
                continue;
            }
            let lens: &[u32] = if month == 2 {
                &[28, 29]
            } else {
                &[days_in_month(2001, month)]
            };
            for &len in lens {
                for first in 0..7 {
                    if self.day_mask_for(month, len, first) != 0 {
                        return Ok(());
                    }
                }
            }
        }
        let rule = if self.day_or { "either" } else { "both" };
        Err(CronError::NeverFires(format!(
            "no day in month {:?} matches {rule} day-of-month {:?} and day-of-week {:?}",
            texts[3], texts[2], texts[4]
        )))
    }

    /// The field kinds in order, for bindings that label fields.
    pub fn kinds() -> [FieldKind; 5] {
        FieldKind::ALL
    }
}
