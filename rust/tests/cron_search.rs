//! Integration tests of the pure cron engine: next/prev against known dates, the DST rules
//! in three zones, bounds, and a field-jumping search that stays cheap for rare schedules.

use _core::cron::{parse, CronError, Zone};

/// Seconds since the epoch of a UTC civil time.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    _core::cron::calendar::days_from_civil(y, mo, d) * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60
}

fn zone(name: &str) -> Zone {
    Zone::named(name).unwrap()
}

#[test]
fn known_next_times_in_utc() {
    let z = zone("UTC");
    let cases = [
        ("*/15 * * * *", utc(2025, 3, 14, 15, 9), utc(2025, 3, 14, 15, 15)),
        ("0 2 * * *", utc(2025, 3, 14, 15, 9), utc(2025, 3, 15, 2, 0)),
        ("30 4 1,15 * 5", utc(2025, 3, 14, 15, 9), utc(2025, 3, 15, 4, 30)),
        ("0 0 29 2 *", utc(2025, 3, 14, 15, 9), utc(2028, 2, 29, 0, 0)),
        ("0 9-17 * * 1-5", utc(2025, 3, 14, 17, 0), utc(2025, 3, 17, 9, 0)),
        ("0 0 1 * 5#3", utc(2025, 1, 1, 0, 0), utc(2025, 1, 17, 0, 0)),
        ("0 0 */2 * 1", utc(2025, 1, 1, 0, 0), utc(2025, 1, 13, 0, 0)),
        ("59 23 31 12 *", utc(2025, 12, 31, 23, 59), utc(2026, 12, 31, 23, 59)),
        // day 25 to the month's last: after Feb 29 2024 comes Mar 25
        ("0 0 25-L * *", utc(2024, 2, 29, 0, 0), utc(2024, 3, 25, 0, 0)),
        ("0 9 28-L 2 *", utc(2024, 2, 28, 9, 0), utc(2024, 2, 29, 9, 0)),
        ("0 9 28-L 2 *", utc(2025, 2, 28, 9, 0), utc(2026, 2, 28, 9, 0)),
        ("0 0 1-L/2 * *", utc(2025, 4, 29, 0, 0), utc(2025, 5, 1, 0, 0)),
    ];
    for (expr, from, want) in cases {
        let s = parse(expr, "").unwrap();
        assert_eq!(s.next_after(&z, from).unwrap(), want, "{expr}");
        assert!(s.prev_before(&z, want).unwrap() <= from, "{expr}");
    }
}

#[test]
fn spring_forward_fixed_time_fires_once_after_the_gap() {
    // New York 2025-03-09 02:00 EST -> 03:00 EDT (07:00Z)
    let s = parse("0,30 2 * * *", "").unwrap();
    let ny = zone("America/New_York");
    assert_eq!(s.next_after(&ny, utc(2025, 3, 9, 5, 0)).unwrap(), utc(2025, 3, 9, 7, 0));
    assert_eq!(
        s.next_after(&ny, utc(2025, 3, 9, 7, 0)).unwrap(),
        utc(2025, 3, 10, 6, 0)
    );
    // Lord Howe 2025-10-05 02:00 +10:30 -> 02:30 +11 (15:30Z on the 4th)
    let lh = zone("Australia/Lord_Howe");
    let s = parse("15 2 * * *", "").unwrap();
    assert_eq!(
        s.next_after(&lh, utc(2025, 10, 4, 12, 0)).unwrap(),
        utc(2025, 10, 4, 15, 30)
    );
}

#[test]
fn spring_forward_wildcard_skips_missing_wall_times() {
    let s = parse("30 * * * *", "").unwrap();
    let berlin = zone("Europe/Berlin");
    // 01:30 CET = 00:30Z; 02:30 does not exist; next is 03:30 CEST = 01:30Z
    assert_eq!(
        s.next_after(&berlin, utc(2025, 3, 30, 0, 30)).unwrap(),
        utc(2025, 3, 30, 1, 30)
    );
}

