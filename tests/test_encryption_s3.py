"""Encrypted repositories in a bucket (SeaweedFS, tests/s3_support.py): `init --encryption`
and the key commands on s3:// (slots and keyring as objects, the last-decrypting-slot
rule, two hosts adding slots at once), FULL + INCREMENTAL backups restored through the
streamed ranged restore, QUICK/STANDARD from a host without the key and FULL with it
finding a flipped byte at its block, a write-only host, the catalog rebuilt from the
bucket with the key, a wrong passphrase, and no marker in any object of the bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rustybackup import BackupManager, VerificationType, keys, remote_keys, remote_repo, store
from rustybackup.cli import cli
from rustybackup.errors import EncryptionError, RepositoryLocked, RustyBackupError
from rustybackup.repo_url import parse_url
from rustybackup.verify import Verifier
from s3_support import SeaweedFS
from test_encryption_repo import _cheap_argon2, marked_tree, markers, tree_digest  # noqa: F401 - autouse fixture
from test_remote_commands import s3_env  # noqa: F401 - the fixture: AWS environment and host A's cache

# Every test talks to the session's SeaweedFS as host A (AWS environment, its own cache).
pytestmark = pytest.mark.usefixtures("s3_env")

PASSWORD = "correct horse battery staple"


def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    """Act as another host from now on: its own, empty cache, and no unlocked keys."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / f"cache-{name}"))
    with keys._lock:
        keys._unlocked.clear()
    keys._credentials.clear()


