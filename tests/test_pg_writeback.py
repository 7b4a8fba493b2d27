"""postgres/writeback.py: the restored data directory's writeback. What can be checked
without pulling the power: every regular file and directory below the root is synced
and counted, nothing else is opened (a FIFO opened for reading would block this test,
a link followed would reach the outside file), and the flusher starts the writeback of
files that grew and only of those."""

from __future__ import annotations

import os
from pathlib import Path

from rustybackup.postgres import writeback


def tree(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "data", tmp_path / "outside"
    (root / "base" / "1").mkdir(parents=True)
    outside.mkdir()
    os.mkfifo(outside / "fifo")
    (root / "base" / "1" / "1259").write_bytes(b"x" * 100_000)
    (root / "PG_VERSION").write_bytes(b"15\n")
    os.mkfifo(root / "fifo")
    (root / "pg_wal").symlink_to(outside)
    (root / "to_fifo").symlink_to(outside / "fifo")
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    return root, outside


def test_sync_tree_syncs_files_and_directories_and_opens_nothing_else(tmp_path: Path) -> None:
    root, _ = tree(tmp_path)
    # Two files; root, base, base/1.
    assert writeback.sync_tree(root) == 5


def test_the_flusher_starts_writeback_of_grown_files_only(tmp_path: Path) -> None:
    root, _ = tree(tmp_path)
    f = writeback.Flusher(root)
    if writeback._sync_file_range() is None:
        assert f.once() == 0
        return
    assert f.once() == 2
    assert f.once() == 0
    with open(root / "PG_VERSION", "ab") as fh:
        fh.write(b"more")
    assert f.once() == 1
    with writeback.Flusher(root, interval=0.01):
        (root / "base" / "1" / "2619").write_bytes(b"y" * 10)
