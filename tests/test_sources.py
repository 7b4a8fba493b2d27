"""Walking a source tree: what is stored, what is skipped and why."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from privileges import fork_and_run
from rustybackup.sources import SkippedEntry, walk


def test_sockets_are_skipped_with_their_reason_and_fifos_recorded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    os.mkfifo(src / "pipe")
    # AF_UNIX paths are limited to ~108 bytes: bind by a short relative name.
    cwd = os.getcwd()
    os.chdir(src)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind("sock")
    finally:
        os.chdir(cwd)
    try:
        tree = walk(src)
    finally:
        sock.close()
    assert [rel for rel, _, _ in tree.files] == ["a.txt"]
    # Issue 17: a FIFO is recorded (fsmeta.capture) and recreated by a restore.
    assert [rel for rel, _ in tree.specials] == ["pipe"]
    assert tree.skipped == [SkippedEntry("sock", "socket")]


# An entry that vanishes between its directory's listing and its lstat, and a directory
# that vanishes before it is listed, are skipped as "vanished during the backup": the walk
# is Rust's (rust/src/tree/), where tests.rs deletes them between the two steps.


def test_skipped_entries_are_frozen_values() -> None:
    e = SkippedEntry("p", "fifo")
    assert e == SkippedEntry("p", "fifo") and hash(e) == hash(SkippedEntry("p", "fifo"))
    with pytest.raises(AttributeError):
        e.path = "q"  # type: ignore[misc]


def test_links_are_data_whatever_they_point_to(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    links = {"abs": "/etc/passwd", "up": "..", "d/x": "..", "y": "d/x/..", "gone": "no/such", "d/in": "../abs"}
    for rel, target in links.items():
        (src / rel).symlink_to(target)
    tree = walk(src)
    assert {rel: target for rel, target, _ in tree.symlinks} == links
    assert [rel for rel, _ in tree.dirs] == ["d"] and tree.files == [] and tree.skipped == []


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every user can enter (pytest's tmp_path is root's only)."""
    d = Path(tempfile.mkdtemp(prefix="rb-sources-"))
    os.chmod(d, 0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_directory_that_cannot_be_read_is_kept_empty_and_listed(shared_tmp: Path) -> None:
    src = shared_tmp / "src"
    (src / "locked" / "inner").mkdir(parents=True)
    (src / "locked" / "secret").write_text("s")
    (src / "z").write_text("z")
    (src / "locked").chmod(0o700)  # root's; the walk runs as nobody (root reads everything)

    def child() -> str:
        tree = walk(src)
        return repr(([r for r, _ in tree.dirs], [r for r, _, _ in tree.files], tree.skipped))

    got = fork_and_run(child, drop_to_nobody=True)
    assert got == repr(
        (
            ["locked"],
            ["z"],
            [SkippedEntry("locked", "directory cannot be read, its contents are not stored: Permission denied")],
        )
    )


def test_an_unreadable_root_is_still_an_error(shared_tmp: Path) -> None:
    src = shared_tmp / "src"
    src.mkdir()
    src.chmod(0o311)  # enterable, not listable, for anyone but root

    def child() -> str:
        walk(src)
        return "walked"

    got = fork_and_run(child, drop_to_nobody=True)
    assert got == f"BackupError: cannot read source directory {src}: Permission denied"


@settings(deadline=None, max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.lists(st.sampled_from("abc"), min_size=1, max_size=3), st.sampled_from("fdl")), max_size=15)
)
def test_walk_matches_os_walk(tmp_path: Path, spec: list[tuple[list[str], str]]) -> None:
    """Oracle: os.walk (links not followed) over the same generated tree."""
    root = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
    root.mkdir()
    for parts, kind in spec:
        path = root.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "f":
                path.write_text("x")
            elif kind == "d":
                path.mkdir()
            else:
                path.symlink_to("/".join([".."] * len(parts)))
        except OSError:
            continue  # runs through a file or a link, or exists: not part of this tree
    files, dirs, links = [], [], []
    for top, dnames, fnames in os.walk(root):
        for name in dnames + fnames:
            p = Path(top) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                links.append((rel, os.readlink(p)))
            elif p.is_dir():
                dirs.append(rel)
            else:
                files.append(rel)
    tree = walk(root)
    assert [r for r, _, _ in tree.files] == sorted(files)
    assert [r for r, _ in tree.dirs] == sorted(dirs)
    assert [(r, t) for r, t, _ in tree.symlinks] == sorted(links)
    assert tree.skipped == []
