"""`key rotate --reencrypt` (reencrypt.py): old sets re-sealed under the current key
generation chain by chain, restores byte-identical, FULL verification clean, no plaintext,
sets not re-encrypted untouched, a damaged block stopping its chain with nothing switched,
a SIGKILLed run continued by the next, busy sets postponed, and old generations dropped
only when asked (after which an old keyring opens no set)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, VerificationType, _core, keys, reencrypt
from rustybackup.catalog import BackupSet
from rustybackup.cli import cli
from rustybackup.errors import EncryptionError
from rustybackup.verify import Verifier
from test_encryption_repo import (  # noqa: F401 - _cheap_argon2 is an autouse fixture
    PASSWORD,
    _cheap_argon2,
    assert_no_plaintext,
    marked_tree,
    markers,
    tree_digest,
)


class Repo:
    """An encrypted repository with two databases: `db` a chain FULL -> INC (generation
    g1) -> rotation -> INC (g2); `other` a FULL made after the rotation (g2 only, so
    re-encryption leaves it alone). `snaps` holds each set's source tree as it was."""

    def __init__(self, tmp: Path, seed: int = 1, sizes: tuple[int, ...] = (20_000, 9_000, 1)) -> None:
        self.tmp = tmp
        self.root = tmp / "repo"
        self.src = tmp / "src"
        self.marks = marked_tree(self.src, seed, list(sizes))
        self.m = BackupManager(self.root)
        keys.init_encryption(self.root, password=PASSWORD)
        self.m.register_database("db", self.src, block_size=4096, compression="zstd")
        self.snaps: dict[str, Path] = {}
        self.sets = [self._backup("full")]
        first = sorted(self.src.iterdir())[0]
        extra = markers(seed + 7, 200)
        self.marks += extra
        first.write_bytes(first.read_bytes()[:100] + b"".join(extra))
        self.sets.append(self._backup("incremental"))
        keys.rotate(self.root, self.opened)
        more = markers(seed + 9, 100)
        self.marks += more
        (self.src / "after-rotation").write_bytes(b"".join(more))
        self.sets.append(self._backup("incremental"))
        other_src = tmp / "other"
        self.marks += marked_tree(other_src, seed + 11, [5000])
        self.m.register_database("other", other_src, block_size=4096)
        self.other = self.m.backup("other", "full")

    @property
    def opened(self) -> keys.Keys:
        found = keys.keys_for(self.root)
        assert found is not None
        return found

    def _backup(self, kind: str) -> BackupSet:
        s = self.m.backup("db", kind)
        snap = self.tmp / f"snap-{len(self.snaps)}"
        shutil.copytree(self.src, snap)
        self.snaps[s.id] = snap
        return s

    def files_of(self, set_id: str) -> dict[str, bytes]:
        d = self.root / "sets" / set_id
        return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}

    def check_all(self) -> None:
        """Every set of `db` restores byte for byte and passes FULL verification."""
        for s in [*self.sets, self.other]:
            report = Verifier(self.m).verify(s.id, VerificationType.FULL)
            assert report.ok, report
        for sid, snap in self.snaps.items():
            out = self.tmp / f"out-{sid}"
            shutil.rmtree(out, ignore_errors=True)
            self.m.restore("db", out, backup_set_id=sid)
            assert tree_digest(out) == tree_digest(snap)


def generations(r: Repo) -> dict[str, str | None]:
    return reencrypt.set_generations(r.root, [s.id for s in [*r.sets, r.other]])


