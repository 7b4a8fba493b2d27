//! One cron field: its kind (range, names), the parsed value set, whether it counts as
//! unrestricted (Vixie cron's `DOM_STAR`/`DOW_STAR`: the field text starts with `*`), and
//! the day-field extensions (`L`, `LW`, `nW`, `d#n`, `dL`).

pub use super::days::{first_weekday, month_days, weekly_mask, DomSpecial, DowSpecial};
use super::error::CronError;
use super::hashed;

/// Which of the five fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// 0-59
    Minute,
    /// 0-23
    Hour,
    /// 1-31
    DayOfMonth,
    /// 1-12 or JAN-DEC
    Month,
    /// 0-7 (0 and 7 are Sunday) or SUN-SAT
    DayOfWeek,
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl FieldKind {
    /// All five, in expression order.
    pub const ALL: [FieldKind; 5] = [
        FieldKind::Minute,
        FieldKind::Hour,
        FieldKind::DayOfMonth,
        FieldKind::Month,
        FieldKind::DayOfWeek,
    ];

    /// The name used in error messages and `CronField.name`.
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Minute => "minute",
            FieldKind::Hour => "hour",
            FieldKind::DayOfMonth => "day-of-month",
            FieldKind::Month => "month",
            FieldKind::DayOfWeek => "day-of-week",
        }
    }

    /// Smallest value accepted in the text.
    pub fn min(self) -> u32 {
        match self {
            FieldKind::DayOfMonth | FieldKind::Month => 1,
            _ => 0,
        }
    }

    /// Largest value accepted in the text (7 for day-of-week: Vixie cron's second Sunday).
    pub fn max(self) -> u32 {
        match self {
            FieldKind::Minute => 59,
            FieldKind::Hour => 23,
            FieldKind::DayOfMonth => 31,
            FieldKind::Month => 12,
            FieldKind::DayOfWeek => 7,
        }
    }

    /// The range `H` spreads over: day-of-month stops at 28 (Jenkins) so a hashed day exists
    /// in every month, and day-of-week at 6 so Sunday is not twice as likely.
    fn hash_range(self) -> (u32, u32) {
        match self {
            FieldKind::DayOfMonth => (1, 28),
            FieldKind::DayOfWeek => (0, 6),
            k => (k.min(), k.max()),
        }
    }

    fn is_day(self) -> bool {
        matches!(self, FieldKind::DayOfMonth | FieldKind::DayOfWeek)
    }

    /// Day-of-week 7 is stored as 0 (both are Sunday).
    fn canonical(self, v: u32) -> u32 {
        if self == FieldKind::DayOfWeek && v == 7 {
            0
        } else {
            v
        }
    }

    fn value(self, text: &str, term: &str) -> Result<u32, CronError> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let v: u32 = text.parse().map_err(|_| self.out_of_range(text))?;
            if v < self.min() || v > self.max() {
                return Err(self.out_of_range(text));
            }
            return Ok(v);
        }
        let names: &[&str] = match self {
            FieldKind::Month => &MONTH_NAMES,
            FieldKind::DayOfWeek => &DAY_NAMES,
            _ => &[],
        };
        let upper = text.to_ascii_uppercase();
        if let Some(i) = names.iter().position(|n| *n == upper) {
            return Ok(i as u32 + self.min());
        }
        let what = match self {
            FieldKind::Month => "a number or a month name (JAN-DEC)",
            FieldKind::DayOfWeek => "a number or a day name (SUN-SAT)",
            _ => "a number",
        };
        if text.is_empty() {
            return Err(CronError::field(self.name(), format!("missing value in {term:?}")));
        }
        Err(CronError::field(
            self.name(),
            format!("{text:?} in {term:?} is not {what}"),
        ))
    }

    fn out_of_range(self, text: &str) -> CronError {
        CronError::field(
            self.name(),
            format!("{text} is out of range {}-{}", self.min(), self.max()),
        )
    }
}

