"""The compatibility promise: a repository written by the release that wrote format 1
(tests/fixtures/format1, made by tests/fixtures/make_format1.py) opens, verifies at
FULL level and restores byte for byte with this release, forever. The fixture is
copied before use and never written to; do not regenerate it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from rustybackup import BackupManager, VerificationType
from rustybackup.verify import Verifier

FIXTURE = Path(__file__).parent / "fixtures" / "format1"
EXPECTED: dict[str, dict[str, dict[str, str]]] = json.loads((FIXTURE / "expected.json").read_text())


def _found(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif rel == "app.db":
                con = sqlite3.connect(p)
                rows = con.execute("SELECT id, v FROM t ORDER BY id").fetchall()
                con.close()
                out[rel] = "rows:" + hashlib.sha256(json.dumps(rows).encode()).hexdigest()
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    dest = tmp_path / "repo"
    shutil.copytree(FIXTURE / "repo", dest, symlinks=True)
    return dest


def test_fixture_is_format_1() -> None:
    assert (FIXTURE / "repo" / "format").read_text() == "rustybackup-repository 1\n"
    pieces = sorted((FIXTURE / "repo" / "sets").glob("*/data.piece"))
    assert len(pieces) == 8
    for piece in pieces:
        head = piece.read_bytes()[:12]
        assert head[:8] == b"RBPIECE\0" and int.from_bytes(head[8:12], "little") == 1


def test_every_set_restores_byte_for_byte(repo: Path, tmp_path: Path) -> None:
    manager = BackupManager(repo)
    sets = {s.id: s for s in manager.catalog.list_sets()}
    expected = {sid: files for db in EXPECTED.values() for sid, files in db.items()}
    assert set(sets) == set(expected)
    for set_id, files in expected.items():
        target = tmp_path / ("r-" + set_id)
        manager.restore(sets[set_id].database, target, backup_set_id=set_id)
        assert _found(target) == files, set_id


def test_full_verification_passes(repo: Path) -> None:
    report = Verifier(BackupManager(repo)).verify(None, VerificationType.FULL)
    assert report.ok, report.findings
    assert report.pieces_checked >= 8


def test_rebuilt_catalog_restores_the_same(repo: Path, tmp_path: Path) -> None:
    (repo / "catalog.db").unlink()
    manager = BackupManager(repo)
    assert len(manager.catalog.list_sets()) == 8
    newest_tree = max(EXPECTED["tree"])
    manager.restore("tree", tmp_path / "latest")
    assert _found(tmp_path / "latest") == EXPECTED["tree"][newest_tree]


def test_a_damaged_fixture_copy_is_caught(repo: Path) -> None:
    """The FULL check above can fail: one flipped byte in a stored block is found."""
    piece = next(p for p in sorted((repo / "sets").glob("*/data.piece")) if p.stat().st_size > 4096)
    data = bytearray(piece.read_bytes())
    data[40] ^= 0xFF
    piece.write_bytes(bytes(data))
    report = Verifier(BackupManager(repo)).verify(None, VerificationType.FULL)
    assert not report.ok