def run(url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    """One command, as a new process would run it (no keys unlocked before)."""
    with keys._lock:
        keys._unlocked.clear()
    keys._credentials.clear()
    return CliRunner().invoke(cli, ["--repo", url, *args], env=env)


def bucket(server: SeaweedFS, prefix: str) -> dict[str, bytes]:
    """Every object of the repository, read with the independent client (not ours)."""
    c = server.client()
    out = {}
    for k in sorted(c.list_keys(server.bucket, prefix + "/")):
        data = c.get(server.bucket, k)
        assert data is not None, k
        out[k[len(prefix) + 1 :]] = data
    return out


def without_locks(objects: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in objects.items() if not k.startswith("locks/")}


def slot_ids(objects: dict[str, bytes]) -> set[str]:
    return {k[5:-5] for k in objects if k.startswith("keys/") and k.endswith(".json")}


def test_init_and_key_commands_on_s3(s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    url = s3_server.url(s3_prefix)
    pw = {keys.PASSWORD_ENV: PASSWORD}
    r = run(url, "init", "--encryption", env=pw)
    assert r.exit_code == 0, r.output
    objs = bucket(s3_server, s3_prefix)
    assert objs["format"] == f"{store.FORMAT_WORD} 2\n".encode()
    assert "keys/keyring" in objs and len(slot_ids(objs)) == 1
    (first,) = slot_ids(objs)
    # Again: refused, nothing changed.
    again = run(url, "init", "--encryption", env=pw)
    assert again.exit_code == 1 and "already encrypted" in again.output
    assert without_locks(bucket(s3_server, s3_prefix)) == without_locks(objs)

    listed = run(url, "key", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [s["id"] for s in json.loads(listed.output)] == [first]
    # A wrong passphrase adds nothing.
    wrong = run(url, "key", "add", "--new-key-file", str(tmp_path / "k0"), env={keys.PASSWORD_ENV: "wrong"})
    assert wrong.exit_code == 1 and "opens no key slot" in wrong.output
    assert without_locks(bucket(s3_server, s3_prefix)) == without_locks(objs)

    kf = tmp_path / "repo.key"
    added = run(url, "key", "add", "--new-key-file", str(kf), "--json", env=pw)
    assert added.exit_code == 0, added.output
    kslot = json.loads(added.output)["id"]
    assert slot_ids(bucket(s3_server, s3_prefix)) == {first, kslot}
    # The key file opens the repository from another cache (the slot came from the bucket).
    listed = run(url, "--key-file", str(kf), "key", "rotate", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["generation"] == "g2"
    after_rotate = bucket(s3_server, s3_prefix)
    assert after_rotate["keys/keyring"] != objs["keys/keyring"]

    # Removing the passphrase slot leaves the key file; removing that one is refused.
    assert run(url, "key", "remove", first, env=pw).exit_code == 0
    assert slot_ids(bucket(s3_server, s3_prefix)) == {kslot}
    refused = run(url, "--key-file", str(kf), "key", "remove", kslot)
    assert refused.exit_code == 1 and "last one that can decrypt" in refused.output
    assert slot_ids(bucket(s3_server, s3_prefix)) == {kslot}
    # The removed passphrase opens nothing any more, from any cache.
    gone = run(url, "key", "add", "--new-key-file", str(tmp_path / "k1"), env=pw)
    assert gone.exit_code == 1 and "opens no key slot" in gone.output


def test_two_hosts_adding_slots_at_once_keep_both(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = parse_url(s3_server.url(s3_prefix))
    remote_keys.init_encryption(url, password=PASSWORD)
    # Host A has read the slots and is writing its new one when host B adds its own:
    # neither rewrites the other (each slot is its own object, created conditionally).
    with remote_keys.editing(url, exclusive=False) as root_a:
        a = keys.add_key_file(root_a, keys.unlock(root_a, password=PASSWORD), tmp_path / "a.key")
        host(monkeypatch, tmp_path, "b")
        with remote_keys.editing(url, exclusive=False) as root_b:
            b = keys.add_key_file(root_b, keys.unlock(root_b, password=PASSWORD), tmp_path / "b.key")
        host(monkeypatch, tmp_path, "a")
    ids = slot_ids(bucket(s3_server, s3_prefix))
    assert {a.id, b.id} < ids and len(ids) == 3
    # Both open the repository from a third host.
    for kf in ("a.key", "b.key"):
        host(monkeypatch, tmp_path, "c")
        assert keys.unlock(remote_repo.RemoteRepository(url).cache, key_file=tmp_path / kf).can_decrypt

    # Two real processes adding at the same moment: both slots are there afterwards.
    env = {**os.environ, keys.PASSWORD_ENV: PASSWORD}
    procs = []
    for name in ("p", "q"):
        env_i = {**env, "XDG_CACHE_HOME": str(tmp_path / f"cache-{name}")}
        cmd = [sys.executable, "-m", "rustybackup", "--repo", str(url), "key", "add", "--json"]
        cmd += ["--new-key-file", str(tmp_path / f"{name}.key")]
        procs.append(subprocess.Popen(cmd, env=env_i, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    new = set()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        new.add(json.loads(out)["id"])
    assert slot_ids(bucket(s3_server, s3_prefix)) == ids | new and len(new) == 2


def test_remove_and_rotate_wait_for_the_exclusive_lock(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = parse_url(s3_server.url(s3_prefix))
    remote_keys.init_encryption(url, password=PASSWORD, key_file=tmp_path / "k")
    objs = bucket(s3_server, s3_prefix)
    monkeypatch.setattr(remote_repo, "LOCK_WAIT_SECONDS", 0.0)
    # Host A removes a slot (it holds the exclusive lock while deciding); host B's remove
    # of the other decrypting slot at that moment is refused instead of racing it, so
    # the two can never remove the last two decrypting slots between them.
    first, second = sorted(slot_ids(objs))
    with remote_keys.editing(url, exclusive=True) as root_a:
        host(monkeypatch, tmp_path, "b")
        with pytest.raises(RepositoryLocked):
            with remote_keys.editing(url, exclusive=True) as root_b:
                keys.remove_slot(root_b, second)
        with pytest.raises(RepositoryLocked):
            with remote_keys.editing(url, exclusive=True) as root_b:
                keys.rotate(root_b, keys.unlock(root_b, password=PASSWORD))
        host(monkeypatch, tmp_path, "a")
        keys.remove_slot(root_a, first)
    assert slot_ids(bucket(s3_server, s3_prefix)) == {second}
    host(monkeypatch, tmp_path, "b")
    with pytest.raises(EncryptionError, match="last one that can decrypt"):
        with remote_keys.editing(url, exclusive=True) as root_b:
            keys.remove_slot(root_b, second)
    assert without_locks(bucket(s3_server, s3_prefix))["keys/keyring"] == objs["keys/keyring"]


def test_a_bucket_that_says_encrypted_without_its_keyring_is_refused(s3_server: SeaweedFS, s3_prefix: str) -> None:
    url = parse_url(s3_server.url(s3_prefix))
    remote_keys.init_encryption(url, password=PASSWORD)
    s3_server.client().request("DELETE", f"/{s3_server.bucket}/{s3_prefix}/keys/keyring")
    with pytest.raises(EncryptionError, match="keys/keyring: missing, but the repository's format object says"):
        BackupManager(str(url), create=False)


def flip_block(server: SeaweedFS, prefix: str, set_id: str, entry: int) -> tuple[int, int]:
    """Flips one byte inside a stored block of the set's piece object; returns the
    block's (index, offset in the piece)."""
    import rustybackup._core as core

    c = server.client()
    key = f"{prefix}/sets/{set_id}/data.piece"
    data = c.get(server.bucket, key)
    assert data is not None
    scratch = Path(os.environ["XDG_CACHE_HOME"]) / "piece-copy"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    scratch.write_bytes(data)
    entries = core.read_piece_index(scratch)
    scratch.unlink()
    _, block_index, offset, stored_len, _, flags, _ = entries[entry]
    assert flags & 2, "the stored block is sealed"
    changed = bytearray(data)
    changed[offset + stored_len // 2] ^= 0x40
    c.put(server.bucket, key, bytes(changed))
    return block_index, offset


def test_encrypted_s3_end_to_end(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_server.url(s3_prefix)
    src = tmp_path / "src"
    marks = marked_tree(src, 11, [40_000, 9_000, 1, 0])
    remote_keys.init_encryption(parse_url(url), password=PASSWORD)
    wo_key = tmp_path / "host7.key"
    with remote_keys.editing(parse_url(url), exclusive=False) as root:
        keys.add_write_only(root, keys.unlock(root, password=PASSWORD), wo_key)
    m = BackupManager(url)
    m.register_database("db", src, block_size=4096)
    full = m.backup("db", "full")
    first = sorted(src.iterdir())[0]
    extra = markers(99, 400)
    marks += extra
    first.write_bytes(first.read_bytes()[:100] + b"".join(extra))
    inc = m.backup("db", "incremental")
    assert inc.parent_id == full.id

    # No marker and no file name in any stored byte of the bucket.
    objs = bucket(s3_server, s3_prefix)
    assert any(k.endswith("/data.piece") for k in objs) and any(k.endswith("/blockmap") for k in objs)
    wanted = set(marks)
    for k, data in objs.items():
        for i in range(len(data) - 15):
            assert data[i : i + 16] not in wanted, f"a marker at offset {i} of {k}"
        for mk in marks:
            assert mk.hex().encode() not in data, f"a file name in {k}"
    assert not any(k.endswith(keys.SET_KEY_FILE) for k in objs), "a staged set key was uploaded"

    # Restore on another host, with the key: the streamed ranged restore opens sealed
    # blocks and sealed block maps; the chain comes out byte for byte.
    host(monkeypatch, tmp_path, "b")
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    other = BackupManager(url, create=False)
    assert {s.id for s in other.catalog.list_sets()} == {full.id, inc.id}  # rebuilt from the bucket
    other.restore("db", tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(src)
    assert Verifier(other).verify(inc.id, VerificationType.FULL).ok

    # The same host without any key (a monitoring host whose catalog cache is built):
    # QUICK and STANDARD work on the ciphertext, FULL says it needs a key.
    host(monkeypatch, tmp_path, "b")
    monkeypatch.delenv(keys.PASSWORD_ENV)
    mon = BackupManager(url, create=False)
    for level in (VerificationType.QUICK, VerificationType.STANDARD):
        assert Verifier(mon).verify(inc.id, level).ok
    with pytest.raises(EncryptionError, match="QUICK and STANDARD need no key"):
        Verifier(mon).verify(inc.id, VerificationType.FULL)
    with pytest.raises(EncryptionError, match="repository is encrypted"):
        mon.restore("db", tmp_path / "nope")
    # A fresh host without a key builds its catalog from the sets' clear records
    # (catalog_record.py) and scrubs the ciphertext just the same.
    host(monkeypatch, tmp_path, "fresh")
    fresh = BackupManager(url, create=False)
    assert {s.id for s in fresh.catalog.list_sets()} == {full.id, inc.id}
    for level in (VerificationType.QUICK, VerificationType.STANDARD):
        assert Verifier(fresh).verify(inc.id, level).ok

    # A write-only host backs up (FULL and INCREMENTAL) but cannot restore.
    host(monkeypatch, tmp_path, "wo")
    monkeypatch.setenv(keys.KEY_FILE_ENV, str(wo_key))
    wo = BackupManager(url, create=False)
    assert wo.catalog.list_sets() == []  # the other hosts' sets are sealed to it
    wo.register_database("db", src, block_size=4096)
    w1 = wo.backup("db", "full")
    (src / "late").write_bytes(b"".join(markers(5, 50)))
    w2 = wo.backup("db", "incremental")
    assert w2.parent_id == w1.id
    with pytest.raises(EncryptionError, match="write-only key"):
        wo.restore("db", tmp_path / "nope")
    assert not any((tmp_path / "nope").rglob("*")), "a write-only host restored something"
    # The other hosts' sets are named as sealed to it, not kept (or fetched again) in its cache.
    sealed = (wo.repository / remote_keys.SEALED_SETS).read_text().split()
    assert sorted(sealed) == sorted([full.id, inc.id])
    assert not (wo.repository / "sets" / full.id).exists()
    assert {s.id for s in BackupManager(url, create=False).catalog.list_sets()} == {w1.id, w2.id}
    # The same cache given the passphrase registers every set (the list is forgotten).
    host(monkeypatch, tmp_path, "wo")  # the same cache: only the keys change
    monkeypatch.delenv(keys.KEY_FILE_ENV)
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    keyed = BackupManager(url, create=False)
    assert {s.id for s in keyed.catalog.list_sets()} == {full.id, inc.id, w1.id, w2.id}
    assert not (keyed.repository / remote_keys.SEALED_SETS).exists()
    monkeypatch.delenv(keys.PASSWORD_ENV)

    # A wrong passphrase: one clear error, nothing written to the bucket.
    host(monkeypatch, tmp_path, "wrong")
    monkeypatch.setenv(keys.PASSWORD_ENV, "not it")
    before = without_locks(bucket(s3_server, s3_prefix))
    for args in (["backup", "db", "--type", "incremental"], ["restore", "db", "--to", str(tmp_path / "w")]):
        r = run(url, *args)
        assert r.exit_code == 1 and "opens no key slot" in r.output, r.output
        assert r.output.count("opens no key slot") == 1
    assert without_locks(bucket(s3_server, s3_prefix)) == before

    # A flipped byte in a stored block of the bucket: FULL (with the key) names the
    # piece, the file, the block and its offset; the restore refuses it.
    host(monkeypatch, tmp_path, "c")
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    # With the key, the catalog is rebuilt from the bucket: a lost cache, then a lost catalog.db.
    every = {full.id, inc.id, w1.id, w2.id}
    assert {s.id for s in BackupManager(url, create=False).catalog.list_sets()} == every
    remote_repo.drop_cache(parse_url(url))
    host(monkeypatch, tmp_path, "c")
    rebuilt = BackupManager(url, create=False)
    assert {s.id for s in rebuilt.catalog.list_sets()} == every
    (rebuilt.repository / store.CATALOG_FILE).unlink()
    host(monkeypatch, tmp_path, "c")
    assert {s.id for s in BackupManager(url, create=False).catalog.list_sets()} == every
    block_index, offset = flip_block(s3_server, s3_prefix, full.id, 1)
    checker = BackupManager(url, create=False)
    report = Verifier(checker).verify(full.id, VerificationType.FULL)
    assert not report.ok
    bad = [b for b in report.corrupt_blocks if b.offset == offset]
    assert bad and bad[0].block_index == block_index and bad[0].set_id == full.id
    assert bad[0].piece and bad[0].file
    with pytest.raises(RustyBackupError):
        checker.restore("db", tmp_path / "damaged", backup_set_id=full.id)


def test_copy_local_encrypted_to_s3_and_back_keeps_the_ciphertext(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    src = tmp_path / "src"
    marks = marked_tree(src, 23, [30_000, 5_000])
    local = tmp_path / "local"
    m = BackupManager(local)
    keys.init_encryption(local, password=PASSWORD)
    m.register_database("db", src, block_size=4096)
    full = m.backup("db", "full")
    (src / "more").write_bytes(b"".join(markers(24, 200)))
    inc = m.backup("db", "incremental")
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)  # the copied slots open with the same passphrase
    url = s3_server.url(s3_prefix)
    r = CliRunner().invoke(cli, ["copy", "--from", str(local), "--to", url, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["copied"] == [full.id, inc.id]
    objs = bucket(s3_server, s3_prefix)
    # The same keys, the same stored bytes: nothing was decrypted or sealed again.
    assert objs["format"] == f"{store.FORMAT_WORD} 2\n".encode()
    assert objs["keys/keyring"] == (local / "keys" / "keyring").read_bytes()
    for sid in (full.id, inc.id):
        for name in ("data.piece", "blockmap", "manifest.json"):
            assert objs[f"sets/{sid}/{name}"] == (local / "sets" / sid / name).read_bytes(), (sid, name)
    for k, data in objs.items():
        assert not any(mk in data for mk in marks), f"a marker in {k}"

    # Back into a fresh local directory, from another host's cache.
    host(monkeypatch, tmp_path, "b")
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    back = tmp_path / "back"
    r = CliRunner().invoke(cli, ["copy", "--from", url, "--to", str(back), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["copied"] == [full.id, inc.id]
    assert (back / "keys" / "keyring").read_bytes() == (local / "keys" / "keyring").read_bytes()
    assert (back / "sets" / inc.id / "data.piece").read_bytes() == (local / "sets" / inc.id / "data.piece").read_bytes()
    b = BackupManager(back)
    b.restore("db", tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(src)
    assert Verifier(b).verify(inc.id, VerificationType.FULL).ok

    # An unencrypted target that holds sets is refused, nothing copied.
    plain = tmp_path / "plain"
    p = BackupManager(plain)
    p.register_database("other", src)
    p.backup("other", "full")
    r = CliRunner().invoke(cli, ["copy", "--from", url, "--to", str(plain)])
    assert r.exit_code == 1 and "only with --decrypt" in r.output and "nothing was copied" in r.output
    assert not (plain / "keys").exists() and len(p.catalog.list_sets()) == 1