#[test]
fn fall_back_fixed_fires_on_first_pass_wildcard_on_both() {
    let ny = zone("America/New_York");
    let fixed = parse("30 1 * * *", "").unwrap();
    assert_eq!(
        fixed.next_after(&ny, utc(2025, 11, 2, 4, 0)).unwrap(),
        utc(2025, 11, 2, 5, 30)
    );
    assert_eq!(
        fixed.next_after(&ny, utc(2025, 11, 2, 5, 30)).unwrap(),
        utc(2025, 11, 3, 6, 30)
    );
    assert_eq!(
        fixed.prev_before(&ny, utc(2025, 11, 3, 0, 0)).unwrap(),
        utc(2025, 11, 2, 5, 30)
    );
    let wild = parse("30 * * * *", "").unwrap();
    assert_eq!(
        wild.next_after(&ny, utc(2025, 11, 2, 5, 30)).unwrap(),
        utc(2025, 11, 2, 6, 30)
    );
    assert_eq!(
        wild.prev_before(&ny, utc(2025, 11, 2, 6, 30)).unwrap(),
        utc(2025, 11, 2, 5, 30)
    );
    let hourly = parse("0 * * * *", "").unwrap();
    // from 01:50 EDT the next top of the hour is 01:00 EST (06:00Z), not 02:00
    assert_eq!(
        hourly.next_after(&ny, utc(2025, 11, 2, 5, 50)).unwrap(),
        utc(2025, 11, 2, 6, 0)
    );
}

#[test]
fn searches_are_bounded_at_the_datetime_range() {
    let z = zone("UTC");
    let s = parse("0 0 29 2 *", "").unwrap();
    assert!(matches!(
        s.next_after(&z, utc(9996, 3, 1, 0, 0)),
        Err(CronError::OutOfRange(_))
    ));
    assert!(matches!(
        s.prev_before(&z, utc(4, 2, 1, 0, 0)),
        Err(CronError::OutOfRange(_))
    ));
    let rare = parse("0 0 31 2 5#5", "").unwrap(); // OR: fifth Friday of a February
    let first = rare.next_after(&z, utc(2025, 1, 1, 0, 0)).unwrap();
    assert_eq!(first, utc(2036, 2, 29, 0, 0));
    let n = rare.next_n(&z, utc(9900, 1, 1, 0, 0), 100).unwrap();
    assert!(!n.is_empty() && n.len() < 100);
}

#[test]
fn never_firing_expressions_are_rejected_with_the_reason() {
    for e in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 2 *"] {
        let err = parse(e, "").unwrap_err();
        assert!(matches!(err, CronError::NeverFires(_)), "{e}: {err}");
    }
}

#[test]
fn fixed_offset_zones_shift_wall_time() {
    let z = Zone::Fixed(5 * 3600 + 1800);
    let s = parse("0 2 * * *", "").unwrap();
    assert_eq!(
        s.next_after(&z, utc(2025, 1, 1, 0, 0)).unwrap(),
        utc(2025, 1, 1, 20, 30)
    );
    assert_eq!(z.key(), "+05:30");
    assert!(matches!(Zone::named("Nowhere/Land"), Err(CronError::UnknownZone(_))));
}

#[test]
fn dst_rules_continue_after_the_tabulated_years() {
    // New York 2150: DST starts on the second Sunday of March (the 8th) at 02:00 EST,
    // and ends on the first Sunday of November (the 1st) at 02:00 EDT, as zoneinfo says.
    let ny = zone("America/New_York");
    let s = parse("30 2 * * *", "").unwrap();
    assert_eq!(s.next_after(&ny, utc(2150, 3, 8, 5, 0)).unwrap(), utc(2150, 3, 8, 7, 0));
    let wild = parse("0 * * * *", "").unwrap();
    assert_eq!(
        wild.next_after(&ny, utc(2150, 11, 1, 5, 30)).unwrap(),
        utc(2150, 11, 1, 6, 0)
    );
    assert_eq!(ny.offset_at(utc(2150, 7, 1, 0, 0)), -4 * 3600);
    assert_eq!(ny.offset_at(utc(2150, 12, 1, 0, 0)), -5 * 3600);
}
