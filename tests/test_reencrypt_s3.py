"""`key rotate --reencrypt` on an s3:// repository (reencrypt_remote.py, SeaweedFS): old
chains re-sealed into new object names and switched by a chain commit; restores
byte-identical from this host, from a host whose cache predates the switch and from a
fresh one; a keyless host's QUICK/STANDARD keep working from the updated records; no
old or staged object is left; `key status --json` shows the generations; `--drop-old`
only once everything is re-sealed, and then an old keyring opens nothing; a chain whose
bucket is busy is postponed; the bucket's commit honoured by readers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import (
    BackupManager,
    VerificationType,
    _core,
    keys,
    reencrypt,
    reencrypt_refresh,
    remote_keys,
    remote_repo,
)
from rustybackup.catalog import BackupSet
from rustybackup.errors import CatalogError, EncryptionError
from rustybackup.repo_url import parse_url
from rustybackup.verify import Verifier
from s3_support import SeaweedFS
from test_encryption_repo import _cheap_argon2, marked_tree, markers, tree_digest  # noqa: F401 - autouse fixture
from test_encryption_s3 import PASSWORD, bucket, host, run
from test_remote_commands import s3_env  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("s3_env")


class Bucket:
    """An encrypted bucket holding `db`: FULL -> INC (g1) -> rotation -> INC (g2), and
    `other`: a FULL after the rotation (g2, left alone). `snaps`: each set's source."""

    def __init__(self, server: SeaweedFS, prefix: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.server, self.prefix, self.tmp = server, prefix, tmp
        self.url = server.url(prefix)
        monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
        remote_keys.init_encryption(parse_url(self.url), password=PASSWORD)
        self.src = tmp / "src"
        self.marks = marked_tree(self.src, 5, [20_000, 7_000])
        m = BackupManager(self.url)
        m.register_database("db", self.src, block_size=4096, compression="zstd")
        self.snaps: dict[str, Path] = {}
        self.sets = [self._backup(m, "full")]
        extra = markers(12, 150)
        self.marks += extra
        (self.src / "grown").write_bytes(b"".join(extra))
        self.sets.append(self._backup(m, "incremental"))
        self.g1_keyring = self.objects()["keys/keyring"]
        with remote_keys.editing(parse_url(self.url), exclusive=True) as cache:
            found = keys.keys_for(cache)
            assert found is not None
            keys.rotate(cache, found)
        m = BackupManager(self.url)
        (self.src / "after").write_bytes(b"".join(markers(13, 80)))
        self.sets.append(self._backup(m, "incremental"))
        other = tmp / "other"
        marked_tree(other, 9, [4_000])
        m.register_database("other", other, block_size=4096)
        self.other = m.backup("other", "full")

    def _backup(self, m: BackupManager, kind: str) -> BackupSet:
        s = m.backup("db", kind)
        snap = self.tmp / f"snap-{len(self.snaps)}"
        shutil.copytree(self.src, snap)
        self.snaps[s.id] = snap
        return s

    def objects(self) -> dict[str, bytes]:
        return {k: v for k, v in bucket(self.server, self.prefix).items() if not k.startswith("locks/")}

    def check(self, m: BackupManager) -> None:
        """Every set restores byte for byte and FULL-verifies clean through `m`."""
        for s in [*self.sets, self.other]:
            report = Verifier(m).verify(s.id, VerificationType.FULL)
            assert report.ok, report.to_json()
        for sid, snap in self.snaps.items():
            out = self.tmp / f"out-{sid}-{id(m)}"
            m.restore("db", out, backup_set_id=sid)
            assert tree_digest(out) == tree_digest(snap)


def _status(url: str) -> dict[str, Any]:
    r = run(url, "key", "status", "--json")
    assert r.exit_code == 0, r.output
    parsed: dict[str, Any] = json.loads(r.output)
    return parsed


def test_reencrypt_on_s3_switches_chains_and_every_host_follows(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = Bucket(s3_server, s3_prefix, tmp_path, monkeypatch)
    old_ids = [s.id for s in b.sets]
    # A keyed reader and a keyless monitor that cached everything before the switch.
    host(monkeypatch, tmp_path, "reader")
    BackupManager(b.url, create=False).catalog.list_sets()
    monkeypatch.delenv(keys.PASSWORD_ENV)
    host(monkeypatch, tmp_path, "monitor")
    assert run(b.url, "verify", "--all", "--level", "standard").exit_code == 0
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    host(monkeypatch, tmp_path, "rotator")
    before = b.objects()
    status = _status(b.url)
    assert status["current"] == "g2" and status["pending"] is True
    assert status["sets"] == {old_ids[0]: "g1", old_ids[1]: "g1", old_ids[2]: "g2", b.other.id: "g2"}

    r = run(b.url, "key", "rotate", "--reencrypt", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    # Pending (g1 sets under g2): continued, no third generation made.
    assert out["rotated"] is False and out["done"] is True and out["generation"] == "g2"
    assert out["reencrypted"] == old_ids and out["current"] == [b.other.id]
    status = _status(b.url)
    assert status["pending"] is False and set(status["sets"].values()) == {"g2"}

    after = b.objects()
    # `other` (g2 already): byte-identical. The chain: new names, old ones gone, nothing staged.
    for k, v in before.items():
        if k.startswith(f"sets/{b.other.id}/"):
            assert after[k] == v
    for sid in old_ids:
        names = {k.split("/")[2] for k in after if k.startswith(f"sets/{sid}/")}
        tag = _tag(names)
        assert tag.startswith("g2-")
        assert names == {"manifest.json", "catalog.json", f"data.{tag}.piece", "blockmap"}
        for name in ("manifest.json", "catalog.json", "blockmap"):
            assert after[f"sets/{sid}/{name}"] != before[f"sets/{sid}/{name}"]
        record = json.loads(after[f"sets/{sid}/catalog.json"])
        assert [p["path"] for p in record["pieces"]] == [f"sets/{sid}/data.{tag}.piece"]
    assert not [k for k in after if k.endswith(".commit")]
    b.check(BackupManager(b.url, create=False))

    # The reader's cache predates the switch: it follows on open and restores.
    host(monkeypatch, tmp_path, "reader")
    b.check(BackupManager(b.url, create=False))
    # A fresh host too, and an incremental chains onto the re-sealed sets.
    host(monkeypatch, tmp_path, "fresh")
    m = BackupManager(b.url, create=False)
    # Each manifest it fetched is noted with the listing it came from (no second fetch).
    stamps = [m.repo.root / "sets" / s.id / reencrypt_refresh.STAMP for s in [*b.sets, b.other]]
    assert all(p.is_file() for p in stamps)
    (b.src / "later").write_bytes(b"later" * 999)
    b.sets.append(b._backup(m, "incremental"))
    b.check(m)
    # The keyless monitor's cached rows follow the new records: STANDARD still clean.
    monkeypatch.delenv(keys.PASSWORD_ENV)
    host(monkeypatch, tmp_path, "monitor")
    for level in ("quick", "standard"):
        res = run(b.url, "verify", "--all", "--level", level, "--json")
        assert res.exit_code == 0, res.output


def _tag(names: set[str]) -> str:
    """The `<generation>-<run>` of a re-sealed set's object names."""
    (piece,) = [n for n in names if n.startswith("data.")]
    return piece.removeprefix("data.").removesuffix(".piece")


def test_drop_old_waits_for_every_set_then_an_old_keyring_opens_nothing(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = Bucket(s3_server, s3_prefix, tmp_path, monkeypatch)
    s0 = b.sets[0].id
    first = BackupManager(b.url, create=False)
    opened = keys.keys_for(first.repo.root)
    assert opened is not None
    old_pair = keys.set_key_parts(opened, keys.stored_set_key(first.repo.root, s0)[0])[0]
    before_drop = b.objects()["keys/keyring"]
    # The bucket is busy (another host's shared lock): nothing switched, nothing dropped.
    monkeypatch.setattr(remote_repo, "LOCK_WAIT_SECONDS", 0.0)
    busy = parse_url(b.url)
    held = BackupManager(b.url).remote
    assert held is not None
    with held.locked("shared"):
        # What a running backup holds: the chain is built, then postponed at its switch.
        report = reencrypt.reencrypt(BackupManager(b.url, create=False))
        assert list(report.postponed) == [s0] and "the bucket is in use" in report.postponed[s0]
        assert report.reencrypted == [] and not report.done
        res = run(b.url, "key", "rotate", "--reencrypt", "--drop-old", "--json")
    assert res.exit_code == 1 and "old key generations are kept" in res.output, res.output
    assert _status(b.url)["pending"] is True
    assert not [k for k in b.objects() if ".g2-" in k or k.endswith(".commit")]
    res = run(str(busy), "key", "rotate", "--reencrypt", "--drop-old", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["dropped"] == ["g1"]
    assert b.objects()["keys/keyring"] != before_drop
    host(monkeypatch, tmp_path, "after")
    m = BackupManager(b.url, create=False)
    assert list(keys.keys_for(m.repo.root).generations) == ["g2"]  # type: ignore[union-attr]
    b.check(m)
    # The old block key opens no block of the re-sealed piece.
    (piece,) = [k for k in b.objects() if k.startswith(f"sets/{s0}/data.")]
    copy = tmp_path / "x" / s0 / piece.rsplit("/", 1)[-1]
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b.objects()[piece])
    with pytest.raises(EncryptionError, match="file #0 block 0"):
        _core.reseal_piece(copy, copy.with_name("out.piece"), old_pair, old_pair)
    # Someone who kept the keyring object from before the rotation: it opens no set.
    s3_server.client().put(s3_server.bucket, f"{s3_prefix}/keys/keyring", b.g1_keyring)
    host(monkeypatch, tmp_path, "old-keys")
    with pytest.raises(EncryptionError, match="generation 'g2' is not in this host's keys"):
        BackupManager(b.url, create=False)
    cache = parse_url(b.url).cache_dir()
    for s in [*b.sets, b.other]:
        with pytest.raises(EncryptionError, match="generation 'g2' is not in this host's keys"):
            keys.stored_set_key(cache, s.id)


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from rustybackup import BackupManager, reencrypt, remote_repo

    url, where = sys.argv[1], sys.argv[2]
    # The lock objects of this process, killed, expire soon after (restic's stale locks).
    remote_repo.LOCK_TTL_SECONDS = 3.0
    m = BackupManager(url, create=False)
    staged = []
    if where == "switch":
        real = remote_repo.RemoteRepository._get
        def get(self, rel, dest):
            # The switch fetches each set's staged manifest before putting it in place:
            # killed at the second, the first set is switched and the others are not.
            if "/manifest.g" in rel:
                staged.append(rel)
                if len(staged) == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(self, rel, dest)
        remote_repo.RemoteRepository._get = get
    def progress(event):
        if where == "build" and event["event"] == "resealed" and event["set"] == sys.argv[3]:
            os.kill(os.getpid(), signal.SIGKILL)
    reencrypt.reencrypt(m, progress=progress)
    """
)


def _kill_child(b: Bucket, where: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, b.url, where, b.sets[1].id], env=dict(os.environ), capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def _set_objects(b: Bucket, sid: str) -> set[str]:
    return {k.split("/")[2] for k in b.objects() if k.startswith(f"sets/{sid}/")}


@pytest.mark.parametrize("where", ["build", "switch"])
def test_a_run_killed_before_or_after_its_commit_is_finished_by_the_next(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    b = Bucket(s3_server, s3_prefix, tmp_path, monkeypatch)
    ids = [s.id for s in b.sets]
    before = b.objects()
    host(monkeypatch, tmp_path, "rotator")
    _kill_child(b, where)
    now = b.objects()
    if where == "build":
        # Killed before the commit: every object a reader uses is as it was.
        assert {k: v for k, v in now.items() if k in before} == before
        assert not [k for k in now if k.endswith(".commit")]
        assert [k for k in now if ".g2-" in k]  # the killed run's uploads, left for the next run
    else:
        # Killed after the commit, one set switched: a reader honours the commit and
        # sees the new chain whole (never the first set new and its children old).
        assert [k for k in now if k.endswith(".commit")]
        assert now[f"sets/{ids[0]}/manifest.json"] != before[f"sets/{ids[0]}/manifest.json"]
        assert now[f"sets/{ids[1]}/manifest.json"] == before[f"sets/{ids[1]}/manifest.json"]
        host(monkeypatch, tmp_path, "reader-during")
        b.check(BackupManager(b.url, create=False))
        monkeypatch.delenv(keys.PASSWORD_ENV)
        host(monkeypatch, tmp_path, "monitor-during")
        res = run(b.url, "verify", "--all", "--level", "standard")
        assert res.exit_code == 0, res.output
        monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
        assert _status(b.url)["pending"] is True
    host(monkeypatch, tmp_path, "rotator")
    report = reencrypt.reencrypt(BackupManager(b.url, create=False))
    assert report.done and sorted(set(report.reencrypted)) == sorted(ids)
    after = b.objects()
    assert not [k for k in after if k.endswith(".commit") or ".g2-" in k and not k.endswith(".piece")]
    for sid in ids:
        (piece,) = [n for n in _set_objects(b, sid) if n.startswith("data.")]
        assert _set_objects(b, sid) == {"manifest.json", "catalog.json", "blockmap", piece} and ".g2-" in piece
    assert set(_status(b.url)["sets"].values()) == {"g2"}
    host(monkeypatch, tmp_path, "after")
    b.check(BackupManager(b.url, create=False))


def test_restores_during_the_rewrite_see_the_old_or_the_new_chain(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = Bucket(s3_server, s3_prefix, tmp_path, monkeypatch)
    last = b.sets[-1].id
    host(monkeypatch, tmp_path, "rotator")
    env = dict(os.environ)
    child = subprocess.Popen(
        [sys.executable, "-c", "from rustybackup import BackupManager, reencrypt; import sys; "
         "r = reencrypt.reencrypt(BackupManager(sys.argv[1], create=False)); assert r.done, r", b.url],
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    restored = 0
    try:
        while child.poll() is None or restored == 0:
            host(monkeypatch, tmp_path, f"reader-{restored}")
            out = tmp_path / f"during-{restored}"
            m = BackupManager(b.url, create=False)
            m.restore("db", out, backup_set_id=last)
            assert tree_digest(out) == tree_digest(b.snaps[last])
            restored += 1
    finally:
        _, err = child.communicate(timeout=300)
    assert child.returncode == 0, err.decode()
    assert set(_status(b.url)["sets"].values()) == {"g2"}


def _commit_doc(ids: list[str]) -> dict[str, Any]:
    return {
        "format": 1,
        "generation": "g2",
        "root": ids[0],
        "sets": [
            {
                "id": sid,
                "manifest_blake2b": "ab" * 32,
                "staged_manifest": f"sets/{sid}/manifest.g2-abc.json",
                "staged_record": f"sets/{sid}/catalog.g2-abc.json",
                "staged_map": f"sets/{sid}/blockmap.g2-abc",
                "old": [f"sets/{sid}/data.piece"],
                "new_pieces": {f"{sid}/data.g2-abc.piece": [10, "cd" * 32, f"sets/{sid}/data.g2-abc.piece"]},
                "new_blockmap": [f"sets/{sid}/blockmap", "ef" * 32],
                "renamed": [],
            }
            for sid in ids
        ],
    }


FIELDS = ["staged_manifest", "staged_record", "staged_map", "old", "new_pieces", "new_blockmap"]
SET_IDS = st.builds(
    lambda n, tail: f"2026{n:02d}01T000000000000Z-{tail:08x}", st.integers(1, 12), st.integers(0, 2**32 - 1)
)


@settings(max_examples=20, deadline=None)
@given(ids=st.lists(SET_IDS, min_size=1, max_size=4, unique=True), field=st.sampled_from(FIELDS), which=st.data())
def test_commit_parse_accepts_what_the_run_writes_and_refuses_a_key_outside_its_set(
    ids: list[str], field: str, which: st.DataObject
) -> None:
    doc = _commit_doc(ids)
    assert reencrypt_refresh.parse_commit(json.dumps(doc).encode(), "c") == doc
    # Any object key moved to another set's directory (or outside sets/) is refused,
    # naming the entry: the switch deletes and overwrites what a commit names.
    i = which.draw(st.integers(0, len(ids) - 1))
    elsewhere = which.draw(st.sampled_from(["sets/20990101T000000000000Z-00000000/x", "keys/keyring", "format"]))
    entry = doc["sets"][i]
    if field == "old":
        entry["old"] = [elsewhere]
    elif field == "new_pieces":
        entry["new_pieces"] = {"p": [1, "00", elsewhere]}
    elif field == "new_blockmap":
        entry["new_blockmap"] = [elsewhere, "00"]
    else:
        entry[field] = elsewhere
    with pytest.raises(CatalogError, match=rf"c: sets\[{i}\]"):
        reencrypt_refresh.parse_commit(json.dumps(doc).encode(), "c")


@pytest.mark.parametrize(
    "data", [b"{", b"[]", b'{"format": 2, "sets": []}', b'{"format": 1, "sets": [{"id": "../x"}]}']
)
def test_a_damaged_commit_is_refused_naming_it(data: bytes) -> None:
    with pytest.raises(CatalogError, match="reencrypt/x.commit"):
        reencrypt_refresh.parse_commit(data, "reencrypt/x.commit")


def test_a_child_backed_up_during_the_build_postpones_the_chain(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = Bucket(s3_server, s3_prefix, tmp_path, monkeypatch)
    ids = [s.id for s in b.sets]
    host(monkeypatch, tmp_path, "rotator")
    m = BackupManager(b.url, create=False)
    joined: list[BackupSet] = []

    def progress(event: dict[str, Any]) -> None:
        # Another host's incremental of the chain's last set, while the chain is re-sealed:
        # its map names the old parent map, so switching now would break it.
        if event["event"] == "resealed" and not joined:
            (b.src / "meanwhile").write_bytes(b"m" * 5000)
            with monkeypatch.context() as other:
                other.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-backup-host"))
                joined.append(b._backup(BackupManager(b.url, create=False), "incremental"))

    report = reencrypt.reencrypt(m, progress=progress)
    assert list(report.postponed) == [ids[0]] and "new sets joined the chain" in report.postponed[ids[0]]
    assert not [k for k in b.objects() if ".g2-" in k or k.endswith(".commit")]
    assert joined and joined[0].parent_id == ids[-1]
    report = reencrypt.reencrypt(BackupManager(b.url, create=False))
    assert report.done and report.reencrypted == [*ids, joined[0].id]
    host(monkeypatch, tmp_path, "after")
    b.check(BackupManager(b.url, create=False))