@settings(max_examples=3, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40_000), min_size=1, max_size=3),
    seed=st.integers(0, 10_000),
)
def test_reencrypt_reseals_old_chains_and_leaves_current_ones(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], seed: int
) -> None:
    r = Repo(tmp_path_factory.mktemp("re"), seed, tuple(sizes))
    assert generations(r) == {r.sets[0].id: "g1", r.sets[1].id: "g1", r.sets[2].id: "g2", r.other.id: "g2"}
    before = {s.id: r.files_of(s.id) for s in [*r.sets, r.other]}
    old_keys = {s.id: keys.stored_set_key(r.root, s.id)[0] for s in r.sets}
    report = reencrypt.reencrypt(r.m)
    assert report.done and report.failed == {} and report.postponed == {}
    assert report.reencrypted == [s.id for s in r.sets]
    assert report.current == [r.other.id]
    assert set(generations(r).values()) == {"g2"}
    # `other` was under g2 already: not a byte of it changed.
    assert r.files_of(r.other.id) == before[r.other.id]
    for s in r.sets:
        now = r.files_of(s.id)
        assert now.keys() == before[s.id].keys()
        assert now["data.piece"] != before[s.id]["data.piece"]
        assert now["blockmap"] != before[s.id]["blockmap"]
        assert keys.stored_set_key(r.root, s.id)[0] != old_keys[s.id]
    # The catalog agrees with the files (STANDARD compares the rows with the files).
    for s in r.sets:
        assert Verifier(r.m).verify(s.id, VerificationType.STANDARD).ok
    r.check_all()
    assert_no_plaintext(r.root, r.marks)
    assert sorted(os.listdir(r.root / "reencrypt")) == [".lock"]
    # A second run finds nothing to do and changes nothing.
    after = {s.id: r.files_of(s.id) for s in r.sets}
    again = reencrypt.reencrypt(r.m)
    assert again.reencrypted == [] and sorted(again.current) == sorted(s.id for s in [*r.sets, r.other])
    assert {s.id: r.files_of(s.id) for s in r.sets} == after


def test_new_backups_after_reencryption_chain_onto_the_resealed_sets(tmp_path: Path) -> None:
    r = Repo(tmp_path)
    reencrypt.reencrypt(r.m)
    (r.src / "later").write_bytes(b"x" * 10_000)
    r.sets.append(r._backup("incremental"))
    assert r.sets[-1].parent_id == r.sets[2].id
    keys.forget(r.root)
    keys.unlock(r.root, password=PASSWORD)
    r.check_all()


def test_drop_old_removes_the_generation_and_an_old_keyring_opens_no_set(tmp_path: Path) -> None:
    r = Repo(tmp_path)
    s0 = r.sets[0]
    old_pair = keys.set_key_parts(r.opened, keys.stored_set_key(r.root, s0.id)[0])[0]
    res = CliRunner().invoke(cli, ["--repo", str(r.root), "key", "rotate", "--drop-old"])
    assert res.exit_code == 2 and "--drop-old goes with --reencrypt" in res.output
    report = reencrypt.reencrypt(r.m, drop_old=True)
    assert report.dropped == ["g1"]
    assert list(r.opened.generations) == ["g2"]
    keys.forget(r.root)
    keys.unlock(r.root, password=PASSWORD)
    assert list(r.opened.generations) == ["g2"]
    r.check_all()
    # The old block key opens no block of the re-sealed piece.
    (tmp_path / "x" / s0.id).mkdir(parents=True)
    with pytest.raises(EncryptionError, match="file #0 block 0"):
        _core.reseal_piece(
            r.root / "sets" / s0.id / "data.piece", tmp_path / "x" / s0.id / "data.piece", old_pair, old_pair
        )
    # A rotation after the drop gets a new id, never the dropped one.
    assert keys.rotate(r.root, r.opened).id == "g3"


def test_a_keyring_from_before_the_rotation_opens_no_reencrypted_set(tmp_path: Path) -> None:
    src = tmp_path / "src"
    marked_tree(src, 3, [12_000])
    root = tmp_path / "repo"
    m = BackupManager(root)
    keys.init_encryption(root, password=PASSWORD)
    m.register_database("db", src, block_size=4096)
    s = m.backup("db", "full")
    before_rotation = tmp_path / "keys-g1"
    shutil.copytree(root / "keys", before_rotation)
    opened = keys.keys_for(root)
    assert opened is not None
    keys.rotate(root, opened)
    report = reencrypt.reencrypt(m, drop_old=True)
    assert report.reencrypted == [s.id] and report.dropped == ["g1"]
    # Someone who kept the old keys/ directory (its slot and its g1 keyring): no set opens.
    shutil.rmtree(root / "keys")
    shutil.copytree(before_rotation, root / "keys")
    keys.forget(root)
    keys.unlock(root, password=PASSWORD)
    with pytest.raises(EncryptionError, match="generation 'g2' is not in this host's keys"):
        keys.stored_set_key(root, s.id)
    with pytest.raises(EncryptionError, match="g2"):
        m.restore("db", tmp_path / "out")


