"""Bad retention policies and durations: a ConfigError (still a ValueError) that names the
setting, never an OverflowError from deep inside a backup job."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from rustybackup import ConfigError, RetentionPolicy, RustyBackupError
from rustybackup.durations import parse_duration


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("redundancy=0", r"^redundancy must be an int of at least 1, not 0$"),
        ("redundancy=4294967296", r"^redundancy must be at most 4294967295, not 4294967296$"),
        ("daily=" + "9" * 5000, r"^invalid retention setting daily: at most 4294967295$"),
        ("daily=\u00b2", r"^invalid retention setting 'daily=\u00b2' in 'daily=\u00b2': daily needs a whole number$"),
        ("window=99999999999999999d", r"^invalid duration '99999999999999999d': too long \(at most 999999999 days\)$"),
        ("window=" + "x" * 100, r"^invalid duration 'x{37}\.\.\.': use a number and a unit"),
        ("hourly", r"^invalid retention setting 'hourly' in 'hourly': use name=value$"),
    ],
)
def test_bad_specs_are_config_errors_naming_the_setting(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        RetentionPolicy.parse(spec)
    assert isinstance(info.value, RustyBackupError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"full_copies": 2**64}, r"^redundancy must be at most 4294967295, not 18446744073709551616$"),
        ({"full_copies": 10**400}, r"^redundancy must be at most 4294967295, not an integer of 1329 bits$"),
        ({"keep_daily": 1.5}, r"^keep daily= must be an int of at least 0, not 1\.5$"),
        ({"keep_daily": True}, r"^keep daily= must be an int of at least 0, not True$"),
        ({"window": timedelta.max}, r"^recovery window must be at most 106751991 days, not 999999999 days$"),
        ({"window": "7d"}, r"^recovery window must be a positive timedelta, not '7d'$"),
    ],
)
def test_policies_out_of_the_planners_range_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RetentionPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_largest_accepted_policy_plans() -> None:
    from datetime import datetime

    from rustybackup.retention import plan_retention

    policy = RetentionPolicy(full_copies=2**32 - 1, window=timedelta(days=106751991), keep_yearly=2**32 - 1)
    assert plan_retention([], policy, datetime(2026, 1, 1, tzinfo=UTC)) == []


def test_from_dict_checks_types_before_building() -> None:
    with pytest.raises(ConfigError, match=r"^window must be a duration string such as 7d, not 7$"):
        RetentionPolicy.from_dict({"window": 7})
    with pytest.raises(ConfigError, match=r"^redundancy must be an int of at least 1, not '2'$"):
        RetentionPolicy.from_dict({"redundancy": "2"})


def test_duration_overflow_is_a_value_error_with_the_text() -> None:
    with pytest.raises(ValueError, match=r"^invalid duration '1" + "0" * 36 + r"\.\.\.': too long"):
        parse_duration("1" + "0" * 60 + "w")
