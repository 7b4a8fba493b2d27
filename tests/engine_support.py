"""Helpers shared by the engine, catalog and restore tests: a simulated clock and
tree comparison, and what their `clock` and `manager` fixtures return (a module makes
them its fixtures with ``clock = pytest.fixture(sim_clock)``)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rustybackup import BackupManager


class SimClock:
    """A clock tests move by hand, so months pass in milliseconds."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now


def snapshot_tree(root: Path, with_meta: bool = True) -> dict[str, object]:
    """Relative path -> content (bytes), link target or 'dir', plus mode and mtime."""
    out: dict[str, object] = {}
    if root.is_file():
        st = root.stat()
        return {root.name: (root.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode)) if with_meta else ("dir",)
            else:
                meta = (stat.S_IMODE(st.st_mode), st.st_mtime_ns) if with_meta else ()
                out[rel] = (p.read_bytes(), *meta)
    return out


def sim_clock() -> SimClock:
    return SimClock()


def repo_manager(tmp_path: Path, clock: SimClock) -> BackupManager:
    """An empty repository ``tmp_path/repo`` on the test's `clock`."""
    return BackupManager(tmp_path / "repo", clock=clock)
