"""What a backup could not store as it found it is recorded in the set's summary (its
manifest) and shown by `rustybackup backup`, and the backup goes on: sockets, files that
vanish between the walk and the read, directories that cannot be read."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from engine_support import SimClock, repo_manager, sim_clock, snapshot_tree
from privileges import fork_and_run
from rustybackup import BackupManager, engine, sources
from rustybackup.cli import cli
from rustybackup.engine import BackupProgress
from rustybackup.manifest import Summary
from rustybackup.selection import Selection
from rustybackup.sources import SkippedEntry

clock = pytest.fixture(sim_clock)
manager = pytest.fixture(repo_manager)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.bin", "b.bin", "sub/c.bin"):
        (src / name).write_bytes(name.encode() * 5000)
    return src


@pytest.fixture
def sock(tree: Path) -> Iterator[Path]:
    """A listening UNIX socket in the tree (bound by a short relative name: sun_path is
    108 bytes, and tmp_path can be longer)."""
    s = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(tree / "sub")
    try:
        s.bind("sock")
    finally:
        os.chdir(cwd)
    yield tree / "sub" / "sock"
    s.close()


def _vanish_after_walk(monkeypatch: pytest.MonkeyPatch, *victims: Path) -> None:
    """Deletes `victims` after the walk listed them and before the Rust pass opens them:
    the race a live tree loses at random, made deterministic."""
    real = sources.walk

    def walk_then_delete(
        root: Path, selection: Selection | None = None, parent: sources.KnownFiles | None = None
    ) -> sources.TreeEntries:
        out = real(root, selection, parent)
        for v in victims:
            v.unlink()
        return out

    monkeypatch.setattr(engine, "walk", walk_then_delete)


def test_a_socket_is_skipped_and_listed(manager: BackupManager, tree: Path, sock: Path) -> None:
    manager.register_database("t", tree)
    s = manager.backup("t", "full")
    assert manager.summary(s.id) == Summary(skipped=(SkippedEntry("sub/sock", "socket"),))
    assert s.file_count == 3
    # Another process reads it from the set's manifest.
    assert BackupManager(manager.repository).summary(s.id) == manager.summary(s.id)


def test_a_file_that_vanishes_before_it_is_read_is_skipped_and_the_backup_goes_on(
    manager: BackupManager, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.register_database("t", tree)
    _vanish_after_walk(monkeypatch, tree / "b.bin", tree / "sub" / "c.bin")
    s = manager.backup("t", "full")
    summary = manager.summary(s.id)
    assert [e.path for e in summary.skipped] == ["b.bin", "sub/c.bin"]
    assert all("vanished" in e.reason for e in summary.skipped)
    assert s.file_count == 1
    manager.restore("t", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out") == snapshot_tree(tree)


def test_an_incremental_after_a_vanished_file_still_restores(
    manager: BackupManager, clock: SimClock, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.register_database("t", tree)
    manager.backup("t", "full")
    clock.advance(minutes=1)
    (tree / "a.bin").write_bytes(b"new" * 7000)
    (tree / "b.bin").write_bytes(b"also new" * 100)
    _vanish_after_walk(monkeypatch, tree / "a.bin")
    s = manager.backup("t", "incremental")
    assert [e.path for e in manager.summary(s.id).skipped] == ["a.bin"]
    manager.restore("t", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out") == snapshot_tree(tree)


def test_an_unchanged_file_gone_after_the_walk_is_kept_as_the_walk_saw_it(
    manager: BackupManager, clock: SimClock, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken over unread (restic's rule), a file is never opened or stat'ed again: the set
    holds it as the walk found it, as restic's snapshot does. A file to be read that
    vanished is left out and listed (the test above)."""
    manager.register_database("t", tree)
    manager.backup("t", "full")
    clock.advance(minutes=1)
    kept = (tree / "sub" / "c.bin").read_bytes()
    _vanish_after_walk(monkeypatch, tree / "sub" / "c.bin")
    s = manager.backup("t", "incremental")
    assert manager.summary(s.id).skipped == () and manager.summary(s.id).unread == 3
    manager.restore("t", tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "c.bin").read_bytes() == kept


