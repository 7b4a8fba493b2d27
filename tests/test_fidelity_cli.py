"""The CLI side of file-tree fidelity: --numeric-owner against names, and the report of
what a restore could not give back, printed on stderr rather than dropped."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from manifest_support import stored
from privileges import NOBODY, fork_and_run
from rustybackup import BackupManager
from rustybackup.cli import cli

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners need root")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="rb-fidelity-cli-"))
    os.chmod(d, 0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(repo: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["--repo", str(repo), *args])
    return r.exit_code, r.stdout, r.stderr


@needs_root
def test_owners_go_by_name_unless_numeric_owner(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    os.chown(src / "f", NOBODY, NOBODY)
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src)
    s = m.backup("t", "full")
    # As if backed up on a machine where "nobody" had uid 4321.
    path = tmp_path / "repo" / "sets" / s.id / "manifest.json"
    doc = json.loads(path.read_text())
    (entry,) = doc["files"]
    assert entry["owner"]["user"] == "nobody"
    entry["owner"]["uid"] = 4321
    path.write_bytes(stored(doc))
    assert run(tmp_path / "repo", "restore", "t", "--to", str(tmp_path / "a"))[0] == 0
    assert os.stat(tmp_path / "a" / "f").st_uid == NOBODY
    assert run(tmp_path / "repo", "restore", "t", "--to", str(tmp_path / "b"), "--numeric-owner")[0] == 0
    assert os.stat(tmp_path / "b" / "f").st_uid == 4321


def test_delete_needs_delta(tmp_path: Path) -> None:
    code, _, err = run(tmp_path / "repo", "restore", "t", "--to", str(tmp_path / "x"), "--delete")
    assert code == 2 and "--delete only goes with --delta" in err


@needs_root
def test_the_cli_prints_what_could_not_be_restored(shared_tmp: Path) -> None:
    src = shared_tmp / "src"
    src.mkdir()
    for i in range(25):
        (src / f"f{i:02d}").write_bytes(b"x")
        os.chown(src / f"f{i:02d}", 1000 + i, 1000 + i)
    os.mknod(src / "null", 0o666 | 0o020000, os.makedev(1, 3))
    m = BackupManager(shared_tmp / "repo")
    m.register_database("t", src)
    m.backup("t", "full")

    # The unprivileged child cannot read root's site-packages: the same restore as root
    # first imports every module the command needs.
    assert run(shared_tmp / "repo", "restore", "t", "--to", str(shared_tmp / "warm"))[0] == 0
    for d, dirs, files in os.walk(shared_tmp / "repo"):
        for n in [d, *(os.path.join(d, x) for x in dirs + files)]:
            os.chmod(n, 0o777)

    def child() -> str:
        code, _, err = run(shared_tmp / "repo", "restore", "t", "--to", str(shared_tmp / "out"))
        return f"{code}\n{err}"

    code, *lines = fork_and_run(child, drop_to_nobody=True).splitlines()
    assert code == "0", lines
    # Above the report: whatever the (transient) progress bar left on stderr. 25 files,
    # the device and the source directory itself (root's, given to the target).
    lines = lines[lines.index("27 items could not be restored as backed up:") :]
    assert "  null: char device 1:3 not created: Operation not permitted (device nodes need root)" in lines
    # By name where uid 1010 has one here, else by id: either way the ids are named.
    assert any(line.startswith("  f10: owner ") and "(1010:1010) not applied" in line for line in lines), lines
    assert lines[-1] == "  ... and 7 more (7 owner)"
