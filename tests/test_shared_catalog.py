"""The catalog's key behaviours on both backends: SQLite (``REPO/catalog.db``) and a
shared PostgreSQL catalog (a real server started by the suite). Same API, same answers:
sets and pieces, chains, recovery paths with fallback, retention, verification records,
the report; then what only the shared catalog does (many repositories in one catalog,
export/import between the two)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import shared_catalog_support
from engine_support import SimClock, sim_clock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, BackupType, CatalogError, NoRecoveryPath, SetStatus, VerificationType
from rustybackup.catalog_db import translate
from rustybackup.catalog_pg import table_shape
from rustybackup.retention import RetentionPolicy
from shared_catalog_support import CatalogServer

# The session's PostgreSQL server, and a fresh database on it per test.
catalog_server = shared_catalog_support.catalog_server
catalog_url = shared_catalog_support.catalog_url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    server: CatalogServer = request.getfixturevalue("catalog_server")
    return server.fresh()


clock = pytest.fixture(sim_clock)


@pytest.fixture
def manager(tmp_path: Path, clock: SimClock, backend: str | None) -> Iterator[BackupManager]:
    m = BackupManager(tmp_path / "repo", clock=clock, catalog=backend)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"0" * 10000)
    m.register_database("db", src)
    yield m
    m.catalog.close()


def _backup(m: BackupManager, clock: SimClock, tmp_path: Path, kind: str, content: bytes) -> str:
    clock.advance(hours=1)
    (tmp_path / "src" / "f").write_bytes(content)
    return m.backup("db", kind).id


def test_sets_pieces_and_chains(manager: BackupManager, clock: SimClock, tmp_path: Path) -> None:
    full = _backup(manager, clock, tmp_path, "full", b"a" * 5000)
    i1 = _backup(manager, clock, tmp_path, "incremental", b"b" * 5000)
    i2 = _backup(manager, clock, tmp_path, "incremental", b"c" * 5000)
    cat = manager.catalog
    assert [s.id for s in cat.list_sets()] == [full, i1, i2]
    assert [s.id for s in cat.list_sets("db", BackupType.INCREMENTAL)] == [i1, i2]
    assert [s.id for s in cat.list_sets(since=cat.get_set(i1).started_at)] == [i1, i2]
    assert [s.id for s in cat.iter_sets(limit=2)] == [i1, i2]
    assert cat.list_sets("other") == []
    assert [s.id for s in cat.chain(i2)] == [full, i1, i2]
    assert cat.children(full) == [i1]
    got = cat.get_set(full)
    assert got.pieces and all(p.set_id == full for p in got.pieces)
    assert cat.newest_set("db", "full") == got
    assert cat.sets_of("db", [full, "x"]) == {full}
    assert cat.database_names() == {"db"}
    with pytest.raises(CatalogError, match="unknown backup set '20000101T000000000000Z-00000000'"):
        cat.get_set("20000101T000000000000Z-00000000")
    with pytest.raises(CatalogError, match="unknown database 'nope'"):
        cat.get_database("nope")


def test_recovery_path_falls_back_and_restores(manager: BackupManager, clock: SimClock, tmp_path: Path) -> None:
    full = _backup(manager, clock, tmp_path, "full", b"a")
    i1 = _backup(manager, clock, tmp_path, "incremental", b"b")
    i2 = _backup(manager, clock, tmp_path, "incremental", b"c")
    cat = manager.catalog
    assert [s.id for s in cat.find_recovery_path("db")] == [full, i1, i2]
    assert [s.id for s in cat.find_recovery_path("db", until=cat.get_set(i1).finished_at)] == [full, i1]
    cat.mark_status(i1, SetStatus.CORRUPT)
    assert [s.id for s in cat.find_recovery_path("db")] == [full]
    manager.restore("db", tmp_path / "out")
    assert (tmp_path / "out" / "f").read_bytes() == b"a"
    cat.mark_status(full, SetStatus.EXPIRED)
    with pytest.raises(NoRecoveryPath, match=f"the newest FULL {full} is EXPIRED"):
        cat.find_recovery_path("db")
    assert cat.mark_statuses({i2: SetStatus.AVAILABLE, "20000101T000000000000Z-00000000": SetStatus.CORRUPT}) == [
        "20000101T000000000000Z-00000000"
    ]


def test_retention_deletes_the_same_sets(manager: BackupManager, clock: SimClock, tmp_path: Path) -> None:
    ids = [
        _backup(manager, clock, tmp_path, "full" if n % 3 == 0 else "incremental", bytes([n]) * 100) for n in range(9)
    ]
    policy = RetentionPolicy.parse("redundancy=2")
    plan = manager.catalog.retention_plan("db", policy)
    assert [d.set_id for d in plan] == ids
    doomed = manager.catalog.obsolete("db", policy)
    assert doomed == list(reversed(ids[:3]))
    deleted = manager.apply_retention("db", policy, dry_run=False)
    assert sorted(deleted) == sorted(doomed)
    assert [s.id for s in manager.catalog.list_sets()] == ids[3:]
    assert manager.catalog.tombstones() >= set(doomed)


def test_verification_records_and_report(manager: BackupManager, clock: SimClock, tmp_path: Path) -> None:
    from rustybackup import Verifier

    full = _backup(manager, clock, tmp_path, "full", b"a" * 3000)
    _backup(manager, clock, tmp_path, "incremental", b"b" * 3000)
    report = Verifier(manager).verify("db", VerificationType.STANDARD)
    assert report.ok
    records = Verifier(manager).records
    items = [p.id for p in manager.catalog.get_set(full).pieces]
    last = records.last_verified(items)
    assert set(last) == set(items)
    assert all(level == "standard" and outcome == "ok" for _, level, outcome in last.values())
    rep = manager.catalog.report()
    assert rep["total_sets"] == 2
    db = rep["databases"]["db"]
    assert db["by_type"]["full"] == 1 and db["by_type"]["incremental"] == 1
    assert isinstance(db["size"], int) and db["size"] == rep["total_size"] > 0
    json.dumps(rep)  # plain data on both backends (no Decimal from PostgreSQL's sum)


def test_rebuild_from_manifests(manager: BackupManager, clock: SimClock, tmp_path: Path) -> None:
    a = _backup(manager, clock, tmp_path, "full", b"a")
    b = _backup(manager, clock, tmp_path, "incremental", b"b")
    before = manager.catalog.list_sets()
    report = manager.catalog.rebuild_report()
    assert report.registered == 2 and report.skipped == ()
    assert manager.catalog.list_sets() == before
    assert [s.id for s in manager.catalog.find_recovery_path("db")] == [a, b]


def test_max_backup_sets_guard(tmp_path: Path, clock: SimClock, backend: str | None) -> None:
    m = BackupManager(tmp_path / "repo", clock=clock, catalog=backend, max_backup_sets=2)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"x")
    m.register_database("db", tmp_path / "src")
    _backup(m, clock, tmp_path, "full", b"1")
    _backup(m, clock, tmp_path, "full", b"2")
    with pytest.raises(CatalogError, match="already has 2 backup sets"):
        _backup(m, clock, tmp_path, "full", b"3")
    # The refused set left nothing: no row and no directory.
    assert len(m.catalog.list_sets()) == 2
    assert len(list((tmp_path / "repo" / "sets").iterdir())) == 2
    m.catalog.close()


# --- the shared catalog only ----------------------------------------------------------------


def test_many_repositories_in_one_catalog(catalog_url: str, tmp_path: Path) -> None:
    from rustybackup.catalog_shared import SharedCatalog

    clock = SimClock()
    made = {}
    for name in ("east", "west"):
        src = tmp_path / f"src-{name}"
        src.mkdir()
        (src / "f").write_bytes(name.encode())
        m = BackupManager(tmp_path / name, clock=clock, catalog=catalog_url)
        m.register_database("db", src)  # the same database name in both repositories
        m.register_database(f"only-{name}", src)
        clock.advance(minutes=1)
        made[name] = m.backup("db", "full").id
        made[f"only-{name}"] = m.backup(f"only-{name}", "full").id
        m.catalog.close()
    shared = SharedCatalog(catalog_url)
    try:
        locations = {r.location for r in shared.repositories()}
        assert locations == {f"file://{(tmp_path / n).resolve()}" for n in ("east", "west")}
        rep = shared.report()
        assert rep["total_sets"] == 4
        assert set(rep["repositories"]) == locations
        # A database only one repository has: answered from that one.
        assert [s.id for s in shared.find_recovery_path("only-west")] == [made["only-west"]]
        with pytest.raises(CatalogError, match="no repository has a database 'ghost'"):
            shared.find_recovery_path("ghost")
        # A name two repositories share needs the repository said.
        with pytest.raises(CatalogError, match="db.*is registered in 2 repositories"):
            shared.find_recovery_path("db")
        path = shared.find_recovery_path("db", repository=str(tmp_path / "east"))
        assert [s.id for s in path] == [made["east"]]
    finally:
        shared.close()


def test_shared_catalog_survives_reopen_and_is_migrated_once(catalog_url: str, tmp_path: Path) -> None:
    clock = SimClock()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"x")
    m1 = BackupManager(tmp_path / "repo", clock=clock, catalog=catalog_url)
    m1.register_database("db", tmp_path / "src")
    s = m1.backup("db", "full").id
    m2 = BackupManager(tmp_path / "repo", clock=clock, catalog=catalog_url)
    assert [x.id for x in m2.catalog.list_sets()] == [s]
    m1.catalog.close()
    m2.catalog.close()
    # No catalog.db was written beside the repository.
    assert not (tmp_path / "repo" / "catalog.db").exists()


def test_unreachable_catalog_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot reach the shared catalog postgresql://nobody@/x"):
        BackupManager(tmp_path / "repo", catalog="postgresql://nobody:secret@/x?host=/nonexistent&port=1")


# --- the statement translation, against an independent reading -------------------------------


def _oracle_placeholders(sql: str) -> str:
    """The translation written another way: split on quotes, replace in even parts."""
    parts = sql.split("'")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("%", "%%").replace("?", "%s")
    for i in range(1, len(parts), 2):
        parts[i] = parts[i].replace("%", "%%")
    return "'".join(parts)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["SELECT ", "a", " ? ", "'x?y'", "%", "'%'", ",", "("]), max_size=30))
def test_placeholders_match_the_oracle(pieces: list[str]) -> None:
    sql = "".join(pieces)
    assert translate(sql, table_shape) == _oracle_placeholders(sql.strip())


def test_upserts_translate_on_the_key() -> None:
    assert translate("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", table_shape) == (
        "INSERT INTO tombstones (id, deleted_at) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET "
        "deleted_at = EXCLUDED.deleted_at"
    )
    assert translate("INSERT OR IGNORE INTO sets (id) VALUES (?)", table_shape) == (
        "INSERT INTO sets (id) VALUES (%s) ON CONFLICT DO NOTHING"
    )
    assert translate("BEGIN IMMEDIATE", table_shape) == "BEGIN"
    with pytest.raises(CatalogError, match="INSERT OR REPLACE into 'sets'"):
        translate("INSERT OR REPLACE INTO sets VALUES (?)", table_shape)
    with pytest.raises(CatalogError, match="PRAGMA"):
        translate("PRAGMA data_version", table_shape)


def test_a_damaged_row_names_the_set_and_field(manager: BackupManager, clock: SimClock, tmp_path: Path) -> None:
    sid = _backup(manager, clock, tmp_path, "full", b"a")
    with manager.catalog.transaction() as c:
        c.execute("UPDATE sets SET backup_type = 'weekly' WHERE id = ?", (sid,))
    with pytest.raises(CatalogError, match=f"set {sid}: backup_type 'weekly' is not one of"):
        manager.catalog.get_set(sid)
    (row,) = manager.catalog.set_rows()
    assert row.backup_type is None and any("unknown backup_type 'weekly'" in p for p in row.problems)


def test_a_newer_schema_is_refused_with_both_versions(catalog_url: str, tmp_path: Path) -> None:
    from rustybackup.catalog_pg import MIGRATIONS

    m = BackupManager(tmp_path / "repo", catalog=catalog_url)
    assert m.catalog.shared is not None
    schema = m.catalog.shared.schema
    m.catalog._query(f'UPDATE "{schema}".catalog_meta SET version = 99')
    m.catalog.close()
    with pytest.raises(
        CatalogError, match=f"schema {schema} is at version 99, newer than .* knows \\({len(MIGRATIONS)}\\)"
    ):
        BackupManager(tmp_path / "repo", catalog=catalog_url)
