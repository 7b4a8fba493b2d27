"""The tree restore in one Rust pass (engine/restore_tree.rs, tree_meta.rs): files
created, written, checked and given owner, xattrs, mode and mtime through their own
descriptors, directories' metadata deepest first. The oracle is the source tree as the
file system reports it (``os.lstat``, ``os.listxattr``, the bytes), never the manifest."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, _core, manifest
from rustybackup.errors import BackupError
from rustybackup.restore import restore_set_files
from rustybackup.restore_target import RestoreTarget

Columns = tuple[list[int], list[int], list[int], list[int], list[tuple[int, str, bytes]]]
BIG = 200 * 1024  # past the batch limit (16 blocks): streamed as a large file


def tree_facts(root: Path) -> dict[str, tuple[object, ...]]:
    """What the file system says of every entry below `root`."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = os.lstat(p)
            xattrs = tuple(sorted((n, os.getxattr(p, n)) for n in os.listxattr(p) if n.startswith("user.")))
            data = p.read_bytes() if p.is_file() else b""
            rel = str(p.relative_to(root))
            out[rel] = (st.st_mode, st.st_mtime_ns, st.st_uid, st.st_gid, st.st_size, xattrs, data)
    return out


files_st = st.lists(
    st.tuples(
        st.integers(0, 3),  # directory
        st.sampled_from([0, 1, 4095, 4096, 8193, 30_000, BIG]),
        st.sampled_from([0o644, 0o600, 0o755, 0o4755, 0o444, 0o000]),
        st.integers(-(10**18), 2 * 10**18),
        st.booleans(),  # user xattr
    ),
    min_size=1,
    max_size=12,
)


# Each example is a backup and a restore (~0.3 s): 12 keep the test to a few seconds.
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=files_st, dir_mode=st.sampled_from([0o755, 0o700, 0o1777, 0o555]), seed=st.integers(0, 99))
def test_random_trees_restore_as_the_file_system_had_them(
    tmp_path_factory: pytest.TempPathFactory, files: list[tuple[int, int, int, int, bool]], dir_mode: int, seed: int
) -> None:
    base = tmp_path_factory.mktemp("t")
    src = base / "src"
    rng = random.Random(seed)
    dirs = [src / f"d{i}" / "e" for i in range(4)]
    for d in dirs:
        d.mkdir(parents=True)
    for i, (which, size, mode, mtime, xattr) in enumerate(files):
        p = dirs[which] / f"f{i}"
        p.write_bytes(rng.randbytes(size))
        if xattr:
            os.setxattr(p, "user.k", f"v{i}".encode())
        os.chmod(p, mode)
        os.utime(p, ns=(mtime, mtime))
    for d in dirs:
        os.chmod(d, dir_mode)
        os.utime(d, ns=(10**18 + 7, 10**18 + 7))
    m = BackupManager(base / "repo")
    m.register_database("t", src)
    m.backup("t", "full")
    res = m.restore("t", base / "out")
    assert res.report.not_restored == []
    assert tree_facts(base / "out") == tree_facts(src)
    for d in dirs:
        os.chmod(d, 0o755)
        os.chmod(base / "out" / d.relative_to(src), 0o755)


def backed_up(tmp_path: Path, n: int = 40) -> tuple[BackupManager, str, manifest.Manifest]:
    src = tmp_path / "src"
    for i in range(n):
        p = src / f"d{i % 3}" / f"f{i:03d}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(random.Random(i).randbytes(100 + 37 * i))
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src)
    s = m.backup("t", "full")
    return m, s.id, manifest.load(tmp_path / "repo" / "sets" / s.id / "manifest.json")


