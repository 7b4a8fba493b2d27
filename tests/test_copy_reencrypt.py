"""`copy` into an encrypted repository: ciphertext is copied as it is, which only a
target with the same keyring opens (tests/test_copy.py, copy_keys.py). A target encrypted
under other keys, or a plain source into an encrypted target, needs a re-encrypting copy,
which this version does not build: both are refused before anything is written, with a
message saying so, and the target is left as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rustybackup import BackupManager, keys
from rustybackup.copy import copy_sets
from rustybackup.errors import EncryptionError

from test_encryption_repo import every_byte, marked_tree

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(keys, "ARGON2_M_KIB", 64)
    monkeypatch.setattr(keys, "ARGON2_T", 1)
    monkeypatch.setattr(keys, "ARGON2_P", 1)
    for var in (keys.PASSWORD_ENV, keys.KEY_FILE_ENV, keys.NEW_PASSWORD_ENV):
        monkeypatch.delenv(var, raising=False)
    keys._credentials.clear()
    yield
    keys._credentials.clear()
    with keys._lock:
        keys._unlocked.clear()


def repo(root: Path, src: Path, *, encrypted: bool) -> BackupManager:
    m = BackupManager(root)
    if encrypted:
        keys.init_encryption(root, password=PASSWORD)
    m.register_database("db", src, block_size=4096)
    return m


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: d for p, d in every_byte(root) if "catalog.db" not in p.name}


@pytest.mark.parametrize("source_encrypted", [True, False])
def test_copy_into_a_target_under_other_keys_is_refused_and_changes_nothing(
    tmp_path: Path, source_encrypted: bool
) -> None:
    src = tmp_path / "src"
    marked_tree(src, 5, [10_000])
    a = repo(tmp_path / "a", src, encrypted=source_encrypted)
    a.backup("db", "full")
    b = repo(tmp_path / "b", src, encrypted=True)
    own = b.backup("db", "full")
    before = snapshot(tmp_path / "b")
    with pytest.raises(EncryptionError, match="not built in this version; nothing was copied"):
        copy_sets(a, b)
    assert snapshot(tmp_path / "b") == before
    assert b.catalog.set_ids() == {own.id}


def test_copy_between_repositories_sharing_keys_still_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The target's catalog opens the copied manifests with the same passphrase.
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    src = tmp_path / "src"
    marked_tree(src, 6, [10_000])
    a = repo(tmp_path / "a", src, encrypted=True)
    s = a.backup("db", "full")
    b = BackupManager(tmp_path / "b")
    report = copy_sets(a, b)
    assert report.ok and report.copied == [s.id]
