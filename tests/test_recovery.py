"""recovery_path / recovery_chain: the rules of DESIGN.md on hand-written catalogs,
malformed input, and the oracle of chain_model on random catalogs."""

from __future__ import annotations

from itertools import pairwise

import pytest
from chain_model import HOUR, OracleNoPath, Row, catalogs, oracle_recovery_path
from hypothesis import given
from hypothesis import strategies as st
from rustybackup import BackupType, CatalogError, NoRecoveryPath, SetStatus, _core


def row(sid: str, kind: str, parent: str | None, hour: int, status: str = "available") -> Row:
    return (sid, kind, parent, hour * HOUR, hour * HOUR + HOUR // 2, status)


WEEK = [
    row("f1", "full", None, 0),
    row("i1", "incremental", "f1", 1),
    row("d1", "differential", "f1", 2),
    row("i2", "incremental", "d1", 3),
    row("a1", "archive_log", None, 4),
    row("i3", "incremental", "i2", 5),
    row("a2", "archive_log", None, 6),
    row("a3", "archive_log", None, 7),
]


def with_status(rows: list[Row], sid: str, status: str) -> list[Row]:
    return [(r[0], r[1], r[2], r[3], r[4], status) if r[0] == sid else r for r in rows]


def test_latest_path_is_full_newest_differential_incrementals_then_later_logs() -> None:
    assert _core.recovery_path(WEEK) == ["f1", "d1", "i2", "i3", "a2", "a3"]


def test_until_takes_logs_up_to_the_first_finishing_at_or_after_it() -> None:
    assert _core.recovery_path(WEEK, 6 * HOUR + HOUR // 4) == ["f1", "d1", "i2", "i3", "a2"]
    assert _core.recovery_path(WEEK, until_us=6 * HOUR + HOUR // 2) == ["f1", "d1", "i2", "i3", "a2"]
    assert _core.recovery_path(WEEK, 3 * HOUR + HOUR // 2 + 1) == ["f1", "d1", "i2", "a1"]


def test_no_log_is_needed_when_the_target_finished_exactly_at_until() -> None:
    assert _core.recovery_path(WEEK, 3 * HOUR + HOUR // 2) == ["f1", "d1", "i2"]
    assert _core.recovery_path(with_status(WEEK, "a1", "corrupt"), 3 * HOUR + HOUR // 2) == ["f1", "d1", "i2"]


def test_until_exactly_at_a_finish_includes_that_set() -> None:
    assert _core.recovery_path(WEEK, HOUR // 2)[:1] == ["f1"]
    assert _core.recovery_path(WEEK, 2 * HOUR + HOUR // 2)[:2] == ["f1", "d1"]


def test_logs_written_during_the_target_backup_are_included() -> None:
    rows = [row("f1", "full", None, 0), ("a0", "archive_log", None, HOUR // 8, HOUR // 4, "available")]
    assert _core.recovery_path(rows) == ["f1", "a0"]


def test_a_corrupt_full_falls_back_to_the_older_chain() -> None:
    rows = [*WEEK, row("f2", "full", None, 8, "corrupt"), row("i4", "incremental", "f2", 9)]
    assert _core.recovery_path(rows) == ["f1", "d1", "i2", "i3", "a2", "a3"]


def test_an_expired_differential_falls_back_to_the_incrementals_on_the_full() -> None:
    assert _core.recovery_path(with_status(WEEK, "d1", "expired")) == ["f1", "i1", "a1", "a2", "a3"]


def test_a_missing_parent_cuts_the_chain() -> None:
    rows = [r for r in WEEK if r[0] != "i2"]
    assert _core.recovery_path(rows) == ["f1", "d1", "a1", "a2", "a3"]


def test_an_unusable_log_before_until_is_refused_with_its_name() -> None:
    rows = with_status(WEEK, "a2", "corrupt")
    with pytest.raises(NoRecoveryPath) as info:
        _core.recovery_path(rows, 8 * HOUR, database="orders")
    assert str(info.value) == (
        "cannot roll orders forward to 1970-01-01T08:00:00Z: ARCHIVE_LOG a2 (finished 1970-01-01T06:30:00Z) "
        "is CORRUPT; the latest reachable point from INCREMENTAL i3 is 1970-01-01T05:30:00Z"
    )
    assert _core.recovery_path(rows, 5 * HOUR + HOUR // 2) == ["f1", "d1", "i2", "i3"]


def test_an_unusable_log_written_during_the_target_backup_is_refused() -> None:
    rows = [row("f1", "full", None, 0), ("a0", "archive_log", None, HOUR // 8, HOUR // 4, "expired")]
    with pytest.raises(NoRecoveryPath) as info:
        _core.recovery_path(rows)
    assert str(info.value) == (
        "cannot make FULL f1 consistent: ARCHIVE_LOG a0 (finished 1970-01-01T00:15:00Z) is EXPIRED, "
        "and it holds changes made during that backup"
    )


def test_latest_stops_before_the_first_unusable_log() -> None:
    assert _core.recovery_path(with_status(WEEK, "a2", "expired")) == ["f1", "d1", "i2", "i3"]


def test_no_full_before_until_names_the_oldest_full() -> None:
    with pytest.raises(
        NoRecoveryPath,
        match=r"^no usable FULL backup of orders finished at or before "
        r"1970-01-01T00:15:00Z; the oldest FULL, f1, finished 1970-01-01T00:30:00Z$",
    ):
        _core.recovery_path(WEEK, HOUR // 4, database="orders")


def test_the_only_full_corrupt_says_so() -> None:
    with pytest.raises(NoRecoveryPath) as info:
        _core.recovery_path([row("f1", "full", None, 0, "corrupt")], database="orders")
    assert str(info.value) == "no usable FULL backup of orders: the newest FULL f1 is CORRUPT and no older FULL exists"


def test_every_full_unusable_counts_the_older_ones() -> None:
    rows = [row("f1", "full", None, 0, "expired"), row("f2", "full", None, 1, "corrupt")]
    with pytest.raises(
        NoRecoveryPath, match="the newest FULL f2 is CORRUPT and the 1 older FULL is CORRUPT or EXPIRED"
    ):
        _core.recovery_path(rows)


def test_an_empty_catalog_has_no_path() -> None:
    with pytest.raises(NoRecoveryPath, match="^no FULL backup exists, so there is nothing to restore from$"):
        _core.recovery_path([])


def test_no_recovery_path_is_a_catalog_error() -> None:
    with pytest.raises(CatalogError):
        _core.recovery_path([])


def test_enum_members_are_accepted_for_kind_and_status() -> None:
    rows = [("f1", BackupType.FULL, None, 0, 1, SetStatus.AVAILABLE)]
    assert _core.recovery_path(rows) == ["f1"]


def test_any_iterable_of_rows_is_accepted() -> None:
    assert _core.recovery_path(iter(WEEK)) == _core.recovery_path(tuple(WEEK)) == _core.recovery_path(WEEK)


def test_returned_ids_are_the_callers_objects() -> None:
    path = _core.recovery_path(WEEK)
    assert path[0] is WEEK[0][0]


def test_duplicate_ids_on_the_path_are_refused() -> None:
    rows = [*WEEK, row("i3", "incremental", "i2", 9)]
    with pytest.raises(CatalogError, match=r'^set id "i3" appears twice among the sets \(positions 5 and 8\)$'):
        _core.recovery_path(rows)


@pytest.mark.parametrize(
    ("rows", "error", "message"),
    [
        ([("f1", "full", None, 0, 1)], ValueError, r"^sets\[0\] has 5 items; expected 6: \(id, kind, parent_id, "),
        ([["f1", "full", None, 0, 1, "available"]], TypeError, r"^sets\[0\] must be a tuple \(id, .*\), not list$"),
        (
            [("f1", "fulll", None, 0, 1, "available")],
            ValueError,
            r'^sets\[0\]: kind "fulll" is not one of full, incremental, differential, archive_log$',
        ),
        (
            [("f1", "full", None, 0, 1, "ok")],
            ValueError,
            r'^sets\[0\]: status "ok" is not one of available, corrupt, expired$',
        ),
        (
            [row("f1", "full", None, 0), (7, "full", None, 0, 1, "available")],
            TypeError,
            r"^sets\[1\]: id must be a str, not int$",
        ),
        ([("f1", "incremental", 3, 0, 1, "available")], TypeError, r"^sets\[0\]: parent_id \(or None\) must be a str"),
        (
            [("f1", "full", None, "0", 1, "available")],
            TypeError,
            r"^sets\[0\]: started_us must be an int of µs since the epoch, not str$",
        ),
        ([("f1", "full", None, 0, 2**70, "available")], TypeError, r"^sets\[0\]: finished_us must be an int"),
    ],
)
def test_malformed_rows_name_position_and_field(rows: list[object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        _core.recovery_path(rows)  # type: ignore[arg-type]


def test_a_string_is_not_a_sequence_of_rows() -> None:
    with pytest.raises(TypeError, match=r"^sets must be a sequence of \(id, .*\) tuples, not str$"):
        _core.recovery_path("f1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^sets must be a sequence of .* tuples, not int$"):
        _core.recovery_path(5)  # type: ignore[arg-type]


def test_recovery_chain_lists_ancestors_base_first_whatever_their_status() -> None:
    assert _core.recovery_chain(with_status(WEEK, "d1", "corrupt"), "i3") == ["f1", "d1", "i2", "i3"]
    assert _core.recovery_chain(WEEK, "a2") == ["a2"]


def test_recovery_chain_errors_name_the_set() -> None:
    with pytest.raises(CatalogError, match=r'^unknown backup set "nope"$'):
        _core.recovery_chain(WEEK, "nope")
    rows = [r for r in WEEK if r[0] != "d1"]
    with pytest.raises(CatalogError, match=r'^the parent "d1" of backup set "i2" is not in the catalog$'):
        _core.recovery_chain(rows, "i3")
    loop = [row("x", "incremental", "y", 0), row("y", "incremental", "x", 1)]
    with pytest.raises(CatalogError, match=r'^the parent links of backup set "x" form a cycle$'):
        _core.recovery_chain(loop, "x")


def test_newest_first_input_gives_the_same_path() -> None:
    assert _core.recovery_path(list(reversed(WEEK))) == _core.recovery_path(WEEK)


@given(catalogs(), st.one_of(st.none(), st.integers(0, 2000).map(lambda h: h * HOUR // 2)), st.randoms())
def test_recovery_path_matches_the_oracle(rows: list[Row], until: int | None, rnd: object) -> None:
    import random

    assert isinstance(rnd, random.Random)
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    try:
        expected = oracle_recovery_path(rows, until)
    except OracleNoPath:
        with pytest.raises(NoRecoveryPath):
            _core.recovery_path(shuffled, until)
        return
    assert _core.recovery_path(rows, until) == expected
    assert _core.recovery_path(shuffled, until) == expected


@given(catalogs(), st.one_of(st.none(), st.integers(0, 2000).map(lambda h: h * HOUR // 2)))
def test_a_path_is_a_usable_linked_chain_then_logs(rows: list[Row], until: int | None) -> None:
    try:
        path = _core.recovery_path(rows, until)
    except NoRecoveryPath:
        return
    by_id = {r[0]: r for r in rows}
    data = [by_id[s] for s in path if by_id[s][1] != "archive_log"]
    logs = [by_id[s] for s in path if by_id[s][1] == "archive_log"]
    assert path == [r[0] for r in data + logs]
    assert data[0][1] == "full"
    assert all(r[5] == "available" for r in data + logs)
    assert all(child[2] == parent[0] for parent, child in pairwise(data))
    if until is not None:
        assert all(r[4] <= until for r in data)
        assert sum(1 for r in logs if r[4] >= until) <= 1
    assert _core.recovery_chain(rows, data[-1][0]) == [r[0] for r in data]
