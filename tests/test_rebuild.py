"""Nothing deletable by mistake (issue 12, the hostile user's list): a lost, truncated or
half-rebuilt catalog, a copied set directory, crafted set ids and symlinked repository
directories never cost a set or a file outside the repository."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from engine_support import SimClock
from manifest_support import stored
from rustybackup import BackupManager, CatalogError, RetentionPolicy, store
from rustybackup.catalog import BackupCatalog

OUTSIDE_ID = "../../victim"


def _four_sets(tmp_path: Path) -> tuple[Path, SimClock, list[tuple[str, bytes]]]:
    """A repository with FULL, INCREMENTAL, INCREMENTAL, FULL of one file; (id, content)."""
    clock = SimClock()
    src = tmp_path / "src"
    src.mkdir()
    m = BackupManager(tmp_path / "repo", clock=clock)
    m.register_database("db", src)
    taken = []
    for i, kind in enumerate(("full", "incremental", "incremental", "full")):
        content = bytes([i + 1]) * (20000 + i)
        (src / "f").write_bytes(content)
        taken.append((m.backup("db", kind).id, content))
        clock.advance(hours=1)
    m.catalog.close()
    return tmp_path / "repo", clock, taken


def _lose_catalog(repo: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{repo / store.CATALOG_FILE}{suffix}").unlink(missing_ok=True)


def _then_everything_restores(repo: Path, clock: SimClock, tmp_path: Path, taken: list[tuple[str, bytes]]) -> None:
    """The issue's sequence after the damage: open, db add, backup; every earlier set is
    still listed and restores byte for byte."""
    m = BackupManager(repo, clock=clock)
    m.register_database("db", tmp_path / "src")
    clock.advance(hours=1)
    new = m.backup("db", "incremental")
    ids = {s.id for s in m.catalog.list_sets()}
    assert {sid for sid, _ in taken} | {new.id} == ids
    for n, (sid, content) in enumerate(taken):
        out = tmp_path / f"out-{n}"
        m.restore("db", out, backup_set_id=sid)
        assert (out / "f").read_bytes() == content
    m.catalog.close()


_PAUSING_CHILD = """
import sys
from rustybackup import BackupManager, store

real = store.Repository.manifests

def manifests(self):
    for n, path in enumerate(real(self)):
        if n == 2:
            print("mid-rebuild", flush=True)
            sys.stdin.readline()  # never answered: the parent kills us here
        yield path

