"""The one hand-off of a database's sets from Python to Rust (`_core.ChainRows.from_columns`,
built by `BackupCatalog.chain_rows`) and the native `RetentionDecision`: the chain logic must
get exactly what the `sqlite3` rows give it (the row tuples are the oracle), and every
malformed value must be named by its row, id and column."""

from __future__ import annotations

import copy
import pickle
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from chain_model import Row, catalogs
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupCatalog, CatalogError, NoRecoveryPath, _core
from rustybackup import catalog as catalog_module
from rustybackup.retention import RetentionDecision, RetentionPolicy

KINDS = ("full", "incremental", "differential", "archive_log")
STATUSES = ("available", "corrupt", "expired")


def make_catalog(path: Path, rows: list[Row], database: str = "db", shuffle: int = 0) -> BackupCatalog:
    """A catalog file holding `rows` for `database` (inserted in a shuffled order, so
    the read's ORDER BY is what puts them in time order)."""
    cat = BackupCatalog(path)
    shuffled = list(rows)
    random.Random(shuffle).shuffle(shuffled)
    with cat.transaction() as c:
        c.execute(
            "INSERT OR IGNORE INTO databases (name, path, kind, archive_dir, block_size, algorithm, compression, "
            "registered_at) VALUES (?, '/src', 'files', NULL, 8192, 'blake3', NULL, 0)",
            (database,),
        )
        c.executemany(
            "INSERT INTO sets VALUES (?, ?, ?, ?, ?, ?, ?, 0, 8192, 'blake3', NULL, '[]', 0, 0, '', '', '')",
            [(sid, database, kind, parent, start, end, status) for sid, kind, parent, start, end, status in shuffled],
        )
    return cat


def columns(rows: list[Row]) -> list[Any]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 6


def path_or_reason(rows: _core.ChainRows | list[Row], until: int | None) -> list[str] | str:
    try:
        return _core.recovery_path(rows, until)
    except NoRecoveryPath as exc:
        return str(exc)


def chain_or_reason(rows: _core.ChainRows | list[Row], set_id: str) -> list[str] | str:
    try:
        return _core.recovery_chain(rows, set_id)
    except CatalogError as exc:
        return str(exc)


@settings(max_examples=60)
@given(catalogs(), st.integers(0, 2**32), st.integers(1, 300), st.integers(0, 3))
def test_the_hand_off_gives_the_chain_logic_what_the_sqlite3_rows_give(
    tmp_path_factory: pytest.TempPathFactory, rows: list[Row], seed: int, window_hours: int, copies: int
) -> None:
    cat = make_catalog(tmp_path_factory.mktemp("cat") / "catalog.db", rows, shuffle=seed)
    try:
        oracle = cat.retention_rows("db")
        handed = cat.chain_rows("db")
        assert isinstance(handed, _core.ChainRows)
        assert len(handed) == len(oracle) == len(rows)
        assert sorted(oracle) == sorted(rows)
        now = max((r[4] for r in rows), default=0) + 3_600_000_000
        policy = RetentionPolicy.recovery_window(timedelta(hours=window_hours))
        if copies:
            policy = RetentionPolicy.combine(policy, RetentionPolicy.redundancy(copies))
        args = {"window_us": policy.window_us, "redundancy": policy.full_copies}
        want = _core.retention_plan(oracle, now, **args)  # type: ignore[arg-type]
        assert _core.retention_plan(handed, now, **args) == want  # type: ignore[arg-type]
        for until in [None, *(r[4] for r in rows[::3])]:
            assert path_or_reason(handed, until) == path_or_reason(oracle, until)
        for row in oracle[-3:]:
            assert chain_or_reason(handed, row[0]) == chain_or_reason(oracle, row[0])
    finally:
        cat.close()


def test_rows_come_oldest_first_and_only_for_the_database(tmp_path: Path) -> None:
    rows: list[Row] = [
        ("f-é", "full", None, 10, 20, "available"),
        ("i-😀", "incremental", "f-é", 30, 40, "corrupt"),
        ("a", "archive_log", None, 30, 40, "expired"),  # same times as i-😀: the id decides
    ]
    cat = make_catalog(tmp_path / "catalog.db", rows)
    make_catalog(tmp_path / "catalog.db", [("other", "full", None, 0, 1, "available")], database="db2")
    plan = _core.retention_plan(cat.chain_rows("db"), 50, redundancy=1)
    assert [d.set_id for d in plan] == ["f-é", "a", "i-😀"]
    assert len(cat.chain_rows("db2")) == 1
    assert len(cat.chain_rows("nothing")) == 0
    assert repr(cat.chain_rows("db")) == "<ChainRows: 3 sets>"
    assert _core.retention_plan(cat.chain_rows("nothing"), 50, redundancy=1) == []


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("status", "bogus", r'status "bogus" is not one of available, corrupt, expired'),
        ("backup_type", "weekly", r'backup_type "weekly" is not one of full, incremental'),
        ("started_at", "noon", r"started_us must be an int of µs since the epoch, not str"),
        ("finished_at", 1.5, r"finished_us must be an int of µs since the epoch, not float"),
        ("parent_id", b"\xff", r"parent_id must be a str or None, not bytes"),
        ("status", b"available", r"status must be a str, not bytes"),  # a BLOB: TEXT affinity keeps it
    ],
)
def test_a_malformed_row_is_named(tmp_path: Path, column: str, value: object, message: str) -> None:
    rows: list[Row] = [("f1", "full", None, 0, 1, "available"), ("i1", "incremental", "f1", 2, 3, "available")]
    cat = make_catalog(tmp_path / "catalog.db", rows)
    with cat.transaction() as c:
        c.execute(f"UPDATE sets SET {column} = ? WHERE id = 'i1'", (value,))
    with pytest.raises(CatalogError, match=rf"catalog\.db: sets of database 'db': row 1 \(id \"i1\"\): {message}"):
        cat.chain_rows("db")
    with pytest.raises(CatalogError, match=r"row 1 \(id \"i1\"\)"):
        cat.retention_plan("db", RetentionPolicy.redundancy(1), catalog_module.from_us(10))