def test_a_directory_that_cannot_be_read_is_skipped_and_listed() -> None:
    # chmod does not stop root (CI runs as root): the backup runs as nobody, in a forked
    # child, over a tree whose root-owned "sub" nobody may list.
    shared = Path(tempfile.mkdtemp(prefix="rb-summary-"))
    try:
        shared.chmod(0o777)
        src = shared / "src"
        (src / "sub").mkdir(parents=True)
        for name in ("a.bin", "b.bin", "sub/c.bin"):
            (src / name).write_bytes(name.encode() * 5000)
        src.chmod(0o755)
        (src / "sub").chmod(0o700)

        def child() -> str:
            m = BackupManager(shared / "repo", clock=SimClock())
            m.register_database("t", src)
            s = m.backup("t", "full")
            skipped = m.summary(s.id).skipped
            return repr(([e.path for e in skipped], "Permission denied" in skipped[0].reason, s.file_count))

        assert fork_and_run(child, drop_to_nobody=True) == repr((["sub"], True, 2))
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_clean_backup_has_an_empty_summary(manager: BackupManager, tree: Path) -> None:
    manager.register_database("t", tree)
    s = manager.backup("t", "full")
    assert manager.summary(s.id).clean
    doc = json.loads((manager.repository / s.manifest).read_text())
    assert doc["summary"] == {"skipped": [], "changed": []}


def test_the_cli_shows_what_was_skipped_and_exits_0(tmp_path: Path, tree: Path, sock: Path) -> None:
    repo = tmp_path / "repo"
    runner = CliRunner(env={"COLUMNS": "250"})
    assert runner.invoke(cli, ["--repo", str(repo), "init"]).exit_code == 0
    assert runner.invoke(cli, ["--repo", str(repo), "db", "add", "t", "--path", str(tree)]).exit_code == 0
    r = runner.invoke(cli, ["--repo", str(repo), "backup", "t", "--type", "full"])
    assert r.exit_code == 0, r.output
    assert "warning: 1 entry skipped" in r.stderr
    assert "sub/sock: socket" in r.stderr
    r = runner.invoke(cli, ["--repo", str(repo), "backup", "t", "--type", "full", "--json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["summary"] == {"skipped": [{"path": "sub/sock", "reason": "socket"}], "changed": []}


def test_a_file_that_changes_while_it_is_read_is_stored_as_read_and_listed(
    manager: BackupManager, tmp_path: Path
) -> None:
    src = tmp_path / "live"
    src.mkdir()
    big = src / "a.big"
    big.write_bytes(b"x" * (5 << 20))  # more than one 4 MiB read, so progress fires mid-file
    (src / "b.txt").write_bytes(b"steady")
    manager.register_database("live", src, block_size=4096)
    grown: list[int] = []

    def grow_once(_: BackupProgress) -> None:
        if not grown:
            with open(big, "ab") as f:
                grown.append(f.write(b"appended while the backup read the file"))

    s = manager.backup("live", "full", progress=grow_once)
    assert grown
    assert manager.summary(s.id) == Summary(changed=("a.big",))
    manager.restore("live", tmp_path / "out")
    # What was read is stored: the size the file had when it was opened.
    assert (tmp_path / "out" / "a.big").read_bytes() == b"x" * (5 << 20)
    assert (tmp_path / "out" / "b.txt").read_bytes() == b"steady"


def test_the_cli_warns_about_changed_files_and_still_exits_0(
    tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    runner = CliRunner(env={"COLUMNS": "250"})
    runner.invoke(cli, ["--repo", str(repo), "init"])
    runner.invoke(cli, ["--repo", str(repo), "db", "add", "t", "--path", str(tree)])
    changed = tuple(f"f{i:02d}" for i in range(25))
    monkeypatch.setattr(BackupManager, "summary", lambda self, set_id: Summary(changed=changed))
    r = runner.invoke(cli, ["--repo", str(repo), "backup", "t", "--type", "full"])
    assert r.exit_code == 0, r.output
    assert "warning: 25 files changed while being read (stored as read" in r.stderr
    assert "  f19\n" in r.stderr and "f20" not in r.stderr
    assert "... and 5 more (all are listed in the set's manifest)" in r.stderr
