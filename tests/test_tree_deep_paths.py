"""Paths longer than PATH_MAX (4096 bytes) carrying xattrs and POSIX ACLs. No call that
takes a whole path can reach such an entry (ENAMETOOLONG): the restore goes below
directory descriptors, so a tree restored into a deep target comes back whole however
long its full paths get. The backup's walk still lists directories by their full path:
a source directory past PATH_MAX is not stored, and the set names it with the reason.
Trees are built and compared one component at a time, metadata read through
``/proc/self/fd/N/NAME`` (a short path the kernel resolves through the open directory)."""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from rustybackup import BackupManager

PATH_MAX = 4096
NAME = "d" * 200  # 201 bytes a level with its slash: 25 levels pass PATH_MAX
LEVELS = 25

# POSIX ACL xattr (linux/posix_acl_xattr.h): version 2, then (tag, perm, id) entries.
ACL_TAGS = {"user_obj": 0x01, "user": 0x02, "group_obj": 0x04, "group": 0x08, "mask": 0x10, "other": 0x20}
UNDEFINED_ID = 0xFFFFFFFF


def acl(*entries: tuple[str, int, int]) -> bytes:
    out = struct.pack("<I", 2)
    for tag, perm, ident in entries:
        out += struct.pack("<HHI", ACL_TAGS[tag], perm, ident)
    return out


FILE_ACL = acl(("user_obj", 6, UNDEFINED_ID), ("user", 4, 1234), ("group_obj", 4, UNDEFINED_ID),
               ("mask", 6, UNDEFINED_ID), ("other", 0, UNDEFINED_ID))  # fmt: skip
DIR_DEFAULT_ACL = acl(("user_obj", 7, UNDEFINED_ID), ("group_obj", 5, UNDEFINED_ID),
                      ("group", 5, 4321), ("mask", 5, UNDEFINED_ID), ("other", 5, UNDEFINED_ID))  # fmt: skip


def proc(dfd: int, name: str) -> str:
    return f"/proc/self/fd/{dfd}/{name}"


def acl_support(where: Path) -> str | None:
    """None when files below ``where`` take user.* xattrs and ACLs; the reason if not."""
    probe = where / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        os.setxattr(probe, "system.posix_acl_access", FILE_ACL)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL):
            return f"{where} does not take user.* xattrs or POSIX ACLs: {e}"
        raise
    finally:
        probe.unlink()
    return None


def build(src: Path, levels: int = LEVELS) -> int:
    """The deep tree below ``src``; returns the length of its longest path."""
    src.mkdir()
    os.setxattr(src, "user.root", b"top")
    dfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    depth_bytes = len(os.fsencode(src))
    try:
        for level in range(levels):
            with open(os.open(f"f{level}", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=dfd), "wb") as f:
                f.write(f"level {level} ".encode() * (level + 1))
                os.setxattr(f.fileno(), "user.level", str(level).encode())
                if level % 5 == 0:
                    os.setxattr(f.fileno(), "system.posix_acl_access", FILE_ACL)
            os.symlink("../" * min(level, 3) + "target", "link", dir_fd=dfd)
            os.mkdir(NAME, 0o750, dir_fd=dfd)
            os.utime("link", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789 + level), dir_fd=dfd,
                     follow_symlinks=False)  # fmt: skip
            nxt = os.open(NAME, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dfd)
            os.setxattr(nxt, "user.dir", f"dir {level}".encode())
            if level % 7 == 3:
                os.setxattr(nxt, "system.posix_acl_default", DIR_DEFAULT_ACL)
            os.close(dfd)
            dfd = nxt
            depth_bytes += 1 + len(NAME)
        # The deepest entries: past PATH_MAX, with data, an xattr on the file and an empty
        # directory below them.
        with open(os.open("deepest", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=dfd), "wb") as f:
            f.write(b"at the bottom\n" * 1000)
            os.setxattr(f.fileno(), "user.deepest", b"\x00binary\xff")
            os.setxattr(f.fileno(), "system.posix_acl_access", FILE_ACL)
        os.mkdir("empty", 0o700, dir_fd=dfd)
        os.setxattr(proc(dfd, "empty"), "user.empty", b"e")
        os.utime("deepest", ns=(1_700_000_000_000_000_001, 1_700_000_000_000_000_001), dir_fd=dfd)
    finally:
        os.close(dfd)
    return depth_bytes + 1 + len("deepest")


Entry = tuple[int, int, int, int, int, dict[str, bytes], bytes]


def _xattrs(path: str) -> dict[str, bytes]:
    return {x: os.getxattr(path, x, follow_symlinks=False) for x in sorted(os.listxattr(path, follow_symlinks=False))}