def test_an_id_that_is_not_text_is_named(tmp_path: Path) -> None:
    cat = make_catalog(tmp_path / "catalog.db", [("f1", "full", None, 0, 1, "available")])
    with cat.transaction() as c:
        c.execute("UPDATE sets SET id = CAST(x'66ff' AS TEXT)")
    with pytest.raises(
        CatalogError, match=r"cannot read the sets of database 'db': Could not decode to UTF-8 column 'id'"
    ):
        cat.chain_rows("db")
    with cat.transaction() as c:
        c.execute("UPDATE sets SET id = CAST('f1' AS BLOB)")
    with pytest.raises(CatalogError, match=r"row 0: id must be a str, not bytes$"):
        cat.chain_rows("db")


def test_inside_a_transaction_the_plan_sees_uncommitted_sets(tmp_path: Path) -> None:
    cat = make_catalog(tmp_path / "catalog.db", [("f1", "full", None, 0, 1, "available")])
    policy = RetentionPolicy.redundancy(1)
    with cat.transaction() as c:
        c.execute(
            "INSERT INTO sets VALUES ('f2', 'db', 'full', NULL, 2, 3, 'available', 0, 8192, 'blake3', NULL, '[]', "
            "0, 0, '', '', '')"
        )
        inside = cat.retention_plan("db", policy, catalog_module.from_us(10))
    assert [(d.set_id, d.keep) for d in inside] == [("f1", False), ("f2", True)]


def test_an_in_memory_catalog_plans_too() -> None:
    cat = make_catalog(Path(":memory:"), [("f1", "full", None, 0, 1, "available")])
    assert len(cat.chain_rows("db")) == 1
    plan = cat.retention_plan("db", RetentionPolicy.redundancy(1), catalog_module.from_us(10))
    assert [(d.set_id, d.keep) for d in plan] == [("f1", True)]


SET_ROW = "INSERT INTO sets VALUES (?, 'db', 'full', NULL, ?, ?, 'available', 0, 8192, 'blake3', NULL, '[]', 0, 0, '', '', '')"


def test_the_rows_are_read_again_exactly_when_the_catalog_changed(tmp_path: Path) -> None:
    cat = make_catalog(tmp_path / "catalog.db", [("f1", "full", None, 0, 1, "available")])
    first = cat.chain_rows("db")
    assert cat.chain_rows("db") is first  # nothing changed: the same rows, not re-read
    # another connection commits: SQLite's data_version moves
    other = BackupCatalog(tmp_path / "catalog.db")
    with other.transaction() as c:
        c.execute(SET_ROW, ("f2", 2, 3))
    second = cat.chain_rows("db")
    assert second is not first and len(second) == 2
    assert cat.chain_rows("db") is second
    # this connection writes: its total_changes moves
    with cat.transaction() as c:
        c.execute(SET_ROW, ("f3", 4, 5))
    assert len(cat.chain_rows("db")) == 3
    assert _core.recovery_path(cat.chain_rows("db")) == ["f3"]
    # a status change elsewhere is seen too: the newest FULL turns CORRUPT
    with other.transaction() as c:
        c.execute("UPDATE sets SET status = 'corrupt' WHERE id = 'f3'")
    assert _core.recovery_path(cat.chain_rows("db")) == ["f2"]
    other.close()


def test_rows_seen_inside_a_rolled_back_transaction_are_not_kept(tmp_path: Path) -> None:
    cat = make_catalog(tmp_path / "catalog.db", [("f1", "full", None, 0, 1, "available")])
    assert len(cat.chain_rows("db")) == 1

    class Undo(Exception):
        pass

    with pytest.raises(Undo), cat.transaction() as c:
        c.execute(SET_ROW, ("f2", 2, 3))
        assert len(cat.chain_rows("db")) == 2  # its own uncommitted row
        raise Undo
    assert len(cat.chain_rows("db")) == 1


# --- from_columns itself ----------------------------------------------------------------


