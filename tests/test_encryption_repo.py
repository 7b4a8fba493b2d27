"""Encrypted repositories end to end: no plaintext anywhere in the repository, restores
byte for byte, QUICK/STANDARD without the key, FULL with it finding a flipped bit at its
block, write-only hosts, rotation that leaves pieces untouched, and clear refusals."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keys_support import cheap_argon2, forget_keys
from rustybackup import BackupManager, VerificationType, keys
from rustybackup.errors import EncryptionError, NoRecoveryPath, RustyBackupError
from rustybackup.verify import Verifier

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    cheap_argon2(monkeypatch)
    for var in (keys.PASSWORD_ENV, keys.KEY_FILE_ENV, keys.NEW_PASSWORD_ENV):
        monkeypatch.delenv(var, raising=False)
    keys._credentials.clear()
    yield
    forget_keys()


def markers(seed: int, n: int) -> list[bytes]:
    rnd = random.Random(seed)
    return [b"MK" + rnd.randbytes(14) for _ in range(n)]


def marked_tree(src: Path, seed: int, sizes: list[int]) -> list[bytes]:
    """Files made of distinct 16-byte markers (no two blocks alike), each named after its
    first marker, so that any plaintext or name that reaches the repository is found.
    Returns every marker used."""
    src.mkdir(parents=True, exist_ok=True)
    used: list[bytes] = []
    for i, size in enumerate(sizes):
        mine = markers(seed * 1000 + i, size // 16 + 1)
        used.extend(mine)
        (src / f"f{i}-{mine[0].hex()}").write_bytes(b"".join(mine)[:size])
    return used


def every_byte(repo: Path) -> Iterator[tuple[Path, bytes]]:
    for p in sorted(repo.rglob("*")):
        if p.is_file() and not p.is_symlink():
            yield p, p.read_bytes()


def assert_no_plaintext(repo: Path, marks: list[bytes]) -> None:
    """No marker at any offset of any file of the repository (every 16-byte window is
    looked up), and no file name (the hex of a marker) either."""
    wanted = set(marks)
    names = [m.hex().encode() for m in marks]
    for path, data in every_byte(repo):
        for i in range(len(data) - 15):
            assert data[i : i + 16] not in wanted, f"a marker at offset {i} of {path}"
        for n in names:
            assert n not in data, f"a file name in {path}"


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def new_repo(root: Path, src: Path, compression: str | None = None) -> BackupManager:
    m = BackupManager(root / "repo")
    keys.init_encryption(root / "repo", password=PASSWORD)
    m.register_database("db", src, block_size=4096, compression=compression)
    return m


def as_write_only_host(root: Path, key_file: Path) -> None:
    """This process becomes a write-only host of `root`: a write-only key file
    `key_file` exported from the keys it holds, which it then forgets, unlocking the
    repository with that file alone."""
    held = keys.keys_for(root)
    assert held is not None, "the repository must be unlocked first"
    keys.add_write_only(root, held, key_file)
    keys.forget(root)
    keys.unlock(root, key_file=key_file)


@settings(max_examples=6, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 30_000), min_size=1, max_size=4),
    compression=st.sampled_from([None, "zstd"]),
    seed=st.integers(0, 2**32),
)
def test_no_plaintext_anywhere_and_restore_is_exact(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], compression: str | None, seed: int
) -> None:
    root = tmp_path_factory.mktemp("enc")
    src = root / "src"
    marks = marked_tree(src, seed % 10_000, sizes)
    m = new_repo(root, src, compression)
    full = m.backup("db", "full")
    # Change one file: an INCREMENTAL stores its changed blocks, sealed too.
    first = sorted(src.iterdir())[0]
    extra = markers(seed + 1, 300)
    marks += extra
    first.write_bytes(first.read_bytes()[:100] + b"".join(extra))
    inc = m.backup("db", "incremental")
    assert inc.parent_id == full.id
    assert_no_plaintext(root / "repo", marks)
    out = root / "out"
    m.restore("db", out)
    assert tree_digest(out) == tree_digest(src)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[BackupManager, Path, list[bytes]]:
    src = tmp_path / "src"
    marks = marked_tree(src, 7, [20_000, 9_000, 1])
    return new_repo(tmp_path, src), src, marks


def test_without_key_the_repository_says_it_is_encrypted(repo: tuple[BackupManager, Path, list[bytes]]) -> None:
    m, src, _ = repo
    m.backup("db", "full")
    root = m.repository
    keys.forget(root)
    with pytest.raises(EncryptionError, match="repository is encrypted; give its passphrase"):
        m.restore("db", src.parent / "out")
    with pytest.raises(EncryptionError, match="repository is encrypted"):
        m.backup("db", "full")


def test_wrong_passphrase_is_one_clear_error_and_changes_nothing(
    repo: tuple[BackupManager, Path, list[bytes]],
) -> None:
    m, _, _ = repo
    m.backup("db", "full")
    root = m.repository
    before = {p: d for p, d in every_byte(root) if "catalog.db" not in p.name}
    keys.forget(root)
    with pytest.raises(EncryptionError, match="opens no key slot"):
        keys.unlock(root, password="wrong")
    after = {p: d for p, d in every_byte(root) if "catalog.db" not in p.name}
    assert after == before


def test_quick_and_standard_without_key_full_with_key_finds_a_flipped_bit(
    repo: tuple[BackupManager, Path, list[bytes]],
) -> None:
    m, _, _ = repo
    s = m.backup("db", "full")
    root = m.repository
    keys.forget(root)
    for level in (VerificationType.QUICK, VerificationType.STANDARD):
        assert Verifier(m).verify(s.id, level).ok
    with pytest.raises(EncryptionError, match="QUICK and STANDARD need no key"):
        Verifier(m).verify(s.id, VerificationType.FULL)
    keys.unlock(root, password=PASSWORD)
    assert Verifier(m).verify(s.id, VerificationType.FULL).ok
    # Flip one bit inside the second stored block (ciphertext): FULL names it.
    piece = root / "sets" / s.id / "data.piece"
    import rustybackup._core as core

    entries = core.read_piece_index(piece)
    assert all(e[5] & 2 for e in entries), "every stored block is sealed"
    _, block_index, offset, stored_len, _, _, _ = entries[1]
    data = bytearray(piece.read_bytes())
    data[offset + stored_len // 2] ^= 0x10
    piece.write_bytes(bytes(data))
    report = Verifier(m).verify(s.id, VerificationType.FULL)
    assert not report.ok
    bad = [b for b in report.corrupt_blocks if b.offset == offset]
    assert bad and bad[0].block_index == block_index
    assert "authentication failed" in bad[0].actual


@pytest.mark.parametrize("damage", ["flip", "not base64"])
def test_a_sealed_manifest_that_does_not_open_is_a_finding_and_the_other_sets_are_checked(
    repo: tuple[BackupManager, Path, list[bytes]], damage: str
) -> None:
    m, src, _ = repo
    good = m.backup("db", "full")
    (src / "more").write_bytes(b"m" * 5000)
    bad = m.backup("db", "full")
    path = m.repository / "sets" / bad.id / "manifest.json"
    env = json.loads(path.read_bytes())
    sealed = bytearray(base64.b64decode(env["sealed"]))
    sealed[len(sealed) // 2] ^= 0x01
    env["sealed"] = "#" if damage == "not base64" else base64.b64encode(bytes(sealed)).decode()
    path.write_text(json.dumps(env))
    where = f"sets/{bad.id}/manifest.json"
    why = "not valid base64" if damage == "not base64" else "authentication failed"
    with pytest.raises(EncryptionError) as err:
        m.restore("db", src.parent / "out", backup_set_id=bad.id)
    assert why in str(err.value) and str(err.value).count(where) == 1, str(err.value)
    for level in (VerificationType.STANDARD, VerificationType.FULL):
        report = Verifier(m).verify("all", level)
        assert [(f.kind, f.set_id) for f in report.findings if f.kind == "bad_manifest"] == [("bad_manifest", bad.id)]
        (finding,) = [f for f in report.findings if f.kind == "bad_manifest"]
        assert why in finding.message and finding.message.count(where) == 1, finding.message
        assert good.id not in {f.set_id for f in report.findings}
    # Verification marked it: a restore now refuses it before opening anything.
    with pytest.raises(NoRecoveryPath, match="corrupt"):
        m.restore("db", src.parent / "out-again", backup_set_id=bad.id)
    m.restore("db", src.parent / "out-good", backup_set_id=good.id)


def test_a_catalog_rebuild_skips_a_sealed_manifest_that_does_not_open_and_keeps_the_rest(
    repo: tuple[BackupManager, Path, list[bytes]],
) -> None:
    m, src, _ = repo
    good = m.backup("db", "full")
    bad = m.backup("db", "full")
    path = m.repository / "sets" / bad.id / "manifest.json"
    env = json.loads(path.read_bytes())
    sealed = bytearray(base64.b64decode(env["sealed"]))
    sealed[-1] ^= 0x80
    env["sealed"] = base64.b64encode(bytes(sealed)).decode()
    path.write_text(json.dumps(env))
    (m.repository / "catalog.db").unlink()
    again = BackupManager(m.repository)
    assert again.last_rebuild is not None and again.last_rebuild.registered == 1
    ((where, why),) = again.last_rebuild.skipped
    assert where == f"sets/{bad.id}/manifest.json" and "authentication failed" in why
    assert [s.id for s in again.catalog.list_sets()] == [good.id]
    again.restore("db", src.parent / "out", backup_set_id=good.id)
    assert tree_digest(src.parent / "out") == tree_digest(src)
    # Without the key nothing opens: one error that says to give it, no set skipped.
    (m.repository / "catalog.db").unlink()
    keys.forget(m.repository)
    with pytest.raises(EncryptionError, match="give its passphrase"):
        BackupManager(m.repository)


def test_rotation_keeps_pieces_identical_and_old_sets_restore(
    repo: tuple[BackupManager, Path, list[bytes]],
) -> None:
    m, src, _ = repo
    s1 = m.backup("db", "full")
    root = m.repository
    piece = root / "sets" / s1.id / "data.piece"
    before = piece.read_bytes()
    gen = keys.rotate(root, keys.keys_for(root))  # type: ignore[arg-type]
    assert gen.id == "g2"
    assert piece.read_bytes() == before
    (src / "new").write_bytes(b"after rotation" * 1000)
    s2 = m.backup("db", "incremental")
    envelope = json.loads((root / "sets" / s2.id / "manifest.json").read_bytes())
    assert envelope["generation"] == "g2"
    assert piece.read_bytes() == before
    keys.forget(root)
    keys.unlock(root, password=PASSWORD)
    m.restore("db", src.parent / "out")
    assert tree_digest(src.parent / "out") == tree_digest(src)
    m.restore("db", src.parent / "old", backup_set_id=s1.id)


def test_slots_add_remove_and_the_last_decrypting_slot_stays(
    repo: tuple[BackupManager, Path, list[bytes]], tmp_path: Path
) -> None:
    m, _, _ = repo
    root = m.repository
    opened = keys.keys_for(root)
    assert opened is not None
    first = keys.list_slots(root)[0]
    with pytest.raises(EncryptionError, match="last one that can decrypt"):
        keys.remove_slot(root, first.id)
    kf = tmp_path / "repo.key"
    added = keys.add_key_file(root, opened, kf)
    assert {s.kind for s in keys.list_slots(root)} == {"passphrase", "keyfile"}
    keys.remove_slot(root, first.id)
    keys.forget(root)
    with pytest.raises(EncryptionError, match="opens no key slot"):
        keys.unlock(root, password=PASSWORD)
    keys.unlock(root, key_file=kf)
    with pytest.raises(EncryptionError, match="last one"):
        keys.remove_slot(root, added.id)
    with pytest.raises(EncryptionError, match="no key slot 0000abcd"):
        keys.remove_slot(root, "0000abcd")


def test_write_only_host_backs_up_but_cannot_restore(
    repo: tuple[BackupManager, Path, list[bytes]], tmp_path: Path
) -> None:
    m, src, marks = repo
    root = m.repository
    as_write_only_host(root, tmp_path / "write-only.key")
    full = m.backup("db", "full")
    extra = markers(99, 4000)
    marks += extra
    (src / "more").write_bytes(b"".join(extra))
    inc = m.backup("db", "incremental")
    # Unchanged files were found by keyed digest: only the new file's 16 blocks are stored.
    assert inc.parent_id == full.id
    assert inc.pieces[0].block_count == 16
    with pytest.raises(EncryptionError, match="write-only key"):
        m.restore("db", tmp_path / "out")
    assert_no_plaintext(root, marks)
    # The repository's own key reads what the write-only host wrote.
    keys.forget(root)
    keys.unlock(root, password=PASSWORD)
    m.restore("db", tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(src)


def test_mixing_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    marked_tree(src, 1, [100])
    m = BackupManager(tmp_path / "plain")
    m.register_database("db", src)
    m.backup("db", "full")
    with pytest.raises(EncryptionError, match="already holds unencrypted sets"):
        keys.init_encryption(tmp_path / "plain", password=PASSWORD)
    assert not keys.is_encrypted(tmp_path / "plain")


def test_format_file_says_encrypted(repo: tuple[BackupManager, Path, list[bytes]]) -> None:
    m, _, _ = repo
    assert (m.repository / "format").read_text() == "rustybackup-repository 2\n"
    with pytest.raises(RustyBackupError, match="already encrypted"):
        keys.init_encryption(m.repository, password="x")


def test_block_digests_are_keyed(repo: tuple[BackupManager, Path, list[bytes]]) -> None:
    import blake3
    import rustybackup._core as core

    m, src, _ = repo
    s = m.backup("db", "full")
    piece = m.repository / "sets" / s.id / "data.piece"
    digests = {e[6] for e in core.read_piece_index(piece)}
    data = max(src.iterdir(), key=lambda p: p.stat().st_size).read_bytes()
    plain = {blake3.blake3(data[i : i + 4096]).hexdigest() for i in range(0, len(data), 4096)}
    assert digests and not (digests & plain)
    assert struct.unpack_from("<I", piece.read_bytes(), 8)[0] >= 2
    assert os.stat(m.repository / "keys" / "keyring").st_mode & 0o077 == 0


def test_a_staged_set_key_survives_a_new_process(repo: tuple[BackupManager, Path, list[bytes]]) -> None:
    # A cut backup resumed by another process (resume.py keeps the set id) must seal its
    # remaining blocks with the key its first blocks were sealed with.
    m, _, _ = repo
    root = m.repository
    sid = "20260101T000000000000Z-0000abcd"
    (root / "staging" / sid).mkdir(parents=True)
    first = keys.new_set_block_keys(root, sid)
    assert first is not None
    staged = (root / "staging" / sid / keys.SET_KEY_FILE).read_bytes()
    assert first[0] not in staged
    keys.forget(root)
    keys.unlock(root, password=PASSWORD)
    assert keys.new_set_block_keys(root, sid) == first
    # Once the manifest's envelope holds it, the staged copy goes (never published).
    keys.seal_manifest(root, sid, b"{}")
    assert not (root / "staging" / sid / keys.SET_KEY_FILE).exists()


@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_any_flipped_bit_of_a_sealed_block_is_found_at_its_block(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """One bit flipped anywhere in the stored bytes of any block (nonce, ciphertext or
    tag): FULL names that block (file, block index, offset) and a restore refuses it."""
    import rustybackup._core as core

    root = tmp_path_factory.mktemp("flip")
    src = root / "src"
    marked_tree(src, data.draw(st.integers(0, 999)), [9000, 5000])
    m = new_repo(root, src, data.draw(st.sampled_from([None, "zstd"])))
    s = m.backup("db", "full")
    piece = m.repository / "sets" / s.id / "data.piece"
    entries = core.read_piece_index(piece)
    file_no, block_index, offset, stored_len, _, _, _ = data.draw(st.sampled_from(entries))
    bit = data.draw(st.integers(0, stored_len * 8 - 1))
    raw = bytearray(piece.read_bytes())
    raw[offset + bit // 8] ^= 1 << (bit % 8)
    piece.write_bytes(bytes(raw))
    # The restore first: FULL marks the set CORRUPT, and recovery paths then avoid it.
    with pytest.raises(RustyBackupError, match=f"offset {offset}"):
        m.restore("db", root / "out")
    report = Verifier(m).verify(s.id, VerificationType.FULL)
    assert not report.ok
    bad = [(b.block_index, b.offset) for b in report.corrupt_blocks]
    assert bad == [(block_index, offset)]
    assert report.corrupt_blocks[0].file == sorted(p.name for p in src.iterdir())[file_no]


def test_two_rotations_from_two_processes_keep_both_generations(
    repo: tuple[BackupManager, Path, list[bytes]],
) -> None:
    # Two hosts opened the keys before either rotated: the second rotation reads the
    # keyring again (under its lock) instead of writing over the first one's generation.
    m, _, _ = repo
    root = m.repository
    a = keys.keys_for(root)
    assert a is not None
    b = keys.Keys(a.mac_key, dict(a.generations), a.current, master=a.master)
    g2 = keys.rotate(root, a)
    g3 = keys.rotate(root, b)
    assert (g2.id, g3.id) == ("g2", "g3")
    keys.forget(root)
    reopened = keys.unlock(root, password=PASSWORD)
    assert set(reopened.generations) == {"g1", "g2", "g3"} and reopened.current == "g3"
    assert reopened.generations["g2"].secret == g2.secret


def test_delta_restore_sparse_files_and_dump_of_an_encrypted_set(
    repo: tuple[BackupManager, Path, list[bytes]], tmp_path: Path
) -> None:
    from rustybackup import manifest as manifest_mod
    from rustybackup import tree_view
    from rustybackup.restore import RestoreOptions

    m, src, _ = repo
    sparse = src / "sparse"
    with open(sparse, "wb") as fh:
        fh.seek(1 << 20)
        fh.write(b"tail after a hole")
    s = m.backup("db", "full")
    out = tmp_path / "out"
    m.restore("db", out)
    assert tree_digest(out) == tree_digest(src)
    # Delta: one file damaged in the target is rewritten, the others kept.
    victim = sorted(p for p in out.iterdir() if p.name.startswith("f0"))[0]
    victim.write_bytes(b"not what was backed up")
    m.restore("db", out, options=RestoreOptions(delta=True))
    assert tree_digest(out) == tree_digest(src)
    man = manifest_mod.load(m.repository / "sets" / s.id / "manifest.json", set_id=s.id)
    dumped = tmp_path / "dumped"
    with open(dumped, "wb") as fh:
        tree_view.dump_file(m.repository, man, victim.name, fh.fileno())
    assert dumped.read_bytes() == (src / victim.name).read_bytes()
