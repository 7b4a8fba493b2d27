"""Retention: hand-written catalogs for each rule and reason, and every bad argument."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from chain_model import HOUR, Row
from rustybackup import CatalogError, _core
from rustybackup.retention import RetentionDecision, RetentionPolicy, parse_duration, plan_retention, to_us

DAY = 24 * HOUR
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def daily(days: range, full_every: int = 7, logs: bool = True) -> list[Row]:
    """One backup a day at 01:00 UTC (a FULL every `full_every` days, else an INCREMENTAL on
    the previous day's set), each followed by an ARCHIVE_LOG set at 03:00."""
    rows: list[Row] = []
    last: str | None = None
    for d in days:
        if last is None or d % full_every == 0:
            rows.append((f"f{d}", "full", None, d * DAY + HOUR, d * DAY + 2 * HOUR, "available"))
            last = f"f{d}"
        else:
            rows.append((f"i{d}", "incremental", last, d * DAY + HOUR, d * DAY + 2 * HOUR, "available"))
            last = f"i{d}"
        if logs:
            rows.append((f"a{d}", "archive_log", None, d * DAY + 3 * HOUR, d * DAY + 4 * HOUR, "available"))
    return rows


def plan(rows: list[Row], policy: RetentionPolicy, now_us: int, **kw: object) -> dict[str, RetentionDecision]:
    return {d.set_id: d for d in plan_retention(rows, policy, at(now_us), **kw)}  # type: ignore[arg-type]


def kept(decisions: dict[str, RetentionDecision]) -> list[str]:
    return [sid for sid, d in decisions.items() if d.keep]


def test_redundancy_keeps_the_n_newest_full_chains_and_their_logs() -> None:
    result = plan(daily(range(21)), RetentionPolicy.redundancy(2), 21 * DAY)
    assert kept(result)[0] == "f7"
    assert result["f14"].reason == "1st newest FULL"
    assert result["f7"].reason == "2nd newest FULL"
    assert result["i8"].reason == "in the chain of the 2nd newest FULL f7"
    assert result["a7"].reason == "needed to roll forward from the 2nd newest FULL f7"
    assert result["i6"].reason == "obsolete: older than the 2nd newest FULL f7"
    assert not result["f0"].keep


def test_a_recovery_window_keeps_the_full_before_it_however_old() -> None:
    # A FULL 30 days ago, incrementals since: a 7-day window must keep all of it.
    rows = daily(range(31), full_every=1000)
    result = plan(rows, RetentionPolicy.recovery_window(timedelta(days=7)), 31 * DAY)
    assert all(d.keep for d in result.values())
    assert result["f0"].reason == ("newest FULL at or before the start of the 7-day window (point of recoverability)")
    assert result["i3"].reason == "needed to recover to 1970-01-25T00:00:00Z (start of the 7-day window)"
    assert result["i30"].reason == "inside the 7-day window"


def test_a_recovery_window_drops_what_precedes_its_point_of_recoverability() -> None:
    result = plan(daily(range(21)), RetentionPolicy.recovery_window(timedelta(days=3)), 21 * DAY)
    assert kept(result)[0] == "f14"
    assert result["i13"].reason == "obsolete: older than FULL f14, the point of recoverability of the 3-day window"


def test_a_corrupt_full_is_skipped_as_point_of_recoverability() -> None:
    rows = [r if r[0] != "f14" else (*r[:5], "corrupt") for r in daily(range(21))]
    result = plan(rows, RetentionPolicy.recovery_window(timedelta(days=3)), 21 * DAY)
    assert result["f7"].reason.startswith("newest FULL at or before the start")
    assert result["f14"].keep


def test_keep_counts_periods_that_have_a_backup() -> None:
    # Days 0-4, then the machine was off for a month, then days 35 and 36.
    rows = daily(range(5)) + daily(range(35, 37))
    result = plan(rows, RetentionPolicy.keep(daily=7), 40 * DAY)
    assert kept(result) == ["f0", "i1", "i2", "i3", "i4", "f35", "i36"]
    assert result["i36"].reason == "daily #1 (1970-02-06)"
    assert result["f0"].reason == "daily #7 (1970-01-01)"
    assert result["a4"].reason == "obsolete: not selected by keep(daily=7)"


def test_keep_uses_the_databases_zone_for_days() -> None:
    # 00:30 and 02:00 UTC are still Dec 31 in New York (UTC-5): they share one local day.
    rows: list[Row] = [
        ("f0", "full", None, 0, HOUR // 2, "available"),
        ("f1", "full", None, 2 * HOUR, 2 * HOUR + 1, "available"),
        ("f2", "full", None, 6 * HOUR, 6 * HOUR + 1, "available"),
    ]
    utc = plan(rows, RetentionPolicy.keep(daily=5), DAY)
    new_york = plan(rows, RetentionPolicy.keep(daily=5), DAY, tz="America/New_York")
    assert kept(utc) == ["f2"]
    assert kept(new_york) == ["f1", "f2"]
    assert new_york["f1"].reason == "daily #2 (1969-12-31)"


def test_a_kept_incremental_keeps_its_whole_chain() -> None:
    result = plan(daily(range(14)), RetentionPolicy.keep(last=1), 14 * DAY)
    assert kept(result) == ["f7", "i8", "i9", "i10", "i11", "i12", "i13"]
    assert result["i13"].reason == "last #1"
    assert result["i12"].reason == "needed by INCREMENTAL i13"
    assert result["f7"].reason == "needed by INCREMENTAL i8"


def test_logs_written_during_a_kept_backup_stay() -> None:
    rows = [*daily(range(3), logs=False), ("a", "archive_log", None, 2 * DAY + HOUR, 2 * DAY + HOUR + 5, "available")]
    result = plan(rows, RetentionPolicy.keep(last=1), 3 * DAY)
    assert result["a"].reason == "needed to make INCREMENTAL i2 consistent"


def test_policies_combine_by_union() -> None:
    rows = daily(range(30))
    a = RetentionPolicy.redundancy(1)
    b = RetentionPolicy.keep(weekly=3)
    both = plan(rows, a | b, 30 * DAY)
    assert set(kept(both)) == set(kept(plan(rows, a, 30 * DAY))) | set(kept(plan(rows, b, 30 * DAY)))
    assert both["f28"].reason == "1st newest FULL"
    assert both["i29"].reason == "in the chain of the 1st newest FULL f28; weekly #1 (1970-W05)"


def test_protected_sets_and_their_chains_stay() -> None:
    result = plan(daily(range(14)), RetentionPolicy.redundancy(1), 14 * DAY, protected={"i3"})
    assert result["i3"].reason == "protected: being read by a restore or verification"
    assert result["i2"].reason == "needed by INCREMENTAL i3"
    assert result["f0"].keep and not result["i4"].keep


def test_the_last_full_is_never_deleted_without_force() -> None:
    rows: list[Row] = [("f0", "full", None, 0, 1, "corrupt"), ("i1", "incremental", "f0", 2, 3, "available")]
    safe = plan(rows, RetentionPolicy.redundancy(1), DAY)
    assert safe["f0"].keep and safe["f0"].reason == "the last usable FULL left: deleting it needs force=True"
    forced = plan(rows, RetentionPolicy.redundancy(1), DAY, force=True)
    assert not any(d.keep for d in forced.values())
    assert forced["f0"].reason == "obsolete: redundancy 1: no usable FULL to keep"


def test_a_corrupt_oldest_survivor_keeps_an_older_usable_full() -> None:
    rows = daily(range(21))
    rows = [r if r[0] != "f7" else (*r[:5], "corrupt") for r in rows]
    result = plan(rows, RetentionPolicy.redundancy(1), 21 * DAY, protected={"f7"})
    assert result["f0"].reason == "oldest survivor would be CORRUPT (f7)"
    assert not result["i1"].keep


def test_duplicate_ids_are_refused_before_anything_is_planned() -> None:
    rows = [*daily(range(3)), ("i1", "incremental", "f0", 5 * DAY, 5 * DAY + 1, "available")]
    with pytest.raises(CatalogError, match=r'^set id "i1" appears twice among the sets \(positions 2 and 6\)$'):
        plan(rows, RetentionPolicy.redundancy(1), 6 * DAY)


def test_backupset_like_records_are_accepted() -> None:
    class Record:
        def __init__(self, sid: str, kind: str, parent: str | None, hour: int) -> None:
            self.id, self.backup_type, self.parent_id, self.status = sid, kind, parent, "available"
            self.started_at = at(hour * HOUR)
            self.finished_at = at(hour * HOUR + 1)

    records = [Record("f", "full", None, 0), Record("i", "incremental", "f", 1)]
    decisions = plan_retention(records, RetentionPolicy.keep(last=1), at(2 * HOUR))
    assert [(d.set_id, d.keep) for d in decisions] == [("f", True), ("i", True)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, r"^the retention policy keeps nothing: give redundancy, window_us or a positive keep_\* count$"),
        ({"redundancy": 0}, r"^redundancy must be between 1 and 4294967295, not 0$"),
        ({"window_us": 0}, r"^window_us must be positive, not 0$"),
        ({"keep_daily": -1}, r"^keep_daily must be between 0 and 4294967295, not -1$"),
        ({"keep_last": 1, "tz": "Mars/Base"}, r'^unknown time zone "Mars/Base"$'),
    ],
)
def test_core_retention_arguments_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _core.retention_plan([], 0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RetentionPolicy(), r"^the retention policy keeps nothing"),
        (lambda: RetentionPolicy.redundancy(0), r"^redundancy must be an int of at least 1, not 0$"),
        (lambda: RetentionPolicy.redundancy(True), r"^redundancy must be an int of at least 1, not True$"),
        (lambda: RetentionPolicy.recovery_window(timedelta(0)), r"^recovery window must be a positive timedelta"),
        (lambda: RetentionPolicy.keep(daily=-2), r"^keep daily= must be an int of at least 0, not -2$"),
        (lambda: RetentionPolicy.keep(), r"^the retention policy keeps nothing"),
        (lambda: RetentionPolicy.combine(), r"^combine\(\) needs at least one policy$"),
    ],
)
def test_invalid_policies_are_refused_with_the_field(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="has no time zone; pass an aware datetime$"):
        plan_retention([], RetentionPolicy.redundancy(1), datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(hours=36)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7 days", "-7d", "7d!", "1.5h"])
def test_bad_durations_are_refused_quoting_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^invalid duration {text!r}: use a number and a unit"):
        parse_duration(text)


def test_a_zero_duration_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^invalid duration '0d': it must be longer than zero$"):
        parse_duration("0d")


def test_policy_specs_round_trip() -> None:
    policy = RetentionPolicy.parse("redundancy=2, window=7d, daily=7, keep_weekly=4")
    assert policy == RetentionPolicy.redundancy(2) | RetentionPolicy.recovery_window(timedelta(days=7)) | (
        RetentionPolicy.keep(daily=7, weekly=4)
    )
    assert RetentionPolicy.from_dict(policy.to_dict()) == policy
    assert policy.describe() == "redundancy 2, 7-day recovery window, keep daily=7 weekly=4"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("daily", r"^invalid retention setting 'daily' in 'daily': use name=value$"),
        ("daily=x", r"^invalid retention setting 'daily=x' in 'daily=x': daily needs a whole number$"),
        ("fortnightly=2", r"^unknown retention setting\(s\) fortnightly; known: redundancy, window, last,"),
        ("window=soon", r"^invalid duration 'soon'"),
    ],
)
def test_bad_policy_specs_name_the_setting(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetentionPolicy.parse(spec)


def test_union_keeps_the_larger_of_each_rule() -> None:
    a = RetentionPolicy(full_copies=2, keep_daily=7)
    b = RetentionPolicy(full_copies=3, window=timedelta(days=1), keep_daily=3, keep_weekly=2)
    assert a | b == RetentionPolicy(full_copies=3, window=timedelta(days=1), keep_daily=7, keep_weekly=2)


def test_to_us_is_exact() -> None:
    assert to_us(datetime(2026, 11, 29, 8, 0, 0, 123456, tzinfo=UTC)) == 1_795_939_200_123_456


def test_protected_must_be_ids() -> None:
    with pytest.raises(TypeError, match="^protected must be an iterable of set ids, not a single str$"):
        _core.retention_plan([], 0, keep_last=1, protected="f1")
    with pytest.raises(TypeError, match=r"^protected must be an iterable of set ids \(str\)$"):
        _core.retention_plan([], 0, keep_last=1, protected=[1])  # type: ignore[list-item]
    rows: list[Row] = [("f1", "full", None, 0, 1, "available"), ("f2", "full", None, 2, 3, "available")]
    assert _core.retention_plan(rows, 4, redundancy=1, protected={"f1"})[0] == RetentionDecision(
        "f1", True, "protected: being read by a restore or verification"
    )
