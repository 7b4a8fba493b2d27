"""A restored data directory written back to disk while it is being written, and
fsynced once at the end.

PostgreSQL fsyncs the whole data directory when it starts on one that was not shut down
cleanly (a restore is such a directory: ``SyncDataDirectory``), so whatever the restore
left dirty in the page cache is written back then, after ``pg_ctl start``, with nothing
else to overlap it: 5-6 s for pgbench scale 50 (~750 MB) on the build machine, where a
machine with plenty of memory starts no background writeback for that little. Here the
restore starts the writeback of each file as it grows (``sync_file_range`` with
``SYNC_FILE_RANGE_WRITE``: it queues the pages and does not wait), so the disk works
while the engine still writes, and `sync_tree` then waits for what is left, file by file
(not ``syncfs``: other jobs' dirty data on the same file system is not ours to wait
for). The directory is durable when the restore returns, and the server's own pass
finds it clean.

Nothing here follows a link or opens anything but regular files and directories of the
tree: a restored ``pg_wal`` link to another disk is left alone (its contents are the
server's).
"""

from __future__ import annotations

import ctypes
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None  # not Linux: the final fsyncs do all of it
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _walk(root: Path) -> Iterator[tuple[str, bool, int]]:
    """(path, is_dir, size) of every regular file and directory below `root` (root
    included), links and other kinds skipped, never followed."""
    stack = [str(root)]
    yield str(root), True, 0
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue  # removed meanwhile, or not ours to read
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                    yield e.path, True, 0
                elif e.is_file(follow_symlinks=False):
                    yield e.path, False, e.stat(follow_symlinks=False).st_size
            except OSError:
                continue


def _regular_fd(path: str, directory: bool) -> int | None:
    """A read-only descriptor of `path` if it still is a directory / regular file (a
    FIFO or device put there meanwhile is never opened for more than this check)."""
    try:
        fd = os.open(path, _OPEN_FILE | (os.O_DIRECTORY if directory else 0))
    except OSError:
        return None
    if not directory and not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


class Flusher:
    """While open, starts the writeback of the files growing below `root` every
    `interval` seconds on a thread of its own."""

    def __init__(self, root: Path, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self._fn = _sync_file_range()
        self._seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rustybackup-writeback", daemon=True)

    def __enter__(self) -> Flusher:
        if self._fn is not None:
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.once()

    def once(self) -> int:
        """One pass: starts the writeback of every file that grew since the last pass;
        returns how many."""
        fn = self._fn
        if fn is None:
            return 0
        started = 0
        for path, is_dir, size in _walk(self.root):
            if is_dir or size <= self._seen.get(path, 0):
                continue
            fd = _regular_fd(path, False)
            if fd is None:
                continue
            try:
                # 0, 0: the whole file; pages already queued or clean cost nothing.
                if fn(fd, 0, 0, _SYNC_FILE_RANGE_WRITE) == 0:
                    started += 1
            finally:
                os.close(fd)
            self._seen[path] = size
        return started


def sync_tree(root: Path, threads: int = 4) -> int:
    """fsyncs every regular file below `root`, then every directory (deepest first, so
    each name is durable after what it names); returns how many were synced. Several at
    once: each fsync mostly waits for the disk, and the queue stays full."""
    files: list[str] = []
    dirs: list[str] = []
    for path, is_dir, _ in _walk(root):
        (dirs if is_dir else files).append(path)

    def one(path: str, directory: bool) -> int:
        fd = _regular_fd(path, directory)
        if fd is None:
            return 0
        try:
            # fsync, not fdatasync: the restore set modes and owners after the data.
            os.fsync(fd)
        finally:
            os.close(fd)
        return 1

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rustybackup-fsync") as pool:
        done = sum(pool.map(lambda p: one(p, False), files))
    for d in reversed(dirs):
        done += one(d, True)
    return done