/// One parsed field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    /// Which field this is.
    pub kind: FieldKind,
    /// Bit v set when value v matches (day-of-week 7 folded into 0).
    pub bits: u64,
    /// The text starts with `*` (or `?`): Vixie cron treats the field as unrestricted for
    /// the day rule, and as "wildcard" for DST handling.
    pub star: bool,
    /// Day-of-month extensions.
    pub dom: DomSpecial,
    /// Day-of-week extensions.
    pub dow: DowSpecial,
}

/// Bits lo..=hi.
fn span_bits(lo: u32, hi: u32) -> u64 {
    if hi < lo {
        return 0;
    }
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

impl Field {
    /// Parses one field's text. `seed` feeds `H`.
    pub fn parse(kind: FieldKind, text: &str, seed: &str) -> Result<Field, CronError> {
        let mut f = Field {
            kind,
            bits: 0,
            star: false,
            dom: DomSpecial::default(),
            dow: DowSpecial::default(),
        };
        if text.is_empty() {
            return Err(CronError::field(kind.name(), "empty field"));
        }
        f.star = text.starts_with('*') || text.starts_with('?');
        for term in text.split(',') {
            f.parse_term(term, text, seed)?;
        }
        Ok(f)
    }

    fn parse_term(&mut self, term: &str, whole: &str, seed: &str) -> Result<(), CronError> {
        let kind = self.kind;
        let name = kind.name();
        if term.is_empty() {
            return Err(CronError::field(name, format!("empty item in {whole:?}")));
        }
        // Only terms with letters need an upper-case copy (names, L, W); digits-only is the hot path.
        let upper: std::borrow::Cow<'_, str> = if term.bytes().any(|b| b.is_ascii_lowercase()) {
            std::borrow::Cow::Owned(term.to_ascii_uppercase())
        } else {
            std::borrow::Cow::Borrowed(term)
        };
        // Day-of-month extensions.
        if kind == FieldKind::DayOfMonth {
            if upper == "L" {
                self.dom.last = true;
                return Ok(());
            }
            if upper == "LW" || upper == "WL" {
                self.dom.last_weekday = true;
                return Ok(());
            }
            if let Some(n) = upper.strip_suffix('W') {
                let v = kind.value(n, term)?;
                self.dom.nearest_weekday |= 1 << v;
                return Ok(());
            }
        }
        if upper == "L" && kind != FieldKind::DayOfMonth {
            return Err(CronError::field(
                name,
                format!("{term:?}: L alone is only allowed in day-of-month"),
            ));
        }
        // Day-of-week extensions.
        if let Some((d, n)) = upper.split_once('#') {
            if kind != FieldKind::DayOfWeek {
                return Err(CronError::field(
                    name,
                    format!("{term:?}: '#' is only allowed in day-of-week"),
                ));
            }
            let d = kind.canonical(kind.value(d, term)?);
            let nth: u32 = match n.parse() {
                Ok(v) if (1..=5).contains(&v) && n.bytes().all(|b| b.is_ascii_digit()) => v,
                _ => {
                    return Err(CronError::field(
                        name,
                        format!("{n:?} in {term:?} is not a week number 1-5"),
                    ))
                }
            };
            self.dow.nth[d as usize] |= 1 << (nth - 1);
            return Ok(());
        }
        if kind == FieldKind::DayOfWeek && upper.len() > 1 && upper.ends_with('L') {
            let d = kind.canonical(kind.value(&term[..term.len() - 1], term)?);
            self.dow.last |= 1 << d;
            return Ok(());
        }
        // Ranges, steps, wildcards, hashes.
        let (base, step) = match term.split_once('/') {
            Some((b, s)) => {
                let span = kind.max() - kind.min() + 1;
                let step = match s.parse::<u32>() {
                    Ok(v) if s.bytes().all(|b| b.is_ascii_digit()) => v,
                    _ => {
                        return Err(CronError::field(
                            name,
                            format!("step {s:?} in {term:?} is not a number"),
                        ))
                    }
                };
                if step == 0 || step > span {
                    return Err(CronError::field(
                        name,
                        format!("step {step} in {term:?} is out of range 1-{span}"),
                    ));
                }
                (b, Some(step))
            }
            None => (term, None),
        };
        let (lo, hi) = if base == "*" || base == "?" {
            if base == "?" && !kind.is_day() {
                return Err(CronError::field(
                    name,
                    format!("{term:?}: '?' is only allowed in day-of-month and day-of-week"),
                ));
            }
            (kind.min(), kind.max())
        } else if base.eq_ignore_ascii_case("H") || base.starts_with("H(") || base.starts_with("h(") {
            let ubase = base.to_ascii_uppercase();
            let (hlo, hhi) = if ubase == "H" {
                kind.hash_range()
            } else {
                let inner = ubase
                    .strip_prefix("H(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| CronError::field(name, format!("{term:?}: expected H or H(a-b)")))?;
                let (a, b) = inner
                    .split_once('-')
                    .ok_or_else(|| CronError::field(name, format!("{term:?}: expected H(a-b)")))?;
                let (a, b) = (kind.value(a, term)?, kind.value(b, term)?);
                if b < a {
                    return Err(CronError::field(name, format!("range {a}-{b} is reversed")));
                }
                (a, b)
            };
            match step {
                None => {
                    let v = hlo + hashed::pick(seed, kind, hhi - hlo + 1);
                    self.add(v, v, 1);
                }
                Some(s) => {
                    let start = hlo + hashed::pick(seed, kind, s.min(hhi - hlo + 1));
                    self.add(start, hhi, s);
                }
            }
            return Ok(());
        } else if let Some((a, b)) = base.split_once('-') {
            if kind == FieldKind::DayOfMonth && a.eq_ignore_ascii_case("L") {
                return Err(CronError::field(
                    name,
                    format!("{term:?}: L can only end a range (\"25-L\": the 25th to the last day)"),
                ));
            }
            // `N-L`: day N to the month's last day. Days past a month's end never match, so
            // that is `N-31` (and `N-L/s` is `N-31/s`); it prints as such.
            let vb = if kind == FieldKind::DayOfMonth && b.eq_ignore_ascii_case("L") {
                kind.max()
            } else {
                kind.value(b, term)?
            };
            let va = kind.value(a, term)?;
            if vb < va {
                return Err(CronError::field(name, format!("range {a}-{b} is reversed")));
            }
            (va, vb)
        } else {
            let v = kind.value(base, term)?;
            // `a/n` means a, a+n, ... up to the end of the range (Vixie and cronie).
            if step.is_some() {
                (v, kind.max())
            } else {
                (v, v)
            }
        };
        self.add(lo, hi, step.unwrap_or(1));
        Ok(())
    }

    fn add(&mut self, lo: u32, hi: u32, step: u32) {
        let mut v = lo;
        while v <= hi {
            self.bits |= 1 << self.kind.canonical(v);
            v += step;
        }
    }

    /// Sorted matching values (day-of-week 0-6), not counting the day extensions.
    pub fn values(&self) -> Vec<u32> {
        (0..64).filter(|v| self.bits & (1u64 << v) != 0).collect()
    }

    /// True when the field has day extensions (`L`, `W`, `#`).
    pub fn has_special(&self) -> bool {
        !self.dom.is_empty() || !self.dow.is_empty()
    }

    /// The normalized text: sorted values with runs as ranges, `*` or `*/n` kept when the
    /// field was written with a star (it changes the day rule and DST handling), extensions last.
    pub fn normalized(&self) -> String {
        let mut out = String::with_capacity(16);
        self.write_normalized(&mut out);
        out
    }

    /// Appends the normalized text to `out` (one buffer for the whole expression: parsing
    /// thousands of expressions is a benchmarked path).
    pub fn write_normalized(&self, out: &mut String) {
        use std::fmt::Write;
        let kind = self.kind;
        let start_len = out.len();
        let sep = |out: &mut String| {
            if out.len() > start_len {
                out.push(',');
            }
        };
        let mut rest = self.bits;
        if self.star {
            let (lo, hi) = (kind.min(), kind.max());
            // The smallest step whose progression from the start lies inside the set; every
            // star field has one (its own), so re-parsing gives the same set and flag.
            let mut chosen = hi - lo + 1;
            for step in 1..=hi - lo + 1 {
                let prog = self.progression(lo, hi, step);
                if prog & self.bits == prog {
                    chosen = step;
                    break;
                }
            }
            rest &= !self.progression(lo, hi, chosen);
            if chosen == 1 {
                out.push('*');
            } else {
                let _ = write!(out, "*/{chosen}");
            }
        }
        while rest != 0 {
            let a = rest.trailing_zeros();
            // length of the run of set bits starting at a
            let run = (!(rest >> a)).trailing_zeros();
            let b = a + run - 1;
            sep(out);
            if run >= 3 {
                let _ = write!(out, "{a}-{b}");
            } else if run == 2 {
                let _ = write!(out, "{a},{b}");
            } else {
                let _ = write!(out, "{a}");
            }
            rest &= !(span_bits(a, b));
        }
        if !self.has_special() {
            return;
        }
        if self.dom.last {
            sep(out);
            out.push('L');
        }
        if self.dom.last_weekday {
            sep(out);
            out.push_str("LW");
        }
        let mut nw = self.dom.nearest_weekday;
        while nw != 0 {
            let n = nw.trailing_zeros();
            nw &= nw - 1;
            sep(out);
            let _ = write!(out, "{n}W");
        }
        for d in 0..7 {
            for n in 0..5 {
                if self.dow.nth[d] & (1 << n) != 0 {
                    sep(out);
                    let _ = write!(out, "{d}#{}", n + 1);
                }
            }
        }
        for d in 0..7 {
            if self.dow.last & (1 << d) != 0 {
                sep(out);
                let _ = write!(out, "{d}L");
            }
        }
    }

    fn progression(&self, lo: u32, hi: u32, step: u32) -> u64 {
        let mut m = 0u64;
        let mut v = lo;
        while v <= hi {
            m |= 1 << self.kind.canonical(v);
            v += step;
        }
        m
    }

    /// True when every value of the field's range matches (`*`).
    pub fn is_full(&self) -> bool {
        let (lo, hi) = (
            self.kind.min(),
            self.kind
                .max()
                .min(if self.kind == FieldKind::DayOfWeek { 6 } else { 63 }),
        );
        self.bits & span_bits(lo, hi) == span_bits(lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: FieldKind, t: &str) -> Result<Field, CronError> {
        Field::parse(kind, t, "")
    }

    #[test]
    fn parses_lists_ranges_and_steps() {
        assert_eq!(
            p(FieldKind::Minute, "1,5-7,*/20").unwrap().values(),
            vec![0, 1, 5, 6, 7, 20, 40]
        );
        assert_eq!(p(FieldKind::Hour, "3/8").unwrap().values(), vec![3, 11, 19]);
        assert_eq!(p(FieldKind::Minute, "10-30/10").unwrap().values(), vec![10, 20, 30]);
        assert_eq!(p(FieldKind::DayOfWeek, "7").unwrap().values(), vec![0]);
        assert_eq!(
            p(FieldKind::DayOfWeek, "mon-FRI").unwrap().values(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(p(FieldKind::Month, "jan,Dec").unwrap().values(), vec![1, 12]);
    }

    #[test]
    fn reports_field_and_text() {
        let e = p(FieldKind::Minute, "61").unwrap_err().to_string();
        assert_eq!(e, "minute: 61 is out of range 0-59");
        let e = p(FieldKind::DayOfWeek, "5-1").unwrap_err().to_string();
        assert_eq!(e, "day-of-week: range 5-1 is reversed");
        assert!(p(FieldKind::Minute, "?")
            .unwrap_err()
            .to_string()
            .contains("only allowed in day"));
        assert!(p(FieldKind::Minute, "*/0").unwrap_err().to_string().contains("step 0"));
        assert!(p(FieldKind::Hour, "1,,2")
            .unwrap_err()
            .to_string()
            .contains("empty item"));
        assert!(p(FieldKind::DayOfMonth, "5#2").unwrap_err().to_string().contains("'#'"));
        assert!(p(FieldKind::DayOfWeek, "5#6")
            .unwrap_err()
            .to_string()
            .contains("week number"));
        assert!(p(FieldKind::Month, "FOO")
            .unwrap_err()
            .to_string()
            .contains("month name"));
    }

    #[test]
    fn normalizes_and_keeps_the_star() {
        assert_eq!(p(FieldKind::Minute, "*/15").unwrap().normalized(), "*/15");
        assert_eq!(p(FieldKind::Minute, "0,15,30,45").unwrap().normalized(), "0,15,30,45");
        assert_eq!(p(FieldKind::Minute, "*/15,7").unwrap().normalized(), "*/15,7");
        assert_eq!(p(FieldKind::DayOfWeek, "*/7").unwrap().normalized(), "*/7");
        assert_eq!(p(FieldKind::DayOfWeek, "?").unwrap().normalized(), "*");
        assert_eq!(p(FieldKind::Hour, "1-5,7,9,10").unwrap().normalized(), "1-5,7,9,10");
        assert_eq!(p(FieldKind::DayOfMonth, "l,15W,LW").unwrap().normalized(), "L,LW,15W");
        assert_eq!(p(FieldKind::DayOfWeek, "fri#3,5L").unwrap().normalized(), "5#3,5L");
    }

    #[test]
    fn a_day_of_month_range_may_end_at_the_last_day() {
        let dom = |t: &str| p(FieldKind::DayOfMonth, t);
        assert_eq!(dom("25-L").unwrap(), dom("25-31").unwrap());
        assert_eq!(dom("28-l").unwrap().values(), vec![28, 29, 30, 31]);
        assert_eq!(dom("1-L/2").unwrap(), dom("1-31/2").unwrap());
        assert!(dom("L-L").is_err());
        assert_eq!(dom("1,25-L,L").unwrap().normalized(), "1,25-31,L");
        assert!(dom("L-5").unwrap_err().to_string().contains("L can only end a range"));
        assert!(dom("25-LW")
            .unwrap_err()
            .to_string()
            .contains("in \"25-LW\" is not a number"));
        assert!(p(FieldKind::Hour, "5-L")
            .unwrap_err()
            .to_string()
            .contains("\"L\" in \"5-L\" is not a number"));
        assert!(p(FieldKind::DayOfWeek, "1-L").is_err());
    }

    #[test]
    fn day_extensions_pick_the_right_days() {
        // A 30-day month starting on a Monday (e.g. September 2025).
        let dom = p(FieldKind::DayOfMonth, "L").unwrap().dom;
        assert_eq!(dom.mask(30, 1), 1 << 30);
        // 2025-11: starts Saturday, 30 days; the 30th is a Sunday, last weekday Friday 28.
        assert_eq!(p(FieldKind::DayOfMonth, "LW").unwrap().dom.mask(30, 6), 1 << 28);
        // 1W when the 1st is a Saturday -> Monday the 3rd.
        assert_eq!(p(FieldKind::DayOfMonth, "1W").unwrap().dom.mask(30, 6), 1 << 3);
        // 15W when the 15th is a Saturday (month starting Saturday) -> Friday 14.
        assert_eq!(p(FieldKind::DayOfMonth, "15W").unwrap().dom.mask(30, 6), 1 << 14);
        // Third Friday of a month starting on Saturday: 7, 14, 21.
        assert_eq!(p(FieldKind::DayOfWeek, "5#3").unwrap().dow.mask(30, 6), 1 << 21);
        assert_eq!(p(FieldKind::DayOfWeek, "5L").unwrap().dow.mask(30, 6), 1 << 28);
        assert_eq!(
            weekly_mask(1 << 1, 30, 1),
            (1 << 1) | (1 << 8) | (1 << 15) | (1 << 22) | (1 << 29)
        );
    }
}
