"""What a file tree holds beyond contents, read during the source walk and written back by
a restore: owners (ids and names), extended attributes (POSIX ACLs are the
``system.posix_acl_*`` ones), the holes of sparse files, hardlinks (one inode, several
names) and special files. Nothing here follows a link: attributes are read with
``follow_symlinks=False`` and files are opened with ``O_NOFOLLOW``.

Capture never fails a backup: an attribute that cannot be read is listed in the set's
summary (as restic and tar warn) and the walk goes on.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .manifest import DirEntry, FileEntry, FileTable, HardlinkEntry, Owner, SpecialEntry, SymlinkEntry, Xattr
from .sources import LStat, SkippedEntry, TreeEntries

log = logging.getLogger(__name__)

__all__ = ["Captured", "capture", "find_holes", "owner_of", "read_xattrs", "special_kind"]

# Errors that mean "this file system or entry has no extended attributes": not a problem.
# ENOENT: the entry vanished since the walk; the pass that reads it reports that once.
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.ENOENT)


@dataclass
class Captured:
    """The metadata of one walk, by relative path, and the hardlinks it found."""

    owners: dict[str, Owner] = field(default_factory=dict)
    xattrs: dict[str, tuple[Xattr, ...]] = field(default_factory=dict)
    holes: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    hardlinks: list[HardlinkEntry] = field(default_factory=list)
    specials: list[SpecialEntry] = field(default_factory=list)
    problems: list[SkippedEntry] = field(default_factory=list)
    # The walked directory itself (path ""), given to the restore target (manifest format 3).
    root: DirEntry | None = None

    def files(self, entries: list[FileEntry]) -> list[FileEntry]:
        """`entries` with their owners, xattrs and holes (clipped to the size read)."""
        out = []
        owners, xattrs, holes = self.owners, self.xattrs, self.holes
        for f in entries:
            kept = tuple((o, min(n, f.size - o)) for o, n in holes[f.path] if o < f.size) if f.path in holes else ()
            # The constructor, not dataclasses.replace: this runs once per file of the tree.
            out.append(
                FileEntry(
                    f.path,
                    f.mode,
                    f.mtime_ns,
                    f.size,
                    f.digest,
                    f.first_block,
                    f.block_count,
                    owners.get(f.path),
                    xattrs.get(f.path, ()),
                    kept,
                    f.ctime_ns,
                    f.ino,
                    f.dev,
                )
            )
        return out

    def dirs(self, entries: list[DirEntry]) -> list[DirEntry]:
        # The constructor, not dataclasses.replace (which inspects the fields on every call):
        # a tree has a directory per few files.
        owners, xattrs = self.owners, self.xattrs
        return [DirEntry(d.path, d.mode, d.mtime_ns, owners.get(d.path), xattrs.get(d.path, ())) for d in entries]

    def symlinks(self, entries: list[SymlinkEntry]) -> list[SymlinkEntry]:
        owners, xattrs = self.owners, self.xattrs
        return [SymlinkEntry(s.path, s.target, s.mtime_ns, owners.get(s.path), xattrs.get(s.path, ())) for s in entries]

    def links_to(self, files: Sequence[FileEntry]) -> tuple[list[HardlinkEntry], list[SkippedEntry]]:
        """The hardlinks whose file was stored; the others are listed as skipped (their
        first name vanished or could not be read, so there is no data to link to)."""
        if not self.hardlinks:
            return [], []
        # A FileTable's paths come from Rust, without a FileEntry per file.
        stored = set(files.paths()) if isinstance(files, FileTable) else {f.path for f in files}
        stored |= {s.path for s in self.specials}
        kept = [h for h in self.hardlinks if h.target in stored]
        lost = [
            SkippedEntry(h.path, f"hardlink to {h.target}, which was not stored")
            for h in self.hardlinks
            if h.target not in stored
        ]
        return kept, lost


@lru_cache(maxsize=4096)
def _user(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def _group(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def owner_of(st: LStat) -> Owner:
    return _owner(st.st_uid, st.st_gid)


@lru_cache(maxsize=4096)
def _owner(uid: int, gid: int) -> Owner:
    # One frozen Owner per (uid, gid), shared by every entry that has it: a tree has few
    # owners, and a new one per entry was a third of the capture's CPU.
    return Owner(uid, gid, _user(uid), _group(gid))


def special_kind(mode: int) -> str | None:
    """The manifest kind of a FIFO or device node; None for anything else."""
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode):
        return "char"
    if stat.S_ISBLK(mode):
        return "block"
    return None


def read_xattrs(path: Path | str, rel: str, problems: list[SkippedEntry]) -> tuple[Xattr, ...]:
    """Every extended attribute of `path` (not followed if a link), by name; one that
    cannot be read is listed in `problems` and left out."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_XATTRS:
            problems.append(SkippedEntry(rel, f"extended attributes cannot be listed: {exc.strerror or exc}"))
        return ()
    out = []
    for name in sorted(names):
        try:
            out.append(Xattr(name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOENT):
                continue  # removed (or the entry vanished) between list and read
            problems.append(SkippedEntry(rel, f"extended attribute {name} cannot be read: {exc.strerror or exc}"))
    return tuple(out)


def find_holes(path: Path | str, size: int) -> tuple[tuple[int, int], ...]:
    """The unallocated ranges of a regular file, found with SEEK_DATA/SEEK_HOLE (what
    ``cp --sparse`` and tar's ``--sparse`` use): (offset, length), in order."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    holes = []
    try:
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                data = size  # nothing but hole up to the end
            data = min(data, size)
            if data > pos:
                holes.append((pos, data - pos))
            if data >= size:
                break
            pos = os.lseek(fd, data, os.SEEK_HOLE)
    finally:
        os.close(fd)
    return tuple(holes)


def capture(root: Path, tree: TreeEntries) -> Captured:
    """Reads owners, xattrs and holes of every entry of `tree` (walked from `root`), moves
    every name of a multiply-linked file but the first (by path) from ``tree.files`` to
    hardlinks, so its data is read and stored once, and records special files."""
    out = Captured()
    single = not tree.dirs and len(tree.files) == 1 and tree.files[0][1] == root

    def full(rel: str) -> Path:
        return root if single else root / rel

    walked = tree.xattrs

    def attrs(rel: str) -> tuple[Xattr, ...]:
        if walked is None:
            return read_xattrs(full(rel), rel, out.problems)
        # Read by the walk (rust/src/tree/), with the same reasons for what it could not.
        found = walked.get(rel)
        if found is None:
            return ()
        out.problems.extend(SkippedEntry(rel, why) for why in found[1])
        return tuple(Xattr(name, value) for name, value in found[0])

    owners = out.owners

    def more(rel: str) -> None:
        # The xattrs of an entry the walk found some (or problems) for, or of every
        # entry when the walk read none.
        xattrs = attrs(rel)
        if xattrs:
            out.xattrs[rel] = xattrs

    if not single:
        try:
            top = os.lstat(root)
            out.root = DirEntry(
                "", stat.S_IMODE(top.st_mode), top.st_mtime_ns, owner_of(top), read_xattrs(root, ".", out.problems)
            )
        except OSError as exc:
            out.problems.append(
                SkippedEntry(".", f"the source directory's own metadata cannot be read: {exc.strerror}")
            )
    first_name: dict[tuple[int, int], str] = {}
    kept = []
    # The loops below run once per entry of the tree (issue 17): the owner comes
    # straight from the cache, the xattrs only for an entry in `walked`, without a call
    # per entry.
    every = walked is None
    seen = {} if walked is None else walked
    for entry in tree.files:
        rel, path, st = entry
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            target = first_name.setdefault(key, rel)
            if target != rel:
                out.hardlinks.append(HardlinkEntry(rel, target))
                continue
        kept.append(entry)
        owners[rel] = _owner(st.st_uid, st.st_gid)
        if every or rel in seen:
            more(rel)
        # A file is sparse only if fewer blocks are allocated than its size needs.
        if st.st_size and st.st_blocks * 512 < st.st_size:
            try:
                holes = find_holes(path, st.st_size)
            except FileNotFoundError:
                holes = ()  # vanished since the walk: the read reports it
            except OSError as exc:
                out.problems.append(SkippedEntry(rel, f"holes cannot be found, stored as data: {exc.strerror}"))
                holes = ()
            if holes:
                out.holes[rel] = holes
    tree.files[:] = kept
    for rel, st in tree.dirs:
        owners[rel] = _owner(st.st_uid, st.st_gid)
        if every or rel in seen:
            more(rel)
    for rel, _, st in tree.symlinks:
        owners[rel] = _owner(st.st_uid, st.st_gid)
        if every or rel in seen:
            more(rel)
    for rel, st in tree.specials:
        kind = special_kind(st.st_mode)
        if kind is None:
            continue
        if st.st_nlink > 1:
            # A FIFO or device node with several names is one inode too (borg keeps it so).
            target = first_name.setdefault((st.st_dev, st.st_ino), rel)
            if target != rel:
                out.hardlinks.append(HardlinkEntry(rel, target))
                continue
        xattrs = attrs(rel)
        out.specials.append(
            SpecialEntry(
                rel,
                kind,
                stat.S_IMODE(st.st_mode),
                st.st_mtime_ns,
                0 if kind == "fifo" else os.major(st.st_rdev),
                0 if kind == "fifo" else os.minor(st.st_rdev),
                owner_of(st),
                xattrs,
            )
        )
    for p in out.problems:
        log.warning("%s: %s", p.path, p.reason)
    return out
