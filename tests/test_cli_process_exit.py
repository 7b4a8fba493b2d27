"""The ``rustybackup`` process ends without the interpreter's teardown after a command
(cli/process_exit.py, issue 17) and loses nothing by it: the catalog is closed (its WAL
checkpointed and removed), atexit handlers run, logging's buffers are flushed, the exit
status and stdout are the command's. Anything it does not close itself (an open
written file, a live thread) gets the usual teardown. Each case is a fresh interpreter
entering through ``rustybackup.__main__.main``, as the installed command does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rustybackup import BackupManager

# The interpreter's teardown raises this audit event when it clears the interpreter
# (after the atexit handlers): "teardown" on stderr says it ran, its absence that the
# process ended before it.
_PROBE = (
    "import os, sys\n"
    "def _probe(event, args, w=os.write):\n"
    "    if event == 'cpython.PyInterpreterState_Clear':\n"
    "        w(2, b'teardown\\n')\n"
    "sys.addaudithook(_probe)\n"
)


def _run(code: str, *args: str, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """`code`, then the command line `args` through the command's entry point. Without
    PYTHONUNBUFFERED: stdout is buffered to the end, as the command's usually is."""
    body = (
        f"{_PROBE}{code}\nsys.argv = ['rustybackup', *{list(args)!r}]\nfrom rustybackup.__main__ import main\nmain()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-c", body], stdout=stdout, stderr=subprocess.PIPE, text=True, check=False, env=env
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for i in range(30):
        p = src / f"d{i % 3}" / f"f{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(i * 131))
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src)
    m.catalog.close()
    return tmp_path / "repo"


def test_a_backup_ends_without_the_teardown_with_its_catalog_closed(repo: Path) -> None:
    for kind in ("full", "incremental"):
        out = _run("", "--repo", str(repo), "backup", "t", "--type", kind)
        assert out.returncode == 0, out.stderr
        assert f": {kind} of t, read " in out.stdout
        assert "teardown" not in out.stderr
        # SQLite's last close checkpointed the WAL into catalog.db and removed it.
        assert not (repo / "catalog.db-wal").exists() and not (repo / "catalog.db-shm").exists()
    rows = BackupManager(repo).catalog.set_rows("t")
    assert sorted((r.backup_type, r.status) for r in rows) == [("full", "available"), ("incremental", "available")]


def test_atexit_handlers_run_and_logging_buffers_reach_their_file(repo: Path, tmp_path: Path) -> None:
    log, mark = tmp_path / "log.txt", tmp_path / "atexit.txt"
    code = (
        "import atexit, logging, logging.handlers\n"
        # Held in memory until logging's atexit handler closes it.
        f"target = logging.FileHandler({str(log)!r})\n"
        "logging.getLogger().addHandler(logging.handlers.MemoryHandler(1000, target=target))\n"
        "logging.warning('buffered line')\n"
        f"atexit.register(lambda: open({str(mark)!r}, 'w').write('ran'))\n"
    )
    out = _run(code, "--repo", str(repo), "db", "list", "--json")
    assert out.returncode == 0, out.stderr
    assert "teardown" not in out.stderr
    assert [d["name"] for d in json.loads(out.stdout)] == ["t"]
    assert mark.read_text() == "ran"
    assert log.read_text() == "buffered line\n"


def test_exit_statuses_are_the_commands(repo: Path) -> None:
    usage = _run("", "--repo", str(repo), "no-such-command")
    assert usage.returncode == 2 and "error: No such command" in usage.stderr
    problem = _run("", "--repo", str(repo), "backup", "nosuch")
    assert problem.returncode == 1 and "unknown database 'nosuch'" in problem.stderr
    assert "teardown" not in usage.stderr + problem.stderr


def test_an_unwritable_stdout_is_reported_as_the_interpreter_does(repo: Path) -> None:
    with open("/dev/full", "w") as full:
        out = _run("", "--repo", str(repo), "db", "list", "--json", stdout=full.fileno())
    # What CPython's own teardown does when the last flush of stdout fails.
    assert out.returncode == 120
    assert "No space left on device" in out.stderr


def test_an_open_written_file_gets_the_usual_teardown(repo: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.txt"
    out = _run(f"f = open({str(kept)!r}, 'w')\nf.write('still buffered')", "--repo", str(repo), "db", "list")
    assert out.returncode == 0, out.stderr
    assert "teardown" in out.stderr
    assert kept.read_text() == "still buffered"


def test_a_live_thread_is_joined_as_usual(repo: Path, tmp_path: Path) -> None:
    done = tmp_path / "done.txt"
    code = (
        "import threading, time\n"
        f"threading.Thread(target=lambda: (time.sleep(0.2), open({str(done)!r}, 'w').write('joined'))).start()\n"
    )
    out = _run(code, "--repo", str(repo), "db", "list")
    assert out.returncode == 0, out.stderr
    assert "teardown" in out.stderr
    assert done.read_text() == "joined"
