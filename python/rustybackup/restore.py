"""Writing one set's manifest back out as a file tree: path checks, directories, file
contents through the Rust core (sparse files with their holes, a delta restore keeping
what already matches), hardlinks, special files, symlinks, then owners, xattrs, modes
and mtimes; every path below the target is reached without following a link
(restore_target.py). What the system refuses (owners or device nodes as a non-root
user, an xattr namespace the target file system lacks) is reported, never dropped."""

from __future__ import annotations

import logging
import os
import resource
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from . import _core, keys, store
from .catalog import BackupSet
from .errors import BackupError, ConfigError
from .manifest import DirEntry, FileEntry, FileTable, HardlinkEntry, Manifest, Owner, SpecialEntry, SymlinkEntry, Xattr
from .restore_batch import MetaWriter, ids_of
from .restore_target import Meta, RestoreTarget
from .sources import label as label  # defined there: a backup labels its files without importing restore

log = logging.getLogger(__name__)

__all__ = [
    "NotRestored",
    "RestoreOptions",
    "RestoreReport",
    "RestoreResult",
    "file_paths",
    "label",
    "restore_set_files",
    "select",
]


@dataclass(frozen=True)
class RestoreOptions:
    """How a files restore writes: ``include`` gitignore patterns (empty: everything);
    ``delta`` into an existing tree, keeping what matches, ``delete`` removing what the
    set does not hold; ``numeric_owner`` applies the recorded ids, not the names (tar)."""

    include: tuple[str, ...] = ()
    delta: bool = False
    delete: bool = False
    numeric_owner: bool = False


@dataclass(frozen=True)
class NotRestored:
    """One thing a restore could not give back as it was backed up, and why."""

    path: str
    what: str
    reason: str


@dataclass
class RestoreReport:
    """What a restore wrote, kept, removed and could not restore."""

    bytes_written: int = 0
    files_written: int = 0
    files_unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    not_restored: list[NotRestored] = field(default_factory=list)

    def merge(self, other: RestoreReport) -> None:
        self.bytes_written += other.bytes_written
        self.files_written += other.files_written
        self.files_unchanged += other.files_unchanged
        self.removed.extend(other.removed)
        self.not_restored.extend(other.not_restored)


class RestoreResult(list[BackupSet]):
    """The sets a restore used (a list, as before), and its `report`."""

    def __init__(self, sets: Sequence[BackupSet] = ()) -> None:
        super().__init__(sets)
        self.report = RestoreReport()


def select(manifest: Manifest, include: Sequence[str]) -> Manifest:
    """The part of `manifest` that `include` (gitignore patterns, last match wins)
    selects: an entry matching, or below a directory matching, and the directories
    above them. A hardlink whose first name is left out takes its data: the first
    selected name of an inode becomes its file."""
    if not include:
        return manifest
    matcher = _matcher(include)

    def take(path: str, is_dir: bool = False) -> bool:
        return bool(matcher.matches_path_or_parents(path, is_dir))

    # Matched on the table's paths: a FileEntry is built only for what is selected, so
    # one file out of a large set costs its path match, not the whole table's entries.
    paths = file_paths(manifest.files)
    files = [manifest.files[i] for i, p in enumerate(paths) if take(p)]
    specials = [s for s in manifest.specials if take(s.path)]
    kept = {f.path for f in files} | {s.path for s in specials}
    index = {p: i for i, p in enumerate(paths)} if manifest.hardlinks else {}
    special_by_path = {s.path: s for s in manifest.specials}
    hardlinks: list[HardlinkEntry] = []
    promoted: dict[str, str] = {}
    for h in manifest.hardlinks:
        if not take(h.path):
            continue
        if h.target in kept:
            hardlinks.append(h)
        elif h.target in promoted:
            hardlinks.append(HardlinkEntry(h.path, promoted[h.target]))
        else:
            promoted[h.target] = h.path
            if h.target in special_by_path:
                specials.append(replace(special_by_path[h.target], path=h.path))
            else:
                files.append(replace(manifest.files[index[h.target]], path=h.path))
    symlinks = [s for s in manifest.symlinks if take(s.path)]
    needed = {p.rpartition("/")[0] for p in [*(f.path for f in files), *(s.path for s in symlinks)]}
    needed |= {h.path.rpartition("/")[0] for h in hardlinks} | {s.path.rpartition("/")[0] for s in specials}
    above = set()
    for p in needed:
        while p and p not in above:
            above.add(p)
            p = p.rpartition("/")[0]
    dirs = [d for d in manifest.dirs if d.path in above or take(d.path, True)]
    return replace(
        manifest,
        files=tuple(sorted(files, key=lambda f: f.path)),
        dirs=tuple(dirs),
        symlinks=tuple(symlinks),
        hardlinks=tuple(hardlinks),
        specials=tuple(sorted(specials, key=lambda s: s.path)),
    )


