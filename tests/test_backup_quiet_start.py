"""What a small backup's process spends beside the backup (issue 17, many small files):
the progress bar and its rich import only when stderr is a terminal, and the cyclic
garbage collector paused for the backup and restored after it. Behaviour, not timing:
which modules a fresh CLI process loads, what it prints, the collector's state."""

from __future__ import annotations

import gc
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from rustybackup import BackupManager, gcpause
from rustybackup.engine import BackupProgress


def _tree(root: Path) -> Path:
    for i in range(40):
        p = root / f"d{i % 4}" / f"f{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(i * 97))
    return root


def _cli(repo: Path, *args: str, stderr: int | None = subprocess.PIPE) -> tuple[list[str], str]:
    """Runs the CLI in a fresh interpreter; returns the rich modules it loaded and stdout."""
    code = (
        "import json, sys\n"
        "from rustybackup.cli import main\n"
        f"try:\n    main({['--repo', str(repo), *args]!r})\n"
        "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=stderr, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1])


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", _tree(tmp_path / "src"))
    return tmp_path / "repo"


def test_backup_and_restore_into_a_pipe_import_no_rich_and_still_work(repo: Path, tmp_path: Path) -> None:
    loaded, out = _cli(repo, "backup", "t", "--type", "full")
    assert loaded == []
    assert ": full of t, read " in out
    loaded, _ = _cli(repo, "backup", "t", "--json")
    assert loaded == []
    loaded, out = _cli(repo, "restore", "t", "--to", str(tmp_path / "out"))
    assert loaded == []
    assert "restored t into" in out
    for p in (tmp_path / "src").rglob("f*"):
        assert (tmp_path / "out" / p.relative_to(tmp_path / "src")).read_bytes() == p.read_bytes()


def test_a_tree_backup_imports_no_restore_retention_or_sqlite_module(repo: Path) -> None:
    """The unchanged second backup's start (issue 17, at most 10% of the first): these
    modules serve restores, retention and SQLite sources; their dataclasses cost every
    CLI start about a millisecond each, so a file tree's backup does not load them."""
    code = (
        "import json, sys\n"
        "from rustybackup.cli import main\n"
        "for kind in ('full', 'incremental'):\n"
        f"    try:\n        main({['--repo', str(repo), 'backup', 't', '--type']!r} + [kind])\n"
        "    except SystemExit as exc:\n        assert exc.code in (0, None), exc.code\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('rustybackup.', 'hashlib', 'secrets')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    loaded = set(json.loads(lines[-1]))
    assert ": full of t, read " in lines[0] and ": incremental of t, read 0 B" in lines[1]
    heavy = {"restore", "restore_batch", "restore_target", "retention", "sqlite_wal", "capture", "sqlite_pitr"}
    assert loaded & {f"rustybackup.{name}" for name in heavy} == set()
    # Random ids come from os.urandom: `secrets` loads hashlib and OpenSSL (~2 ms).
    assert loaded & {"secrets", "hashlib"} == set()
    assert "rustybackup.engine" in loaded


def test_a_terminal_on_stderr_gets_the_progress_bar(repo: Path, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        loaded, out = _cli(repo, "backup", "t", "--type", "full", stderr=follower)
        loaded_restore, _ = _cli(repo, "restore", "t", "--to", str(tmp_path / "out"), stderr=follower)
    finally:
        os.close(follower)
    drawn = b""
    try:
        while chunk := os.read(leader, 1 << 16):
            drawn += chunk
    except OSError:  # EIO: the terminal's other side is closed and drained
        pass
    os.close(leader)
    assert "rich.progress" in loaded and "rich.progress" in loaded_restore
    assert ": full of t" in out
    # rich's live display hides the cursor while it draws (transient bars end erased).
    assert b"\x1b[?25l" in drawn


def test_the_collector_is_paused_during_a_backup_and_restored_after(repo: Path) -> None:
    m = BackupManager(repo)
    seen: list[bool] = []

    def progress(p: BackupProgress) -> None:
        seen.append(gc.isenabled())

    assert gc.isenabled()
    m.backup("t", "full", progress=progress)
    assert seen and not any(seen)
    assert gc.isenabled()
    # A backup that fails inside restores it too.

    def failing(p: BackupProgress) -> None:
        raise ValueError("stop here")

    with pytest.raises(ValueError, match="stop here"):
        m.backup("t", "full", progress=failing)
    assert gc.isenabled()


def test_the_collector_is_paused_while_a_command_module_is_imported_only() -> None:
    """The CLI imports a command's modules with the collector off (their import makes no
    garbage cycles; its collections were part of every command's start), then turns it
    back on: a long-running command (run, capture) collects as usual."""
    code = (
        "import gc, importlib, json, sys\n"
        "import click\n"
        "from rustybackup.cli import cli\n"
        "seen = []\n"
        "real = importlib.import_module\n"
        "def probe(name, package=None):\n"
        "    seen.append(gc.isenabled())\n"
        "    return real(name, package)\n"
        "importlib.import_module = probe\n"
        "cmd = cli.get_command(click.Context(cli), 'backup')\n"
        "print(json.dumps([seen, gc.isenabled(), cmd is not None, 'rustybackup.engine' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, check=True)
    assert json.loads(out.stdout) == [[False], True, True, True]


def test_the_collector_is_paused_while_the_command_group_is_imported_only() -> None:
    """`python -m rustybackup` and the installed command import the command group
    (click, logging) with the collector off too, and run the command with it on."""
    code = (
        "import gc, json, sys\n"
        "seen = []\n"
        "class Probe:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'click':\n"
        "            seen.append(gc.isenabled())\n"
        "sys.meta_path.insert(0, Probe())\n"
        "sys.argv = ['rustybackup', '--version']\n"
        "from rustybackup.__main__ import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps([seen, gc.isenabled()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[False], True]


def test_paused_keeps_a_collector_that_was_off_off() -> None:
    gc.disable()
    try:
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), gcpause.paused():
        assert not gc.isenabled()
        raise RuntimeError("inside")
    assert gc.isenabled()
