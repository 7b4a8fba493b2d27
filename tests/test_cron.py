"""CronSchedule's API: parsing, errors, normalization, equality, pickling, presets."""

from __future__ import annotations

import copy
import pickle
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
import rustybackup
from rustybackup import CronError, CronSchedule, daily, hourly, monthly, weekly

UTC = UTC


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "minute: 61 is out of range 0-59"),
        ("* 24 * * *", "hour: 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month: 0 is out of range 1-31"),
        ("* * * 13 *", "month: 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week: 8 is out of range 0-7"),
        ("* * * * 5-1", "day-of-week: range 5-1 is reversed"),
        ("30-10 * * * *", "minute: range 30-10 is reversed"),
        ("* * * * * *", "expected 5 fields, got 6"),
        ("* * * *", "expected 5 fields, got 4"),
        ("", "expected 5 fields, got an empty expression"),
        ("*/0 * * * *", 'minute: step 0 in "*/0" is out of range 1-60'),
        ("*/x * * * *", 'minute: step "x" in "*/x" is not a number'),
        ("? * * * *", "minute: \"?\": '?' is only allowed in day-of-month and day-of-week"),
        ("1,,2 * * * *", 'minute: empty item in "1,,2"'),
        ("* * * FOO *", 'month: "FOO" in "FOO" is not a number or a month name (JAN-DEC)'),
        ("* * * * funday", 'day-of-week: "funday" in "funday" is not a number or a day name (SUN-SAT)'),
        ("* * 5#2 * *", "day-of-month: \"5#2\": '#' is only allowed in day-of-week"),
        ("* * * * 5#6", 'day-of-week: "6" in "5#6" is not a week number 1-5'),
        ("* * 32W * *", "day-of-month: 32 is out of range 1-31"),
        ("@reboot", 'unknown macro "@reboot"'),
        ("0 0 30 2 *", "the expression can never fire"),
        ("0 0 31 4,6,9,11 *", "the expression can never fire"),
    ],
)
def test_invalid_expressions_raise_cron_error_naming_field_and_text(expr: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        CronSchedule(expr)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_never_firing_reason_names_the_fields() -> None:
    with pytest.raises(CronError, match=r'month "2" matches both day-of-month "30" and day-of-week "\*"'):
        CronSchedule("0 0 30 2 *")


def test_or_rule_lets_an_impossible_day_of_month_fire_on_weekdays() -> None:
    s = CronSchedule("0 0 30 2 1")
    assert s.next_after(datetime(2025, 1, 1, tzinfo=UTC)) == datetime(2025, 2, 3, tzinfo=UTC)


def test_unknown_zone_is_a_cron_error_naming_the_zone() -> None:
    with pytest.raises(CronError, match='unknown time zone "Mars/Olympus"'):
        CronSchedule("* * * * *", "Mars/Olympus")


def test_tz_of_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="tz must be a zone name or a tzinfo"):
        CronSchedule("* * * * *", 5)  # type: ignore[arg-type]


