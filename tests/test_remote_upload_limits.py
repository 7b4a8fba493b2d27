"""Upload bandwidth windows: parsing (errors name the rule and the part), the rate in
force at any instant against a minute-table oracle, and the pacer changing pace at a
boundary crossed mid-upload."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup.errors import ConfigError
from rustybackup.upload_limits import UploadPacer, UploadRule, UploadSchedule, parse_rule

MiB = 1 << 20


def test_parse_the_issue_example() -> None:
    s = UploadSchedule.parse(["50MiB/s@22:00-06:00", "5MiB/s@09:00-18:00"], tz="Europe/Berlin")
    assert s.rules == (
        UploadRule(50 * MiB, time(22), time(6)),
        UploadRule(5 * MiB, time(9), time(18)),
    )
    berlin = ZoneInfo("Europe/Berlin")
    assert s.rate_at(datetime(2026, 7, 1, 23, 30, tzinfo=berlin)) == 50 * MiB
    assert s.rate_at(datetime(2026, 7, 1, 5, 59, tzinfo=berlin)) == 50 * MiB
    assert s.rate_at(datetime(2026, 7, 1, 6, 0, tzinfo=berlin)) is None
    assert s.rate_at(datetime(2026, 7, 1, 12, 0, tzinfo=berlin)) == 5 * MiB
    # 10:00 UTC is 12:00 in Berlin in summer: the zone is the schedule's, not UTC.
    assert s.rate_at(datetime(2026, 7, 1, 10, 0, tzinfo=UTC)) == 5 * MiB
    assert str(s) == "50MiB/s@22:00-06:00, 5MiB/s@09:00-18:00 (Europe/Berlin)"


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("50MiB/s", "upload limit #1 '50MiB/s': expected RATE@HH:MM-HH:MM"),
        ("fast@22:00-06:00", "is not a rate"),
        ("50MiB/s@24:00-06:00", "start 24:00 is not a time of day"),
        ("50MiB/s@22:00-06:60", "end 06:60 is not a time of day"),
        ("1B/s@22:00-06:00", "below the smallest limit"),
    ],
)
def test_bad_rules_are_named(spec: str, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        parse_rule(spec)


def test_second_rule_is_named_by_position() -> None:
    with pytest.raises(ConfigError, match=re.escape("upload limit #2")):
        UploadSchedule.parse(["5MiB/s@09:00-18:00", "x"])
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        UploadSchedule.parse(["5MiB/s@09:00-18:00"], tz="Mars/Olympus")


_rule = st.tuples(
    st.integers(1, 1000), st.integers(0, 23), st.sampled_from([0, 15, 30, 59]), st.integers(0, 23), st.integers(0, 59)
)


@settings(deadline=None, max_examples=200)
@given(st.lists(_rule, max_size=4), st.none() | st.integers(1, 100), st.integers(0, 24 * 60 - 1))
def test_rate_matches_a_minute_table(
    rules: list[tuple[int, int, int, int, int]], default: int | None, minute: int
) -> None:
    sched = UploadSchedule(
        tuple(UploadRule(r * 1024.0, time(h1, m1), time(h2, m2)) for r, h1, m1, h2, m2 in rules),
        "UTC",
        None if default is None else default * 1024.0,
    )
    # Oracle: paint a table of the 1440 minutes of a day, last rule first so the first
    # matching rule wins; a window whose end is not after its start wraps midnight.
    table: list[float | None] = [None if default is None else default * 1024.0] * 1440
    for r, h1, m1, h2, m2 in reversed(rules):
        a, b = h1 * 60 + m1, h2 * 60 + m2
        span = range(a, b) if a < b else [*range(a, 1440), *range(0, b)]
        for x in span:
            table[x] = r * 1024.0
    when = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=minute, seconds=30)
    assert sched.rate_at(when) == table[minute]


def test_the_pacer_changes_pace_at_a_boundary() -> None:
    sched = UploadSchedule.parse(["5MiB/s@09:00-18:00"], default="50MiB/s")
    now = [datetime(2026, 3, 2, 17, 59, 50, tzinfo=UTC)]
    applied: list[float | None] = []
    ticked = threading.Event()

    def apply(rate: float | None) -> None:
        applied.append(rate)
        if len(applied) == 2:
            ticked.set()

    pacer = UploadPacer(sched, apply, lambda: now[0])
    with pacer.running(every=0.01):
        assert applied == [5 * MiB]
        now[0] = datetime(2026, 3, 2, 18, 0, 1, tzinfo=UTC)
        assert ticked.wait(10)
    assert applied == [5 * MiB, 50 * MiB]
    with pytest.raises(ConfigError, match="timezone-aware"):
        sched.rate_at(datetime(2026, 1, 1))