store.Repository.manifests = manifests
BackupManager(sys.argv[1])
print("finished", flush=True)
"""


def test_a_rebuild_killed_midway_loses_nothing(tmp_path: Path) -> None:
    repo, clock, taken = _four_sets(tmp_path)
    _lose_catalog(repo)
    with subprocess.Popen(
        [sys.executable, "-c", _PAUSING_CHILD, str(repo)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "mid-rebuild"
        child.send_signal(signal.SIGKILL)
        child.wait()
    # The half-built catalog never took the real one's place; the next open starts over
    # and leaves no trace of it.
    assert not (repo / store.CATALOG_FILE).exists()
    assert list(repo.glob(f".{store.CATALOG_FILE}.rebuild-*"))
    _then_everything_restores(repo, clock, tmp_path, taken)
    assert list(repo.glob(f".{store.CATALOG_FILE}.rebuild-*")) == []


def test_a_rebuild_that_raises_midway_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, clock, taken = _four_sets(tmp_path)
    _lose_catalog(repo)
    real = store.Repository.manifests

    def failing(self: store.Repository) -> object:
        for n, path in enumerate(real(self)):
            if n == 2:
                raise KeyboardInterrupt
            yield path

    with monkeypatch.context() as patch:
        patch.setattr(store.Repository, "manifests", failing)
        with pytest.raises(KeyboardInterrupt):
            BackupManager(repo, clock=clock)
    assert not (repo / store.CATALOG_FILE).exists()
    _then_everything_restores(repo, clock, tmp_path, taken)


def test_a_catalog_truncated_to_zero_bytes_is_rebuilt(tmp_path: Path) -> None:
    repo, clock, taken = _four_sets(tmp_path)
    for suffix in ("-wal", "-shm"):
        Path(f"{repo / store.CATALOG_FILE}{suffix}").unlink(missing_ok=True)
    (repo / store.CATALOG_FILE).write_bytes(b"")
    _then_everything_restores(repo, clock, tmp_path, taken)


def test_an_empty_catalog_left_by_an_older_release_is_rebuilt(tmp_path: Path) -> None:
    """v1 left an empty catalog (tables, no rows) after a rebuild that never committed;
    the next open sees the manifests and rebuilds."""
    repo, clock, taken = _four_sets(tmp_path)
    with sqlite3.connect(repo / store.CATALOG_FILE) as conn:
        for table in ("pieces", "archive_files", "sets", "databases"):
            conn.execute(f"DELETE FROM {table}")
    conn.close()
    _then_everything_restores(repo, clock, tmp_path, taken)


def test_a_copied_set_directory_is_skipped_reported_and_kept(tmp_path: Path) -> None:
    repo, clock, taken = _four_sets(tmp_path)
    first = taken[0][0]
    shutil.copytree(repo / "sets" / first, repo / "sets" / f"{first}.copy")
    _lose_catalog(repo)
    _then_everything_restores(repo, clock, tmp_path, taken)
    cat = BackupCatalog(repo)
    report = cat.rebuild_report()
    assert report.registered == 5  # the four, and the backup taken after the damage
    [(where, why)] = report.skipped
    assert where == f"sets/{first}.copy/manifest.json"
    assert f"holds set {first}" in why and "directory name" in why
    cat.close()
    # Neither the original nor the copy is swept: both hold a readable manifest.
    BackupManager(repo).cleanup()
    assert (repo / "sets" / f"{first}.copy").is_dir() and (repo / "sets" / first).is_dir()


def _crafted_manifest(repo: Path, set_id: str, parent_id: str | None = None) -> Path:
    """A copy of a real manifest whose set id is `set_id`, in a directory of a valid name."""
    real = next(iter(store.Repository(repo).manifests()))
    doc = json.loads(real.read_text())
    doc["set"]["id"] = set_id
    doc["set"]["parent_id"] = parent_id
    home = repo / "sets" / "20990101T000000000000Z-deadbeef"
    home.mkdir()
    (home / store.MANIFEST).write_bytes(stored(doc))
    return home


def test_a_manifest_naming_a_set_outside_the_repository_is_refused_and_nothing_outside_is_deleted(
    tmp_path: Path,
) -> None:
    repo, clock, taken = _four_sets(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    home = _crafted_manifest(repo, OUTSIDE_ID)
    _lose_catalog(repo)
    m = BackupManager(repo, clock=clock)
    report = m.catalog.rebuild_report()
    assert [s.id for s in m.catalog.list_sets()] == [sid for sid, _ in taken]
    [(where, why)] = report.skipped
    assert where == f"sets/{home.name}/manifest.json"
    assert f"set.id: expected a set id YYYYmmddTHHMMSSffffffZ-<8 hex>, got {OUTSIDE_ID!r}" in why
    clock.advance(days=400)
    m.apply_retention("db", RetentionPolicy.redundancy(1), dry_run=False, force=True)
    m.cleanup()
    assert (victim / "precious").read_text() == "keep me"
    with pytest.raises(CatalogError, match="is not a backup set id"):
        m.delete(OUTSIDE_ID)
    with pytest.raises(CatalogError, match="is not a backup set id"):
        m.restore("db", tmp_path / "out", backup_set_id=OUTSIDE_ID)
    assert (victim / "precious").read_text() == "keep me"


def test_a_catalog_row_with_a_crafted_id_deletes_nothing_outside(tmp_path: Path) -> None:
    repo, clock, taken = _four_sets(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    with sqlite3.connect(repo / store.CATALOG_FILE) as conn:
        conn.execute("UPDATE sets SET id = ? WHERE id = ?", (OUTSIDE_ID, taken[0][0]))
        conn.execute("UPDATE pieces SET set_id = ? WHERE set_id = ?", (OUTSIDE_ID, taken[0][0]))
    conn.close()
    m = BackupManager(repo, clock=clock)
    with pytest.raises(CatalogError, match="is not a backup set id"):
        m.delete(OUTSIDE_ID)
    with pytest.raises(CatalogError, match="is not a backup set id"):
        m.catalog.list_sets()
    m.cleanup()
    assert (victim / "precious").read_text() == "keep me"


@pytest.mark.parametrize("sub", ["staging", "trash", "sets"])
def test_cleanup_never_follows_a_symlinked_repository_directory(tmp_path: Path, sub: str) -> None:
    repo, clock, _ = _four_sets(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "old-dir").mkdir()
    (elsewhere / "old-dir" / "precious").write_text("keep me")
    (elsewhere / "file").write_text("keep me too")
    os.utime(elsewhere / "old-dir", (0, 0))
    moved = tmp_path / f"{sub}.real"
    (repo / sub).rename(moved)
    (repo / sub).symlink_to(elsewhere)
    m = BackupManager(repo, clock=clock)
    m.cleanup()
    assert (elsewhere / "old-dir" / "precious").read_text() == "keep me"
    assert (elsewhere / "file").read_text() == "keep me too"


def test_cleanup_removes_links_inside_but_not_what_they_point_to(tmp_path: Path) -> None:
    repo, clock, taken = _four_sets(tmp_path)
    target = tmp_path / "target"
    target.mkdir()
    (target / "precious").write_text("keep me")
    for sub in ("staging", "trash", "sets"):
        (repo / sub / "20990101T000000000000Z-0000000f").symlink_to(target)
    m = BackupManager(repo, clock=clock)
    m.cleanup()
    assert (target / "precious").read_text() == "keep me"
    assert [p.name for p in sorted((repo / "sets").iterdir())] == sorted(sid for sid, _ in taken)


def test_an_unknown_set_with_a_readable_manifest_is_kept_until_a_tombstone_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, clock, taken = _four_sets(tmp_path)
    m = BackupManager(repo, clock=clock)
    newest = taken[-1][0]
    # A delete interrupted between its catalog write and its file removal.
    with monkeypatch.context() as patch:
        patch.setattr(store.Repository, "discard", lambda self, set_id: None)
        m.delete(newest)
    assert (repo / "sets" / newest).is_dir()
    assert newest in m.catalog.tombstones()
    os.utime(repo / "sets" / newest, (0, 0))  # old: no backup is about to lock it
    assert m.cleanup() == [f"sets/{newest}"]
    assert not (repo / "sets" / newest).exists()
    # A registered-looking set the catalog never heard of, and no tombstone: kept.
    stray = repo / "sets" / "20990101T000000000000Z-0000abcd"
    shutil.copytree(repo / "sets" / taken[0][0], stray)
    os.utime(stray, (0, 0))
    assert m.cleanup() == []
    assert stray.is_dir()


def test_a_published_set_that_was_never_registered_is_swept(tmp_path: Path) -> None:
    """A backup killed after the rename and before the commit leaves its `.lock`
    (removed only after the commit): the set was never registered, so it goes."""
    repo, clock, taken = _four_sets(tmp_path)
    m = BackupManager(repo, clock=clock)
    orphan = repo / "sets" / "20990101T000000000000Z-0000abcd"
    shutil.copytree(repo / "sets" / taken[0][0], orphan)
    (orphan / ".lock").touch()
    os.utime(orphan, (0, 0))
    assert m.cleanup() == [f"sets/{orphan.name}"]
