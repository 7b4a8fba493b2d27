"""A files restore's per-entry work handed to the Rust core as columns: the regular files
written and given their owner, xattrs, mode and mtime in one GIL-free pass
(``_core.restore_tree``), and the metadata of directories and of files written by
another path (``_core.apply_tree_meta``). Python keeps only what is per owner, not per
file: mapping recorded names to this system's ids, and the wording of the report."""

from __future__ import annotations

import grp
import pwd
from collections.abc import Callable, Sequence
from pathlib import Path

from . import _core
from .errors import BackupError
from .manifest import DirEntry, FileEntry, FileTable, Owner
from .restore_target import RestoreTarget

__all__ = ["MetaWriter"]

Entry = FileEntry | DirEntry
Problem = tuple[str, str, str]
Columns = tuple[list[int], list[int], list[int], list[int], list[tuple[int, str, bytes]]]


def ids_of(owner: Owner, numeric: bool) -> tuple[int, int]:
    """The ids to give an entry: by name where the name exists here (tar's default as
    root), else the recorded ids."""
    uid, gid = owner.uid, owner.gid
    if not numeric:
        try:
            uid = uid if owner.user is None else pwd.getpwnam(owner.user).pw_uid
        except KeyError:
            pass
        try:
            gid = gid if owner.group is None else grp.getgrnam(owner.group).gr_gid
        except KeyError:
            pass
    return uid, gid


class MetaWriter:
    """Builds the metadata columns of one restore, each owner mapped once (a name
    lookup per file was a fifth of a small-file restore), and words the core's
    problems as the report has them."""

    def __init__(self, tree: RestoreTarget, *, numeric_owner: bool, root: bool, exact_xattrs: bool) -> None:
        self.tree = tree
        self.numeric = numeric_owner
        self.root = root
        self.exact = exact_xattrs
        self._ids: dict[tuple[int, int, str | None, str | None], tuple[int, int]] = {}

    def ids(self, owner: Owner) -> tuple[int, int]:
        # Keyed by a plain tuple: the dataclass's own __hash__/__eq__ run in Python and
        # cost more than the lookup they save on 20,000 files.
        return self.ids_of_key((owner.uid, owner.gid, owner.user, owner.group))

    def ids_of_key(self, key: tuple[int, int, str | None, str | None]) -> tuple[int, int]:
        known = self._ids.get(key)
        if known is None:
            known = self._ids[key] = ids_of(Owner(*key), self.numeric)
        return known

    def columns(self, entries: Sequence[Entry]) -> Columns:
        modes = [e.mode for e in entries]
        mtimes = [e.mtime_ns for e in entries]
        uids: list[int] = []
        gids: list[int] = []
        for e in entries:
            uid, gid = (-1, -1) if e.owner is None else self.ids(e.owner)
            uids.append(uid)
            gids.append(gid)
        xattrs = [(i, x.name, x.value) for i, e in enumerate(entries) for x in e.xattrs]
        return modes, mtimes, uids, gids, xattrs

    def write_files(
        self,
        files: Sequence[FileEntry],
        blockmap: Path,
        pieces: Sequence[Path],
        keys: Sequence[tuple[bytes, bytes] | None] | None,
        progress: Callable[[int, int, int], object] | None,
    ) -> tuple[int, list[Problem]]:
        """Writes `files` (no holes, none there yet) with their metadata; returns the
        bytes written and what could not be applied."""
        blocks = (
            [f.first_block for f in files],
            [f.block_count for f in files],
            [f.size for f in files],
            [f.digest for f in files],
        )
        written, problems = _core.restore_tree(
            self.tree.fd,
            self.tree.root,
            [f.path for f in files],
            blocks,
            self.columns(files),
            blockmap,
            pieces,
            chown=self.root,
            exact_xattrs=self.exact,
            progress=progress,
            keys=keys,
        )
        return written, self._worded(files, problems)

    def write_table(
        self,
        table: FileTable,
        blockmap: Path,
        pieces: Sequence[Path],
        keys: Sequence[tuple[bytes, bytes] | None] | None,
        progress: Callable[[int, int, int], object] | None,
    ) -> tuple[int, list[Problem]]:
        """`write_files` for every file of a manifest's table (none with holes), its
        columns taken from the table's rows: no FileEntry is built but for the entries
        with xattrs (the table's extras) and those a problem names."""
        rows = [r for start in range(0, len(table), 4096) for r in table.rows.rows(start, start + 4096)]
        uids: list[int] = []
        gids: list[int] = []
        for r in rows:
            uid, gid = (-1, -1) if r[7] is None else self.ids_of_key(r[7])
            uids.append(uid)
            gids.append(gid)
        xattrs = [(i, x.name, x.value) for i, e in sorted(table.extras.items()) for x in e.xattrs]
        written, problems = _core.restore_tree(
            self.tree.fd,
            self.tree.root,
            [r[0] for r in rows],
            ([r[5] for r in rows], [r[6] for r in rows], [r[3] for r in rows], [r[4] for r in rows]),
            ([r[1] for r in rows], [r[2] for r in rows], uids, gids, xattrs),
            blockmap,
            pieces,
            chown=self.root,
            exact_xattrs=self.exact,
            progress=progress,
            keys=keys,
        )
        return written, self._worded(table, problems)

    def apply(self, entries: Sequence[Entry], *, deepest_first: bool = False) -> list[Problem]:
        """Sets the metadata of `entries`, which exist (directories, files written by
        another path), each part only where it differs."""
        if not entries:
            return []
        try:
            problems = _core.apply_tree_meta(
                self.tree.fd,
                self.tree.root,
                [e.path for e in entries],
                self.columns(entries),
                chown=self.root,
                exact_xattrs=self.exact,
                deepest_first=deepest_first,
            )
        except BackupError as exc:
            raise BackupError(f"{self.tree.what}: {exc}") from exc
        except OSError as exc:
            raise BackupError(
                f"{self.tree.what}: cannot set metadata of {exc.filename}: {exc.strerror or exc}"
            ) from exc
        return self._worded(entries, problems)

    def _worded(self, entries: Sequence[Entry], problems: list[tuple[int, str, str]]) -> list[Problem]:
        out = []
        for i, what, reason in problems:
            e = entries[i]
            if what == "owner" and not self.root and e.owner is not None:
                o = e.owner
                uid, gid = self.ids(o)
                named = "" if o.user is None and o.group is None else f"{o.user or o.uid}:{o.group or o.gid} "
                reason = f"{named}({uid}:{gid}) not applied: restoring as non-root"
            out.append((e.path or ".", what, reason))
        return out
