"""`copy` into another repository's keys (copy_reencrypt.py): encrypted under A's keys ->
encrypted under B's, plain -> encrypted, encrypted -> plain with `decrypt`. Every
direction restores exactly what the source restores, set by set (FULL, INCREMENTALs with
parent runs and copy runs); the target's digests are its own (the next backup into it
dedups against the copied chain); no plaintext marker reaches an encrypted target; a wrong
source key, a damaged source block or a killed copy leaves the target consistent. The
piece pass (`_core.rekey_piece`) is also tested alone on real sets."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from engine_support import SimClock, snapshot_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, BackupSet, _core, keys, manifest
from rustybackup.cli import cli
from rustybackup.copy import copy_sets
from rustybackup.copy_reencrypt import SourceCredentials
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
OTHER = "another passphrase, B's"
# (source encrypted, target encrypted): the three directions that re-encrypt.
DIRECTIONS = [(True, True), (False, True), (True, False)]


def repo(
    root: Path, src: Path, *, encrypted: bool, password: str = PASSWORD, clock: SimClock | None = None
) -> BackupManager:
    m = BackupManager(root, clock=clock) if clock is not None else BackupManager(root)
    if encrypted:
        keys.init_encryption(root, password=password)
    m.register_database("db", src, block_size=4096)
    return m


def target_repo(root: Path, *, encrypted: bool) -> BackupManager:
    b = BackupManager(root)
    if encrypted:
        keys.init_encryption(root, password=OTHER)
    return b


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: d for p, d in every_byte(root) if "catalog.db" not in p.name}


def creds(tmp_path: Path, password: str = PASSWORD) -> SourceCredentials:
    f = tmp_path / f"pw-{abs(hash(password))}"
    f.write_text(password + "\n")
    return SourceCredentials(password_file=f)


def chain(tmp_path: Path, *, encrypted: bool) -> tuple[BackupManager, Path, list[bytes], list[BackupSet]]:
    """FULL + 2 INCREMENTALs: a file copied inside the tree (a copy run), a file copied
    from the parent's state (a parent run), unchanged files, a changed one."""
    clock = SimClock()
    src = tmp_path / "src"
    marks = marked_tree(src, 3, [40_000, 12_000, 9_000])
    f0, f1 = sorted(src.iterdir())[:2]
    shutil.copyfile(f0, src / "twin-of-f0")
    a = repo(tmp_path / "a", src, encrypted=encrypted, clock=clock)
    sets = [a.backup("db", "full")]
    clock.advance(hours=1)
    shutil.copyfile(f1, src / "copy-of-f1")
    marks += marked_tree(src / "more", 4, [7_000])
    sets.append(a.backup("db", "incremental"))
    clock.advance(hours=1)
    with open(f0, "r+b") as fh:
        fh.seek(5000)
        fh.write(b"X" * 100)
    sets.append(a.backup("db", "incremental"))
    return a, src, marks, sets


def assert_same_restores(tmp_path: Path, a: BackupManager, b: BackupManager, sets: list[BackupSet]) -> None:
    for s in sets:
        a.restore("db", tmp_path / f"ra-{s.id}", backup_set_id=s.id)
        b.restore("db", tmp_path / f"rb-{s.id}", backup_set_id=s.id)
        assert snapshot_tree(tmp_path / f"ra-{s.id}") == snapshot_tree(tmp_path / f"rb-{s.id}"), s.id


