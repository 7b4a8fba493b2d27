"""BackupCatalog: queries, chains, recovery paths with fallback, reports, rebuild, guard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from engine_support import SimClock, sim_clock, snapshot_tree
from rustybackup import BackupManager, BackupType, CatalogError, NoRecoveryPath, SetStatus

clock = pytest.fixture(sim_clock)


@pytest.fixture
def manager(tmp_path: Path, clock: SimClock) -> BackupManager:
    m = BackupManager(tmp_path / "repo", clock=clock)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"0" * 10000)
    m.register_database("db", src)
    return m


def _backup(m: BackupManager, clock: SimClock, tmp_path: Path, kind: str, content: bytes) -> str:
    clock.advance(hours=1)
    (tmp_path / "src" / "f").write_bytes(content)
    return m.backup("db", kind).id


def test_list_get_chain_and_filters(manager: BackupManager, clock: SimClock, tmp_path: Path) -> None:
    full = _backup(manager, clock, tmp_path, "full", b"a")
    i1 = _backup(manager, clock, tmp_path, "incremental", b"b")
    i2 = _backup(manager, clock, tmp_path, "incremental", b"c")
    cat = manager.catalog
    assert [s.id for s in cat.list_sets()] == [full, i1, i2]
    assert [s.id for s in cat.list_sets("db", BackupType.INCREMENTAL)] == [i1, i2]
    assert [s.id for s in cat.list_sets(since=cat.get_set(i1).started_at)] == [i1, i2]
    assert cat.list_sets("other") == []
    assert [s.id for s in cat.chain(i2)] == [full, i1, i2]
    with pytest.raises(CatalogError, match="'nope' is not a backup set id"):
        cat.get_set("nope")
    with pytest.raises(CatalogError, match="unknown backup set '20000101T000000000000Z-00000000'"):
        cat.get_set("20000101T000000000000Z-00000000")


def test_recovery_path_falls_back_past_a_corrupt_incremental(
    manager: BackupManager, clock: SimClock, tmp_path: Path
) -> None:
    full = _backup(manager, clock, tmp_path, "full", b"a")
    i1 = _backup(manager, clock, tmp_path, "incremental", b"b")
    i2 = _backup(manager, clock, tmp_path, "incremental", b"c")
    cat = manager.catalog
    assert [s.id for s in cat.find_recovery_path("db")] == [full, i1, i2]
    assert [s.id for s in cat.find_recovery_path("db", until=cat.get_set(i1).finished_at)] == [full, i1]
    cat.mark_status(i1, SetStatus.CORRUPT)
    assert [s.id for s in cat.find_recovery_path("db")] == [full]
    # The next incremental is taken against the newest restorable state: the FULL.
    i3 = _backup(manager, clock, tmp_path, "incremental", b"d")
    assert cat.get_set(i3).parent_id == full
    cat.mark_status(full, SetStatus.EXPIRED)
    with pytest.raises(NoRecoveryPath, match=f"the newest FULL {full} is EXPIRED and no older FULL exists"):
        cat.find_recovery_path("db")


def test_older_chain_is_used_when_the_newest_full_is_corrupt(
    manager: BackupManager, clock: SimClock, tmp_path: Path
) -> None:
    f1 = _backup(manager, clock, tmp_path, "full", b"a")
    i1 = _backup(manager, clock, tmp_path, "incremental", b"b")
    f2 = _backup(manager, clock, tmp_path, "full", b"c")
    manager.catalog.mark_status(f2, SetStatus.CORRUPT)
    assert [s.id for s in manager.catalog.find_recovery_path("db")] == [f1, i1]
    manager.restore("db", tmp_path / "out")
    assert (tmp_path / "out" / "f").read_bytes() == b"b"


def test_max_backup_sets_guard_names_retention(tmp_path: Path, clock: SimClock) -> None:
    m = BackupManager(tmp_path / "repo", clock=clock, max_backup_sets=2)
    (tmp_path / "f").write_bytes(b"x")
    m.register_database("db", tmp_path / "f")
    m.backup("db", "full")
    m.backup("db", "full")
    with pytest.raises(
        CatalogError, match=r"database 'db' already has 2 backup sets \(max_backup_sets=2\); apply a retention policy"
    ):
        m.backup("db", "full")
    assert len(m.catalog.list_sets()) == 2
    assert list((tmp_path / "repo" / "staging").iterdir()) == []
    assert len(list((tmp_path / "repo" / "sets").iterdir())) == 2


def test_rebuild_from_manifests_gives_the_same_sets_and_restores(
    manager: BackupManager, clock: SimClock, tmp_path: Path
) -> None:
    _backup(manager, clock, tmp_path, "full", os.urandom(30000))
    _backup(manager, clock, tmp_path, "incremental", os.urandom(30000))
    before = manager.catalog.list_sets()
    manager.catalog.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{manager.repository / 'catalog.db'}{suffix}").unlink(missing_ok=True)
    reopened = BackupManager(manager.repository, clock=clock)  # rebuilds on open
    assert reopened.catalog.list_sets() == before
    assert reopened.catalog.rebuild() == 2
    assert reopened.catalog.list_sets() == before
    reopened.restore("db", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out", with_meta=False) == snapshot_tree(tmp_path / "src", with_meta=False)


def test_report_and_export_json(manager: BackupManager, clock: SimClock, tmp_path: Path) -> None:
    _backup(manager, clock, tmp_path, "full", b"a" * 9000)
    _backup(manager, clock, tmp_path, "differential", b"b" * 9000)
    rep = manager.catalog.report()
    db = rep["databases"]["db"]
    assert db["sets"] == 2 and db["by_type"]["full"] == 1 and db["by_type"]["differential"] == 1
    assert db["chains"] == 1 and db["size"] == sum(s.size for s in manager.catalog.list_sets())
    manager.catalog.export_json(tmp_path / "cat.json")
    doc = json.loads((tmp_path / "cat.json").read_text())
    assert [s["backup_type"] for s in doc["sets"]] == ["full", "differential"]
    assert doc["databases"][0]["name"] == "db" and doc["sets"][0]["pieces"][0]["block_count"] == 2


def test_delete_refuses_parents_and_removes_files(manager: BackupManager, clock: SimClock, tmp_path: Path) -> None:
    full = _backup(manager, clock, tmp_path, "full", b"a")
    incr = _backup(manager, clock, tmp_path, "incremental", b"b")
    with pytest.raises(CatalogError, match=f"backup set {full} is the parent of {incr}; delete those first"):
        manager.delete(full)
    manager.delete(incr)
    assert not (manager.repository / "sets" / incr).exists()
    assert [s.id for s in manager.catalog.list_sets()] == [full]


def test_cleanup_sweeps_staging_and_unregistered_sets(manager: BackupManager, clock: SimClock, tmp_path: Path) -> None:
    full = _backup(manager, clock, tmp_path, "full", b"a")
    (manager.repository / "staging" / "half").mkdir()
    (manager.repository / "staging" / "half" / "data.piece").write_bytes(b"partial")
    (manager.repository / "sets" / "orphan").mkdir()
    removed = manager.cleanup()
    assert removed == ["staging/half", "sets/orphan"]
    assert [p.name for p in (manager.repository / "sets").iterdir()] == [full]


def test_cleanup_keeps_a_lockless_directory_while_a_backup_is_creating_one(manager: BackupManager) -> None:
    from rustybackup import locks

    born = manager.repository / "staging" / "just-created"
    with locks.creating_staging(manager.repository):
        born.mkdir()  # killed here, or about to take its .lock: keep it while unsure
        assert manager.cleanup() == []
    assert born.exists()
    assert manager.cleanup() == ["staging/just-created"]


def test_cleanup_leaves_a_backup_in_progress_alone(manager: BackupManager, tmp_path: Path) -> None:
    import fcntl

    busy = manager.repository / "staging" / "busy"
    busy.mkdir()
    fd = os.open(busy / ".lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        os.utime(busy, (0, 0))
        assert manager.cleanup() == []
        assert busy.exists()
    finally:
        os.close(fd)
    assert manager.cleanup() == ["staging/busy"]


# --- recovery-path resolution against a brute-force oracle ------------------------------


def test_a_second_catalog_object_on_the_repository_sees_the_same_sets(
    manager: BackupManager, clock: SimClock, tmp_path: Path
) -> None:
    from rustybackup import BackupCatalog

    full = _backup(manager, clock, tmp_path, "full", b"a")
    other = BackupCatalog(manager.repository)
    assert [s.id for s in other.list_sets()] == [full]
    assert other.connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    other.close()


def test_a_set_being_read_is_not_deleted(manager: BackupManager, clock: SimClock, tmp_path: Path) -> None:
    full = _backup(manager, clock, tmp_path, "full", b"a")
    with manager.reading([full]):
        with pytest.raises(
            CatalogError, match=f"backup set {full} is being read \\(a restore or verification holds it\\)"
        ):
            manager.delete(full)
    assert [s.id for s in manager.catalog.list_sets()] == [full]
    manager.delete(full)
    assert manager.catalog.list_sets() == []


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("backup_type", "weekly", "backup_type 'weekly' is not one of full, incremental, differential, archive_log"),
        ("status", "lost", "status 'lost' is not one of available, corrupt, expired"),
        ("started_at", "soon", "started_at: 'soon' is not a time in microseconds since the epoch"),
        ("finished_at", 2**62, f"finished_at: {2**62} is not a time in microseconds since the epoch"),
        ("tags", "{", "tags '{': Expecting property name"),
        ("tags", '["a", 1]', """tags '["a", 1]': not a JSON list of strings"""),
        ("parent_id", "../../victim", "parent_id '../../victim' is not a backup set id"),
        ("size", "big", "size 'big' is not a non-negative integer"),
        ("block_size", 4.5, "block_size 4.5 is not a non-negative integer"),
        ("bytes_read", -1, "bytes_read -1 is not a non-negative integer"),
        ("file_count", "many", "file_count 'many' is not a non-negative integer"),
    ],
)
def test_a_damaged_sets_row_is_a_catalog_error_naming_set_and_field(
    manager: BackupManager, clock: SimClock, tmp_path: Path, column: str, value: object, message: str
) -> None:
    full = _backup(manager, clock, tmp_path, "full", b"a")
    manager.catalog.connection.execute(f"UPDATE sets SET {column} = ?", (value,))
    with pytest.raises(CatalogError, match=f"catalog .*catalog.db: set {full}: ") as err:
        manager.catalog.list_sets()
    assert message in str(err.value)
    with pytest.raises(CatalogError, match=message.split(":")[0].split(" ")[0]):
        manager.catalog.get_set(full)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("block_size", "x", "block_size 'x' is not a positive integer"),
        ("block_size", 0, "block_size 0 is not a positive integer"),
        ("registered_at", "then", "registered_at: 'then' is not a time"),
        ("kind", b"files", "name, path, kind and algorithm must be text"),
    ],
)
def test_a_damaged_databases_row_names_database_and_field(
    manager: BackupManager, column: str, value: object, message: str
) -> None:
    manager.catalog.connection.execute(f"UPDATE databases SET {column} = ?", (value,))
    with pytest.raises(CatalogError, match="catalog database 'db'") as err:
        manager.catalog.get_database("db")
    assert message in str(err.value)
