"""Writing one set's manifest back out as files: path checks, directories, the Rust
block merge for file contents, symlinks last, then modes and mtimes; every path below
the target is reached without following a link (restore_target.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import _core, store
from .errors import BackupError
from .manifest import Manifest
from .restore_target import RestoreTarget


def restore_set_files(
    repository: Path,
    set_id: str,
    manifest: Manifest,
    target: Path,
    progress: Callable[[int], object] | None,
    *,
    archive: bool,
) -> int:
    """Restores every entry of `manifest` (loaded and validated) under `target`; returns
    the bytes written.

    Nothing is written through a link (restore_target.py): directories first, each
    created and checked one component at a time; then the files (the Rust core creates
    each one new, never through a link); then the links, whatever they point to; then
    modes and times through descriptors. For an archive set, `target` is the ``archive``
    directory below the restore target, created here and refused if it is a link.
    """
    what = f"restore of set {set_id}"
    if archive:
        with RestoreTarget(target.parent, what) as top:
            tree = top.subdir(target.name)
    else:
        tree = RestoreTarget(target, what)
    with tree:
        paths = [f.path for f in manifest.files] + [link.path for link in manifest.symlinks]
        tree.make_dirs([d.path for d in manifest.dirs] + [p.rpartition("/")[0] for p in paths if "/" in p])
        jobs = [
            (label(f.path), tree.path(f.path), f.first_block, f.block_count, f.size, f.digest) for f in manifest.files
        ]
        piece_paths = [repository / store.SETS_DIR / s.set_id / s.piece for s in manifest.sources]
        try:
            written = _core.restore_files(
                jobs,
                repository / manifest.blockmap.path,
                piece_paths,
                progress=None if progress is None else (lambda done, _w, _f: progress(done)),
            )
        except BackupError as exc:
            raise BackupError(f"{what} failed: {exc}") from exc
        except OSError as exc:
            raise BackupError(f"{what} failed: {exc.strerror or exc}: {exc.filename}") from exc
        for link in manifest.symlinks:
            tree.symlink(link.path, link.target, link.mtime_ns)
        for f in manifest.files:
            tree.set_meta(f.path, f.mode, f.mtime_ns, directory=False)
        if not archive:
            # Deepest first, so setting a parent's mtime is not undone by touching a child.
            for d in sorted(manifest.dirs, key=lambda d: d.path.count("/"), reverse=True):
                tree.set_meta(d.path, d.mode, d.mtime_ns, directory=True)
    return int(written)


def label(rel: str) -> str:
    """A printable form of a path that may hold undecodable bytes (surrogate escapes),
    for error messages."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