def file_paths(files: Sequence[FileEntry]) -> list[str]:
    """The paths of `files`, from a manifest's file table without building its entries."""
    return files.paths() if isinstance(files, FileTable) else [f.path for f in files]


def _matcher(include: Sequence[str]) -> _core.PathMatcher:
    try:
        return _core.PathMatcher(list(include))
    except ValueError as exc:
        raise ConfigError(f"--include: {exc}") from None


def restore_set_files(
    repository: Path,
    set_id: str,
    manifest: Manifest,
    target: Path,
    progress: Callable[[int], object] | None,
    *,
    archive: bool,
    options: RestoreOptions | None = None,
    remote: _core.ObjectStore | None = None,
) -> RestoreReport:
    """Restores the entries of `manifest` (loaded and validated) that `options` select
    under `target`; returns what was written and what could not be restored. With
    `remote` the file contents come straight from the pieces in that store (by ranges;
    the cache holds only the block map), which only the plain restore does: no delta,
    no file with holes (`streams_from`).

    Nothing is written through a link (restore_target.py): directories first, each
    created and checked one component at a time; then the files (the Rust core opens
    each with ``O_NOFOLLOW``: new, or with ``delta`` the existing regular file); then
    hardlinks, special files and links; then metadata through descriptors, deepest
    directories last. For an archive set, `target` is the ``archive`` directory below
    the restore target, created here and refused if it is a link.
    """
    opts = options or RestoreOptions()
    what = f"restore of set {set_id}"
    if archive:
        with RestoreTarget(target.parent, what) as top:
            tree = top.subdir(target.name)
    else:
        tree = RestoreTarget(target, what)
        manifest = select(manifest, opts.include)
    with tree:
        return _Restore(repository, manifest, tree, opts, what, progress, remote).run(archive)


def streams_from(manifest: Manifest, options: RestoreOptions | None) -> bool:
    """Whether a restore of `manifest` can read its pieces from the store by ranges:
    the in-place restore (delta, files with holes) reads local pieces."""
    return not (options is not None and options.delta) and not any(f.holes for f in manifest.files)


