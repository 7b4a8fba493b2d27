"""DST rules as ISC/Vixie cron applies them (DESIGN.md), where croniter and cronsim differ.

Fixed-time schedules (neither minute nor hour starts with '*') fire once in a spring-forward
gap, at the first instant after it, and once in a fall-back fold, at the first pass.
Wildcard schedules fire only at wall times that exist, and at every real instant in a fold.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rustybackup import CronSchedule

UTC = UTC
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def as_utc(values: list[datetime]) -> list[datetime]:
    return [v.astimezone(UTC) for v in values]


# --- spring forward -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expr", "day", "expected_utc"),
    [
        # New York 2025-03-09: 02:00 EST -> 03:00 EDT (07:00Z)
        (NY, "30 2 * * *", datetime(2025, 3, 9), utc(2025, 3, 9, 7, 0)),
        (NY, "0,15,30,45 2 * * *", datetime(2025, 3, 9), utc(2025, 3, 9, 7, 0)),
        # Berlin 2025-03-30: 02:00 CET -> 03:00 CEST (01:00Z)
        (BERLIN, "30 2 * * *", datetime(2025, 3, 30), utc(2025, 3, 30, 1, 0)),
        # Lord Howe 2025-10-05: 02:00 +10:30 -> 02:30 +11 (15:30Z the day before)
        (LORD_HOWE, "15 2 * * *", datetime(2025, 10, 5), utc(2025, 10, 4, 15, 30)),
    ],
)
def test_fixed_time_in_the_gap_fires_once_right_after_it(
    zone: ZoneInfo, expr: str, day: datetime, expected_utc: datetime
) -> None:
    s = CronSchedule(expr, zone)
    got = s.next_n(day, 2)
    assert got[0] == expected_utc
    assert got[0].tzinfo is zone
    # and the day after it is back to normal wall time
    assert got[1].date() == (day + timedelta(days=1)).date()


def test_wildcard_schedule_skips_wall_times_that_do_not_exist() -> None:
    s = CronSchedule("*/30 * * * *", NY)
    got = s.next_n(datetime(2025, 3, 9, 1, 10), 3)
    assert [g.strftime("%H:%M %Z") for g in got] == ["01:30 EST", "03:00 EDT", "03:30 EDT"]
    hourly_30 = CronSchedule("30 * * * *", BERLIN)  # hour is '*': a wildcard schedule
    got = hourly_30.next_n(datetime(2025, 3, 30, 0, 0), 3)
    assert [g.strftime("%H:%M %Z") for g in got] == ["00:30 CET", "01:30 CET", "03:30 CEST"]


def test_lord_howe_half_hour_gap_for_wildcards() -> None:
    s = CronSchedule("*/15 * * * *", LORD_HOWE)
    got = s.next_n(datetime(2025, 10, 5, 1, 40), 3)
    assert [g.strftime("%H:%M") for g in got] == ["01:45", "02:30", "02:45"]
    assert as_utc(got)[1] - as_utc(got)[0] == timedelta(minutes=15)


# --- fall back ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expr", "day", "first_utc"),
    [
        # New York 2025-11-02: 02:00 EDT -> 01:00 EST; 01:30 exists at 05:30Z and 06:30Z
        (NY, "30 1 * * *", datetime(2025, 11, 2), utc(2025, 11, 2, 5, 30)),
        # Berlin 2025-10-26: 03:00 CEST -> 02:00 CET; 02:30 exists at 00:30Z and 01:30Z
        (BERLIN, "30 2 * * *", datetime(2025, 10, 26), utc(2025, 10, 26, 0, 30)),
        # Lord Howe 2025-04-06: 02:00 +11 -> 01:30 +10:30; 01:45 at 14:45Z and 15:15Z
        (LORD_HOWE, "45 1 * * *", datetime(2025, 4, 6), utc(2025, 4, 5, 14, 45)),
    ],
)
def test_fixed_time_in_the_fold_fires_once_at_the_first_pass(
    zone: ZoneInfo, expr: str, day: datetime, first_utc: datetime
) -> None:
    s = CronSchedule(expr, zone)
    got = s.next_n(day, 2)
    # (PEP 495: an ambiguous time never compares equal across zones; compare in UTC)
    assert got[0].astimezone(UTC) == first_utc and got[0].fold == 0
    assert got[1].date() == (day + timedelta(days=1)).date()
    # from inside the repeated period (second pass), the next one is the next day
    second_pass = got[0].replace(fold=1)
    assert second_pass.astimezone(UTC) > got[0].astimezone(UTC)
    assert s.next_after(second_pass) == got[1]
    # and prev_before from the next day finds the first pass, never the second
    assert s.prev_before(got[1]).astimezone(UTC) == first_utc


def test_wildcard_schedule_fires_at_every_real_instant_of_the_fold() -> None:
    s = CronSchedule("*/30 * * * *", NY)
    got = s.next_n(datetime(2025, 11, 2, 0, 50), 6)
    assert [(g.strftime("%H:%M %Z"), g.fold) for g in got] == [
        ("01:00 EDT", 0),
        ("01:30 EDT", 0),
        ("01:00 EST", 1),
        ("01:30 EST", 1),
        ("02:00 EST", 0),
        ("02:30 EST", 0),
    ]
    assert as_utc(got) == [utc(2025, 11, 2, 5, 0) + timedelta(minutes=30 * i) for i in range(6)]


def test_next_after_from_inside_the_first_pass_of_the_fold_finds_the_repeat() -> None:
    hourly = CronSchedule("0 * * * *", NY)
    t = datetime(2025, 11, 2, 1, 50, tzinfo=NY)  # fold=0: 05:50Z, EDT
    assert hourly.next_after(t).astimezone(UTC) == utc(2025, 11, 2, 6, 0)  # 01:00 EST
    every_minute = CronSchedule("* * * * *", NY)
    nxt = every_minute.next_after(datetime(2025, 11, 2, 1, 59, tzinfo=NY))
    assert (nxt.hour, nxt.minute, nxt.fold) == (1, 0, 1)
    assert every_minute.prev_before(nxt).astimezone(UTC) == utc(2025, 11, 2, 5, 59)


def test_results_are_strictly_after_the_argument_inside_a_repeated_hour() -> None:
    for expr in ("*/10 * * * *", "10,40 1 * * *", "* * * * *"):
        s = CronSchedule(expr, LORD_HOWE)
        t = datetime(2025, 4, 6, 1, 0, tzinfo=UTC).astimezone(LORD_HOWE)
        base = datetime(2025, 4, 5, 14, 20, tzinfo=UTC)
        for step in range(0, 120, 7):
            t = base + timedelta(minutes=step)
            nxt = s.next_after(t)
            assert nxt.astimezone(UTC) > t
            prv = s.prev_before(t)
            assert prv.astimezone(UTC) < t
            assert s.next_after(prv).astimezone(UTC) >= t or s.next_after(prv) == nxt


def test_lord_howe_wildcard_fold_is_half_an_hour() -> None:
    s = CronSchedule("*/15 * * * *", LORD_HOWE)
    got = s.next_n(datetime(2025, 4, 6, 1, 20), 5)
    assert [(g.strftime("%H:%M"), g.fold) for g in got] == [
        ("01:30", 0),
        ("01:45", 0),
        ("01:30", 1),
        ("01:45", 1),
        ("02:00", 0),
    ]


def test_naive_input_in_a_fold_uses_fold_to_pick_the_instant() -> None:
    s = CronSchedule("*/30 * * * *", NY)
    first = s.next_after(datetime(2025, 11, 2, 1, 30))  # fold=0 -> EDT pass
    second = s.next_after(datetime(2025, 11, 2, 1, 30, fold=1))  # EST pass
    assert (first.hour, first.minute, first.fold) == (1, 0, 1)
    assert (second.hour, second.minute, second.fold) == (2, 0, 0)


def test_naive_input_in_a_gap_is_read_like_zoneinfo() -> None:
    s = CronSchedule("* * * * *", NY)
    naive = datetime(2025, 3, 9, 2, 30)  # does not exist
    expected = s.next_after(naive.replace(tzinfo=NY))
    assert s.next_after(naive) == expected


def test_matches_at_gap_and_fold_instants() -> None:
    fixed = CronSchedule("30 2 * * *", NY)
    assert fixed.matches(datetime(2025, 3, 9, 3, 0, tzinfo=NY))  # the gap's 02:30 fires here
    assert not CronSchedule("30 2 * * *", NY).matches(datetime(2025, 3, 10, 3, 0, tzinfo=NY))
    f2 = CronSchedule("30 1 * * *", NY)
    assert f2.matches(datetime(2025, 11, 2, 1, 30, tzinfo=NY))
    assert not f2.matches(datetime(2025, 11, 2, 1, 30, fold=1, tzinfo=NY))
    assert CronSchedule("30 * * * *", NY).matches(datetime(2025, 11, 2, 1, 30, fold=1, tzinfo=NY))
