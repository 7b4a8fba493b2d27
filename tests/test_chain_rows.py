"""Reading the catalog's sets in Rust (`_core.read_chain_rows`) and the native
`RetentionDecision`: the Rust read must give the chain logic exactly what the `sqlite3`
path gives it (the oracle here), name every malformed row, and step aside when it cannot
reach Python's SQLite or when the catalog is inside a transaction."""

from __future__ import annotations

import copy
import pickle
import random
from datetime import timedelta
from pathlib import Path

import pytest
from chain_model import Row, catalogs
from hypothesis import given, settings
from hypothesis import strategies as st

from rustybackup import BackupCatalog, CatalogError, NoRecoveryPath, _core
from rustybackup import catalog as catalog_module
from rustybackup.retention import RetentionDecision, RetentionPolicy

SQLITE_MODULE = catalog_module._SQLITE_MODULE
needs_direct = pytest.mark.skipif(SQLITE_MODULE is None, reason="_sqlite3 has no file to reach SQLite through")


def make_catalog(path: Path, rows: list[Row], database: str = "db", shuffle: int = 0) -> BackupCatalog:
    """A catalog file holding `rows` for `database` (inserted in a shuffled order, so
    the read's ORDER BY is what puts them in time order)."""
    cat = BackupCatalog(path)
    shuffled = list(rows)
    random.Random(shuffle).shuffle(shuffled)
    with cat.transaction() as c:
        c.execute(
            "INSERT OR IGNORE INTO databases VALUES (?, '/src', 'files', NULL, 8192, 'blake3', NULL, 0)", (database,)
        )
        c.executemany(
            "INSERT INTO sets VALUES (?, ?, ?, ?, ?, ?, ?, 0, 8192, 'blake3', NULL, '[]', 0, 0, '', '', '')",
            [(sid, database, kind, parent, start, end, status) for sid, kind, parent, start, end, status in shuffled],
        )
    return cat


def direct(cat: BackupCatalog, database: str = "db") -> _core.ChainRows:
    assert SQLITE_MODULE is not None
    rows = _core.read_chain_rows(SQLITE_MODULE, cat.path, database)
    assert rows is not None
    return rows


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


@needs_direct
@settings(max_examples=60)
@given(catalogs(), st.integers(0, 2**32), st.integers(1, 300), st.integers(0, 3))
def test_rust_read_gives_the_chain_logic_what_sqlite3_gives(
    tmp_path_factory: pytest.TempPathFactory, rows: list[Row], seed: int, window_hours: int, copies: int
) -> None:
    cat = make_catalog(tmp_path_factory.mktemp("cat") / "catalog.db", rows, shuffle=seed)
    try:
        oracle = cat.retention_rows("db")
        fast = direct(cat)
        assert len(fast) == len(oracle) == len(rows)
        now = max((r[4] for r in rows), default=0) + 3_600_000_000
        policy = RetentionPolicy.recovery_window(timedelta(hours=window_hours))
        if copies:
            policy = RetentionPolicy.combine(policy, RetentionPolicy.redundancy(copies))
        args = dict(window_us=policy.window_us, redundancy=policy.full_copies)
        assert _core.retention_plan(fast, now, **args) == _core.retention_plan(oracle, now, **args)  # type: ignore[arg-type]
        for until in [None, *(r[4] for r in rows[::3])]:
            assert path_or_reason(fast, until) == path_or_reason(oracle, until)
        for row in oracle[-3:]:
            assert chain_or_reason(fast, row[0]) == chain_or_reason(oracle, row[0])
    finally:
        cat.close()


@needs_direct
def test_rows_come_oldest_first_and_only_for_the_database(tmp_path: Path) -> None:
    rows: list[Row] = [
        ("f-é", "full", None, 10, 20, "available"),
        ("i-😀", "incremental", "f-é", 30, 40, "corrupt"),
        ("a", "archive_log", None, 30, 40, "expired"),  # same times as i-😀: the id decides
    ]
    cat = make_catalog(tmp_path / "catalog.db", rows)
    make_catalog(tmp_path / "catalog.db", [("other", "full", None, 0, 1, "available")], database="db2")
    plan = _core.retention_plan(direct(cat), 50, redundancy=1)
    assert [d.set_id for d in plan] == ["f-é", "a", "i-😀"]
    assert len(direct(cat, "db2")) == 1
    assert len(direct(cat, "nothing")) == 0
    assert repr(direct(cat)) == "<ChainRows: 3 sets>"
    assert _core.retention_plan(direct(cat, "nothing"), 50, redundancy=1) == []


