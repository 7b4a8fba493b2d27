//! Formatting instants for messages and reasons.

use chrono::{DateTime, SecondsFormat};

/// `2026-11-29T08:00:00Z` (fraction only when there is one); raw µs if out of chrono's range.
pub fn fmt_us(us: i64) -> String {
    match DateTime::from_timestamp_micros(us) {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("{us} µs since the epoch"),
    }
}

/// "7-day", "12-hour", "90-minute", "45-second": how reasons name a recovery window.
pub fn fmt_span(us: i64) -> String {
    const SEC: i64 = 1_000_000;
    let units = [
        (86_400 * SEC, "day"),
        (3_600 * SEC, "hour"),
        (60 * SEC, "minute"),
        (SEC, "second"),
    ];
    for (size, name) in units {
        if us >= size && us % size == 0 {
            return format!("{}-{name}", us / size);
        }
    }
    format!("{us}-microsecond")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_print_as_utc_rfc3339() {
        assert_eq!(fmt_us(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_us(1_500_000), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn spans_use_the_largest_whole_unit() {
        assert_eq!(fmt_span(7 * 86_400_000_000), "7-day");
        assert_eq!(fmt_span(36 * 3_600_000_000), "36-hour");
        assert_eq!(fmt_span(90 * 60_000_000), "90-minute");
        assert_eq!(fmt_span(1), "1-microsecond");
    }
}
