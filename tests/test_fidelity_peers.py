"""The held-out comparison in small: the same rich tree goes through restic, borg and
rustybackup, and for every entry and every property (type, mode, owner, mtime, contents,
link text, device numbers, xattrs and ACLs, allocated blocks of sparse files, inode
sharing) that restic or borg gives back as the source had it, rustybackup must too.
The peers come from Debian's packages (benches/setup.sh); a missing one is skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fidelity_support import rich_tree, snapshot
from rustybackup import BackupManager

PEER_ENV = {
    **os.environ,
    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
    "RESTIC_PASSWORD": "peer",
}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the rich tree has owners and devices: root only")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (benches/setup.sh installs it)")
    return path


def _run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    subprocess.run(args, check=True, cwd=cwd, env=env or PEER_ENV, capture_output=True)


def with_restic(tmp: Path, src: Path) -> Path:
    restic = _tool("restic")
    env = {**PEER_ENV, "RESTIC_CACHE_DIR": str(tmp / "restic-cache")}
    _run(restic, "init", "--repo", str(tmp / "restic"), env=env)
    _run(restic, "backup", "--repo", str(tmp / "restic"), str(src), env=env)
    _run(restic, "restore", "latest", "--repo", str(tmp / "restic"), "--target", str(tmp / "restic-out"), env=env)
    return tmp / "restic-out" / str(src).lstrip("/")


def with_borg(tmp: Path, src: Path) -> Path:
    borg = _tool("borg")
    env = {**PEER_ENV, "BORG_BASE_DIR": str(tmp / "borg-home")}
    _run(borg, "init", "--encryption", "none", str(tmp / "borg"), env=env)
    _run(borg, "create", f"{tmp / 'borg'}::a", ".", cwd=src, env=env)
    (tmp / "borg-out").mkdir()
    _run(borg, "extract", "--sparse", f"{tmp / 'borg'}::a", cwd=tmp / "borg-out", env=env)
    return tmp / "borg-out"


def kept(want: dict[str, Any], got: dict[str, Any]) -> set[tuple[str, str]]:
    """(path, property) pairs a restore gave back exactly as the source had them."""
    out = set()
    for path, props in want.items():
        for name, value in props.items():
            if path in got and got[path].get(name) == value:
                out.add((path, name))
    return out


def test_we_restore_everything_restic_or_borg_restores(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rich_tree(src, as_root=True)
    want = snapshot(src)
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src)
    m.backup("t", "full")
    m.restore("t", tmp_path / "ours")
    ours = kept(want, snapshot(tmp_path / "ours"))
    peers = {}
    for name, fn in (("restic", with_restic), ("borg", with_borg)):
        try:
            peers[name] = kept(want, snapshot(fn(tmp_path, src)))
        except subprocess.CalledProcessError as exc:
            pytest.fail(f"{name} failed: {exc.stderr.decode(errors='replace')[-500:]}")
    for name, theirs in peers.items():
        assert theirs - ours == set(), f"{name} restores these as the source had them and we do not"
    # And everything, which the peers do not all manage: the comparison is not vacuous.
    assert ours == {(p, k) for p, props in want.items() for k in props}
