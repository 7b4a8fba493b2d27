"""Backups, restores and verification keep working in a fork()ed child (multiprocessing's
default start method on Linux) after the parent has used its thread pool: the Rust core
never relies on rayon's global pool, whose threads do not exist in the child."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from rustybackup import BackupManager, BackupType, VerificationType, Verifier


def _child(root: str) -> None:
    code = 1
    try:
        base = Path(root)
        manager = BackupManager(base / "repo")
        (base / "src" / "data").write_bytes(os.urandom(300_000))
        for sub in ("sub", "sub2"):
            (base / "src" / sub / "more").write_bytes(os.urandom(1000))
        manager.backup("db", BackupType.INCREMENTAL)
        report = Verifier(manager).verify("db", VerificationType.FULL)
        manager.restore("db", base / "out")
        same = all(
            (base / "out" / name).read_bytes() == (base / "src" / name).read_bytes()
            for name in ("data", "sub/more", "sub2/more")
        )
        code = 0 if report.ok and same else 2
    finally:
        os._exit(code)


def test_a_forked_child_backs_up_verifies_and_restores(tmp_path: Path) -> None:
    manager = BackupManager(tmp_path / "repo")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "data").write_bytes(os.urandom(300_000))
    # Two subdirectories: the walk lists the root's subdirectories in parallel (one would
    # be walked on the calling thread).
    for sub in ("sub", "sub2"):
        (tmp_path / "src" / sub).mkdir()
        (tmp_path / "src" / sub / "more").write_bytes(os.urandom(1000))
    manager.register_database("db", tmp_path / "src")
    manager.backup("db", BackupType.FULL)  # the parent's pool now has live threads
    assert Verifier(manager).verify("db", VerificationType.FULL).ok
    child = multiprocessing.get_context("fork").Process(target=_child, args=(str(tmp_path),))
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
        child.join()
        raise AssertionError("the forked child hung: a parallel step used a pool that does not exist after fork()")
    assert child.exitcode == 0
