"""The Rust backup pass on files that change while they are read (issue 12, item 5): the
pass goes on, stores what it read (at most the size at open) and names the file in the
last element of `_core.backup_files`' result. The change is made deterministic by doing
it from the progress callback, which the pass calls after its first 4 MiB chunk."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rustybackup import _core

CHUNK = 4 << 20


def backup_with(
    tmp_path: Path, files: dict[str, bytes], during: Callable[[], None]
) -> tuple[list[tuple[int, str, int, int]], list[str]]:
    src = tmp_path / "src"
    src.mkdir()
    jobs: list[tuple[Path, str, tuple[int, int] | None]] = []
    for name, content in files.items():
        (src / name).write_bytes(content)
        jobs.append((src / name, name, None))
    calls: list[int] = []

    def progress(done: int, _written: int, _files: int) -> None:
        if not calls:
            during()
        calls.append(done)

    out = _core.backup_files(
        jobs,
        tmp_path / "p.piece",
        tmp_path / "m.blockmap",
        algorithm="blake3",
        block_size=8192,
        progress=progress,
    )
    assert calls, "the progress callback never ran"
    return out[0], out[6]


def restored(tmp_path: Path, name: str, entry: tuple[int, str, int, int]) -> bytes:
    size, digest, first, count = entry
    dest = tmp_path / f"restored-{name}"
    _core.restore_files(
        [(name, dest, first, count, size, digest)],
        tmp_path / "m.blockmap",
        [tmp_path / "p.piece"],
    )
    return dest.read_bytes()


def test_a_file_that_shrinks_while_read_is_listed_and_stored_as_read(
    tmp_path: Path,
) -> None:
    data = os.urandom(CHUNK + 50_000)
    keep = CHUNK + 100
    files, changed = backup_with(
        tmp_path,
        {"big": data, "calm": b"c" * 10},
        lambda: os.truncate(tmp_path / "src" / "big", keep),
    )
    assert changed == ["big"]
    assert files[0][0] == keep
    assert restored(tmp_path, "big", files[0]) == data[:keep]
    assert restored(tmp_path, "calm", files[1]) == b"c" * 10


def test_a_file_that_grows_while_read_keeps_its_size_at_open_and_is_listed(
    tmp_path: Path,
) -> None:
    data = os.urandom(CHUNK + 20_000)

    def grow() -> None:
        with open(tmp_path / "src" / "big", "ab") as fh:
            fh.write(b"x" * 30_000)

    files, changed = backup_with(tmp_path, {"big": data}, grow)
    assert changed == ["big"]
    assert restored(tmp_path, "big", files[0]) == data


def test_files_left_alone_are_not_listed(tmp_path: Path) -> None:
    files, changed = backup_with(tmp_path, {"a": os.urandom(CHUNK + 1), "b": b""}, lambda: None)
    assert changed == []
    assert [f[0] for f in files] == [CHUNK + 1, 0]


def test_a_file_rewritten_in_place_is_listed_by_its_mtime(tmp_path: Path) -> None:
    data = os.urandom(CHUNK + 4096)

    def rewrite() -> None:
        path = tmp_path / "src" / "same-size"
        with open(path, "r+b") as fh:
            fh.write(b"\0" * 16)
        # Set the new mtime explicitly: the kernel's clock tick could equal the old one.
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    files, changed = backup_with(tmp_path, {"same-size": data}, rewrite)
    assert changed == ["same-size"]
    assert files[0][0] == len(data)
