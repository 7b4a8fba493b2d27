"""Unchanged files are not read again (issue 17, restic's rule): a file whose size, mtime,
ctime, inode and device equal its entry in the parent set is taken over unread, its
blocks referred to in the parent's block map. Anything else is read: a rewrite that put
the mtime back (its ctime moved), a same-size rewrite, a file replaced by another inode,
and everything under --force-read. The oracle for contents is the source tree itself."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from engine_support import SimClock, snapshot_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from manifest_support import stored
from rustybackup import BackupManager, BackupSet, BackupType, engine, sources
from rustybackup.cli import cli
from rustybackup.errors import CatalogError
from rustybackup.manifest import FileEntry
from rustybackup.selection import Selection


@pytest.fixture
def manager(tmp_path: Path) -> BackupManager:
    return BackupManager(tmp_path / "repo", clock=SimClock())


def make(src: Path, n: int = 6, size: int = 20_000) -> None:
    src.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (src / f"f{i}").write_bytes(os.urandom(size))


def full_of_a_tree(manager: BackupManager, tmp_path: Path) -> tuple[Path, BackupSet]:
    """The six files of `make` in ``tmp_path/src``, registered as "t", and their FULL."""
    src = tmp_path / "src"
    make(src)
    manager.register_database("t", src)
    return src, manager.backup("t", BackupType.FULL)


def restored_equals(m: BackupManager, set_id: str, src: Path, out: Path) -> None:
    m.restore("t", out, backup_set_id=set_id)
    assert snapshot_tree(out) == snapshot_tree(src)
    shutil.rmtree(out)


def test_unchanged_tree_is_not_read_and_restores(manager: BackupManager, tmp_path: Path) -> None:
    src, full = full_of_a_tree(manager, tmp_path)
    assert full.bytes_read == 6 * 20_000
    inc = manager.backup("t", BackupType.INCREMENTAL)
    assert inc.bytes_read == 0
    assert manager.summary(inc.id).unread == 6
    entries = manager.set_manifest(inc.id).files
    assert all(isinstance(e, FileEntry) and e.ctime_ns is not None and e.ino for e in entries)
    restored_equals(manager, inc.id, src, tmp_path / "out")
    # A DIFFERENTIAL compares with its FULL, and skips just the same.
    diff = manager.backup("t", BackupType.DIFFERENTIAL)
    assert diff.bytes_read == 0
    restored_equals(manager, diff.id, src, tmp_path / "out")


def test_rewrite_with_the_mtime_put_back_is_read_through_ctime(manager: BackupManager, tmp_path: Path) -> None:
    src, _ = full_of_a_tree(manager, tmp_path)
    victim = src / "f3"
    before = victim.stat()
    victim.write_bytes(os.urandom(20_000))  # same size
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime put back
    after = victim.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns
    inc = manager.backup("t", BackupType.INCREMENTAL)
    assert inc.bytes_read == 20_000
    assert manager.summary(inc.id).unread == 5
    restored_equals(manager, inc.id, src, tmp_path / "out")


def test_a_file_replaced_by_another_inode_is_read(manager: BackupManager, tmp_path: Path) -> None:
    src, _ = full_of_a_tree(manager, tmp_path)
    st = (src / "f1").stat()
    (src / "new").write_bytes(os.urandom(20_000))
    os.utime(src / "new", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(src / "new", src / "f1")
    inc = manager.backup("t", BackupType.INCREMENTAL)
    assert inc.bytes_read == 20_000
    restored_equals(manager, inc.id, src, tmp_path / "out")


def test_force_read_reads_everything(manager: BackupManager, tmp_path: Path) -> None:
    src, _ = full_of_a_tree(manager, tmp_path)
    inc = manager.backup("t", BackupType.INCREMENTAL, force_read=True)
    assert inc.bytes_read == 6 * 20_000 and manager.summary(inc.id).unread == 0
    # Nothing changed, so nothing new is stored either way: positional references.
    assert manager.set_manifest(inc.id).pieces[0].block_count == 0


def test_cli_force_read_and_selection_flags(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make(src, n=2)
    (src / "skip.log").write_bytes(b"x")
    repo = str(tmp_path / "repo")

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--repo", repo, *args])
        assert result.exit_code == 0, result.output
        return result.output

    run("init")
    run("db", "add", "t", "--path", str(src), "--exclude", "*.log", "--exclude-caches")
    listed = json.loads(run("db", "list", "--json"))
    assert listed[0]["selection"]["exclude"] == ["*.log"] and listed[0]["selection"]["exclude_caches"] is True
    run("backup", "t", "--type", "full")
    second = json.loads(run("backup", "t", "--type", "incremental", "--json"))
    assert second["bytes_read"] == 0 and second["summary"]["unread"] == 2 and second["summary"]["excluded"] == 1
    forced = json.loads(run("backup", "t", "--type", "incremental", "--force-read", "--exclude", "f1", "--json"))
    assert forced["bytes_read"] == 20_000 and forced["summary"]["excluded"] == 2


OPS = st.lists(
    st.tuples(
        st.sampled_from(["rewrite_same_mtime", "append", "touch", "delete", "add", "copy", "chmod"]), st.integers(0, 5)
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(OPS, min_size=1, max_size=3), seed=st.integers(0, 2**32 - 1))
def test_random_edits_between_incrementals_restore_exactly(
    tmp_path_factory: pytest.TempPathFactory, rounds: list[list[tuple[str, int]]], seed: int
) -> None:
    import random

    rng = random.Random(seed)
    base = tmp_path_factory.mktemp("unch")
    src = base / "src"
    make(src, n=6, size=9000)
    m = BackupManager(base / "repo", clock=SimClock())
    m.register_database("t", src)
    m.backup("t", BackupType.FULL)
    for ops in rounds:
        for op, k in ops:
            names = sorted(p.name for p in src.iterdir())
            if not names:
                (src / "seed").write_bytes(b"x")
                continue
            f = src / names[k % len(names)]
            st_ = f.stat()
            if op == "rewrite_same_mtime":
                f.write_bytes(rng.randbytes(st_.st_size))
                os.utime(f, ns=(st_.st_atime_ns, st_.st_mtime_ns))
            elif op == "append":
                with f.open("ab") as fh:
                    fh.write(rng.randbytes(rng.randint(1, 9000)))
            elif op == "touch":
                os.utime(f, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))
            elif op == "delete":
                f.unlink()
            elif op == "add":
                (src / f"n{rng.randint(0, 10**9)}").write_bytes(rng.randbytes(rng.randint(0, 20_000)))
            elif op == "copy":
                shutil.copy2(f, src / f"c{rng.randint(0, 10**9)}")
            else:
                os.chmod(f, 0o600 if st_.st_mode & 0o077 else 0o644)
        s = m.backup("t", BackupType.INCREMENTAL)
        out = base / f"out-{s.id}"
        m.restore("t", out, backup_set_id=s.id)
        assert snapshot_tree(out) == snapshot_tree(src)


def test_many_files_changed_taken_over_or_gone_since_the_walk(
    manager: BackupManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across thousands of jobs, the changed files are read and the others taken over
    as the walk saw them, never stat'ed again: one deleted between the walk and the pass
    is in the set with its contents (restic's snapshot keeps it the same way), and the
    restore gives it back."""
    src = tmp_path / "src"
    src.mkdir()
    n = 4_500
    for i in range(n):
        (src / f"f{i:05}").write_bytes(i.to_bytes(4, "big") * 25)
    manager.register_database("t", src)
    manager.backup("t", BackupType.FULL)
    for i in (5, 4_098, 4_499):
        (src / f"f{i:05}").write_bytes(b"changed" * (i % 7 + 1))
    real = sources.walk
    gone, st = (src / "f04200").read_bytes(), (src / "f04200").stat()

    def walk_then_delete(
        root: Path, selection: Selection | None = None, parent: sources.KnownFiles | None = None
    ) -> sources.TreeEntries:
        out = real(root, selection, parent)
        (src / "f04200").unlink()
        return out

    monkeypatch.setattr(engine, "walk", walk_then_delete)
    inc = manager.backup("t", BackupType.INCREMENTAL)
    summary = manager.summary(inc.id)
    assert summary.unread == n - 3 and summary.skipped == ()
    sizes = {e.path: e.size for e in manager.set_manifest(inc.id).files}
    assert len(sizes) == n
    assert [sizes[f"f{i:05}"] for i in (5, 4_097, 4_098, 4_200, 4_499)] == [42, 100, 28, 100, 42]
    (src / "f04200").write_bytes(gone)
    os.utime(src / "f04200", ns=(st.st_atime_ns, st.st_mtime_ns))
    restored_equals(manager, inc.id, src, tmp_path / "out")


def test_a_damaged_parent_manifest_is_refused_with_its_error(manager: BackupManager, tmp_path: Path) -> None:
    """The parent's files are read and checked in full before an unchanged child's
    manifest reuses that reading (manifest.write, issue 17): damage in them fails the
    INCREMENTAL with the field named, and no set is made."""
    src, full = full_of_a_tree(manager, tmp_path)
    path = manager.repository / "sets" / full.id / "manifest.json"
    text = path.read_bytes()
    at = text.index(b'"files":')
    damaged = text[:at] + text[at:].replace(b'"digest":"', b'"digest":"Z', 1)
    path.chmod(0o644)
    path.write_bytes(damaged)
    with pytest.raises(CatalogError, match=rf"sets/{full.id}/manifest.json: checksum: .* changed after it was written"):
        manager.backup("t", BackupType.INCREMENTAL)
    # Stored so by a writer (its own checksum right), the field itself is named.
    path.write_bytes(stored(json.loads(damaged)))
    with pytest.raises(CatalogError, match=rf"sets/{full.id}/manifest.json: files\[0\]\.digest"):
        manager.backup("t", BackupType.INCREMENTAL)
    assert [s.id for s in manager.catalog.list_sets()] == [full.id]
