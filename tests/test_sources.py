"""Walking a source tree: what is stored, what is skipped and why."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from rustybackup.sources import SkippedEntry, walk


def test_sockets_and_fifos_are_skipped_with_their_reason(tmp_path: Path) -> None:
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
    assert tree.skipped == [SkippedEntry("pipe", "fifo"), SkippedEntry("sock", "socket")]


def test_an_entry_that_vanishes_between_listing_and_stat_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "gone").write_text("x")
    (src / "keep").write_text("k")
    real_scandir = os.scandir

    def scandir_then_delete(path: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
        with real_scandir(path) as it:
            entries = list(it)
        if Path(path) == src / "d":
            (src / "d" / "gone").unlink()
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