def test_any_iterables_are_columns() -> None:
    rows: list[Row] = [("f1", "full", None, 0, 1, "available"), ("i1", "incremental", "f1", 2, 3, "corrupt")]
    ids, kinds, parents, _, _, statuses = columns(rows)
    built = _core.ChainRows.from_columns(
        iter(ids), tuple(kinds), (p for p in parents), range(0, 3, 2), [1, 3], dict.fromkeys(statuses)
    )
    assert _core.recovery_chain(built, "i1") == _core.recovery_chain(rows, "i1") == ["f1", "i1"]
    empty = _core.ChainRows.from_columns([], [], [], [], [], [])
    assert len(empty) == 0 and _core.retention_plan(empty, 0, redundancy=1) == []


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({1: ["f1"]}, ValueError, r"^backup_types has 1 values, ids has 2: the columns must be the same length$"),
        ({5: ["available"] * 3}, ValueError, r"^statuses has 3 values, ids has 2"),
        ({0: "f1"}, TypeError, r"^ids must be a sequence of values, one per set, not str$"),
        ({3: b"\x00\x01"}, TypeError, r"^started_us must be a sequence of values, one per set, not bytes$"),
        ({2: 7}, TypeError, r"^parent_ids must be a sequence of values, one per set, not int$"),
        ({0: ["f1", 3]}, TypeError, r"^row 1: id must be a str, not int$"),
        ({0: ["f1", "x\ud800"]}, ValueError, r"^row 1: id is not valid text \(it holds lone surrogates\)$"),
        ({3: [0, True]}, TypeError, r'^row 1 \(id "i1"\): started_us must be an int of µs since the epoch, not bool$'),
        ({4: [1, 2**63]}, ValueError, r'^row 1 \(id "i1"\): finished_us 9223372036854775808 is out of range'),
        ({4: [1, -(2**63) - 1]}, ValueError, r"finished_us -9223372036854775809 is out of range"),
        ({2: [None, 5]}, TypeError, r'^row 1 \(id "i1"\): parent_id must be a str or None, not int$'),
        ({1: ["full", "FULL"]}, ValueError, r'^row 1 \(id "i1"\): backup_type "FULL" is not one of full, incr'),
        ({5: ["available", "gone"]}, ValueError, r'^row 1 \(id "i1"\): status "gone" is not one of available'),
    ],
)
def test_a_bad_column_or_value_is_named(change: dict[int, Any], error: type[Exception], message: str) -> None:
    cols = columns([("f1", "full", None, 0, 1, "available"), ("i1", "incremental", "f1", 2, 3, "available")])
    for k, v in change.items():
        cols[k] = v
    with pytest.raises(error, match=message):
        _core.ChainRows.from_columns(*cols)


VALUES = st.one_of(
    st.sampled_from([*KINDS, *STATUSES, "x", "", "FULL"]),
    st.none(),
    st.integers(-(2**64), 2**64),
    st.booleans(),
    st.floats(allow_nan=False),
    st.binary(max_size=3),
)


def valid(column: int, value: object) -> bool:
    """The plain-Python statement of what each column accepts."""
    if column == 0:
        return isinstance(value, str)
    if column == 1:
        return value in KINDS
    if column == 2:
        return value is None or isinstance(value, str)
    if column in (3, 4):
        return type(value) is int and -(2**63) <= value < 2**63
    return value in STATUSES


@settings(max_examples=300)
@given(st.lists(st.tuples(VALUES, VALUES, VALUES, VALUES, VALUES, VALUES), max_size=6))
def test_from_columns_accepts_exactly_the_valid_rows(rows: list[tuple[object, ...]]) -> None:
    bad = [(i, k) for i, row in enumerate(rows) for k, v in enumerate(row) if not valid(k, v)]
    cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[]] * 6
    if not bad:
        built = _core.ChainRows.from_columns(*cols)
        assert len(built) == len(rows)
        return
    with pytest.raises((TypeError, ValueError)) as caught:
        _core.ChainRows.from_columns(*cols)
    names = ("id", "backup_type", "parent_id", "started_us", "finished_us", "status")
    first_row = bad[0][0]
    # the first bad row is named, and one of its bad columns (checked in column order)
    assert str(caught.value).startswith(f"row {first_row}")
    row_bad = [k for i, k in bad if i == first_row]
    assert f": {names[row_bad[0]]} " in str(caught.value)


def test_retention_decision_is_a_value() -> None:
    a = RetentionDecision("s1", True, "3rd newest FULL")
    b = RetentionDecision("s1", True, "3rd newest FULL")
    assert a == b and hash(a) == hash(b) and a != RetentionDecision("s1", False, "3rd newest FULL")
    assert a != ("s1", True, "3rd newest FULL")
    assert repr(a) == "RetentionDecision(set_id='s1', keep=True, reason='3rd newest FULL')"
    assert pickle.loads(pickle.dumps(a)) == a and copy.copy(a) == a and copy.deepcopy(a) == a
    match a:
        case RetentionDecision(set_id, keep, reason):
            assert (set_id, keep, reason) == ("s1", True, "3rd newest FULL")
    with pytest.raises(AttributeError):
        a.keep = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetentionDecision(1, True, "x")  # type: ignore[arg-type]
