"""`copy` into an encrypted repository: ciphertext is copied as it is, which only a
target with the same keyring opens (tests/test_copy.py, copy_keys.py). A target encrypted
under other keys, or a plain source into an encrypted target, needs a re-encrypting copy,
which this version does not build: both are refused before anything is written, with a
message saying so, and the target is left as it was. The piece pass that copy will be
built on (`_core.rekey_piece`, rust/src/crypto/reseal.rs) is tested here on real sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from rustybackup import BackupManager, _core, keys, manifest
from rustybackup.copy import copy_sets
from rustybackup.errors import EncryptionError
from rustybackup.manifest import Manifest
from test_encryption_repo import (  # noqa: F401 - _cheap_argon2 is an autouse fixture
    PASSWORD,
    _cheap_argon2,
    assert_no_plaintext,
    every_byte,
    marked_tree,
)

PieceRow = tuple[str, str, str, Path, int | None, str | None, str | None, int | None]


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


def _piece_row(m: Manifest, set_id: str, path: Path, size: int, checksum: str, count: int) -> PieceRow:
    return (m.pieces[0].id, set_id, "piece", path, size, checksum, m.pieces[0].algorithm, count)


@pytest.mark.parametrize("source_encrypted", [True, False])
def test_rekey_piece_puts_a_set_under_the_targets_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source_encrypted: bool
) -> None:
    """The Rust pass the re-encrypting copy is built on (`_core.rekey_piece`): a real
    set's piece opened with A's set keys (or read plain) and sealed under B's, its digests
    recomputed under B's MAC key. B's keys FULL-check the new piece clean; A's do not;
    no plaintext marker is in it; back to plain (--decrypt) gives A's blocks unsealed."""
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    src = tmp_path / "src"
    marks = marked_tree(src, 7, [50_000, 9_000])
    a = repo(tmp_path / "a", src, encrypted=source_encrypted)
    s = a.backup("db", "full")
    b = repo(tmp_path / "b", src, encrypted=True)
    own = b.backup("db", "full")
    a_keys = keys.set_block_keys(a.repository, s.id)
    b_keys = keys.set_block_keys(b.repository, own.id)
    assert b_keys is not None and (a_keys is None) is (not source_encrypted)
    m = manifest.load(a.repository / s.manifest, set_id=s.id)
    piece = a.repository / m.pieces[0].path
    out = tmp_path / "out" / s.id
    out.mkdir(parents=True)
    dst = out / piece.name
    size, checksum, count, moved = _core.rekey_piece(piece, dst, a_keys, b_keys, keys.block_cipher(b.repository))
    assert (size, count, len(moved)) == (dst.stat().st_size, m.pieces[0].block_count, m.pieces[0].block_count)
    row = _piece_row(m, s.id, dst, size, checksum, count)
    [ok] = _core.verify_files([row], "full", keys={s.id: b_keys})
    assert ok.outcome == "ok", ok.issues
    if a_keys is not None:
        [bad] = _core.verify_files([row], "full", keys={s.id: a_keys})
        assert bad.outcome != "ok"
    assert_no_plaintext(tmp_path / "out", marks)
    plain = out / ("plain-" + piece.name)
    _, psum, pcount, pmoved = _core.rekey_piece(dst, plain, b_keys, None)
    [clean] = _core.verify_files([_piece_row(m, s.id, plain, plain.stat().st_size, psum, pcount)], "full")
    assert clean.outcome == "ok", clean.issues
    if a_keys is None:
        # plain -> B -> plain: the blocks are back where A stored them, byte for byte.
        assert plain.read_bytes() == piece.read_bytes()
        assert [r[1] for r in pmoved] == [r[0] for r in moved]
