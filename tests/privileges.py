"""Runs a check in a forked child without root's privileges, so permission errors can be
tested even when the suite runs as root (root bypasses file modes)."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534


@contextmanager
def shared_workdir(prefix: str) -> Iterator[tuple[Path, Path]]:
    """`(work, work/src)`, both writable by anyone, so a child dropped to nobody can back
    up `src` into a repository under `work`; removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        work.chmod(0o777)
        src = work / "src"
        src.mkdir()
        src.chmod(0o777)
        yield work, src
    finally:
        shutil.rmtree(work)


def fork_and_run(fn: Callable[[], str], *, drop_to_nobody: bool = False) -> str:
    """The text `fn` returns in a forked child (or `Name: message` of what it raised)."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() with threads alive (the rayon pool): exactly the
        # situation the fork test is about.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            if drop_to_nobody:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            out = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as text
            out = f"{type(exc).__name__}: {exc}"
        try:
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()
