"""The backup's walk in Rust (`_core.walk_tree`, rust/src/tree/) against an independent
oracle: Python's own `os.lstat`, `os.readlink` and `os.listxattr`/`getxattr` over the same
generated trees (files, directories, links, FIFOs, hardlinks, extended attributes)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import _core

# Not atime: listing a directory (the walk itself) may move it (relatime).
_FIELDS = (
    *("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size", "st_mtime_ns", "st_ctime_ns"),
    *("st_blocks", "st_blksize", "st_rdev", "st_mtime", "st_ctime"),
)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "special"
    return "other"


def _xattrs(path: str) -> list[tuple[str, bytes]]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    return sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names)


def _oracle(root: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):  # links are not followed
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st_ = os.lstat(full)
            target = os.readlink(full) if stat.S_ISLNK(st_.st_mode) else None
            out[rel] = (_kind(st_.st_mode), tuple(getattr(st_, f) for f in _FIELDS), target, _xattrs(full))
    return out


def _walked(root: Path) -> dict[str, tuple[Any, ...]]:
    entries, skipped, excluded = _core.walk_tree(root)
    assert skipped == [] and excluded == 0
    rels = [e[0] for e in entries]
    assert len(rels) == len(set(rels))
    return {rel: (kind, tuple(getattr(st_, f) for f in _FIELDS), t, list(x)) for rel, kind, st_, t, x, _ in entries}


_NAME = st.sampled_from(["a", "b", "c", "é", "x y", "-"])


@settings(deadline=None, max_examples=40)
@given(
    st.lists(
        st.tuples(st.lists(_NAME, min_size=1, max_size=3), st.sampled_from("fdlpha"), st.binary(max_size=300)),
        max_size=20,
    )
)
def test_the_walk_sees_what_lstat_and_listxattr_see(spec: list[tuple[list[str], str, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made: list[Path] = []
        for parts, kind, data in spec:
            path = root.joinpath(*parts)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if kind == "f":
                    # "x": a name taken already (a FIFO above all: opening it to write
                    # would wait for a reader forever) is skipped like any other clash.
                    with open(path, "xb") as f:
                        f.write(data)
                elif kind == "d":
                    path.mkdir()
                elif kind == "l":
                    path.symlink_to(data.hex() or "..")
                elif kind == "p":
                    os.mkfifo(path)
                elif kind == "h" and made:
                    os.link(made[-1], path)
                elif kind == "a" and made:
                    os.setxattr(made[-1], "user.t" + str(len(data) % 3), data, follow_symlinks=False)
                    continue
                else:
                    continue
                if not path.is_symlink():
                    made.append(path)
            except OSError:
                continue  # runs through a file or a link, exists, or no user xattrs on a fifo
        assert _walked(root) == _oracle(root)


def test_a_large_attribute_value_is_read_whole(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    big = bytes(range(256)) * 12  # past the first 256-byte guess (the read grows), within ext4's 4 KiB
    os.setxattr(f, "user.big", big)
    os.setxattr(f, "user.a", b"")
    entries, _, _ = _core.walk_tree(tmp_path)
    assert [(e[0], e[4]) for e in entries] == [("f", (("user.a", b""), ("user.big", big)))]


def test_every_stat_field_is_lstat_s(tmp_path: Path) -> None:
    """Every ``st_`` field of the walk's `Stat` reads as lstat's, the float times too
    (before the epoch, and an atime equal to the mtime or not)."""
    for name, (atime, mtime) in {"same": (7_123_456_789, 7_123_456_789), "other": (-1, 5_999_999_999)}.items():
        (tmp_path / name).write_bytes(name.encode())
        os.utime(tmp_path / name, ns=(atime, mtime))
    entries, _, _ = _core.walk_tree(tmp_path)
    fields = [f for f in dir(os.lstat(tmp_path)) if f.startswith("st_")]
    for rel, _, got, _, _, _ in entries:
        want = os.lstat(tmp_path / rel)
        assert len(fields) >= 16 and all(getattr(got, f) == getattr(want, f) for f in fields), rel


def test_a_root_that_is_not_a_directory_raises_oserror_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    for path, error in ((tmp_path / "file", NotADirectoryError), (tmp_path / "none", FileNotFoundError)):
        try:
            _core.walk_tree(path)
        except error as exc:
            assert exc.filename == str(path)
        else:
            raise AssertionError(f"{path}: no {error.__name__}")