@needs_direct
@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("status", "bogus", r'status "bogus" is not one of available, corrupt, expired'),
        ("backup_type", "weekly", r'backup_type "weekly" is not one of full, incremental'),
        ("started_at", "noon", r"started_at is not an integer"),
        ("finished_at", 1.5, r"finished_at is not an integer"),
        ("parent_id", b"\xff", r"parent_id is not text or NULL"),
    ],
)
def test_a_malformed_row_is_named(tmp_path: Path, column: str, value: object, message: str) -> None:
    rows: list[Row] = [("f1", "full", None, 0, 1, "available"), ("i1", "incremental", "f1", 2, 3, "available")]
    cat = make_catalog(tmp_path / "catalog.db", rows)
    with cat.transaction() as c:
        c.execute(f"UPDATE sets SET {column} = ? WHERE id = 'i1'", (value,))
    with pytest.raises(CatalogError, match=rf'catalog\.db: sets row 1 of database "db" \(id "i1"\): {message}'):
        _core.read_chain_rows(SQLITE_MODULE, cat.path, "db")  # type: ignore[arg-type]


@needs_direct
def test_a_missing_catalog_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "catalog.db"
    with pytest.raises(CatalogError, match=rf"cannot read catalog {missing}: unable to open"):
        _core.read_chain_rows(SQLITE_MODULE, missing, "db")  # type: ignore[arg-type]


def test_an_unreachable_sqlite_means_none(tmp_path: Path) -> None:
    cat = make_catalog(tmp_path / "catalog.db", [("f1", "full", None, 0, 1, "available")])
    assert _core.read_chain_rows(tmp_path / "not-loaded.so", cat.path, "db") is None
    assert _core.read_chain_rows("/dev/null", cat.path, "db") is None


def test_the_catalog_falls_back_to_sqlite3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows: list[Row] = [("f1", "full", None, 0, 1, "available"), ("f2", "full", None, 2, 3, "available")]
    cat = make_catalog(tmp_path / "catalog.db", rows)
    if SQLITE_MODULE is not None:
        assert isinstance(cat.chain_rows("db"), _core.ChainRows)
    monkeypatch.setattr(catalog_module, "_SQLITE_MODULE", None)
    assert cat.chain_rows("db") == rows
    plan = cat.retention_plan("db", RetentionPolicy.redundancy(1), catalog_module.from_us(10))
    assert [(d.set_id, d.keep) for d in plan] == [("f1", False), ("f2", True)]


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


@needs_direct
def test_an_id_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    cat = make_catalog(tmp_path / "catalog.db", [("f1", "full", None, 0, 1, "available")])
    with cat.transaction() as c:
        c.execute("UPDATE sets SET id = CAST(x'66ff' AS TEXT)")
    with pytest.raises(CatalogError, match=r'sets row 0 of database "db" \(id "\?"\): id is not UTF-8 text$'):
        _core.read_chain_rows(SQLITE_MODULE, cat.path, "db")  # type: ignore[arg-type]


@needs_direct
def test_the_rust_read_opens_the_file_python_has_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative catalog path, then a chdir into a directory holding another catalog of
    the same name: the plan must come from the catalog this object opened."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    ours = make_catalog(Path("catalog.db"), [("f1", "full", None, 0, 1, "available")])
    monkeypatch.chdir(tmp_path / "b")
    make_catalog(Path("catalog.db"), [("x1", "full", None, 0, 1, "available"), ("x2", "full", None, 2, 3, "available")])
    rows = ours.chain_rows("db")
    assert isinstance(rows, _core.ChainRows) and len(rows) == 1
    plan = ours.retention_plan("db", RetentionPolicy.redundancy(1), catalog_module.from_us(10))
    assert [d.set_id for d in plan] == ["f1"]


def test_an_in_memory_catalog_plans_through_sqlite3() -> None:
    cat = make_catalog(Path(":memory:"), [("f1", "full", None, 0, 1, "available")])
    assert cat.chain_rows("db") == [("f1", "full", None, 0, 1, "available")]
    plan = cat.retention_plan("db", RetentionPolicy.redundancy(1), catalog_module.from_us(10))
    assert [(d.set_id, d.keep) for d in plan] == [("f1", True)]


@needs_direct
def test_values_of_the_wrong_type_are_refused_as_sqlite3_rows_would_be(tmp_path: Path) -> None:
    """SQLite would convert a BLOB id to text; the sqlite3 path hands it over as bytes,
    which the chain logic refuses, so the Rust read refuses it too."""
    cat = make_catalog(tmp_path / "catalog.db", [("f1", "full", None, 0, 1, "available")])
    with cat.transaction() as c:
        c.execute("UPDATE sets SET id = CAST('f1' AS BLOB)")
    with pytest.raises(CatalogError, match=r"id is not UTF-8 text$"):
        _core.read_chain_rows(SQLITE_MODULE, cat.path, "db")  # type: ignore[arg-type]
    with cat.transaction() as c:
        c.execute("UPDATE sets SET id = 'f1', status = CAST('available' AS BLOB)")
    with pytest.raises(CatalogError, match=r'status "available" is not one of'):
        _core.read_chain_rows(SQLITE_MODULE, cat.path, "db")  # type: ignore[arg-type]