@pytest.mark.parametrize(("src_enc", "dst_enc"), DIRECTIONS)
def test_every_direction_restores_exactly_and_the_next_backup_dedups(
    tmp_path: Path, src_enc: bool, dst_enc: bool
) -> None:
    a, src, marks, sets = chain(tmp_path, encrypted=src_enc)
    b = target_repo(tmp_path / "b", encrypted=dst_enc)
    if dst_enc:
        keys.unlock(b.repository, password=OTHER)
    report = copy_sets(a, b, source_credentials=creds(tmp_path) if src_enc else None, decrypt=not dst_enc)
    assert report.ok, report.failed
    assert report.copied == [s.id for s in sets]
    assert keys.is_encrypted(b.repository) is dst_enc
    assert_same_restores(tmp_path, a, b, sets)
    if dst_enc:
        assert_no_plaintext(b.repository, marks)
    # The next backup into the target finds the copied blocks by the target's digests:
    # a new file equal to a copied one stores nothing.
    shutil.copyfile(sorted(src.iterdir())[1], src / "new-but-known")
    n = b.backup("db", "incremental")
    m = manifest.load(b.repository / n.manifest, set_id=n.id)
    assert sum(p.block_count for p in m.pieces) == 0
    b.restore("db", tmp_path / "next")
    assert snapshot_tree(tmp_path / "next", with_meta=False) == snapshot_tree(src, with_meta=False)


def test_a_wrong_source_key_changes_nothing_in_the_target(tmp_path: Path) -> None:
    a, _, _, sets = chain(tmp_path, encrypted=True)
    b = target_repo(tmp_path / "b", encrypted=True)
    keys.unlock(b.repository, password=OTHER)
    before = snapshot(b.repository)
    with pytest.raises(EncryptionError, match="passphrase"):
        copy_sets(a, b, source_credentials=creds(tmp_path, "not the passphrase"))
    assert snapshot(b.repository) == before
    assert b.catalog.set_ids() == set()


def test_a_damaged_source_block_is_named_and_nothing_of_it_is_registered(tmp_path: Path) -> None:
    a, _, _, sets = chain(tmp_path, encrypted=True)
    piece = a.repository / sets[1].pieces[0].path
    with open(piece, "r+b") as fh:
        fh.seek(300)
        byte = fh.read(1)
        fh.seek(300)
        fh.write(bytes([byte[0] ^ 0x01]))
    b = target_repo(tmp_path / "b", encrypted=True)
    keys.unlock(b.repository, password=OTHER)
    report = copy_sets(a, b, source_credentials=creds(tmp_path))
    assert report.copied == [sets[0].id]
    why = report.failed[sets[1].id]
    assert piece.name in why and "block 0" in why and "file #" in why and "nothing of it was published" in why
    assert set(report.failed) == {sets[1].id, sets[2].id}
    assert b.catalog.set_ids() == {sets[0].id}
    assert sorted(p.name for p in (b.repository / "sets").iterdir()) == [sets[0].id]
    assert list((b.repository / "staging").iterdir()) == []


def test_plaintext_only_with_decrypt(tmp_path: Path) -> None:
    a, _, _, sets = chain(tmp_path, encrypted=True)
    b = target_repo(tmp_path / "b", encrypted=False)
    other = tmp_path / "other-src"
    other.mkdir()
    (other / "x").write_bytes(b"plain data")
    b.register_database("other", other)
    b.backup("other", "full")
    before = snapshot(b.repository)
    with pytest.raises(EncryptionError, match="only with --decrypt"):
        copy_sets(a, b, source_credentials=creds(tmp_path))
    assert snapshot(b.repository) == before
    c = target_repo(tmp_path / "c", encrypted=True)
    keys.unlock(c.repository, password=OTHER)
    with pytest.raises(EncryptionError, match="--decrypt writes plaintext, and the target is encrypted"):
        copy_sets(a, c, source_credentials=creds(tmp_path), decrypt=True)
    assert copy_sets(a, b, source_credentials=creds(tmp_path), decrypt=True).copied == [s.id for s in sets]


def test_a_set_hashed_with_another_algorithm_is_refused_by_an_encrypted_target(tmp_path: Path) -> None:
    src = tmp_path / "src"
    marked_tree(src, 5, [9_000])
    a = BackupManager(tmp_path / "a")
    a.register_database("db", src, block_size=4096, algorithm="sha256")
    s = a.backup("db", "full")
    b = target_repo(tmp_path / "b", encrypted=True)
    keys.unlock(b.repository, password=OTHER)
    report = copy_sets(a, b)
    assert "its digests are sha256" in report.failed[s.id] and "blake3" in report.failed[s.id]
    assert b.catalog.set_ids() == set() and list((b.repository / "staging").iterdir()) == []