def test_a_damaged_block_stops_its_chain_naming_it_and_nothing_is_switched(tmp_path: Path) -> None:
    r = Repo(tmp_path)
    s1 = r.sets[1]
    piece = r.root / "sets" / s1.id / "data.piece"
    entries = _core.read_piece_index(piece)
    file_no, block_index, offset, stored_len, _, _, _ = entries[-1]
    data = bytearray(piece.read_bytes())
    data[offset + stored_len // 2] ^= 0x01
    piece.write_bytes(bytes(data))
    before = {s.id: r.files_of(s.id) for s in [*r.sets, r.other]}
    report = reencrypt.reencrypt(r.m)
    assert not report.done and report.reencrypted == []
    why = report.failed[r.sets[0].id]
    assert f"sets/{s1.id}/data.piece" in why
    assert f"file #{file_no} block {block_index}" in why and f"offset {offset}" in why
    assert {s.id: r.files_of(s.id) for s in [*r.sets, r.other]} == before
    assert sorted(os.listdir(r.root / "reencrypt")) == [".lock"]
    assert generations(r)[r.sets[0].id] == "g1"
    # --drop-old refuses while a chain is left.
    with pytest.raises(EncryptionError, match="not re-encrypted yet"):
        reencrypt.reencrypt(r.m, drop_old=True)
    assert "g1" in r.opened.generations


def test_a_set_being_read_postpones_its_chain_to_the_next_run(tmp_path: Path) -> None:
    r = Repo(tmp_path)
    before = r.files_of(r.sets[0].id)
    with r.m.reading([r.sets[1].id]):
        report = reencrypt.reencrypt(r.m)
    assert r.sets[0].id in report.postponed and "is being read" in report.postponed[r.sets[0].id]
    assert r.files_of(r.sets[0].id) == before
    report = reencrypt.reencrypt(r.m)
    assert report.done and report.reencrypted == [s.id for s in r.sets]
    r.check_all()


def test_a_running_backup_postpones_the_switch(tmp_path: Path) -> None:
    from rustybackup import locks

    r = Repo(tmp_path)
    staging = r.root / "staging" / "20991231T000000000000Z-0000abcd"
    staging.mkdir(parents=True)
    fd = locks.hold_staging_lock(staging)
    try:
        report = reencrypt.reencrypt(r.m)
    finally:
        os.close(fd)
    assert "a backup is running" in report.postponed[r.sets[0].id]
    # A killed backup's leftover (no live lock) does not hold the switch back.
    assert reencrypt.reencrypt(r.m).done


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from rustybackup import BackupManager, keys, reencrypt

    root, where = Path(sys.argv[1]), sys.argv[2]
    keys.unlock(root, password=os.environ["RB_TEST_PASSWORD"])
    m = BackupManager(root)
    seen = []
    if where == "exchange":
        real = reencrypt._exchange
        def exchange(a, b):
            real(a, b)
            os.kill(os.getpid(), signal.SIGKILL)
        reencrypt._exchange = exchange
    def progress(event):
        seen.append(event)
        if where == "build" and event["event"] == "resealed" and len(seen) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    reencrypt.reencrypt(m, progress=progress)
    """
)


@pytest.mark.parametrize("where", ["build", "exchange"])
def test_a_run_killed_midway_is_continued_by_the_next(tmp_path: Path, where: str) -> None:
    r = Repo(tmp_path)
    before = {s.id: r.files_of(s.id) for s in r.sets}
    env = dict(os.environ, RB_TEST_PASSWORD=PASSWORD)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(r.root), where], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    if where == "build":
        # Killed before the commit: nothing in sets/ changed, the work is left behind.
        assert {s.id: r.files_of(s.id) for s in r.sets} == before
        assert any(p.is_dir() for p in (r.root / "reencrypt").iterdir())
    else:
        # Killed after the first swap: the commit is there and one set is switched.
        commits = list((r.root / "reencrypt").glob("*.commit"))
        assert len(commits) == 1
        assert r.files_of(r.sets[0].id) != before[r.sets[0].id]
        assert r.files_of(r.sets[1].id) == before[r.sets[1].id]
        status = CliRunner().invoke(cli, ["--repo", str(r.root), "key", "status", "--json"])
        assert json.loads(status.output)["pending"] is True
    keys.forget(r.root)
    keys.unlock(r.root, password=PASSWORD)
    report = reencrypt.reencrypt(r.m)
    assert report.done
    assert sorted(set(report.reencrypted)) == sorted(s.id for s in r.sets)
    assert set(generations(r).values()) == {"g2"}
    assert sorted(os.listdir(r.root / "reencrypt")) == [".lock"]
    r.check_all()
    assert_no_plaintext(r.root, r.marks)


def test_cli_rotate_reencrypt_json_and_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = Repo(tmp_path)
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    runner = CliRunner()
    base = ["--repo", str(r.root), "key"]
    status = json.loads(runner.invoke(cli, [*base, "status", "--json"], catch_exceptions=False).output)
    assert status["current"] == "g2" and status["pending"] is True
    assert status["sets"][r.sets[0].id] == "g1"
    # A re-encryption is pending (g1 sets): --reencrypt continues it, no new generation.
    res = runner.invoke(cli, [*base, "rotate", "--reencrypt", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["rotated"] is False and summary["done"] is True and summary["generation"] == "g2"
    events = [json.loads(line) for line in res.stderr.splitlines()]
    assert [e["event"] for e in events] == ["resealed"] * 3 + ["switched"]
    # Nothing pending: --reencrypt rotates first, then re-seals every set under g3.
    res = runner.invoke(cli, [*base, "rotate", "--reencrypt", "--drop-old", "--json"], catch_exceptions=False)
    summary = json.loads(res.stdout)
    assert summary["rotated"] is True and summary["generation"] == "g3"
    assert sorted(summary["dropped"]) == ["g1", "g2"]
    status = json.loads(runner.invoke(cli, [*base, "status", "--json"], catch_exceptions=False).output)
    assert set(status["sets"].values()) == {"g3"} and status["pending"] is False
    keys.forget(r.root)
    r.check_all()
    # Without a key, status still shows each set's generation.
    monkeypatch.delenv(keys.PASSWORD_ENV)
    keys.forget(r.root)
    status = json.loads(runner.invoke(cli, [*base, "status", "--json"], catch_exceptions=False).output)
    assert status["current"] is None and set(status["sets"].values()) == {"g3"}


def test_an_unencrypted_repository_has_nothing_to_reencrypt(tmp_path: Path) -> None:
    m = BackupManager(tmp_path / "repo")
    with pytest.raises(EncryptionError, match="not encrypted"):
        reencrypt.reencrypt(m)


def test_chain_trees_against_a_parent_walk() -> None:
    from datetime import UTC, datetime, timedelta

    from rustybackup.enums import BackupType, SetStatus

    def mk(i: int, parent: int | None) -> BackupSet:
        t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i)
        sid = f"20260101T{i:06d}000000Z-0000000{i % 10}"
        return BackupSet(
            id=sid,
            database="db",
            backup_type=BackupType.FULL if parent is None else BackupType.INCREMENTAL,
            parent_id=None if parent is None else f"20260101T{parent:06d}000000Z-0000000{parent % 10}",
            started_at=t,
            finished_at=t,
            status=SetStatus.AVAILABLE,
            size=0,
            block_size=4096,
            algorithm="blake3",
            compression=None,
            tags=(),
            bytes_read=0,
            file_count=0,
            manifest="",
            blockmap="",
            blockmap_checksum="",
            pieces=(),
        )

    @settings(max_examples=30, deadline=None)
    @given(st.lists(st.integers(0, 40), min_size=1, max_size=12))
    def check(parents: list[int]) -> None:
        # Set i's parent is an earlier set (or none when the draw is >= i).
        sets = [mk(i, p if p < i else None) for i, p in enumerate(parents)]
        trees = reencrypt.chain_trees(sets)
        by_id = {s.id: s for s in sets}

        def root(s: BackupSet) -> str:
            while s.parent_id is not None:
                s = by_id[s.parent_id]
            return s.id

        assert sorted(x.id for t in trees for x in t) == sorted(by_id)
        for t in trees:
            assert len({root(x) for x in t}) == 1
            placed: set[str] = set()
            for x in t:
                assert x.parent_id is None or x.parent_id in placed
                placed.add(x.id)
        assert len(trees) == len({root(s) for s in sets})

    check()
