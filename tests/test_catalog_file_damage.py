"""A damaged catalog.db (pages overwritten, text that is not UTF-8, counts that overflow
when added): every call gives a CatalogError naming the file, never SQLite's own
exception, and the message's way out (move the file aside) registers the sets again."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from rustybackup import BackupManager, CatalogError


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(os.urandom(3000) * (i + 1))
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src)
    ids = [m.backup("t", "full").id]
    (src / "f0").write_bytes(b"changed" * 100)
    ids.append(m.backup("t", "incremental").id)
    m.catalog.close()
    return tmp_path / "repo", src, ids


def _checkpointed(repo: Path) -> Path:
    """The catalog as one file (its WAL folded in), as a closed catalog leaves it."""
    path = repo / "catalog.db"
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def test_overwritten_pages_name_the_file_and_moving_it_aside_registers_the_sets_again(
    repo: tuple[Path, Path, list[str]],
) -> None:
    root, src, ids = repo
    path = _checkpointed(root)
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\x5a" * (4096 - 100)  # the schema page, past the file header
    path.write_bytes(bytes(data))
    with pytest.raises(CatalogError) as err:
        BackupManager(root).catalog.list_sets()
    text = str(err.value)
    assert text.startswith(f"catalog {path}: ") and "malformed" in text, text
    assert "move it aside" in text
    path.rename(root / "catalog.db.damaged")
    again = BackupManager(root)
    assert sorted(s.id for s in again.catalog.list_sets()) == sorted(ids)
    again.restore("t", root.parent / "out", backup_set_id=ids[-1])
    assert _digests(root.parent / "out") == _digests(src)


def test_text_that_is_not_utf8_is_a_catalog_error_naming_the_file(repo: tuple[Path, Path, list[str]]) -> None:
    root, _, ids = repo
    with sqlite3.connect(root / "catalog.db") as c:
        c.execute("UPDATE databases SET path = CAST(x'2f74ff6d70' AS TEXT)")
    m = BackupManager(root)
    for call in (m.catalog.list_databases, m.catalog.report, lambda: m.backup("t", "incremental")):
        with pytest.raises(CatalogError, match=r"(?i)could not decode|codec can.t decode") as err:
            call()
        assert str(m.catalog.path) in str(err.value) and "move it aside" in str(err.value)
    # The sets rows are intact: they still list.
    assert sorted(s.id for s in m.catalog.list_sets()) == sorted(ids)


def test_sizes_that_overflow_when_added_are_a_catalog_error(repo: tuple[Path, Path, list[str]]) -> None:
    root, _, _ = repo
    with sqlite3.connect(root / "catalog.db") as c:
        c.execute("UPDATE sets SET bytes_read = ?", (2**63 - 1,))
    m = BackupManager(root)
    with pytest.raises(CatalogError, match=r"integer overflow") as err:
        m.catalog.report()
    assert str(err.value).startswith(f"catalog {m.catalog.path}: ")
    assert "move it aside" not in str(err.value)  # not a damaged file: a value to look at
