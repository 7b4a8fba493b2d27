"""A files set seen as a tree without restoring it: its entries (``rustybackup ls``), what
changed between two sets (``diff``), and one file's bytes streamed out (``dump``)."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _core, keys, store
from .errors import BackupError, CatalogError
from .manifest import FileEntry, Manifest, Owner
from .restore import file_job, file_paths

__all__ = ["Diff", "TreeEntry", "diff_entries", "dump_file", "entries"]

_TYPE_BITS = {
    "file": stat.S_IFREG,
    "hardlink": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "char": stat.S_IFCHR,
    "block": stat.S_IFBLK,
}


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a set as ``ls`` shows it; a hardlink shows its file's size and mode,
    and ``target`` is a link's text or a hardlink's first name."""

    path: str
    kind: str
    mode: int
    size: int
    mtime_ns: int
    owner: Owner | None = None
    target: str | None = None
    digest: str | None = None
    xattrs: tuple[str, ...] = field(default=())

    @property
    def type_bits(self) -> int:
        return _TYPE_BITS[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "mode": self.mode,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "owner": None if self.owner is None else dict(self.owner.__dict__),
            "target": self.target,
            "digest": self.digest,
            "xattrs": list(self.xattrs),
        }


def _all(m: Manifest) -> dict[str, TreeEntry]:
    out: dict[str, TreeEntry] = {}
    files = {f.path: f for f in m.files}
    for f in m.files:
        out[f.path] = TreeEntry(
            f.path, "file", f.mode, f.size, f.mtime_ns, f.owner, None, f.digest, tuple(x.name for x in f.xattrs)
        )
    for d in m.dirs:
        out[d.path] = TreeEntry(
            d.path, "dir", d.mode, 0, d.mtime_ns, d.owner, None, None, tuple(x.name for x in d.xattrs)
        )
    for s in m.symlinks:
        out[s.path] = TreeEntry(
            s.path,
            "symlink",
            0o777,
            len(s.target),
            s.mtime_ns,
            s.owner,
            s.target,
            None,
            tuple(x.name for x in s.xattrs),
        )
    for h in m.hardlinks:
        f = files[h.target]
        out[h.path] = TreeEntry(
            h.path, "hardlink", f.mode, f.size, f.mtime_ns, f.owner, h.target, f.digest, tuple(x.name for x in f.xattrs)
        )
    for sp in m.specials:
        out[sp.path] = TreeEntry(
            sp.path, sp.kind, sp.mode, 0, sp.mtime_ns, sp.owner, None, None, tuple(x.name for x in sp.xattrs)
        )
    return out


def entries(m: Manifest, path: str = "") -> list[TreeEntry]:
    """The entries at and below `path` ("" is the whole set), sorted by path; a path
    the set does not hold is a CatalogError."""
    every = _all(m)
    if not path:
        return [every[p] for p in sorted(every)]
    shown = [every[p] for p in sorted(every) if p == path or p.startswith(path + "/")]
    if not shown:
        raise CatalogError(f"set {m.id} holds no entry {path!r}")
    return shown


@dataclass(frozen=True)
class Diff:
    """Entries only in the newer set, only in the older, and in both but different
    (old, new, which fields differ)."""

    added: list[TreeEntry]
    removed: list[TreeEntry]
    changed: list[tuple[TreeEntry, TreeEntry, tuple[str, ...]]]

    def to_json(self) -> dict[str, Any]:
        return {
            "added": [{"path": e.path, "kind": e.kind, "size": e.size} for e in self.added],
            "removed": [{"path": e.path, "kind": e.kind, "size": e.size} for e in self.removed],
            "changed": [
                {"path": n.path, "kind": n.kind, "old_size": o.size, "new_size": n.size, "fields": list(w)}
                for o, n, w in self.changed
            ],
        }


_COMPARED = ("kind", "size", "digest", "target", "mode", "owner", "mtime_ns", "xattrs")


def diff_entries(old: Manifest, new: Manifest) -> Diff:
    a, b = _all(old), _all(new)
    changed = []
    for p in sorted(a.keys() & b.keys()):
        what = tuple(name for name in _COMPARED if getattr(a[p], name) != getattr(b[p], name))
        if what:
            changed.append((a[p], b[p], what))
    return Diff(
        added=[b[p] for p in sorted(b.keys() - a.keys())],
        removed=[a[p] for p in sorted(a.keys() - b.keys())],
        changed=changed,
    )


def _file(m: Manifest, path: str) -> FileEntry:
    # By the table's paths: only the one entry dumped is built.
    index = {p: i for i, p in enumerate(file_paths(m.files))}
    if path in index:
        return m.files[index[path]]
    for h in m.hardlinks:
        if h.path == path:
            return m.files[index[h.target]]
    if any(d.path == path for d in m.dirs):
        raise BackupError(f"{path!r} is a directory in set {m.id}; dump writes one file")
    for s in m.symlinks:
        if s.path == path:
            raise BackupError(f"{path!r} is a symbolic link to {s.target!r} in set {m.id}; dump its target")
    if any(s.path == path for s in m.specials):
        raise BackupError(f"{path!r} is a special file in set {m.id}; it has no contents")
    raise CatalogError(f"set {m.id} holds no file {path!r}")


def dump_file(repository: Path, m: Manifest, path: str, fd: int) -> int:
    """Streams file `path` of the set to descriptor `fd`, every block checked; returns
    the bytes written."""
    f = _file(m, path)
    # An encrypted set's sealed blocks open with each source set's keys (keys.py).
    block_keys = keys.source_block_keys(repository, [s.set_id for s in m.sources])
    pieces = [repository / store.SETS_DIR / s.set_id / s.piece for s in m.sources]
    try:
        return int(_core.dump_file(file_job(f), repository / m.blockmap.path, pieces, fd, keys=block_keys))
    except OSError as exc:
        raise BackupError(f"dump of {path!r} from set {m.id} failed: {exc.strerror or exc}") from exc