def snapshot(root: Path) -> dict[str, Entry]:
    """Every entry below ``root`` (links not followed): type and permission bits, owner,
    mtime in ns, xattrs, and contents (a link's target)."""
    out: dict[str, Entry] = {}

    def one(dfd: int, name: str) -> Entry:
        st = os.lstat(name, dir_fd=dfd)
        if stat.S_ISREG(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
            with open(fd, "rb") as f:
                data = f.read()
        elif stat.S_ISLNK(st.st_mode):
            data = os.fsencode(os.readlink(name, dir_fd=dfd))
        else:
            data = b""
        xattrs = _xattrs(proc(dfd, name))
        return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else 0,
                st.st_size if not stat.S_ISDIR(st.st_mode) else 0, xattrs, data)  # fmt: skip

    for dirpath, dirnames, filenames, dfd in _fwalk(root):
        for name in dirnames + filenames:
            rel = os.path.join(dirpath, name) if dirpath else name
            out[rel] = one(dfd, name)
    return out


def _fwalk(root: Path) -> Iterator[tuple[str, list[str], list[str], int]]:
    for dirpath, dirnames, filenames, dfd in os.fwalk(root, follow_symlinks=False):
        rel = os.path.relpath(dirpath, root) if dirpath != str(root) else ""
        yield rel, sorted(dirnames), sorted(filenames), dfd


def deepest_mtimes(root: Path) -> dict[str, int]:
    """The directories' mtimes (a restore sets them last, deepest first)."""
    out: dict[str, int] = {}
    for dirpath, dirnames, _, dfd in _fwalk(root):
        for name in dirnames:
            out[os.path.join(dirpath, name)] = os.lstat(name, dir_fd=dfd).st_mtime_ns
    return out


@pytest.fixture
def src(tmp_path: Path) -> Path:
    reason = acl_support(tmp_path)
    if reason is not None:
        pytest.skip(reason)
    return tmp_path / "src"


def deep_dir(base: Path, levels: int) -> Path:
    """A directory ``levels`` components of 200 bytes below ``base``, made one step at a
    time; its own path stays below PATH_MAX."""
    path = base
    for _ in range(levels):
        path = path / ("t" * 200)
        path.mkdir()
    return path


def test_a_restore_past_path_max_keeps_every_xattr_acl_and_byte(src: Path, tmp_path: Path) -> None:
    """Source paths short enough to be walked (18 levels, ~3.6 KiB), restored below a
    target itself ~1.4 KiB deep: the restored deepest entries sit past PATH_MAX."""
    longest = build(src, levels=18)
    assert longest < PATH_MAX
    want = snapshot(src)
    manager = BackupManager(tmp_path / "repo")
    manager.register_database("deep", src)
    s = manager.backup("deep", "full")
    assert manager.summary(s.id).clean
    target = deep_dir(tmp_path, 7) / "out"
    assert len(os.fsencode(target)) + longest - len(os.fsencode(src)) > PATH_MAX
    manager.restore("deep", target, backup_set_id=s.id)
    got = snapshot(target)
    assert sorted(got) == sorted(want)
    for rel in want:
        assert got[rel] == want[rel], rel[-300:]
    assert deepest_mtimes(target) == deepest_mtimes(src)
    assert _xattrs(str(target)) == _xattrs(str(src))


def test_a_source_directory_past_path_max_is_named_in_the_set(src: Path, tmp_path: Path) -> None:
    """The walk lists by full path: what lies past PATH_MAX is not stored, the set says
    which directory with the system's reason, and everything above it restores."""
    longest = build(src)
    assert longest > PATH_MAX
    with pytest.raises(OSError) as e:
        os.lstat(src / "/".join([NAME] * LEVELS) / "deepest")
    assert e.value.errno == errno.ENAMETOOLONG
    manager = BackupManager(tmp_path / "repo")
    manager.register_database("deep", src)
    s = manager.backup("deep", "full")
    skipped = manager.summary(s.id).skipped
    assert skipped
    first = min(skipped, key=lambda e: len(e.path))
    assert "File name too long" in first.reason, first
    assert first.path.count("/") + 1 < LEVELS  # a directory above the deepest
    target = tmp_path / "out"
    manager.restore("deep", target, backup_set_id=s.id)
    # The named directory itself is kept (its metadata was read from its parent).
    below = first.path + "/"
    want = {k: v for k, v in snapshot(src).items() if not k.startswith(below)}
    got = snapshot(target)
    assert sorted(got) == sorted(want)


def test_an_acl_the_target_hands_down_is_removed_from_restored_files(src: Path, tmp_path: Path) -> None:
    """A restore skips listing the xattrs of a file it just created only where nothing
    can be inherited: below a target holding a default ACL, files and directories are
    created with an access ACL the set does not have, and the exact restore removes it."""
    (src / "sub").mkdir(parents=True)
    (src / "top").write_bytes(b"t")
    (src / "sub" / "low").write_bytes(b"l")
    os.setxattr(src / "sub" / "low", "user.kept", b"k")
    want = snapshot(src)
    manager = BackupManager(tmp_path / "repo")
    manager.register_database("acl", src)
    s = manager.backup("acl", "full")
    target = tmp_path / "out"
    target.mkdir()
    os.setxattr(target, "system.posix_acl_default", DIR_DEFAULT_ACL)
    (target / "probe").write_bytes(b"")
    assert "system.posix_acl_access" in os.listxattr(target / "probe")  # inherited here
    (target / "probe").unlink()
    manager.restore("acl", target, backup_set_id=s.id)
    assert snapshot(target) == want
