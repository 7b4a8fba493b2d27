"""The directory a restore writes into, reached without ever following a link.

The target directory itself is the caller's choice and is opened as given. Everything
below it is reached one component at a time from that descriptor with
``O_NOFOLLOW | O_DIRECTORY`` (``openat``), and created with ``mkdir`` relative to its
parent's descriptor. A symlink, or any non-directory, where a directory belongs is an
error, whether it was in the target before the restore or was restored by it: nothing
(file, directory, link, archive log) is ever written through a link, so nothing lands
outside the target. Links are created last, with ``symlinkat``, and their text is data:
``/etc/passwd``, ``..`` or a dangling name are all restored as they were backed up.

Files are written by the Rust core at ``path(rel)``: their parent directories were
created and checked here first, and the core opens each file with
``O_CREAT | O_EXCL | O_NOFOLLOW``, so an entry that exists already (a planted link
included) fails instead of being written through.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import TracebackType

from .errors import BackupError

__all__ = ["RestoreTarget"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A symlink opened with O_NOFOLLOW fails with ELOOP (or ENOTDIR with O_DIRECTORY on some
# kernels); a file where a directory belongs fails with ENOTDIR.
_NOT_A_DIR = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


def _parts(rel: str) -> list[str]:
    return rel.split("/") if rel else []


def _check_name(name: str, rel: str, what: str) -> None:
    """One path component that stays in its directory. The manifest was validated
    already; this is the last check before a name reaches a system call."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise BackupError(f"{what}: path {rel!r} would leave the restore target")


