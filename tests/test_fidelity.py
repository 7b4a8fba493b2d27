"""File trees come back as users have them (issue 17): owners by id and name, modes with
setuid/setgid/sticky, nanosecond mtimes, xattrs and POSIX ACLs, hardlinks as one inode,
sparse files with their holes, FIFOs and device nodes, empty directories and links.
Everything is compared with what the system says about the source (fidelity_support's
oracle), never with what rustybackup recorded."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fidelity_support import rich_tree, snapshot, sparse_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from privileges import fork_and_run
from rustybackup import BackupManager, manifest

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="owners, devices and trusted.* xattrs need root")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every user can enter (pytest's tmp_path is root's only), for the
    tests that restore as an unprivileged user."""
    d = Path(tempfile.mkdtemp(prefix="rb-fidelity-"))
    os.chmod(d, 0o777)
    try:
        yield d
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def backup_restore(tmp: Path, src: Path, name: str = "t") -> tuple[str, Path]:
    m = BackupManager(tmp / "repo")
    m.register_database(name, src)
    set_id = m.backup(name, "full").id
    out = tmp / "out"
    m.restore(name, out)
    return set_id, out


@needs_root
def test_a_rich_tree_round_trips_exactly(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rich_tree(src, as_root=True)
    want = snapshot(src)
    _, out = backup_restore(tmp_path, src)
    got = snapshot(out)
    assert got == want
    # The oracle's own view of what makes this tree hard, so the test cannot pass on a
    # tree that lost them on the way in.
    assert want["data/a"]["links"] == ["data/a", "data/b", "etc/c"]
    assert want["data/sparse"]["blocks"] * 512 < 64 << 10
    assert stat.S_ISCHR(want["data/null"]["type"]) and want["data/null"]["rdev"] == (1, 3)
    assert want["etc/hosts"]["owner"] == (1234, 5678)
    assert want["bin/tool"]["mode"] == 0o4755 and want["tmp"]["mode"] == 0o1777
    assert "system.posix_acl_access" in want["etc/hosts"]["xattrs"]
    assert "trusted.note" in want["bin/tool"]["xattrs"]


@needs_root
def test_hardlinks_are_stored_once_and_holes_never_become_data(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(1 << 20))
    for i in range(5):
        os.link(src / "big", src / f"alias{i}")
    sparse_file(src / "sparse", [("hole", 64 << 20), ("data", 4096)])
    sid, out = backup_restore(tmp_path, src)
    man = manifest.load(tmp_path / "repo" / "sets" / sid / "manifest.json")
    # The first name by path holds the data; the others link to it.
    assert [f.path for f in man.files] == ["alias0", "sparse"]
    assert sorted((h.path, h.target) for h in man.hardlinks) == [
        *((f"alias{i}", "alias0") for i in range(1, 5)),
        ("big", "alias0"),
    ]
    assert man.files[1].holes == ((0, 64 << 20),)
    # The hole is read as zeros, but its blocks are stored once (identical blocks are
    # stored once per pass): the piece holds the 1 MiB file, one zero block, and the
    # sparse file's one data block, nowhere near 64 MiB.
    piece = tmp_path / "repo" / "sets" / sid / "data.piece"
    assert piece.stat().st_size < (1 << 20) + (256 << 10)
    assert os.stat(out / "alias3").st_ino == os.stat(out / "big").st_ino
    assert os.stat(out / "big").st_nlink == 6
    restored = os.stat(out / "sparse")
    assert restored.st_size == (64 << 20) + 4096 and restored.st_blocks * 512 <= 64 << 10


def test_the_manifest_records_what_the_oracle_sees(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rich_tree(src, as_root=ROOT)
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src)
    s = m.backup("t", "full")
    man = manifest.load(tmp_path / "repo" / "sets" / s.id / "manifest.json")
    assert man.format == manifest.FORMAT
    hosts = next(f for f in man.files if f.path == "etc/hosts")
    st_hosts = os.lstat(src / "etc" / "hosts")
    assert hosts.owner is not None and (hosts.owner.uid, hosts.owner.gid) == (st_hosts.st_uid, st_hosts.st_gid)
    assert {x.name: x.value for x in hosts.xattrs} == {
        n: os.getxattr(src / "etc" / "hosts", n) for n in os.listxattr(src / "etc" / "hosts")
    }
    assert [(sp.path, sp.kind) for sp in man.specials if sp.kind == "fifo"] == [("data/pipe", "fifo")]
    assert man.summary.skipped == ()


def _restore_as_nobody(repo: Path, out: Path) -> str:
    def child() -> str:
        res = BackupManager(repo).restore("t", out)
        return "\n".join(f"{p.path}|{p.what}|{p.reason}" for p in res.report.not_restored)

    return fork_and_run(child, drop_to_nobody=True)


@needs_root
def test_as_a_non_root_user_what_cannot_be_restored_is_reported(shared_tmp: Path) -> None:
    src = shared_tmp / "src"
    rich_tree(src, as_root=True)
    m = BackupManager(shared_tmp / "repo")
    m.register_database("t", src)
    m.backup("t", "full")
    os.chmod(shared_tmp / "repo", 0o777)
    for dirpath, dirnames, filenames in os.walk(shared_tmp / "repo"):
        for n in [*dirnames, *filenames]:
            os.chmod(Path(dirpath) / n, 0o777)
    out = shared_tmp / "out"
    lines = _restore_as_nobody(shared_tmp / "repo", out).splitlines()
    report = {(p, w) for p, w, _ in (line.split("|", 2) for line in lines)}
    assert ("data/null", "char device 1:3") in report
    assert ("data/loopish", "block device 7:200") in report
    assert ("etc/hosts", "owner") in report
    assert ("bin/tool", "xattr trusted.note") in report
    # What a user can restore, was: contents, the FIFO, links, user xattrs, modes.
    got, want = snapshot(out, owners=False), snapshot(src, owners=False)
    for rel in ("etc/hosts", "data/sparse", "data/pipe", "etc/link", "bin/grouptool", "etc/empty"):
        assert got[rel] == want[rel], rel
    assert got["data/a"]["links"] == ["data/a", "data/b", "etc/c"]
    assert "data/null" not in got


# --- property: random trees ----------------------------------------------------------

_names = st.sampled_from(["a", "b", "c", "d", "e", "f"])


@st.composite
def trees(draw: st.DrawFn) -> list[tuple[str, str, object]]:
    """(kind, relative path, details) entries, parents before children."""
    out: list[tuple[str, str, object]] = []
    dirs = [""]
    files: list[str] = []
    used: set[str] = set()
    for _ in range(draw(st.integers(1, 12))):
        parent = draw(st.sampled_from(dirs))
        rel = f"{parent}/{draw(_names)}{len(out)}".lstrip("/")
        used.add(rel)
        kind = draw(st.sampled_from(["file", "file", "dir", "link", "hardlink", "sparse", "fifo"]))
        if kind == "hardlink" and not files:
            kind = "file"
        mode = draw(st.sampled_from([0o644, 0o600, 0o755, 0o4755, 0o2750, 0o1777, 0o444]))
        xattrs = draw(st.dictionaries(st.sampled_from(["user.a", "user.b"]), st.binary(max_size=40), max_size=2))
        mtime = draw(st.integers(0, 2_000_000_000_000_000_000))
        if kind == "dir":
            dirs.append(rel)
            out.append((kind, rel, (mode, xattrs, mtime)))
        elif kind == "file":
            files.append(rel)
            out.append((kind, rel, (mode, xattrs, mtime, draw(st.binary(max_size=3000)))))
        elif kind == "sparse":
            files.append(rel)
            runs = draw(
                st.lists(st.tuples(st.sampled_from(["data", "hole"]), st.integers(1, 3)), min_size=1, max_size=4)
            )
            out.append((kind, rel, (mode, xattrs, mtime, [(k, n * 65536) for k, n in runs])))
        elif kind == "link":
            out.append((kind, rel, draw(st.sampled_from(["a0", "../x", "/etc/passwd", "no/such", "."]))))
        elif kind == "hardlink":
            out.append((kind, rel, draw(st.sampled_from(files))))
        else:
            out.append((kind, rel, (mode & 0o777, mtime)))
    return out


def build(src: Path, entries: list[tuple[str, str, object]]) -> None:
    src.mkdir()
    for kind, rel, d in entries:
        p = src / rel
        if kind == "dir":
            p.mkdir()
        elif kind == "file":
            p.write_bytes(d[3])  # type: ignore[index]
        elif kind == "sparse":
            sparse_file(p, d[3])  # type: ignore[index]
        elif kind == "link":
            p.symlink_to(str(d))
        elif kind == "hardlink":
            os.link(src / str(d), p)
        else:
            os.mkfifo(p)
    for kind, rel, d in reversed(entries):
        p = src / rel
        if kind in ("dir", "file", "sparse"):
            mode, xattrs, mtime = d[:3]  # type: ignore[index]
            for n, v in xattrs.items():
                os.setxattr(p, n, v)
            os.chmod(p, mode)
            os.utime(p, ns=(mtime, mtime))
        elif kind == "fifo":
            mode, mtime = d  # type: ignore[misc]
            os.chmod(p, mode)
            os.utime(p, ns=(mtime, mtime))


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(entries=trees())
def test_random_trees_round_trip_exactly(
    tmp_path_factory: pytest.TempPathFactory, entries: list[tuple[str, str, object]]
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    src = tmp / "src"
    build(src, entries)
    want = snapshot(src)
    _, out = backup_restore(tmp, src)
    assert snapshot(out) == want
