"""BackupWindow: presets, midnight crossing, DST, zones, validation, and properties
checked against a brute-force oracle that walks the week minute by minute."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rustybackup.errors import ConfigError
from rustybackup.windows import BackupWindow, WeeklyRule, business_hours, off_hours, parse_days

UTC = UTC
PARIS = ZoneInfo("Europe/Paris")


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


# 2026-11-30 is a Monday.
MON = date(2026, 11, 30)


def at(day_offset: int, hh: int, mm: int = 0, tz: object = UTC) -> datetime:
    d = MON + timedelta(days=day_offset)
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=tz)  # type: ignore[arg-type]


def test_business_hours_is_weekdays_nine_to_five() -> None:
    w = business_hours()
    assert w.is_active(at(0, 9))
    assert w.is_active(at(4, 16, 59))
    assert not w.is_active(at(0, 17))
    assert not w.is_active(at(0, 8, 59))
    assert not w.is_active(at(5, 12))
    assert w.next_open(at(4, 17)) == at(7, 9)
    assert w.closes_at(at(2, 10)) == at(2, 17)


def test_off_hours_covers_weeknights_and_the_whole_weekend() -> None:
    w = off_hours()
    assert w.is_active(at(0, 3))  # Monday 03:00, as DESIGN says
    assert not w.is_active(at(0, 6))
    assert w.is_active(at(0, 18))
    assert w.is_active(at(5, 12)) and w.is_active(at(6, 12))
    assert not w.is_active(at(4, 12))
    # Friday 18:00 runs without a break to Monday 06:00.
    assert w.closes_at(at(4, 19)) == at(7, 6)
    assert w.next_open(at(0, 12)) == at(0, 18)


def test_window_crossing_midnight_belongs_to_its_start_day() -> None:
    w = BackupWindow("night", "Night", time(22), time(2), [0])  # Monday 22:00 -> Tuesday 02:00
    assert w.is_active(at(0, 23))
    assert w.is_active(at(1, 1, 59))
    assert not w.is_active(at(1, 2))
    assert not w.is_active(at(1, 23))  # Tuesday is not a start day
    assert w.closes_at(at(0, 22, 30)) == at(1, 2)


def test_equal_start_and_end_means_a_whole_day() -> None:
    w = BackupWindow("sun", "Sunday", time(0), time(0), "sun")
    assert w.is_active(at(6, 0)) and w.is_active(at(6, 23, 59))
    assert not w.is_active(at(0, 0))
    assert w.closes_at(at(6, 5)) == at(7, 0)


def test_next_open_returns_the_instant_itself_when_active() -> None:
    w = business_hours()
    assert w.next_open(at(1, 11, 30)) == at(1, 11, 30)


def test_naive_datetimes_are_wall_time_in_the_window_zone() -> None:
    w = BackupWindow("p", "Paris nights", time(1), time(5), range(7), tz="Europe/Paris")
    assert w.is_active(datetime(2026, 6, 1, 2, 0))  # 02:00 Paris
    assert not w.is_active(datetime(2026, 6, 1, 0, 30))  # 00:30 Paris
    assert w.is_active(datetime(2026, 6, 1, 2, 0, tzinfo=UTC))  # 04:00 CEST
    assert not w.is_active(datetime(2026, 6, 1, 3, 30, tzinfo=UTC))  # 05:30 CEST
    assert w.next_open(datetime(2026, 6, 1, 12, 0)).utcoffset() == timedelta(hours=2)


def test_window_opening_in_a_spring_forward_gap_opens_when_the_gap_ends() -> None:
    # Europe/Paris jumps 02:00 -> 03:00 on 2026-03-29 (a Sunday).
    w = BackupWindow("gap", "Gap", time(2, 30), time(3, 30), "sun", tz="Europe/Paris")
    opens = w.next_open(datetime(2026, 3, 28, 12, tzinfo=PARIS))
    assert opens == datetime(2026, 3, 29, 3, 0, tzinfo=PARIS)
    assert w.closes_at(opens) == datetime(2026, 3, 29, 3, 30, tzinfo=PARIS)


def test_window_in_a_repeated_hour_opens_first_and_closes_last() -> None:
    # Europe/Paris repeats 02:00-03:00 on 2026-10-25 (a Sunday).
    w = BackupWindow("rep", "Repeat", time(2, 15), time(2, 45), "sun", tz="Europe/Paris")
    opens = w.next_open(datetime(2026, 10, 24, 12, tzinfo=PARIS))
    closes = w.closes_at(opens)
    assert opens.astimezone(UTC) == utc(2026, 10, 25, 0, 15)
    assert closes is not None and closes.astimezone(UTC) == utc(2026, 10, 25, 1, 45)


def test_window_covering_the_whole_week_never_closes() -> None:
    w = BackupWindow("always", "Always", time(0), time(0), range(7))
    assert w.closes_at(at(0, 12)) is None
    assert w.next_open(at(3, 4)) == at(3, 4)


def test_days_accept_names_ranges_and_numbers() -> None:
    assert parse_days("mon-fri") == (0, 1, 2, 3, 4)
    assert parse_days("sat,Sunday") == (5, 6)
    assert parse_days([6, 0, 0]) == (0, 6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": []}, "window 'w' field days: a window needs at least one weekday"),
        ({"days": [7]}, "window 'w' field days: weekday 7 is out of range 0 (Mon) to 6 (Sun)"),
        ({"days": "fri-mon"}, "window 'w' field days: range 'fri-mon' runs backwards (write it as two ranges)"),
        ({"days": ["funday"]}, "window 'w' field days: 'funday' is not a weekday (use 0-6 or mon..sun)"),
        ({"tz": "Mars/Olympus"}, "window 'w' field tz: unknown time zone 'Mars/Olympus'"),
        ({"start": "09:00"}, "window 'w' field 'start': expected a datetime.time, got str '09:00'"),
        (
            {"end": time(1, tzinfo=UTC)},
            "window 'w' field 'end': must be a wall time without tzinfo (the window's tz applies)",
        ),
    ],
)
def test_invalid_windows_are_rejected_with_the_field_named(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"id": "w", "name": "W", "start": time(1), "end": time(2), "days": [0]}
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        BackupWindow(**args)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_empty_window_id_is_rejected() -> None:
    with pytest.raises(ConfigError, match="window id: must be a non-empty string, got ''"):
        BackupWindow("", "x", time(1), time(2), [0])


# --- properties against a minute-by-minute oracle ----------------------------------------

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


def oracle_active(w: BackupWindow, instant: datetime) -> bool:
    """Independent reading of the rules: walk back over the local days that could start
    an interval containing ``instant`` and compare wall-clock positions in UTC."""
    zone = w.zone
    local = instant.astimezone(zone)
    for rule in w.rules:
        for back in (0, 1):
            day = local.date() - timedelta(days=back)
            if day.weekday() not in rule.days:
                continue
            length = datetime.combine(date.min, rule.end) - datetime.combine(date.min, rule.start)
            if length <= timedelta(0):
                length += timedelta(days=1)
            # Wall-clock elapsed since the rule's start (ignoring DST jumps), which
            # equals the real elapsed time away from transitions.
            wall = datetime.combine(local.date(), local.time().replace(tzinfo=None))
            elapsed = wall - datetime.combine(day, rule.start)
            if timedelta(0) <= elapsed < length:
                return True
    return False


windows_st = st.builds(
    lambda s, e, days, tz: BackupWindow("w", "W", time(s // 4, (s % 4) * 15), time(e // 4, (e % 4) * 15), days, tz),
    st.integers(0, 95),
    st.integers(0, 95),
    st.sets(st.integers(0, 6), min_size=1),
    st.sampled_from(ZONES),
)
instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))


def _near_transition(w: BackupWindow, instant: datetime) -> bool:
    """True when a DST change lies within two days (the oracle ignores DST jumps)."""
    off = instant.astimezone(w.zone).utcoffset()
    return any((instant + timedelta(hours=h)).astimezone(w.zone).utcoffset() != off for h in range(-50, 51, 1))


@given(windows_st, instants)
def test_is_active_matches_the_oracle_away_from_dst_changes(w: BackupWindow, instant: datetime) -> None:
    if _near_transition(w, instant):
        return
    assert w.is_active(instant) == oracle_active(w, instant)


@given(windows_st, instants)
def test_next_open_is_active_and_nothing_before_it_is(w: BackupWindow, instant: datetime) -> None:
    opens = w.next_open(instant)
    assert opens >= instant
    assert w.is_active(opens)
    # Nothing between: sample every 15 minutes (rule boundaries are on quarter hours,
    # DST shifts are whole quarter hours too) and the instant just before the opening.
    assert not w.is_active(instant) or opens == instant
    probe = instant.replace(minute=(instant.minute // 15) * 15, second=0, microsecond=0) + timedelta(minutes=15)
    while probe < opens:
        assert not w.is_active(probe)
        probe += timedelta(minutes=15)
    if opens > instant:
        assert not w.is_active(opens - timedelta(seconds=1))


@given(windows_st, instants)
def test_closes_at_ends_the_active_period(w: BackupWindow, instant: datetime) -> None:
    closes = w.closes_at(instant)
    opens = w.next_open(instant)
    if closes is None:
        return
    assert closes > opens
    assert not w.is_active(closes)
    assert w.is_active(closes - timedelta(seconds=1))
    probe = opens
    while probe < closes:
        assert w.is_active(probe)
        probe += timedelta(minutes=15)


def test_extra_rules_extend_a_window() -> None:
    w = BackupWindow("w", "W", time(1), time(2), [0], also=[WeeklyRule((2,), time(3), time(4))])
    assert w.is_active(at(2, 3, 30)) and not w.is_active(at(1, 3, 30))