def test_tz_accepts_name_zoneinfo_and_fixed_offset() -> None:
    by_name = CronSchedule("0 2 * * *", "Europe/Berlin")
    by_zoneinfo = CronSchedule("0 2 * * *", ZoneInfo("Europe/Berlin"))
    assert by_name == by_zoneinfo
    assert by_name.tz == ZoneInfo("Europe/Berlin")
    fixed = CronSchedule("0 2 * * *", timezone(timedelta(hours=5, minutes=30)))
    nxt = fixed.next_after(datetime(2025, 1, 1, tzinfo=UTC))
    assert nxt == datetime(2025, 1, 2, 2, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert isinstance(nxt.tzinfo, timezone)
    assert CronSchedule("* * * * *").tz == ZoneInfo("UTC")


def test_results_are_aware_in_the_schedule_zone_and_strictly_after() -> None:
    s = CronSchedule("0 2 * * *", "Europe/Berlin")
    start = datetime(2025, 1, 1, 2, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    nxt = s.next_after(start)
    assert nxt == datetime(2025, 1, 2, 2, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert nxt.tzinfo is ZoneInfo("Europe/Berlin")
    # another zone's datetime means the same instant
    assert s.next_after(start.astimezone(UTC)) == nxt
    # naive means wall time in the schedule's zone
    assert s.next_after(datetime(2025, 1, 1, 2, 0)) == nxt
    # sub-minute input: strictly after still means the next whole minute that matches
    assert s.next_after(datetime(2025, 1, 1, 1, 59, 59, 999999)) == start


def test_prev_before_is_strictly_before() -> None:
    s = CronSchedule("*/15 * * * *")
    t = datetime(2025, 1, 1, 12, 15, tzinfo=UTC)
    assert s.prev_before(t) == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert s.prev_before(t + timedelta(microseconds=1)) == t


def test_matches_checks_the_minute() -> None:
    s = CronSchedule("0 9-17 * * 1-5")
    assert s.matches(datetime(2025, 6, 2, 9, 0, tzinfo=UTC))
    assert s.matches(datetime(2025, 6, 2, 9, 0, 30, tzinfo=UTC))
    assert not s.matches(datetime(2025, 6, 1, 9, 0, tzinfo=UTC))  # Sunday
    assert not s.matches(datetime(2025, 6, 2, 9, 1, tzinfo=UTC))


def test_next_n_and_iter_after_agree() -> None:
    s = CronSchedule("30 4 1,15 * 5")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    it = s.iter_after(start)
    assert iter(it) is it
    assert s.next_n(start, 20) == [next(it) for _ in range(20)]
    assert s.next_n(start, 0) == []


def test_iteration_stops_at_year_9999() -> None:
    s = CronSchedule("0 0 29 2 *")
    assert list(s.iter_after(datetime(9980, 1, 1, tzinfo=UTC)))[-1] == datetime(9996, 2, 29, tzinfo=UTC)
    assert len(s.next_n(datetime(9990, 1, 1, tzinfo=UTC), 10)) == 2
    with pytest.raises(CronError, match="within years 1-9999"):
        s.next_after(datetime(9996, 3, 1, tzinfo=UTC))
    with pytest.raises(CronError, match="within years 1-9999"):
        s.prev_before(datetime(4, 2, 1, tzinfo=UTC))


def test_str_is_normalized_and_round_trips() -> None:
    s = CronSchedule("0,15,30,45 */2 ? jan-MAR mon-fri")
    assert str(s) == "0,15,30,45 */2 * 1-3 1-5"
    assert CronSchedule(str(s)) == s
    assert str(CronSchedule("@daily")) == "0 0 * * *"
    assert str(CronSchedule("0 0 L * 5L,fri#3")) == "0 0 L * 5#3,5L"
    assert str(CronSchedule("0 0 * * 7")) == "0 0 * * 0"


def test_equality_hash_and_repr() -> None:
    a = CronSchedule("0 0 * * 7", "Europe/Berlin")
    b = CronSchedule("0 0 * * sun", "Europe/Berlin")
    assert a == b and hash(a) == hash(b)
    assert a != CronSchedule("0 0 * * 0", "UTC")
    assert a != "0 0 * * 0"
    assert repr(a) == 'CronSchedule("0 0 * * 0", tz="Europe/Berlin")'
    assert len({a, b}) == 1


@pytest.mark.parametrize(
    "tz", ["UTC", "America/New_York", ZoneInfo("Australia/Lord_Howe"), timezone(timedelta(hours=-3))]
)
def test_pickle_and_copy_round_trip(tz: str | timezone | ZoneInfo) -> None:
    s = CronSchedule("H 2 * * 1-5", tz, seed="job-7")
    back = pickle.loads(pickle.dumps(s))
    assert back == s and str(back) == str(s) and back.seed == "job-7"
    assert copy.deepcopy(s) == s


def test_fields_expose_sorted_value_sets() -> None:
    f = CronSchedule("*/20 9-11 1,15 * 1-5").fields
    assert [x.name for x in f] == ["minute", "hour", "day-of-month", "month", "day-of-week"]
    assert f[0].values == (0, 20, 40) and f[0].unrestricted and f[0].text == "*/20"
    assert f[1].values == (9, 10, 11) and not f[1].unrestricted
    assert f[3].values == tuple(range(1, 13))
    assert f[4].values == (1, 2, 3, 4, 5)
    assert "day-of-week" in repr(f[4])


def test_hashed_values_are_stable_per_seed_and_spread() -> None:
    a = CronSchedule("H H * * *", seed="nightly-db1")
    assert a == CronSchedule("H H * * *", seed="nightly-db1")
    assert a.seed == "nightly-db1"
    minutes = {CronSchedule("H * * * *", seed=f"job-{i}").fields[0].values for i in range(100)}
    assert len(minutes) > 30
    ranged = CronSchedule("H(0-29)/10 H(1-5) * * *", seed="x")
    m = ranged.fields[0].values
    assert len(m) == 3 and m[0] < 10 and all(b - a == 10 for a, b in pairwise(m))
    assert 1 <= ranged.fields[1].values[0] <= 5
    # H is a fixed time for DST purposes (it does not start with '*')
    assert ranged.is_fixed_time


def test_vixie_day_rule() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    # both restricted: OR (the 1st, or any Friday)
    either = CronSchedule("0 0 1 * 5").next_n(start, 3)
    assert either == [datetime(2025, 1, d, tzinfo=UTC) for d in (3, 10, 17)]
    # '*/2' in day-of-month counts as unrestricted: AND (odd days that are Mondays)
    both = CronSchedule("0 0 */2 * 1").next_n(start, 3)
    assert both == [
        datetime(2025, 1, 13, tzinfo=UTC),
        datetime(2025, 1, 27, tzinfo=UTC),
        datetime(2025, 2, 3, tzinfo=UTC),
    ]
    # '?' counts as '*'
    assert CronSchedule("0 0 ? * 1").next_after(start) == datetime(2025, 1, 6, tzinfo=UTC)


def test_nth_weekday_or_first_of_month() -> None:
    # 0 0 1 * 5#3: the 1st of the month OR the third Friday (both fields restricted)
    got = CronSchedule("0 0 1 * 5#3").next_n(datetime(2025, 1, 1, tzinfo=UTC), 4)
    assert got == [
        datetime(2025, 1, 17, tzinfo=UTC),
        datetime(2025, 2, 1, tzinfo=UTC),
        datetime(2025, 2, 21, tzinfo=UTC),
        datetime(2025, 3, 1, tzinfo=UTC),
    ]


def test_last_day_and_weekday_extensions() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert CronSchedule("0 0 L * *").next_n(start, 2) == [
        datetime(2025, 1, 31, tzinfo=UTC),
        datetime(2025, 2, 28, tzinfo=UTC),
    ]
    # last weekday of May 2025 is Friday the 30th (the 31st is a Saturday)
    assert CronSchedule("0 0 LW 5 *").next_after(start) == datetime(2025, 5, 30, tzinfo=UTC)
    # 1W in March 2025 (the 1st is a Saturday): Monday the 3rd
    assert CronSchedule("0 0 1W 3 *").next_after(start) == datetime(2025, 3, 3, tzinfo=UTC)
    # last Friday of January 2025
    assert CronSchedule("0 0 * 1 5L").next_after(start) == datetime(2025, 1, 31, tzinfo=UTC)
    assert CronSchedule("0 0 29 2 *").next_after(start) == datetime(2028, 2, 29, tzinfo=UTC)


def days(*ymd: tuple[int, int, int], hour: int = 0) -> list[datetime]:
    return [datetime(y, m, d, hour, tzinfo=UTC) for y, m, d in ymd]


def test_day_of_month_ranges_may_end_at_the_last_day() -> None:
    """``N-L`` is day N through the month's last day, whatever its length (the issue's
    examples); it matches what ``N-31`` matches, and prints as that."""
    feb = datetime(2024, 2, 20, tzinfo=UTC)
    assert CronSchedule("0 0 25-L * *").next_n(feb, 6) == days(
        (2024, 2, 25), (2024, 2, 26), (2024, 2, 27), (2024, 2, 28), (2024, 2, 29), (2024, 3, 25)
    )
    got = CronSchedule("0 9 28-L 2 *").next_n(datetime(2023, 1, 1, tzinfo=UTC), 4)
    assert got == days((2023, 2, 28), (2024, 2, 28), (2024, 2, 29), (2025, 2, 28), hour=9)
    # every other day from the 1st in April (30 days), then May the 1st
    odd = CronSchedule("0 0 1-l/2 * *").next_n(datetime(2025, 4, 28, tzinfo=UTC), 3)
    assert odd == days((2025, 4, 29), (2025, 5, 1), (2025, 5, 3))
    assert CronSchedule("0 0 25-L * *").prev_before(datetime(2025, 3, 1, tzinfo=UTC)) == datetime(
        2025, 2, 28, tzinfo=UTC
    )
    for expr, normal in [("0 0 25-L * *", "0 0 25-31 * *"), ("0 0 1,28-L,L * 1", "0 0 1,28-31,L * 1")]:
        s = CronSchedule(expr)
        assert str(s) == normal and CronSchedule(str(s)) == s == CronSchedule(normal)
    assert not CronSchedule("0 0 25-L * *").matches(datetime(2025, 2, 24, tzinfo=UTC))


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 L-5 * *", 'day-of-month: "L-5": L can only end a range'),
        ("0 0 L-L * *", 'day-of-month: "L-L": L can only end a range'),
        ("0 0 5-L * L", "day-of-week"),
        ("0 5-L * * *", 'hour: "L" in "5-L" is not a number'),
        ("0 0 30-L 2 *", "can never fire"),
    ],
)
def test_ranges_to_the_last_day_are_refused_elsewhere(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        CronSchedule(expr)


def test_weekday_seven_and_names_are_sunday() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert CronSchedule("0 0 * * 7").next_after(start) == CronSchedule("0 0 * * SUN").next_after(start)
    assert CronSchedule("0 0 * * 7").next_after(start) == datetime(2025, 1, 5, tzinfo=UTC)


def test_presets_build_ordinary_expressions() -> None:
    assert str(hourly()) == "0 * * * *"
    assert str(hourly(15)) == "15 * * * *"
    assert str(daily(2)) == "0 2 * * *"
    assert str(weekly("mon", 3, 30)) == "30 3 * * 1"
    assert str(monthly("L", 23, 59, tz="Europe/Berlin")) == "59 23 L * *"
    assert monthly(1, 0).tz == ZoneInfo("UTC")
    with pytest.raises(CronError, match="hour: 25 is out of range 0-23"):
        daily(25)
    with pytest.raises(CronError, match="minute: expected an int or a cron field string, got bool"):
        hourly(True)
    with pytest.raises(CronError, match="day-of-week: '1 2' is not a single cron field"):
        weekly("1 2", 0)


def test_public_api_exports() -> None:
    for name in ("CronSchedule", "CronField", "hourly", "daily", "weekly", "monthly"):
        assert name in rustybackup.__all__
        assert hasattr(rustybackup, name)


@pytest.mark.parametrize("n", [-1, 1_000_001])
def test_next_n_rejects_counts_out_of_range(n: int) -> None:
    with pytest.raises(CronError, match=rf"n: {n} is out of range 0-1000000 \(use iter_after for more\)"):
        CronSchedule("* * * * *").next_n(datetime(2025, 1, 1, tzinfo=UTC), n)


def test_arguments_of_the_wrong_type_are_type_errors() -> None:
    s = CronSchedule("* * * * *")
    with pytest.raises(TypeError):
        s.next_after("2025-01-01")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        CronSchedule(5)  # type: ignore[arg-type]


class _NoKeyZone(tzinfo):
    """A tzinfo with neither an IANA key nor a fixed offset."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return "nowhere"


def test_tzinfo_without_key_or_fixed_offset_is_a_cron_error() -> None:
    with pytest.raises(CronError, match="expected an IANA zone name, a zoneinfo.ZoneInfo or a fixed-offset"):
        CronSchedule("* * * * *", _NoKeyZone())


def test_schedule_is_shared_safely_between_threads() -> None:
    s = CronSchedule("*/7 3-5 * * 1-5", "Europe/Berlin")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    expected = s.next_n(start, 500)

    def work(_: int) -> list[datetime]:
        out, t = [], start
        for _ in range(500):
            t = s.next_after(t)
            out.append(t)
        return out

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(8)))
    assert all(r == expected for r in results)