def test_a_write_only_target_receives_a_copy(tmp_path: Path) -> None:
    a, _, marks, sets = chain(tmp_path, encrypted=True)
    b = target_repo(tmp_path / "b", encrypted=True)
    wo = tmp_path / "b-write-only.json"
    keys.add_write_only(b.repository, keys.unlock(b.repository, password=OTHER), wo)
    keys.forget(b.repository)
    keys.unlock(b.repository, key_file=wo)
    report = copy_sets(a, b, source_credentials=creds(tmp_path))
    assert report.ok and report.copied == [s.id for s in sets], report.failed
    assert_no_plaintext(b.repository, marks)
    # This host cannot read B; one with B's passphrase restores every set.
    with pytest.raises(EncryptionError, match="write-only"):
        b.restore("db", tmp_path / "refused", backup_set_id=sets[0].id)
    keys.forget(b.repository)
    keys.unlock(b.repository, password=OTHER)
    assert_same_restores(tmp_path, a, BackupManager(b.repository), sets)


_CHILD = """
import os, signal, sys
from pathlib import Path
from rustybackup import BackupManager, _core, keys
from rustybackup.copy import copy_sets
from rustybackup.copy_reencrypt import SourceCredentials

real = _core.rekey_map
calls = []

def rekey_map(*args, **kwargs):
    out = real(*args, **kwargs)
    calls.append(1)
    if len(calls) == 2:
        # The second set's pieces and map are in staging: die there, as a crash would.
        os.kill(os.getpid(), signal.SIGKILL)
    return out

_core.rekey_map = rekey_map
a, b, pw_a, pw_b = map(Path, sys.argv[1:])
keys.unlock(b, password=pw_b.read_text().strip())
copy_sets(BackupManager(a), BackupManager(b), source_credentials=SourceCredentials(password_file=pw_a))
"""


def test_a_killed_copy_resumes(tmp_path: Path) -> None:
    a, _, _, sets = chain(tmp_path, encrypted=True)
    b = target_repo(tmp_path / "b", encrypted=True)
    pw_b = tmp_path / "pw-b"
    pw_b.write_text(OTHER)
    src_creds = creds(tmp_path)
    assert src_creds.password_file is not None
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_CHILD),
            str(a.repository),
            str(b.repository),
            str(src_creds.password_file),
            str(pw_b),
        ],
        capture_output=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    keys.unlock(b.repository, password=OTHER)
    b = BackupManager(b.repository)
    assert b.catalog.set_ids() == {sets[0].id}
    assert [p.name for p in (b.repository / "staging").iterdir()] == [sets[1].id]
    report = copy_sets(a, b, source_credentials=src_creds)
    assert report.skipped == [sets[0].id] and report.copied == [s.id for s in sets[1:]], report.failed
    assert list((b.repository / "staging").iterdir()) == []
    assert_same_restores(tmp_path, a, b, sets)


