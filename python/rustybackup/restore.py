"""Writing one set's manifest back out as files: path checks, directories, the Rust
block merge for file contents, symlinks last, then modes and mtimes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _core, store
from .errors import BackupError
from .manifest import Manifest
from .sources import link_escapes


def check_relative(rel: Any, set_id: str) -> str:
    """A manifest path that stays inside the target, or BackupError naming it."""
    if not isinstance(rel, str) or not rel:
        raise BackupError(f"manifest of set {set_id} holds an empty or non-text path {rel!r}")
    parts = rel.split("/")
    if rel.startswith("/") or "\0" in rel or any(p in ("", ".", "..") for p in parts):
        raise BackupError(f"manifest of set {set_id} holds path {rel!r}, which would escape the restore target")
    return rel


def restore_set_files(
    repository: Path,
    set_id: str,
    manifest: Manifest,
    target: Path,
    progress: Callable[[int], object] | None,
    *,
    archive: bool,
) -> int:
    """Restores every entry of `manifest` under `target`; returns the bytes written.
    For an archive set, files already restored by an earlier set are left alone."""
    # `manifest` was validated by manifest.load: its paths are relative and stay inside.
    files, dirs, links = manifest.files, manifest.dirs, manifest.symlinks
    blockmap = manifest.blockmap.path
    for rel in (*(f.path for f in files), *(d.path for d in dirs), *(x.path for x in links)):
        check_relative(rel, set_id)
    for link in links:
        if link_escapes(link.path, link.target):
            raise BackupError(
                f"manifest of set {set_id}: symlink {link.path!r} points outside the restore target "
                f"({link.target!r}); refused"
            )
    for d in dirs:
        (target / d.path).mkdir(parents=True, exist_ok=True)
    jobs = []
    for f in files:
        dest = target / f.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if _under_link(target, dest):
            raise BackupError(f"manifest of set {set_id}: {f.path!r} would be written through a symlink")
        jobs.append((label(f.path), dest, f.first_block, f.block_count, f.size, f.digest))
    piece_paths = [repository / store.SETS_DIR / s.set_id / s.piece for s in manifest.sources]
    try:
        written = _core.restore_files(
            jobs,
            repository / blockmap,
            piece_paths,
            progress=None if progress is None else (lambda done, _w, _f: progress(done)),
        )
    except BackupError as exc:
        raise BackupError(f"restore of set {set_id} failed: {exc}") from exc
    except OSError as exc:
        raise BackupError(f"restore of set {set_id} failed: {exc.strerror or exc}: {exc.filename}") from exc
    for link in links:
        os.symlink(link.target, target / link.path)
        _set_times(target / link.path, link.mtime_ns, follow=False)
    for f in files:
        p = target / f.path
        os.chmod(p, f.mode)
        _set_times(p, f.mtime_ns, follow=True)
    if not archive:
        # Deepest first, so setting a parent's mtime is not undone by touching a child.
        for d in sorted(dirs, key=lambda d: d.path.count("/"), reverse=True):
            p = target / d.path
            os.chmod(p, d.mode)
            _set_times(p, d.mtime_ns, follow=True)
    return int(written)


def label(rel: str) -> str:
    """A printable form of a path that may hold undecodable bytes (surrogate escapes),
    for error messages."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _under_link(target: Path, dest: Path) -> bool:
    rel = dest.relative_to(target)
    cur = target
    for part in rel.parts[:-1]:
        cur = cur / part
        if cur.is_symlink():
            return True
    return False


def _set_times(path: Path, mtime_ns: int, *, follow: bool) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=follow)