class RestoreTarget:
    """An open restore target; ``what`` names the restore in error messages."""

    def __init__(self, root: Path, what: str, *, fd: int | None = None) -> None:
        self.root = root
        self.what = what
        # The directory of the last entry touched: files come sorted by path, so most
        # share the previous one's parent and need one open, not one per level.
        self._parent: tuple[str, int] | None = None
        try:
            self._fd = fd if fd is not None else os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise BackupError(f"{what}: cannot open the restore target {root}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        self._drop_parent()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _parent_fd(self, rel: str) -> int:
        """A descriptor of directory ``rel``, kept until another one is asked for."""
        if self._parent is not None and self._parent[0] == rel:
            return self._parent[1]
        self._drop_parent()
        fd = self.open_dir(rel)
        self._parent = (rel, fd)
        return fd

    def _drop_parent(self) -> None:
        if self._parent is not None:
            os.close(self._parent[1])
            self._parent = None

    def __enter__(self) -> RestoreTarget:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def path(self, rel: str) -> Path:
        """Where the Rust core writes file ``rel`` (its parents checked by ``make_dirs``)."""
        return self.root / rel

    # --- directories ------------------------------------------------------------------

    def subdir(self, name: str) -> RestoreTarget:
        """The directory ``name`` right below this one, created if absent; a link named
        ``name`` (a files source may hold one called ``archive``) is refused."""
        fd = self._step(self._fd, name, name, create=True)
        return RestoreTarget(self.root / name, self.what, fd=fd)

    def make_dirs(self, rels: list[str]) -> None:
        """Creates every directory of ``rels`` and all their parents.

        Sorted by components, each directory's parent is created (and checked) just
        before it, so a walk keeps one descriptor per level instead of starting again
        from the top for every path.
        """
        wanted: set[tuple[str, ...]] = set()
        for rel in rels:
            parts = tuple(_parts(rel))
            for depth in range(1, len(parts) + 1):
                wanted.add(parts[:depth])
        stack: list[tuple[tuple[str, ...], int]] = [((), self._fd)]
        try:
            for parts in sorted(wanted):
                while stack[-1][0] != parts[:-1]:
                    os.close(stack.pop()[1])
                fd = self._step(stack[-1][1], parts[-1], "/".join(parts), create=True)
                stack.append((parts, fd))
        finally:
            for _, fd in stack[1:]:
                os.close(fd)

    def open_dir(self, rel: str) -> int:
        """A new descriptor of the existing directory ``rel`` ("" is the target)."""
        fd = os.dup(self._fd)
        done: list[str] = []
        try:
            for part in _parts(rel):
                done.append(part)
                fd_next = self._step(fd, part, "/".join(done), create=False)
                os.close(fd)
                fd = fd_next
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _step(self, parent: int, name: str, shown: str, *, create: bool) -> int:
        _check_name(name, shown, self.what)
        if create:
            try:
                os.mkdir(name, 0o777, dir_fd=parent)
            except FileExistsError:
                pass  # checked by the open below: it must be a real directory
            except OSError as exc:
                raise BackupError(f"{self.what}: cannot create {self._at(shown)}: {exc.strerror or exc}") from exc
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in _NOT_A_DIR:
                raise BackupError(
                    f"{self.what}: {self._at(shown)} is a symlink or not a directory; refusing to write through it"
                ) from None
            raise BackupError(f"{self.what}: cannot open {self._at(shown)}: {exc.strerror or exc}") from exc

    def _at(self, rel: str) -> str:
        return str(self.root / rel)

    # --- entries --------------------------------------------------------------------------

    def symlink(self, rel: str, link_target: str, mtime_ns: int) -> None:
        """Creates link ``rel`` -> ``link_target`` (never followed, whatever it names)."""
        parent, _, name = rel.rpartition("/")
        _check_name(name, rel, self.what)
        fd = self._parent_fd(parent)
        try:
            os.symlink(link_target, name, dir_fd=fd)
            os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=fd, follow_symlinks=False)
        except FileExistsError:
            raise BackupError(f"{self.what}: {self._at(rel)} already exists; a link is never written over it") from None
        except OSError as exc:
            raise BackupError(f"{self.what}: cannot create link {self._at(rel)}: {exc.strerror or exc}") from exc

    def write_file(self, rel: str, data: bytes, *, append: bool = False, mode: int = 0o600) -> None:
        """Writes (or appends to) a small file the restore adds, such as PostgreSQL's
        ``recovery.signal``: its parents are reached as every other path and the file
        is opened with ``O_NOFOLLOW``, so a restored link by that name is an error."""
        parent, _, name = rel.rpartition("/")
        _check_name(name, rel, self.what)
        pfd = self._parent_fd(parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
        try:
            fd = os.open(name, flags, mode, dir_fd=pfd)
        except OSError as exc:
            if exc.errno in _NOT_A_DIR:
                raise BackupError(f"{self.what}: {self._at(rel)} is a symlink; refusing to write through it") from None
            raise BackupError(f"{self.what}: cannot write {self._at(rel)}: {exc.strerror or exc}") from exc
        try:
            with os.fdopen(fd, "ab" if append else "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise BackupError(f"{self.what}: cannot write {self._at(rel)}: {exc.strerror or exc}") from exc

    def set_meta(self, rel: str, mode: int, mtime_ns: int, *, directory: bool) -> None:
        """Sets the mode and mtime of file or directory ``rel`` through a descriptor
        opened without following links (``chmod`` by name would follow one)."""
        parent, _, name = rel.rpartition("/")
        _check_name(name, rel, self.what)
        pfd = self._parent_fd(parent)
        flags = _DIR_FLAGS if directory else os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(name, flags, dir_fd=pfd)
        except OSError as exc:
            if exc.errno in _NOT_A_DIR:
                raise BackupError(
                    f"{self.what}: {self._at(rel)} was replaced by a symlink or another kind of entry"
                ) from None
            raise BackupError(f"{self.what}: cannot open {self._at(rel)}: {exc.strerror or exc}") from exc
        try:
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        except OSError as exc:
            raise BackupError(
                f"{self.what}: cannot set mode and time of {self._at(rel)}: {exc.strerror or exc}"
            ) from exc
        finally:
            os.close(fd)
