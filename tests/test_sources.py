"""Walking a source tree: what is stored, what is skipped and why."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup.errors import BackupError
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


def test_an_entry_that_vanishes_between_listing_and_stat_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "gone").write_text("x")
    (src / "keep").write_text("k")
    real_scandir = os.scandir

    class Listed(list[os.DirEntry[str]]):
        def __enter__(self) -> Listed:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    def scandir_then_delete(path: str | os.PathLike[str]) -> Listed:
        with real_scandir(path) as it:
            entries = Listed(it)
        if Path(path) == src / "d":
            (src / "d" / "gone").unlink()  # listed, then deleted before its stat
        return entries

    monkeypatch.setattr(os, "scandir", scandir_then_delete)
    tree = walk(src)
    assert [rel for rel, _, _ in tree.files] == ["keep"]
    assert tree.skipped == [SkippedEntry("d/gone", "vanished during the backup")]


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


def test_a_directory_that_cannot_be_read_is_kept_empty_and_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    (src / "locked" / "inner").mkdir(parents=True)
    (src / "locked" / "secret").write_text("s")
    (src / "z").write_text("z")
    real_scandir = os.scandir

    def refuse_locked(path: str | os.PathLike[str]) -> object:
        # Tests run as root, where chmod 000 does not stop reading: refuse as the kernel would.
        if Path(path) == src / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_locked)
    tree = walk(src)
    assert [rel for rel, _ in tree.dirs] == ["locked"]
    assert [rel for rel, _, _ in tree.files] == ["z"]
    assert tree.skipped == [
        SkippedEntry("locked", "directory cannot be read, its contents are not stored: Permission denied")
    ]


def test_a_directory_that_vanishes_before_it_is_listed_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    (src / "tmpdir").mkdir(parents=True)
    (src / "keep").write_text("k")
    real_scandir = os.scandir

    def vanish(path: str | os.PathLike[str]) -> object:
        if Path(path) == src / "tmpdir":
            (src / "tmpdir").rmdir()
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", vanish)
    tree = walk(src)
    assert tree.dirs == [] and [rel for rel, _, _ in tree.files] == ["keep"]
    assert tree.skipped == [SkippedEntry("tmpdir", "vanished during the backup")]


def test_an_unreadable_root_is_still_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()

    def refuse(path: str | os.PathLike[str]) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(BackupError, match=f"^cannot read source directory {src}: Permission denied$"):
        walk(src)


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
