"""The one conversion between datetimes and the catalog's microsecond timestamps."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup.errors import CatalogError, ConfigError
from rustybackup.timestamps import from_us, to_us

aware = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones())


@settings(deadline=None)
@given(aware)
def test_round_trip_against_the_calendar_module(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    # calendar.timegm shares no code with the subtraction that to_us does.
    oracle = calendar.timegm(utc.timetuple()) * 1_000_000 + utc.microsecond
    assert to_us(moment) == oracle
    assert from_us(oracle) == utc


def test_the_range_ends_are_exact() -> None:
    top = datetime.max.replace(tzinfo=UTC)
    bottom = datetime.min.replace(tzinfo=UTC)
    assert from_us(to_us(top)) == top and from_us(to_us(bottom)) == bottom
    with pytest.raises(CatalogError, match="years 1-9999"):
        from_us(to_us(top) + 1)
    with pytest.raises(CatalogError, match="years 1-9999"):
        from_us(to_us(bottom) - 1)


def test_a_naive_datetime_is_a_config_error_that_is_also_a_value_error() -> None:
    with pytest.raises(ConfigError, match=r"^datetime 2026-01-01T00:00:00 has no time zone; pass an aware datetime$"):
        to_us(datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        to_us(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("abc", "'abc'"),
        (None, "None"),
        (1.5, "1.5"),
        (True, "True"),
        (2**63 - 1, str(2**63 - 1)),
        (-(2**200), "an integer of 201 bits"),
        ("x" * 500, "'" + "x" * 56 + "..."),
    ],
)
def test_damaged_stored_values_name_where_they_were_read(value: object, shown: str) -> None:
    with pytest.raises(CatalogError) as info:
        from_us(value, "catalog.db: row 'r1' field 'started_at'")
    assert str(info.value) == (
        f"catalog.db: row 'r1' field 'started_at': {shown} is not a time in microseconds since the epoch (years 1-9999)"
    )


def test_microseconds_are_not_rounded() -> None:
    moment = datetime(2026, 3, 29, 1, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=5, minutes=45)))
    assert from_us(to_us(moment) + 1) == moment + timedelta(microseconds=1)