class _Restore:
    def __init__(
        self,
        repository: Path,
        manifest: Manifest,
        tree: RestoreTarget,
        opts: RestoreOptions,
        what: str,
        progress: Callable[[int], object] | None,
        remote: _core.ObjectStore | None = None,
    ) -> None:
        self.repository = repository
        self.remote = remote
        self.m = manifest
        self.tree = tree
        self.opts = opts
        self.what = what
        self.progress = progress
        self.report = RestoreReport()
        self.problems: list[tuple[str, str, str]] = []
        self.file_problems: list[tuple[str, str, str]] = []
        self.root = os.geteuid() == 0
        self.meta = MetaWriter(
            tree, numeric_owner=opts.numeric_owner, root=self.root, exact_xattrs=manifest.format >= 2
        )

    @cached_property
    def files(self) -> list[FileEntry]:
        """The manifest's files as entries, built once and only where a pass needs them
        (delta, hardlinks, holes): each pass over a file table builds a FileEntry per
        file, three were a fifth of a 20,000-file restore's CPU."""
        return list(self.m.files)

    def run(self, archive: bool) -> RestoreReport:
        m, tree = self.m, self.tree
        if self.opts.delta:
            self._clear_conflicts()
        dirs = {d.path for d in m.dirs}  # once: built per entry it was O(entries x dirs)
        paths = [p for p in _paths(m, file_paths(m.files)) if p not in dirs]
        tree.make_dirs([d.path for d in m.dirs] + [p.rpartition("/")[0] for p in paths if "/" in p])
        elsewhere = self._contents()
        specials = {s.path for s in m.specials}
        for h in m.hardlinks:
            if h.target not in specials:
                self._hardlink(h)
        for s in m.specials:
            self._special(s.path, s.kind, s.mode, os.makedev(s.major, s.minor))
        for h in m.hardlinks:
            # Other names of a FIFO or device node, once it exists (a device is not
            # created as non-root: its names are reported with it).
            if h.target not in specials:
                continue
            if tree.lstat(h.target) is None:
                self.problems.append((h.path, "hardlink", f"not created: {h.target} was not restored"))
            else:
                self._hardlink(h)
        for link in m.symlinks:
            if self.opts.delta:
                st = tree.lstat(link.path)
                if st is not None and stat.S_ISLNK(st.st_mode):
                    # os.readlink takes no dir_fd: read it through the directory's /proc link.
                    pfd = tree.open_dir(link.path.rpartition("/")[0])
                    try:
                        same = os.readlink(f"/proc/self/fd/{pfd}/{link.path.rpartition('/')[2]}") == link.target
                    finally:
                        os.close(pfd)
                    if same:
                        self._meta(link.path, None, link.mtime_ns, link.owner, link.xattrs, link=True)
                        continue
                    tree.remove(link.path)
            tree.symlink(link.path, link.target, link.mtime_ns)
            self._meta(link.path, None, link.mtime_ns, link.owner, link.xattrs, link=True)
        self.problems.extend(self.file_problems)
        self.problems.extend(self.meta.apply(elsewhere))
        for s in m.specials:
            if tree.lstat(s.path) is not None:
                self._meta(s.path, s.mode, s.mtime_ns, s.owner, s.xattrs)
        if self.opts.delete and not archive:
            self._delete_extra()
        if not archive:
            # Deepest first, so setting a parent's mtime is not undone by touching a child.
            self.problems.extend(self.meta.apply(m.dirs, deepest_first=True))
            if m.root is not None:
                # The target itself last: its mtime is final only once nothing below changes.
                self.problems.extend(self.meta.apply([m.root]))
        self.report.not_restored.extend(NotRestored(*p) for p in self.problems)
        for p in self.report.not_restored:
            log.warning("%s: %s: %s %s", self.what, p.path, p.what, p.reason)
        return self.report

    # --- contents -------------------------------------------------------------------

    def _contents(self) -> list[FileEntry]:
        """Writes every file's contents; a plain local file gets its metadata in the same
        pass. Returns the files written by another path, whose metadata is still to set."""
        m, tree, remote = self.m, self.tree, self.remote
        piece_paths = [self.repository / store.SETS_DIR / s.set_id / s.piece for s in m.sources]
        table = m.files if isinstance(m.files, FileTable) else None
        if table is not None and (self.opts.delta or remote is not None or any(e.holes for e in table.extras.values())):
            table = None
        plain: list[FileEntry]
        placed: list[FileEntry]
        if table is not None:
            plain, placed = [], []  # written from the table's rows below
        elif self.opts.delta:
            plain, placed = [], self.files
        else:
            plain = [f for f in self.files if not f.holes]
            placed = [f for f in self.files if f.holes] if len(plain) < len(self.files) else []
        hook = None if self.progress is None else self.progress
        # An encrypted set's sealed blocks open with each source set's keys (keys.py).
        block_keys = keys.source_block_keys(self.repository, [s.set_id for s in m.sources])
        on_progress = None if hook is None else (lambda done, _w, _f: hook(done))
        elsewhere = list(placed)
        try:
            if table is not None and len(table):
                # From the table's rows: no FileEntry per file (restore_batch.py).
                written, problems = self.meta.write_table(
                    table, self.repository / m.blockmap.path, piece_paths, block_keys, on_progress
                )
                self.report.bytes_written += written
                self.report.files_written += len(table)
                self.file_problems = problems
            if plain and remote is None:
                # Contents and metadata of every file in one Rust pass (restore_batch.py).
                written, problems = self.meta.write_files(
                    plain, self.repository / m.blockmap.path, piece_paths, block_keys, on_progress
                )
                self.report.bytes_written += written
                self.report.files_written += len(plain)
                # Reported where file metadata always was: after special files and links.
                self.file_problems = problems
            elif plain and remote is not None:
                elsewhere += plain
                jobs = [
                    (label(f.path), tree.path(f.path), f.first_block, f.block_count, f.size, f.digest) for f in plain
                ]
                # From a bucket, by ranges as it writes (storage/restore.rs).
                self.report.bytes_written += remote.restore_files(
                    jobs,
                    self.repository / m.blockmap.path,
                    [f"{store.SETS_DIR}/{s.set_id}/{s.piece}" for s in m.sources],
                    progress=on_progress,
                    keys=block_keys,
                )
                self.report.files_written += len(plain)
            if placed:
                into = [
                    (
                        label(f.path),
                        tree.path(f.path),
                        f.first_block,
                        f.block_count,
                        f.size,
                        f.digest,
                        list(f.holes),
                        self.opts.delta,
                    )
                    for f in placed
                ]
                done = _core.restore_into(
                    into,
                    self.repository / m.blockmap.path,
                    piece_paths,
                    progress=on_progress,
                    keys=block_keys,
                )
                for written, touched in done:
                    self.report.bytes_written += written
                    if touched:
                        self.report.files_written += 1
                    else:
                        self.report.files_unchanged += 1
        except BackupError as exc:
            raise BackupError(f"{self.what} failed: {exc}") from exc
        except OSError as exc:
            raise BackupError(f"{self.what} failed: {exc.strerror or exc}: {exc.filename}") from exc
        return elsewhere

    # --- other entries ----------------------------------------------------------------

    def _clear_conflicts(self) -> None:
        """Delta: whatever stands where the set needs another kind of entry is removed
        first (a link where a directory belongs, a directory where a file does), parents
        before children so nothing is reached through a link."""
        m, tree = self.m, self.tree
        want: dict[str, int] = {d.path: stat.S_IFDIR for d in m.dirs}
        want |= {f.path: stat.S_IFREG for f in self.files}
        want |= {s.path: stat.S_IFLNK for s in m.symlinks}
        for d in sorted(want):
            parent = d.rpartition("/")[0]
            if parent and want.get(parent) != stat.S_IFDIR:
                continue  # below a directory the set lacks: made by make_dirs
            st = self._existing(d)
            if st is not None and stat.S_IFMT(st.st_mode) != want[d]:
                tree.remove(d)
                self.report.removed.append(d)
        self._unshare_files()
        for h in m.hardlinks:
            st = self._existing(h.path)
            if st is None:
                continue
            first = self._existing(h.target)
            same = first is not None and (first.st_dev, first.st_ino) == (st.st_dev, st.st_ino)
            # Already a name of the file it links to: kept, so that file's ctime stays.
            if not same or not stat.S_ISREG(st.st_mode):
                tree.remove(h.path)
        for s in m.specials:
            st = self._existing(s.path)
            if st is not None and not (
                stat.S_IFMT(st.st_mode) == stat.S_IFMT(_type(s.kind)) and st.st_rdev == os.makedev(s.major, s.minor)
            ):
                tree.remove(s.path)

    def _unshare_files(self) -> None:
        """Delta: a file is rewritten in place only if its inode has exactly the names
        the set gives it; an inode shared with other names (hardlinked in the target but
        not in the set) is unlinked here and the file written anew, or the in-place
        write would change those other names too."""
        names: dict[str, list[str]] = {f.path: [f.path] for f in self.files}
        for h in self.m.hardlinks:
            if h.target in names:  # not the names of a special file
                names[h.target].append(h.path)
        for path, group in names.items():
            st = self._existing(path)
            if st is None or not stat.S_ISREG(st.st_mode) or st.st_nlink == 1:
                continue
            shared = [self._existing(n) for n in group[1:]]
            if st.st_nlink != len(group) or any(
                o is None or (o.st_dev, o.st_ino) != (st.st_dev, st.st_ino) for o in shared
            ):
                self.tree.remove(path)

    def _existing(self, rel: str) -> os.stat_result | None:
        """What stands at `rel` in the target, None also when a parent is absent (the
        conflicts above it were removed first; make_dirs creates it)."""
        try:
            return self.tree.lstat(rel)
        except BackupError:
            return None

    def _hardlink(self, h: HardlinkEntry) -> None:
        if self.opts.delta and self.tree.lstat(h.path) is not None:
            return  # kept by _clear_conflicts: the same inode already
        self.tree.hardlink(h.path, h.target)

    def _special(self, rel: str, kind: str, mode: int, device: int) -> None:
        if self.tree.lstat(rel) is not None:
            return  # delta: the same node is there already
        try:
            self.tree.special(rel, kind, mode, device)
        except PermissionError as exc:
            what = "fifo" if kind == "fifo" else f"{kind} device {os.major(device)}:{os.minor(device)}"
            self.problems.append((rel, what, f"not created: {exc.strerror} (device nodes need root)"))

    def _meta(
        self,
        rel: str,
        mode: int | None,
        mtime_ns: int,
        owner: Owner | None,
        xattrs: tuple[Xattr, ...],
        *,
        link: bool = False,
    ) -> None:
        ids = None if owner is None else ids_of(owner, self.opts.numeric_owner)
        if ids is not None and not self.root:
            st = self.tree.lstat(rel)
            if st is not None and (st.st_uid, st.st_gid) != ids:
                named = (
                    ""
                    if owner is None or (owner.user is None and owner.group is None)
                    else (f"{owner.user or owner.uid}:{owner.group or owner.gid} ")
                )
                self.problems.append((rel, "owner", f"{named}({ids[0]}:{ids[1]}) not applied: restoring as non-root"))
            ids = None
        meta = Meta(mode, mtime_ns, ids, xattrs, exact_xattrs=self.m.format >= 2)
        self.tree.apply(rel, meta, link=link, problems=self.problems)

    def _selected(self, rel: str, is_dir: bool) -> bool:
        """Whether --include patterns (if any) cover `rel`: a partial restore with
        --delete removes extra entries only inside what it restores."""
        if not self.opts.include:
            return True
        return bool(_matcher(self.opts.include).matches_path_or_parents(rel, is_dir))

    def _delete_extra(self) -> None:
        m = self.m
        paths = _paths(m, file_paths(m.files))
        keep = set(paths)
        for path in paths:
            p = path.rpartition("/")[0]
            while p:
                keep.add(p)
                p = p.rpartition("/")[0]
        doomed = [rel for rel, is_dir in self.tree.walk() if rel not in keep and self._selected(rel, is_dir)]
        gone: set[str] = set()
        for rel in doomed:
            parts = rel.split("/")
            if any("/".join(parts[:i]) in gone for i in range(1, len(parts))):
                continue
            self.tree.remove(rel)
            gone.add(rel)
            self.report.removed.append(rel)


