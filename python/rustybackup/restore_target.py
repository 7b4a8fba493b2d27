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
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from . import _core
from .errors import BackupError
from .manifest import Xattr

__all__ = ["Meta", "RestoreTarget", "remove_restored"]


@dataclass(frozen=True)
class Meta:
    """What to set on one restored entry; None leaves that part as it is (a link has no
    mode of its own; owners are set only when the caller asks)."""

    mode: int | None
    mtime_ns: int | None
    owner: tuple[int, int] | None
    xattrs: tuple[Xattr, ...]
    # The set recorded every xattr (manifest format 2): others found on the entry (left
    # in a delta target, inherited from a default ACL) are removed, in the namespaces a
    # backup reads; security.* labels the system sets itself are left alone.
    exact_xattrs: bool = False


_REMOVABLE = ("user.", "trusted.", "system.posix_acl_")


_SPECIAL_TYPE = {"fifo": stat.S_IFIFO, "char": stat.S_IFCHR, "block": stat.S_IFBLK}

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

    @property
    def fd(self) -> int:
        """The target's open directory descriptor (what the Rust core starts from)."""
        return self._fd

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
        from the top for every path: one Rust pass (engine/tree_meta.rs), same rules
        as ``_step``.
        """
        try:
            _core.make_tree_dirs(self._fd, self.root, list(rels))
        except BackupError as exc:
            raise BackupError(f"{self.what}: {exc}") from None
        except OSError as exc:
            raise BackupError(f"{self.what}: cannot create {exc.filename}: {exc.strerror or exc}") from exc

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

    def _split(self, rel: str) -> tuple[int, str]:
        parent, _, name = rel.rpartition("/")
        _check_name(name, rel, self.what)
        return self._parent_fd(parent), name

    # --- what is there already (delta restore) ------------------------------------------

    def lstat(self, rel: str) -> os.stat_result | None:
        """The entry at ``rel`` (not followed), or None; its parents must be directories."""
        pfd, name = self._split(rel)
        try:
            return os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackupError(f"{self.what}: cannot look at {self._at(rel)}: {exc.strerror or exc}") from exc

    def remove(self, rel: str) -> None:
        """Removes the entry at ``rel``, a whole directory included, without following a
        link (``shutil.rmtree`` with ``dir_fd`` walks by descriptors)."""
        pfd, name = self._split(rel)
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                self._drop_parent_below(rel)
                shutil.rmtree(name, dir_fd=pfd)
            else:
                os.unlink(name, dir_fd=pfd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BackupError(f"{self.what}: cannot remove {self._at(rel)}: {exc.strerror or exc}") from exc

    def _drop_parent_below(self, rel: str) -> None:
        if self._parent is not None and (self._parent[0] + "/").startswith(rel + "/"):
            self._drop_parent()

    def walk(self) -> Iterator[tuple[str, bool]]:
        """Every entry under the target as (relative path, is a real directory), parents
        before children, by descriptors: a link is listed, never entered."""
        stack: list[tuple[str, int]] = [("", os.dup(self._fd))]
        try:
            while stack:
                prefix, fd = stack.pop()
                try:
                    with os.scandir(fd) as listing:
                        entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in listing)
                    for name, is_dir in entries:
                        rel = prefix + name
                        yield rel, is_dir
                        if is_dir:
                            try:
                                stack.append((rel + "/", os.open(name, _DIR_FLAGS, dir_fd=fd)))
                            except OSError as exc:
                                if exc.errno not in _NOT_A_DIR and exc.errno != errno.ENOENT:
                                    raise
                finally:
                    os.close(fd)
        finally:
            for _, fd in stack:
                os.close(fd)

    # --- tree entries beyond files and links ------------------------------------------

    def hardlink(self, rel: str, target: str) -> None:
        """Makes ``rel`` another name of the restored file ``target`` (both inside the
        target; the link itself is never followed)."""
        tparent, _, tname = target.rpartition("/")
        _check_name(tname, target, self.what)
        tfd = self.open_dir(tparent)
        try:
            pfd, name = self._split(rel)
            os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileExistsError:
            raise BackupError(
                f"{self.what}: {self._at(rel)} already exists; a hardlink is never made over it"
            ) from None
        except OSError as exc:
            raise BackupError(
                f"{self.what}: cannot link {self._at(rel)} to {self._at(target)}: {exc.strerror or exc}"
            ) from exc
        finally:
            os.close(tfd)

    def special(self, rel: str, kind: str, mode: int, device: int) -> None:
        """Creates a FIFO or device node; PermissionError (creating a device as a
        non-root user) is left to the caller, which reports it."""
        pfd, name = self._split(rel)
        try:
            os.mknod(name, (mode & 0o7777) | _SPECIAL_TYPE[kind], device, dir_fd=pfd)
        except FileExistsError:
            raise BackupError(f"{self.what}: {self._at(rel)} already exists") from None
        except PermissionError:
            raise
        except OSError as exc:
            raise BackupError(f"{self.what}: cannot create {kind} {self._at(rel)}: {exc.strerror or exc}") from exc

    def apply(self, rel: str, meta: Meta, *, link: bool, problems: list[tuple[str, str, str]]) -> bool:
        """Sets owner, xattrs, mode and mtime of ``rel`` in that order (chown clears
        setuid/setgid and file capabilities, so mode and xattrs come after it), each only
        if it differs: an entry already right is not touched (its ctime stays). Nothing
        is set through a link: a link is changed with ``*at(..., AT_SYMLINK_NOFOLLOW)``,
        anything else through an ``O_PATH | O_NOFOLLOW`` descriptor. What the system
        refuses goes to ``problems`` as (path, what, why). Returns whether it changed."""
        pfd, name = self._split(rel)
        if link:
            return self._apply_link(rel, pfd, name, meta, problems)
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        except OSError as exc:
            raise BackupError(f"{self.what}: cannot open {self._at(rel)}: {exc.strerror or exc}") from exc
        try:
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                raise BackupError(f"{self.what}: {self._at(rel)} was replaced by a symlink; refusing to follow it")
            # The inode itself, reached through the descriptor's /proc link: path calls
            # on it act on that inode and nothing else.
            at = f"/proc/self/fd/{fd}"
            return self._apply_at(rel, at, st, meta, problems)
        except OSError as exc:
            raise BackupError(f"{self.what}: cannot set metadata of {self._at(rel)}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)

    def _apply_at(
        self, rel: str, at: str, st: os.stat_result, meta: Meta, problems: list[tuple[str, str, str]]
    ) -> bool:
        changed = False
        if meta.owner is not None and (st.st_uid, st.st_gid) != meta.owner:
            try:
                os.chown(at, *meta.owner)
                changed = True
                st = os.stat(at)
            except PermissionError as exc:
                problems.append((rel, "owner", f"{meta.owner[0]}:{meta.owner[1]} not applied: {exc.strerror}"))
        changed |= self._xattrs(rel, at, meta, problems, follow=True)
        if meta.mode is not None and stat.S_IMODE(st.st_mode) != meta.mode:
            try:
                os.chmod(at, meta.mode)
                changed = True
            except PermissionError as exc:
                problems.append((rel, "mode", f"{meta.mode:o} not applied: {exc.strerror}"))
        if meta.mtime_ns is not None and (changed or st.st_mtime_ns != meta.mtime_ns):
            os.utime(at, ns=(meta.mtime_ns, meta.mtime_ns))
            changed = True
        return changed

    def _apply_link(self, rel: str, pfd: int, name: str, meta: Meta, problems: list[tuple[str, str, str]]) -> bool:
        changed = False
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                raise BackupError(f"{self.what}: {self._at(rel)} is no longer a symlink")
            if meta.owner is not None and (st.st_uid, st.st_gid) != meta.owner:
                try:
                    os.chown(name, *meta.owner, dir_fd=pfd, follow_symlinks=False)
                    changed = True
                except PermissionError as exc:
                    problems.append((rel, "owner", f"{meta.owner[0]}:{meta.owner[1]} not applied: {exc.strerror}"))
            # The directory through its descriptor's /proc link, the last name not followed.
            changed |= self._xattrs(rel, f"/proc/self/fd/{pfd}/{name}", meta, problems, follow=False)
            if meta.mtime_ns is not None and (changed or st.st_mtime_ns != meta.mtime_ns):
                os.utime(name, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=pfd, follow_symlinks=False)
                changed = True
        except OSError as exc:
            raise BackupError(
                f"{self.what}: cannot set metadata of link {self._at(rel)}: {exc.strerror or exc}"
            ) from exc
        return changed

    def _xattrs(self, rel: str, at: str, meta: Meta, problems: list[tuple[str, str, str]], *, follow: bool) -> bool:
        changed = False
        if meta.exact_xattrs:
            wanted = {x.name for x in meta.xattrs}
            try:
                present = os.listxattr(at, follow_symlinks=follow)
            except OSError:
                present = []
            for name in present:
                if name not in wanted and name.startswith(_REMOVABLE):
                    try:
                        os.removexattr(at, name, follow_symlinks=follow)
                        changed = True
                    except OSError as exc:
                        problems.append((rel, f"xattr {name}", f"not removed: {exc.strerror or exc}"))
        for x in meta.xattrs:
            try:
                if os.getxattr(at, x.name, follow_symlinks=follow) == x.value:
                    continue
            except OSError:
                pass  # absent (or unreadable): set it
            try:
                os.setxattr(at, x.name, x.value, follow_symlinks=follow)
                changed = True
            except OSError as exc:
                # EPERM: trusted.* as non-root, user.* on a link or device; ENOTSUP: the
                # target file system has no such namespace. Reported, never fatal.
                problems.append((rel, f"xattr {x.name}", f"not restored: {exc.strerror or exc}"))
        return changed

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


def remove_restored(root: Path) -> None:
    """Removes a tree this process restored (a RESTORE_TEST sandbox), also when the set
    gave some of its directories, or the target itself, no write or search permission: as
    a non-root user those cannot be emptied until their owner bits allow it. Links are
    never followed: each directory is opened with ``O_NOFOLLOW`` and changed through its
    descriptor."""

    def open_writable(parent: int | None, name: str) -> int | None:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError:
            # Mode 000 (not even readable): make it searchable through its parent first.
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            except OSError:
                return None
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    return None
                os.chmod(f"/proc/self/fd/{fd}", 0o700)
            except OSError:
                return None
            finally:
                os.close(fd)
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except OSError:
                return None
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o700 != 0o700:
                os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | 0o700)
        except OSError:
            pass  # not ours: rmtree reports what it cannot remove
        return fd

    def walk(fd: int) -> None:
        try:
            with os.scandir(fd) as it:
                names = [e.name for e in it if e.is_dir(follow_symlinks=False)]
            for name in names:
                sub = open_writable(fd, name)
                if sub is not None:
                    walk(sub)
        finally:
            os.close(fd)

    top = open_writable(None, os.fspath(root))
    if top is not None:
        walk(top)
    shutil.rmtree(root, ignore_errors=True)