def test_a_link_planted_where_a_file_goes_is_refused_and_not_followed(tmp_path: Path) -> None:
    _m, sid, man = backed_up(tmp_path)
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    out = tmp_path / "out"
    (out / "d1").mkdir(parents=True)
    (out / "d1" / "f004").symlink_to(outside)
    with pytest.raises(BackupError, match=r"a symbolic link is in the way of a restored file.*d1/f004"):
        restore_set_files(tmp_path / "repo", sid, man, out, None, archive=False)
    assert outside.read_bytes() == b"keep"


def test_a_link_planted_as_a_directory_is_refused(tmp_path: Path) -> None:
    _m, sid, man = backed_up(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "d2").symlink_to(elsewhere)
    with pytest.raises(BackupError, match=rf"{out / 'd2'} is a symlink or not a directory"):
        restore_set_files(tmp_path / "repo", sid, man, out, None, archive=False)
    assert list(elsewhere.iterdir()) == []


def test_a_damaged_block_names_its_file_and_nothing_is_reported_restored(tmp_path: Path) -> None:
    m, sid, man = backed_up(tmp_path)
    victim = next(f for f in man.files if f.path == "d1/f010")
    piece = tmp_path / "repo" / "sets" / sid / man.sources[-1].piece
    data = bytearray(piece.read_bytes())
    # The file's bytes are stored as they were (incompressible); find and flip one.
    body = (tmp_path / "src" / victim.path).read_bytes()
    at = data.find(body[:64])
    assert at > 0
    data[at + 5] ^= 0xFF
    piece.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=r"d1/f010"):
        m.restore("t", tmp_path / "out")


def test_metadata_already_right_is_not_touched(tmp_path: Path) -> None:
    """apply_tree_meta sets only what differs: an entry already right keeps its ctime."""
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    f = out / "a" / "f"
    f.write_bytes(b"x")
    os.chmod(f, 0o640)
    os.utime(f, ns=(5, 123_456_789_012))
    os.setxattr(f, "user.k", b"v")
    before = os.lstat(f)
    cols: Columns = ([0o640], [123_456_789_012], [-1], [-1], [(0, "user.k", b"v")])
    with RestoreTarget(out, "r") as tree:
        problems = _core.apply_tree_meta(
            tree.fd, out, ["a/f"], cols, chown=False, exact_xattrs=True, deepest_first=False
        )
        assert problems == []
        assert os.lstat(f).st_ctime_ns == before.st_ctime_ns
        cols = ([0o600], [7], [-1], [-1], [])
        _core.apply_tree_meta(tree.fd, out, ["a/f"], cols, chown=False, exact_xattrs=True, deepest_first=False)
    after = os.lstat(f)
    assert (after.st_mode & 0o7777, after.st_mtime_ns) == (0o600, 7)
    assert os.listxattr(f) == []  # exact: what the set lacks in user.* goes


def test_an_owner_that_cannot_be_applied_is_reported_by_index(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "f").write_bytes(b"x")
    st = os.lstat(out / "f")
    cols: Columns = ([0o644], [1], [st.st_uid + 1], [st.st_gid], [])
    with RestoreTarget(out, "r") as tree:
        problems = _core.apply_tree_meta(
            tree.fd, out, ["f"], cols, chown=False, exact_xattrs=False, deepest_first=False
        )
    assert problems == [(0, "owner", "not applied: restoring as non-root")]


def test_column_lengths_must_agree(tmp_path: Path) -> None:
    with RestoreTarget(tmp_path, "r") as tree, pytest.raises(ValueError, match="metadata columns"):
        _core.apply_tree_meta(
            tree.fd,
            tmp_path,
            ["f"],
            ([0o644], [], [-1], [-1], []),
            chown=False,
            exact_xattrs=False,
            deepest_first=False,
        )
    with RestoreTarget(tmp_path, "r") as tree, pytest.raises(ValueError, match="names entry 3"):
        _core.apply_tree_meta(
            tree.fd,
            tmp_path,
            ["f"],
            ([1], [1], [-1], [-1], [(3, "user.x", b"")]),
            chown=False,
            exact_xattrs=False,
            deepest_first=False,
        )