def test_cli_copy_reencrypts_with_from_password_file(tmp_path: Path) -> None:
    import json

    a, _, _, sets = chain(tmp_path, encrypted=True)
    target_repo(tmp_path / "b", encrypted=True)
    pw_a, pw_b = tmp_path / "a.txt", tmp_path / "b.txt"
    pw_a.write_text(PASSWORD)
    pw_b.write_text(OTHER)
    keys.forget(a.repository)
    runner = CliRunner()
    args = ["--password-file", str(pw_b), "copy", "--from", str(a.repository), "--to", str(tmp_path / "b")]
    r = runner.invoke(cli, [*args, "--from-password-file", str(pw_b), "--json"])
    assert r.exit_code == 1 and "passphrase" in r.output and "Traceback" not in r.output
    keys._credentials.clear()
    r = runner.invoke(cli, [*args, "--from-password-file", str(pw_a), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["copied"] == [s.id for s in sets]
    keys._credentials.clear()
    r = runner.invoke(
        cli, ["--password-file", str(pw_a), "copy", "--from", str(a.repository), "--to", str(tmp_path / "p")]
    )
    assert r.exit_code == 0, r.output  # a new directory gets A's keys: the same-keys copy
    assert (tmp_path / "p" / "keys" / "keyring").read_bytes() == (a.repository / "keys" / "keyring").read_bytes()
    keys._credentials.clear()
    r = runner.invoke(
        cli,
        ["--password-file", str(pw_a), "copy", "--from", str(a.repository), "--to", str(tmp_path / "q"), "--decrypt"],
    )
    assert r.exit_code == 0, r.output
    assert not keys.is_encrypted(tmp_path / "q")


# --- property: random chains, every direction; the oracle is the source's plain restore --

_OPS = st.lists(
    st.tuples(st.sampled_from(["new", "change", "copy", "delete", "same"]), st.integers(0, 7), st.integers(0, 20_000)),
    min_size=1,
    max_size=4,
)


def _apply(src: Path, ops: list[tuple[str, int, int]], rnd: random.Random) -> None:
    files = sorted(p for p in src.iterdir() if p.is_file())
    for op, pick, size in ops:
        if op == "new" or not files:
            (src / f"n{rnd.randrange(1 << 30):x}").write_bytes(rnd.randbytes(size))
        elif op == "change":
            f = files[pick % len(files)]
            data = bytearray(f.read_bytes()) or bytearray(b"\0")
            data[size % len(data)] ^= 0xFF
            f.write_bytes(bytes(data) + rnd.randbytes(pick * 100))
        elif op == "copy":
            shutil.copyfile(files[pick % len(files)], src / f"c{rnd.randrange(1 << 30):x}")
        elif op == "delete" and len(files) > 1:
            files[pick % len(files)].unlink()
        files = sorted(p for p in src.iterdir() if p.is_file())


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    direction=st.sampled_from(DIRECTIONS),
    steps=st.lists(st.tuples(_OPS, st.sampled_from(["incremental", "full"])), min_size=1, max_size=3),
    seed=st.integers(0, 2**32),
)
def test_random_chains_copy_exactly(
    direction: tuple[bool, bool], steps: list[tuple[list[tuple[str, int, int]], str]], seed: int
) -> None:
    src_enc, dst_enc = direction
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as d:
        t = Path(d)
        with keys._lock:
            keys._unlocked.clear()
        src = t / "src"
        src.mkdir()
        for i in range(3):
            (src / f"f{i}").write_bytes(rnd.randbytes(rnd.randrange(0, 30_000)))
        clock = SimClock()
        a = repo(t / "a", src, encrypted=src_enc, clock=clock)
        sets = [a.backup("db", "full")]
        for ops, kind in steps:
            clock.advance(hours=1)
            _apply(src, ops, rnd)
            sets.append(a.backup("db", kind))
        b = target_repo(t / "b", encrypted=dst_enc)
        if dst_enc:
            keys.unlock(b.repository, password=OTHER)
        report = copy_sets(a, b, source_credentials=creds(t) if src_enc else None, decrypt=not dst_enc)
        assert report.ok and report.copied == [s.id for s in sets], report.failed
        assert_same_restores(t, a, b, sets)


# --- the piece pass alone ------------------------------------------------------------------


def _piece_row(m: Manifest, set_id: str, path: Path, size: int, checksum: str, count: int) -> PieceRow:
    return (m.pieces[0].id, set_id, "piece", path, size, checksum, m.pieces[0].algorithm, count)


@pytest.mark.parametrize("source_encrypted", [True, False])
def test_rekey_piece_puts_a_set_under_the_targets_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source_encrypted: bool
) -> None:
    """`_core.rekey_piece` alone: a real set's piece opened with A's set keys (or read
    plain) and sealed under B's, its digests recomputed under B's MAC key. B's keys
    FULL-check the new piece clean; A's do not; no plaintext marker is in it; back to
    plain (--decrypt) gives A's blocks unsealed."""
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
    again = out / ("again-" + piece.name)
    assert _core.rekey_piece(dst, again, b_keys, None, with_moved=False)[3] == []
