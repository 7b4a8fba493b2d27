"""Backup sources: walking a file tree (links are data, never followed; what cannot be
stored is listed, not fatal), and listing an archive directory. A live SQLite database
is read by sqlite_wal.py."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BackupError
from .selection import CACHEDIR_TAG, Selection, is_cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedEntry:
    """An entry of a source tree that a backup did not store, and why (recorded in the
    set's manifest summary, not only in a log line)."""

    path: str
    reason: str


@dataclass
class TreeEntries:
    """A source tree's regular files, directories and symlinks (sorted relative paths),
    and the entries it skipped."""

    files: list[tuple[str, Path, os.stat_result]] = field(default_factory=list)
    dirs: list[tuple[str, os.stat_result]] = field(default_factory=list)
    symlinks: list[tuple[str, str, os.stat_result]] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    # FIFOs and device nodes, recorded by fsmeta.capture (sockets stay skipped).
    specials: list[tuple[str, os.stat_result]] = field(default_factory=list)
    # Entries the selection left out (an excluded directory counts once; it is not walked).
    excluded: int = 0


def walk(root: Path, selection: Selection | None = None) -> TreeEntries:
    """Every entry under `root` (a directory) or `root` itself (a file), with lstat
    results. Links are data: each is recorded with its text, whatever it points to
    (absolute, out of the tree, dangling), and never followed. What cannot be stored is
    listed in `skipped` with the reason, and the walk goes on: sockets, fifos and
    devices, entries that vanish while the tree is walked, and the contents of
    directories that cannot be read (the directory itself is kept). `selection`
    (selection.py) leaves entries out; an excluded directory is not descended into."""
    out = TreeEntries()
    try:
        st = root.stat()
    except OSError as exc:
        raise BackupError(f"cannot read source {root}: {exc.strerror or exc}") from exc
    if stat.S_ISREG(st.st_mode):
        out.files.append((root.name, root, st))
        return out
    if not stat.S_ISDIR(st.st_mode):
        raise BackupError(f"source {root} is neither a regular file nor a directory")
    vanished: set[str] = set()
    matcher = None if selection is None else selection.matcher()
    caches = selection is not None and selection.exclude_caches
    one_fs = selection is not None and selection.one_file_system
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
            if caches and is_cache_dir(directory):
                kept = [e for e in entries if e.name == CACHEDIR_TAG]
                out.excluded += len(entries) - len(kept)
                entries = kept
        except OSError as exc:
            if not prefix:
                raise BackupError(f"cannot read source directory {directory}: {exc.strerror or exc}") from exc
            _skip(out, prefix[:-1], exc, directory=True)
            if isinstance(exc, FileNotFoundError):
                vanished.add(prefix[:-1])
            continue
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            try:
                est = entry.stat(follow_symlinks=False)
                if matcher is not None and matcher.matches(rel, stat.S_ISDIR(est.st_mode)):
                    out.excluded += 1
                    continue
                if stat.S_ISLNK(est.st_mode):
                    out.symlinks.append((rel, os.readlink(entry.path), est))
                elif stat.S_ISDIR(est.st_mode):
                    out.dirs.append((rel, est))
                    # --one-file-system: the mount point is kept, empty, as restic and tar do.
                    if not one_fs or est.st_dev == st.st_dev:
                        stack.append((Path(entry.path), rel + "/"))
                elif stat.S_ISREG(est.st_mode):
                    out.files.append((rel, Path(entry.path), est))
                elif stat.S_ISFIFO(est.st_mode) or stat.S_ISCHR(est.st_mode) or stat.S_ISBLK(est.st_mode):
                    out.specials.append((rel, est))
                else:
                    reason = _special_kind(est.st_mode)
                    log.warning("skipping %s: %s", entry.path, reason)
                    out.skipped.append(SkippedEntry(rel, reason))
            except OSError as exc:
                _skip(out, rel, exc)
    if vanished:
        out.dirs = [d for d in out.dirs if d[0] not in vanished]
    out.files.sort(key=lambda t: t[0])
    out.dirs.sort(key=lambda t: t[0])
    out.symlinks.sort(key=lambda t: t[0])
    out.skipped.sort(key=lambda e: e.path)
    out.specials.sort(key=lambda t: t[0])
    return out


def _skip(out: TreeEntries, rel: str, exc: OSError, *, directory: bool = False) -> None:
    if isinstance(exc, FileNotFoundError):
        # Deleted between listing and reading: a live tree; it is simply not in this set.
        reason = "vanished during the backup"
        log.info("%s %s", rel, reason)
    else:
        what = "directory cannot be read, its contents are not stored" if directory else "cannot be read"
        reason = f"{what}: {exc.strerror or exc}"
        log.warning("skipping %s: %s", rel, reason)
    out.skipped.append(SkippedEntry(rel, reason))


def _special_kind(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISCHR(mode):
        return "character device"
    return f"unsupported file type {stat.S_IFMT(mode):#o}"


def archive_candidates(archive_dir: Path) -> list[tuple[str, Path]]:
    """The regular files directly in `archive_dir`, by name (WAL/redo archives are flat)."""
    if not archive_dir.is_dir():
        raise BackupError(f"archive_dir {archive_dir} does not exist or is not a directory")
    out = []
    for entry in sorted(os.scandir(archive_dir), key=lambda e: e.name):
        if entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
            out.append((entry.name, Path(entry.path)))
    return out