def _paths(m: Manifest, files: list[str]) -> list[str]:
    """Every path of the manifest's entries, of every kind (`files`: its files' paths)."""
    groups: tuple[Sequence[DirEntry | SymlinkEntry | HardlinkEntry | SpecialEntry], ...] = (
        m.dirs,
        m.symlinks,
        m.hardlinks,
        m.specials,
    )
    return files + [e.path for g in groups for e in g]


def _type(kind: str) -> int:
    return {"fifo": stat.S_IFIFO, "char": stat.S_IFCHR, "block": stat.S_IFBLK}[kind]


def file_job(f: FileEntry) -> tuple[str, int, int, int, str]:
    """The Rust core's description of one file to stream (``_core.dump_file``)."""
    return (label(f.path), f.first_block, f.block_count, f.size, f.digest)


def allow_open_files(needed: int) -> None:
    """A restore holds a reader's lock, the block map and the piece of every set of its
    chain open at once (about 2,200 files at the end of 720 hourly incrementals), over
    the usual soft limit of 1,024 open files. Raise the soft limit toward the hard one, as Go's runtime does at
    start-up; a hard limit below what is needed is left for the OS error to name."""
    want = needed + 64  # stdin/out/err, the catalog, logs, the target's directory fds
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        log.info("raising the open-files limit from %d to %d for %d files held open", soft, new, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
