"""The oracle of the file-tree fidelity tests: what ``os.lstat``, ``os.listxattr`` and the
bytes say about a tree, read straight from the system (nothing of rustybackup), and a
builder of rich trees (owners, xattrs, POSIX ACLs, holes, hardlinks, special files)."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from pathlib import Path
from typing import Any

# The kernel's POSIX ACL xattr layout (include/uapi/linux/posix_acl_xattr.h): a version
# word, then (tag, perm, id) per entry, little-endian.
ACL_VERSION = 2
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF


def acl(entries: list[tuple[int, int, int]]) -> bytes:
    """A ``system.posix_acl_*`` value from (tag, perm, id) entries."""
    return struct.pack("<I", ACL_VERSION) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


def xattrs_of(path: Path) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}


def snapshot(root: Path, *, owners: bool = True, blocks: bool = True) -> dict[str, Any]:
    """Every entry under `root` by relative path: type, mode, owner, mtime, size, content
    digest, link text, device numbers, xattrs, allocated blocks of sparse files, and
    which names share an inode (as the sorted group of names, not inode numbers)."""
    out: dict[str, Any] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            e: dict[str, Any] = {"type": stat.S_IFMT(st.st_mode), "xattrs": xattrs_of(p)}
            if not stat.S_ISLNK(st.st_mode):
                e["mode"] = stat.S_IMODE(st.st_mode)
            if owners:
                e["owner"] = (st.st_uid, st.st_gid)
            e["mtime_ns"] = st.st_mtime_ns
            if stat.S_ISREG(st.st_mode):
                e["size"] = st.st_size
                e["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
                if blocks and st.st_blocks * 512 < st.st_size:
                    e["blocks"] = st.st_blocks
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            out[rel] = e
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    for names in inodes.values():
        for n in names:
            out[n]["links"] = sorted(names)
    return out


def sparse_file(path: Path, layout: list[tuple[str, int]]) -> None:
    """Writes ('data'|'hole', length) runs: data runs get non-zero bytes, holes are
    skipped with a seek, so the file system leaves them unallocated."""
    with open(path, "wb") as fh:
        pos = 0
        for kind, n in layout:
            if kind == "data":
                fh.write(bytes((pos + i) % 251 + 1 for i in range(n)))
            else:
                fh.seek(n, os.SEEK_CUR)
            pos += n
        fh.truncate(pos)


def rich_tree(src: Path, *, as_root: bool) -> None:
    """A tree with one of everything issue 17 lists (devices and foreign owners only when
    built as root)."""
    (src / "etc" / "empty").mkdir(parents=True)
    (src / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost\n")
    (src / "etc" / "link").symlink_to("hosts")
    (src / "etc" / "abs").symlink_to("/nonexistent/target")
    (src / "bin").mkdir()
    (src / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(5000))
    os.chmod(src / "bin" / "tool", 0o4755)
    (src / "bin" / "grouptool").write_bytes(b"g")
    os.chmod(src / "bin" / "grouptool", 0o2711)
    (src / "tmp").mkdir()
    os.chmod(src / "tmp", 0o1777)
    (src / "data").mkdir()
    (src / "data" / "a").write_bytes(b"shared inode" * 1000)
    os.link(src / "data" / "a", src / "data" / "b")
    os.link(src / "data" / "a", src / "etc" / "c")
    sparse_file(src / "data" / "sparse", [("data", 8192), ("hole", 4 << 20), ("data", 4096), ("hole", 1 << 20)])
    sparse_file(src / "data" / "allhole", [("hole", 1 << 20)])
    os.mkfifo(src / "data" / "pipe", 0o640)
    os.setxattr(src / "etc" / "hosts", "user.comment", b"kept\x00binary\xff")
    os.setxattr(src / "etc", "user.dir", b"on a directory")
    os.setxattr(src / "data" / "a", "user.shared", b"one inode")
    os.setxattr(
        src / "etc" / "hosts",
        "system.posix_acl_access",
        acl(
            [
                (ACL_USER_OBJ, 6, ACL_UNDEFINED_ID),
                (ACL_USER, 4, 4242),
                (ACL_GROUP_OBJ, 4, ACL_UNDEFINED_ID),
                (ACL_MASK, 4, ACL_UNDEFINED_ID),
                (ACL_OTHER, 4, ACL_UNDEFINED_ID),
            ]
        ),
    )
    os.setxattr(
        src / "etc" / "empty",
        "system.posix_acl_default",
        acl(
            [
                (ACL_USER_OBJ, 7, ACL_UNDEFINED_ID),
                (ACL_GROUP_OBJ, 5, ACL_UNDEFINED_ID),
                (ACL_OTHER, 0, ACL_UNDEFINED_ID),
            ]
        ),
    )
    if as_root:
        os.mknod(src / "data" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(src / "data" / "loopish", 0o660 | stat.S_IFBLK, os.makedev(7, 200))
        os.setxattr(src / "bin" / "tool", "trusted.note", b"root only")
        os.chown(src / "etc" / "hosts", 1234, 5678)
        os.chown(src / "etc" / "link", 4321, 8765, follow_symlinks=False)
        os.chown(src / "data", 65534, 65534)
        os.chown(src / "bin" / "tool", 0, 0)
        os.chmod(src / "bin" / "tool", 0o4755)  # chown cleared it
    # Fixed times last (creating entries changed the directories'), deepest first.
    for i, (d, dirs, files) in enumerate(sorted(os.walk(src), key=lambda t: -t[0].count("/"))):
        for name in [*files, *dirs]:
            os.utime(
                Path(d) / name, ns=(1_600_000_000_123_456_789 + i, 1_600_000_000_123_456_789 + i), follow_symlinks=False
            )
